#!/usr/bin/env python3
"""Hostile peers against examples/echo_server, over real loopback sockets.

    hostile.py TEST ECHO_SERVER [--scale F]

Each TEST starts ECHO_SERVER as its own process on 127.0.0.1 port 0 (the port is parsed
from "listening on 127.0.0.1:PORT"), attacks it, checks it still echoes, stops it with
SIGTERM and expects exit 0. Figures are printed; any failed check exits 1.
Loopback only: every address used is in 127.0.0.0/8.

Tests: slow_readers emfile reset_storm half_close idle_1000 churn byte_exact
tls_handshake_stall tls_renegotiation (RELIABILITY.md 3.2-3.4, 3.8, 3.9; BB-* / RX-02 / TLS-02 / SK-01 shapes).
docs/RELIABILITY.md maps every catalogue entry to the test that covers it.
"""
import atexit
import os
import random
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HOST = '127.0.0.1'
MiB = 1 << 20
CLK_TCK = os.sysconf('SC_CLK_TCK')
FAILS = []
_PROCS = []


@atexit.register
def _kill_leftovers():
    for p in _PROCS:
        if p.poll() is None:
            p.kill()


def log(msg):
    print(msg, flush=True)


def check(cond, msg):
    log(('ok   ' if cond else 'FAIL ') + msg)
    if not cond:
        FAILS.append(msg)
    return cond


def raise_own_nofile(n=20000):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(n, hard) if hard != resource.RLIM_INFINITY else n
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------- server process

class Server:
    def __init__(self, exe, nofile=None, extra_args=()):
        self.stderr_file = tempfile.TemporaryFile()
        def pre():
            if nofile is not None:
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, max(nofile, hard)
                                   if hard != resource.RLIM_INFINITY else hard))
        self.proc = subprocess.Popen([exe, '--host', HOST, '--port', '0'] + list(extra_args),
                                     stdout=subprocess.PIPE, stderr=self.stderr_file,
                                     preexec_fn=pre, close_fds=True)
        _PROCS.append(self.proc)
        self.pid = self.proc.pid
        line = self.proc.stdout.readline().decode(errors='replace')
        m = re.match(r'listening on 127\.0\.0\.1:(\d+)', line)
        if not m:
            self.proc.kill()
            raise SystemExit('echo_server did not print its port: %r' % line)
        self.port = int(m.group(1))
        self.addr = (HOST, self.port)
        time.sleep(0.05)
        self.base_fds = self.fds()
        self.base_rss = self.rss_kib()
        with open('/proc/%d/maps' % self.pid) as f:
            maps = f.read()
        # An ASan build keeps freed memory in a quarantine (256 MiB by default), so its RSS
        # says nothing about leaks: RSS-flatness checks only report there.
        self.sanitized = 'libasan' in maps or 'libubsan' in maps or 'libclang_rt' in maps
        log('server pid %d port %d: baseline fds %d, RSS %d KiB%s'
            % (self.pid, self.port, self.base_fds, self.base_rss,
               ' (sanitizer runtime loaded: RSS-flatness checks are informational)'
               if self.sanitized else ''))

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        with open('/proc/%d/status' % self.pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
        return -1

    def fds(self):
        return len(os.listdir('/proc/%d/fd' % self.pid))

    def cpu_seconds(self):
        with open('/proc/%d/stat' % self.pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime, stime

    def stderr_lines(self):
        """Lines on the server's stderr, not counting UBSan's false 'invalid vptr' reports
        that appear while the process is out of fds (see vptr_artifacts)."""
        self.stderr_file.seek(0)
        text = self.stderr_file.read()
        return text.count(b'\n') - 3 * self.vptr_artifacts(text)

    def vptr_artifacts(self, text=None):
        """UBSan's vptr check probes memory readability through pipe(2); under EMFILE the
        probe fails and it reports 'object has invalid vptr' + '<memory cannot be printed>'
        on valid objects (sanitizer_common IsAccessibleMemoryRange). Count those reports
        (3 lines each)."""
        if text is None:
            self.stderr_file.seek(0)
            text = self.stderr_file.read()
        return len(re.findall(rb'runtime error: [^\n]*\n[^\n]*note: object has invalid vptr\n'
                              rb'<memory cannot be printed>\n', text))

    def runtime_errors(self):
        self.stderr_file.seek(0)
        return self.stderr_file.read().count(b'runtime error:') - self.vptr_artifacts()

    def stderr_text(self, limit=2000):
        self.stderr_file.seek(0)
        return self.stderr_file.read()[-limit:].decode(errors='replace')

    def wait_fds(self, target, timeout):
        deadline = time.monotonic() + timeout
        while True:
            n = self.fds()
            if n <= target or time.monotonic() > deadline:
                return n
            time.sleep(0.05)

    def stop(self):
        if not self.alive():
            rc = self.proc.returncode
            check(False, 'server still alive at the end (exit status %s, stderr: %s)'
                  % (rc, self.stderr_text()))
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            check(False, 'server did not exit within 15 s of SIGTERM')
            return
        err = self.stderr_text()
        check(rc == 0, 'server exit status after SIGTERM = %d (want 0)%s'
              % (rc, ('; stderr: ' + err) if rc != 0 and err else ''))


# ---------------------------------------------------------------- client helpers

def connect(addr, src=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if src:
        s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    s.close()


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def rtt(s, msg=b'ping-0123456789'):
    t0 = time.monotonic()
    s.sendall(msg)
    got = recv_exact(s, len(msg))
    dt = time.monotonic() - t0
    if got != msg:
        raise AssertionError('echo mismatch: %r != %r' % (got, msg))
    return dt


def echo_ok(addr, timeout=2.0, size=4096):
    """One fresh connection, one echo of `size` random bytes; returns seconds taken or None."""
    t0 = time.monotonic()
    try:
        s = connect(addr, timeout=timeout)
        data = os.urandom(size)
        s.sendall(data)
        got = recv_exact(s, size)
        s.close()
        return time.monotonic() - t0 if got == data else None
    except OSError:
        return None


def exchange(s, chunks, shut=True, read_delay=0.0):
    """Write `chunks` (a writer thread) while reading the echo; optionally SHUT_WR then read
    to EOF. Returns (sent bytes, received bytes, saw_eof)."""
    sent = bytearray()
    for c in chunks:
        sent += c
    err = []

    def writer():
        try:
            for c in chunks:
                s.sendall(c) if c else s.send(c)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)
    t = threading.Thread(target=writer)
    t.start()
    if read_delay:
        time.sleep(read_delay)
    got = bytearray()
    eof = False
    while True:
        if not shut and len(got) >= len(sent):
            break
        try:
            b = s.recv(1 << 20)
        except socket.timeout:
            break
        if not b:
            eof = True
            break
        got += b
    t.join()
    if err:
        raise err[0]
    return bytes(sent), bytes(got), eof


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def close_wait_count(port):
    """Sockets with local port `port` in CLOSE_WAIT (state 08) in /proc/net/tcp{,6}."""
    n = 0
    for path in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    lport = int(parts[1].rsplit(':', 1)[1], 16)
                    if lport == port and parts[3] == '08':
                        n += 1
        except FileNotFoundError:
            pass
    return n


# ---------------------------------------------------------------- tests

def t_slow_readers(exe, scale):
    """4 clients push data without ever reading; server RSS must stay bounded and a 5th
    client must keep getting prompt echoes."""
    per_client = int(256 * MiB * scale)
    srv = Server(exe)
    probe = connect(srv.addr)
    rtt(probe)
    hogs = []
    for _ in range(4):
        s = connect(srv.addr)
        s.setblocking(False)
        hogs.append(s)
    sel = selectors.DefaultSelector()
    for s in hogs:
        sel.register(s, selectors.EVENT_WRITE)
    pushed = {s: 0 for s in hogs}
    block = os.urandom(256 * 1024)
    rtts, peak = [], srv.rss_kib()
    t0 = last_progress = time.monotonic()
    next_probe = t0
    # Push until each client has written its share, or nothing moved for 1.5 s
    # (the server paused reading and every buffer on the way is full), capped at 20 s.
    while True:
        now = time.monotonic()
        if all(v >= per_client for v in pushed.values()):
            break
        if now - last_progress > 1.5 or now - t0 > 20:
            break
        for key, _ in sel.select(0.01):
            s = key.fileobj
            if pushed[s] >= per_client:
                continue
            try:
                n = s.send(block)
                pushed[s] += n
                last_progress = time.monotonic()
            except BlockingIOError:
                pass
        if now >= next_probe:
            rtts.append(rtt(probe))
            peak = max(peak, srv.rss_kib())
            next_probe = now + 0.02
    # Keep probing for another second while the hogs sit there, full.
    t1 = time.monotonic()
    while time.monotonic() - t1 < 1.0:
        rtts.append(rtt(probe))
        peak = max(peak, srv.rss_kib())
        time.sleep(0.01)
    growth = peak - srv.base_rss
    total = sum(pushed.values())
    log('pushed %.1f MiB total (%s MiB per client, target %d MiB each) in %.1f s'
        % (total / MiB, ', '.join('%.1f' % (v / MiB) for v in pushed.values()),
           per_client // MiB, t1 - t0))
    log('probe: %d round trips, p50 %.2f ms, p99 %.2f ms, max %.2f ms'
        % (len(rtts), percentile(rtts, 50) * 1e3, percentile(rtts, 99) * 1e3,
           max(rtts) * 1e3))
    log('server RSS: baseline %d KiB, peak %d KiB, growth %.1f MiB'
        % (srv.base_rss, peak, growth / 1024))
    check(growth < 32 * 1024, 'RSS growth %.1f MiB < 32 MiB' % (growth / 1024))
    check(max(rtts) < 0.1, 'every probe round trip < 100 ms (max %.2f ms)' % (max(rtts) * 1e3))
    for s in hogs:
        rst_close(s)
    probe.close()
    n = srv.wait_fds(srv.base_fds, 3)
    check(n == srv.base_fds, 'fd count back to baseline after the hogs leave (%d, baseline %d)'
          % (n, srv.base_fds))
    check(echo_ok(srv.addr) is not None, 'fresh client echoed afterwards')
    srv.stop()


def t_emfile(exe, scale):
    """RLIMIT_NOFILE 64 on the server, 200 clients: no spin, bounded stderr, recovery."""
    raise_own_nofile()
    srv = Server(exe, nofile=64)
    clients = []
    for i in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(srv.addr)   # beyond the backlog the SYNs are dropped: stays pending
        clients.append(s)
    time.sleep(0.5)               # let the server hit EMFILE
    lines0, cpu0, t0 = srv.stderr_lines(), srv.cpu_seconds(), time.monotonic()
    time.sleep(2.0)
    lines1, cpu1, t1 = srv.stderr_lines(), srv.cpu_seconds(), time.monotonic()
    fds_full = srv.fds()
    cpu_pct = 100.0 * (cpu1 - cpu0) / (t1 - t0)
    rate = (lines1 - lines0) / (t1 - t0)
    log('while exhausted: server fds %d (limit 64), CPU %.1f%% of a core over %.1f s, '
        'stderr %d lines total, %d in the window (%.2f lines/s)'
        % (fds_full, cpu_pct, t1 - t0, lines1, lines1 - lines0, rate))
    if lines1:
        log('stderr sample: %r' % srv.stderr_text(300))
    check(srv.alive(), 'server alive while out of fds')
    if srv.vptr_artifacts():
        log('note: %d UBSan "invalid vptr / memory cannot be printed" reports on stderr: '
            'a sanitizer artifact under EMFILE (its readability probe needs a pipe), not '
            'counted as server log lines' % srv.vptr_artifacts())
    check(cpu_pct < 10.0, 'CPU %.1f%% < 10%% of a core' % cpu_pct)
    check(rate <= 1.5, 'stderr rate %.2f lines/s <= ~1 line/s' % rate)
    lines_rel = srv.stderr_lines()
    for s in clients:
        s.close()
    t_rel = time.monotonic()
    served = None
    # One probe at a time, each allowed to wait in the backlog (a refused or reset probe is
    # retried): the time of the first echo is when the server started accepting again.
    while time.monotonic() - t_rel < 5.0:
        if echo_ok(srv.addr, timeout=5.0 - (time.monotonic() - t_rel)) is not None:
            served = time.monotonic() - t_rel
            break
        time.sleep(0.02)
    log('recovery: first echo %s after the clients closed; %d more stderr lines after the '
        'release (an EMFILE report there means the first retry filled the fd table again '
        'with backlogged dead connections and the server backed off once more)'
        % ('%.3f s' % served if served is not None else 'never (5 s)',
           srv.stderr_lines() - lines_rel))
    check(served is not None and served < 2.0, 'served again within 2 s of the clients closing')
    n = srv.wait_fds(srv.base_fds, 3)
    check(n == srv.base_fds, 'fd count back to baseline (%d, baseline %d)' % (n, srv.base_fds))
    check(srv.runtime_errors() == 0, 'no other sanitizer runtime errors (%d)'
          % srv.runtime_errors())
    srv.stop()


def t_reset_storm(exe, scale):
    """2,000 connections reset (SO_LINGER {1,0} + close) at random points, many while the
    server is still writing echoes to them."""
    total = max(50, int(2000 * scale))
    srv = Server(exe)
    rng = random.Random(1234)
    payload = os.urandom(4 * MiB)
    kinds = {'before_send': 0, 'mid_send': 0, 'after_send_unread': 0, 'mid_read': 0}
    done = 0
    t0 = time.monotonic()
    batch = 40
    while done < total:
        socks = []
        for _ in range(min(batch, total - done)):
            try:
                s = connect(srv.addr, timeout=2)
            except OSError as e:
                check(False, 'connect failed during storm: %s' % e)
                break
            socks.append(s)
        for s in socks:
            kind = rng.choice(list(kinds))
            kinds[kind] += 1
            try:
                if kind == 'before_send':
                    pass
                elif kind == 'mid_send':
                    s.setblocking(False)
                    try:   # as much as the buffers take: the server is mid-write back
                        s.send(payload[:rng.randint(64 * 1024, 4 * MiB)])
                    except BlockingIOError:
                        pass
                elif kind == 'after_send_unread':
                    s.sendall(payload[:rng.randint(1, 256 * 1024)])
                else:
                    n = rng.randint(1000, 200000)
                    s.sendall(payload[:n])
                    recv_exact(s, rng.randint(1, n))
            except OSError:
                pass
            rst_close(s)
        done += len(socks)
        if not srv.alive():
            break
    dt = time.monotonic() - t0
    log('%d connections reset in %.1f s: %s' % (done, dt, kinds))
    check(srv.alive(), 'server alive after the reset storm (status %s)' % srv.proc.returncode)
    if not srv.alive():
        return
    n = srv.wait_fds(srv.base_fds, 5)
    log('server fds: baseline %d, after storm %d; RSS %d -> %d KiB'
        % (srv.base_fds, n, srv.base_rss, srv.rss_kib()))
    check(n == srv.base_fds, 'fd count back to baseline')
    check(echo_ok(srv.addr) is not None, 'fresh client echoed afterwards')
    srv.stop()


def t_half_close(exe, scale):
    """Client SHUT_WR after sending: gets every byte echoed, then EOF; the server end never
    lingers in CLOSE_WAIT."""
    srv = Server(exe)
    rng = random.Random(99)
    cases = [('empty: SHUT_WR at once', 0, 0.0), ('1 byte', 1, 0.0), ('4 KiB', 4096, 0.0),
             ('1 MiB', MiB, 0.0), ('8 MiB', 8 * MiB, 0.0),
             ('1 MiB, reader starts 0.5 s late', MiB, 0.5),
             ('3 MiB, reader starts 0.3 s late', 3 * MiB, 0.3)]
    for name, size, delay in cases:
        s = connect(srv.addr, timeout=10)
        data = os.urandom(size)
        chunks = []
        i = 0
        while i < size:
            n = rng.choice([1, 7, 1000, 65537, 300000])
            chunks.append(data[i:i + n])
            i += n
        t0 = time.monotonic()
        sent, got, eof = exchange(s, chunks, shut=True, read_delay=delay)
        dt = time.monotonic() - t0
        s.close()
        check(got == sent and eof, 'half-close %-32s: sent %d, echoed %d, EOF %s (%.3f s)'
              % (name, len(sent), len(got), eof, dt))
    # Many at once, then look for CLOSE_WAIT on the server side.
    socks = [connect(srv.addr, timeout=10) for _ in range(50)]
    results = []

    def one(s, size):
        sent, got, eof = exchange(s, [os.urandom(size)], shut=True)
        results.append(got == sent and eof)
        s.close()
    ths = [threading.Thread(target=one, args=(s, rng.randint(0, 200000))) for s in socks]
    [t.start() for t in ths]
    [t.join() for t in ths]
    check(all(results) and len(results) == 50, '50 concurrent half-closes: %d/50 exact + EOF'
          % sum(results))
    # The reverse direction: the client holds its write side open after the echo arrives;
    # the server must not close on its own (no EOF seen), then the client's FIN ends it.
    s = connect(srv.addr, timeout=2)
    rtt(s)
    s.settimeout(0.3)
    try:
        early = s.recv(1)
        premature = True
    except socket.timeout:
        premature = False
    check(not premature, 'server keeps a quiet open connection open (no spontaneous EOF)')
    s.settimeout(2)
    s.shutdown(socket.SHUT_WR)
    check(s.recv(1) == b'', 'EOF from the server after the client FIN')
    s.close()
    deadline = time.monotonic() + 2
    cw = close_wait_count(srv.port)
    while cw and time.monotonic() < deadline:
        time.sleep(0.05)
        cw = close_wait_count(srv.port)
    check(cw == 0, 'no server socket in CLOSE_WAIT (found %d)' % cw)
    n = srv.wait_fds(srv.base_fds, 3)
    check(n == srv.base_fds, 'fd count back to baseline (%d, baseline %d)' % (n, srv.base_fds))
    srv.stop()


def t_idle_1000(exe, scale):
    """1,000 idle connections held open while one client measures echo round trips."""
    count = max(50, int(1000 * scale))
    raise_own_nofile()
    srv = Server(exe, nofile=4096)
    idle = []
    for i in range(count):
        s = connect(srv.addr, timeout=5)
        idle.append(s)
    for s in idle[::50]:          # make sure they are really accepted and echoed
        rtt(s, b'x')
    n = srv.wait_fds(srv.base_fds + count, 0)
    deadline = time.monotonic() + 3
    while srv.fds() < srv.base_fds + count and time.monotonic() < deadline:
        time.sleep(0.05)
    n = srv.fds()
    check(n >= srv.base_fds + count, 'server holds %d connections (fds %d)' % (count, n))
    fast = connect(srv.addr)
    rtts = [rtt(fast, os.urandom(64)) for _ in range(2000)]
    p50, p99 = percentile(rtts, 50) * 1e3, percentile(rtts, 99) * 1e3
    log('with %d idle connections: 2000 round trips of 64 B: p50 %.3f ms, p99 %.3f ms, '
        'max %.3f ms; RSS %d KiB (%.1f KiB per idle connection)'
        % (count, p50, p99, max(rtts) * 1e3, srv.rss_kib(),
           (srv.rss_kib() - srv.base_rss) / count))
    check(p99 < 50, 'p99 RTT %.3f ms < 50 ms' % p99)
    for s in idle:
        s.close()
    fast.close()
    n = srv.wait_fds(srv.base_fds, 5)
    check(n == srv.base_fds, 'fd count back to baseline (%d, baseline %d)' % (n, srv.base_fds))
    srv.stop()


def churn(srv, duration, threads=16, seed=7, sample_cb=None):
    """Connection churn from 127.0.0.2-127.0.0.254: connect, echo 1 B..64 KiB, end with FIN,
    RST or half-close. Returns stats dict."""
    stats = {'conns': 0, 'mismatch': 0, 'errors': 0, 'fin': 0, 'rst': 0, 'half': 0}
    lock = threading.Lock()
    stop = time.monotonic() + duration
    errs = []

    def worker(k):
        rng = random.Random(seed * 1000 + k)
        i = 0
        while time.monotonic() < stop:
            src = '127.0.0.%d' % (2 + (k * 31 + i) % 253)
            i += 1
            size = rng.choice([1, rng.randint(1, 4096), rng.randint(1, 65536)])
            data = rng.randbytes(size)
            end = rng.choice(('fin', 'rst', 'half'))
            ok = True
            try:
                s = connect(srv.addr, src=src, timeout=5)
                if end == 'half':
                    _, got, eof = exchange(s, [data], shut=True)
                    ok = got == data and eof
                    s.close()
                else:
                    s.sendall(data)
                    got = recv_exact(s, size)
                    ok = got == data
                    rst_close(s) if end == 'rst' else s.close()
            except OSError as e:
                with lock:
                    stats['errors'] += 1
                    if len(errs) < 5:
                        errs.append('%s from %s: %r' % (end, src, e))
                continue
            with lock:
                stats['conns'] += 1
                stats[end] += 1
                if not ok:
                    stats['mismatch'] += 1
    ths = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    [t.start() for t in ths]
    while any(t.is_alive() for t in ths):
        if sample_cb:
            sample_cb()
        time.sleep(0.25)
    [t.join() for t in ths]
    stats['error_samples'] = errs
    return stats


def t_churn(exe, scale):
    """~10 s of connection churn from many 127.0.0.X sources: fd count and RSS flat."""
    duration = max(2.0, 10.0 * scale)
    srv = Server(exe)
    samples = []
    t0 = time.monotonic()

    def sample():
        samples.append((time.monotonic() - t0, srv.rss_kib(), srv.fds()))
    st = churn(srv, duration, sample_cb=sample)
    dt = time.monotonic() - t0
    n = srv.wait_fds(srv.base_fds, 5)
    warm = [x for x in samples if x[0] >= min(2.0, duration / 3)]
    rss_warm = warm[0][1] if warm else srv.base_rss
    rss_end = srv.rss_kib()
    log('churn %.1f s: %d connections (%.0f/s; fin %d, rst %d, half-close %d), '
        '%d mismatches, %d client errors %s'
        % (dt, st['conns'], st['conns'] / dt, st['fin'], st['rst'], st['half'],
           st['mismatch'], st['errors'], st['error_samples']))
    log('server fds: baseline %d, max during %d, end %d; RSS baseline %d KiB, after warm-up '
        '%d KiB, max %d KiB, end %d KiB'
        % (srv.base_fds, max(x[2] for x in samples), n, srv.base_rss, rss_warm,
           max(x[1] for x in samples), rss_end))
    check(st['conns'] >= 1000 * min(1.0, scale), 'at least %d connections'
          % (1000 * min(1.0, scale)))
    check(st['mismatch'] == 0, 'no echo mismatches')
    check(st['errors'] == 0, 'no client errors')
    check(n == srv.base_fds, 'fd count back to baseline (%d)' % n)
    if srv.sanitized:
        log('info RSS after warm-up: %+d KiB (not checked: sanitizer build)'
            % (rss_end - rss_warm))
    else:
        check(rss_end - rss_warm <= 4096,
              'RSS flat after warm-up: %+d KiB (tolerance 4 MiB)' % (rss_end - rss_warm))
    srv.stop()


def t_byte_exact(exe, scale):
    """Byte-exact echo under 1-byte writes, odd chunk sizes and zero-length sends."""
    srv = Server(exe)
    rng = random.Random(5)
    plans = {
        '20000 x 1-byte writes': [1] * 20000,
        '7-byte chunks x 5000': [7] * 5000,
        '1000-byte chunks x 2000': [1000] * 2000,
        '65537-byte chunks x 64': [65537] * 64,
        '1 MiB + 3 chunks x 8': [MiB + 3] * 8,
        'zero-length sends between 1..9 byte writes': [0, 1, 0, 0, 9, 0, 3, 0] * 500,
        'random 0..100000 x 300': [rng.randint(0, 100000) for _ in range(300)],
    }
    for name, sizes in plans.items():
        s = connect(srv.addr, timeout=20)
        data = os.urandom(sum(sizes))
        chunks, i = [], 0
        for n in sizes:
            chunks.append(data[i:i + n])
            i += n
        t0 = time.monotonic()
        sent, got, eof = exchange(s, chunks, shut=False)
        dt = time.monotonic() - t0
        ok = got == sent
        if not ok:
            first = next((j for j in range(min(len(got), len(sent))) if got[j] != sent[j]),
                         min(len(got), len(sent)))
            log('  first difference at byte %d' % first)
        check(ok, 'byte-exact %-44s %9d bytes (%.2f s)' % (name + ':', len(sent), dt))
        s.close()
    n = srv.wait_fds(srv.base_fds, 3)
    check(n == srv.base_fds, 'fd count back to baseline (%d, baseline %d)' % (n, srv.base_fds))
    srv.stop()


# Start of a TLS 1.2 ClientHello record announcing 512 bytes, never completed (as in
# tests/tls/test_tls_peers.c).
HALF_HELLO = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])


def make_cert(dirname):
    """A throwaway self-signed P-256 certificate for 127.0.0.1 (openssl command)."""
    cert, key = os.path.join(dirname, 'cert.pem'), os.path.join(dirname, 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj',
                    '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def t_tls_handshake_stall(exe, scale):
    """TLS-02: silent connections and half-ClientHello connections against the TLS echo
    server with a 1 s handshake timeout (asyncio ssl_handshake_timeout). Each stalled
    connection is closed by the server about 1 s after it connected, no report reaches
    stderr (a timed-out handshake is not an error outside debug mode), the fds come back
    to baseline, and real TLS clients connecting every 100 ms meanwhile are served."""
    import ssl
    n_silent, n_half = int(500 * scale), int(100 * scale)
    timeout_s = 1.0
    raise_own_nofile()
    tmp = tempfile.TemporaryDirectory()
    cert, key = make_cert(tmp.name)
    srv = Server(exe, extra_args=['--tls-cert', cert, '--tls-key', key,
                                  '--tls-handshake-timeout', str(timeout_s)])
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(cert)

    # A real client every 100 ms throughout: handshake time and a 1 KiB echo.
    stop = threading.Event()
    hs_times, real_errors = [], []

    def real_clients():
        while not stop.is_set():
            try:
                raw = connect(srv.addr, timeout=5)
                t0 = time.monotonic()
                with cctx.wrap_socket(raw, server_hostname='127.0.0.1') as s:
                    hs_times.append(time.monotonic() - t0)
                    data = os.urandom(1024)
                    s.sendall(data)
                    if recv_exact(s, len(data)) != data:
                        real_errors.append('echo mismatch')
            except (OSError, ssl.SSLError) as e:
                real_errors.append(repr(e))
            stop.wait(0.1)
    rt = threading.Thread(target=real_clients)
    rt.start()

    sel = selectors.DefaultSelector()
    opened = {}   # socket -> (kind, time connected)
    closed_after = {'silent': [], 'half': []}
    seen = [0]    # bytes the server sent to a stalled peer (an alert would be a bug here)

    lock = threading.Lock()
    opening = threading.Event()

    def reaper():
        """Records, as they happen, each stalled connection the server closes (EOF or RST
        on our side); a thread of its own so slow connects do not delay the measurement."""
        deadline = None
        while True:
            with lock:
                if not opening.is_set() and not opened:
                    return
            if deadline is None and not opening.is_set():
                deadline = time.monotonic() + timeout_s + 5
            if deadline is not None and time.monotonic() > deadline:
                return
            for key_, _ in sel.select(0.02):
                s = key_.fileobj
                now = time.monotonic()
                try:
                    b = s.recv(4096)
                except ConnectionResetError:
                    b = b''
                if b:
                    seen[0] += len(b)
                    continue
                with lock:
                    kind, t_open = opened.pop(s)
                    sel.unregister(s)
                closed_after[kind].append(now - t_open)
                s.close()

    opening.set()
    reap_thread = threading.Thread(target=reaper)
    reap_thread.start()
    t_first = time.monotonic()
    peak_fds = 0
    for i in range(n_silent + n_half):
        s = connect(srv.addr)
        kind = 'silent' if i < n_silent else 'half'
        if kind == 'half':
            s.sendall(HALF_HELLO)
        s.setblocking(False)
        with lock:
            opened[s] = (kind, time.monotonic())
            sel.register(s, selectors.EVENT_READ)
        if i % 50 == 0:
            peak_fds = max(peak_fds, srv.fds())
    log('opened %d silent + %d half-ClientHello connections in %.2f s'
        % (n_silent, n_half, time.monotonic() - t_first))
    opening.clear()
    reap_thread.join()
    bytes_seen = seen[0]
    early = 0
    still_open = len(opened)
    for s in list(opened):
        s.close()
    t_all_closed = time.monotonic()
    end_fds = srv.wait_fds(srv.base_fds, 1.5)
    fds_back_in = time.monotonic() - t_all_closed
    stop.set()
    rt.join()

    for kind in ('silent', 'half'):
        xs = closed_after[kind]
        if xs:
            log('%-6s closed after: min %.3f s, p50 %.3f s, p99 %.3f s, max %.3f s (%d)'
                % (kind, min(xs), percentile(xs, 50), percentile(xs, 99), max(xs), len(xs)))
        early += sum(1 for x in xs if x < timeout_s - 0.05)
    allx = closed_after['silent'] + closed_after['half']
    log('real TLS clients: %d handshakes, p50 %.1f ms, p99 %.1f ms, max %.1f ms; errors %s'
        % (len(hs_times), 1000 * percentile(hs_times or [0], 50),
           1000 * percentile(hs_times or [0], 99), 1000 * max(hs_times or [0]),
           real_errors[:3]))
    log('server fds: baseline %d, peak %d, end %d (%.2f s after the last close)'
        % (srv.base_fds, peak_fds, end_fds, fds_back_in))
    check(still_open == 0, 'every stalled handshake closed by the server (%d left open)'
          % still_open)
    check(early == 0, 'none closed before the %.1f s timeout (%d early)' % (timeout_s, early))
    # The catalogue's figure is 1 s +/- 100 ms. Measured from the client, on a machine
    # shared with other jobs: the median must meet it, the p99 gets 0.5 s (x3 under
    # sanitizers, which slow the server's 600 accepts and handshakes).
    slack = 3 if srv.sanitized else 1
    check(bool(allx) and percentile(allx, 50) <= timeout_s + 0.1 * slack,
          'closed at the timeout: p50 %.3f s <= %.2f s' % (
              percentile(allx or [99], 50), timeout_s + 0.1 * slack))
    check(bool(allx) and percentile(allx, 99) <= timeout_s + 0.5 * slack,
          'closed at the timeout: p99 %.3f s <= %.2f s' % (
              percentile(allx or [99], 99), timeout_s + 0.5 * slack))
    check(bytes_seen == 0, 'the server sent nothing to stalled peers (%d bytes)' % bytes_seen)
    check(end_fds == srv.base_fds, 'fd count back to baseline (%d vs %d)'
          % (end_fds, srv.base_fds))
    check(not real_errors and len(hs_times) >= 5,
          'real TLS clients served meanwhile (%d ok, %d errors)'
          % (len(hs_times), len(real_errors)))
    check(percentile(hs_times or [9], 99) < 0.25,
          'real handshakes p99 %.1f ms < 250 ms' % (1000 * percentile(hs_times or [9], 99)))
    check(srv.stderr_lines() == 0, 'no report for timed-out handshakes (stderr lines: %d)'
          % srv.stderr_lines())
    check(echo_ok(srv.addr) is None, 'plain TCP client gets no echo from a TLS port '
          '(sanity: the port really speaks TLS)')
    srv.stop()
    tmp.cleanup()


def t_tls_renegotiation(exe, scale):
    """TLS-05 (first half): a TLS 1.2 client asking to renegotiate is refused (the contexts
    set SSL_OP_NO_RENEGOTIATION): openssl s_client's interactive 'R' command gets the
    no_renegotiation alert; the server stays up, reports nothing, spends less CPU than the
    handshakes themselves, and echoes for a fresh client afterwards."""
    tmp = tempfile.TemporaryDirectory()
    cert, key = make_cert(tmp.name)
    srv = Server(exe, extra_args=['--tls-cert', cert, '--tls-key', key])
    attempts = max(3, int(5 * scale))
    refused, echoed_before = 0, 0
    cpu0 = srv.cpu_seconds()
    for i in range(attempts):
        # Without -quiet / -ign_eof s_client treats a line holding just 'R' as "renegotiate".
        p = subprocess.Popen(['openssl', 's_client', '-connect', '%s:%d' % srv.addr,
                              '-tls1_2', '-CAfile', cert],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        try:
            p.stdin.write(b'hello-%d\n' % i)
            p.stdin.flush()
            time.sleep(0.4)
            p.stdin.write(b'R\n')
            p.stdin.flush()
            time.sleep(0.5)
            p.stdin.write(b'after-renegotiation\n')
            p.stdin.flush()
            time.sleep(0.2)
            p.stdin.close()
        except BrokenPipeError:
            pass
        try:
            out = p.communicate(timeout=5)[0]
        except subprocess.TimeoutExpired:
            p.kill()
            out = p.communicate()[0]
        echoed_before += b'hello-%d' % i in out
        asked = b'RENEGOTIATING' in out
        # refused: the alert, or at least no data flows on a renegotiated session
        if asked and (b'no renegotiation' in out or b'after-renegotiation' not in out):
            refused += 1
        else:
            log('  attempt %d: asked %s, output tail: %r' % (i, asked, out[-300:]))
    cpu = srv.cpu_seconds() - cpu0
    log('%d renegotiation attempts: %d refused, %d echoed before; server CPU %.3f s'
        % (attempts, refused, echoed_before, cpu))
    check(echoed_before == attempts, 'every session echoed before renegotiating')
    check(refused == attempts, 'every renegotiation refused (%d/%d)' % (refused, attempts))
    check(srv.alive(), 'server alive')
    check(cpu < 0.5, 'server CPU for %d handshakes + refusals %.3f s < 0.5 s' % (attempts, cpu))
    check(srv.stderr_lines() == 0, 'no report (stderr lines: %d)' % srv.stderr_lines())
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cert)
    with ctx.wrap_socket(connect(srv.addr), server_hostname='127.0.0.1') as c:
        data = os.urandom(4096)
        c.sendall(data)
        check(recv_exact(c, len(data)) == data, 'a fresh TLS client is echoed afterwards')
    n = srv.wait_fds(srv.base_fds, 3)
    check(n == srv.base_fds, 'fd count back to baseline (%d vs %d)' % (n, srv.base_fds))
    srv.stop()
    tmp.cleanup()


TESTS = {
    'slow_readers': t_slow_readers,
    'emfile': t_emfile,
    'reset_storm': t_reset_storm,
    'half_close': t_half_close,
    'idle_1000': t_idle_1000,
    'churn': t_churn,
    'byte_exact': t_byte_exact,
    'tls_handshake_stall': t_tls_handshake_stall,
    'tls_renegotiation': t_tls_renegotiation,
}


def main(argv):
    if len(argv) < 3 or argv[1] not in TESTS:
        print(__doc__, file=sys.stderr)
        return 2
    scale = 1.0
    if '--scale' in argv:
        scale = float(argv[argv.index('--scale') + 1])
    elif os.environ.get('AIOL_REL_SCALE'):
        scale = float(os.environ['AIOL_REL_SCALE'])
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    t0 = time.monotonic()
    try:
        TESTS[argv[1]](os.path.abspath(argv[2]), scale)
    except Exception as e:   # noqa: a harness error is a failure, with the traceback
        import traceback
        traceback.print_exc()
        FAILS.append('exception: %r' % e)
    log('%s: %s in %.1f s' % (argv[1], 'FAIL (%d checks)' % len(FAILS) if FAILS else 'PASS',
                              time.monotonic() - t0))
    return 1 if FAILS else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
