#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# delivery.py - onward delivery end to end: smtpd's queue runner and
# smtp-send against other smtpd instances (on 127.0.0.1, 127.0.0.2 and
# 127.0.0.3: all loopback), MX answers from a private dnsmasq, a private
# Postfix instance and aiosmtpd. Every server is started here and stopped
# by its PID (a process group for smtpd, whose queue runners are children).
# Usage: python3 tests/delivery.py [path/to/smtpd]
import email, email.policy, os, shutil, signal, smtplib, socket, subprocess, sys, tempfile, time

SMTPD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else 'build/examples/smtpd')
SEND = os.path.join(os.path.dirname(SMTPD), 'smtp-send')
RESULTS = []
TMP = tempfile.mkdtemp(prefix='llsmtp-dlv-')


def free_port(host='127.0.0.1'):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(pred, timeout=30, what='condition'):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError('timed out waiting for ' + what)


class Smtpd:
    """An examples/smtpd; restartable on the same spool and address."""
    n = 0

    def __init__(self, name, *args, host='127.0.0.1', port=None):
        Smtpd.n += 1
        self.name = name
        self.host = host
        self.port = port or free_port(host)
        self.dir = os.path.join(TMP, '%s-%d' % (name, Smtpd.n))
        os.makedirs(self.dir)
        self.spool = os.path.join(self.dir, 'spool')
        self.queue = os.path.join(self.spool, 'queue')
        self.args = [SMTPD, '--listen', '%s:%d' % (host, self.port), '--hostname', name,
                     '--spool', self.spool] + list(args)
        self.proc = None
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
    try:
        fn(servers)
        RESULTS.append((fn.__name__, None))
        print('ok   %s' % fn.__name__)
    except Exception as e:
        import traceback
        RESULTS.append((fn.__name__, e))
        print('FAIL %s: %r' % (fn.__name__, e))
        traceback.print_exc()
        for s in servers:
            if os.environ.get('LLSMTP_IT_VERBOSE') and os.path.exists(os.path.join(s.dir, 'smtpd.log')):
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
    a = Smtpd('a.test', '--local-domain', 'a.test', '--relay-domain', 'far.test',
              '--relay-domain', 'other.test', '--smarthost', '[127.0.0.1]:%d' % b.port,
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
    log = a.logtext()
    assert 'to=<u@far.test> relay=127.0.0.1 status=sent 250' in log, log
    assert 'to=<w@other.test> relay=127.0.0.1 status=bounced 550' in log, log

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
    assert rcpts[0]['Original-Recipient'] == 'rfc822; W@other.test', rcpts
    assert b'Original-Envelope-Id: env+2\r\n' in raw, raw[:1500]
    assert b'text/rfc822-headers' in raw and b'Subject: hdrs' in raw and b'secret body' not in raw
    time.sleep(1.5)
    assert len([m for m in b.local() if b'multipart/report' in b.read(m)]) == 1
    assert a.queued() == []


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
    tries = c.logtext().count('to=<u@far.test> relay=none status=deferred')
    assert 3 <= tries <= 6, tries
    assert c.queued() == [] and os.listdir(c.queue) == []


failed = 0
shutil.rmtree(TMP, ignore_errors=True)
failed = sum(1 for _, e in RESULTS if e is not None)
print('%d passed, %d failed' % (len(RESULTS) - failed, failed))
sys.exit(1 if failed else 0)
