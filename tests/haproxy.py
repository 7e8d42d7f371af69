#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# haproxy.py - smtpd as operators scale it out: a private HAProxy (Debian's
# package, `haproxy -db -f <conf>` on a free loopback port; never the
# system's service, stopped by its PID) with send-proxy-v2 and
# `option smtpchk` in front of two smtpd backends, each with its own
# spool. Clients connect from 127.0.0.5 and 127.0.0.6, so the real client
# address differs from the balancer's (127.0.0.1) in every assertion.
# The configuration written by Balancer.conf is the one the README shows.
# Usage: python3 tests/haproxy.py [path/to/smtpd [CASE...]]
# Cases skip (tests/skips.py) when haproxy is not installed.
import os, shutil, signal, smtplib, socket, subprocess, sys, tempfile, threading, time

from ports import free_port
from skips import Skip, closing_line, run_case, wait_until

SMTPD = sys.argv[1] if len(sys.argv) > 1 else 'build/examples/smtpd'
ONLY = set(sys.argv[2:]) | set(os.environ.get('LLSMTP_IT_CASES', '').split())
VERBOSE = os.environ.get('LLSMTP_IT_VERBOSE')
RESULTS = []
HAPROXY = shutil.which('haproxy') or ('/usr/sbin/haproxy' if os.path.exists('/usr/sbin/haproxy') else None)


def need_haproxy():
    if HAPROXY is None:
        raise Skip('haproxy is not installed (apt-get install haproxy, or make deps)')


class Backend:
    """An smtpd on 127.0.0.1:port,proxy that believes 127.0.0.1 (HAProxy)."""

    def __init__(self, name, *extra, listen=None, spool=None):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix='llsmtp-ha-%s-' % name)
        self.spool = spool or os.path.join(self.dir, 'spool')
        self.port = free_port()
        self.logname = os.path.join(self.dir, 'smtpd.log')
        self.log = open(self.logname, 'w')
        listen = listen or ['--listen', '127.0.0.1:%d,proxy' % self.port]
        # relayed mail waits in the queue: its next hop (a closed port)
        # refuses, and nothing ever leaves this host
        self.proc = subprocess.Popen(
            [SMTPD] + listen + ['--proxy-from', '127.0.0.1', '--hostname', '%s.example.test' % name,
                                '--local-domain', 'example.test', '--spool', self.spool,
                                '--smarthost', '[127.0.0.1]:%d' % free_port(), '--retry', '1h',
                                '--relay-net', '127.0.0.5/32'] + list(extra),
            stderr=self.log)
        if not wait_until(lambda: 'listening on' in self.text() or self.proc.poll() is not None, 30) \
                or self.proc.poll() is not None:
            raise RuntimeError('smtpd %s did not start: %s' % (name, self.text()[-500:]))

    def text(self):
        self.log.flush()
        return open(self.logname, errors='replace').read()

    def messages(self, queued=False):
        d = os.path.join(self.spool, 'queue') if queued else self.spool
        return sorted(f for f in os.listdir(d) if f.endswith('.eml')) if os.path.isdir(d) else []

    def files(self):
        """Every file smtpd made for mail: spool, tmp, queue."""
        out = []
        for d in (self.spool, os.path.join(self.spool, 'tmp'), os.path.join(self.spool, 'queue')):
            if os.path.isdir(d):
                out += [f for f in os.listdir(d) if f.endswith(('.eml', '.env'))]
        return out

    def read(self, name, queued=False):
        d = os.path.join(self.spool, 'queue') if queued else self.spool
        return open(os.path.join(d, name), 'rb').read()

    def envelope(self, name, queued=False):
        return self.read(name[:-4] + '.env', queued).decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = 'hung'
        return rc

    def close(self):
        rc = self.stop()
        self.log.close()
        log = open(self.logname).read()
        if VERBOSE:
            sys.stdout.write('--- smtpd %s\n%s' % (self.name, log))
        shutil.rmtree(self.dir, ignore_errors=True)
        # a clean stop exits 0 (under SANITIZE=1: no leak); kill -9 is
        # some cases' own doing
        if rc not in (0, -signal.SIGKILL):
            raise AssertionError('smtpd %s exited %r: %s' % (self.name, rc, log[-2000:]))


class Balancer:
    """A private HAProxy: one frontend, the backends as servers."""

    def __init__(self, servers, check=True, proxy='send-proxy-v2'):
        self.dir = tempfile.mkdtemp(prefix='llsmtp-ha-')
        self.port = free_port()
        self.conf = os.path.join(self.dir, 'haproxy.cfg')
        lines = [
            'global',
            '    log stderr format raw local0 info',
            '    stats socket %s/stats.sock mode 600' % self.dir,
            '    maxconn 2000',
            'defaults',
            '    mode tcp',
            '    log global',
            '    timeout connect 5s',
            '    timeout client 11m',
            '    timeout server 11m',
            '    retries 3',
            '    option redispatch',
            'frontend smtp',
            '    bind 127.0.0.1:%d' % self.port,
            '    default_backend mx',
            'backend mx',
            '    balance roundrobin',
        ]
        if check:
            lines.append('    option smtpchk EHLO haproxy.example.test')
        for name, port in servers:
            lines.append('    server %s 127.0.0.1:%d %s%s' % (
                name, port, proxy, ' check inter 1s fall 2 rise 2' if check else ''))
        open(self.conf, 'w').write('\n'.join(lines) + '\n')
        self.logname = os.path.join(self.dir, 'haproxy.log')
        self.log = open(self.logname, 'w')
        self.proc = subprocess.Popen([HAPROXY, '-db', '-f', self.conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        if not wait_until(lambda: self.proc.poll() is not None or self.ready(), 30) \
                or self.proc.poll() is not None:
            raise RuntimeError('haproxy did not start: %s' % open(self.logname).read()[-1000:])

    def ready(self):
        # known from its stats socket, not by connecting: a probe's
        # session would take a backend's slot (--max-clients) a moment
        return self.show_stat() is not None

    def text(self):
        self.log.flush()
        return open(self.logname, errors='replace').read()

    def show_stat(self):
        """`show stat` on its stats socket (a file): one dict per row,
        or None while HAProxy is not answering yet."""
        u = socket.socket(socket.AF_UNIX)
        u.settimeout(10)
        try:
            u.connect(os.path.join(self.dir, 'stats.sock'))
            u.sendall(b'show stat\n')
            data = b''
            while True:
                chunk = u.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return None
        finally:
            u.close()
        rows = data.decode().splitlines()
        if not rows or not rows[0].startswith('#'):
            return None
        head = rows[0].lstrip('# ').split(',')
        out = [dict(zip(head, r.split(','))) for r in rows[1:]]
        # listening: the frontend is open
        if not any(v.get('pxname') == 'smtp' and v.get('svname') == 'FRONTEND' and
                   v.get('status') == 'OPEN' for v in out):
            return None
        return out

    def stat(self, server):
        """The server's row of `show stat`."""
        for v in self.show_stat() or []:
            if v.get('pxname') == 'mx' and v.get('svname') == server:
                return v
        return {}

    def up(self, *servers):
        """Waits until HAProxy counts every one of servers UP."""
        return wait_until(lambda: all(self.stat(n).get('status') == 'UP' for n in servers))

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if VERBOSE:
            sys.stdout.write('--- haproxy\n%s' % open(self.logname).read())
        shutil.rmtree(self.dir, ignore_errors=True)


def checked(backend, n=2):
    """Waits for n of HAProxy's health checks at backend (PROXY LOCAL)."""
    return wait_until(lambda: backend.text().count('connect from unknown via 127.0.0.1') >= n)


def connect(port, src='127.0.0.6', host='127.0.0.1'):
    s = socket.socket()
    s.settimeout(30)
    s.bind((src, 0))
    s.connect((host, port))
    return s, s.makefile('rb')


def reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise EOFError('connection closed')
        lines.append(line[:-2].decode('latin-1'))
        if line[3:4] == b' ':
            return int(line[:3]), lines


def no_reply(f):
    try:
        return f.read() == b''
    except ConnectionResetError:
        return True


class SMTPFrom(smtplib.SMTP):
    """smtplib from a chosen loopback source address."""

    def __init__(self, port, src='127.0.0.6'):
        super().__init__(source_address=(src, 0), timeout=60)
        self.connect('127.0.0.1', port)


def message(mid):
    return ('Message-ID: <%s@test>\r\nSubject: %s\r\n\r\n' % (mid, mid) +
            ('line %s\r\n' % mid) * 50 + 'END %s\r\n' % mid)


def stored_ids(backends):
    """Message-ID -> how many times it is stored, over the backends."""
    seen = {}
    for b in backends:
        for m in b.messages():
            data = b.read(m)
            mid = data.split(b'Message-ID: <', 1)[1].split(b'@', 1)[0].decode()
            assert data.endswith(('END %s\r\n' % mid).encode()), (b.name, m)
            seen[mid] = seen.get(mid, 0) + 1
    return seen


def case(fn):
    return run_case(fn, ONLY, RESULTS, before=need_haproxy)


def pair(*extra):
    """Two backends behind one balancer, checked at least once each."""
    a = Backend('a', *extra)
    try:
        b = Backend('b', *extra)
    except Exception:
        a.close()
        raise
    lb = None
    try:
        lb = Balancer([('a', a.port), ('b', b.port)])
        assert lb.up('a', 'b'), (lb.stat('a'), lb.stat('b'))
    except Exception:
        if lb:
            lb.close()
        a.close(); b.close()
        raise
    return a, b, lb


@case
def delivery_through_haproxy_with_the_real_client_address():
    a, b, lb = pair()
    try:
        for i in range(100):
            with SMTPFrom(lb.port) as c:
                assert c.sendmail('alice@example.org', ['bob@example.test'], message('d%d' % i)) == {}
        seen = stored_ids([a, b])
        # each message stored exactly once, and the two shared the work
        assert sorted(seen) == sorted('d%d' % i for i in range(100)), sorted(seen)
        assert set(seen.values()) == {1}
        assert a.messages() and b.messages(), (len(a.messages()), len(b.messages()))
        for be in (a, b):
            m = be.messages()[0]
            assert 'client 127.0.0.6\n' in be.envelope(m), be.envelope(m)
            assert b'Received: from ' in be.read(m) and b'(127.0.0.6)' in be.read(m).split(b'\r\n\r\n')[0]
            # one connect line per session, with both addresses
            assert 'connect from 127.0.0.6 via 127.0.0.1' in be.text()
            assert 'connect from 127.0.0.1\n' not in be.text()
    finally:
        lb.close(); a.close(); b.close()


@case
def relay_decided_on_the_real_address():
    # --relay-net 127.0.0.5/32: 127.0.0.5 may relay through the balancer,
    # 127.0.0.6 may not, though both arrive from HAProxy's 127.0.0.1
    a, b, lb = pair()
    try:
        for src, want in (('127.0.0.5', 250), ('127.0.0.6', 550)):
            for _ in range(2):  # both backends
                with SMTPFrom(lb.port, src) as c:
                    c.ehlo('client.example.org')
                    assert c.mail('alice@example.org')[0] == 250
                    code, msg = c.rcpt('far@outside.test')
                    assert code == want, (src, code, msg)
                    if want == 250:
                        assert c.data(message('relay'))[0] == 250
        queued = [(be, m) for be in (a, b) for m in be.messages(queued=True)]
        assert len(queued) == 2, queued
        for be, m in queued:
            assert 'client 127.0.0.5\n' in be.envelope(m, queued=True)
    finally:
        lb.close(); a.close(); b.close()


@case
def health_checks_are_harmless():
    # `option smtpchk` every 500 ms: sessions that end without MAIL, no
    # file anywhere; with --log-health-checks no, not a line either
    a = Backend('a')
    b = Backend('b', '--log-health-checks', 'no')
    lb = None
    try:
        lb = Balancer([('a', a.port), ('b', b.port)])
        assert checked(a, 6), a.text()[-2000:]
        assert a.files() == [] and b.files() == [], (a.files(), b.files())
        assert 'refused' not in a.text() and 'PROXY header' not in a.text(), a.text()[-2000:]
        assert 'helo=haproxy.example.test' in a.text()
        # b passed HAProxy's SMTP check (L7OK: 220, 250 to EHLO) as
        # well, yet logged nothing
        assert wait_until(lambda: lb.stat('b').get('check_status') == 'L7OK'), lb.stat('b')
        assert int(lb.stat('b')['chkfail']) == 0 and int(lb.stat('a')['chkfail']) == 0
        assert 'connect from' not in b.text() and 'helo=' not in b.text(), b.text()
        # yet a real client's session through it is logged
        for _ in range(2):
            with SMTPFrom(lb.port) as c:
                c.ehlo('client.example.org')
        assert wait_until(lambda: 'connect from 127.0.0.6 via 127.0.0.1' in b.text()), b.text()
        assert 'connect from unknown' not in b.text(), b.text()
    finally:
        if lb:
            lb.close()
        a.close(); b.close()


def senders(lb, prefix, n=8):
    """n clients sending through the balancer until stop is set, each
    starting a new session when one ends (a backend killed, or its 421
    4.3.2); acked: the ids of the messages a client was told 250."""
    acked, lock, stop = [], threading.Lock(), threading.Event()

    def sender(k):
        i = 0
        while not stop.is_set():
            try:
                with SMTPFrom(lb.port) as c:
                    while not stop.is_set():
                        mid = '%s%d-%d' % (prefix, k, i)
                        i += 1
                        c.sendmail('alice@example.org', ['bob@example.test'], message(mid))
                        with lock:
                            acked.append(mid)
            except (smtplib.SMTPException, OSError):
                pass  # the session ended: a new one
    return acked, stop, [threading.Thread(target=sender, args=(k,)) for k in range(n)]


@case
def backend_killed_under_load_loses_nothing_acknowledged():
    # 8 senders through HAProxy; backend a is killed with -9 among them:
    # HAProxy sends the next sessions to b; every message a client was
    # told 250 is stored, complete, in a's spool or b's
    a, b, lb = pair()
    acked, stop, threads = senders(lb, 'k')
    try:
        for t in threads:
            t.start()
        assert wait_until(lambda: len(acked) >= 100, 120), len(acked)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        at_kill = len(acked)
        # the work goes on through b
        assert wait_until(lambda: len(acked) >= at_kill + 100, 120), (at_kill, len(acked))
        stop.set()
        for t in threads:
            t.join(timeout=120)
        seen = stored_ids([a, b])
        lost = [m for m in acked if m not in seen]
        assert not lost, 'acknowledged but lost: %r' % lost[:5]
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(timeout=120)
        lb.close(); a.close(); b.close()


@case
def untrusted_source_header_refused():
    a, b, lb = pair()
    try:
        # straight to a backend, past the balancer, claiming a relay client
        s, f = connect(a.port, '127.0.0.6')
        s.sendall(b'PROXY TCP4 127.0.0.5 127.0.0.1 40000 25\r\nEHLO x\r\n'
                  b'MAIL FROM:<a@example.org>\r\nRCPT TO:<far@outside.test>\r\n')
        assert no_reply(f)
        f.close(); s.close()
        assert wait_until(lambda: 'refused connection from 127.0.0.6: not a --proxy-from address'
                          in a.text()), a.text()[-2000:]
        # through the balancer, a header of the client's own is just a
        # bad command: the client stays 127.0.0.6
        s, f = connect(lb.port, '127.0.0.6')
        assert reply(f)[0] == 220
        s.sendall(b'PROXY TCP4 127.0.0.5 127.0.0.1 40000 25\r\nEHLO x\r\n'
                  b'MAIL FROM:<a@example.org>\r\nRCPT TO:<far@outside.test>\r\nQUIT\r\n')
        assert [reply(f)[0] for _ in range(5)] == [500, 250, 250, 550, 221]
        f.close(); s.close()
        assert a.files() == [] and b.files() == []
    finally:
        lb.close(); a.close(); b.close()


@case
def per_listener_proxy():
    # one smtpd: port 25 behind the balancer (,proxy), a direct port for
    # the office next to it
    direct = free_port()
    proxied = free_port()
    a = Backend('a', listen=['--listen', '127.0.0.1:%d' % direct,
                             '--listen', '127.0.0.1:%d,proxy' % proxied])
    lb = None
    try:
        lb = Balancer([('a', proxied)])
        assert lb.up('a')
        with SMTPFrom(lb.port, '127.0.0.5') as c:  # through HAProxy
            assert c.sendmail('a@example.org', ['far@outside.test'], message('via-lb')) == {}
        with SMTPFrom(direct, '127.0.0.6') as c:  # the office, directly
            assert c.sendmail('a@example.org', ['bob@example.test'], message('direct')) == {}
        m = a.messages(queued=True)
        assert len(m) == 1 and 'client 127.0.0.5\n' in a.envelope(m[0], queued=True)
        m = a.messages()
        assert len(m) == 1 and 'client 127.0.0.6\n' in a.envelope(m[0])
    finally:
        if lb:
            lb.close()
        a.close()


@case
def header_deadline_frees_the_slot():
    # a balancer set up without send-proxy in front of a PROXY port (or a
    # client that never sends its header): the header's deadline closes
    # the connection and frees the --max-clients slot for the next
    a = Backend('a', '--max-clients', '1', '--proxy-timeout', '1s')
    lb = None
    try:
        lb = Balancer([('a', a.port)], check=False, proxy='')
        s, f = connect(lb.port, '127.0.0.6')  # HAProxy forwards, no header
        assert no_reply(f)
        f.close(); s.close()
        assert wait_until(lambda: 'no PROXY header from 127.0.0.1 within 1s' in a.text()), a.text()
        # the slot is free: a connection with its header is served
        s, f = connect(a.port, '127.0.0.1')
        s.sendall(b'PROXY TCP4 127.0.0.6 127.0.0.1 40000 25\r\n')
        assert reply(f)[0] == 220
        s.sendall(b'QUIT\r\n')
        assert reply(f)[0] == 221
        f.close(); s.close()
    finally:
        if lb:
            lb.close()
        a.close()


@case
def rolling_restart_drains_behind_haproxy():
    # senders through HAProxy; SIGTERM to backend a: its listener closes,
    # its sessions get 421 4.3.2 after their message, HAProxy sends the
    # next sessions to b; a exits 0 with every session drained, none cut,
    # and nothing a client was told 250 is lost
    a, b, lb = pair()
    acked, stop, threads = senders(lb, 'r')
    try:
        for t in threads:
            t.start()
        assert wait_until(lambda: len(acked) >= 100, 120), len(acked)
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(timeout=120) == 0, a.text()[-2000:]
        at_stop = len(acked)
        assert wait_until(lambda: len(acked) >= at_stop + 100, 120), (at_stop, len(acked))
        stop.set()
        for t in threads:
            t.join(timeout=120)
        log = a.text()
        assert 'stopping: draining' in log and ' 0 cut' in log, log[-2000:]
        assert '421 4.3.2' in log, log[-2000:]
        seen = stored_ids([a, b])
        lost = [m for m in acked if m not in seen]
        assert not lost, 'acknowledged but lost: %r' % lost[:5]
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(timeout=120)
        lb.close(); a.close(); b.close()


@case
def lost_instance_queue_moved_to_another():
    # README "Running several instances": nothing is shared, so the mail
    # waiting in a dead instance's queue is moved into a live one's while
    # that one is stopped (SIGTERM: the drain), and goes on from there
    a, b, lb = pair()
    cport = free_port()
    c = Backend('c', '--local-domain', 'outside.test',
                listen=['--listen', '127.0.0.1:%d' % cport])  # the next hop
    b2 = None
    try:
        for i in range(4):  # queued: their next hop (a closed port) refuses
            with SMTPFrom(lb.port, '127.0.0.5') as cl:
                assert cl.sendmail('a@example.org', ['far@outside.test'], message('q%d' % i)) == {}
        assert a.messages(queued=True) and b.messages(queued=True)
        a.proc.send_signal(signal.SIGKILL)  # a is gone for good; its disk is not
        a.proc.wait()
        assert b.stop() == 0
        qa, qb = os.path.join(a.spool, 'queue'), os.path.join(b.spool, 'queue')
        for m in a.messages(queued=True):
            for ext in ('.eml', '.env', '.st'):
                if os.path.exists(os.path.join(qa, m[:-4] + ext)):
                    shutil.move(os.path.join(qa, m[:-4] + ext), os.path.join(qb, m[:-4] + ext))
        # b again, on its spool, its next hop now reachable; --retry 1s:
        # no entry waits longer than the longest retry delay
        b2 = Backend('b2', '--smarthost', '[127.0.0.1]:%d' % cport, '--retry', '1s', spool=b.spool)
        assert wait_until(lambda: len(c.messages()) == 4, 120), (c.messages(), b2.text()[-2000:])
        assert sorted(stored_ids([c])) == ['q0', 'q1', 'q2', 'q3']
        assert wait_until(lambda: b2.messages(queued=True) == [])
    finally:
        if b2:
            b2.close()
        lb.close(); a.close(); b.close(); c.close()


unknown = ONLY - set(n for n, _ in RESULTS)
if unknown:
    print('no such case: %s' % ' '.join(sorted(unknown)))
    sys.exit(2)
failed = closing_line(RESULTS)
sys.exit(1 if failed else 0)
