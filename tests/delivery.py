#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# delivery.py - onward delivery end to end: smtpd's queue runner and
# smtp-send against other smtpd instances (on 127.0.0.1, 127.0.0.2 and
# 127.0.0.3: all loopback), MX answers from a private dnsmasq, a private
# Postfix instance and aiosmtpd. Every server is started here and stopped
# by its PID (a process group for smtpd, whose queue runners are children).
# Usage: python3 tests/delivery.py [path/to/smtpd [CASE ...]]: with CASE
# names (or parts of them), only the cases whose name contains one run.
import email, email.policy, os, shutil, signal, smtplib, socket, subprocess, sys, tempfile, time

from ports import free_port, free_udp_port
from skips import Skip, require_tls, closing_line

SMTPD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else 'build/examples/smtpd')
SEND = os.path.join(os.path.dirname(SMTPD), 'smtp-send')
RESULTS = []
ONLY = sys.argv[2:]
TMP = tempfile.mkdtemp(prefix='llsmtp-dlv-')
os.chmod(TMP, 0o755)  # Postfix's unprivileged processes look inside


def wait(pred, timeout=30, what='condition'):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError('timed out waiting for ' + what)


def wait_log(server, text, timeout=20, count=1):
    """The server's log once it holds text (count times): a runner writes
    its line after it has read the reply, which may be after the next hop
    stored the message, so a log line is waited for, never assumed."""
    return wait(lambda: (lambda t: t if t.count(text) >= count else None)(server.logtext()),
                timeout, '%r%s in the log of %s' % (text, ' x%d' % count if count > 1 else '',
                                                     server.name))


class Smtpd:
    """An examples/smtpd; restartable on the same spool and address."""
    n = 0

    def __init__(self, name, *args, host='127.0.0.1', port=None, setup=None, spool=None):
        Smtpd.n += 1
        self.name = name
        self.host = host
        self.port = port or free_port(host)
        self.dir = os.path.join(TMP, '%s-%d' % (name, Smtpd.n))
        os.makedirs(self.dir)
        self.spool = spool or os.path.join(self.dir, 'spool')
        self.queue = os.path.join(self.spool, 'queue')
        self.args = [SMTPD, '--listen', '%s:%d' % (host, self.port), '--hostname', name,
                     '--spool', self.spool] + list(args)
        self.proc = None
        if setup is not None:
            setup(self.spool)  # e.g. entries a server from before left
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, 'smtpd.log'), 'a')
        self.proc = subprocess.Popen(self.args, stderr=self.log, start_new_session=True)
        wait(self._up, 10, 'smtpd %s to listen' % self.name)

    def _up(self):
        try:
            socket.create_connection((self.host, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        """SIGTERM; a clean exit is 0 (and leak-free under ASan)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self.proc = None
        self.log.close()
        if rc != 0:
            raise AssertionError('%s exited %r: %s' % (self.name, rc, self.logtext()[-2000:]))

    def crash(self):
        """kill -9 of the server and its runners, as a power cut would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        self.log.close()

    def logtext(self):
        return open(os.path.join(self.dir, 'smtpd.log')).read()

    def local(self):
        return sorted(f for f in os.listdir(self.spool) if f.endswith('.eml')) \
            if os.path.isdir(self.spool) else []

    def queued(self):
        return sorted(f for f in os.listdir(self.queue) if f.endswith('.eml')) \
            if os.path.isdir(self.queue) else []

    def read(self, name):
        return open(os.path.join(self.spool, name), 'rb').read()

    def envelope(self, name):
        return open(os.path.join(self.spool, name[:-4] + '.env')).read()


def case(fn):
    servers = []
    if ONLY and not any(o in fn.__name__ for o in ONLY):
        return fn
    try:
        fn(servers)
        RESULTS.append((fn.__name__, None))
        print('ok   %s' % fn.__name__)
    except Skip as e:
        RESULTS.append((fn.__name__, e))
        print('skip %s: %s' % (fn.__name__, e))
    except Exception as e:
        import traceback
        RESULTS.append((fn.__name__, e))
        print('FAIL %s: %r' % (fn.__name__, e))
        traceback.print_exc()
        for s in servers:
            if os.environ.get('LLSMTP_IT_VERBOSE') and hasattr(s, 'logtext'):
                print('--- log of %s' % s.name)
                print(s.logtext()[-4000:])
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:
                if RESULTS[-1][1] is None:
                    RESULTS[-1] = (fn.__name__, e)
                    print('FAIL %s: %r' % (fn.__name__, e))
    return fn


def strip_trace(data):
    """A stored message without the Return-Path and the first Received."""
    assert data.startswith(b'Return-Path: '), data[:60]
    lines = data.split(b'\r\n')[1:]
    assert lines[0].startswith(b'Received: '), lines[0]
    i = 1
    while lines[i].startswith(b'\t'):
        i += 1
    return b'\r\n'.join(lines[i:])


def report(data):
    """The parts of a bounce: (text, [per-recipient fields], original)."""
    m = email.message_from_bytes(data, policy=email.policy.compat32)
    assert m.get_content_type() == 'multipart/report', m.get_content_type()
    assert m.get_param('report-type') == 'delivery-status'
    parts = m.get_payload()
    assert [p.get_content_type() for p in parts][:2] == ['text/plain', 'message/delivery-status'], \
        [p.get_content_type() for p in parts]
    status = parts[1].get_payload()  # per-message block, then one per recipient
    return parts[0].get_payload(), [dict(b.items()) for b in status[1:]], parts[2] if len(parts) > 2 else None


def send(port, sender, rcpts, data, host='127.0.0.1', **kw):
    with smtplib.SMTP(host, port, timeout=30) as c:
        return c.sendmail(sender, rcpts, data, **kw)


@case
def queue_delivers_through_a_smarthost_and_bounces_refusals(servers):
    b = Smtpd('b.test', '--local-domain', 'far.test')
    servers.append(b)
    # an address needs no brackets: it has no MX to look up
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--relay-domain', 'other.test', '--smarthost', '127.0.0.1:%d' % b.port,
              '--retry', '1s', '--max-queue-time', '60s')
    servers.append(a)
    data = (b'From: x@a.test\r\nSubject: onward\r\nMessage-ID: <one@a.test>\r\n\r\n'
            b'.leading dot\r\n..two\r\ncaf\xc3\xa9 8-bit\r\n' + b'line\r\n' * 2000)
    # a local, two relayed the next hop takes, one it refuses (550 5.7.1)
    refused = send(a.port, 'x@a.test', ['me@a.test', 'u@far.test', 'v@far.test', 'w@other.test'],
                   data, mail_options=['BODY=8BITMIME'])
    assert refused == {}
    wait(lambda: a.queued() == [], 20, 'the queue to empty')
    got = b.local()
    assert len(got) == 1, got
    env = b.envelope(got[0])
    assert 'rcpt <u@far.test> local' in env and 'rcpt <v@far.test> local' in env \
        and 'from <x@a.test>' in env and 'body 8BITMIME' in env, env
    # byte for byte: what a stored, minus a's own trace fields, is what
    # b stored under its Received
    mine = [m for m in a.local() if b'multipart/report' not in a.read(m)]
    assert len(mine) == 1, a.local()
    assert strip_trace(b.read(got[0])) == a.read(mine[0]).split(b'\r\n', 1)[1]
    assert strip_trace(a.read(mine[0])) == data
    # the refused recipient: a bounce in x@a.test's local mailbox
    bounces = wait(lambda: [m for m in a.local() if b'multipart/report' in a.read(m)], 10, 'bounce')
    assert len(bounces) == 1
    raw = a.read(bounces[0])
    assert raw.startswith(b'Return-Path: <>\r\n') and 'rcpt <x@a.test> local' in a.envelope(bounces[0])
    text, rcpts, orig = report(raw)
    assert len(rcpts) == 1, rcpts
    r = rcpts[0]
    assert r['Final-Recipient'] == 'rfc822; w@other.test' and r['Action'] == 'failed', r
    assert r['Status'] == '5.7.1' and r['Diagnostic-Code'].startswith('smtp; 550 5.7.1'), r
    assert r['Remote-MTA'] == 'dns; 127.0.0.1', r
    assert 'w@other.test' in text and orig.get_content_type() == 'message/rfc822'
    # the runner's lines may reach the log after the queue emptied
    wait_log(a, 'to=<u@far.test> relay=127.0.0.1 status=sent 250')
    wait_log(a, 'to=<w@other.test> relay=127.0.0.1 status=bounced 550')

    # NOTIFY=NEVER: no bounce; a remote sender's bounce travels with <>
    with smtplib.SMTP('127.0.0.1', a.port) as c:
        c.ehlo('client.test')
        c.mail('s@far.test', ['RET=HDRS', 'ENVID=env+2B1'])
        assert c.rcpt('w@other.test', ['NOTIFY=NEVER'])[0] == 250
        c.data(b'Subject: never\r\n\r\nx\r\n')
        c.mail('s@far.test', ['RET=HDRS', 'ENVID=env+2B2'])
        assert c.rcpt('w@other.test', ['NOTIFY=FAILURE', 'ORCPT=rfc822;W@other.test'])[0] == 250
        c.data(b'Subject: hdrs\r\n\r\nsecret body\r\n')
    back = wait(lambda: [m for m in b.local() if b'multipart/report' in b.read(m)], 20, 'relayed bounce')
    assert len(back) == 1, back
    env = b.envelope(back[0])
    assert 'from <>' in env and 'rcpt <s@far.test> local' in env, env
    raw = b.read(back[0])
    text, rcpts, orig = report(strip_trace(raw))
    # both as xtext, as RFC 3461 4.2 and 4.4 carry them
    assert rcpts[0]['Original-Recipient'] == 'rfc822;W@other.test', rcpts
    assert b'Original-Envelope-Id: env+2B2\r\n' in raw, raw[:1500]
    assert b'text/rfc822-headers' in raw and b'Subject: hdrs' in raw and b'secret body' not in raw
    time.sleep(1.5)
    assert len([m for m in b.local() if b'multipart/report' in b.read(m)]) == 1
    wait(lambda: a.queued() == [], 10, 'the queue to empty')


@case
def queue_retries_etrn_kicks_and_expiry_bounces(servers):
    bport = free_port()
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--smarthost', '[127.0.0.1]:%d' % bport, '--retry', '1h')
    servers.append(a)
    send(a.port, 'x@a.test', ['u@far.test'], b'Subject: later\r\n\r\nwaited\r\n')
    wait(lambda: 'status=deferred 451 4.4.1 cannot connect' in a.logtext(), 10, 'a deferral')
    assert len(a.queued()) == 1
    b = Smtpd('b.test', '--local-domain', 'far.test', port=bport)
    servers.append(b)
    time.sleep(0.5)
    assert b.local() == []  # the next try is an hour away...
    with smtplib.SMTP('127.0.0.1', a.port) as c:
        c.ehlo('client.test')
        assert c.docmd('ETRN', 'nothing.test') == (251, b'2.0.0 No messages waiting for node nothing.test')
        assert c.docmd('ETRN', '@far.test') == (250, b'2.0.0 Queuing for node @far.test started')
    # ...but ETRN (RFC 1985) starts it now
    wait(lambda: len(b.local()) == 1, 10, 'delivery after ETRN')
    assert b'waited' in b.read(b.local()[0])
    wait(lambda: a.queued() == [], 10, 'the queue to empty')
    b.stop()
    servers.remove(b)

    # nothing answers: retried on schedule, then bounced (RFC 5321 4.5.4.1)
    c = Smtpd('c.test', '--local-domain', 'c.test', '--relay-domain', 'far.test',
              '--smarthost', '[127.0.0.1]:%d' % bport, '--retry', '1s', '--max-queue-time', '4s')
    servers.append(c)
    send(c.port, 'x@c.test', ['u@far.test', 'v@far.test'], b'Subject: never\r\n\r\nlost?\r\n')
    bounce = wait(lambda: [m for m in c.local() if b'multipart/report' in c.read(m)], 20, 'expiry bounce')
    text, rcpts, orig = report(c.read(bounce[0]))
    assert [r['Final-Recipient'] for r in rcpts] == ['rfc822; u@far.test', 'rfc822; v@far.test'], rcpts
    assert all(r['Status'] == '4.4.7' and r['Action'] == 'failed' for r in rcpts), rcpts
    assert 'Diagnostic-Code' not in rcpts[0]  # no server ever answered
    assert 'cannot connect' in text
    wait_log(c, 'to=<u@far.test> status=expired')
    tries = c.logtext().count('to=<u@far.test> relay=none status=deferred')
    assert 3 <= tries <= 6, tries
    wait(lambda: c.queued() == [] and os.listdir(c.queue) == [], 10, 'the entry to go')


@case
def etrn_in_the_round_another_session_closes(servers):
    # An ETRN scan is a forked child that first closes the server's
    # sockets; a session that ended earlier in the same poll round left an
    # empty slot in the session list, and the child crashed on it (the
    # client then heard 251 "No messages waiting" with mail queued). The
    # close and the ETRN are sent back to back, so most rounds put both
    # in one poll round; every round must say the queue run started.
    bport = free_port()  # nothing listens there: the mail stays queued
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--smarthost', '[127.0.0.1]:%d' % bport, '--retry', '1h')
    servers.append(a)
    send(a.port, 'x@a.test', ['u@far.test'], b'Subject: later\r\n\r\nwaited\r\n')
    wait(lambda: 'status=deferred' in a.logtext(), 10, 'a deferral')

    def session():
        s = socket.create_connection(('127.0.0.1', a.port), timeout=10)
        f = s.makefile('rb')
        assert f.readline().startswith(b'220 ')
        s.sendall(b'EHLO client.test\r\n')
        while not f.readline().startswith(b'250 '):
            pass
        return s, f

    for i in range(20):
        x, xf = session()
        y, yf = session()
        x.sendall(b'QUIT\r\n')
        x.shutdown(socket.SHUT_WR)
        y.sendall(b'ETRN @far.test\r\n')
        reply = yf.readline()
        assert reply == b'250 2.0.0 Queuing for node @far.test started\r\n', (i, reply)
        for s in (x, y):
            s.close()
    assert len(a.queued()) == 1


def start_dnsmasq(*records):
    exe = shutil.which('dnsmasq') or '/usr/sbin/dnsmasq'
    if not os.path.exists(exe):
        raise RuntimeError('dnsmasq is not installed (make deps installs it)')
    port = free_udp_port()
    d = subprocess.Popen([exe, '--no-daemon', '--port=%d' % port, '--listen-address=127.0.0.1',
                          '--bind-interfaces', '--no-resolv', '--no-hosts', '--local=/test/',
                          '--conf-file=/dev/null'] + list(records), stderr=subprocess.DEVNULL)
    probe = subprocess.run  # wait until it answers
    mxlookup = os.path.join(os.path.dirname(SMTPD), 'mxlookup')
    wait(lambda: probe([mxlookup, '--server', '127.0.0.1:%d' % port, 'probe.test'],
                       capture_output=True).returncode != 1, 10, 'dnsmasq')
    return d, port


class Dnsmasq:
    """Stopped like a server, by its PID."""
    def __init__(self, *records):
        self.proc, self.port = start_dnsmasq(*records)
        self.name = 'dnsmasq'
        self.dir = TMP

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@case
def mx_routing_through_dnsmasq_with_a_backup(servers):
    dns = Dnsmasq('--mx-host=one.test,mx1.one.test,10', '--mx-host=one.test,mx2.one.test,20',
                  '--host-record=mx1.one.test,127.0.0.2', '--host-record=mx2.one.test,127.0.0.3',
                  '--mx-host=two.test,mx2.one.test,10', '--mx-host=nullmx.test,.,0',
                  '--host-record=probe.test,127.0.0.9')
    servers.append(dns)
    port = free_port('127.0.0.2')
    m1 = Smtpd('mx1.one.test', '--local-domain', 'one.test', host='127.0.0.2', port=port)
    servers.append(m1)
    m2 = Smtpd('mx2.one.test', '--local-domain', 'one.test', '--local-domain', 'two.test',
               host='127.0.0.3', port=port)
    servers.append(m2)
    r = Smtpd('relay.test', '--local-domain', 'relay.test', '--relay-net', '127.0.0.1/32',
              '--dns', '127.0.0.1:%d' % dns.port, '--mx-port', str(port),
              '--retry', '1s', '--max-queue-time', '5s')
    servers.append(r)
    data = b'Subject: by MX\r\n\r\nrouted by the book\r\n'
    send(r.port, 'x@relay.test', ['a@one.test', 'b@two.test'], data)
    wait(lambda: len(m1.local()) == 1 and len(m2.local()) == 1, 20, 'MX delivery')
    assert 'rcpt <a@one.test>' in m1.envelope(m1.local()[0])
    assert 'rcpt <b@two.test>' in m2.envelope(m2.local()[0])
    # two hops of trace fields, the message itself unchanged
    got = strip_trace(m1.read(m1.local()[0]))
    assert got.startswith(b'Received: from ') and got.endswith(data), got
    # smtp-send --mx finds the same host
    out = subprocess.run([SEND, '--mx', 'one.test', '--dns', '127.0.0.1:%d' % dns.port,
                          '--mx-port', str(port), '--from', 'x@relay.test', '--to', 'c@one.test',
                          '--verbose', '-'], input=b'Subject: direct\n\nhi\n', capture_output=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.startswith(b'c@one.test 250 '), out
    assert b'-- trying mx1.one.test [127.0.0.2]:%d' % port in out.stderr, out.stderr
    wait(lambda: len(m1.local()) == 2, 10, 'smtp-send delivery')
    # a null MX (RFC 7505) is refused at once, without a connection
    out = subprocess.run([SEND, '--mx', 'nullmx.test', '--dns', '127.0.0.1:%d' % dns.port,
                          '--from', 'x@relay.test', '--to', 'c@nullmx.test', '-'], input=b'x\n',
                         capture_output=True, timeout=60)
    assert out.returncode == 2 and b'556 5.1.10' in out.stdout, out

    # the preferred MX is down: the backup takes it
    m1.stop()
    servers.remove(m1)
    send(r.port, 'x@relay.test', ['d@one.test'], b'Subject: backup\r\n\r\nvia mx2\r\n')
    wait(lambda: len(m2.local()) == 2, 20, 'backup MX delivery')
    assert any(b'via mx2' in m2.read(m) for m in m2.local())
    wait_log(r, 'to=<d@one.test> relay=mx2.one.test status=sent')

    # all down: retried, then bounced to the sender's local mailbox; the
    # null MX domain bounces at the first attempt
    m2.stop()
    servers.remove(m2)
    send(r.port, 'x@relay.test', ['e@one.test', 'f@nullmx.test'], b'Subject: lost\r\n\r\nnowhere\r\n')
    bounce = wait(lambda: [m for m in r.local() if b'multipart/report' in r.read(m)], 30, 'bounce')
    _, rcpts, _ = report(r.read(bounce[0]))
    status = {x['Final-Recipient']: x['Status'] for x in rcpts}
    assert status == {'rfc822; e@one.test': '4.4.7', 'rfc822; f@nullmx.test': '5.1.10'}, rcpts
    wait_log(r, 'to=<e@one.test> relay=none status=deferred', count=2)
    wait_log(r, 'to=<f@nullmx.test> relay=none status=bounced 556 5.1.10')
    wait(lambda: r.queued() == [], 10, 'the entry to go after its bounce')


@case
def kill_9_during_delivery_loses_nothing(servers):
    b = Smtpd('b.test', '--local-domain', 'far.test')
    servers.append(b)
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--smarthost', '[127.0.0.1]:%d' % b.port, '--retry', '1s', '--runners', '4')
    servers.append(a)
    n = 300
    with smtplib.SMTP('127.0.0.1', a.port) as c:
        for i in range(n):
            # each acknowledged with 250: from here on a's to deliver
            c.sendmail('x@a.test', ['u@far.test'],
                       'Message-ID: <m%d@a.test>\r\n\r\n%s' % (i, 'body line\r\n' * 50))
    wait(lambda: len(b.local()) >= 20, 30, 'deliveries to begin')
    a.crash()  # the server and every runner, mid-delivery
    left = len(a.queued())
    assert left > 0, 'everything was delivered before the crash: nothing tested'
    a.start()
    wait(lambda: a.queued() == [], 60, 'the queue to drain after the restart')
    seen = {}
    for m in b.local():
        mid = b.read(m).split(b'Message-ID: <m', 1)[1].split(b'@', 1)[0]
        seen[int(mid)] = seen.get(int(mid), 0) + 1
    lost = [i for i in range(n) if i not in seen]
    twice = [i for i, k in seen.items() if k > 1]
    assert not lost, 'lost: %r' % lost[:10]
    # only the RFC 5321 6.1 window (250 received, not yet logged) may
    # deliver twice: at most one message per runner that was killed
    assert len(twice) <= 4, twice
    print('     %d messages, %d waiting at the crash, %d delivered twice' % (n, left, len(twice)))
    assert os.listdir(a.queue) == [], os.listdir(a.queue)

@case
def queue_requires_and_verifies_tls_to_the_next_hop(servers):
    require_tls(SMTPD)
    key, cert = os.path.join(TMP, 'nh-key.pem'), os.path.join(TMP, 'nh-cert.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key,
                    '-out', cert, '-days', '1', '-subj', '/CN=localhost',
                    '-addext', 'subjectAltName=DNS:localhost'], check=True, capture_output=True)
    b = Smtpd('b.test', '--local-domain', 'far.test', '--tls-cert', cert, '--tls-key', key)
    servers.append(b)
    plain = Smtpd('plain.test', '--local-domain', 'far.test')
    servers.append(plain)
    common = ('--local-domain', 'a.test', '--relay-domain', 'far.test', '--retry', '1h')
    ok = Smtpd('a.test', '--smarthost', 'localhost:%d' % b.port, '--next-hop-tls', 'verify',
               '--next-hop-ca', cert, *common)
    servers.append(ok)
    wrong = Smtpd('a.test', '--smarthost', '127.0.0.1:%d' % b.port, '--next-hop-tls', 'verify',
                  '--next-hop-ca', cert, *common)
    servers.append(wrong)
    clear = Smtpd('a.test', '--smarthost', '127.0.0.1:%d' % plain.port, '--next-hop-tls', 'encrypt',
                  *common)
    servers.append(clear)
    for s in (ok, wrong, clear):
        send(s.port, 'x@a.test', ['u@far.test'], b'Subject: tls\r\n\r\nsecret\r\n')
    wait(lambda: len(b.local()) == 1, 20, 'verified delivery')
    assert 'with ESMTPS id' in b.read(b.local()[0]).decode(), b.read(b.local()[0])[:300]
    wait_log(wrong, 'status=deferred 451 4.7.5 certificate of 127.0.0.1 not accepted')
    # TLS demanded but not offered: deferred (the next hop may be fixed), not bounced
    wait_log(clear, 'status=deferred 451 4.7.4 TLS is required, but was not offered by 127.0.0.1')
    assert plain.local() == [] and len(wrong.queued()) == 1 and len(clear.queued()) == 1


class Postfix:
    """A private Postfix: its own config and queue directories, one smtpd
    on a loopback port, mail for pf.test into one Maildir, no route to
    anywhere else (error transports, no DNS). Needs root, like Postfix."""
    def __init__(self):
        import grp, pwd
        if os.geteuid() != 0:
            raise RuntimeError('a private Postfix instance needs root (CI runs as root)')
        if not os.path.exists('/usr/sbin/postfix'):
            raise RuntimeError('postfix is not installed (make deps installs it)')
        self.name = 'postfix'
        self.dir = os.path.join(TMP, 'postfix')
        self.port = free_port()
        self.maildir = os.path.join(self.dir, 'mail', 'box')
        etc = os.path.join(self.dir, 'etc')
        for d in ('etc', 'spool', 'data', 'mail'):
            os.makedirs(os.path.join(self.dir, d))
        uid, gid = pwd.getpwnam('postfix').pw_uid, grp.getgrnam('postfix').gr_gid
        os.chown(os.path.join(self.dir, 'data'), uid, gid)
        os.chown(os.path.join(self.dir, 'mail'), uid, gid)
        nowhere = 'error:5.7.1 this test instance delivers nowhere else'
        conf = {
            'compatibility_level': '3.6', 'queue_directory': self.dir + '/spool',
            'data_directory': self.dir + '/data', 'mail_owner': 'postfix',
            'setgid_group': 'postdrop', 'inet_interfaces': '127.0.0.1', 'inet_protocols': 'ipv4',
            'myhostname': 'pf.test', 'mydomain': 'pf.test', 'myorigin': 'pf.test',
            'mydestination': '', 'mynetworks': '127.0.0.1/32', 'relayhost': '',
            'smtpd_relay_restrictions': 'reject_unauth_destination',
            'smtpd_peername_lookup': 'no', 'smtp_dns_support_level': 'disabled',
            'default_transport': nowhere, 'relay_transport': nowhere,
            'virtual_mailbox_domains': 'pf.test', 'virtual_mailbox_base': self.dir + '/mail',
            'virtual_mailbox_maps': 'static:box/', 'virtual_uid_maps': 'static:%d' % uid,
            'virtual_gid_maps': 'static:%d' % gid, 'virtual_minimum_uid': '1',
            'maillog_file': self.dir + '/maillog', 'maillog_file_prefixes': self.dir,
            'alias_maps': '', 'alias_database': '', 'biff': 'no'}
        with open(os.path.join(etc, 'main.cf'), 'w') as f:
            f.write(''.join('%s = %s\n' % kv for kv in conf.items()))
        services = [('127.0.0.1:%d' % self.port, 'inet', 'n', '-', 'smtpd'),
                    ('pickup', 'unix', 'n', '1', 'pickup'), ('cleanup', 'unix', 'n', '0', 'cleanup'),
                    ('qmgr', 'unix', 'n', '1', 'qmgr'), ('rewrite', 'unix', '-', '-', 'trivial-rewrite'),
                    ('bounce', 'unix', '-', '0', 'bounce'), ('defer', 'unix', '-', '0', 'bounce'),
                    ('trace', 'unix', '-', '0', 'bounce'), ('verify', 'unix', '-', '1', 'verify'),
                    ('flush', 'unix', 'n', '0', 'flush'), ('proxymap', 'unix', '-', '-', 'proxymap'),
                    ('smtp', 'unix', '-', '-', 'smtp'), ('relay', 'unix', '-', '-', 'smtp'),
                    ('showq', 'unix', 'n', '-', 'showq'), ('error', 'unix', '-', '-', 'error'),
                    ('retry', 'unix', '-', '-', 'error'), ('discard', 'unix', '-', '-', 'discard'),
                    ('virtual', 'unix', '-', '-', 'virtual'), ('anvil', 'unix', '-', '1', 'anvil'),
                    ('scache', 'unix', '-', '1', 'scache'), ('postlog', 'unix-dgram', 'n', '1', 'postlogd')]
        with open(os.path.join(etc, 'master.cf'), 'w') as f:
            for name, kind, private, limit, cmd in services:
                # chroot n: nothing of the host's /etc is copied anywhere;
                # virtual writes the Maildir as its owner: privileged
                f.write('%s %s %s %s n - %s %s\n' % (name, kind, private,
                                                       'n' if cmd == 'virtual' else '-', limit, cmd))
        self.etc = etc
        r = subprocess.run(['/usr/sbin/postfix', '-c', etc, 'start'], capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError('postfix did not start: %r %s' % (r, self.logtext()[-1000:]))
        self.pid = int(wait(lambda: self._pid(), 10, 'postfix master.pid'))
        wait(lambda: self._up(), 10, 'postfix to listen')

    def _pid(self):
        try:
            return open(os.path.join(self.dir, 'spool', 'pid', 'master.pid')).read().strip()
        except OSError:
            return None

    def _up(self):
        try:
            socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def logtext(self):
        try:
            return open(os.path.join(self.dir, 'maillog')).read()
        except OSError:
            return ''

    def delivered(self):
        new = os.path.join(self.maildir, 'new')
        return [open(os.path.join(new, f), 'rb').read() for f in sorted(os.listdir(new))] \
            if os.path.isdir(new) else []

    def stop(self):
        if self.pid:
            os.kill(self.pid, signal.SIGTERM)  # the master stops its children
            wait(lambda: not os.path.exists('/proc/%d' % self.pid), 20, 'postfix to stop')
            self.pid = None


@case
def postfix_receives_from_smtp_send_and_the_queue(servers):
    pf = Postfix()
    servers.append(pf)
    data = b'Subject: to Postfix\n\n.leading dot\nbare LF\ncaf\xc3\xa9\n'
    r = subprocess.run([SEND, '--server', '127.0.0.1:%d' % pf.port, '--from', 'a@sender.test',
                        '--to', 'bob@pf.test', '--to', 'x@elsewhere.test', '--helo', 'client.test', '-'],
                       input=data, capture_output=True, timeout=60)
    out = r.stdout.decode()
    assert r.returncode == 1, r
    assert out.startswith('bob@pf.test 250 2.0.0 Ok: queued as '), out
    assert 'x@elsewhere.test 554 5.7.1 <x@elsewhere.test>: Relay access denied' in out, out
    got = wait(lambda: pf.delivered(), 20, 'the Maildir')
    # Postfix stores LF line ends and adds Date, From and Message-Id to
    # a message without them; the body is what we sent, dot unstuffed
    assert got[0].endswith(b'\n\n.leading dot\nbare LF\ncaf\xc3\xa9\n'), got[0][-200:]
    assert b'\nSubject: to Postfix\n' in got[0], got[0]
    assert b'Return-Path: <a@sender.test>' in got[0]

    # smtpd's queue runner, with Postfix as the smart host
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'pf.test',
              '--relay-domain', 'unrouted.test', '--smarthost', '[127.0.0.1]:%d' % pf.port,
              '--retry', '1s')
    servers.append(a)
    with smtplib.SMTP('127.0.0.1', a.port) as c:
        c.ehlo('client.test')
        c.mail('x@a.test', ['BODY=8BITMIME', 'ENVID=q1'])
        assert c.rcpt('carol@pf.test', ['NOTIFY=FAILURE'])[0] == 250
        assert c.rcpt('y@unrouted.test')[0] == 250
        c.data(b'Subject: queued\r\n\r\n8-bit \xc3\xa9 through the queue\r\n')
    wait(lambda: len(pf.delivered()) == 2, 20, 'the queued message in the Maildir')
    # (Maildir names sort by second only: find it by its subject)
    got = [x for x in pf.delivered() if b'\nSubject: queued\n' in x][0]
    assert got.endswith(b'\n\n8-bit \xc3\xa9 through the queue\n') and b'\nSubject: queued\n' in got, got
    assert b'by a.test with ESMTP id' in got, got  # our Received under Postfix's
    wait(lambda: a.queued() == [], 20, 'the queue to empty')
    wait_log(a, 'to=<carol@pf.test> relay=127.0.0.1 status=sent 250 2.0.0 Ok: queued as')
    wait_log(a, 'to=<y@unrouted.test> relay=127.0.0.1 status=bounced 554 5.7.1')
    wait_log(pf, 'status=sent (delivered to maildir)')
    bounce = wait(lambda: [m for m in a.local() if b'multipart/report' in a.read(m)], 10, 'bounce')
    _, rcpts, _ = report(a.read(bounce[0]))
    assert [(x['Final-Recipient'], x['Status']) for x in rcpts] == [('rfc822; y@unrouted.test', '5.7.1')]


AIOSMTPD = r"""
import sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
out, port = sys.argv[1], int(sys.argv[2])
class Store:
    async def handle_DATA(self, server, session, envelope):
        with open(out, 'ab') as f:
            f.write(b'AUTH %s FROM %s TO %s\n' % (session.login_data or b'-', envelope.mail_from.encode(),
                    ','.join(envelope.rcpt_tos).encode()) + envelope.content + b'\n--end--\n')
        return '250 2.0.0 stored by aiosmtpd'
def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b'alice' and data.password == b's3cret'
    # handled=False: aiosmtpd sends the 535 itself
    return AuthResult(success=ok, handled=False, auth_data=data)
c = Controller(Store(), hostname='127.0.0.1', port=port, authenticator=check,
               auth_require_tls=False, auth_required=True)
c.start()
print('ready', flush=True)
sys.stdin.read()
c.stop()
"""


@case
def aiosmtpd_takes_an_authenticated_submission(servers):
    # Debian's python3 has the python3-aiosmtpd package
    py = '/usr/bin/python3'
    if subprocess.run([py, '-c', 'import aiosmtpd'], capture_output=True).returncode != 0:
        raise RuntimeError('python3-aiosmtpd is not installed (make deps installs it)')
    out = os.path.join(TMP, 'aiosmtpd.out')
    port = free_port()
    p = subprocess.Popen([py, '-c', AIOSMTPD, out, str(port)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    class Stop:
        name, dir = 'aiosmtpd', TMP

        def stop(self):
            p.kill()
            p.wait(timeout=10)
    servers.append(Stop())
    assert p.stdout.readline() == b'ready\n'

    def run(*args):
        r = subprocess.run([SEND, '--server', '127.0.0.1:%d' % port, '--from', 'alice@a.test',
                            '--to', 'bob@b.test', '--verbose'] + list(args) + ['-'],
                           input=b'Subject: submitted\n\nvia AUTH\n', capture_output=True, timeout=60)
        return r.returncode, r.stdout.decode(), r.stderr.decode()
    # no TLS here, so AUTH in cleartext needs --insecure-auth; without it
    # the client refuses rather than send the password
    rc, so, se = run('--user', 'alice', '--password', 's3cret')
    assert rc == 2 and 'C: AUTH' not in se and not os.path.exists(out), (rc, so, se)
    rc, so, se = run('--user', 'alice', '--password', 'wrong', '--insecure-auth')
    assert rc == 2 and so.startswith('bob@b.test 535 '), (rc, so, se)
    rc, so, se = run('--user', 'alice', '--password', 's3cret', '--insecure-auth')
    assert rc == 0 and so == 'bob@b.test 250 2.0.0 stored by aiosmtpd\n', (rc, so, se)
    assert 'C: AUTH PLAIN ****' in se and 's3cret' not in se, se
    stored = open(out, 'rb').read()
    assert stored.startswith(b'AUTH alice FROM alice@a.test TO bob@b.test\n'), stored
    assert b'Subject: submitted\r\n\r\nvia AUTH\r\n' in stored, stored


class FakeSmtp:
    """A next hop inside this process that answers each recipient as told
    (replies: {address: b'451 4.2.0 busy'}, default 250) and records what it
    was given. Stopped like a server."""
    def __init__(self, replies=None, host='127.0.0.1', port=0):
        import threading
        self.replies = replies or {}
        self.name, self.dir = 'fake-smtp', TMP
        self.got = []  # (mail from, [accepted recipients], data)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        try:
            f = conn.makefile('rb')
            conn.sendall(b'220 fake.test ESMTP\r\n')
            frm, rcpts = None, []
            for line in f:
                cmd = line.strip().upper()
                if cmd.startswith(b'EHLO'):
                    conn.sendall(b'250-fake.test\r\n250-8BITMIME\r\n250 DSN\r\n')
                elif cmd.startswith(b'HELO') or cmd.startswith(b'NOOP') or cmd.startswith(b'RSET'):
                    frm, rcpts = None, []
                    conn.sendall(b'250 2.0.0 ok\r\n')
                elif cmd.startswith(b'MAIL FROM:'):
                    frm, rcpts = line.split(b'<', 1)[1].split(b'>', 1)[0].decode(), []
                    conn.sendall(b'250 2.1.0 ok\r\n')
                elif cmd.startswith(b'RCPT TO:'):
                    addr = line.split(b'<', 1)[1].rsplit(b'>', 1)[0].decode()
                    reply = self.replies.get(addr, b'250 2.1.5 ok')
                    if reply.startswith(b'2'):
                        rcpts.append(addr)
                    conn.sendall(reply + b'\r\n')
                elif cmd == b'DATA':
                    if not rcpts:
                        conn.sendall(b'554 5.5.1 no valid recipients\r\n')
                        continue
                    conn.sendall(b'354 go ahead\r\n')
                    data = b''
                    for dl in f:
                        if dl == b'.\r\n':
                            break
                        data += dl[1:] if dl.startswith(b'.') else dl
                    self.got.append((frm, rcpts, data))
                    conn.sendall(b'250 2.0.0 stored by fake\r\n')
                elif cmd == b'QUIT':
                    conn.sendall(b'221 2.0.0 bye\r\n')
                    break
                else:
                    conn.sendall(b'502 5.5.2 what\r\n')
        except OSError:
            pass
        finally:
            conn.close()

    def delivered_to(self, addr):
        return sum(1 for _, rcpts, _ in self.got if addr in rcpts)

    def stop(self):
        self.sock.close()


def write_entry(spool, qid, sender, rcpts, body, received=None, st=None, env_extra=''):
    """A queue entry as a server from before (envelope version 1) left it."""
    q = os.path.join(spool, 'queue')
    os.makedirs(q, exist_ok=True)
    os.makedirs(os.path.join(spool, 'tmp'), exist_ok=True)
    env = ('version 1\nid %s\nreceived %d\nclient 127.0.0.1\nhelo client.test\n'
           'protocol ESMTP\nfrom <%s>\n%s' % (qid, received or int(time.time()), sender, env_extra) +
           ''.join('rcpt <%s> relay\n' % r for r in rcpts))
    open(os.path.join(q, qid + '.env'), 'w').write(env)
    if st is not None:
        open(os.path.join(q, qid + '.st'), 'wb').write(st)
    open(os.path.join(q, qid + '.eml'), 'wb').write(
        b'Return-Path: <%s>\r\nReceived: from client.test\r\n\tby a.test; now\r\n' % sender.encode() + body)


@case
def bounce_fields_cannot_carry_header_injection(servers):
    # (a reply with control characters never gets this far: the client
    # session calls it malformed)
    fake = FakeSmtp({'w@far.test': b'550 5.1.1 no such user', 'v@far.test': b'550 5.1.2 bad'})
    servers.append(fake)
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--smarthost', '127.0.0.1:%d' % fake.port, '--retry', '1s')
    servers.append(a)
    with smtplib.SMTP('127.0.0.1', a.port) as c:
        c.ehlo('client.test')
        c.mail('x@a.test', ['ENVID=e1+0D+0AX-Evil:+20envid'])
        assert c.rcpt('w@far.test', ['NOTIFY=FAILURE', 'ORCPT=rfc822;w+0D+0AX-Evil:+20orcpt@far.test'])[0] == 250
        assert c.rcpt('v@far.test', ['ORCPT=rfc822;v+2Bx@far.test'])[0] == 250
        c.data(b'Subject: inject\r\n\r\nx\r\n')
    bounce = wait(lambda: [m for m in a.local() if b'multipart/report' in a.read(m)], 20, 'bounce')
    raw = a.read(bounce[0])
    head = raw.split(b'Content-Description: Undelivered Message')[0]
    # no line break but CRLF, no control character, no forged field
    assert b'\r' not in head.replace(b'\r\n', b'') and b'\n' not in head.replace(b'\r\n', b''), head
    assert not any(ch < 32 and ch not in (9, 10, 13) for ch in head), head
    assert b'\nX-Evil' not in raw.replace(b'\r', b'\n'), raw[:3000]
    _, rcpts, _ = report(raw)
    assert not any(k.lower().startswith('x-evil') for r in rcpts for k in r), rcpts
    by = {r['Final-Recipient']: r for r in rcpts}
    w, v = by['rfc822; w@far.test'], by['rfc822; v@far.test']
    # RFC 3461 4.2 / RFC 3464 2.3.1: the original recipient as xtext
    assert w['Original-Recipient'] == 'rfc822;w+0D+0AX-Evil:+20orcpt@far.test', w
    assert v['Original-Recipient'] == 'rfc822;v+2Bx@far.test', v
    assert b'Original-Envelope-Id: e1+0D+0AX-Evil:+20envid\r\n' in raw, raw[:2000]
    assert w['Diagnostic-Code'].startswith('smtp; 550 5.1.1 no such user'), w


@case
def quoted_local_part_with_angle_bracket_survives_the_queue(servers):
    b = Smtpd('b.test', '--local-domain', 'far.test')
    servers.append(b)
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--smarthost', '127.0.0.1:%d' % b.port, '--retry', '1s')
    servers.append(a)
    # RFC 5321 4.1.2: a quoted local part may hold ">" and spaces
    with smtplib.SMTP('127.0.0.1', a.port) as c:
        c.ehlo('client.test')
        assert c.docmd('MAIL FROM:<"a b"@a.test>')[0] == 250
        assert c.docmd('RCPT TO:<"p q"@far.test>', 'ORCPT=rfc822;p+20q@far.test')[0] == 250
        c.data(b'Subject: quoted\r\n\r\nspace\r\n')
        assert c.docmd('MAIL FROM:<x@a.test>')[0] == 250
        assert c.docmd('RCPT TO:<"x> y"@far.test>')[0] == 250
        c.data(b'Subject: quoted\r\n\r\nbracket\r\n')
    wait_log(a, 'to=<"p q"@far.test> relay=127.0.0.1 status=sent')
    # the whole address is read back from the queue and relayed as it is:
    # the client session checks paths with the library's path parser, so
    # a ">" inside quotes goes out (it was refused, and bounced, before)
    wait_log(a, 'to=<"x> y"@far.test> relay=127.0.0.1 status=sent')
    assert 'to=<"x> relay' not in a.logtext(), a.logtext()
    wait(lambda: len(b.local()) == 2, 10, 'delivery')
    log = b.logtext()
    assert 'rcpt=<"p q"@far.test> accepted=local' in log and 'mail=<"a b"@a.test>' in log, log
    assert 'rcpt=<"x> y"@far.test> accepted=local' in log, log
    wait(lambda: a.queued() == [], 10, 'the queue to empty')
    envs = [open(os.path.join(b.spool, n[:-4] + '.env')).read() for n in b.local()]
    env = [e for e in envs if 'p+20q' in e][0]
    assert 'version 2\n' in env and 'rcpt <"p+20q"@far.test> local ORCPT=rfc822;p+20q@far.test' in env, env


@case
def queue_ids_never_collide_nor_clobber_another_entry(servers):
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--smarthost', '[127.0.0.1]:%d' % free_port(), '--retry', '1h')
    servers.append(a)
    # what a restart in the same second with the same pid (pid 1 in a
    # container) would find: entries with the ids this server will choose
    pid, now = a.proc.pid, int(time.time())
    decoys = []
    for t in range(now - 2, now + 20):
        for k in range(4):
            qid = '%08X%06X%04X' % (t, pid & 0xffffff, k)
            for d in (a.queue, a.spool):
                for ext in ('env', 'eml'):
                    p = os.path.join(d, qid + '.' + ext)
                    open(p, 'w').write('decoy %s\n' % qid)
                    decoys.append(p)
    with smtplib.SMTP('127.0.0.1', a.port) as c:
        refused = c.sendmail('x@a.test', ['me@a.test', 'u@far.test'], b'Subject: new\r\n\r\nnew\r\n')
    assert refused == {}
    for p in decoys:
        assert os.path.exists(p) and open(p).read().startswith('decoy '), p
    mine = [m for m in a.local() if b'Subject: new' in a.read(m)]
    assert len(mine) == 1, a.local()
    assert any(b'Subject: new' in open(os.path.join(a.queue, m), 'rb').read() for m in a.queued())


@case
def bounce_returns_headers_and_a_bounded_body(servers):
    b = Smtpd('b.test', '--local-domain', 'far.test')
    servers.append(b)
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'other.test',
              '--smarthost', '127.0.0.1:%d' % b.port)
    servers.append(a)
    small = Smtpd('s.test', '--local-domain', 's.test', '--relay-domain', 'other.test',
                  '--smarthost', '127.0.0.1:%d' % b.port, '--bounce-size-limit', '2000')
    servers.append(small)
    body = b'Subject: payload\r\nX-Tag: kept\r\n\r\n' + b'payload line of 30 octets....\r\n' * 10000 + b'THE END\r\n'
    send(a.port, 'x@a.test', ['w@other.test'], body)
    send(small.port, 'x@s.test', ['w@other.test'], body)
    for s, limit in ((a, 50000), (small, 2000)):
        bounce = wait(lambda: [m for m in s.local() if b'multipart/report' in s.read(m)], 20, 'bounce')
        raw = s.read(bounce[0])
        _, _, orig = report(raw)
        assert b'X-Tag: kept' in raw and b'payload line' in raw and b'THE END' not in raw, s.name
        returned = raw.split(b'X-Tag: kept\r\n', 1)[1]
        # at most the limit in all, header included (as Postfix)
        assert limit - 400 < len(returned) < limit + 100, (s.name, len(returned))
        assert b'truncated' in raw.split(b'Content-Description: Delivery report')[0], raw[:1500]
    r = subprocess.run([SMTPD, '--bounce-size-limit', 'lots'], capture_output=True, timeout=10)
    assert r.returncode == 2, r


@case
def clock_stepped_back_does_not_expire_deferred_mail(servers):
    # received "tomorrow": what an entry looks like after the clock stepped
    # back a day
    def setup(spool):
        write_entry(spool, '0000000000000000C1', 'x@a.test', ['u@far.test'],
                    b'Subject: future\r\n\r\nx\r\n', received=int(time.time()) + 86400)
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--smarthost', '[127.0.0.1]:%d' % free_port(), '--retry', '1s', '--max-queue-time', '1h',
              setup=setup)
    servers.append(a)
    wait_log(a, 'to=<u@far.test> relay=none status=deferred', count=2)
    time.sleep(0.5)
    log = a.logtext()
    assert 'status=expired' not in log and 'bounce=' not in log, log
    assert a.queued() == ['0000000000000000C1.eml'], a.queued()
    assert 'next attempt in 1s' in log, log


class FakeDns:
    """A UDP name server in this process that records (source port, id) of
    every question and answers SERVFAIL."""
    def __init__(self):
        import threading
        self.name, self.dir = 'fake-dns', TMP
        self.seen = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                q, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            if len(q) < 12:
                continue
            self.seen.append((peer[1], q[0] << 8 | q[1]))
            # QR, opcode and RD kept, RA, RCODE 2 (SERVFAIL), the question
            self.sock.sendto(q[:2] + bytes([0x80 | q[2], 0x82]) + q[4:6] + b'\0\0\0\0\0\0' + q[12:], peer)

    def stop(self):
        self.sock.close()


@case
def dns_query_ids_and_ports_differ_between_runners(servers):
    dns = FakeDns()
    servers.append(dns)
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--dns', '127.0.0.1:%d' % dns.port, '--retry', '1h', '--runners', '4')
    servers.append(a)
    for i in range(3):
        send(a.port, 'x@a.test', ['u%d@far.test' % i], b'Subject: dns\r\n\r\nx\r\n')
    wait_log(a, 'status=deferred 451 4.4.3', count=3)
    ids = [i for _, i in dns.seen]
    ports = [p for p, _ in dns.seen]
    assert len(ids) >= 3, dns.seen
    assert len(set(ids)) == len(ids), 'repeated DNS query ids: %r' % dns.seen
    assert len(set(ports)) == len(ports), 'repeated source ports: %r' % dns.seen


@case
def torn_status_line_does_not_deliver_twice(servers):
    fake = FakeSmtp({'v@far.test': b'451 4.2.0 try later'})
    servers.append(fake)
    # a crash tore the last line of the log: "T 0 4" without its newline
    def setup(spool):
        write_entry(spool, '0000000000000000D1', 'x@a.test', ['u@far.test', 'v@far.test'],
                    b'Subject: torn\r\n\r\nonce\r\n', st=b'T 1 451 127.0.0.1 4.2.0 later\nN 0 1\nT 0 4')
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--smarthost', '127.0.0.1:%d' % fake.port, '--retry', '1s', setup=setup)
    servers.append(a)
    wait_log(a, 'to=<v@far.test> relay=127.0.0.1 status=deferred', count=3)
    assert fake.delivered_to('u@far.test') == 1, fake.got
    st = open(os.path.join(a.queue, '0000000000000000D1.st'), 'rb').read()
    assert b'\nD 0 250 127.0.0.1 ' in st and b'T 0 4D' not in st, st


@case
def durations_that_do_not_fit_are_refused(servers):
    for args in (['--retry', '71582789m'], ['--retry', '1m,4294967297s'],
                 ['--max-queue-time', '99999999d'], ['--timeout', '4294967297'],
                 ['--runners', '4294967297'], ['--max-clients', '4294967297']):
        r = subprocess.run([SMTPD, '--spool', os.path.join(TMP, 'nospool')] + args,
                           capture_output=True, timeout=10)
        assert r.returncode == 2 and b'smtpd: ' in r.stderr, (args, r)
    r = subprocess.run([SEND, '--server', '127.0.0.1:1', '--timeout', '4294967297', '--from', 'a@b.c',
                        '--to', 'd@e.f', '-'], input=b'x\n', capture_output=True, timeout=10)
    assert r.returncode == 2 and b'--timeout' in r.stderr, r


@case
def every_option_without_its_value_is_refused(servers):
    # each option the usage text shows with an argument, given last and
    # bare: "needs a value", exit 2 (--smarthost used to crash: strlen(NULL))
    import re
    usage = subprocess.run([SMTPD, '--help'], capture_output=True, timeout=10)
    text = (usage.stdout + usage.stderr).decode()
    opts = sorted(set(re.findall(r'(--[a-z0-9-]+) (?:[A-Z]|1\.2)', text)))
    assert len(opts) >= 30 and '--smarthost' in opts, opts
    for o in opts:
        r = subprocess.run([SMTPD, o], capture_output=True, timeout=10)
        assert r.returncode == 2 and r.stderr == ('smtpd: %s needs a value\n' % o).encode(), (o, r)


@case
def mx_pointing_back_at_this_server_is_a_loop(servers):
    port = free_port('127.0.0.4')
    dns = Dnsmasq('--mx-host=loop.test,mx.loop.test,10', '--host-record=mx.loop.test,127.0.0.4',
                  '--mx-host=backup.test,mx2.backup.test,10', '--mx-host=backup.test,mx.loop.test,20',
                  '--host-record=mx2.backup.test,127.0.0.3', '--host-record=probe.test,127.0.0.9')
    servers.append(dns)
    # its own name is not in the MX list, only its address
    r = Smtpd('relay.test', '--local-domain', 'relay.test', '--relay-net', '127.0.0.0/8',
              '--dns', '127.0.0.1:%d' % dns.port, '--mx-port', str(port), '--retry', '1s',
              '--max-queue-time', '1h', host='127.0.0.4', port=port)
    servers.append(r)
    send(port, 'x@relay.test', ['a@loop.test', 'b@backup.test'], b'Subject: loop\r\n\r\nx\r\n',
         host='127.0.0.4')
    wait_log(r, 'to=<a@loop.test> relay=none status=bounced 554 5.4.6', 15)
    # the backup MX is this server: discarded, so the primary's failure is
    # a deferral, never a delivery to itself (RFC 5321 5.1)
    wait_log(r, 'to=<b@backup.test> relay=none status=deferred', 15)
    time.sleep(1.5)
    log = r.logtext()
    assert 'status=sent' not in log and log.count('queued=') == 1, log


def smtp_send_rc(*args, data=b'Subject: s\n\nx\n'):
    r = subprocess.run([SEND] + list(args) + ['-'], input=data, capture_output=True, timeout=60)
    return r.returncode, r.stdout.decode()


@case
def smtp_send_exit_status_says_what_happened(servers):
    fake = FakeSmtp({'v@far.test': b'451 4.2.0 later', 'w@far.test': b'550 5.1.1 no'})
    servers.append(fake)
    srv = ['--server', '127.0.0.1:%d' % fake.port, '--from', 'a@b.test']
    assert smtp_send_rc(*srv, '--to', 'u@far.test')[0] == 0
    rc, out = smtp_send_rc(*srv, '--to', 'u@far.test', '--to', 'w@far.test')
    assert rc == 1 and 'w@far.test 550' in out, (rc, out)
    rc, out = smtp_send_rc(*srv, '--to', 'w@far.test')
    assert rc == 2, (rc, out)
    rc, out = smtp_send_rc(*srv, '--to', 'u@far.test', '--to', 'v@far.test')
    assert rc == 3 and 'u@far.test 250' in out and 'v@far.test 451' in out, (rc, out)
    rc, out = smtp_send_rc(*srv, '--to', 'w@far.test', '--to', 'v@far.test')
    assert rc == 3, (rc, out)
    rc, out = smtp_send_rc('--server', '127.0.0.1:%d' % free_port(), '--from', 'a@b.test',
                           '--to', 'u@far.test')
    assert rc == 4 and 'u@far.test 451 4.4.1 cannot connect' in out, (rc, out)
    assert smtp_send_rc('--bogus')[0] == 2
    r = subprocess.run([SEND, '--help'], capture_output=True)
    assert b'4 ' in r.stdout and b'deferred' in r.stdout, r.stdout


@case
def full_disk_loses_nothing_and_delivers_once(servers):
    if os.geteuid() != 0:
        raise RuntimeError('SKIP needs root to mount a small tmpfs')
    d = os.path.join(TMP, 'small')
    os.makedirs(d)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', d], check=True)
    try:
        bport = free_port()
        filler = os.path.join(d, 'filler')

        def setup(spool):
            # an acknowledged message waiting in the queue, then no space left
            write_entry(spool, '0000000000000000F1', 'x@a.test', ['u@far.test'],
                        b'Subject: kept\r\n\r\nwaited for space\r\n')
            with open(filler, 'wb', buffering=0) as f:
                try:
                    while True:
                        f.write(b'\0' * 4096)
                except OSError:
                    pass
        b = Smtpd('b.test', '--local-domain', 'far.test', port=bport)
        servers.append(b)
        a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
                  '--smarthost', '127.0.0.1:%d' % bport, '--retry', '1s', setup=setup,
                  spool=os.path.join(d, 'spool'))
        servers.append(a)
        # nothing acknowledged that is not stored: 452 4.3.1 (RFC 3463)
        try:
            send(a.port, 'x@a.test', ['me@a.test', 'u@far.test'], b'Subject: no room\r\n\r\n' + b'x' * 300000)
            raise AssertionError('a message was acknowledged on a full disk')
        except smtplib.SMTPDataError as e:
            assert e.smtp_code // 100 == 4, e
            refusal = e
        wait_log(a, 'No space left on device', 10)
        time.sleep(3.5)  # several retry intervals
        n = sum(1 for m in b.local() if b'waited for space' in b.read(m))
        assert n <= 1, 'delivered %d times while its log could not be written' % n
        os.unlink(filler)
        wait(lambda: a.queued() == [], 20, 'the queue to empty once there is space')
        got = [m for m in b.local() if b'waited for space' in b.read(m)]
        assert len(got) == 1, got
        assert not any(b'no room' in b.read(m) for m in b.local())
        assert refusal.smtp_code == 452 and refusal.smtp_error.startswith(b'4.3.1'), refusal
        a.stop()
        servers.remove(a)
    finally:
        for s in list(servers):
            if getattr(s, 'spool', '').startswith(d):
                try:
                    s.stop()
                finally:
                    servers.remove(s)
        subprocess.run(['umount', '-l', d])


@case
def mx_at_the_v4_mapped_form_of_my_address_is_a_loop(servers):
    # ::ffff:127.0.0.4 is 127.0.0.4 (RFC 4291 2.5.5.2): this server
    port = free_port('127.0.0.4')
    dns = Dnsmasq('--mx-host=mapped.test,mx.mapped.test,10',
                  '--host-record=mx.mapped.test,::ffff:127.0.0.4')
    servers.append(dns)
    r = Smtpd('relay.test', '--local-domain', 'relay.test', '--relay-net', '127.0.0.0/8',
              '--dns', '127.0.0.1:%d' % dns.port, '--mx-port', str(port), '--retry', '1s',
              '--max-queue-time', '1h', host='127.0.0.4', port=port)
    servers.append(r)
    send(port, 'x@relay.test', ['a@mapped.test'], b'Subject: loop\r\n\r\nx\r\n', host='127.0.0.4')
    wait_log(r, 'to=<a@mapped.test> relay=', 15)
    time.sleep(1)
    log = r.logtext()
    assert 'to=<a@mapped.test> relay=none status=bounced 554 5.4.6' in log, log[-2000:]
    assert 'status=sent' not in log and log.count('queued=') == 1, log[-2000:]


def bouncing_smtpd(servers):
    """An smtpd whose next hop refuses u@far.test; bounces return 1000
    octets at most."""
    fake = FakeSmtp({'u@far.test': b'550 5.1.1 no such user'})
    servers.append(fake)
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--smarthost', '127.0.0.1:%d' % fake.port, '--retry', '1s',
              '--bounce-size-limit', '1000')
    servers.append(a)
    return a


@case
def bounce_size_limit_counts_the_header_too(servers):
    a = bouncing_smtpd(servers)
    for name, data in (('no empty line', b'Subject: n\r\n' + (b'y' * 98 + b'\r\n') * 3000),
                       ('a big header', b'Subject: h\r\n' + (b'X-Pad: ' + b'z' * 91 + b'\r\n') * 3000 +
                        b'\r\nshort body\r\n')):
        before = set(a.local())
        send(a.port, 'x@a.test', ['u@far.test'], data)
        new = wait(lambda: [m for m in set(a.local()) - before if b'multipart/report' in a.read(m)],
                   20, 'bounce')
        raw = a.read(new[0])
        orig = raw.split(b'Content-Type: message/rfc822\r\n\r\n', 1)[1].rsplit(b'\r\n--', 1)[0]
        assert 0 < len(orig) <= 1000, (name, len(orig))
        # whole lines only: the last one returned is one of the message's
        assert orig.endswith(b'\r\n') and \
            orig[:-2].rsplit(b'\r\n', 1)[-1] in data.split(b'\r\n'), (name, orig[-40:])
        assert b'truncated' in raw.split(b'Content-Description: Delivery report')[0], raw[:1500]


@case
def bounce_cut_never_splits_a_line(servers):
    a = bouncing_smtpd(servers)
    head = b'Subject: s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'
    # a first body line longer than the limit: no line end to cut at
    send(a.port, 'x@a.test', ['u@far.test'], head + b'\xc3\xa9' * 2500 + b'\r\nsecond\r\n',
         mail_options=['BODY=8BITMIME'])
    new = wait(lambda: [m for m in a.local() if b'multipart/report' in a.read(m)], 20, 'bounce')
    raw = a.read(new[0])
    assert b'\r' not in raw.replace(b'\r\n', b''), raw[-300:]
    orig = raw.split(b'Content-Type: message/rfc822\r\n\r\n', 1)[1].rsplit(b'\r\n--', 1)[0]
    assert orig.endswith(b'charset=utf-8\r\n\r\n') and b'\xc3' not in orig, orig[-60:]
    text = raw.split(b'Content-Description: Delivery report')[0]
    assert b'body is not included' in text, text


@case
def second_smtpd_on_the_same_spool_touches_nothing(servers):
    old = time.time() - 7200
    def setup(spool):
        q = os.path.join(spool, 'queue')
        os.makedirs(q)
        # left by a crash long ago: a removal cut short
        open(os.path.join(q, 'OLD0000000000000000.env'), 'w').write('from <>\n')
        os.utime(os.path.join(q, 'OLD0000000000000000.env'), (old, old))
        # a message whose envelope is not there (yet): kept, and said
        open(os.path.join(q, 'NOENV00000000000000.eml'), 'wb').write(b'Subject: x\r\n\r\nx\r\n')
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--smarthost', '[127.0.0.1]:%d' % free_port(), '--retry', '1s', setup=setup)
    servers.append(a)
    assert not os.path.exists(os.path.join(a.queue, 'OLD0000000000000000.env'))
    wait_log(a, 'queue=NOENV00000000000000 has no envelope', 10)
    assert os.path.exists(os.path.join(a.queue, 'NOENV00000000000000.eml'))
    # what a message being stored looks like between its two links
    half = os.path.join(a.queue, 'HALF000000000000000.env')
    open(half, 'w').write('from <>\n')
    os.utime(half, (old, old))
    r = subprocess.run([SMTPD, '--listen', '127.0.0.1:%d' % free_port(), '--hostname', 'b.test',
                        '--spool', a.spool], capture_output=True, timeout=10)
    assert r.returncode == 2 and b'in use by another smtpd' in r.stderr, r
    assert os.path.exists(half), 'the second smtpd removed a file of the first'


@case
def future_received_time_still_expires(servers):
    def setup(spool):
        write_entry(spool, '0000000000000000E1', 'x@a.test', ['u@far.test'],
                    b'Subject: future\r\n\r\nx\r\n', received=int(time.time()) + 10 * 365 * 86400)
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--smarthost', '[127.0.0.1]:%d' % free_port(), '--retry', '1s', '--max-queue-time', '3s',
              setup=setup)
    servers.append(a)
    wait_log(a, 'queue=0000000000000000E1 to=<u@far.test> status=expired', 20)
    wait(lambda: a.queued() == [], 10, 'the queue to empty')
    assert [m for m in a.local() if b'multipart/report' in a.read(m)], a.local()


@case
def status_log_gives_its_reservation_back(servers):
    rcpts = ['u%d@far.test' % i for i in range(200)]
    fake = FakeSmtp({r: b'451 4.2.1 mailbox busy' for r in rcpts})
    servers.append(fake)
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--smarthost', '127.0.0.1:%d' % fake.port, '--retry', '1s,1h', '--max-queue-time', '1d')
    servers.append(a)
    send(a.port, 'x@a.test', rcpts, b'Subject: many\r\n\r\nhi\r\n')
    wait_log(a, 'recipients deferred', 20, count=2)
    st = [f for f in os.listdir(a.queue) if f.endswith('.st')]
    data = open(os.path.join(a.queue, st[0]), 'rb').read()
    assert b'#' not in data, 'padding left in the log: %d of %d octets' % (data.count(b'#'), len(data))
    assert data.count(b'\nT ') + data.startswith(b'T ') == 400, data[:300]


@case
def smtp_send_first_server_4xx_then_one_down_is_deferred(servers):
    port = free_port('127.0.0.2')
    fake = FakeSmtp({'t@one.test': b'451 4.2.1 busy'}, host='127.0.0.2', port=port)
    servers.append(fake)
    # mx2 (127.0.0.3) has nothing listening on that port
    dns = Dnsmasq('--mx-host=one.test,mx1.one.test,10', '--mx-host=one.test,mx2.one.test,20',
                  '--host-record=mx1.one.test,127.0.0.2', '--host-record=mx2.one.test,127.0.0.3')
    servers.append(dns)
    rc, out = smtp_send_rc('--mx', 'one.test', '--dns', '127.0.0.1:%d' % dns.port,
                           '--mx-port', str(port), '--from', 'x@a.test', '--to', 't@one.test')
    assert rc == 3 and 't@one.test 451 4.2.1 busy' in out, (rc, out)


@case
def smtp_send_require_tls_without_starttls_is_deferred(servers):
    require_tls(SMTPD)
    fake = FakeSmtp()
    servers.append(fake)
    rc, out = smtp_send_rc('--server', '127.0.0.1:%d' % fake.port, '--require-tls',
                           '--from', 'a@b.test', '--to', 'u@far.test')
    assert rc == 3 and 'u@far.test 451 4.7.4 ' in out, (rc, out)
    assert not fake.got


def _listening(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close()
        return True
    except OSError:
        return False


def smtpd_with_system_hostname(name, spool, port):
    """smtpd without --hostname on a host whose gethostname() is name (a
    private UTS namespace; needs root)."""
    code = ('import os, socket, sys; socket.sethostname(sys.argv[1]); '
            'os.execv(sys.argv[2], sys.argv[2:])')
    return subprocess.Popen(['unshare', '--uts', sys.executable, '-c', code, name, SMTPD,
                             '--listen', '127.0.0.1:%d' % port, '--spool', spool],
                            stderr=subprocess.PIPE, start_new_session=True)


@case
def system_hostname_that_is_not_a_domain_falls_back(servers):
    r = subprocess.run([SMTPD, '--hostname', 'host_name', '--spool', os.path.join(TMP, 'nospool')],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b'--hostname host_name' in r.stderr, r
    if os.geteuid() != 0 or shutil.which('unshare') is None:
        raise Skip('needs root and unshare(1) to give smtpd another host name')
    for name, want in (('host_name', b'localhost'), ('host.example.', b'host.example')):
        port = free_port()
        p = smtpd_with_system_hostname(name, os.path.join(TMP, 'hn-' + name), port)
        try:
            wait(lambda: p.poll() is not None or _listening(port), 10, 'smtpd to listen')
            assert p.poll() is None, p.stderr.read()
            with socket.create_connection(('127.0.0.1', port), timeout=5) as s:
                assert s.makefile('rb').readline().startswith(b'220 ' + want + b' '), name
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
        err = p.stderr.read()
        if want == b'localhost':
            assert b'host_name' in err and b'--hostname' in err, err



shutil.rmtree(TMP, ignore_errors=True)
failed = closing_line(RESULTS)
sys.exit(1 if failed else 0)
