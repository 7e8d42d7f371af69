#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# evhost.py - examples/evhost.c, the non-blocking host, as a client sees
# it: deferred RCPT decisions (refused "nobody..." after its 10 ms timer),
# a pipelined envelope, STARTTLS (a self-signed certificate made with the
# openssl CLI), 50 concurrent sessions, a peer that never reads (BLOCKED:
# the server neither grows nor stalls the others) and the RFC 5321 timers
# shortened by evhost's divisor argument. Each case starts its own evhost
# on a free loopback port and stops it by its PID.
# Usage: python3 tests/evhost.py [path/to/evhost [CASE...]]
# LLSMTP_EVHOST_VALGRIND=1 runs every evhost under valgrind: a case fails
# on any error valgrind reports, leaks included.
import os, re, shutil, signal, smtplib, socket, ssl, subprocess, sys, tempfile, threading, time

from ports import free_port
from skips import Skip, closing_line, run_case, wait_until

EVHOST = sys.argv[1] if len(sys.argv) > 1 else 'build/examples/evhost'
ONLY = set(sys.argv[2:]) | set(os.environ.get('LLSMTP_IT_CASES', '').split())
VERBOSE = os.environ.get('LLSMTP_IT_VERBOSE')
VALGRIND = os.environ.get('LLSMTP_EVHOST_VALGRIND') == '1'
RESULTS = []
SENDER = 'me@example.org'
MSG = 'Subject: evhost\r\n\r\nhello\r\n.a line with a dot\r\n'
OCTETS = str(len(MSG))  # smtplib stuffs the dot, the session removes it
CERT = {}


def certificate():
    """A self-signed certificate and key (openssl CLI), made once."""
    if not CERT:
        if shutil.which('openssl') is None:
            raise Skip('no openssl command (apt-get install openssl)')
        d = tempfile.mkdtemp(prefix='llsmtp-ev-tls-')
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                        '-subj', '/CN=evhost.example.test', '-keyout', os.path.join(d, 'key.pem'),
                        '-out', os.path.join(d, 'cert.pem')], check=True, capture_output=True)
        CERT.update(dir=d, cert=os.path.join(d, 'cert.pem'), key=os.path.join(d, 'key.pem'))
    return [CERT['cert'], CERT['key']]


def unverified():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Evhost:
    """examples/evhost on 127.0.0.1:<free port>: evhost PORT [DIVISOR [CERT KEY]]."""

    def __init__(self, divisor=1, tls=False):
        if not os.path.exists(EVHOST):
            raise Skip('%s was not built (it needs OpenSSL: install libssl-dev)' % EVHOST)
        self.dir = tempfile.mkdtemp(prefix='llsmtp-ev-')
        self.port = free_port()
        self.logname = os.path.join(self.dir, 'evhost.log')
        self.vgname = os.path.join(self.dir, 'valgrind.log')
        self.log = open(self.logname, 'w')
        wrap = ['valgrind', '--error-exitcode=1', '--leak-check=full', '--log-file=' + self.vgname] \
            if VALGRIND else []
        args = [str(self.port), str(divisor)] + (certificate() if tls else [])
        self.proc = subprocess.Popen(wrap + [EVHOST] + args, stderr=self.log)
        if not wait_until(lambda: 'listening on' in self.text() or self.proc.poll() is not None, 60) \
                or self.proc.poll() is not None:
            raise RuntimeError('evhost did not start: %s' % self.text()[-500:])

    def text(self):
        self.log.flush()
        return open(self.logname, errors='replace').read()

    def accepted(self):
        return re.findall(r'^evhost: accepted (\d+) octets for (\d+) recipients$', self.text(), re.M)

    def rss_kb(self):
        for line in open('/proc/%d/status' % self.proc.pid):
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
        raise RuntimeError('no VmRSS')

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        alive = self.proc.poll() is None
        if alive:  # evhost runs until killed
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        log = open(self.logname, errors='replace').read()
        vg = open(self.vgname, errors='replace').read() if VALGRIND else ''
        if VERBOSE:
            sys.stdout.write('--- evhost\n%s%s' % (log, vg))
        shutil.rmtree(self.dir, ignore_errors=True)
        if exc[0] is None:
            assert alive and rc == -signal.SIGTERM, 'evhost exited %r before SIGTERM: %s' % (rc, log[-2000:])
            if VALGRIND:
                assert 'ERROR SUMMARY: 0 errors' in vg, vg[-3000:]
                assert 'definitely lost' not in vg or 'definitely lost: 0 bytes' in vg, vg[-3000:]
        return False


class Raw:
    """A client that writes exactly the bytes given and reads replies."""

    def __init__(self, port, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:  # before connecting: the window the server sees
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect(('127.0.0.1', port))
        self.buf = b''

    def send(self, text):
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def line(self):
        while b'\r\n' not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError('closed after %r' % self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line.decode()

    def reply(self):
        """(code, [text lines]) of one possibly multiline reply."""
        lines = [self.line()]
        while lines[-1][3:4] == '-':
            lines.append(self.line())
        return int(lines[0][:3]), [l[4:] for l in lines]

    def closed(self, timeout=30):
        """Reads to EOF (or a reset); returns what came before it."""
        self.sock.settimeout(timeout)
        data = self.buf
        try:
            while True:
                more = self.sock.recv(65536)
                if not more:
                    return data
                data += more
        except ConnectionResetError:
            return data

    def close(self):
        self.sock.close()


def case(fn):
    return run_case(fn, ONLY, RESULTS)


@case
def nobody_refused_after_the_timer():
    with Evhost() as ev:
        s = smtplib.SMTP('127.0.0.1', ev.port, timeout=30)
        s.ehlo('client.example')
        assert not s.has_extn('starttls')  # no certificate given
        refused = s.sendmail(SENDER, ['you@example.test', 'nobody.else@example.test'], MSG)
        assert refused == {'nobody.else@example.test': (550, b'5.1.1 No such user here')}, refused
        # each decision comes from the connection's 10 ms timer
        assert s.mail(SENDER)[0] == 250
        t = time.monotonic()
        assert s.rcpt('nobody@example.test') == (550, b'5.1.1 No such user here')
        assert time.monotonic() - t >= 0.009
        assert s.rcpt('somebody@example.test')[0] == 250
        s.quit()
        assert wait_until(lambda: ev.accepted()), ev.text()
        assert ev.accepted() == [(OCTETS, '1')], ev.text()


@case
def pipelined_envelope_in_one_write():
    with Evhost() as ev:
        c = Raw(ev.port)
        assert c.reply()[0] == 220
        c.send('EHLO client.example\r\n')
        code, lines = c.reply()
        assert code == 250 and 'PIPELINING' in lines, lines
        rcpts = ['%s%d@example.test' % ('nobody' if i % 10 == 3 else 'user', i) for i in range(120)]
        c.send('MAIL FROM:<%s>\r\n' % SENDER + ''.join('RCPT TO:<%s>\r\n' % r for r in rcpts) + 'DATA\r\n')
        assert c.reply()[0] == 250
        for r in rcpts:  # in order, each after its own timer
            code, lines = c.reply()
            if r.startswith('nobody'):
                assert (code, lines) == (550, ['5.1.1 No such user here']), (r, code, lines)
            else:
                assert code == 250, (r, code, lines)
        assert c.reply()[0] == 354
        c.send(MSG.replace('\n.', '\n..') + '.\r\nQUIT\r\n')
        assert c.reply()[0] == 250
        assert c.reply()[0] == 221
        assert c.closed() == b''
        assert ev.accepted() == [(OCTETS, '108')], ev.text()


@case
def starttls_then_a_message():
    with Evhost(tls=True) as ev:
        s = smtplib.SMTP('127.0.0.1', ev.port, timeout=30)
        s.ehlo('client.example')
        assert s.has_extn('starttls'), s.esmtp_features
        assert s.starttls(context=unverified())[0] == 220
        s.ehlo('client.example')
        assert not s.has_extn('starttls')  # TLS is on
        refused = s.sendmail(SENDER, ['you@example.test', 'nobody@example.test'], MSG)
        assert list(refused) == ['nobody@example.test'], refused
        s.quit()
        assert wait_until(lambda: ev.accepted()), ev.text()
        assert ev.accepted() == [(OCTETS, '1')], ev.text()


@case
def starttls_drops_what_came_with_it():
    # CVE-2011-0411: a NOOP sent in the same packet as STARTTLS is never
    # answered, neither in clear nor inside TLS
    with Evhost(tls=True) as ev:
        c = Raw(ev.port)
        assert c.reply()[0] == 220
        c.send('EHLO client.example\r\n')
        assert c.reply()[0] == 250
        c.send('STARTTLS\r\nNOOP injected\r\n')
        assert c.reply() == (220, ['2.0.0 Ready to start TLS'])
        assert c.buf == b''
        c.sock = unverified().wrap_socket(c.sock)
        c.send('EHLO client.example\r\n')
        code, lines = c.reply()
        assert code == 250 and lines[0].startswith('evhost.example.test'), lines
        c.send('QUIT\r\n')
        assert c.reply()[0] == 221
        c.close()


@case
def fifty_sessions_five_messages_each():
    with Evhost() as ev:
        n, errors = 50, []
        together = threading.Barrier(n, timeout=120)

        def session(k):
            try:
                s = smtplib.SMTP('127.0.0.1', ev.port, timeout=60)
                s.ehlo('c%d.example' % k)
                together.wait()  # all 50 connected at once
                for m in range(5):
                    refused = s.sendmail(SENDER, ['u%d.%d@example.test' % (k, m), 'nobody%d@example.test' % k,
                                                  'v%d.%d@example.test' % (k, m)], MSG)
                    assert list(refused) == ['nobody%d@example.test' % k], refused
                s.quit()
            except Exception as e:
                errors.append('session %d: %r' % (k, e))

        threads = [threading.Thread(target=session, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors[:5]
        assert wait_until(lambda: len(ev.accepted()) == 250), len(ev.accepted())
        assert set(ev.accepted()) == {(OCTETS, '2')}


def fill(sock, limit=60, closing=False):
    """Writes NOOPs, never reading, until the peer stops taking them (or,
    when it may, closes the connection)."""
    sock.settimeout(1)
    chunk, sent, end = b'NOOP\r\n' * 4096, 0, time.time() + limit
    while time.time() < end:
        try:
            sent += sock.send(chunk)
        except socket.timeout:
            return sent
        except (ConnectionResetError, BrokenPipeError):
            if closing:
                return sent
            raise
    raise AssertionError('the server read %d octets and still reads' % sent)


@case
def a_peer_that_never_reads():
    with Evhost() as ev:
        hog = Raw(ev.port, rcvbuf=32768)
        assert hog.reply()[0] == 220
        hog.send('EHLO hog.example\r\n')
        time.sleep(0.2)
        before = ev.rss_kb()
        sent = fill(hog.sock)
        # blocked: the others go on
        s = smtplib.SMTP('127.0.0.1', ev.port, timeout=30)
        assert s.sendmail(SENDER, ['you@example.test'], MSG) == {}
        s.quit()
        assert wait_until(lambda: ev.accepted()), ev.text()
        more = fill(hog.sock, 10)  # still taking nothing more than buffers
        assert more < 256 * 1024, (sent, more)
        grown = ev.rss_kb() - before
        assert grown < 8 * 1024, 'evhost grew by %d kB while blocked' % grown
        hog.close()
        s = smtplib.SMTP('127.0.0.1', ev.port, timeout=30)
        assert s.noop()[0] == 250
        s.quit()


@case
def peer_gone_while_a_decision_is_pending():
    # eof or a reset during the 10 ms decision: on_cancel stops the timer
    with Evhost() as ev:
        for k in range(20):
            c = Raw(ev.port)
            if k % 2:  # a reset instead of a FIN
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
            assert c.reply()[0] == 220
            c.send('EHLO x.example\r\nMAIL FROM:<%s>\r\nRCPT TO:<u%d@example.test>\r\n' % (SENDER, k))
            assert c.reply()[0] == 250
            c.close()
        s = smtplib.SMTP('127.0.0.1', ev.port, timeout=30)
        assert s.sendmail(SENDER, ['you@example.test'], MSG) == {}
        s.quit()
        assert wait_until(lambda: ev.accepted()), ev.text()


@case
def rfc5321_timers():
    # the divisor 300 makes 5 minutes 1 s and 10 minutes 2 s
    with Evhost(divisor=300, tls=True) as ev:
        idle = Raw(ev.port)
        assert idle.reply()[0] == 220
        t = time.monotonic()
        assert idle.reply() == (421, ['4.4.2 evhost.example.test Error: timeout exceeded'])
        assert time.monotonic() - t >= 0.9
        assert idle.closed() == b''
        # inside DATA: the message is abandoned, never accepted
        data = Raw(ev.port)
        assert data.reply()[0] == 220
        data.send('EHLO x.example\r\nMAIL FROM:<%s>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n' % SENDER)
        assert [data.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        data.send('Subject: half\r\n\r\nand then nothing')
        t = time.monotonic()
        assert data.reply()[0] == 421
        assert time.monotonic() - t >= 1.9
        assert data.closed() == b''
        assert ev.accepted() == []
        # a handshake that never comes: closed, without a cleartext word
        tls = Raw(ev.port)
        assert tls.reply()[0] == 220
        tls.send('EHLO x.example\r\nSTARTTLS\r\n')
        assert [tls.reply()[0] for _ in range(2)] == [250, 220]
        assert tls.closed() == b''
        # a peer that never reads is closed too
        hog = Raw(ev.port, rcvbuf=32768)
        hog.send('EHLO hog.example\r\n')
        fill(hog.sock, closing=True)
        hog.sock.settimeout(1)

        def reset():
            try:
                hog.sock.send(b'NOOP\r\n')
                return False
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
        assert wait_until(reset, 30)
        hog.close()


unknown = ONLY - set(n for n, _ in RESULTS)
if unknown:
    print('no such case: %s' % ' '.join(sorted(unknown)))
    sys.exit(2)
if CERT:
    shutil.rmtree(CERT['dir'], ignore_errors=True)
failed = closing_line(RESULTS)
sys.exit(1 if failed else 0)
