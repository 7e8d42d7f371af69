#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# compare.py - examples/smtpd against Postfix's smtp-sink, side by side on
# loopback (run through bench/compare.sh). Every scenario runs 5 times,
# interleaved server by server, so both see the same machine noise; for
# each it prints the median and min-max throughput, the server's CPU
# seconds per 1,000 messages (or per GB) read from /proc/<pid>/stat, and
# llsmtp / smtp-sink measured in the same run. Then memory: server RSS
# with 0, 1,000 and 10,000 idle connections after EHLO.
import os, resource, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

BUILD = sys.argv[1] if len(sys.argv) > 1 else 'build'
REPS = int(os.environ.get('REPS', '5'))
SMTPD = os.path.join(BUILD, 'examples', 'smtpd')
LOAD = os.path.join(BUILD, 'bench', 'smtp-load')
SOURCE, SINK = '/usr/sbin/smtp-source', '/usr/sbin/smtp-sink'
TICK = os.sysconf('SC_CLK_TCK')
TMP = tempfile.mkdtemp(prefix='llsmtp-bench-')


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
        if kind == 'sink':
            # -m: sessions at once (default 256)
            args = [SINK, '-m', '20000'] + (['-u', 'nobody'] if os.geteuid() == 0 else []) + \
                ['127.0.0.1:%d' % self.port, '1000']
        else:
            self.spool = os.path.join(TMP, 'spool-%d' % self.port)
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
        f = open('/proc/%d/stat' % self.proc.pid).read().rsplit(')', 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICK  # utime + stime

    def rss_kb(self):
        for line in open('/proc/%d/status' % self.proc.pid):
            if line.startswith('VmRSS:'):
                return int(line.split()[1])

    def clean(self):
        """Empties a real spool between runs (what was written was fsync'ed)."""
        if self.kind == 'spool':
            for f in os.listdir(self.spool):
                if f.endswith(('.eml', '.env')):
                    os.unlink(os.path.join(self.spool, f))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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


# (name, tool, sessions, messages, length, recipients, extra, unit)
SCENARIOS = [
    ('a  20 x 20,000 x 1 KB, smtp-source', 'smtp-source', 20, 20000, 1024, 1, ['-d'], 'msg'),
    ('a  20 x 20,000 x 1 KB, smtp-load', 'smtp-load', 20, 20000, 1024, 1, [], 'msg'),
    ('b  4 x 200 x 5 MB, smtp-load', 'smtp-load', 4, 200, 5000000, 1, [], 'GB'),
    ('c  20 x 2,000 x 50 rcpt, pipelined', 'smtp-load', 20, 2000, 1024, 50, [], 'msg'),
    ('c  20 x 2,000 x 50 rcpt, no pipelining', 'smtp-load', 20, 2000, 1024, 50, ['--no-pipelining'], 'msg'),
    ('d  5,000, one per connection', 'smtp-load', 20, 5000, 1024, 1, ['--one-per-conn'], 'msg'),
    # durability: every message fsync'ed (file, envelope, directory) before
    # its 250; fewer messages, since each costs a disk flush
    ('e  20 x 2,000 x 1 KB, smtp-load, real spool', 'smtp-load', 20, 2000, 1024, 1, [], 'msg'),
]
DURABLE = SCENARIOS[-1][0]


def throughput_table(servers):
    rows = []
    for name, tool, s, m, l, r, extra, unit in SCENARIOS:
        res = {sv.name: ([], [], []) for sv in servers}
        for _ in range(REPS):
            for sv in servers:
                if (sv.kind == 'spool') != (name == DURABLE) and sv.kind != 'sink':
                    continue  # the spool only where durability is measured
                el, cpu, lcpu = run_once(sv, load_cmd(tool, sv.port, s, m, l, r, extra))
                res[sv.name][0].append(m / el)
                res[sv.name][1].append(cpu / m * 1000 if unit == 'msg' else cpu / (m * l / 1e9))
                res[sv.name][2].append(lcpu)
        rows.append((name, unit, res, m))
    return rows


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
    for exe in (SMTPD, LOAD, SOURCE, SINK):
        if not os.path.exists(exe):
            sys.exit('missing %s (make bench; make deps for Postfix)' % exe)
    cpu = [l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')]
    print('# bench/compare.sh, %s' % time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
    print('# %d cores, %s; %d repetitions, interleaved' % (os.cpu_count(), cpu[0] if cpu else '?', REPS))
    t0 = time.monotonic()
    servers = [Server('llsmtp', 'discard'), Server('smtp-sink', 'sink'), Server('llsmtp+spool', 'spool')]
    try:
        rows = throughput_table(servers)
    finally:
        for sv in servers:
            sv.stop()
    print()
    print('| scenario | server | msg/s median (min-max) | server CPU s per 1,000 msg (per GB) | llsmtp/sink CPU | loader CPU s |')
    print('|---|---|---|---|---|---|')
    for name, unit, res, m in rows:
        sink_cpu = statistics.median(res['smtp-sink'][1])
        for sv in ('llsmtp', 'smtp-sink', 'llsmtp+spool'):
            thr, cpu, lcpu = res[sv]
            if not thr:
                continue
            ratio = statistics.median(cpu) / sink_cpu if sink_cpu > 0 else float('nan')
            print('| %s | %s | %s | %s%s | %s | %s |' % (
                name, sv, fmt_range(thr), fmt_range(cpu), ' /GB' if unit == 'GB' else '',
                '%.2fx' % ratio if sv != 'smtp-sink' else '1', num(statistics.median(lcpu))))
    # the loaders themselves: messages per CPU second of the load client
    a_src = [r for r in rows if r[0].endswith('smtp-source')][0]
    a_load = [r for r in rows if r[0].endswith('smtp-load') and r[0].startswith('a')][0]
    for label, row in (('smtp-source', a_src), ('smtp-load', a_load)):
        l = statistics.median(row[2]['smtp-sink'][2] + row[2]['llsmtp'][2])
        print('# loader %s: %.3f CPU s for %d messages (%.0f msg per CPU second)' % (label, l, row[3], row[3] / l))
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
