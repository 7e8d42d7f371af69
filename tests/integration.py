#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# integration.py - drives build/examples/smtpd as real clients do: Python's
# smtplib, raw sockets (the classic telnet walk-through, pipelining, abuse),
# and curl when it is installed. Each case starts its own server on a free
# 127.0.0.1 port with a fresh spool and stops it by PID.
# Usage: python3 tests/integration.py [path/to/smtpd [CASE...]]
# With CASE names (or LLSMTP_IT_CASES="a b"), only those cases run.
import os, re, resource, shutil, signal, smtplib, socket, ssl, struct, subprocess, sys, tempfile, threading, time
from email.message import EmailMessage

from ports import free_port, free_udp_port
from skips import Skip, require_tls, closing_line, run_case, wait_until

SMTPD = sys.argv[1] if len(sys.argv) > 1 else 'build/examples/smtpd'
ONLY = set(sys.argv[2:]) | set(os.environ.get('LLSMTP_IT_CASES', '').split())
RESULTS = []


class Server:
    def __init__(self, *extra, host='127.0.0.1', env=None, spool=None):
        self.dir = tempfile.mkdtemp(prefix='llsmtp-it-')
        self.spool = spool or os.path.join(self.dir, 'spool')
        self.queue = os.path.join(self.spool, 'queue')
        self.port = free_port()
        if '--smarthost' not in extra and '--dns' not in extra:
            # relayed mail waits in the queue: its next hop (a closed
            # loopback port) refuses, and nothing ever leaves this host
            extra = ('--smarthost', '[127.0.0.1]:%d' % free_port(), '--retry', '1h') + extra
        self.log = open(os.path.join(self.dir, 'smtpd.log'), 'w')
        self.proc = subprocess.Popen(
            [SMTPD, '--listen', '%s:%d' % (host, self.port), '--hostname', 'mx.example.test',
             '--local-domain', 'example.test', '--spool', self.spool] + list(extra),
            stderr=self.log, env=env)
        for _ in range(200):
            try:
                socket.create_connection((host, self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
        self.log.close()
        raise RuntimeError('smtpd did not start: %s' % open(self.log.name).read()[-500:])

    def stop(self, remove=True):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = 'hung'
        self.log.close()
        log = open(self.log.name).read()
        if os.environ.get('LLSMTP_IT_VERBOSE'):
            sys.stdout.write(log)
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
        # a clean stop exits 0 (and, under SANITIZE=1, leaks nothing)
        if rc != 0:
            raise AssertionError('smtpd exited %r: %s' % (rc, log[-2000:]))

    def messages(self, queued=False):
        """Local mail (in the spool), or relayed mail waiting in its queue."""
        d = self.queue if queued else self.spool
        if not os.path.isdir(d):
            return []
        return sorted(f for f in os.listdir(d) if f.endswith('.eml'))

    def body(self, name, queued=False):
        """The message as received: the .eml minus our two trace fields."""
        data = open(os.path.join(self.queue if queued else self.spool, name), 'rb').read()
        assert data.startswith(b'Return-Path: <'), data[:40]
        rest = data.split(b'\r\n', 1)[1]
        assert rest.startswith(b'Received: from '), rest[:40]
        # Received: spans lines folded with a leading TAB
        lines = rest.split(b'\r\n')
        i = 1
        while lines[i].startswith(b'\t'):
            i += 1
        return b'\r\n'.join(lines[i:])

    def envelope(self, name, queued=False):
        return open(os.path.join(self.queue if queued else self.spool, name[:-4] + '.env')).read()


def raw(port):
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    f = s.makefile('rb')
    return s, f


def reply(f):
    """Reads one whole (multiline) reply; returns (code, [lines])."""
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise EOFError('connection closed')
        assert line.endswith(b'\r\n'), line
        lines.append(line[:-2].decode('latin-1'))
        if line[3:4] == b' ':
            return int(line[:3]), lines


def wait_log(srv, text, timeout=10, count=1):
    """The server writes its log after it replied: wait (bounded) for text."""
    end = time.time() + timeout
    while True:
        srv.log.flush()
        if open(srv.log.name, errors='replace').read().count(text) >= count:
            return True
        if time.time() > end:
            return False
        time.sleep(0.02)


def case(fn):
    return run_case(fn, ONLY, RESULTS)


@case
def smtplib_send_message_several_recipients():
    srv = Server()
    try:
        m = EmailMessage()
        m['From'] = 'alice@example.org'
        m['To'] = 'bob@example.test, carol@example.test'
        m['Subject'] = 'integration'
        m.set_content('Hello.\n.A line with a leading dot\n..two dots\n.\nend\n')
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            refused = c.send_message(m, to_addrs=['bob@example.test', 'carol@example.test'])
            assert refused == {}
        msgs = srv.messages()
        assert len(msgs) == 1, msgs
        want = m.as_bytes(policy=m.policy.clone(linesep='\r\n'))
        got = srv.body(msgs[0])
        assert got == want, (got[-80:], want[-80:])
        env = srv.envelope(msgs[0])
        assert 'from <alice@example.org>' in env and 'rcpt <bob@example.test>' in env \
            and 'rcpt <carol@example.test>' in env, env
    finally:
        srv.stop()


@case
def relay_refused_for_outside_recipient():
    srv = Server()
    try:
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            c.ehlo('client.example.org')
            c.mail('alice@example.org')
            code, msg = c.rcpt('mallory@outside.test')
            assert code == 550 and msg == b'5.7.1 Unable to relay for <mallory@outside.test>', (code, msg)
            code, msg = c.rcpt('bob@example.test')
            assert code == 250, (code, msg)
    finally:
        srv.stop()


@case
def own_address_literals_are_local():
    # RFC 5321 4.1.3: the server's own literal is a local domain; the
    # policy's own addresses come from what smtpd listens on
    srv = Server(host='127.0.0.2')
    try:
        s = socket.create_connection(('127.0.0.2', srv.port), timeout=10)
        f = s.makefile('rb')
        reply(f)
        s.sendall(b'EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<postmaster@[127.0.0.2]>\r\n'
                  b'RCPT TO:<bob@[127.0.0.3]>\r\nRCPT TO:<bob@[IPv6:::1]>\r\nDATA\r\n')
        codes = [reply(f)[0] for _ in range(6)]
        assert codes == [250, 250, 250, 550, 550, 354], codes
        s.sendall(b'Subject: literal\r\n\r\nx\r\n.\r\nQUIT\r\n')
        assert reply(f)[0] == 250 and reply(f)[0] == 221
        f.close(); s.close()
        env = srv.envelope(srv.messages()[0])
        assert 'rcpt <postmaster@[127.0.0.2]> local' in env, env
    finally:
        srv.stop()


@case
def accepted_recipients_are_logged_together():
    # a transaction's accepted recipients are logged together when its
    # message starts (or the transaction ends without one: RSET, QUIT), as
    # many to a line as fit in 1,024 octets, local and relayed ones on
    # lines of their own; each exactly once; a refused one has its own
    # "refused" line instead; one recipient is the line it always was
    srv = Server('--relay-domain', 'partner.test')
    try:
        local = ['user%02d.with-a-longer-local-part@example.test' % i for i in range(60)]
        relayed = ['far%d@partner.test' % i for i in range(3)]
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            c.ehlo('client.example.org')
            c.mail('a@example.org')
            for i, r in enumerate(local):
                assert c.rcpt(r)[0] == 250
                if i % 25 == 0:
                    assert c.rcpt(relayed[i // 25])[0] == 250
            assert c.rcpt('x@elsewhere.test')[0] == 550
            assert c.data(b'Subject: many\r\n\r\nx\r\n')[0] == 250
            c.mail('b@example.org')
            assert c.rcpt('reset@example.test')[0] == 250
            assert c.rset()[0] == 250
            c.mail('c@example.org')
            assert c.rcpt('Quit@Example.Test')[0] == 250
        # QUIT: logged as the session ends (the probe Server makes closes
        # first)
        assert wait_log(srv, ' close', count=2)
        lines = open(srv.log.name).read().splitlines()
        rl = [l for l in lines if ' rcpt=<' in l]
        assert all(len(l) + 1 <= 1024 for l in rl), rl
        assert 4 < len(rl) < 20, rl  # 60 long paths take a few lines
        seen = []
        for l in rl:
            assert l.endswith('> accepted=local') or l.endswith('> accepted=relay'), l
            paths = [p.split('>')[0] for p in l.split(' rcpt=<')[1:]]
            kind = 'relay' if l.endswith('relay') else 'local'
            assert all((p in relayed) == (kind == 'relay') for p in paths), l
            seen += paths
        assert sorted(seen) == sorted(local + relayed + ['reset@example.test', 'Quit@Example.Test']), seen
        # before the message's own line, after its sender's
        text = '\n'.join(lines)
        assert text.index('mail=<a@example.org>') < text.index('rcpt=<user00.') < text.index('queued=')
        assert 'x@elsewhere.test' not in ''.join(rl)
        assert wait_log(srv, 'cmd=RCPT arg="TO:<x@elsewhere.test>" reply=550 5.7.1')
        one = [l for l in rl if 'reset@' in l][0]
        assert one.split(': ', 1)[1].split(' ', 1)[1] == 'rcpt=<reset@example.test> accepted=local', one
        assert 'rcpt=<Quit@Example.Test> accepted=local' in text
    finally:
        srv.stop()


@case
def relay_domains_and_networks():
    srv = Server('--relay-domain', 'partner.test', '--relay-domain', '.hosted.test')
    try:
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            c.ehlo('client.example.org')
            c.mail('a@example.org')
            assert c.rcpt('x@partner.test')[0] == 250
            assert c.rcpt('x@mx.hosted.test')[0] == 250
            assert c.rcpt('x@hosted.test')[0] == 550
            assert c.rcpt('user%outside.test@example.test')[0] == 550
            assert c.rcpt('"user@outside.test"@example.test')[0] == 550
            assert c.docmd('RCPT TO:<@example.test:user@outside.test>')[0] == 550
            assert c.rcpt('bob@example.test')[0] == 250
            code, _ = c.data(b'Subject: r\r\n\r\nx\r\n')
            assert code == 250
        # one message, two envelopes: the local recipient's in the spool,
        # the relayed ones' in the queue (the same file, hard-linked)
        env = srv.envelope(srv.messages()[0])
        assert 'rcpt <bob@example.test> local' in env and 'relay' not in env, env
        q = srv.messages(queued=True)
        assert q == srv.messages(), (q, srv.messages())
        env = srv.envelope(q[0], queued=True)
        assert 'rcpt <x@partner.test> relay' in env and 'rcpt <x@mx.hosted.test> relay' in env \
            and 'local' not in env, env
        assert os.stat(os.path.join(srv.queue, q[0])).st_ino == \
            os.stat(os.path.join(srv.spool, q[0])).st_ino
        # operators see relay probes in the log
        assert wait_log(srv, 'refused client=127.0.0.1 cmd=RCPT arg="TO:<user%outside.test@example.test>" '
                        'reply=550 5.7.1 Unable to relay'), open(srv.log.name).read()
    finally:
        srv.stop()
    # a trusted network relays anywhere
    srv = Server('--relay-net', '127.0.0.0/8')
    try:
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            assert c.sendmail('a@example.org', ['x@anywhere.test'], b'Subject: r\r\n\r\nx\r\n') == {}
        assert srv.messages() == [] and len(srv.messages(queued=True)) == 1
    finally:
        srv.stop()
    r = subprocess.run([SMTPD, '--relay-net', '10.1.2.3/8'], capture_output=True)
    assert r.returncode == 2 and b'bits set beyond its prefix' in r.stderr, r


@case
def recipient_verification_refuses_unknown_users():
    # as Postfix's local_recipient_maps / relay_recipient_maps: unknown
    # recipients are refused at RCPT, never accepted and bounced later
    d = tempfile.mkdtemp(prefix='llsmtp-rcpt-')
    local, relay = os.path.join(d, 'local'), os.path.join(d, 'relay')
    open(local, 'w').write('# mailboxes\nbob@example.test\n  Dora@Example.TEST  # comment\n\n@catchall.test\n')
    open(relay, 'w').write('x@partner.test\n@all.partner2.test\n')
    srv = Server('--local-domain', 'catchall.test', '--relay-domain', 'partner.test',
                 '--relay-domain', '.partner2.test', '--recipients', local,
                 '--relay-recipients', relay, '--user', 'carol:pw')
    try:
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            c.ehlo('client.example.org')
            c.mail('a@example.org')
            for rcpt in ('bob@example.test', 'BOB@EXAMPLE.TEST', 'dora@example.test', 'anyone@catchall.test',
                         'carol@example.test', 'postmaster@example.test', 'x@partner.test',
                         'y@all.partner2.test'):
                assert c.rcpt(rcpt)[0] == 250, rcpt
            assert c.docmd('RCPT TO:<Postmaster>')[0] == 250
            # RFC 5321 4.1.2: a quoted local part that needs no quotes is
            # the same mailbox; one that needs them is not bob
            assert c.docmd('RCPT TO:<"bob"@example.test>')[0] == 250
            assert c.docmd('RCPT TO:<"x"@partner.test>')[0] == 250
            assert c.docmd('RCPT TO:<"bob "@example.test>')[0] == 550
            for rcpt in ('nobody@example.test', 'y@partner.test', 'x@other.partner2.test'):
                code, msg = c.rcpt(rcpt)
                assert code == 550 and msg == b'5.1.1 <%s>: Recipient address rejected: User unknown' \
                    % rcpt.encode(), (rcpt, code, msg)
            assert c.rcpt('far@outside.test')[0] == 550  # still no relaying
        assert wait_log(srv, 'cmd=RCPT arg="TO:<nobody@example.test>" reply=550 5.1.1'), open(srv.log.name).read()
        # the client's text is quoted: a forged " reply=250" stays inside
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            c.ehlo('x')
            assert c.docmd('MAIL FROM:<a@example.org> X=\\" reply=250 2.0.0 Ok"')[0] == 501
        assert wait_log(srv, 'cmd=MAIL arg="FROM:<a@example.org> X=?? reply=250 2.0.0 Ok?" reply=501 5.5.4'), \
            open(srv.log.name).read()
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)
    # without the files every recipient of the domains is taken
    srv = Server('--relay-domain', 'partner.test')
    try:
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            c.ehlo('x')
            c.mail('a@example.org')
            assert c.rcpt('nobody@example.test')[0] == 250 and c.rcpt('y@partner.test')[0] == 250
    finally:
        srv.stop()
    r = subprocess.run([SMTPD, '--recipients', '/nonexistent/file'], capture_output=True, timeout=10)
    assert r.returncode == 2 and b'--recipients' in r.stderr, r


@case
def auth_plain_and_login_with_smtplib():
    srv = Server('--user', 'alice:s3cret pass', '--insecure-auth')
    try:
        for mech in ('PLAIN', 'LOGIN'):
            with smtplib.SMTP('127.0.0.1', srv.port) as c:
                c.ehlo('client.example.org')
                assert 'auth' in c.esmtp_features, c.esmtp_features
                try:
                    c.login('alice', 'wrong')
                    raise AssertionError('wrong password accepted')
                except smtplib.SMTPAuthenticationError as e:
                    assert e.smtp_code == 535, e
                c.user, c.password = 'alice', 's3cret pass'
                # PLAIN with an initial response, LOGIN without one
                code, msg = c.auth(mech, getattr(c, 'auth_' + mech.lower()),
                                   initial_response_ok=(mech == 'PLAIN'))
                assert code == 235, (code, msg)
                # authenticated: may relay anywhere
                assert c.sendmail('alice@example.test', ['x@elsewhere.test'],
                                  b'Subject: a\r\n\r\nx\r\n') == {}
        msgs = srv.messages(queued=True)
        assert len(msgs) == 2 and srv.messages() == [], msgs
        env = srv.envelope(msgs[0], queued=True)
        assert 'auth alice' in env and 'protocol ESMTPA' in env and 'rcpt <x@elsewhere.test> relay' in env, env
        eml = open(os.path.join(srv.queue, msgs[0]), 'rb').read()
        assert b'with ESMTPA id' in eml, eml[:300]
    finally:
        srv.stop()
    # without --insecure-auth, AUTH waits for TLS
    srv = Server('--user', 'alice:pw')
    try:
        s, f = raw(srv.port)
        reply(f)
        s.sendall(b'EHLO x\r\n')
        code, lines = reply(f)
        assert not any('AUTH' in l for l in lines), lines
        s.sendall(b'AUTH PLAIN AGFsaWNlAHB3\r\n')
        assert reply(f) == (538, ['538 5.7.11 Encryption required for requested authentication mechanism'])
        f.close(); s.close()
    finally:
        srv.stop()


@case
def ten_megabyte_message_intact():
    srv = Server('--max-size', '20000000')
    try:
        body = b''.join(b'%07d ' % i + b'x' * 70 + b'\r\n' for i in range(130000))
        data = b'Subject: big\r\n\r\n' + body
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            c.sendmail('a@example.org', ['b@example.test'], data)
        msgs = srv.messages()
        assert len(msgs) == 1
        assert srv.body(msgs[0]) == data
    finally:
        srv.stop()


@case
def telnet_walkthrough_pipelined_and_plain():
    srv = Server()
    try:
        s, f = raw(srv.port)
        code, lines = reply(f)
        assert code == 220 and lines[0].startswith('220 mx.example.test ESMTP'), lines
        s.sendall(b'EHLO client.example.org\r\n')
        code, lines = reply(f)
        assert code == 250 and 'PIPELINING' in lines[1], lines
        s.sendall(b'MAIL FROM:<alice@example.org>\r\n')
        assert reply(f) == (250, ['250 2.1.0 Sender <alice@example.org> OK'])
        s.sendall(b'RCPT TO:<outside@elsewhere.test>\r\n')
        assert reply(f) == (550, ['550 5.7.1 Unable to relay for <outside@elsewhere.test>'])
        s.sendall(b'RCPT TO:<bob@example.test>\r\n')
        assert reply(f)[0] == 250
        s.sendall(b'DATA\r\n')
        assert reply(f)[0] == 354
        s.sendall(b'Subject: walk\r\n\r\nhi\r\n.\r\n')
        code, lines = reply(f)
        assert code == 250 and 'Queued mail for delivery' in lines[0], lines
        # the whole next transaction in one write (RFC 2920)
        s.sendall(b'MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n')
        assert [reply(f)[0] for _ in range(3)] == [250, 250, 354]
        s.sendall(b'second\r\n.\r\nQUIT\r\n')
        assert reply(f)[0] == 250
        assert reply(f) == (221, ['221 2.0.0 mx.example.test Service closing transmission channel'])
        assert f.read() == b''
        f.close(); s.close()
        assert len(srv.messages()) == 2
    finally:
        srv.stop()


@case
def bad_input_and_server_keeps_serving():
    srv = Server()
    try:
        other, of = raw(srv.port)
        reply(of)
        s, f = raw(srv.port)
        reply(f)
        s.sendall(b'EHLO x\r\n')
        reply(f)
        s.sendall(b'NOOP ' + b'A' * 100000 + b'\r\n')
        assert reply(f) == (500, ['500 5.5.2 Error: line too long'])
        s.sendall(b'MAIL FROM:<a\0b@example.org>\r\n')
        assert reply(f)[0] == 501
        s.sendall(b'\0\0\0\r\n')
        assert reply(f)[0] == 500
        # another client is still served
        other.sendall(b'NOOP\r\n')
        assert reply(of)[0] == 250
        # syntax errors until the limit: 421 and close
        s.sendall(b'BOGUS\r\n' * 50)
        codes = []
        try:
            while True:
                codes.append(reply(f)[0])
        except EOFError:
            pass
        assert codes[-1] == 421 and all(c == 500 for c in codes[:-1]), codes
        assert len(codes) <= 20, codes
        f.close(); s.close()
        other.sendall(b'QUIT\r\n')
        assert reply(of)[0] == 221
        of.close(); other.close()
    finally:
        srv.stop()


@case
def disconnect_mid_data_leaves_no_message():
    srv = Server()
    try:
        s, f = raw(srv.port)
        reply(f)
        s.sendall(b'HELO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n')
        for _ in range(4):
            reply(f)
        s.sendall(b'Subject: cut\r\n\r\n' + b'partial ' * 10000)
        time.sleep(0.2)
        s.shutdown(socket.SHUT_RDWR)  # close() waits for the makefile too
        s.close()
        # the server notices the close on its next read
        wait_until(lambda: os.listdir(os.path.join(srv.spool, "tmp")) == [], 10)
        assert srv.messages() == []
        left = os.listdir(os.path.join(srv.spool, "tmp"))
        assert left == [], (left, open(srv.log.name).read())
    finally:
        srv.stop()


@case
def size_limits():
    srv = Server('--max-size', '1000')
    try:
        s, f = raw(srv.port)
        reply(f)
        s.sendall(b'EHLO x\r\n')
        code, lines = reply(f)
        assert '250-SIZE 1000' in lines, lines
        s.sendall(b'MAIL FROM:<a@example.org> SIZE=2000\r\n')
        assert reply(f) == (552, ['552 5.3.4 Message size exceeds fixed maximum message size'])
        s.sendall(b'MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n')
        assert [reply(f)[0] for _ in range(3)] == [250, 250, 354]
        s.sendall(b'x' * 3000 + b'\r\n.\r\n')
        assert reply(f)[0] == 552
        f.close(); s.close()
        time.sleep(0.1)
        assert srv.messages() == []
    finally:
        srv.stop()


@case
def mail_loops_are_refused_by_hop_count():
    # more Received: headers than --max-hops (default 50, Postfix's
    # hopcount_limit): 554 5.4.6 at the end of data, DATA and BDAT alike
    def msg(hops):
        return b''.join(b'Received: from h%d by h%d; Thu, 1 Jan 2026 00:00:00 +0000\r\n' % (i, i + 1)
                        for i in range(hops)) + b'Subject: loop\r\n\r\nReceived: in the body\r\n' * 3
    srv = Server()
    small = None
    try:
        small = Server('--max-hops', '2')
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            assert c.sendmail('a@example.org', ['b@example.test'], msg(50)) == {}
            try:
                c.sendmail('a@example.org', ['b@example.test'], msg(51))
                raise AssertionError('a looping message was accepted')
            except smtplib.SMTPDataError as e:
                assert e.smtp_code == 554 and e.smtp_error == b'5.4.6 Too many hops', e
        s, f = raw(srv.port)
        reply(f)
        # folded and lower-case headers count; the split falls inside one
        m = b'received: from a\r\n\tby b; x\r\n' * 51 + b'\r\nbody\r\n'
        s.sendall(b'EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n'
                  b'BDAT 7\r\n' + m[:7] + b'BDAT %d LAST\r\n' % (len(m) - 7) + m[7:])
        codes = [reply(f)[0] for _ in range(5)]
        assert codes == [250, 250, 250, 250, 554], codes
        f.close(); s.close()
        assert len(srv.messages()) == 1, srv.messages()
        with smtplib.SMTP('127.0.0.1', small.port) as c:
            assert c.sendmail('a@example.org', ['b@example.test'], msg(2)) == {}
            try:
                c.sendmail('a@example.org', ['b@example.test'], msg(3))
                raise AssertionError('a third hop was accepted')
            except smtplib.SMTPDataError as e:
                assert e.smtp_code == 554, e
            # RFC 5322 4.5 (obs-optional): blanks before the colon still
            # make a Received: field
            for name in (b'Received :', b'Received\t:'):
                try:
                    c.sendmail('a@example.org', ['b@example.test'],
                               (name + b' from x by y; z\r\n') * 3 + b'\r\nbody\r\n')
                    raise AssertionError('%r escaped the hop count' % name)
                except smtplib.SMTPDataError as e:
                    assert e.smtp_code == 554, e
        assert len(small.messages()) == 1 and os.listdir(os.path.join(small.spool, 'tmp')) == []
    finally:
        srv.stop()
        if small:
            small.stop()


@case
def smtp_smuggling_is_not_an_end_of_data():
    srv = Server()
    try:
        s, f = raw(srv.port)
        reply(f)
        s.sendall(b'EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n')
        for _ in range(4):
            reply(f)
        s.sendall(b'Subject: s\r\n\r\nA\n.\nMAIL FROM:<evil@example.org>\r\n'
                  b'RCPT TO:<b@example.test>\r\nDATA\r\nforged\r\n.\r\nQUIT\r\n')
        assert reply(f)[0] == 250
        assert reply(f)[0] == 221
        f.close(); s.close()
        msgs = srv.messages()
        assert len(msgs) == 1, msgs
        body = srv.body(msgs[0])
        assert b'\n' not in body.replace(b'\r\n', b''), body
        assert b'MAIL FROM:<evil@example.org>' in body
    finally:
        srv.stop()


@case
def http_request_is_refused():
    srv = Server()
    try:
        s, f = raw(srv.port)
        reply(f)
        s.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n\r\n')
        code, lines = reply(f)
        assert code == 421, lines
        assert f.read() == b''
        f.close(); s.close()
    finally:
        srv.stop()


@case
def curl_upload():
    if shutil.which('curl') is None:
        raise RuntimeError('curl is not installed (make deps installs it)')
    srv = Server()
    try:
        path = os.path.join(srv.dir, 'msg.txt')
        data = b'From: a@example.org\r\nTo: b@example.test\r\nSubject: curl\r\n\r\n' \
               b'.dot line\r\nbody\r\n'
        open(path, 'wb').write(data)
        subprocess.run(['curl', '-sS', 'smtp://127.0.0.1:%d' % srv.port,
                        '--mail-from', 'a@example.org', '--mail-rcpt', 'b@example.test',
                        '--upload-file', path], check=True, timeout=30)
        msgs = srv.messages()
        assert len(msgs) == 1 and srv.body(msgs[0]) == data, msgs
    finally:
        srv.stop()


@case
def idle_timeout_and_clean_stop():
    srv = Server('--timeout', '1')
    try:
        s, f = raw(srv.port)
        reply(f)
        t0 = time.time()
        assert reply(f) == (421, ['421 4.4.2 mx.example.test Error: timeout exceeded'])
        assert time.time() - t0 < 10
        assert f.read() == b''
        f.close(); s.close()
    finally:
        srv.stop()  # SIGTERM with no sessions: exit 0


@case
def discard_mode_writes_nothing():
    srv = Server('--discard')
    try:
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            c.sendmail('a@example.org', ['b@example.test'], b'Subject: x\r\n\r\ny\r\n')
        assert srv.messages() == []
    finally:
        srv.stop()


@case
def bad_command_line_exits_2():
    r = subprocess.run([SMTPD, '--no-such-option'], capture_output=True)
    assert r.returncode == 2 and b'unknown option' in r.stderr, r
    r = subprocess.run([SMTPD, '--max-rcpt', 'ten'], capture_output=True)
    assert r.returncode == 2, r
    r = subprocess.run([SMTPD, '--help'], capture_output=True)
    assert r.returncode == 0 and b'--listen ADDR:PORT' in r.stdout, r


@case
def readme_hello_example():
    hello = os.path.join(os.path.dirname(SMTPD), 'hello')
    r = subprocess.run([hello], input=b'HELO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n'
                       b'DATA\r\nhi\r\n..dot\r\n.\r\nQUIT\r\n', capture_output=True, timeout=10)
    assert r.stdout.endswith(b'250 2.6.0 Queued mail for delivery\r\n'
                             b'221 2.0.0 mx.example.test Service closing transmission channel\r\n'), r.stdout
    assert r.stderr == b'hi\r\n.dot\r\n', r.stderr


@case
def mxlookup_against_dnsmasq():
    dnsmasq = shutil.which('dnsmasq') or '/usr/sbin/dnsmasq'
    if not os.path.exists(dnsmasq):
        raise RuntimeError('dnsmasq is not installed (make deps installs it)')
    mxlookup = os.path.join(os.path.dirname(SMTPD), 'mxlookup')
    port = free_udp_port()
    d = subprocess.Popen([dnsmasq, '--no-daemon', '--port=%d' % port, '--listen-address=127.0.0.1',
                          '--bind-interfaces', '--no-resolv', '--no-hosts', '--local=/test/',
                          '--conf-file=/dev/null',
                          '--mx-host=company.test,mx1.company.test,10',
                          '--mx-host=company.test,mx2.company.test,20',
                          '--host-record=mx1.company.test,192.0.2.1',
                          '--host-record=mx2.company.test,192.0.2.2,2001:db8::2',
                          '--mx-host=equal.test,a.equal.test,10', '--mx-host=equal.test,b.equal.test,10',
                          '--mx-host=equal.test,c.equal.test,10',
                          '--mx-host=nullmx.test,.,0',
                          '--host-record=implicit.test,192.0.2.50',
                          '--mx-host=loop.test,me.test,10', '--mx-host=loop.test,backup.test,20',
                          '--cname=alias.test,company.test'] +
                         # 40 MX, the best last: the UDP answer is truncated, TCP gets all
                         ['--mx-host=many.test,mx%02d.many.test,%d' % (p, p)
                          for p in list(range(13, 45)) + list(range(5, 13))],
                         stderr=subprocess.DEVNULL)
    try:
        def run(*args):
            return subprocess.run([mxlookup, '--server', '127.0.0.1:%d' % port] + list(args),
                                  capture_output=True, timeout=30)
        for _ in range(100):
            r = run('company.test')
            if r.returncode != 1:
                break
            time.sleep(0.05)
        assert r.returncode == 0, r
        out = r.stdout.decode()
        assert 'company.test    MX preference = 10, mail exchanger = mx1.company.test' in out, out
        assert 'company.test    MX preference = 20, mail exchanger = mx2.company.test' in out, out
        assert 'mx1.company.test        internet address = 192.0.2.1' in out, out
        assert out.endswith('delivery order:\n'
                            '  1. mx1.company.test (preference 10) 192.0.2.1\n'
                            '  2. mx2.company.test (preference 20) 192.0.2.2, 2001:db8::2\n') or \
            out.endswith('delivery order:\n'
                         '  1. mx1.company.test (preference 10) 192.0.2.1\n'
                         '  2. mx2.company.test (preference 20) 2001:db8::2, 192.0.2.2\n'), out
        t = run('--tcp', 'company.test')
        assert t.returncode == 0 and '  1. mx1.company.test (preference 10) 192.0.2.1\n' in t.stdout.decode(), t
        # equal preferences: order depends on the seed only
        orders = set()
        for seed in range(30):
            o = run('--seed', str(seed), 'equal.test')
            assert o.returncode == 0, o
            again = run('--seed', str(seed), 'equal.test')
            first = o.stdout.decode().split('delivery order:\n')[1]
            assert first == again.stdout.decode().split('delivery order:\n')[1]
            orders.add(first.splitlines()[0])
        assert len(orders) == 3, orders
        r = run('nullmx.test')
        assert r.returncode == 2 and b'accepts no mail' in r.stderr, r
        r = run('nosuch.test')
        assert r.returncode == 3 and b'no such domain' in r.stderr, r
        r = run('--local', 'me.test', 'loop.test')
        assert r.returncode == 4 and b'loop back' in r.stderr, r
        r = run('--local', 'backup.test', 'loop.test')
        assert r.returncode == 0 and r.stdout.decode().endswith('  1. me.test (preference 10) (no address)\n'), r
        r = run('implicit.test')
        assert r.returncode == 0 and '  1. implicit.test (preference 0) 192.0.2.50' in r.stdout.decode(), r
        r = run('alias.test')
        assert r.returncode == 0 and 'mx1.company.test (preference 10)' in r.stdout.decode(), r
        # more MX records than mxlookup keeps (32): the best are kept, and it says so
        r = run('many.test')
        out = r.stdout.decode()
        assert r.returncode == 0 and 'were dropped' in out, r
        order = out.split('delivery order:\n')[1].splitlines()
        assert [l.split()[1] for l in order] == ['mx%02d.many.test' % p for p in range(5, 37)], out
    finally:
        d.terminate()
        d.wait(timeout=10)
    # nothing listening: an error, reported on one line
    r = subprocess.run([mxlookup, '--server', '127.0.0.1:%d' % free_udp_port(), 'company.test'],
                       capture_output=True, timeout=60)
    assert r.returncode == 1 and r.stderr.count(b'\n') == 1, r


@case
def bdat_binarymime_through_a_socket():
    srv = Server()
    try:
        s, f = raw(srv.port)
        reply(f)
        s.sendall(b'EHLO x\r\n')
        code, lines = reply(f)
        for ext in ('CHUNKING', 'BINARYMIME', 'DSN', 'SMTPUTF8', 'ETRN'):
            assert any(l[4:] == ext for l in lines), (ext, lines)
        body = bytes(range(256)) * 40 + b'\r\n.\r\n\n.\n'
        a, b = body[:7000], body[7000:]
        # the whole transaction pipelined, binary chunks with NUL, bare LF
        # and a fake end-of-data inside
        s.sendall(b'MAIL FROM:<a@example.org> BODY=BINARYMIME RET=HDRS ENVID=id+2B1\r\n'
                  b'RCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.test\r\n'
                  + b'BDAT %d\r\n' % len(a) + a + b'BDAT %d LAST\r\n' % len(b) + b)
        assert [reply(f)[0] for _ in range(2)] == [250, 250]
        assert reply(f) == (250, ['250 2.0.0 %d octets received' % len(a)])
        code, lines = reply(f)
        assert code == 250 and 'Queued mail for delivery' in lines[0], lines
        s.sendall(b'ETRN example.test\r\n')
        assert reply(f) == (251, ['251 2.0.0 No messages waiting for node example.test'])
        s.sendall(b'QUIT\r\n')
        assert reply(f)[0] == 221
        f.close(); s.close()
        m = srv.messages()
        assert len(m) == 1 and srv.body(m[0]) == body
        env = srv.envelope(m[0])
        assert 'body BINARYMIME' in env and 'mail-params BODY=BINARYMIME RET=HDRS ENVID=id+2B1' in env, env
        assert 'rcpt <b@example.test> local NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.test' in env, env
    finally:
        srv.stop()
    srv = Server('--no-chunking')
    try:
        s, f = raw(srv.port)
        reply(f)
        s.sendall(b'EHLO x\r\n')
        code, lines = reply(f)
        assert not any('CHUNKING' in l or 'BINARYMIME' in l for l in lines), lines
        s.sendall(b'BDAT 0 LAST\r\n')
        assert reply(f)[0] == 502
        f.close(); s.close()
    finally:
        srv.stop()


def spool_with_a_blocking_envelope():
    """A spool whose queue holds one entry for x@far.test, not due; once
    smtpd has started on it, block() makes the envelope a FIFO nobody
    writes (an ETRN scan waits in open() there, as on a stuck disk) and
    unblock() lets every reader see its end. (dir, spool, block,
    unblock)"""
    d = tempfile.mkdtemp(prefix='llsmtp-etrn-')
    spool = os.path.join(d, 'spool')
    os.makedirs(os.path.join(spool, 'queue'))
    fifo = os.path.join(spool, 'queue', '00000000000000000001.env')
    open(fifo[:-4] + '.eml', 'wb').write(b'Return-Path: <a@example.org>\r\n\r\nx\r\n')
    open(fifo, 'w').write('version 1\nid 00000000000000000001\nfrom <a@example.org>\n'
                          'rcpt <x@far.test> relay\n')
    open(fifo[:-4] + '.st', 'w').write('N 4000000000 1\n')  # not due: no runner

    def block():
        os.unlink(fifo)  # known to the queue; now reading it blocks
        os.mkfifo(fifo)

    def unblock():
        # every reader blocked in open() sees end of file
        for _ in range(5):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            time.sleep(0.05)
    return d, spool, block, unblock


def children(pid, zombies=False):
    """Processes whose parent is pid: the live ones, or (zombies=True)
    the ended ones it has not reaped yet."""
    out = []
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                f = open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(f[1]) == pid and (f[0] == 'Z') == zombies:
                out.append(int(p))
    return out


def ask_etrn(port):
    """A session that asked ETRN far.test (its EHLO answered; the ETRN's
    answer not read). (socket, file)"""
    s, f = raw(port)
    reply(f)
    s.sendall(b'EHLO x\r\nETRN far.test\r\n')
    assert reply(f)[0] == 250
    return s, f


@case
def etrn_scan_does_not_stall_other_sessions():
    # ETRN reads every queue envelope: in a child process, so a slow disk
    # (here: an envelope that is a FIFO nobody writes) stalls only the
    # client that asked, never the event loop
    d, spool, block, unblock = spool_with_a_blocking_envelope()
    srv = Server('--spool', spool)
    try:
        block()
        s, f = raw(srv.port)
        other, of = raw(srv.port)
        reply(f), reply(of)
        s.sendall(b'EHLO x\r\nETRN far.test\r\n')
        assert reply(f)[0] == 250
        time.sleep(0.3)
        other.settimeout(5)
        other.sendall(b'NOOP\r\n')
        assert reply(of)[0] == 250  # served while the scan waits
        unblock()
        assert reply(f) == (251, ['251 2.0.0 No messages waiting for node far.test'])
        s.sendall(b'NOOP\r\n')
        assert reply(f)[0] == 250
        f.close(); s.close(); of.close(); other.close()
    finally:
        unblock()
        srv.stop()
        unblock()
        shutil.rmtree(d, ignore_errors=True)


@case
def etrn_scans_end_with_their_sessions():
    # At most 4 ETRN scans at once (each reads every envelope): counted by
    # the scans that run, not by the sessions that wait for them, so a
    # client that asks and resets the connection, again and again, cannot
    # leave a process behind each time (here each would wait forever)
    d, spool, block, unblock = spool_with_a_blocking_envelope()
    srv = Server('--spool', spool)
    try:
        block()
        for i in range(6):
            s, f = ask_etrn(srv.port)
            assert wait_until(lambda: len(children(srv.proc.pid)) == 1, 5), \
                (i, children(srv.proc.pid))  # its scan runs
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            f.close(); s.close()  # RST
            assert wait_until(lambda: not children(srv.proc.pid), 5), \
                (i, children(srv.proc.pid))  # and ends with it
        # and the limit still holds: 4 scans, the fifth client told to wait
        waiting = []
        for _ in range(4):
            s, f = ask_etrn(srv.port)
            waiting.append((s, f))
        assert wait_until(lambda: len(children(srv.proc.pid)) == 4, 5), children(srv.proc.pid)
        s, f = ask_etrn(srv.port)
        assert reply(f) == (458, ['458 4.3.0 Unable to queue messages for node far.test'])
        f.close(); s.close()
        unblock()
        for s, f in waiting:
            assert reply(f) == (251, ['251 2.0.0 No messages waiting for node far.test'])
            f.close(); s.close()
    finally:
        unblock()
        srv.stop()
        unblock()
        shutil.rmtree(d, ignore_errors=True)


@case
def etrn_slots_of_killed_scans_free_without_another_event():
    # Four sessions ask for a scan (each blocks) and reset the connection:
    # their scans are killed, so none runs. A fifth session, connected
    # before, then asks: it must not be told 458 (no scan runs), yet the
    # killed children wait unreaped until some other event wakes the loop
    # (no SIGCHLD wakes poll), and their slots with them
    d, spool, block, unblock = spool_with_a_blocking_envelope()
    srv = Server('--spool', spool)
    try:
        block()
        x, xf = raw(srv.port)
        reply(xf)
        x.sendall(b'EHLO x\r\n')
        assert reply(xf)[0] == 250
        waiting = []
        for _ in range(4):
            s, f = ask_etrn(srv.port)
            waiting.append((s, f))
        assert wait_until(lambda: len(children(srv.proc.pid)) == 4, 5), children(srv.proc.pid)
        for s, f in waiting:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            f.close(); s.close()  # RST, all four at once
        assert wait_until(lambda: not children(srv.proc.pid), 5), children(srv.proc.pid)
        time.sleep(0.5)
        zombies = children(srv.proc.pid, zombies=True)
        x.sendall(b'ETRN far.test\r\n')
        time.sleep(0.3)
        unblock()
        got = reply(xf)
        assert got[0] != 458, (got, 'unreaped killed scans', zombies)
        xf.close(); x.close()
    finally:
        unblock()
        srv.stop()
        unblock()
        shutil.rmtree(d, ignore_errors=True)


@case
def etrn_four_sessions_asking_in_turn_are_never_refused():
    # Four sessions, each asking again as soon as its ETRN is answered:
    # never more than 4 scans at once, so none is told 458. A scan that
    # has answered (its pipe at end of file) is over, even if the loop has
    # not reaped its child yet
    d, spool, block, unblock = spool_with_a_blocking_envelope()
    srv = Server('--spool', spool)
    codes = {}
    lock = threading.Lock()

    def worker():
        s, f = raw(srv.port)
        reply(f)
        s.sendall(b'EHLO x\r\n')
        reply(f)
        for _ in range(200):
            s.sendall(b'ETRN far.test\r\n')
            c = reply(f)[0]
            with lock:
                codes[c] = codes.get(c, 0) + 1
        f.close(); s.close()
    try:
        ts = [threading.Thread(target=worker) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert 458 not in codes, codes
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


@case
def smtputf8_with_smtplib():
    srv = Server()
    try:
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            c.ehlo('client.example.org')
            assert c.has_extn('smtputf8')
            refused = c.sendmail('j\u00f6rg@example.org', ['\u7528\u6237@example.test'],
                                 'Subject: utf8\r\n\r\nh\u00e9llo\r\n'.encode(), mail_options=['SMTPUTF8'])
            assert refused == {}, refused
        env = srv.envelope(srv.messages()[0])
        assert 'smtputf8 yes' in env and 'rcpt <\u7528\u6237@example.test>' in env, env
    finally:
        srv.stop()


@case
def proxy_protocol_behind_a_balancer():
    srv = Server('--proxy-protocol', '--proxy-from', '127.0.0.1', '--relay-net', '10.0.0.0/8')
    try:
        # v1: a client in the trusted network, as the balancer says
        s, f = raw(srv.port)
        s.sendall(b'PROXY TCP4 10.9.8.7 192.0.2.25 40000 25\r\n')
        assert reply(f)[0] == 220
        s.sendall(b'EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<far@outside.test>\r\nDATA\r\n')
        assert [reply(f)[0] for _ in range(4)] == [250, 250, 250, 354]
        s.sendall(b'Subject: p\r\n\r\nx\r\n.\r\nQUIT\r\n')
        assert reply(f)[0] == 250
        f.close(); s.close()
        # v2 with an outside client: no relaying
        s, f = raw(srv.port)
        s.sendall(b'\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c' + bytes([203, 0, 113, 9, 192, 0, 2, 25]) +
                  (40001).to_bytes(2, 'big') + (25).to_bytes(2, 'big'))
        assert reply(f)[0] == 220
        s.sendall(b'EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<far@outside.test>\r\n')
        assert [reply(f)[0] for _ in range(3)] == [250, 250, 550]
        f.close(); s.close()
        # no header: closed without a greeting
        s, f = raw(srv.port)
        s.sendall(b'EHLO x\r\n')
        assert f.read() == b''
        f.close(); s.close()
        env = srv.envelope(srv.messages(queued=True)[0], queued=True)
        assert 'client 10.9.8.7' in env, env
        assert wait_log(srv, 'connect from 203.0.113.9 via 127.0.0.1'), open(srv.log.name).read()
    finally:
        srv.stop()


def raw_from(src, port, host='127.0.0.1'):
    """A connection from the source address src (another 127.x, ::1)."""
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((src, 0))
    s.connect((host, port))
    return s, s.makefile('rb')


def no_reply(f):
    """The server closed without a word: EOF, or a reset when it closed
    with our bytes unread."""
    try:
        return f.read() == b''
    except ConnectionResetError:
        return True


def proxy_v1(src, dst='127.0.0.1', sport=40000, dport=25):
    fam = b'TCP6' if ':' in src else b'TCP4'
    return b'PROXY %s %s %s %d %d\r\n' % (fam, src.encode(), dst.encode(), sport, dport)


@case
def proxy_header_only_from_proxy_from_sources():
    # --proxy-protocol alone would believe anyone's header: refused
    r = subprocess.run([SMTPD, '--proxy-protocol', '--spool', '/nonexistent/x'],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b'--proxy-from' in r.stderr, r
    # a network written with host bits (10.1.2.3/8) is a mistake: refused
    r = subprocess.run([SMTPD, '--proxy-protocol', '--proxy-from', '10.1.2.3/8'],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b'--proxy-from' in r.stderr, r
    # a network of everyone is allowed, with a warning on stderr
    for everyone in ('0.0.0.0/0', '::/0'):
        srv = Server('--proxy-protocol', '--proxy-from', everyone)
        try:
            assert wait_log(srv, 'warning: --proxy-from %s trusts every address' % everyone), \
                open(srv.log.name).read()
        finally:
            srv.stop()
    srv = Server('--proxy-protocol', '--proxy-from', '127.0.0.0/8')
    try:
        assert 'warning' not in open(srv.log.name).read()
    finally:
        srv.stop()
    port6 = free_port('::1')
    srv = Server('--proxy-protocol', '--proxy-from', '127.0.0.1/32', '--proxy-from', '::1/128',
                 '--listen', '[::1]:%d' % port6, '--relay-net', '127.0.0.5/32')
    try:
        # 127.0.0.6 reaches the port and claims to be 127.0.0.5 (a relay
        # client): closed without a word, and the log says why
        s, f = raw_from('127.0.0.6', srv.port)
        s.sendall(proxy_v1('127.0.0.5') + b'EHLO x\r\nMAIL FROM:<a@example.org>\r\n'
                  b'RCPT TO:<far@outside.test>\r\n')
        assert no_reply(f)
        f.close(); s.close()
        assert wait_log(srv, 'refused connection from 127.0.0.6: not a --proxy-from address'), \
            open(srv.log.name).read()
        # the balancer (127.0.0.1, and ::1 by an IPv6 network) is believed
        for host, src in (('127.0.0.1', '127.0.0.1'), ('::1', '::1')):
            s, f = raw_from(src, port6 if host == '::1' else srv.port, host)
            s.sendall(proxy_v1('127.0.0.5'))
            assert reply(f)[0] == 220
            s.sendall(b'EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<far@outside.test>\r\n'
                      b'QUIT\r\n')
            assert [reply(f)[0] for _ in range(4)] == [250, 250, 250, 221]
            f.close(); s.close()
    finally:
        srv.stop()
    # an IPv6 client that is not a balancer
    port6 = free_port('::1')
    srv = Server('--proxy-protocol', '--proxy-from', '127.0.0.1', '--listen', '[::1]:%d' % port6)
    try:
        s, f = raw_from('::1', port6, '::1')
        s.sendall(proxy_v1('::5', '::1'))
        assert no_reply(f)
        f.close(); s.close()
        assert wait_log(srv, 'refused connection from ::1: not a --proxy-from address'), \
            open(srv.log.name).read()
    finally:
        srv.stop()


@case
def proxy_untrusted_refused_silently_when_full():
    # every slot taken: a source outside --proxy-from on a PROXY listener
    # is still closed without a word (no 421 naming the host) and logged
    srv = Server('--proxy-protocol', '--proxy-from', '127.0.0.1/32', '--max-clients', '1')
    try:
        # Server's probe (no header) must have left its slot
        assert wait_log(srv, 'no PROXY header from 127.0.0.1: closed by the peer'), \
            open(srv.log.name).read()
        b, fb = raw(srv.port)
        b.sendall(proxy_v1('127.0.0.5'))
        assert reply(fb)[0] == 220
        s, f = raw_from('127.0.0.6', srv.port)
        assert no_reply(f)
        f.close(); s.close()
        assert wait_log(srv, 'refused connection from 127.0.0.6: not a --proxy-from address'), \
            open(srv.log.name).read()
        # a balancer is told why, as before
        s, f = raw(srv.port)
        code, lines = reply(f)
        assert code == 421 and 'Too many connections' in lines[0], lines
        f.close(); s.close()
        b.sendall(b'QUIT\r\n')
        assert reply(fb)[0] == 221
        fb.close(); b.close()
    finally:
        srv.stop()


@case
def proxy_per_listener():
    # one smtpd, a direct port (the office's submission) and a port
    # behind the balancer (ADDR:PORT,proxy)
    r = subprocess.run([SMTPD, '--listen', '127.0.0.1:%d,proxy' % free_port()],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b'--proxy-from' in r.stderr, r
    r = subprocess.run([SMTPD, '--listen', '127.0.0.1:%d,proxi' % free_port(), '--proxy-from',
                        '127.0.0.1'], capture_output=True, timeout=10)
    assert r.returncode == 2 and b'bad --listen' in r.stderr, r
    pport = free_port()
    srv = Server('--listen', '127.0.0.1:%d,proxy' % pport, '--proxy-from', '127.0.0.1',
                 '--relay-net', '127.0.0.5/32')
    try:
        # the direct port greets at once; a PROXY line there is no header
        # but an unknown command, and the client is the socket's address
        s, f = raw_from('127.0.0.5', srv.port)
        assert reply(f)[0] == 220
        s.sendall(proxy_v1('127.0.0.9') + b'EHLO x\r\nMAIL FROM:<a@example.org>\r\n'
                  b'RCPT TO:<far@outside.test>\r\nQUIT\r\n')
        assert [reply(f)[0] for _ in range(5)] == [500, 250, 250, 250, 221]
        f.close(); s.close()
        # the PROXY port: the header first, then the greeting
        s, f = raw(pport)
        s.sendall(proxy_v1('127.0.0.9'))
        assert reply(f)[0] == 220
        s.sendall(b'EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<far@outside.test>\r\n'
                  b'RCPT TO:<b@example.test>\r\nDATA\r\n')
        assert [reply(f)[0] for _ in range(5)] == [250, 250, 550, 250, 354]
        s.sendall(b'Subject: p\r\n\r\nx\r\n.\r\nQUIT\r\n')
        assert [reply(f)[0] for _ in range(2)] == [250, 221]
        f.close(); s.close()
        assert 'client 127.0.0.9' in srv.envelope(srv.messages()[0])
        # and without one, nothing
        s, f = raw(pport)
        s.sendall(b'EHLO x\r\n')
        assert no_reply(f)
        f.close(); s.close()
        assert wait_log(srv, 'listening on 127.0.0.1:%d,proxy' % pport)
    finally:
        srv.stop()


@case
def proxy_header_deadline_frees_slots():
    # --max-clients 2 and two silent connections: with the greeting's
    # 5 minutes for the header they held every slot; the header has its
    # own deadline (default 5 s), and each refusal says why
    srv = Server('--proxy-protocol', '--proxy-from', '127.0.0.1', '--max-clients', '2')
    try:
        assert wait_log(srv, ' close')  # Server's probe: its slot is free
        silent = [raw(srv.port) for _ in range(2)]
        assert wait_log(srv, 'no PROXY header from 127.0.0.1 within 5s', count=2, timeout=60), \
            open(srv.log.name).read()
        for s, f in silent:
            assert no_reply(f)
            f.close(); s.close()
        s, f = raw(srv.port)
        s.sendall(proxy_v1('127.0.0.9'))
        assert reply(f)[0] == 220
        s.sendall(b'QUIT\r\n')
        assert reply(f)[0] == 221
        f.close(); s.close()
        # a missing or malformed header: closed without a reply, the
        # reason logged (a binary one as printable text)
        v2 = b'\r\n\r\n\x00\r\nQUIT\n'
        for data, why in ((b'EHLO x\r\n', 'not a PROXY header ("EHLO x??")'),
                          (b'PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n', 'malformed PROXY v1 header'),
                          (v2 + b'\x21\x12\x00\x0c' + bytes(12), 'PROXY v2 header for neither TCP'),
                          (v2 + b'\x21\x11\x00\x04' + bytes(4), 'PROXY v2 header for TCP over '
                           'IPv4 with a 4-octet address block (12 needed)'),
                          (v2 + b'\x21\x21\x00\x0c' + bytes(12), 'PROXY v2 header for TCP over '
                           'IPv6 with a 12-octet address block (36 needed)'),
                          (v2 + b'\x31\x11\x00\x0c' + bytes(12), 'PROXY v2 header of another version'),
                          (b'PROXY TCP4 1.2', 'closed by the peer in its middle'),
                          (b'', 'no PROXY header from 127.0.0.1: closed by the peer')):
            s, f = raw(srv.port)
            if data:
                s.sendall(data)
            if data.endswith(b'1.2') or not data:
                s.shutdown(socket.SHUT_WR)
            assert no_reply(f), data
            f.close(); s.close()
            assert wait_log(srv, why), (why, open(srv.log.name).read())
        assert 'QUIT' not in open(srv.log.name).read()
    finally:
        srv.stop()


def no_reply_soon(f):
    """Whether the server closed without a word (EOF or reset) before
    any reply line; the reply, if any, is left to read."""
    try:
        return f.peek(1) == b''
    except ConnectionResetError:
        return True


@case
def proxy_header_deadline_is_never_early():
    # --proxy-timeout 1: a header sent half a second after the connect is
    # in time. The deadline was whole seconds of the wall clock, so it
    # fired at the next second's turn, up to 1 s early, whenever another
    # session woke the loop; it is counted in milliseconds now
    pport = free_port()
    srv = Server('--listen', '127.0.0.1:%d,proxy' % pport, '--proxy-from', '127.0.0.1',
                 '--proxy-timeout', '1')
    stop = []

    def busy():  # wakes the loop every few milliseconds
        s, f = raw(srv.port)
        reply(f)
        while not stop:
            s.sendall(b'NOOP\r\n')
            reply(f)
            time.sleep(0.01)
        s.sendall(b'QUIT\r\n')
        reply(f)
        f.close(); s.close()
    t = threading.Thread(target=busy)
    t.start()
    try:
        counted = 0
        for _ in range(20):
            if counted == 3:
                break
            # connect a quarter second before the wall clock's second turns
            time.sleep((0.75 - time.time() % 1) % 1)
            s, f = raw(pport)
            t0 = time.monotonic()
            time.sleep(0.5)
            s.sendall(proxy_v1('127.0.0.9'))
            sent = time.monotonic() - t0
            code = reply(f)[0] if not no_reply_soon(f) else None
            f.close(); s.close()
            if sent > 0.8:
                continue  # this host was too slow to tell: not counted
            counted += 1
            assert code == 220, 'a header %.2fs after the connect was refused: %s' % (
                sent, open(srv.log.name).read()[-1000:])
        # a try only counts when this host sent the header in time; one is
        # enough to tell (before the fix half of them were refused), and
        # twenty late ones in a row mean a host too loaded to test on
        assert counted >= 1, 'no header could be sent within 0.8 s in 20 tries'
    finally:
        stop.append(1)
        t.join(timeout=30)
        srv.stop()


@case
def drain_on_sigterm():
    # SIGTERM: the listener closes; each session gets 421 4.3.2 at its
    # next transaction boundary: at once when idle, after the message's
    # reply when in a transaction; a message in DATA may finish
    srv = Server('--drain-timeout', '120')
    try:
        idle, fi = raw(srv.port)
        reply(fi)
        idle.sendall(b'EHLO idle\r\n')
        reply(fi)
        at_rcpt, fr = raw(srv.port)
        reply(fr)
        at_rcpt.sendall(b'EHLO r\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n')
        assert [reply(fr)[0] for _ in range(3)] == [250, 250, 250]
        in_data, fd = raw(srv.port)
        reply(fd)
        in_data.sendall(b'EHLO d\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<c@example.test>\r\n'
                        b'DATA\r\n')
        assert [reply(fd)[0] for _ in range(4)] == [250, 250, 250, 354]
        in_data.sendall(b'Subject: half\r\n\r\nthe first half\r\n')
        assert wait_log(srv, 'rcpt=<c@example.test>')
        srv.proc.send_signal(signal.SIGTERM)
        # the idle session is told at once, unprompted (with a fixed
        # grace it heard nothing until the others were cut as well)
        assert reply(fi) == (421, ['421 4.3.2 mx.example.test Service shutting down'])
        assert fi.read() == b''
        # the listener is closed (before the 421 above was sent)
        probe = socket.socket()
        assert probe.connect_ex(('127.0.0.1', srv.port)) != 0
        probe.close()
        # the message in DATA finishes: 250, then 421
        in_data.sendall(b'the second half\r\n.\r\n')
        assert reply(fd)[0] == 250
        assert reply(fd) == (421, ['421 4.3.2 mx.example.test Service shutting down'])
        # the session at RCPT may finish its transaction too, but not
        # start another: its MAIL is answered 421 (or the 421 came first)
        at_rcpt.sendall(b'DATA\r\n')
        assert reply(fr)[0] == 354
        at_rcpt.sendall(b'Subject: r\r\n\r\nr\r\n.\r\nMAIL FROM:<x@example.org>\r\n')
        assert reply(fr)[0] == 250
        assert reply(fr) == (421, ['421 4.3.2 mx.example.test Service shutting down'])
        for f, s in ((fr, at_rcpt), (fd, in_data), (fi, idle)):
            f.close(); s.close()
        assert srv.proc.wait(timeout=60) == 0
        assert wait_log(srv, 'stopping: 3 sessions drained, 0 cut'), open(srv.log.name).read()
        bodies = sorted(srv.body(m) for m in srv.messages())
        assert bodies == [b'Subject: half\r\n\r\nthe first half\r\nthe second half\r\n',
                          b'Subject: r\r\n\r\nr\r\n'], bodies
    finally:
        srv.stop()


@case
def drain_counts_only_sessions_told_at_a_boundary():
    # "N sessions drained" counts the sessions told 421 4.3.2 at a
    # boundary: a connection still waiting for its PROXY header (closed
    # without a word) is neither drained nor cut
    pport = free_port()
    srv = Server('--listen', '127.0.0.1:%d,proxy' % pport, '--proxy-from', '127.0.0.1')
    try:
        assert wait_log(srv, ' close')  # Server's probe is gone
        a, fa = raw(pport)
        a.sendall(proxy_v1('127.0.0.9') + b'EHLO a\r\n')
        assert [reply(fa)[0] for _ in range(2)] == [220, 250]
        b, fb = raw(pport)  # no header yet
        a.sendall(b'NOOP\r\n')  # b's connect came first: accepted by now
        assert reply(fa)[0] == 250
        srv.proc.send_signal(signal.SIGTERM)
        assert reply(fa) == (421, ['421 4.3.2 mx.example.test Service shutting down'])
        assert no_reply(fb)
        for f, s in ((fa, a), (fb, b)):
            f.close(); s.close()
        assert srv.proc.wait(timeout=60) == 0
        log = open(srv.log.name).read()
        assert 'stopping: draining 2 sessions' in log, log
        assert 'stopping: 1 sessions drained, 0 cut' in log, log
    finally:
        srv.stop()


def message_that_never_ends(srv):
    """A session in DATA whose message has begun and never ends:
    (socket, its reader)."""
    slow, fs = raw(srv.port)
    reply(fs)
    slow.sendall(b'EHLO s\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n'
                 b'DATA\r\n')
    assert [reply(fs)[0] for _ in range(4)] == [250, 250, 250, 354]
    slow.sendall(b'Subject: never ends\r\n\r\n')
    assert wait_log(srv, 'rcpt=<b@example.test>')
    return slow, fs


@case
def drain_cuts_what_outlives_the_grace():
    # a message that does not end within --drain-timeout is cut (421,
    # nothing stored: it was never acknowledged); the log counts both
    srv = Server('--drain-timeout', '1')
    try:
        idle, fi = raw(srv.port)
        reply(fi)
        slow, fs = message_that_never_ends(srv)
        srv.proc.send_signal(signal.SIGTERM)
        assert reply(fi)[0] == 421
        assert reply(fs) == (421, ['421 4.3.2 mx.example.test Service shutting down'])
        assert srv.proc.wait(timeout=60) == 0
        assert wait_log(srv, 'stopping: 1 sessions drained, 1 cut'), open(srv.log.name).read()
        assert srv.messages() == [] and os.listdir(os.path.join(srv.spool, 'tmp')) == []
        for f, s in ((fi, idle), (fs, slow)):
            f.close(); s.close()
    finally:
        srv.stop()


@case
def a_second_sigterm_ends_the_drain_at_once():
    # the operator who sends SIGTERM again (or presses ^C twice) does not
    # wait out --drain-timeout: what is still open is cut with the 421
    srv = Server('--drain-timeout', '600')
    try:
        slow, fs = message_that_never_ends(srv)
        srv.proc.send_signal(signal.SIGTERM)
        assert wait_log(srv, 'stopping: draining 1 sessions')
        time.sleep(0.3)
        assert srv.proc.poll() is None  # still draining: the message may end
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=10) == 0
        assert reply(fs) == (421, ['421 4.3.2 mx.example.test Service shutting down'])
        log = open(srv.log.name).read()
        assert 'stopping: a second signal: the drain ends now' in log, log[-1000:]
        assert 'stopping: 0 sessions drained, 1 cut' in log, log[-1000:]
        assert srv.messages() == [] and os.listdir(os.path.join(srv.spool, 'tmp')) == []
        fs.close()
        slow.close()
    finally:
        srv.stop()


@case
def drain_under_load_loses_no_acknowledged_message():
    # 8 senders in a loop, SIGTERM among them: every acknowledged message
    # is stored, every session ends at a boundary (none is cut), exit 0
    srv = Server()
    acked, closed, lock = [], [], threading.Lock()

    def sender(n):
        i = 0
        try:
            with smtplib.SMTP('127.0.0.1', srv.port, timeout=30) as c:
                while True:
                    mid = 'm%d-%d' % (n, i)
                    body = 'Message-ID: <%s@test>\r\n\r\n' % mid + ('line %s\r\n' % mid) * 300
                    c.sendmail('a@example.org', ['b@example.test'], body)
                    with lock:
                        acked.append(mid)
                    i += 1
        except smtplib.SMTPResponseException as e:
            with lock:
                closed.append((e.smtp_code, e.smtp_error))
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            # the 421 came unprompted and the server closed: smtplib may
            # see the close (or a reset) before it reads the 421
            with lock:
                closed.append(('disconnected', repr(e)))
    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: len(acked) >= 40, timeout=120)
        srv.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=120)
        assert srv.proc.wait(timeout=120) == 0
        stored = set()
        for m in srv.messages():
            stored.add(srv.body(m).split(b'Message-ID: <', 1)[1].split(b'@', 1)[0].decode())
        lost = [m for m in acked if m not in stored]
        assert not lost, 'acknowledged but lost: %r' % lost[:5]
        assert len(closed) == 8, closed
        assert wait_log(srv, 'stopping: 8 sessions drained, 0 cut'), open(srv.log.name).read()[-3000:]
    finally:
        srv.stop()


V2_SIG = b'\r\n\r\n\x00\r\nQUIT\n'


def proxy_v2(src=None):
    """A v2 header: PROXY TCP4 from src, or LOCAL (a balancer's check)."""
    if src is None:
        return V2_SIG + b'\x20\x00\x00\x00'
    return V2_SIG + b'\x21\x11\x00\x0c' + socket.inet_aton(src) + socket.inet_aton('127.0.0.1') + \
        (40000).to_bytes(2, 'big') + (25).to_bytes(2, 'big')


def session_lines(log, sid):
    return [l for l in log.splitlines() if ' session=%s ' % sid in l]


@case
def logs_that_tie_together():
    pport = free_port()
    srv = Server('--listen', '127.0.0.1:%d,proxy' % pport, '--proxy-from', '127.0.0.1', '--verbose')
    try:
        # one connect line for a proxied session, with both addresses
        s, f = raw(pport)
        s.sendall(proxy_v2('127.0.0.6'))
        assert reply(f)[0] == 220
        s.sendall(b'QUIT\r\n')
        assert reply(f)[0] == 221
        f.close(); s.close()
        assert wait_log(srv, 'connect from 127.0.0.6 via 127.0.0.1')
        # session ids are never reused, though the fds are
        for _ in range(5):
            s, f = raw(srv.port)
            reply(f)
            s.sendall(b'QUIT\r\n')
            reply(f)
            f.close(); s.close()
        # a v2 header on the direct port is not read as commands (its
        # signature ends in "QUIT") nor shown: closed, and logged
        s, f = raw(srv.port)
        assert reply(f)[0] == 220
        s.sendall(proxy_v2('127.0.0.7') + b'EHLO x\r\n')
        assert no_reply(f)
        f.close(); s.close()
        assert wait_log(srv, 'PROXY v2 header from 127.0.0.1 on a listener without proxy: closed')
        assert wait_log(srv, ' close\n', count=8)
        log = open(srv.log.name).read()
        sids = [l.split('session=')[1].split()[0] for l in log.splitlines() if ' connect from ' in l]
        assert len(sids) == 8 and len(set(sids)) == 8, log
        proxied = [l for l in log.splitlines() if 'connect from 127.0.0.6' in l][0]
        sid = proxied.split('session=')[1].split()[0]
        assert [l for l in session_lines(log, sid) if 'connect' in l] == [proxied], log
        assert 'C: QUIT' not in ''.join(session_lines(log, sids[-1])), log
    finally:
        srv.stop()


@case
def proxy_v2_header_split_on_a_direct_port():
    # a v2 header on a direct port whose signature comes in pieces is
    # not read as commands either (its "QUIT" line would end the
    # session with 221); a client whose first read only looks like the
    # signature's start (an empty line) is served as before
    srv = Server('--verbose')
    try:
        hdr = proxy_v2('127.0.0.7')
        for cut in (2, 4, 11):
            s, f = raw(srv.port)
            assert reply(f)[0] == 220
            s.sendall(hdr[:cut])
            time.sleep(0.3)  # two reads, most likely (one would pass too)
            s.sendall(hdr[cut:] + b'EHLO x\r\n')
            assert no_reply(f), cut
            f.close(); s.close()
        assert wait_log(srv, 'PROXY v2 header from 127.0.0.1 on a listener without proxy: closed',
                        count=3), open(srv.log.name).read()
        s, f = raw(srv.port)
        assert reply(f)[0] == 220
        s.sendall(b'\r\n')
        time.sleep(0.3)
        s.sendall(b'EHLO x\r\nQUIT\r\n')
        assert [reply(f)[0] for _ in range(3)] == [500, 250, 221]
        f.close(); s.close()
        assert wait_log(srv, ' close\n', count=5)
        log = open(srv.log.name).read()
        assert log.count('C: QUIT') == 1 and 'C: EHLO x' in log, log
    finally:
        srv.stop()


@case
def health_checks_logged_quietly():
    # --log-health-checks no: a balancer's check (a PROXY LOCAL header)
    # that says only EHLO and QUIT leaves no line; a session on a direct
    # port (even from the balancer's address), real clients, and a check
    # that sends MAIL do
    pport = free_port()
    for quiet in (False, True):
        extra = ('--log-health-checks', 'no') if quiet else ()
        srv = Server('--listen', '127.0.0.1:%d,proxy' % pport, '--proxy-from', '127.0.0.1',
                     '--verbose', *extra)
        try:
            s, f = raw(pport)  # HAProxy's check through PROXY: LOCAL
            s.sendall(proxy_v2())
            assert reply(f)[0] == 220
            s.sendall(b'EHLO haproxy\r\nQUIT\r\n')
            assert [reply(f)[0] for _ in range(2)] == [250, 221]
            f.close(); s.close()
            s, f = raw(srv.port)  # a check on the direct port
            reply(f)
            s.sendall(b'HELO check\r\nQUIT\r\n')
            assert [reply(f)[0] for _ in range(2)] == [250, 221]
            f.close(); s.close()
            s, f = raw(pport)  # a real client, no MAIL
            s.sendall(proxy_v2('127.0.0.6'))
            assert reply(f)[0] == 220
            s.sendall(b'EHLO client\r\nQUIT\r\n')
            assert [reply(f)[0] for _ in range(2)] == [250, 221]
            f.close(); s.close()
            s, f = raw(srv.port)  # from the balancer's address, with MAIL
            reply(f)
            s.sendall(b'HELO sender\r\nMAIL FROM:<a@example.org>\r\nQUIT\r\n')
            assert [reply(f)[0] for _ in range(3)] == [250, 250, 221]
            f.close(); s.close()
            srv.proc.send_signal(signal.SIGTERM)  # the last lines out
            assert srv.proc.wait(timeout=60) == 0
            log = open(srv.log.name).read()
            assert ('helo=haproxy' in log) != quiet and 'helo=check' in log, log
            assert ('connect from unknown via 127.0.0.1' in log) != quiet, log
            # the sender's lines all there, in order, its connect first
            sid = [l for l in log.splitlines() if 'helo=sender' in l][0].split('session=')[1].split()[0]
            lines = session_lines(log, sid)
            assert 'connect from 127.0.0.1' in lines[0] and 'S: 220' in lines[1] and \
                'mail=<a@example.org>' in ''.join(lines) and lines[-1].endswith(' close'), lines
            assert 'connect from 127.0.0.6 via 127.0.0.1' in log, log
            # (Server's own probe on the direct port is logged too)
            assert log.count(' connect from ') == (4 if quiet else 5), log
        finally:
            srv.stop()


@case
def health_check_quieting_hides_only_checks():
    # --log-health-checks no holds back only a session whose PROXY header
    # named no client (v2 LOCAL, v1 UNKNOWN: what HAProxy's checks send),
    # and only while it says EHLO/HELO/NOOP/RSET/QUIT and hears no
    # 4xx/5xx: a password guesser inside --proxy-from (on a direct port,
    # or named by the header) or behind a LOCAL header is logged whole
    import base64
    pport = free_port()
    srv = Server('--listen', '127.0.0.1:%d,proxy' % pport, '--proxy-from', '127.0.0.0/29',
                 '--log-health-checks', 'no', '--user', 'alice:s3cret', '--insecure-auth')

    def auth(pw):
        return b'AUTH PLAIN ' + base64.b64encode(b'\0alice\0' + pw) + b'\r\n'
    try:
        def session(src, port, header, script, codes):
            s, f = raw_from(src, port)
            if header:
                s.sendall(header)
            assert reply(f)[0] == 220
            s.sendall(script)
            got = [reply(f)[0] for _ in codes]
            assert got == codes, (script, got)
            f.close(); s.close()
        # the checks: quiet
        session('127.0.0.1', pport, proxy_v2(), b'EHLO chk1\r\nNOOP\r\nRSET\r\nQUIT\r\n',
                [250, 250, 250, 221])
        session('127.0.0.1', pport, b'PROXY UNKNOWN\r\n', b'HELO chk2\r\nQUIT\r\n', [250, 221])
        # the rest: logged
        session('127.0.0.1', pport, proxy_v2(), b'EHLO guess1\r\n' + auth(b'123456') +
                auth(b'qwerty') + b'QUIT\r\n', [250, 535, 535, 221])
        session('127.0.0.1', pport, proxy_v2(), b'EHLO good\r\n' + auth(b's3cret') + b'QUIT\r\n',
                [250, 235, 221])
        session('127.0.0.1', pport, proxy_v2(), b'EHLO vrfy\r\nVRFY alice\r\nQUIT\r\n',
                [250, 252, 221])
        session('127.0.0.1', pport, proxy_v2(), b'EHLO bogus\r\nBOGUS\r\nQUIT\r\n', [250, 500, 221])
        session('127.0.0.1', pport, proxy_v1('127.0.0.4'), b'EHLO named\r\nQUIT\r\n', [250, 221])
        session('127.0.0.3', srv.port, None, b'EHLO direct\r\n' + auth(b'letmein') + b'QUIT\r\n',
                [250, 535, 221])
        srv.proc.send_signal(signal.SIGTERM)  # the last lines out
        assert srv.proc.wait(timeout=60) == 0
        log = open(srv.log.name).read()
        assert 'chk1' not in log and 'chk2' not in log, log
        for helo in ('guess1', 'good', 'vrfy', 'bogus', 'named', 'direct'):
            sid = [l for l in log.splitlines() if 'helo=%s' % helo in l][0] \
                .split('session=')[1].split()[0]
            lines = session_lines(log, sid)
            assert ' connect from ' in lines[0] and lines[-1].endswith(' close'), (helo, lines)
        assert log.count('cmd=AUTH arg="PLAIN" reply=535') == 3, log
        assert 'auth=alice' in log and 'cmd=- reply=500' in log, log
        assert 'connect from 127.0.0.4 via 127.0.0.1' in log and \
            'connect from 127.0.0.3' in log, log
    finally:
        srv.stop()


@case
def lmtp_with_smtplib():
    srv = Server('--lmtp')
    try:
        c = smtplib.LMTP('127.0.0.1', srv.port)
        try:
            code, _ = c.ehlo()  # smtplib's LMTP sends LHLO
            assert code == 250
            refused = c.sendmail('a@example.org', ['b@example.test', 'c@example.test', 'x@far.test'],
                                 b'Subject: lmtp\r\n\r\nper recipient\r\n')
            # the outside recipient was refused at RCPT; the others delivered
            assert list(refused) == ['x@far.test'], refused
        finally:
            c.quit()
        m = srv.messages()
        assert len(m) == 1 and b'with LMTP id' in open(os.path.join(srv.spool, m[0]), 'rb').read()
    finally:
        srv.stop()


@case
def command_line_contract_details():
    # IPv6 listener
    port = free_port()
    d = tempfile.mkdtemp(prefix='llsmtp-it-')
    users = os.path.join(d, 'users')
    open(users, 'w').write('# users\ncarol:c4r0l\n\ndave:d4ve\n')
    p = subprocess.Popen([SMTPD, '--listen', '[::1]:%d' % port, '--hostname', 'mx.example.test',
                          '--spool', os.path.join(d, 'spool'), '--users', users, '--insecure-auth',
                          '--max-clients', '1', '--verbose'], stderr=open(os.path.join(d, 'log'), 'w'))
    try:
        for _ in range(200):
            try:
                s = socket.create_connection(('::1', port), timeout=5)
                break
            except OSError:
                time.sleep(0.02)
        f = s.makefile('rb')
        assert reply(f)[0] == 220
        # --max-clients 1: the second client is turned away with 421
        s2 = socket.create_connection(('::1', port), timeout=5)
        f2 = s2.makefile('rb')
        code, lines = reply(f2)
        assert code == 421 and 'Too many connections' in lines[0], lines
        f2.close(); s2.close()
        # --users FILE
        s.sendall(b'EHLO x\r\nAUTH PLAIN ' + __import__('base64').b64encode(b'\0dave\0d4ve') + b'\r\n')
        assert reply(f)[0] == 250 and reply(f)[0] == 235
        s.sendall(b'MAIL FROM:<dave@example.org>\r\nQUIT\r\n')
        assert reply(f)[0] == 250 and reply(f)[0] == 221
        f.close(); s.close()
        logname = os.path.join(d, 'log')
        wait_until(lambda: open(logname).read().count(' close') >= 3, 10)
        log = open(logname).read()
        # --verbose: a line per command and per reply; no secrets
        # (AUTH with its mechanism only: the library never reports more)
        assert 'C: EHLO x' in log and 'C: MAIL FROM:<dave@example.org>' in log, log
        assert 'C: AUTH PLAIN S: 235 2.7.0 Authentication successful' in log, log
        assert 'ZDR2ZQ' not in log and 'd4ve' not in log, log
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=15) == 0
        shutil.rmtree(d, ignore_errors=True)


@case
def verbose_log_never_shows_auth_secrets():
    # However the client's bytes arrive (a response alone, pipelined
    # behind EHLO, split inside a line, as AUTH's initial response, or
    # after a refused AUTH where it arrives as an unknown command), the
    # log shows no credential: smtpd logs what the library's on_reply
    # says, and the library reports AUTH with its mechanism alone and
    # every line of its exchange with no argument, and never echoes an
    # unknown verb
    import base64
    srv = Server('--user', 'alice:s3cretpw', '--insecure-auth', '--verbose')
    secrets = ['s3cretpw']
    b64 = lambda b: base64.b64encode(b)

    def session(writes, ncodes, pause=0.05):
        s, f = raw(srv.port)
        reply(f)
        for w in writes:
            s.sendall(w)
            time.sleep(pause)
        codes = [reply(f)[0] for _ in range(ncodes)]
        s.sendall(b'QUIT\r\n')
        assert reply(f)[0] == 221
        f.close(); s.close()
        return codes
    try:
        plain = b64(b'\0alice\0s3cretpw')
        login_user, login_pw = b64(b'alice'), b64(b's3cretpw')
        secrets += [plain.decode(), login_user.decode(), login_pw.decode()]
        # EHLO and AUTH PLAIN (no initial response) in one write, the
        # credentials in the next
        assert session([b'EHLO x\r\nAUTH PLAIN\r\n', plain + b'\r\n'], 3) == [250, 334, 235]
        # AUTH PLAIN with an initial response, alone and behind EHLO
        assert session([b'EHLO x\r\n', b'AUTH PLAIN ' + plain + b'\r\n'], 2) == [250, 235]
        assert session([b'EHLO x\r\nAUTH PLAIN ' + plain + b'\r\n'], 2) == [250, 235]
        # LOGIN, everything pipelined in one write with EHLO
        assert session([b'EHLO x\r\nAUTH LOGIN\r\n' + login_user + b'\r\n' + login_pw + b'\r\n'],
                       4) == [250, 334, 334, 235]
        # LOGIN, username and password in separate writes, the password
        # split inside its line
        assert session([b'EHLO x\r\n', b'AUTH LOGIN\r\n', login_user + b'\r\n',
                        login_pw[:5], login_pw[5:] + b'\r\n'], 4) == [250, 334, 334, 235]
        # a wrong password (535), then a line the client meant as a
        # secret: it arrives as an unknown command, and is not echoed
        wrong = b64(b'\0alice\0wr0ngpw')
        stray = b64(b'str4ys3cret')
        secrets += ['wr0ngpw', wrong.decode(), 'str4ys3cret', stray.decode()]
        assert session([b'EHLO x\r\nAUTH PLAIN\r\n' + wrong + b'\r\n' + stray + b'\r\nNOOP\r\n'],
                       5) == [250, 334, 535, 500, 250]
        assert session([b'EHLO x\r\nAUTH PLAIN ' + wrong + b'\r\n', stray + b'\r\n'],
                       3) == [250, 535, 500]
        # AUTH refused before its exchange starts (503: no EHLO; 504: an
        # unknown mechanism): the pipelined username and password are
        # unknown commands too
        assert session([b'AUTH LOGIN\r\n' + login_user + b'\r\n' + login_pw + b'\r\n'],
                       3) == [503, 500, 500]
        assert session([b'EHLO x\r\nAUTH BOGUS\r\n' + login_user + b'\r\n' + login_pw + b'\r\n'],
                       4)[2:] == [500, 500]
        assert wait_log(srv, ' close\n', count=9)
        log = open(srv.log.name).read()
        for secret in secrets:
            # the log once showed a stray line's first octets upper-cased
            assert secret.lower() not in log.lower(), (secret, log)
        # every command: AUTH with its mechanism, the lines of its
        # exchange with no argument
        assert log.count('C: AUTH S: 235 2.7.0 Authentication successful') == 3, log
        assert log.count('C: AUTH PLAIN S: 235 2.7.0 Authentication successful') == 2, log
        assert log.count('C: AUTH LOGIN S: 334 VXNlcm5hbWU6') == 2 and log.count('C: AUTH S: 334 UGFzc3dvcmQ6') == 2, log
        assert 'C: NOOP S: 250' in log and 'C: EHLO x S: 250' in log, log
        assert log.count('refused client=127.0.0.1 cmd=AUTH reply=535 5.7.8') == 1, log
        assert log.count('refused client=127.0.0.1 cmd=AUTH arg="PLAIN" reply=535 5.7.8') == 1, log
        assert log.count('refused client=127.0.0.1 cmd=- reply=500') == 6, log
    finally:
        srv.stop()


@case
def refused_commands_leave_one_log_line():
    # without --verbose: client, command and reply of every refusal
    srv = Server('--user', 'alice:pw', '--insecure-auth')
    try:
        s, f = raw(srv.port)
        reply(f)
        s.sendall(b'EHLO client.example.org\r\nRCPT TO:<b@example.test>\r\nMAIL FROM:<a@b\r\n'
                  b'MAIL FROM:<a@example.org>\r\nRCPT TO:<x@far.test>\r\n'
                  b'AUTH PLAIN ' + __import__('base64').b64encode(b'\0alice\0n0tit') + b'\r\n'
                  b'BOGUS\r\nQUIT\r\n')
        codes = [reply(f)[0] for _ in range(8)]
        assert codes == [250, 503, 501, 250, 550, 503, 500, 221], codes
        f.close(); s.close()
        # an unknown verb is never echoed (a stray SASL response would
        # arrive as one): cmd=-
        assert wait_log(srv, 'cmd=- reply=500'), open(srv.log.name).read()
        log = open(srv.log.name).read()
        lines = [l for l in log.splitlines() if ' refused ' in l]
        want = [('cmd=RCPT', 'reply=503 5.5.1'), ('cmd=MAIL', 'reply=501 5.'),
                ('cmd=RCPT', 'reply=550 5.7.1 Unable to relay for <x@far.test>'),
                ('cmd=AUTH', 'reply=503 5.5.1'), ('cmd=-', 'reply=500 5.5.')]
        assert len(lines) == len(want), lines
        for l, (cmd, rep) in zip(lines, want):
            assert 'client=127.0.0.1' in l and cmd in l and rep in l, (l, cmd, rep)
        assert 'n0tit' not in log and 'AG4wdGl0' not in log, log
        # a wrong password: 535 with the verb AUTH, and still no secret
        s, f = raw(srv.port)
        reply(f)
        bad = __import__('base64').b64encode(b'\0alice\0wr0ng')
        s.sendall(b'EHLO x\r\nAUTH PLAIN\r\n' + bad + b'\r\n')
        assert [reply(f)[0] for _ in range(3)] == [250, 334, 535]
        f.close(); s.close()
        assert wait_log(srv, 'cmd=AUTH reply=535 5.7.8'), open(srv.log.name).read()
        log = open(srv.log.name).read()
        assert 'wr0ng' not in log and bad.decode() not in log, log
    finally:
        srv.stop()
    # refusals of a message (size, hops) and the 421 after too many errors
    srv = Server('--max-size', '1000', '--max-hops', '2')
    try:
        s, f = raw(srv.port)
        reply(f)
        s.sendall(b'EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n')
        assert [reply(f)[0] for _ in range(4)] == [250, 250, 250, 354]
        s.sendall(b'Subject: big\r\n\r\n' + b'x' * 2000 + b'\r\n.\r\n'
                  b'MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n')
        assert [reply(f)[0] for _ in range(4)] == [552, 250, 250, 354]
        s.sendall(b'Received: from a\r\nReceived: from b\r\nReceived: from c\r\n\r\nloop\r\n.\r\n'
                  b'MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nBDAT 2000 LAST\r\n' +
                  b'y' * 2000)
        assert [reply(f)[0] for _ in range(4)] == [554, 250, 250, 552]
        s.sendall(b'BOGUS\r\n' * 20)
        codes = [reply(f)[0] for _ in range(21)]
        assert codes == [500] * 20 + [421], codes
        f.close(); s.close()
        assert wait_log(srv, ' close\n', count=2), open(srv.log.name).read()
        log = open(srv.log.name).read()
        assert 'refused client=127.0.0.1 cmd=DATA reply=552 5.3.4' in log, log
        assert 'refused client=127.0.0.1 cmd=DATA reply=554 5.4.6 Too many hops' in log, log
        assert 'refused client=127.0.0.1 cmd=BDAT arg="2000 LAST" reply=552 5.3.4' in log, log
        assert 'refused client=127.0.0.1 cmd=- reply=421 4.7.0' in log, log
        assert log.count(' refused ') == 3 + 21, log
    finally:
        srv.stop()


def need(tool):
    path = shutil.which(tool) or ('/usr/sbin/' + tool if os.path.exists('/usr/sbin/' + tool) else None)
    if path is None:
        raise RuntimeError('%s is not installed (make deps installs it)' % tool)
    return path


def make_cert(d):
    require_tls(SMTPD)
    need('openssl')
    key, cert = os.path.join(d, 'key.pem'), os.path.join(d, 'cert.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key,
                    '-out', cert, '-days', '1', '-subj', '/CN=mx.example.test'],
                   check=True, capture_output=True)
    return cert, key


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@case
def starttls_with_smtplib_then_auth():
    d = tempfile.mkdtemp(prefix='llsmtp-tls-')
    cert, key = make_cert(d)
    srv = Server('--tls-cert', cert, '--tls-key', key, '--user', 'alice:pw')
    try:
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            c.ehlo('client.example.org')
            assert c.has_extn('starttls') and not c.has_extn('auth'), c.esmtp_features
            code, _ = c.starttls(context=tls_context())
            assert code == 220
            c.ehlo('client.example.org')
            assert not c.has_extn('starttls') and c.has_extn('auth'), c.esmtp_features
            c.login('alice', 'pw')
            data = b'Subject: tls\r\n\r\n.dot\r\nover TLS\r\n'
            assert c.sendmail('alice@example.test', ['x@far.test'], data) == {}
        msgs = srv.messages(queued=True)
        assert len(msgs) == 1 and srv.body(msgs[0], queued=True) == data
        eml = open(os.path.join(srv.queue, msgs[0]), 'rb').read()
        assert b'with ESMTPSA id' in eml
        env = srv.envelope(msgs[0], queued=True)
        assert 'tls TLSv1.' in env and 'auth alice' in env, env
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


@case
def starttls_forgets_auth_helo_and_transaction():
    # RFC 3207 4.2: after STARTTLS the session starts afresh; the library
    # forgets AUTH, and so must smtpd's own records (.env, Received)
    d = tempfile.mkdtemp(prefix='llsmtp-tls-')
    cert, key = make_cert(d)
    srv = Server('--tls-cert', cert, '--tls-key', key, '--user', 'alice:pw', '--insecure-auth')
    try:
        s, f = raw(srv.port)
        reply(f)
        s.sendall(b'EHLO before.example\r\n')
        assert reply(f)[0] == 250
        s.sendall(b'AUTH PLAIN ' + __import__('base64').b64encode(b'\0alice\0pw') + b'\r\n')
        assert reply(f)[0] == 235
        s.sendall(b'STARTTLS\r\n')
        assert reply(f)[0] == 220
        f.close()
        t = tls_context().wrap_socket(s)
        tf = t.makefile('rb')
        t.sendall(b'EHLO after.example\r\n')
        assert reply(tf)[0] == 250
        # no transaction any more, and no authentication: no relaying
        t.sendall(b'RCPT TO:<b@example.test>\r\n')
        assert reply(tf)[0] == 503
        t.sendall(b'MAIL FROM:<alice@example.test>\r\nRCPT TO:<x@far.test>\r\n'
                  b'RCPT TO:<b@example.test>\r\nDATA\r\n')
        assert [reply(tf)[0] for _ in range(4)] == [250, 550, 250, 354]
        t.sendall(b'Subject: after tls\r\n\r\nx\r\n.\r\nQUIT\r\n')
        assert reply(tf)[0] == 250 and reply(tf)[0] == 221
        tf.close(); t.close()
        msgs = srv.messages()
        assert len(msgs) == 1 and srv.messages(queued=True) == [], msgs
        env = srv.envelope(msgs[0])
        assert 'auth ' not in env and 'protocol ESMTPS' in env and 'helo after.example' in env, env
        eml = open(os.path.join(srv.spool, msgs[0]), 'rb').read()
        assert b'from after.example' in eml and b'with ESMTPS id' in eml, eml[:300]
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def s_client(port, *args, script=b'EHLO x\r\nQUIT\r\n'):
    """openssl s_client -starttls smtp; returns (exit status, output)."""
    r = subprocess.run(['openssl', 's_client', '-starttls', 'smtp', '-connect', '127.0.0.1:%d' % port,
                        '-ign_eof'] + list(args), input=script, capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode('latin-1')


def starttls_socket(port, ctx=None):
    s, f = raw(port)
    reply(f)
    s.sendall(b'EHLO x\r\n')
    reply(f)
    s.sendall(b'STARTTLS\r\n')
    assert reply(f)[0] == 220
    f.close()
    t = (ctx or tls_context()).wrap_socket(s)
    return t, t.makefile('rb')


@case
def tls_as_operators_configure_it():
    d = tempfile.mkdtemp(prefix='llsmtp-tls-')
    cert, key = make_cert(d)
    srv = Server('--tls-cert', cert, '--tls-key', key)
    others = []
    try:
        # no CBC suites (LUCKY13, testssl.sh's "obsolete"): no shared cipher
        for cbc in ('AES128-SHA', 'ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA'):
            rc, out = s_client(srv.port, '-tls1_2', '-cipher', cbc)
            assert rc != 0 and 'handshake failure' in out and 'SHA\n' not in out, out
        # OpenSSL's reason is in the log
        assert wait_log(srv, 'tls handshake failed client=127.0.0.1: ') and \
            wait_log(srv, 'no shared cipher'), open(srv.log.name).read()
        # the server's order wins over the client's
        rc, out = s_client(srv.port, '-tls1_2', '-cipher',
                           'ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256')
        assert rc == 0 and 'Cipher is ECDHE-RSA-AES128-GCM-SHA256' in out, out
        # s_client saw a close_notify after the 221
        assert '221 2.0.0' in out and 'unexpected eof' not in out, out
        # close_notify after QUIT: the client's unwrap() needs it
        t, tf = starttls_socket(srv.port)
        t.sendall(b'EHLO x\r\nQUIT\r\n')
        assert reply(tf)[0] == 250 and reply(tf)[0] == 221
        tf.close()
        t.unwrap().close()
        # ... and at shutdown (the 421 is followed by close_notify too)
        t, tf = starttls_socket(srv.port)
        t.sendall(b'EHLO x\r\n')
        assert reply(tf)[0] == 250
        srv.proc.send_signal(signal.SIGTERM)
        t.settimeout(30)  # after the 10 s grace period
        assert reply(tf)[0] == 421
        tf.close()
        t.unwrap().close()
        # --tls-min 1.3 and --tls-ciphers
        new = Server('--tls-cert', cert, '--tls-key', key, '--tls-min', '1.3')
        others.append(new)
        rc, out = s_client(new.port, '-tls1_2')
        assert rc != 0, out
        rc, out = s_client(new.port)
        assert rc == 0 and 'TLSv1.3' in out, out
        new = Server('--tls-cert', cert, '--tls-key', key, '--tls-ciphers', 'ECDHE-RSA-AES256-GCM-SHA384')
        others.append(new)
        rc, out = s_client(new.port, '-tls1_2')
        assert rc == 0 and 'Cipher is ECDHE-RSA-AES256-GCM-SHA384' in out, out
        r = subprocess.run([SMTPD, '--tls-cert', cert, '--tls-key', key, '--tls-ciphers', 'NO-SUCH'],
                           capture_output=True, timeout=10)
        assert r.returncode == 2 and b'--tls-ciphers NO-SUCH' in r.stderr, r
        r = subprocess.run([SMTPD, '--tls-min', '1.1'], capture_output=True, timeout=10)
        assert r.returncode == 2, r
    finally:
        srv.stop()
        for o in others:
            o.stop()
        shutil.rmtree(d, ignore_errors=True)


@case
def starttls_command_injection_is_dropped():
    d = tempfile.mkdtemp(prefix='llsmtp-tls-')
    cert, key = make_cert(d)
    srv = Server('--tls-cert', cert, '--tls-key', key)
    try:
        s = socket.create_connection(('127.0.0.1', srv.port), timeout=10)
        buf = b''
        def line():
            nonlocal buf
            while b'\r\n' not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    raise EOFError
                buf += chunk
            l, buf = buf.split(b'\r\n', 1)
            return l
        assert line().startswith(b'220 ')
        s.sendall(b'EHLO x\r\n')
        while not line().startswith(b'250 '):
            pass
        # CVE-2011-0411: plaintext commands right behind STARTTLS
        s.sendall(b'STARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<b@example.test>\r\n')
        assert line() == b'220 2.0.0 Ready to start TLS'
        assert buf == b''
        t = tls_context().wrap_socket(s)
        tf = t.makefile('rb')
        t.sendall(b'EHLO x\r\nRCPT TO:<b@example.test>\r\n')
        code, lines = reply(tf)
        assert code == 250
        assert reply(tf) == (503, ['503 5.5.1 Error: need MAIL command'])
        tf.close(); t.close()
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


@case
def swaks_plain_and_tls():
    swaks = need('swaks')
    d = tempfile.mkdtemp(prefix='llsmtp-tls-')
    cert, key = make_cert(d)
    srv = Server('--tls-cert', cert, '--tls-key', key, '--user', 'bob:secret')
    try:
        r = subprocess.run([swaks, '--server', '127.0.0.1:%d' % srv.port, '--from', 'a@example.org',
                            '--to', 'b@example.test', '--body', 'from swaks', '--pipeline'],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stdout[-500:]
        r = subprocess.run([swaks, '--server', '127.0.0.1:%d' % srv.port, '--tls', '--auth', 'LOGIN',
                            '--auth-user', 'bob', '--auth-password', 'secret', '--from', 'bob@example.test',
                            '--to', 'x@far.test', '--body', 'relayed over tls'],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stdout[-800:]
        bodies = [srv.body(m) for m in srv.messages()] + \
            [srv.body(m, queued=True) for m in srv.messages(queued=True)]
        assert len(bodies) == 2 and any(b'from swaks' in b for b in bodies) and \
            any(b'relayed over tls' in b for b in bodies), bodies
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


@case
def msmtp_delivers():
    msmtp = need('msmtp')
    srv = Server()
    try:
        data = b'From: a@example.org\r\nTo: b@example.test\r\nSubject: msmtp\r\n\r\n..two\r\nline\r\n'
        r = subprocess.run([msmtp, '--host=127.0.0.1', '--port=%d' % srv.port, '--auth=off', '--tls=off',
                            '--from=a@example.org', 'b@example.test'], input=data.replace(b'\r\n', b'\n'),
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r
        msgs = srv.messages()
        # msmtp adds Date: and Message-ID: in front; the rest is ours
        assert len(msgs) == 1 and srv.body(msgs[0]).endswith(data), srv.body(msgs[0])
    finally:
        srv.stop()


def smtp_send(*args, data=b'', timeout=60):
    """Runs examples/smtp-send; returns (exit status, {recipient: (code, text)})."""
    exe = os.path.join(os.path.dirname(SMTPD), 'smtp-send')
    r = subprocess.run([exe] + list(args) + ['-'], input=data, capture_output=True,
                       timeout=timeout)
    out = {}
    for line in r.stdout.decode().splitlines():
        rcpt, code, text = line.split(' ', 2)
        out[rcpt] = (int(code), text)
    return r.returncode, out, r.stderr.decode()


@case
def smtp_send_to_smtpd_plain_and_lmtp():
    srv = Server()
    lm = Server('--lmtp')
    try:
        data = b'Subject: send\n\n.leading dot\nbare LF lines\r\ncaf\xc3\xa9\n'
        rc, res, err = smtp_send('--server', '127.0.0.1:%d' % srv.port, '--from', 'a@example.org',
                                 '--to', 'b@example.test', '--to', 'x@far.test', '--verbose',
                                 data=data)
        assert rc == 1, (rc, res, err)
        assert res['b@example.test'][0] == 250 and res['x@far.test'][0] == 550, res
        # pipelined, 8-bit declared, the dialogue shown, the body not
        assert 'C: MAIL FROM:<a@example.org> SIZE=%d BODY=8BITMIME' % len(data) in err, err
        assert 'C: (%d octets of message)' % len(data) in err and 'caf' not in err, err
        msgs = srv.messages()
        assert len(msgs) == 1
        # every line ending became CRLF, the dot survived the round trip
        assert srv.body(msgs[0]) == data.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
        rc, res, err = smtp_send('--server', '127.0.0.1:%d' % lm.port, '--lmtp', '--from', '',
                                 '--to', 'b@example.test', '--to', 'c@example.test',
                                 data=b'Subject: lmtp\n\nhi\n')
        assert rc == 0 and len(res) == 2 and all(v[0] == 250 for v in res.values()), (rc, res, err)
        assert len(lm.messages()) == 1
    finally:
        srv.stop()
        lm.stop()


@case
def smtp_send_starttls_auth_and_refusals():
    d = tempfile.mkdtemp(prefix='llsmtp-send-')
    cert, key = make_cert(d)
    srv = Server('--tls-cert', cert, '--tls-key', key, '--user', 'alice:pw')
    plain = Server()
    try:
        rc, res, err = smtp_send('--server', '127.0.0.1:%d' % srv.port, '--require-tls',
                                 '--user', 'alice', '--password', 'pw', '--from', 'alice@example.test',
                                 '--to', 'x@far.test', '--verbose', data=b'Subject: t\n\nx\n')
        assert rc == 0 and res['x@far.test'][0] == 250, (rc, res, err)
        assert 'C: AUTH PLAIN ****' in err and 'pw' not in err.replace('pw\n', ''), err
        env = srv.envelope(srv.messages(queued=True)[0], queued=True)
        assert 'auth alice' in env and 'tls TLSv1.' in env, env
        # a wrong password: permanent failure for everyone
        rc, res, err = smtp_send('--server', '127.0.0.1:%d' % srv.port, '--starttls',
                                 '--user', 'alice', '--password', 'nope', '--from', 'a@example.test',
                                 '--to', 'x@far.test', data=b'x\n')
        assert rc == 2 and res['x@far.test'][0] == 535, (rc, res, err)
        # TLS required but not offered: nothing is sent in cleartext, and
        # the message is deferred (the server may be fixed), as the queue
        rc, res, err = smtp_send('--server', '127.0.0.1:%d' % plain.port, '--require-tls',
                                 '--from', 'a@example.org', '--to', 'b@example.test', data=b'x\n')
        assert rc == 3 and res['b@example.test'] == (451, '4.7.4 TLS is required, but was not '
                                                          'offered by 127.0.0.1'), (rc, res, err)
        # credentials never go out without TLS unless allowed
        rc, res, err = smtp_send('--server', '127.0.0.1:%d' % plain.port, '--user', 'u',
                                 '--password', 'p', '--from', 'a@example.org',
                                 '--to', 'b@example.test', data=b'x\n')
        assert rc == 2 and res['b@example.test'][0] == 530, (rc, res, err)
        assert plain.messages() == []
        # nobody listening: nothing could be tried (4), try again later
        rc, res, err = smtp_send('--server', '127.0.0.1:%d' % free_port(), '--from', 'a@b.c',
                                 '--to', 'b@example.test', data=b'x\n')
        assert rc == 4, (rc, res, err)
    finally:
        srv.stop()
        plain.stop()
        shutil.rmtree(d, ignore_errors=True)


@case
def smtp_send_ends_tls_with_close_notify():
    # the delivery client (examples/smtpd/deliver.c, also the queue's) sends
    # close_notify after QUIT: this server's unwrap() needs it
    d = tempfile.mkdtemp(prefix='llsmtp-cn-')
    cert, key = make_cert(d)
    lsock = socket.socket()
    lsock.bind(('127.0.0.1', 0))
    lsock.listen(1)
    lsock.settimeout(30)
    result = {}

    def serve():
        try:
            c, _ = lsock.accept()
            c.settimeout(30)
            f = c.makefile('rb')
            c.sendall(b'220 fake ESMTP\r\n')
            f.readline()
            c.sendall(b'250-fake\r\n250 STARTTLS\r\n')
            assert f.readline() == b'STARTTLS\r\n'
            c.sendall(b'220 go ahead\r\n')
            f.close()
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            t = ctx.wrap_socket(c, server_side=True)
            tf = t.makefile('rb')
            def cmd(answer):
                line = tf.readline()
                t.sendall(answer)
                return line
            cmd(b'250 fake\r\n')                   # EHLO
            while True:                              # MAIL, RCPT, DATA (pipelined or not)
                line = tf.readline()
                if line.upper().startswith(b'DATA'):
                    t.sendall(b'354 go\r\n')
                    break
                t.sendall(b'250 ok\r\n')
            while tf.readline() != b'.\r\n':
                pass
            t.sendall(b'250 queued\r\n')
            result['quit'] = cmd(b'221 bye\r\n')
            tf.close()
            t.unwrap()  # raises unless the client's close_notify arrives
            result['close_notify'] = True
            t.close()
        except Exception as e:
            result['error'] = repr(e)

    th = threading.Thread(target=serve)
    th.start()
    try:
        rc, res, err = smtp_send('--server', '127.0.0.1:%d' % lsock.getsockname()[1], '--starttls',
                                 '--from', 'a@example.org', '--to', 'b@example.test', data=b'x\n')
        th.join(timeout=40)
        assert rc == 0, (rc, res, err, result)
        assert result.get('quit') == b'QUIT\r\n' and result.get('close_notify'), result
    finally:
        lsock.close()
        shutil.rmtree(d, ignore_errors=True)


@case
def smtp_send_verifies_certificates():
    require_tls(SMTPD)
    need('openssl')
    d = tempfile.mkdtemp(prefix='llsmtp-verify-')
    key, cert = os.path.join(d, 'key.pem'), os.path.join(d, 'cert.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key,
                    '-out', cert, '-days', '1', '-subj', '/CN=localhost',
                    '-addext', 'subjectAltName=DNS:localhost'], check=True, capture_output=True)
    srv = Server('--tls-cert', cert, '--tls-key', key)
    try:
        base = ['--from', 'a@example.org', '--to', 'b@example.test', '--tls-verify']
        # the right name, a trusted chain: delivered over verified TLS
        rc, res, err = smtp_send('--server', 'localhost:%d' % srv.port, '--ca-file', cert,
                                 '--verbose', *base, data=b'Subject: v\n\nverified\n')
        assert rc == 0 and res['b@example.test'][0] == 250, (rc, res, err)
        assert '-- TLS TLSv1.' in err, err
        # an address the certificate does not name
        rc, res, err = smtp_send('--server', '127.0.0.1:%d' % srv.port, '--ca-file', cert,
                                 *base, data=b'x\n')
        assert rc == 3 and res['b@example.test'][0] == 451 and \
            'certificate of 127.0.0.1 not accepted' in res['b@example.test'][1], (rc, res, err)
        # a self-signed certificate and the system's CAs: not trusted
        rc, res, err = smtp_send('--server', 'localhost:%d' % srv.port, *base, data=b'x\n')
        assert rc == 3 and 'not accepted: self' in res['b@example.test'][1], (rc, res, err)
        msgs = srv.messages()
        assert len(msgs) == 1 and srv.body(msgs[0]).endswith(b'verified\r\n'), msgs
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


@case
def smtp_send_to_postfix_smtp_sink():
    sink = need('smtp-sink')
    d = tempfile.mkdtemp(prefix='llsmtp-sink-')
    os.chmod(d, 0o777)

    def run_sink(*opts):
        port = free_port()
        user = ['-u', 'nobody'] if os.geteuid() == 0 else []
        p = subprocess.Popen([sink] + user + list(opts) + ['127.0.0.1:%d' % port, '10'],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        return p, port

    dump = os.path.join(d, 'dump')
    p, port = run_sink('-D', dump)
    try:
        rc, res, err = smtp_send('--server', '127.0.0.1:%d' % port, '--from', 'a@example.org',
                                 '--to', 'b@example.test', '--to', 'c@example.net',
                                 data=b'Subject: sink\n\n..two dots\n')
        assert rc == 0 and len(res) == 2, (rc, res, err)
        wait_until(lambda: os.path.exists(dump) and b'..two dots' in open(dump, 'rb').read(), 10)
        got = open(dump, 'rb').read()
        assert b'X-Rcpt-Args: <c@example.net>' in got and b'..two dots' in got, got
    finally:
        p.terminate()
        p.wait()
    try:
        # 4xx to every RCPT: a temporary failure; 5xx to MAIL: permanent for all
        for opt, cmd, want_rc, want_class in (('-r', 'rcpt', 3, 4), ('-f', 'mail', 2, 5)):
            p, port = run_sink(opt, cmd)
            try:
                rc, res, err = smtp_send('--server', '127.0.0.1:%d' % port,
                                         '--from', 'a@example.org', '--to', 'b@example.test',
                                         '--to', 'c@example.test', data=b'x\n')
                assert rc == want_rc, (opt, rc, res, err)
                assert all(v[0] // 100 == want_class for v in res.values()), (opt, res)
            finally:
                p.terminate()
                p.wait()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@case
def postfix_smtp_source_20_sessions_2000_messages():
    source = need('smtp-source')
    srv = Server()
    try:
        r = subprocess.run([source, '-c', '-s', '20', '-m', '2000', '-f', 'a@example.org',
                            '-t', 'b@example.test', '127.0.0.1:%d' % srv.port],
                           capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr[-500:]
        assert len(srv.messages()) == 2000, len(srv.messages())
        assert os.listdir(os.path.join(srv.spool, 'tmp')) == []
    finally:
        srv.stop()


@case
def thousand_concurrent_sessions():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    srv = Server('--max-clients', '1100')
    socks = []
    try:
        for _ in range(1000):
            socks.append(socket.create_connection(('127.0.0.1', srv.port), timeout=30))
        for s in socks:
            f = s.makefile('rb')
            assert f.readline().startswith(b'220 '), 'no greeting'
            f.close()
        for s in socks:
            s.sendall(b'QUIT\r\n')
        for s in socks:
            f = s.makefile('rb')
            assert f.readline().startswith(b'221 ')
            f.close()
    finally:
        for s in socks:
            s.close()
        srv.stop()


def concurrent_senders(srv, n):
    """n smtplib clients, each sending messages one after another until
    stopped or refused; every other one to a relayed recipient (queued),
    the others to a local one. Returns (acked Message-IDs, lock, stop
    event, threads)."""
    acked, lock = [], threading.Lock()
    stop = threading.Event()

    def sender(k):
        i = 0
        rcpt = 'r@relay.test' if k % 2 else 'b@example.test'
        while not stop.is_set():
            try:
                with smtplib.SMTP('127.0.0.1', srv.port, timeout=10) as c:
                    while not stop.is_set():
                        mid = 'm%d-%d' % (k, i)
                        body = ('Message-ID: <%s@test>\r\n\r\n' % mid + ('line %s\r\n' % mid) * 300 +
                                'END %s\r\n' % mid)
                        c.sendmail('a@example.org', [rcpt], body)
                        with lock:
                            acked.append(mid)
                        i += 1
            except Exception:
                return
    threads = [threading.Thread(target=sender, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    return acked, lock, stop, threads


def spool_after_crash(srv, acked):
    """What a kill -9 left: every .eml in DIR and DIR/queue complete, one
    in DIR with its .env; every acknowledged message there (local ones in
    DIR, relayed ones in DIR/queue, with their .env). Returns the
    Message-IDs stored."""
    stored = {}
    for queued in (False, True):
        for m in srv.messages(queued):
            body = srv.body(m, queued)
            mid = body.split(b'Message-ID: <', 1)[1].split(b'@', 1)[0].decode()
            # every .eml a reader can find is complete
            assert body.endswith(('END %s\r\n' % mid).encode()), (queued, m)
            if not queued:
                assert os.path.exists(os.path.join(srv.spool, m[:-4] + '.env')), m
            stored[mid] = (queued, m)
    for mid in acked:
        assert mid in stored, 'acknowledged but lost: %r' % mid
        queued, m = stored[mid]
        # a local message in DIR, a relayed one in the queue, each with its envelope
        assert queued == (int(mid[1:].split('-')[0]) % 2 == 1), (mid, queued)
        d = srv.queue if queued else srv.spool
        assert os.path.exists(os.path.join(d, m[:-4] + '.env')), (mid, m)
    return stored


@case
def kill_9_never_loses_an_acknowledged_message():
    # 60 concurrent senders: messages are flushed in batches (group
    # commit), each 250 after its batch's fsyncs
    srv = Server('--relay-domain', 'relay.test')
    acked, lock, stop, threads = concurrent_senders(srv, 60)
    time.sleep(1.5)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    try:
        with lock:
            acked = list(acked)
        assert len(acked) > 20, len(acked)
        spool_after_crash(srv, acked)
    finally:
        try:
            srv.log.close()
        except Exception:
            pass
        shutil.rmtree(srv.dir, ignore_errors=True)


class Sink:
    """A next hop on a loopback port that takes every message and notes
    when each Subject arrived (time.monotonic)."""

    def __init__(self):
        self.got = {}
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(('127.0.0.1', 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def session(self, c):
        f = c.makefile('rb')
        c.sendall(b'220 sink.test ESMTP\r\n')
        try:
            for line in f:
                verb = line[:4].upper()
                if verb == b'DATA':
                    c.sendall(b'354 go\r\n')
                    subject = b''
                    for body in f:
                        if body == b'.\r\n':
                            break
                        if body.startswith(b'Subject: '):
                            subject = body[9:].strip()
                    self.got[subject.decode()] = time.monotonic()
                    c.sendall(b'250 2.0.0 taken\r\n')
                elif verb == b'QUIT':
                    c.sendall(b'221 bye\r\n')
                    break
                elif verb == b'EHLO':
                    c.sendall(b'250 sink.test\r\n')
                else:
                    c.sendall(b'250 ok\r\n')
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.ls.close()


@case
def no_runner_before_the_flush():
    # A relayed message's names are in DIR/queue before its batch's
    # directory flush (a slow disk, LLSMTP_TEST_DIR_FSYNC_DELAY_MS): the
    # scan that follows another runner's exit must not hand it to a runner
    # then; it is delivered only after its 250 (before, B went out while
    # its client still waited, and even when the flush then failed)
    sink = Sink()
    env = dict(os.environ, LLSMTP_TEST_DIR_FSYNC_DELAY_MS='2000')
    srv = Server('--relay-domain', 'relay.test', '--smarthost',
                 '[127.0.0.1]:%d' % sink.port, env=env)
    acked = {}

    def send(subject):
        m = EmailMessage()
        m['From'] = 'a@example.org'
        m['To'] = 'x@relay.test'
        m['Subject'] = subject
        m.set_content('hello')
        with smtplib.SMTP('127.0.0.1', srv.port, timeout=60) as c:
            c.send_message(m)
            acked[subject] = time.monotonic()
    try:
        a = threading.Thread(target=send, args=('A-message',))
        a.start()
        time.sleep(0.5)  # B waits for the next batch, behind A's flush
        send('B-message')
        a.join(timeout=60)
        for _ in range(300):
            if 'B-message' in sink.got:
                break
            time.sleep(0.05)
        assert set(sink.got) == {'A-message', 'B-message'}, (sink.got, open(srv.log.name).read()[-2000:])
        for m in ('A-message', 'B-message'):
            assert sink.got[m] > acked[m], (m, 'delivered before its 250')
    finally:
        srv.stop()
        sink.close()


@case
def drain_waits_for_a_message_being_flushed():
    # SIGTERM while a message is in the storage thread (a slow disk,
    # LLSMTP_TEST_DIR_FSYNC_DELAY_MS): the session is not at a boundary
    # until its 250, which it gets, then 421 4.3.2; the message is stored
    env = dict(os.environ, LLSMTP_TEST_DIR_FSYNC_DELAY_MS='1500')
    srv = Server(env=env)
    try:
        c, f = raw(srv.port)
        reply(f)
        c.sendall(b'EHLO d\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<c@example.test>\r\n'
                  b'DATA\r\n')
        assert [reply(f)[0] for _ in range(4)] == [250, 250, 250, 354]
        c.sendall(b'Subject: flushed\r\n\r\nbody\r\n.\r\n')
        # the envelope is written under tmp/ only once the thread has it
        for _ in range(400):
            tmp = os.path.join(srv.spool, 'tmp')
            if any(n.endswith('.env') for n in os.listdir(tmp)):
                break
            time.sleep(0.01)
        srv.proc.send_signal(signal.SIGTERM)
        assert reply(f)[0] == 250
        assert reply(f) == (421, ['421 4.3.2 mx.example.test Service shutting down'])
        f.close(); c.close()
        assert srv.proc.wait(timeout=60) == 0
        emls = [n for n in os.listdir(srv.spool) if n.endswith('.eml')]
        assert len(emls) == 1, os.listdir(srv.spool)
        assert b'Subject: flushed' in open(os.path.join(srv.spool, emls[0]), 'rb').read()
        assert wait_log(srv, 'stopping: 1 sessions drained, 0 cut'), open(srv.log.name).read()
    finally:
        srv.stop()


@case
def killed_between_a_batchs_writes_and_its_flush():
    # LLSMTP_TEST_KILL_BEFORE_FLUSH (test only, commit.h): smtpd kills
    # itself once the first batch of at least 3 messages is written
    # (envelopes under DIR/tmp, messages complete) and before any of it
    # is flushed or linked in. With 50 senders such a batch forms; the
    # wait for it is bounded only to fail rather than hang.
    env = dict(os.environ, LLSMTP_TEST_KILL_BEFORE_FLUSH='3')
    srv = Server('--relay-domain', 'relay.test', env=env)
    acked, lock, stop, threads = concurrent_senders(srv, 50)
    try:
        try:
            rc = srv.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError('no batch of 3 messages formed (the kill never came)')
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert rc == -signal.SIGKILL, rc
        srv.log.close()
        log = open(srv.log.name).read()
        line = [l for l in log.splitlines() if l.startswith('commit: killed before the flush')]
        assert len(line) == 1, log[-2000:]
        # the log is written a whole line at a time, even with queue
        # runners writing theirs and a full buffer (64 KiB) mid-round;
        # only the server's last write may be cut, by the kill itself
        cut = [l for l in log.splitlines() if l != line[0] and
               not re.match(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ smtpd\[\d+\]: ', l)]
        assert len(cut) <= 1, cut
        k = int(line[0].split()[-1])
        assert k >= 3, line
        with lock:
            acked = list(acked)
        stored = spool_after_crash(srv, acked)
        # The batch: the messages whose envelopes were written under
        # DIR/tmp (.env local, .qenv relayed). Messages still arriving,
        # or waiting for the next batch, have an .eml there only.
        tmp = os.path.join(srv.spool, 'tmp')
        names = os.listdir(tmp)
        batch = sorted(set(f.rsplit('.', 1)[0] for f in names if f.endswith(('.env', '.qenv'))))
        assert len(batch) == k, (k, names)
        for qid in batch:
            data = open(os.path.join(tmp, qid + '.eml'), 'rb').read()
            mid = data.split(b'Message-ID: <', 1)[1].split(b'@', 1)[0].decode()
            # written whole, never acknowledged, visible to no reader
            assert data.endswith(('END %s\r\n' % mid).encode()), qid
            assert mid not in acked, 'acknowledged before its flush: %s' % mid
            assert mid not in stored, 'visible before its flush: %s' % mid
            for d in (srv.spool, srv.queue):
                for ext in ('.eml', '.env'):
                    assert not os.path.exists(os.path.join(d, qid + ext)), (d, qid + ext)
    finally:
        stop.set()
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        try:
            srv.log.close()
        except Exception:
            pass
        shutil.rmtree(srv.dir, ignore_errors=True)


def a_failed_flush_fails_its_whole_batch(*mode):
    # LLSMTP_TEST_FLUSH_FAIL (test only, commit.h): the flush of the first
    # batch of at least 3 messages fails, as a disk's write error would.
    # Every session of that batch hears 451 4.3.0, none of its messages
    # is visible to a reader (nor left under DIR/tmp), and the server goes
    # on storing the next ones.
    env = dict(os.environ, LLSMTP_TEST_FLUSH_FAIL='3')
    srv = Server('--relay-domain', 'relay.test', *mode, env=env)
    acked, refused, lock = [], {}, threading.Lock()
    stop = threading.Event()

    def sender(k):
        rcpt = 'r@relay.test' if k % 2 else 'b@example.test'
        with smtplib.SMTP('127.0.0.1', srv.port, timeout=20) as c:
            for i in range(1000):
                if stop.is_set():
                    return
                mid = 'm%d-%d' % (k, i)
                body = 'Message-ID: <%s@test>\r\n\r\n' % mid + ('line\r\n' * 100) + 'END %s\r\n' % mid
                try:
                    c.sendmail('a@example.org', [rcpt], body)
                    with lock:
                        acked.append(mid)
                except smtplib.SMTPDataError as e:
                    with lock:
                        refused[mid] = (e.smtp_code, e.smtp_error)
    threads = [threading.Thread(target=sender, args=(k,)) for k in range(30)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if refused and len(acked) > 100:
                break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    try:
        assert len(refused) >= 3, (len(refused), len(acked))
        for mid, (code, text) in refused.items():
            assert code == 451 and text.startswith(b'4.3.0 '), (mid, code, text)
        assert len(acked) > 100, len(acked)
        stored = spool_after_crash(srv, acked)
        for mid in refused:
            assert mid not in stored, 'refused, yet stored: %s' % mid
    finally:
        srv.stop(remove=False)
    try:
        log = open(srv.log.name).read()
        assert log.count('queue write failed: Input/output error') == len(refused), log[-2000:]
        # the batch took the way the mode says (syncfs only on a local
        # disk file system it is known to flush as fdatasync does)
        fs = subprocess.run(['stat', '-f', '-c', '%T', srv.spool], capture_output=True,
                            text=True).stdout.strip()
        syncfs = not mode and fs in ('ext2/ext3', 'xfs', 'btrfs', 'f2fs', 'tmpfs')
        how = 'syncfs (a lonely message: fdatasync)' if syncfs else 'fdatasync'
        assert 'a batch of messages made durable by %s\n' % how in log, (fs, log[:500])
        # what the failed batch wrote under DIR/tmp is gone with it
        left = os.listdir(os.path.join(srv.spool, 'tmp'))
        assert left == [], left
    finally:
        shutil.rmtree(srv.dir, ignore_errors=True)


@case
def a_failed_flush_fails_its_whole_batch_syncfs():
    # a batch of several messages is flushed by one syncfs (commit.c)
    a_failed_flush_fails_its_whole_batch()


@case
def a_failed_flush_fails_its_whole_batch_each_file():
    a_failed_flush_fails_its_whole_batch('--flush-each-file')


@case
def stale_files_under_tmp_are_removed_at_start_up():
    # What a crash left under DIR/tmp (files being written, never an
    # acknowledged message) went nowhere and stayed forever. At start-up,
    # with the spool's lock held, files older than 15 minutes go; younger
    # ones stay (a runner of the server that died may still be writing).
    base = tempfile.mkdtemp(prefix='llsmtp-it-')
    spool = os.path.join(base, 'spool')
    tmp = os.path.join(spool, 'tmp')
    os.makedirs(tmp)
    old = time.time() - 3600
    for name in ('0A.eml', '0A.env', '0B.qenv', '0D.bounce'):
        with open(os.path.join(tmp, name), 'wb') as f:
            f.write(b'half written')
        os.utime(os.path.join(tmp, name), (old, old))
    with open(os.path.join(tmp, '0C.eml'), 'wb') as f:
        f.write(b'still being written')
    srv = Server(spool=spool)
    try:
        assert sorted(os.listdir(tmp)) == ['0C.eml'], os.listdir(tmp)
        assert wait_log(srv, 'spool: removed 4 stale files from %s' % tmp)
        # and the server works as ever
        with smtplib.SMTP('127.0.0.1', srv.port) as c:
            c.sendmail('a@example.test', ['b@example.test'], b'Subject: x\r\n\r\ny\r\n')
        assert len(srv.messages()) == 1
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)


@case
def sessions_reset_while_their_messages_are_stored():
    # 40 clients end each message and reset the connection (RST) at once,
    # while it is with the storage thread or waiting for it: each message
    # is either stored whole (no 250 was seen: a duplicate at worst) or
    # not at all, nothing stays under DIR/tmp, and the server goes on.
    srv = Server('--relay-domain', 'relay.test')
    sent = []

    def resetter(k):
        for i in range(5):
            mid = 'x%d-%d' % (k, i)
            s, f = raw(srv.port)
            try:
                reply(f)
                s.sendall(b'EHLO x.test\r\n')
                reply(f)
                rcpt = 'r@relay.test' if (k + i) % 2 else 'b@example.test'
                s.sendall(b'MAIL FROM:<a@example.org>\r\nRCPT TO:<%s>\r\nDATA\r\n' % rcpt.encode())
                reply(f), reply(f), reply(f)
                s.sendall(('Message-ID: <%s@test>\r\n\r\n' % mid + 'line\r\n' * 100 +
                           'END %s\r\n.\r\n' % mid).encode())
                sent.append(mid)
            finally:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                f.close()
                s.close()
    threads = [threading.Thread(target=resetter, args=(k,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        # the server still takes mail
        with smtplib.SMTP('127.0.0.1', srv.port, timeout=10) as c:
            c.sendmail('a@example.org', ['b@example.test'], 'Message-ID: <after@test>\r\n\r\nEND after\r\n')
        assert len(sent) == 200, len(sent)
    finally:
        srv.stop(remove=False)  # exits 0: every job finished or dropped
    spool, queue, tmp = srv.spool, srv.queue, os.path.join(srv.spool, 'tmp')
    try:
        assert os.listdir(tmp) == [], os.listdir(tmp)
        stored = {}
        for d in (spool, queue):
            for m in sorted(f for f in os.listdir(d) if f.endswith('.eml')):
                data = open(os.path.join(d, m), 'rb').read()
                mid = data.split(b'Message-ID: <', 1)[1].split(b'@', 1)[0].decode()
                assert data.endswith(('END %s\r\n' % mid).encode()), m
                assert os.path.exists(os.path.join(d, m[:-4] + '.env')), m
                stored[mid] = d
        assert 'after' in stored
        assert set(stored) - set(sent) == {'after'}, set(stored) - set(sent)
        text = open(srv.log.name).read()
        assert 'library error' not in text, text[-2000:]
        if os.environ.get('LLSMTP_IT_VERBOSE'):
            print('%d of 200 stored; %d lost their session while being stored' % (
                len(stored) - 1, text.count('was being stored')))
    finally:
        shutil.rmtree(srv.dir, ignore_errors=True)


@case
def client_that_never_reads_is_cut_after_its_timeout():
    # A client pipelines commands and never reads: smtpd's replies fill
    # the socket. At --timeout its 421 cannot be written either; smtpd
    # must neither spin (a spent deadline left in the poll set made poll
    # return at once, 100% CPU) nor keep the connection (and its output
    # buffer) for ever: it is cut a grace period later.
    srv = Server('--timeout', '1')
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(('127.0.0.1', srv.port))
        s.setblocking(False)
        cmd = b'EHLO client.example.test\r\n' * 200
        t0 = time.time()
        while time.time() - t0 < 2:
            try:
                s.send(cmd)
            except BlockingIOError:
                time.sleep(0.05)
        time.sleep(1.5)  # the timeout passes, its 421 cannot be written

        def cpu():
            f = open('/proc/%d/stat' % srv.proc.pid).read().rsplit(')', 1)[1].split()
            return int(f[11]) + int(f[12])
        a, t1 = cpu(), time.time()
        time.sleep(3)
        used = (cpu() - a) / os.sysconf('SC_CLK_TCK') / (time.time() - t1)
        assert used < 0.3, 'smtpd used %.0f%% of a core on a timed-out session' % (100 * used)
        # cut within its grace (10 s) after the timeout, the client still
        # reading nothing (reading would let the 421 out and end it anyway)
        deadline = time.time() + 20
        while time.time() < deadline and 'unread' not in open(srv.log.name).read():
            time.sleep(0.5)
        text = open(srv.log.name).read()
        assert 'timeout' in text and 'cut: its last replies unread' in text, text[-1500:]
    finally:
        s.close()
        srv.stop()


unknown = ONLY - set(n for n, _ in RESULTS)
if unknown:
    print('no such case: %s' % ' '.join(sorted(unknown)))
    sys.exit(2)
failed = closing_line(RESULTS)
sys.exit(1 if failed else 0)
