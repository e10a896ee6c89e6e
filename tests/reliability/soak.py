#!/usr/bin/env python3
"""Soak: connection churn + slow readers against examples/echo_server (RELIABILITY.md SK-01).

    soak.py ECHO_SERVER [--duration S] [--warmup S] [--churn-threads N] [--slow N]

Defaults: 20 s (the Meson test), warm-up = min(max(5, duration/5), 60) s. By hand:
    soak.py build/examples/echo_server --duration 600

Load, all over loopback (sources 127.0.0.2-254 for churn):
  * churn threads: connect, echo 1 B..64 KiB, end with FIN, RST or half-close;
  * slow readers: push 1-4 MiB through the echo while reading only 16 KiB per 5 ms, so
    the server's flow control (pause_writing -> pause_reading) cycles constantly.
Every echoed byte is checked. Server RSS and fd count are sampled every second.
Fails on: any echo mismatch or client error, server death, fd count at the end != baseline,
fewer than 10,000 connections per 30 s (SK-01's floor; a third of it under sanitizers),
RSS slope after warm-up > 1 MiB/min (least-squares over the 1 s samples; to keep a short CI
run from failing on allocator noise the slope only counts when RSS also grew by more than
512 KiB between the end of warm-up and the end), or a non-zero exit on SIGTERM.
"""
import argparse
import os
import random
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
from hostile import MiB, Server, check, connect, log, rst_close  # noqa: E402


def slow_reader_loop(srv, stop_at, k, stats, lock):
    rng = random.Random(100 + k)
    while time.monotonic() < stop_at:
        size = rng.randint(1 * MiB, 4 * MiB)
        data = rng.randbytes(size)
        err = []
        try:
            s = connect(srv.addr, src='127.0.0.%d' % (2 + k % 253), timeout=10)
        except OSError as e:
            with lock:
                stats['errors'] += 1
                stats['error_samples'].append('slow connect: %r' % e)
            continue

        def writer():
            try:
                s.sendall(data)
            except OSError as e:
                err.append(e)
        t = threading.Thread(target=writer)
        t.start()
        got = bytearray()
        try:
            while len(got) < size:
                b = s.recv(16384)
                if not b:
                    break
                got += b
                time.sleep(0.005)
        except OSError as e:
            err.append(e)
        t.join()
        (rst_close if rng.random() < 0.5 else socket.socket.close)(s)
        with lock:
            stats['slow_conns'] += 1
            stats['slow_bytes'] += len(got)
            if err:
                stats['errors'] += 1
                stats['error_samples'].append('slow: %r' % err[0])
            elif bytes(got) != data:
                stats['mismatch'] += 1


def slope_per_min(samples):
    """Least-squares slope of (t seconds, KiB) in MiB/min."""
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    if den == 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in samples) / den * 60 / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('echo_server')
    ap.add_argument('--duration', type=float, default=20.0)
    ap.add_argument('--warmup', type=float, default=None)
    ap.add_argument('--churn-threads', type=int, default=12)
    ap.add_argument('--slow', type=int, default=4)
    a = ap.parse_args()
    warmup = a.warmup if a.warmup is not None else min(max(5.0, a.duration / 5), 60.0)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    hostile.raise_own_nofile()

    srv = Server(os.path.abspath(a.echo_server))
    t0 = time.monotonic()
    stop_at = t0 + a.duration
    lock = threading.Lock()
    sstats = {'slow_conns': 0, 'slow_bytes': 0, 'errors': 0, 'mismatch': 0,
              'error_samples': []}
    slow = [threading.Thread(target=slow_reader_loop, args=(srv, stop_at, k, sstats, lock))
            for k in range(a.slow)]
    [t.start() for t in slow]
    samples = []
    next_sample = [t0]

    def sample():
        now = time.monotonic()
        if now >= next_sample[0] and srv.alive():
            samples.append((now - t0, srv.rss_kib(), srv.fds()))
            next_sample[0] += 1.0
            if a.duration >= 60 and len(samples) % 30 == 0:
                log('  t=%4.0f s  RSS %d KiB  fds %d' % samples[-1])
    cstats = hostile.churn(srv, a.duration, threads=a.churn_threads, sample_cb=sample)
    [t.join() for t in slow]
    dt = time.monotonic() - t0
    alive = srv.alive()
    end_fds = srv.wait_fds(srv.base_fds, 5) if alive else -1
    end_rss = srv.rss_kib() if alive else -1

    after = [(t, r) for t, r, _ in samples if t >= warmup]
    slope = slope_per_min(after)
    rss_warm = after[0][1] if after else srv.base_rss
    growth = end_rss - rss_warm
    total = cstats['conns'] + sstats['slow_conns']
    log('soak %.1f s (warm-up %.0f s): %d connections (%d churn: fin %d, rst %d, half %d; '
        '%d slow-reader carrying %.1f MiB), %.0f conn/s'
        % (dt, warmup, total, cstats['conns'], cstats['fin'], cstats['rst'], cstats['half'],
           sstats['slow_conns'], sstats['slow_bytes'] / MiB, total / dt))
    log('mismatches %d, client errors %d %s'
        % (cstats['mismatch'] + sstats['mismatch'], cstats['errors'] + sstats['errors'],
           (cstats['error_samples'] + sstats['error_samples'])[:5]))
    log('server fds: start %d, max %d, end %d' % (
        srv.base_fds, max([f for _, _, f in samples] or [0]), end_fds))
    log('server RSS: start %d KiB, after warm-up %d KiB, max %d KiB, end %d KiB; '
        'slope after warm-up %+.3f MiB/min over %d samples'
        % (srv.base_rss, rss_warm, max([r for _, r, _ in samples] or [0]), end_rss, slope,
           len(after)))
    check(alive, 'server alive throughout')
    check(cstats['mismatch'] + sstats['mismatch'] == 0, 'no echo mismatches')
    check(cstats['errors'] + sstats['errors'] == 0, 'no client errors')
    check(end_fds == srv.base_fds, 'fd count back to baseline (%d vs %d)'
          % (end_fds, srv.base_fds))
    # SK-01's floor: >= 10,000 connections per 30 s (a third under sanitizers, which slow
    # the server down about 3x).
    floor = int(10000 * dt / 30 / (3 if srv.sanitized else 1))
    check(total >= floor, 'connections %d >= %d (SK-01: 10,000 per 30 s)' % (total, floor))
    if srv.sanitized:
        log('info RSS slope %+.3f MiB/min, growth %+d KiB: not checked (sanitizer build, '
            'ASan quarantine)' % (slope, growth))
    else:
        check(slope <= 1.0 or growth <= 512,
              'RSS slope %+.3f MiB/min <= 1 MiB/min (or growth %+d KiB <= 512 KiB)'
              % (slope, growth))
    if alive:
        srv.stop()
    log('soak: %s' % ('FAIL: ' + '; '.join(hostile.FAILS) if hostile.FAILS else 'PASS'))
    return 1 if hostile.FAILS else 0


if __name__ == '__main__':
    sys.exit(main())
