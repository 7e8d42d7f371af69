#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# compare.py - examples/smtpd against Postfix's smtp-sink, side by side on
# loopback (run through bench/compare.sh). Every scenario runs REPS times
# (3 unless set), interleaved server by server, so all see the same
# machine noise; for each it prints the median and min-max throughput,
# the server's CPU seconds per 1,000 messages (or per GB), and llsmtp /
# smtp-sink measured in the same run. A one-process server's CPU time is
# read in nanoseconds from /proc/<pid>/task/*/schedstat (its threads live
# as long as it does); /proc/<pid>/stat counts in ticks of 10 ms, a tenth
# of what smtpd spends on scenario c. Postfix's children come and go, so
# its CPU is read from stat (its own and its ended children's ticks).

# Durability (scenario e): smtpd with its real spool against a real,
# private Postfix (its own configuration, queue and port on 127.0.0.1,
# its default fsync behaviour, every message held in its queue), with
# the flush calls per message counted by strace in an extra, untimed run.
# The cost floor (scenarios a with smtp-load and c pipelined): bench/floor,
# a responder with smtpd's reads and writes and no parsing; smtpd's CPU
# per message is given as a ratio to it. Then memory: server RSS with 0,
# 1,000 and 10,000 idle connections after EHLO.
import os, resource, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

BUILD = sys.argv[1] if len(sys.argv) > 1 else 'build'
REPS = int(os.environ.get('REPS', '3'))
# ONLY=ce: just the scenarios whose name starts with c or e (m: memory)
ONLY = os.environ.get('ONLY', '')
SMTPD = os.path.join(BUILD, 'examples', 'smtpd')
LOAD = os.path.join(BUILD, 'bench', 'smtp-load')
FLOOR = os.path.join(BUILD, 'bench', 'floor')
SOURCE, SINK = '/usr/sbin/smtp-source', '/usr/sbin/smtp-sink'
TICK = os.sysconf('SC_CLK_TCK')
# The durable spools live in BUILD/bench-spool, kept from run to run and
# never emptied (make clean removes them; over 200,000 files they are
# started afresh): on a file system without a journal (this machine's
# ext4), ext4 skips every inode freed in the last minute or so when it
# makes a file (perf: recently_deleted in find_inode_bit), and after
# thousands of removals nearby (or in /tmp, where tests and fuzzers make
# and remove files all day) each create costs 0.5 ms of CPU or more, for
# either server, which then measures the file system's allocator.
KEEP = os.path.join(os.path.abspath(BUILD), 'bench-spool')
TMP = tempfile.mkdtemp(prefix='bench-', dir=os.path.abspath(BUILD))
os.chmod(TMP, 0o755)  # Postfix's unprivileged processes look inside


def keep_dir(name):
    d = os.path.join(KEEP, name)
    n = sum(len(files) for _, _, files in os.walk(d))
    if n > 200000:
        shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d, exist_ok=True)
    for p in (os.path.dirname(KEEP), KEEP, d):
        os.chmod(p, 0o755)
    return d


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server:
    def __init__(self, name, kind):
        self.name, self.kind, self.port = name, kind, free_port()
        if kind.startswith('floor'):
            # the cost floor (bench/floor.c) for smtp-load with R recipients
            args = [FLOOR, '127.0.0.1:%d' % self.port, kind.split('-')[1]]
        elif kind == 'sink':
            # -m: sessions at once (default 256)
            args = [SINK, '-m', '20000'] + (['-u', 'nobody'] if os.geteuid() == 0 else []) + \
                ['127.0.0.1:%d' % self.port, '1000']
        else:
            self.spool = keep_dir('smtpd') if kind == 'spool' else os.path.join(TMP, 'spool-%d' % self.port)
            args = [SMTPD, '--listen', '127.0.0.1:%d' % self.port, '--hostname', 'bench.test',
                    '--local-domain', 'example.test', '--max-clients', '20000',
                    '--max-size', '20000000', '--spool', self.spool]
            if kind == 'discard':
                args += ['--discard', '--no-fsync']
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=raise_nofile)
        for _ in range(200):
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError('%s did not start' % name)

    def cpu(self):
        """CPU seconds of every thread, from the scheduler's nanosecond
        count (utime + stime in ticks where there is none)."""
        try:
            tasks = '/proc/%d/task' % self.proc.pid
            return sum(int(open('%s/%s/schedstat' % (tasks, t)).read().split()[0])
                       for t in os.listdir(tasks)) / 1e9
        except (OSError, ValueError):
            f = open('/proc/%d/stat' % self.proc.pid).read().rsplit(')', 1)[1].split()
            return (int(f[11]) + int(f[12])) / TICK

    def rss_kb(self):
        for line in open('/proc/%d/status' % self.proc.pid):
            if line.startswith('VmRSS:'):
                return int(line.split()[1])

    def clean(self):
        """What a run stored stays (for either durable server): removing
        thousands of files would make the next run's creates pay for
        them (see KEEP)."""

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def proc_stat(pid):
    return open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()


class Postfix:
    """A private Postfix 3.x as tests/delivery.py runs one: its own config
    and queue directories under KEEP, its smtpd on a loopback port, its
    cleanup writing (and fsyncing) each queue file as it always does.
    Every message is put on hold (check_client_access static:HOLD), so
    Postfix, like smtpd with its spool, stops once the message is safe
    in its queue; in_flow_delay is 0, since nothing leaves the hold queue
    to give cleanup its flow tokens back (it would sleep 1 s a message).
    Needs root, like Postfix."""
    kind = 'postfix'

    def __init__(self, name):
        import grp, pwd
        self.name, self.port = name, free_port()
        self.dir = keep_dir('postfix')  # its queue is kept (KEEP)
        etc = self.etc = os.path.join(self.dir, 'etc')
        for d in ('etc', 'spool', 'data'):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        uid, gid = pwd.getpwnam('postfix').pw_uid, grp.getgrnam('postfix').gr_gid
        os.chown(os.path.join(self.dir, 'data'), uid, gid)
        conf = {
            'compatibility_level': '3.6', 'queue_directory': self.dir + '/spool',
            'data_directory': self.dir + '/data', 'mail_owner': 'postfix',
            'setgid_group': 'postdrop', 'inet_interfaces': '127.0.0.1', 'inet_protocols': 'ipv4',
            'myhostname': 'pf.test', 'mydomain': 'pf.test', 'myorigin': 'pf.test',
            'mydestination': '', 'mynetworks': '127.0.0.1/32', 'relayhost': '',
            'smtpd_relay_restrictions': 'permit_mynetworks, reject',
            'smtpd_recipient_restrictions': 'check_client_access static:HOLD, permit_mynetworks, reject',
            'smtpd_peername_lookup': 'no', 'smtp_dns_support_level': 'disabled',
            'in_flow_delay': '0s', 'maillog_file': self.dir + '/maillog',
            'maillog_file_prefixes': self.dir, 'alias_maps': '', 'alias_database': '',
            'biff': 'no'}
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
                    ('anvil', 'unix', '-', '1', 'anvil'), ('scache', 'unix', '-', '1', 'scache'),
                    ('postlog', 'unix-dgram', 'n', '1', 'postlogd')]
        with open(os.path.join(etc, 'master.cf'), 'w') as f:
            for svc, kind, private, limit, cmd in services:
                f.write('%s %s %s - n - %s %s\n' % (svc, kind, private, limit, cmd))
        r = subprocess.run(['/usr/sbin/postfix', '-c', etc, 'start'], capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError('postfix did not start: %r' % (r,))
        pidf = os.path.join(self.dir, 'spool', 'pid', 'master.pid')
        for _ in range(500):
            try:
                self.pid = int(open(pidf).read().strip())
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                return
            except (OSError, ValueError):
                time.sleep(0.02)
        raise RuntimeError('postfix did not start listening')

    def pids(self):
        """The master and every process under it (smtpd, cleanup, ...)."""
        kids = {}
        for d in os.listdir('/proc'):
            if d.isdigit():
                try:
                    kids.setdefault(int(proc_stat(int(d))[1]), []).append(int(d))
                except (OSError, IndexError):
                    pass
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo += kids.get(p, [])
        return out

    def cpu(self):
        """utime + stime of the master and its live descendants, plus
        those its children that ended left in its cutime + cstime."""
        total = 0
        for p in self.pids():
            try:
                f = proc_stat(p)
            except OSError:
                continue
            total += int(f[11]) + int(f[12])
            if p == self.pid:
                total += int(f[13]) + int(f[14])
        return total / TICK

    def clean(self):
        """The hold queue keeps what a run stored, as smtpd's spool does."""

    def held(self):
        return sum(len(files) for _, _, files in os.walk(os.path.join(self.dir, 'spool', 'hold')))

    def stop(self):
        subprocess.run(['/usr/sbin/postfix', '-c', self.etc, 'stop'], capture_output=True, timeout=60)
        for _ in range(500):
            if not os.path.exists('/proc/%d' % self.pid):
                return
            time.sleep(0.02)


def load_cmd(tool, port, s, m, l, r=1, extra=()):
    if tool == 'smtp-source':
        return [SOURCE, '-s', str(s), '-m', str(m), '-l', str(l), '-r', str(r), '-f', 'load@example.test',
                '-t', 'rcpt@example.test'] + list(extra) + ['127.0.0.1:%d' % port]
    return [LOAD, '--server', '127.0.0.1:%d' % port, '-s', str(s), '-m', str(m), '-l', str(l),
            '-r', str(r), '--quiet'] + list(extra)


def run_once(server, cmd):
    """(elapsed s, server CPU s, loader CPU s)."""
    server.clean()
    c0, u0 = server.cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, timeout=300)
    t1 = time.monotonic()
    # the server may still be finishing the last QUIT: let it settle
    time.sleep(0.05)
    c1, u1 = server.cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError('%s against %s failed: %s' % (cmd[0], server.name, (r.stdout + r.stderr)[-500:]))
    return t1 - t0, c1 - c0, (u1.ru_utime + u1.ru_stime) - (u0.ru_utime + u0.ru_stime)


def fmt_range(v):
    return '%s (%s-%s)' % (num(statistics.median(v)), num(min(v)), num(max(v)))


def num(x):
    return '%.0f' % x if x >= 100 else '%.1f' % x if x >= 10 else '%.2f' % x if x >= 0.1 else '%.3f' % x


# (name, tool, sessions, messages, length, recipients, extra, unit, servers)
FAST = ('llsmtp', 'smtp-sink')
DURABLE = ('llsmtp+spool', 'postfix')
SCENARIOS = [
    ('a  20 x 20,000 x 1 KB, smtp-source', 'smtp-source', 20, 20000, 1024, 1, ['-d'], 'msg', FAST),
    ('a  20 x 20,000 x 1 KB, smtp-load', 'smtp-load', 20, 20000, 1024, 1, [], 'msg', FAST + ('floor-1',)),
    ('b  4 x 200 x 5 MB, smtp-load', 'smtp-load', 4, 200, 5000000, 1, [], 'GB', FAST),
    ('c  20 x 6,000 x 50 rcpt, pipelined', 'smtp-load', 20, 6000, 1024, 50, [], 'msg', FAST + ('floor-50',)),
    ('c  20 x 2,000 x 50 rcpt, no pipelining', 'smtp-load', 20, 2000, 1024, 50, ['--no-pipelining'], 'msg', FAST),
    ('d  5,000, one per connection', 'smtp-load', 20, 5000, 1024, 1, ['--one-per-conn'], 'msg', FAST),
    # durability: smtpd's real spool (group commit: each 250 after its
    # batch's flush, one syncfs, and its directory fsync) against Postfix
    # (each queue file fsync'ed by cleanup before its 250); one message
    # per connection. With one session every message is a lonely one
    # (flushed at once by its own fdatasyncs): msg/s is 1 / its latency.
    ('e  1 session x 300 x 1 KB, one per connection, durable', 'smtp-load', 1, 300, 1024, 1,
     ['--one-per-conn'], 'msg', DURABLE),
    ('e  20 sessions x 2,000 x 1 KB, one per connection, durable', 'smtp-load', 20, 2000, 1024, 1,
     ['--one-per-conn'], 'msg', DURABLE),
    ('e  100 sessions x 3,000 x 1 KB, one per connection, durable', 'smtp-load', 100, 3000, 1024, 1,
     ['--one-per-conn'], 'msg', DURABLE),
]
BASE = {FAST: 'smtp-sink', FAST + ('floor-1',): 'smtp-sink', FAST + ('floor-50',): 'smtp-sink',
        DURABLE: 'postfix'}


def throughput_table(servers):
    rows = []
    for name, tool, s, m, l, r, extra, unit, which in SCENARIOS:
        if ONLY and name[0] not in ONLY:
            continue
        res = {sv.name: ([], [], []) for sv in servers if sv.name in which}
        for _ in range(REPS):
            for sv in servers:
                if sv.name not in which:
                    continue
                el, cpu, lcpu = run_once(sv, load_cmd(tool, sv.port, s, m, l, r, extra))
                res[sv.name][0].append(m / el)
                res[sv.name][1].append(cpu / m * 1000 if unit == 'msg' else cpu / (m * l / 1e9))
                res[sv.name][2].append(lcpu)
        rows.append((name, unit, res, m, BASE[which]))
    return rows


def flush_calls(sv, sessions=20, m=1000):
    """fsync, fdatasync, syncfs and sync_file_range calls per message: one extra,
    untimed run with strace -c -f attached to the server's processes."""
    sv.clean()
    out = os.path.join(TMP, 'strace-%s.txt' % sv.name)
    args = ['strace', '-c', '-f', '-o', out, '-e', 'trace=fsync,fdatasync,syncfs,sync_file_range']
    for p in sv.pids():
        args += ['-p', str(p)]
    st = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached (strace has no "ready" signal)
    subprocess.run(load_cmd('smtp-load', sv.port, sessions, m, 1024, 1, ['--one-per-conn']),
                   capture_output=True, timeout=300, check=True)
    time.sleep(0.5)
    st.send_signal(signal.SIGINT)
    st.wait(timeout=30)
    calls = {'fsync': 0, 'fdatasync': 0, 'syncfs': 0, 'sync_file_range': 0}
    for line in open(out):
        f = line.split()
        if len(f) >= 5 and f[-1] in calls:
            calls[f[-1]] = int(f[3])
    return {k: v / m for k, v in calls.items()}


def idle_memory(sv, counts=(1000, 10000)):
    """RSS (KB) with 0 and each count of idle sessions after EHLO."""
    raise_nofile()
    out, socks = [(0, sv.rss_kb())], []
    for want in counts:
        first = len(socks)
        while len(socks) < want:
            try:
                k = socket.create_connection(('127.0.0.1', sv.port), timeout=10)
                k.recv(512)
                k.sendall(b'EHLO idle.test\r\n')
            except OSError as e:
                out.append((len(socks), sv.rss_kb(), 'stopped at %d: %s' % (len(socks), e)))
                break
            socks.append(k)
        else:
            for k in socks[first:]:  # every EHLO answered before measuring
                k.settimeout(10)
                data = b''
                while not data.endswith(b'\r\n') or b'250 ' not in data:
                    chunk = k.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                k.setblocking(True)
                k.settimeout(None)
            time.sleep(0.3)
            out.append((want, sv.rss_kb()))
            continue
        break
    for k in socks:
        k.close()
    return out


def main():
    for exe in (SMTPD, LOAD, FLOOR, SOURCE, SINK, '/usr/sbin/postfix'):
        if not os.path.exists(exe):
            sys.exit('missing %s (make bench; make deps for Postfix)' % exe)
    if os.geteuid() != 0 or shutil.which('strace') is None:
        sys.exit('the durable scenario runs a private Postfix (root) and strace')
    cpu = [l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')]
    print('# bench/compare.sh, %s' % time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
    print('# %d cores, %s; %d repetitions, interleaved' % (os.cpu_count(), cpu[0] if cpu else '?', REPS))
    t0 = time.monotonic()
    # (each floor measured right after smtpd: their ratio is taken a
    # repetition at a time)
    servers = [Server('llsmtp', 'discard'), Server('floor-1', 'floor-1'), Server('floor-50', 'floor-50'),
               Server('smtp-sink', 'sink'), Server('llsmtp+spool', 'spool'), Postfix('postfix')]
    try:
        rows = throughput_table(servers)
        flushes = {sv.name: flush_calls(sv) for sv in servers
                   if sv.name in DURABLE and (not ONLY or 'e' in ONLY)}
    finally:
        for sv in servers:
            sv.stop()
    print()
    print('| scenario | server | msg/s median (min-max) | server CPU s per 1,000 msg (per GB) | CPU / baseline | msg/s / baseline | loader CPU s |')
    print('|---|---|---|---|---|---|---|')
    for name, unit, res, m, base in rows:
        base_cpu = statistics.median(res[base][1])
        base_thr = statistics.median(res[base][0])
        for sv in res:
            thr, cpu, lcpu = res[sv]
            ratio = statistics.median(cpu) / base_cpu if base_cpu > 0 else float('nan')
            print('| %s | %s | %s | %s%s | %s | %s | %s |' % (
                name, sv, fmt_range(thr), fmt_range(cpu), ' /GB' if unit == 'GB' else '',
                '%.2fx' % ratio if sv != base else '1', '%.2fx' % (statistics.median(thr) / base_thr)
                if sv != base else '1', num(statistics.median(lcpu))))
    # the cost floor: smtpd's CPU per message over the floor's, same run;
    # the ratio is taken in each repetition (the two measured one after
    # the other) and its median given: the machine's speed drifts by a
    # fifth from minute to minute (other guests), which a ratio of
    # medians taken from different minutes would show as smtpd's cost
    floors = [(name, res) for name, unit, res, m, base in rows if any(k.startswith('floor') for k in res)]
    if floors:
        print()
        print('| scenario | llsmtp CPU us per msg | floor CPU us per msg | llsmtp / floor, median of the repetitions\' (min-max) |')
        print('|---|---|---|---|')
        for name, res in floors:
            fl = [k for k in res if k.startswith('floor')][0]
            a, b = statistics.median(res['llsmtp'][1]), statistics.median(res[fl][1])
            pair = [x / y for x, y in zip(res['llsmtp'][1], res[fl][1]) if y > 0]
            print('| %s | %.1f | %.1f | %s |' % (name, a * 1000, b * 1000, '%.2fx (%.2f-%.2f)' % (
                statistics.median(pair), min(pair), max(pair)) if pair else '-'))
    # the loaders themselves: messages per CPU second of the load client
    a_src = [r for r in rows if r[0].endswith('smtp-source')]
    a_load = [r for r in rows if r[0].endswith('smtp-load') and r[0].startswith('a')]
    for label, row in (('smtp-source', a_src), ('smtp-load', a_load)):
        if not row:
            continue
        row = row[0]
        l = statistics.median(row[2]['smtp-sink'][2] + row[2]['llsmtp'][2])
        print('# loader %s: %.3f CPU s for %d messages (%.0f msg per CPU second)' % (label, l, row[3], row[3] / l))
    if flushes:
        print()
        print('| durable, 1,000 x 1 KB, 20 sessions, one per connection, under strace | fsync per msg | fdatasync per msg | syncfs per msg | sync_file_range per msg |')
        print('|---|---|---|---|---|')
        for name in DURABLE:
            f = flushes[name]
            print('| %s | %.2f | %.2f | %.2f | %.2f |' % (name, f['fsync'], f['fdatasync'], f['syncfs'],
                                                    f['sync_file_range']))
    if ONLY and 'm' not in ONLY:
        print('\n# whole run: %.0f s' % (time.monotonic() - t0))
        shutil.rmtree(TMP, ignore_errors=True)
        return
    print()
    print('| idle sessions after EHLO | server | RSS KB | KB per session |')
    print('|---|---|---|---|')
    for kind, name in (('discard', 'llsmtp'), ('sink', 'smtp-sink')):
        sv = Server(name, kind)
        try:
            mem = idle_memory(sv)
        finally:
            sv.stop()
        base = mem[0][1]
        for entry in mem:
            n, rss = entry[0], entry[1]
            per = '%.2f' % ((rss - base) / n) if n else '-'
            note = (' (%s)' % entry[2]) if len(entry) > 2 else ''
            print('| %d%s | %s | %d | %s |' % (n, note, name, rss, per))
    print()
    print('# whole run: %.0f s' % (time.monotonic() - t0))
    shutil.rmtree(TMP, ignore_errors=True)


main()
