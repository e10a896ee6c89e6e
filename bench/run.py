#!/usr/bin/env python3
"""Echo benchmark: libaioloop's servers against a raw epoll loop and libuv, in one run.

    python3 bench/run.py [--quick] [--reps N] [--duration S] [--cases a,b] [--servers a,b]
                         [--bindings] [--server NAME=CMD ...] [--tls-server NAME=CMD ...]
                         [--out DIR] [--docs]

Builds everything it runs (a release build of the library in build-bench/, the load
generator and the reference servers), then for each round, case and server: starts the
server pinned to CPU 0, runs bench/loadgen pinned to CPU 1, and reads the server's user
and system CPU time from /proc/PID/stat around the run. Rounds go through every server
before the next starts, so machine drift spreads over all of them; each cell is the
median of the rounds. Prints a markdown table with ratios to epoll_echo and uv_echo,
writes the raw results (JSONL) and a chart (SVG) to --out, and with --docs rewrites
docs/PERFORMANCE.md.

A server command is any program taking `--host H --port P` and printing a line
`listening on HOST:PORT` (the real port: we pass 0).

The tls-* cases run the same load over TLS (loadgen drives OpenSSL itself, TLS 1.3, and
verifies the server's certificate). A throwaway self-signed certificate and key are made
with the `openssl` command in a temporary directory for each run and deleted after it.
A server serves TLS through its TLS command, where `{tls_cert}` and `{tls_key}` stand for
those files (`--tls-server NAME=CMD`); a server without one shows n/a in the TLS tables.
The TLS yardstick is bench/servers/epoll_tls_echo.c (epoll + OpenSSL on the socket), and
a "TLS vs plain" table puts each server's TLS figures next to its plain ones.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build-bench")
BIN = os.path.join(BUILD, "bench-bin")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = "0", "1"

# name: (loadgen mode, conns, size, pipeline, idle, tls)
CASES = {
    "1k": ("echo", 10, 1024, 1, 0, False),
    "10k": ("echo", 10, 10240, 1, 0, False),
    "100k": ("echo", 10, 102400, 1, 0, False),
    "1k-p16": ("echo", 10, 1024, 16, 0, False),
    "1k-c100-p16": ("echo", 100, 1024, 16, 0, False),
    "churn": ("churn", 10, 1024, 1, 0, False),
    "idle10k": ("idle", 1, 1024, 1, 10000, False),
    # TLS: the same loads as their plain twin; tls-churn is the handshake rate (a full
    # handshake per connection, never a resumed session).
    "tls-1k": ("echo", 10, 1024, 1, 0, True),
    "tls-100k": ("echo", 10, 102400, 1, 0, True),
    "tls-churn": ("churn", 10, 1024, 1, 0, True),
}
PLAIN_TWIN = {"tls-1k": "1k", "tls-100k": "100k", "tls-churn": "churn"}
# The raw yardsticks a ratio is taken against, for plain TCP and for TLS.
BASE_PLAIN, BASE_TLS = "epoll_echo", "epoll_tls_echo"
# A TLS-only server whose plain figures are another server's: the raw epoll pair.
PLAIN_OF = {"epoll_tls_echo": "epoll_echo"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def have_pkg(name):
    return subprocess.run(["pkg-config", "--exists", name]).returncode == 0


def pkg_flags(name):
    return subprocess.run(["pkg-config", "--cflags", "--libs", name], check=True,
                          capture_output=True, text=True).stdout.split()


def build(with_uv, with_tls):
    """A release build of the library and examples, plus the bench programs (loadgen
    speaks TLS and epoll_tls_echo is built when OpenSSL is there)."""
    opts = ["-Dbuildtype=release", "-Db_ndebug=true", "-Dtests=false", "-Dexamples=true"]
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        sh(["meson", "setup", BUILD, ROOT] + opts, stdout=subprocess.DEVNULL)
    else:
        sh(["meson", "configure", BUILD] + opts, stdout=subprocess.DEVNULL)
    sh(["ninja", "-C", BUILD], stdout=subprocess.DEVNULL)
    os.makedirs(BIN, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    src = os.path.join(ROOT, "bench")
    ssl = ["-DLOADGEN_TLS"] + pkg_flags("openssl") if with_tls else []
    sh([cc, "-O2", "-o", os.path.join(BIN, "loadgen"), os.path.join(src, "loadgen.c")] + ssl)
    sh([cc, "-O2", "-o", os.path.join(BIN, "epoll_echo"),
        os.path.join(src, "servers", "epoll_echo.c")])
    if with_tls:
        sh([cc, "-O2", "-o", os.path.join(BIN, "epoll_tls_echo"),
            os.path.join(src, "servers", "epoll_tls_echo.c")] + pkg_flags("openssl"))
    if with_uv:
        sh([cc, "-O2", "-o", os.path.join(BIN, "uv_echo"),
            os.path.join(src, "servers", "uv_echo.c"), "-luv"])
    # Micro-benchmarks: the loop's (tests/bench/bench_loop.c, against build-bench's
    # library) and their yardsticks (bench/micro/reference.c: a plain ring, libuv timers).
    lib = os.path.join(BUILD, "lib")
    sh([cc, "-O2", "-o", os.path.join(BIN, "bench_loop"),
        os.path.join(ROOT, "tests", "bench", "bench_loop.c"), "-I", os.path.join(ROOT, "include"),
        "-L", lib, "-Wl,-rpath," + lib, "-laioloop", "-lpthread"])
    sh([cc, "-O2", "-o", os.path.join(BIN, "micro_reference"),
        os.path.join(src, "micro", "reference.c")] + (["-DHAVE_UV", "-luv"] if with_uv else []))
    sh([cc, "-O2", "-shared", "-fPIC", "-o", os.path.join(BIN, "alloc_count.so"),
        os.path.join(src, "alloc_count.c")])


def lib_has_tls():
    """Whether build-bench's library was built with TLS (meson's tls option is auto)."""
    try:
        with open(os.path.join(BUILD, "config.h")) as f:
            return re.search(r"#define AIOL_HAVE_TLS 1\b", f.read()) is not None
    except OSError:
        return False


TLS_ARGS = ["--tls-cert", "{tls_cert}", "--tls-key", "{tls_key}"]


def make_cert(tmp):
    """A throwaway self-signed P-256 certificate for 127.0.0.1, valid one day; the key
    never leaves tmp. Returns (cert, key)."""
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def build_bindings():
    """The Rust, Go and Lua echo servers, built against build-bench; each one whose
    toolchain is missing is left out with a note. Returns {name: command}."""
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(BUILD, "meson-uninstalled"),
               LD_LIBRARY_PATH=os.path.join(BUILD, "lib"))
    out = {}  # name: plain command; go-net also serves TLS (see main)
    rust_dir = os.path.join(ROOT, "bindings", "rust")
    if shutil.which("cargo"):
        target = os.path.join(BUILD, "cargo-target")
        r = subprocess.run(["cargo", "build", "--release", "--example", "echo_server",
                            "--target-dir", target], cwd=rust_dir, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            out["rust"] = [os.path.join(target, "release", "examples", "echo_server")]
        else:
            log("rust echo server did not build:\n" + r.stderr[-800:])
    if shutil.which("go"):
        exe = os.path.join(BIN, "go_echo_server")
        r = subprocess.run(["go", "build", "-ldflags", "-r " + os.path.join(BUILD, "lib"),
                            "-o", exe, "./examples/echo_server"],
                           cwd=os.path.join(ROOT, "bindings", "go"), env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            out["go"] = [exe]
        else:
            log("go echo server did not build:\n" + r.stderr[-800:])
        ref = os.path.join(BIN, "go_net_echo")  # Go's own net package, the Go yardstick
        r = subprocess.run(["go", "build", "-o", ref, "."],
                           cwd=os.path.join(ROOT, "bench", "servers", "go_net_echo"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            out["go-net"] = [ref]
    script = os.path.join(ROOT, "bindings", "lua", "examples", "echo_server.lua")
    for name, interp, sub in (("luajit", "luajit", "luajit"), ("lua5.4", "lua5.4", "5.4")):
        mod = os.path.join(BUILD, "bindings", "lua", sub, "aioloop.so")
        if shutil.which(interp) and os.path.exists(mod):
            out[name] = ["env", "LUA_CPATH=" + os.path.join(BUILD, "bindings", "lua", sub, "?.so"),
                         interp, script]
    return out


def default_servers():
    """name: {"plain": command or None, "tls": command template or None}."""
    echo = [os.path.join(BUILD, "examples", "echo_server")]
    return {
        "epoll_echo": {"plain": [os.path.join(BIN, "epoll_echo")], "tls": None},
        "epoll_tls_echo": {"plain": None, "tls": [os.path.join(BIN, "epoll_tls_echo")] + TLS_ARGS},
        "uv_echo": {"plain": [os.path.join(BIN, "uv_echo")], "tls": None},
        "aioloop": {"plain": echo, "tls": echo + TLS_ARGS},
    }


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime (fields 14, 15)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_server(cmd, env=None):
    def pin():
        os.sched_setaffinity(0, {int(SERVER_CPU)})
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # raising it needs privileges
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    p = subprocess.Popen(cmd + ["--host", "127.0.0.1", "--port", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, preexec_fn=pin, text=True, env=env)
    deadline = time.time() + 10
    while time.time() < deadline:
        line = p.stdout.readline()
        m = re.match(r"listening on .*:(\d+)$", line.strip())
        if m:
            return p, int(m.group(1))
        if not line and p.poll() is not None:
            break
    p.kill()
    raise RuntimeError(f"{cmd[0]} did not print 'listening on HOST:PORT'")


def stop_server(p):
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def server_cmd(cmd, case, tls_files):
    """The server's command for a case: TLS cases get the certificate and key filled in."""
    if CASES[case][5]:
        return [a.format(tls_cert=tls_files[0], tls_key=tls_files[1]) for a in cmd]
    return cmd


def loadgen(port, case, duration, warmup, tls_files):
    """bench/loadgen running a case against port, pinned to the client CPU."""
    mode, conns, size, pipeline, idle, tls = CASES[case]
    return subprocess.Popen(
        ["taskset", "-c", CLIENT_CPU, os.path.join(BIN, "loadgen"), "--port", str(port),
         "--mode", mode, "--conns", str(conns), "--size", str(size), "--pipeline",
         str(pipeline), "--idle", str(idle), "--duration", str(duration), "--warmup",
         str(warmup)] + (["--tls", "--tls-ca", tls_files[0]] if tls else []),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_one(name, cmd, case, duration, warmup, tls_files):
    idle = CASES[case][4]
    p, port = start_server(server_cmd(cmd, case, tls_files))
    try:
        rss0 = rss_kib(p.pid)
        u0, s0 = cpu_ticks(p.pid)
        lg = loadgen(port, case, duration, warmup, tls_files)
        rss_max = rss0
        t_measure = time.time() + warmup
        u1 = s1 = None
        while lg.poll() is None:
            time.sleep(0.05)
            rss_max = max(rss_max, rss_kib(p.pid))
            if u1 is None and time.time() >= t_measure:
                u1, s1 = cpu_ticks(p.pid)  # start of the measured window
        out, err = lg.communicate()
        u2, s2 = cpu_ticks(p.pid)
    finally:
        stop_server(p)
    if u1 is None:
        u1, s1 = u0, s0
    res = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"errors": 1, "msgs": 0}
    res.update(server=name, case=case, exit=lg.returncode, stderr=err.strip()[-300:])
    msgs = res.get("msgs", 0)
    # CPU over the measured window (sampled at the end of warm-up, to within 50 ms).
    if msgs:
        res["user_us_per_msg"] = (u2 - u1) / CLK_TCK * 1e6 / msgs
        res["sys_us_per_msg"] = (s2 - s1) / CLK_TCK * 1e6 / msgs
        res["cpu_us_per_msg"] = res["user_us_per_msg"] + res["sys_us_per_msg"]
    if idle:
        res["rss_per_idle_conn_b"] = (rss_max - rss0) * 1024 / idle
    return res


def median(rows, key):
    vals = [r[key] for r in rows if key in r and r.get("exit") == 0]
    return statistics.median(vals) if vals else None


def fmt(v, digits=2):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def rows_of(results, server, case):
    return [r for r in results if r["server"] == server and r["case"] == case]


def units(case):
    """(rate label, what one 'message' is) for a case."""
    mode, tls = CASES[case][0], CASES[case][5]
    if mode == "churn":
        return ("handshakes/s", "handshake") if tls else ("conns/s", "conn")
    return "msgs/s", "msg"


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "–"


def tls_note(results, case):
    """What the TLS runs negotiated, as loadgen reported it (naming the servers when they
    did not all choose the same cipher)."""
    got = {}
    for r in results:
        if r["case"] == case and r.get("tls_protocol"):
            got.setdefault(f"{r['tls_protocol']} {r['tls_cipher']}", []).append(r["server"])
    if len(got) > 1:
        note = ", ".join(f"{k} ({', '.join(dict.fromkeys(v))})" for k, v in got.items())
    else:
        note = next(iter(got), "TLS")
    if any(r.get("tls_verify") for r in results if r["case"] == case):
        note += ", certificate verified"
    if CASES[case][0] == "churn":
        note += "; a full handshake per connection, no session resumption"
    return note


def table(results, servers, cases):
    lines = []
    for case in cases:
        mode, conns, size, pipeline, idle, tls = CASES[case]
        rate, per = units(case)
        lines.append(f"\n### {case}: {mode}, {conns} conns, {size} B, pipeline {pipeline}"
                     + (f", {idle} idle" if idle else "")
                     + (f"; over {tls_note(results, case)}; epoll = {BASE_TLS}" if tls else ""))
        extra = " | RSS/idle conn B" if idle else ""
        uv = "" if tls else " CPU vs uv |"  # libuv has no TLS
        lines.append(f"\n| server | {rate} | p50 µs | p99 µs | server CPU µs/{per} | user | sys "
                     f"| CPU vs epoll |{uv} {rate} vs epoll{extra} |")
        ncols = lines[-1].count("|") - 1
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|" + ("" if tls else "---:|")
                     + "---:|" + ("---:|" if idle else ""))
        base_rows = rows_of(results, BASE_TLS if tls else BASE_PLAIN, case)
        base_cpu, base_rate = median(base_rows, "cpu_us_per_msg"), median(base_rows, "msgs_per_s")
        uv_cpu = median(rows_of(results, "uv_echo", case), "cpu_us_per_msg")
        for s, spec in servers.items():
            rows = rows_of(results, s, case)
            if not rows:
                if tls and spec["tls"] is None and spec["plain"] is not None:
                    lines.append(f"| {s} | n/a (no TLS) |" + " |" * (ncols - 2))
                continue
            bad = sum(1 for r in rows if r.get("exit") != 0)
            cpu = median(rows, "cpu_us_per_msg")
            rps = median(rows, "msgs_per_s")
            cells = [s + (f" ({bad}/{len(rows)} failed)" if bad else ""), fmt(rps, 0),
                     fmt(median(rows, "p50_us"), 1), fmt(median(rows, "p99_us"), 1), fmt(cpu),
                     fmt(median(rows, "user_us_per_msg")), fmt(median(rows, "sys_us_per_msg")),
                     ratio(cpu, base_cpu)] + ([] if tls else [ratio(cpu, uv_cpu)]) \
                + [ratio(rps, base_rate)]
            if idle:
                cells.append(fmt(median(rows, "rss_per_idle_conn_b"), 0))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tls_vs_plain(results, servers, cases):
    """Each TLS-capable server's TLS figures next to its plain ones from the same run (the
    raw yardstick's plain figures are epoll_echo's)."""
    pairs = [(t, PLAIN_TWIN[t]) for t in cases if PLAIN_TWIN.get(t) in cases]
    if not pairs:
        return ""
    lines = ["\n### TLS vs plain (same run)\n",
             "Rates are msgs/s (connections/s for churn: one full TLS handshake each over "
             "TLS); CPU is the server's µs per message (per connection for churn), total "
             "(user / sys). Extra = TLS CPU − plain CPU.\n",
             f"| server | case | plain rate | TLS rate | TLS/plain rate | plain CPU µs | TLS CPU µs "
             f"| extra µs | TLS CPU vs {BASE_TLS} |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    base_tls = {t: median(rows_of(results, BASE_TLS, t), "cpu_us_per_msg") for t, _ in pairs}

    def cpu_cell(rows):
        cpu = median(rows, "cpu_us_per_msg")
        if cpu is None:
            return "–", None
        return (f"{fmt(cpu)} ({fmt(median(rows, 'user_us_per_msg'))} / "
                f"{fmt(median(rows, 'sys_us_per_msg'))})"), cpu

    for s, spec in servers.items():
        if spec["tls"] is None:
            continue
        plain = PLAIN_OF.get(s, s)
        label = f"{plain} / {s}" if plain != s else s
        for t, p in pairs:
            trows, prows = rows_of(results, s, t), rows_of(results, plain, p)
            if not trows:
                continue
            trate, prate = median(trows, "msgs_per_s"), median(prows, "msgs_per_s")
            tcell, tcpu = cpu_cell(trows)
            pcell, pcpu = cpu_cell(prows)
            extra = fmt(tcpu - pcpu) if tcpu is not None and pcpu is not None else "–"
            lines.append(f"| {label} | {p} → {t} | {fmt(prate, 0)} | {fmt(trate, 0)} | "
                         f"{ratio(trate, prate)} | {pcell} | {tcell} | {extra} | "
                         f"{ratio(tcpu, base_tls[t])} |")
    return "\n".join(lines) + "\n"


def svg_chart(results, servers, cases, path):
    """Grouped bars of server CPU µs/msg, one group per case; no plotting library needed."""
    cases = [c for c in cases if CASES[c][0] == "echo"]
    data = {(s, c): median([r for r in results if r["server"] == s and r["case"] == c],
                           "cpu_us_per_msg") for s in servers for c in cases}
    top = max([v for v in data.values() if v] or [1]) * 1.15
    colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1"]
    gw, bw, h, left, bottom = 30 + 22 * len(servers), 20, 320, 60, 40
    width = left + gw * len(cases) + 160
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + bottom + 40}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="16" font-size="13">server CPU µs per echoed message '
           '(lower is better)</text>']
    for i in range(5):
        y = 30 + h - h * i / 4
        out.append(f'<line x1="{left}" x2="{left + gw * len(cases)}" y1="{y}" y2="{y}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{top * i / 4:.1f}</text>')
    for ci, c in enumerate(cases):
        x0 = left + ci * gw + 15
        for si, s in enumerate(servers):
            v = data[(s, c)]
            if not v:
                continue
            bh = h * v / top
            out.append(f'<rect x="{x0 + si * (bw + 2)}" y="{30 + h - bh}" width="{bw}" '
                       f'height="{bh}" fill="{colors[si % len(colors)]}"/>')
        out.append(f'<text x="{x0 + (len(servers) * (bw + 2)) / 2}" y="{30 + h + 16}" '
                   f'text-anchor="middle">{c}</text>')
    for si, s in enumerate(servers):
        y = 40 + si * 16
        lx = left + gw * len(cases) + 20
        out.append(f'<rect x="{lx}" y="{y - 9}" width="10" height="10" '
                   f'fill="{colors[si % len(colors)]}"/><text x="{lx + 14}" y="{y}">{s}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs, {cpu}, Linux {platform.release()}, load {os.getloadavg()[0]:.2f}"


# ---- micro-benchmarks, allocations, targets ------------------------------------------

MICRO_LINE = re.compile(r"^(.*?): ([0-9.]+) M (\w+)/s")


def micro(rounds):
    """bench_loop and its yardsticks, alternating, `rounds` times (each prints medians of
    5 x 1M operations); returns {figure name: median M ops/s over the rounds}."""
    got = {}
    for _ in range(rounds):
        for exe in ("micro_reference", "bench_loop"):
            out = subprocess.run(["taskset", "-c", SERVER_CPU, os.path.join(BIN, exe), "-r", "5"],
                                 capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                m = MICRO_LINE.match(line)
                if m:
                    got.setdefault(m.group(1), []).append(float(m.group(2)))
    return {k: statistics.median(v) for k, v in got.items()}


def allocs_per_msg(cmd, case, tls_files, duration=3.0, warmup=1.0):
    """Heap allocations per echoed message in a server's steady state: bench/alloc_count.c
    preloaded, its counters read (SIGUSR2) at the end of the warm-up and at the end."""
    fd, count_file = tempfile.mkstemp(prefix="aioloop-allocs-")
    os.close(fd)
    env = dict(os.environ, LD_PRELOAD=os.path.join(BIN, "alloc_count.so"),
               ALLOC_COUNT_FILE=count_file)
    try:
        p, port = start_server(server_cmd(cmd, case, tls_files), env=env)
    except RuntimeError:
        os.unlink(count_file)
        return None
    try:
        lg = loadgen(port, case, duration, warmup, tls_files)

        def snapshot():
            p.send_signal(signal.SIGUSR2)
            time.sleep(0.1)
            with open(count_file) as f:
                return [int(x) for x in f.read().split()]
        time.sleep(warmup + 0.2)
        c1 = snapshot()
        out, _ = lg.communicate()
        c2 = snapshot()
        res = json.loads(out.strip().splitlines()[-1])
        # loadgen counts the messages after its warm-up: the window the snapshots bracket.
        msgs = res.get("msgs", 0)
        return (c2[0] + c2[1] - c1[0] - c1[1]) / msgs if msgs else None
    finally:
        stop_server(p)
        os.unlink(count_file)


def target_rows(results, micro_figs, allocs):
    """The issue's performance targets, each with the figure from this run and met/missed."""
    def med(server, case, key):
        return median(rows_of(results, server, case), key)

    rows = []

    def add(what, value, ok, target):
        if value is None:
            rows.append((what, "not measured", target, "–"))
        else:
            rows.append((what, value, target, "met" if ok else "**missed**"))

    def vs(case, key, base, limit, better="lower", what=None, target=None):
        a, b = med("aioloop", case, key), med(base, case, key)
        if a is None or not b:
            add(what, None, False, target)
            return
        r = a / b
        ok = r <= limit if better == "lower" else r >= limit
        gap = "" if ok else f" (gap {abs(r - limit) / limit * 100:.0f}%)"
        add(what, f"{r:.2f}× {base}{gap}", ok, target)

    for c in ("1k", "10k", "100k"):
        vs(c, "cpu_us_per_msg", "epoll_echo", 1.03, what=f"server CPU µs/msg, {c}, vs raw epoll",
           target="≤ 1.03×")
        vs(c, "cpu_us_per_msg", "uv_echo", 1.0, what=f"server CPU µs/msg, {c}, vs libuv",
           target="≤ 1.0×")
    vs("1k", "user_us_per_msg", "epoll_echo", 1.3, what="server user CPU µs/msg, 1k, vs raw epoll",
       target="≤ 1.3×")
    vs("1k", "user_us_per_msg", "uv_echo", 1.0, what="server user CPU µs/msg, 1k, vs libuv",
       target="< 1.0×")
    vs("1k-p16", "cpu_us_per_msg", "epoll_echo", 1.05,
       what="server CPU µs/msg, 1k × pipeline 16, vs raw epoll", target="≤ 1.05×")
    vs("1k-c100-p16", "msgs_per_s", "epoll_echo", 0.97, better="higher",
       what="msgs/s, 100 conns × pipeline 16, vs raw epoll", target="≥ 0.97×")
    vs("1k-c100-p16", "msgs_per_s", "uv_echo", 1.0, better="higher",
       what="msgs/s, 100 conns × pipeline 16, vs libuv", target="≥ 1.0×")
    vs("1k", "p99_us", "epoll_echo", 1.05, what="p99 latency, 1k, vs raw epoll", target="≤ 1.05×")
    vs("churn", "msgs_per_s", "uv_echo", 1.0, better="higher",
       what="connections/s (connect, echo, close) vs libuv", target="≥ 1.0×")
    rss = med("aioloop", "idle10k", "rss_per_idle_conn_b")
    add("server RSS per idle connection (10,000 idle)",
        None if rss is None else f"{rss:.0f} B", rss is not None and rss <= 1024, "≤ 1 KiB")
    ts, uv = micro_figs.get("timer schedule+cancel+release"), micro_figs.get("libuv timer start+stop")
    if ts and uv:
        ok = ts / uv >= 1.0
        add("timers scheduled+cancelled/s (call_later: fresh clock read) vs libuv",
            f"{ts:.1f} M/s = {ts / uv:.2f}×" + ("" if ok else f" (gap {(1 - ts / uv) * 100:.0f}%)"),
            ok, "≥ 1.0×")
    ta = micro_figs.get("timer call_at+cancel+release (deadline from one clock read)")
    if ta and uv:
        ok = ta / uv >= 1.0
        add("timers scheduled+cancelled/s (call_at, deadline from one clock read) vs libuv",
            f"{ta:.1f} M/s = {ta / uv:.2f}×" + ("" if ok else f" (gap {(1 - ta / uv) * 100:.0f}%)"),
            ok, "≥ 1.0×")
    cs, ring = micro_figs.get("call_soon batch (N queued, one run)"), \
        micro_figs.get("plain ring batch (N queued, one run)")
    if cs and ring:
        ok = cs / ring >= 0.5
        add("call_soon callbacks/s vs a plain function-pointer ring",
            f"{cs:.1f} M/s = {cs / ring:.2f}×" + ("" if ok else f" (gap {(0.5 - cs / ring) / 0.5 * 100:.0f}%)"),
            ok, "≥ 0.5×")
    for case, a in allocs.items():
        add(f"heap allocations per echoed message, steady state ({case})",
            None if a is None else f"{a:.4f}", a is not None and a < 0.001, "0")
    return rows


def targets_md(rows):
    lines = ["\n### Targets (issue 5)\n", "| figure | this run | target | |", "|---|---|---|---|"]
    lines += [f"| {w} | {v} | {t} | {ok} |" for w, v, t, ok in rows]
    return "\n".join(lines) + "\n"


def micro_md(figs):
    if not figs:
        return ""
    lines = ["\n### Loop micro-benchmarks (M operations/s, median; bench_loop vs "
             "bench/micro/reference.c, alternating in this run)\n", "| figure | M/s |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in figs.items()]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke: 1 round, 1 s; cases 1k,100k,churn,tls-1k unless --cases")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--servers", default="")
    ap.add_argument("--server", action="append", default=[], metavar="NAME=CMD")
    ap.add_argument("--tls-server", action="append", default=[], metavar="NAME=CMD",
                    help="a server's TLS command; {tls_cert} and {tls_key} stand for the files")
    ap.add_argument("--out", default=os.path.join(BUILD, "results"))
    ap.add_argument("--docs", action="store_true",
                    help="rewrite docs/PERFORMANCE.md (implies --micro)")
    ap.add_argument("--micro", action="store_true",
                    help="also the loop micro-benchmarks, allocations per message, and the "
                         "targets table")
    ap.add_argument("--bindings", action="store_true",
                    help="also the Rust, Go and Lua echo servers (builds them)")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.duration, a.warmup = 1, 1, 0.3
        if a.cases == ",".join(CASES):
            a.cases = "1k,100k,churn,tls-1k"
    cases = [c for c in a.cases.split(",") if c]
    for c in cases:
        if c not in CASES:
            sys.exit(f"unknown case {c}; known: {', '.join(CASES)}")
    with_uv = have_pkg("libuv")
    if not with_uv:
        log("libuv not found (apt-get install libuv1-dev): uv_echo is left out")
    with_tls = have_pkg("openssl") and shutil.which("openssl") is not None
    if not with_tls and any(CASES[c][5] for c in cases):
        log("OpenSSL (libssl-dev and the openssl command) not found: TLS cases are left out")
        cases = [c for c in cases if not CASES[c][5]]
    build(with_uv, with_tls)
    servers = default_servers()
    if not with_uv:
        servers.pop("uv_echo")
    if not with_tls:
        servers.pop("epoll_tls_echo")
    if not lib_has_tls():
        log("libaioloop was built without TLS: aioloop shows n/a in the TLS cases")
        servers["aioloop"]["tls"] = None
    if a.bindings:
        for name, cmd in build_bindings().items():
            # Go's crypto/tls is the TLS yardstick on the Go side; the bindings' echo
            # servers take no certificate.
            servers[name] = {"plain": cmd, "tls": cmd + TLS_ARGS if name == "go-net" else None}
    for spec in a.server:
        name, _, cmd = spec.partition("=")
        servers.setdefault(name, {"plain": None, "tls": None})["plain"] = cmd.split()
    for spec in a.tls_server:
        name, _, cmd = spec.partition("=")
        servers.setdefault(name, {"plain": None, "tls": None})["tls"] = cmd.split()
    if a.servers:
        servers = {k: v for k, v in servers.items() if k in a.servers.split(",")}
    if os.cpu_count() < 2:
        global CLIENT_CPU
        CLIENT_CPU = SERVER_CPU
    os.makedirs(a.out, exist_ok=True)
    stamp = datetime.datetime.utcnow().strftime("%Y%m%d-%H%M%S")
    raw = os.path.join(a.out, f"results-{stamp}.jsonl")
    results = []
    # The throwaway certificate and key live in a temporary directory for this run only.
    want_tls = any(CASES[c][5] for c in cases) or ((a.micro or a.docs) and with_tls)
    tmp = tempfile.mkdtemp(prefix="aioloop-bench-tls-") if want_tls else None
    try:
        tls_files = make_cert(tmp) if tmp else None
        with open(raw, "w") as f:
            for rep in range(a.reps):
                for case in cases:
                    tls = CASES[case][5]
                    for name, spec in servers.items():
                        cmd = spec["tls" if tls else "plain"]
                        if cmd is None:
                            continue
                        try:
                            r = run_one(name, cmd, case, a.duration, a.warmup, tls_files)
                        except Exception as e:  # a server that fails to start is a result too
                            r = {"server": name, "case": case, "exit": -1, "stderr": str(e)}
                        r["rep"] = rep
                        results.append(r)
                        f.write(json.dumps(r) + "\n")
                        f.flush()
                        log(f"  {name:14} {case:12} rep={rep} "
                            f"{r.get('msgs_per_s', 0):>10,.0f}/s  cpu/msg "
                            f"{r.get('cpu_us_per_msg', float('nan')):.2f} us  errors "
                            f"{r.get('errors', '?')}  exit {r.get('exit')}")
        micro_figs, allocs = {}, {}
        if a.micro or a.docs:
            log("micro-benchmarks (bench_loop vs reference, alternating)")
            micro_figs = micro(max(1, a.reps))
            aio = servers.get("aioloop", {})
            for case in ("1k", "tls-1k"):
                cmd = aio.get("tls" if CASES[case][5] else "plain")
                if cmd and (not CASES[case][5] or tls_files):
                    allocs[case] = allocs_per_msg(cmd, case, tls_files)
                    log(f"  allocations per message, {case}: {allocs[case]}")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    head = (f"Echo benchmark, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC. Machine: {machine()}.\n"
            f"Servers on CPU {SERVER_CPU}, loadgen on CPU {CLIENT_CPU}; {a.duration:g} s measured "
            f"after {a.warmup:g} s warm-up; median of {a.reps}.\n"
            f"Command: `python3 bench/run.py {' '.join(sys.argv[1:])}`\n")
    md = head
    if a.micro or a.docs:
        md += targets_md(target_rows(results, micro_figs, allocs)) + micro_md(micro_figs)
    md += table(results, servers, cases) + tls_vs_plain(results, servers, cases)
    chart = os.path.join(a.out, f"cpu-per-msg-{stamp}.svg")
    svg_chart(results, list(servers), cases, chart)
    print(md)
    log(f"raw results: {raw}\nchart: {chart}")
    if a.docs:
        docs = os.path.join(ROOT, "docs")
        os.makedirs(docs, exist_ok=True)
        shutil.copy(chart, os.path.join(docs, "cpu-per-msg.svg"))
        with open(os.path.join(docs, "PERFORMANCE.md"), "w") as f:
            f.write("# Performance\n\n" + md + "\n![server CPU per message](cpu-per-msg.svg)\n")
            # The hand-written part: what the misses are, what the profile shows, history.
            notes = os.path.join(ROOT, "bench", "PERFORMANCE-NOTES.md")
            if os.path.exists(notes):
                with open(notes) as n:
                    f.write("\n" + n.read())
    bad = [r for r in results if r.get("exit") != 0]
    if bad:
        log(f"{len(bad)} run(s) failed: " + "; ".join(f"{r['server']}/{r['case']}: "
                                                     f"{r.get('stderr', '')[:120]}" for r in bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
