#!/usr/bin/env python3
"""Cross-language conformance runner for libaioloop (Python 3 stdlib only).

    python3 tests/conformance/run.py [--build DIR] [--only IMPL,...] [-k SUBSTR]
                                     [--record] [-v] [-j N]

For every scenario in tests/conformance/scenarios/*.json and every implementation of the
scenario server (asyncio = the oracle, c, lua5.4, luajit, go, rust), starts the server on a
loopback port (or Unix socket), runs the scenario's client script against it, and compares
the normalised outcome (server callback trace + bytes the client received) with asyncio's.
Differences listed in divergences.json are accepted (reported, not failed). Prints a table
and "N passed, N failed"; exits 1 on any unaccepted difference. --record rewrites each
scenario's "expect" block from the asyncio run (the oracle is also checked against it).
Scenarios with "tls": true run over TLS with a throwaway certificate (see README.md, "TLS").
"""
import argparse
import concurrent.futures
import glob
import hashlib
import json
import os
import select
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
BLOCK = bytes(((i * 131) + (i >> 9)) & 0xFF for i in range(131072))
SERVER_EXIT_TIMEOUT = 15.0
IO_TIMEOUT = 10.0


def gen(n):
    return (BLOCK * (n // len(BLOCK) + 1))[:n]


# ---------------------------------------------------------------------------------------
# implementations

def find_oracle_python():
    env = os.environ.get("AIOL_CONF_ORACLE")
    if env:
        return env
    cands = [sys.executable]
    for v in ("3.13", "3.12"):
        cands += glob.glob(os.path.expanduser("~/.pyenv/versions/%s*/bin/python%s" % (v, v)))
        w = shutil.which("python" + v)
        if w:
            cands.append(w)
    best, best_v = sys.executable, sys.version_info[:2]
    for c in cands:
        try:
            out = subprocess.run([c, "-c", "import sys;print(sys.version_info[0],sys.version_info[1])"],
                                 capture_output=True, text=True, timeout=10)
            v = tuple(int(x) for x in out.stdout.split())
        except Exception:
            continue
        if len(v) == 2 and v > best_v:
            best, best_v = c, v
    return best


def setup_impls(build, only, workdir):
    """name -> (argv prefix, env) or name -> 'skip: reason'."""
    impls = {}
    py = find_oracle_python()
    impls["asyncio"] = ([py, os.path.join(HERE, "server_asyncio.py")], {})
    libdir = os.path.join(build, "lib")
    # C
    exe = os.path.join(workdir, "server_c")
    cc = os.environ.get("CC", "cc")
    r = subprocess.run([cc, "-std=c99", "-O1", "-Wall", "-o", exe, os.path.join(HERE, "server_c.c"),
                        "-I", os.path.join(SRC, "include"), "-L", libdir, "-laioloop",
                        "-Wl,-rpath," + os.path.abspath(libdir)], capture_output=True, text=True)
    impls["c"] = ([exe], {}) if r.returncode == 0 else "skip: cc failed: " + r.stderr[-500:]
    # Lua
    for name, interp, sub in (("lua5.4", "lua5.4", "5.4"), ("luajit", "luajit", "luajit")):
        mod = os.path.join(build, "bindings", "lua", sub, "aioloop.so")
        if not shutil.which(interp):
            impls[name] = "skip: %s not installed" % interp
        elif not os.path.exists(mod):
            impls[name] = "skip: %s not built" % mod
        else:
            impls[name] = ([interp, os.path.join(HERE, "server.lua")],
                           {"LUA_CPATH": os.path.join(build, "bindings", "lua", sub, "?.so")})
    pkg_env = {"PKG_CONFIG_PATH": os.path.abspath(os.path.join(build, "meson-uninstalled")),
               "LD_LIBRARY_PATH": os.path.abspath(libdir)}
    # Go
    if os.path.exists(os.path.join(HERE, "go", "go.mod")) and (not only or "go" in only):
        if shutil.which("go"):
            gexe = os.path.join(workdir, "server_go")
            r = subprocess.run(["go", "build", "-o", gexe, "."], cwd=os.path.join(HERE, "go"),
                               env=dict(os.environ, **pkg_env), capture_output=True, text=True)
            impls["go"] = ([gexe], pkg_env) if r.returncode == 0 else "skip: go build failed: " + r.stderr[-800:]
        else:
            impls["go"] = "skip: go not installed"
    # Rust
    if os.path.exists(os.path.join(HERE, "rust", "Cargo.toml")) and (not only or "rust" in only):
        if shutil.which("cargo"):
            tdir = os.path.join(build, "conformance-rust-target")
            r = subprocess.run(["cargo", "build", "--release", "--quiet", "--target-dir", tdir],
                               cwd=os.path.join(HERE, "rust"), env=dict(os.environ, **pkg_env),
                               capture_output=True, text=True)
            rexe = os.path.join(tdir, "release", "conformance-server")
            impls["rust"] = ([rexe], pkg_env) if r.returncode == 0 else "skip: cargo build failed: " + r.stderr[-800:]
        else:
            impls["rust"] = "skip: cargo not installed"
    if only:
        impls = {k: v for k, v in impls.items() if k in only or k == "asyncio"}
    return impls


# ---------------------------------------------------------------------------------------
# the client script

class Client:
    def __init__(self, family, addr):
        self.family, self.addr = family, addr
        self.sock = None
        self.received = bytearray()
        self.end = "open"
        self.notes = []
        self.sendq = []
        self.sender = None
        self.send_error = None

    def connect(self, rcvbuf=None, plain=False):
        s = socket.socket(self.family, socket.SOCK_STREAM)
        if rcvbuf:  # a fixed small receive buffer: no autotuning, so pauses are certain
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(IO_TIMEOUT)
        s.connect(self.addr)
        self.sock = s

    def _sender(self, items):
        try:
            for kind, data in items:
                if kind == "send":
                    self.sock.sendall(data)
                elif kind == "shut_wr":
                    self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.send_error = e

    def flush_sends(self):
        """Start the queued sends/shutdowns on a thread (so reads can run meanwhile)."""
        if self.sendq:
            self.wait_sent()
            items, self.sendq = self.sendq, []
            self.sender = threading.Thread(target=self._sender, args=(items,), daemon=True)
            self.sender.start()

    def wait_sent(self):
        if self.sender:
            self.sender.join(IO_TIMEOUT * 2)
            if self.sender.is_alive():
                self.notes.append("send-stuck")
            self.sender = None

    def sleep(self, ms):
        time.sleep(ms / 1000.0)

    def close_notify(self):
        raise ValueError("close_notify is a TLS client op (the scenario needs \"tls\": true)")

    def read(self, until=None, timeout_ms=None):
        if timeout_ms:
            self.sock.settimeout(timeout_ms / 1000.0)
        while until is None or len(self.received) < until:
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                self.end = "reset"
                return
            except socket.timeout:
                self.end = "open"
                self.notes.append("read-timeout")
                return
            if not chunk:
                self.end = "eof"
                return
            self.received += chunk

    def run(self, ops, proc):
        for op in ops:
            o = op["op"]
            if o != "send" and o != "shut_wr":
                self.flush_sends()
            if o == "connect":
                self.connect(op.get("rcvbuf"), op.get("plain", False))
            elif o == "send":
                self.sendq.append(("send", op["data"].encode() if "data" in op else gen(op["gen"])))
            elif o == "shut_wr":
                self.sendq.append(("shut_wr", None))
            elif o == "wait_sent":
                self.wait_sent()
            elif o == "read":
                self.read(op.get("until"), op.get("timeout_ms"))
            elif o == "sleep":
                self.sleep(op["ms"])
            elif o == "close_notify":
                self.close_notify()
            elif o == "reset":
                self.wait_sent()
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.sock.close()
                self.sock = None
                self.end = "reset-by-client"
            elif o == "close":
                self.wait_sent()
                self.sock.close()
                self.sock = None
            elif o == "wait_server_exit":
                try:
                    proc.wait(SERVER_EXIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.notes.append("server-did-not-exit")
            elif o == "expect_refused":
                s = socket.socket(self.family, socket.SOCK_STREAM)
                s.settimeout(IO_TIMEOUT)
                try:
                    s.connect(self.addr)
                    self.notes.append("connect:accepted")
                except ConnectionRefusedError:
                    self.notes.append("connect:refused")
                except FileNotFoundError:  # Unix socket path unlinked by close()
                    self.notes.append("connect:no-such-path")
                except OSError as e:
                    self.notes.append("connect:" + type(e).__name__)
                finally:
                    s.close()
            else:
                raise ValueError("unknown client op %r" % o)
        self.flush_sends()
        self.wait_sent()
        if self.sock:
            self.sock.close()


# ---------------------------------------------------------------------------------------
# the TLS client (scenarios with "tls": true)

class TlsClient(Client):
    """The same client script over TLS, single-threaded: an ssl.SSLObject over two
    MemoryBIOs (as asyncio's sslproto drives it) pumped with select(), because one SSL
    object must not be used by two threads (the plain client's sender thread).

    Sends, close_notify and shut_wr are queued in order and make progress whenever the
    script blocks (read, sleep, wait_sent, reset, close); reads happen only in `read`, so
    a `sleep` is a client that writes but does not read. `connect` with "plain": true
    makes a raw TCP connection (no handshake): its sends go out as they are.

    Outcome `end`: `close_notify` (the server's TLS close_notify), `eof` (TCP EOF without
    close_notify; on a plain connection, EOF), `reset`, `tls-error:REASON`, `open`,
    `reset-by-client`."""

    WIRE_HIGH = 256 * 1024  # ciphertext queued before the client stops encrypting more

    def __init__(self, family, addr, cafile):
        super().__init__(family, addr)
        self.ctx = ssl.create_default_context(cafile=cafile)  # trusts the run's certificate
        self.obj = None      # ssl.SSLObject; None on a plain connection
        self.wire = bytearray()  # bytes for the socket (ciphertext, or raw on plain)
        self.peer_eof = False
        self.done = False    # the read side ended (end is set)

    # -- plumbing ---------------------------------------------------------------------
    def _drain_bio(self):
        if self.obj is not None:
            self.wire += self.outgoing.read()

    def _fill_wire(self):
        """Moves queued sends into the wire while it is short; shut_wr waits for it."""
        while self.sendq and len(self.wire) < self.WIRE_HIGH:
            kind, data = self.sendq[0]
            if kind == "send":
                data = memoryview(data)  # slices without copying the rest of a large send
                chunk, rest = data[:65536], data[65536:]
                if self.obj is not None:
                    self.obj.write(chunk)
                    self._drain_bio()
                else:
                    self.wire += chunk
                if rest:
                    self.sendq[0] = (kind, rest)
                    continue
            elif kind == "close_notify":
                try:
                    self.obj.unwrap()  # sends close_notify; the peer's comes later
                except ssl.SSLWantReadError:
                    pass
                self._drain_bio()
            elif kind == "shut_wr":
                if self.wire:
                    return
                self.sock.shutdown(socket.SHUT_WR)
            self.sendq.pop(0)

    def _on_bytes(self, data):
        if self.obj is None:
            if data:
                self.received += data
            else:
                self.end, self.done = "eof", True
            return
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
        while not self.done:
            try:
                chunk = self.obj.read(1 << 20)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.end, self.done = "close_notify", True
            except ssl.SSLEOFError:
                self.end, self.done = "eof", True
            except ssl.SSLError as e:
                self.end, self.done = "tls-error:%s" % (e.reason or type(e).__name__), True
            else:
                if not chunk:
                    self.end, self.done = "close_notify", True
                self.received += chunk
        self._drain_bio()

    def pump(self, reading, until, seconds):
        """Runs the socket until until() or for `seconds`; False on timeout."""
        end = time.monotonic() + seconds
        while True:
            if self.send_error is None:
                try:
                    self._fill_wire()
                except OSError as e:
                    self.send_error = e
            if until():
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            rd = reading and not self.done and not self.peer_eof
            wr = bool(self.wire) and self.send_error is None
            r, w, _ = select.select([self.sock] if rd else [], [self.sock] if wr else [], [],
                                    min(left, 0.05))
            if w:
                try:
                    n = self.sock.send(self.wire)
                    del self.wire[:n]
                except BlockingIOError:
                    pass
                except OSError as e:  # the server reset or closed: nothing more goes out
                    self.send_error = e
                    self.wire.clear()
                    self.sendq.clear()
            if r:
                try:
                    data = self.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    self.end, self.done = "reset", True
                    continue
                if not data:
                    self.peer_eof = True
                self._on_bytes(data)

    def _idle(self):
        return not self.sendq and not self.wire or self.send_error is not None

    # -- ops --------------------------------------------------------------------------
    def connect(self, rcvbuf=None, plain=False):
        if self.sock is not None or self.end != "open":  # how the previous connection ended
            self.notes.append("conn-end:" + self.end)
        super().connect(rcvbuf)
        self.sock.setblocking(False)
        self.wire.clear()
        self.obj, self.peer_eof, self.done, self.end = None, False, False, "open"
        if plain:
            return
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = self.ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        state = {}

        def handshake():
            try:
                self.obj.do_handshake()
                state["ok"] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                state["err"] = e.reason or type(e).__name__
            self._drain_bio()
            return bool(state) or self.done

        # the handshake by hand: send each flight, feed what arrives, try again
        deadline = time.monotonic() + IO_TIMEOUT
        while not handshake() and time.monotonic() < deadline:
            r, w, _ = select.select([self.sock], [self.sock] if self.wire else [], [], 0.05)
            if w:
                try:
                    del self.wire[:self.sock.send(self.wire)]
                except OSError:
                    pass
            if r:
                try:
                    data = self.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    self.end, self.done = "reset", True
                    continue
                if data:
                    self.incoming.write(data)
                else:
                    self.incoming.write_eof()
                    self.peer_eof = True
        if "err" in state or not state:
            why = state.get("err") or (self.end if self.done else "eof" if self.peer_eof else "timeout")
            self.notes.append("handshake-failed:%s" % why)
            self.done = True
            if self.end == "open" and self.peer_eof:
                self.end = "eof"
        else:
            self.pump(False, lambda: not self.wire, IO_TIMEOUT)  # the last flight goes out

    def flush_sends(self):
        pass  # queued sends progress in pump()

    def close_notify(self):
        self.sendq.append(("close_notify", None))

    def wait_sent(self):
        if self.sock is not None and not self.pump(False, self._idle, IO_TIMEOUT * 2):
            self.notes.append("send-stuck")

    def sleep(self, ms):
        self.pump(False, lambda: False, ms / 1000.0)

    def read(self, until=None, timeout_ms=None):
        ok = self.pump(True, lambda: self.done or (until is not None and len(self.received) >= until),
                       (timeout_ms or IO_TIMEOUT * 1000) / 1000.0)
        if not ok:
            self.end = "open"
            self.notes.append("read-timeout")


# ---------------------------------------------------------------------------------------
# one run and normalisation

def normalise_trace(lines, flow_mode, data_mode="exact"):
    events, pauses, resumes = [], 0, 0
    for ln in lines:
        if data_mode == "any" and ln.startswith("data "):
            ln = "data 0"
        if ln == "pause":
            pauses += 1
            continue
        if ln == "resume":
            resumes += 1
            continue
        if ln.startswith("data ") and events and events[-1].startswith("data "):
            events[-1] = "data %d" % (int(events[-1][5:]) + int(ln[5:]))
            continue
        events.append(ln)
    if data_mode == "any":
        events = ["data (any)" if e.startswith("data ") else e for e in events]
    if flow_mode == "exact":
        events.append("flow pauses=%d resumes=%d" % (pauses, resumes))
    elif flow_mode != "ignore":
        if pauses == 0 and resumes == 0:
            cls = "none"
        elif pauses >= 1 and resumes == pauses:
            cls = "paused,resumed"
        elif pauses >= 1 and resumes == pauses - 1:
            cls = "paused,not-resumed"
        else:
            cls = "bad pauses=%d resumes=%d" % (pauses, resumes)
        events.append("flow " + cls)
    return events


def make_tls_cert(tmpdir):
    """A throwaway self-signed certificate for localhost / 127.0.0.1 (once per run)."""
    cert, key = os.path.join(tmpdir, "tls-cert.pem"), os.path.join(tmpdir, "tls-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


# A server that cannot serve TLS (binding without TLS, library built without it) answers a
# tls_cert param with this first line instead of "listening ..." and exits with status 77:
# the runner reports the pair as "no-tls" (listed, not passed, not failed). Anything else --
# ignoring tls_cert and serving plain TCP included -- is an ordinary outcome, compared.
TLS_UNSUPPORTED = "unsupported tls"
TLS_UNSUPPORTED_EXIT = 77


def run_one(impl_argv, impl_env, sc, tmpdir, tls=None):
    srv = sc["server"]
    unix = sc.get("transport") == "unix"
    if unix:
        path = os.path.join(tmpdir, "s-%s-%d.sock" % (sc["name"][:40], threading.get_ident() % 100000))
        addr_arg, family, addr = "unix:" + path, socket.AF_UNIX, path
    else:
        addr_arg, family = "0", socket.AF_INET
    params = sorted(srv.get("params", {}).items())
    if sc.get("tls"):
        params += [("tls_cert", tls[0]), ("tls_key", tls[1])]
    argv = impl_argv + [srv["behaviour"], addr_arg] + ["%s=%s" % kv for kv in params]
    env = dict(os.environ, **impl_env)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    # Read the first line unbuffered: communicate() later reads the fd directly, so any
    # bytes a buffered readline() had swallowed would be lost.
    raw = b""
    while not raw.endswith(b"\n"):
        ch = os.read(proc.stdout.fileno(), 1)
        if not ch:
            break
        raw += ch
    first = raw.decode(errors="replace").strip()
    result = {"trace": [], "client": {}, "stderr": ""}
    if sc.get("tls") and first == TLS_UNSUPPORTED:
        try:
            rc = proc.wait(SERVER_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        result["unsupported"] = "server reported %r, exit %d" % (first, rc)
        if rc != TLS_UNSUPPORTED_EXIT:
            result["trace"] = ["unsupported-tls-but-exit %d" % rc]
            result.pop("unsupported")
        result["stderr"] = proc.stderr.read()[-2000:]
        return result
    if not first.startswith("listening"):
        proc.kill()
        _, err = proc.communicate()
        result["trace"] = ["no-listen: " + first]
        result["stderr"] = err[-2000:]
        return result
    if not unix:
        addr = ("127.0.0.1", int(first.split()[1]))
    cl = TlsClient(family, addr, tls[0]) if sc.get("tls") else Client(family, addr)
    try:
        cl.run(sc["client"], proc)
    except Exception as e:  # the client failing is an outcome too
        cl.notes.append("client-error:" + type(e).__name__ + ":" + str(e)[:80])
        try:
            if cl.sock:
                cl.sock.close()
        except OSError:
            pass
    try:
        out, err = proc.communicate(timeout=SERVER_EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        out += "\nserver-timeout\n"
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    if proc.returncode not in (0, None) and "server-timeout" not in lines:
        lines.append("exit %d" % proc.returncode)
    cmp = sc.get("compare", {})
    result["trace"] = normalise_trace(lines, cmp.get("flow", "class"), cmp.get("data", "exact"))
    c = {"end": cl.end, "notes": cl.notes}
    mode = cmp.get("client", "exact")
    if mode in ("exact", "len"):
        c["len"] = len(cl.received)
    if mode == "exact":
        c["sha256"] = hashlib.sha256(cl.received).hexdigest()[:16]
    if mode == "prefix":
        c["prefix_ok"] = bytes(cl.received) == gen(len(cl.received))
    if not cmp.get("client_end", True):
        c.pop("end")
    result["client"] = c
    result["stderr"] = err[-2000:]
    return result


def outcome(r):
    return {"trace": r["trace"], "client": r["client"]}


def diff(a, b):
    lines = []
    if a["trace"] != b["trace"]:
        lines.append("  trace asyncio: %s" % " | ".join(a["trace"]))
        lines.append("  trace this   : %s" % " | ".join(b["trace"]))
    if a["client"] != b["client"]:
        lines.append("  client asyncio: %s" % json.dumps(a["client"], sort_keys=True))
        lines.append("  client this   : %s" % json.dumps(b["client"], sort_keys=True))
    return "\n".join(lines)


def dump_scenario(sc):
    """A scenario as readable JSON: one client op, one expectation part per line."""
    parts = []
    order = ["name", "description", "transport", "tls", "server", "client", "compare", "skip", "expect"]
    keys = [k for k in order if k in sc] + sorted(k for k in sc if k not in order and not k.startswith("_"))
    for k in keys:
        v = sc[k]
        if k == "client":
            body = "[\n    " + ",\n    ".join(json.dumps(op) for op in v) + "\n  ]"
        elif k == "expect":
            body = "{\n    " + ",\n    ".join("%s: %s" % (json.dumps(ek), json.dumps(ev, sort_keys=True))
                                            for ek, ev in v.items()) + "\n  }"
        else:
            body = json.dumps(v)
        parts.append("  %s: %s" % (json.dumps(k), body))
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("AIOL_BUILD_DIR", os.path.join(SRC, "build")))
    ap.add_argument("--only", default="")
    ap.add_argument("-k", default="")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("-j", type=int, default=min(8, os.cpu_count() or 4))
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    only = set(x for x in args.only.split(",") if x)

    files = sorted(glob.glob(os.path.join(HERE, "scenarios", "*.json")))
    scenarios = []
    for f in files:
        with open(f) as fh:
            sc = json.load(fh)
        sc["_file"] = f
        if sc["name"] != os.path.basename(f)[:-5]:
            print("scenario %s: name does not match file" % f)
            return 2
        if args.k in sc["name"]:
            scenarios.append(sc)
    with open(os.path.join(HERE, "divergences.json")) as fh:
        accepted = {(d["scenario"], d["impl"]): d for d in json.load(fh)["divergences"]}

    tmpdir = tempfile.mkdtemp(prefix="aiol-conf-")
    t0 = time.time()
    impls = setup_impls(build, only, tmpdir)
    runnable = {k: v for k, v in impls.items() if not isinstance(v, str)}
    for k, v in impls.items():
        if isinstance(v, str):
            print("%-8s %s" % (k, v))
    names = list(runnable)
    try:
        tls = make_tls_cert(tmpdir) if any(sc.get("tls") for sc in scenarios) else None
    except (OSError, subprocess.CalledProcessError) as e:  # the TLS scenarios need the CLI
        print("cannot make the TLS certificate with the openssl CLI: %s %s" % (e, getattr(e, "stderr", "") or ""))
        return 2

    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(args.j) as ex:
        for sc in scenarios:
            for impl in names:
                if impl in sc.get("skip", {}):
                    continue
                argv, env = runnable[impl]
                jobs[(sc["name"], impl)] = ex.submit(run_one, argv, env, sc, tmpdir, tls)
    res = {k: f.result() for k, f in jobs.items()}

    passed = failed = unsupported = 0
    rows, details = [], []
    for sc in scenarios:
        n = sc["name"]
        oracle = outcome(res[(n, "asyncio")])
        cells = []
        for impl in names:
            if impl in sc.get("skip", {}):
                cells.append("n/a")
                continue
            if "unsupported" in res[(n, impl)] and impl != "asyncio":
                cells.append("no-tls")
                unsupported += 1
                details.append("%s / %s: n/a, TLS not supported (%s)" % (n, impl, res[(n, impl)]["unsupported"]))
                continue
            got = outcome(res[(n, impl)])
            ref = oracle
            if impl == "asyncio":
                if args.record:
                    sc["expect"] = got
                    with open(sc["_file"], "w") as fh:
                        fh.write(dump_scenario(sc))
                ref = sc.get("expect", got)
            same = got == ref
            acc = accepted.get((n, impl)) or (accepted.get((n, "*")) if impl != "asyncio" else None)
            # An entry that gives the divergent outcome ("trace", "client") accepts only that
            # outcome: a different failure of the same scenario is not covered by it.
            acc_ok = acc and all(got[k] == acc[k] for k in ("trace", "client") if k in acc)
            if same:
                cells.append("same")
                passed += 1
                if acc:
                    details.append("%s / %s: listed in divergences.json but now the same (remove it)" % (n, impl))
            elif acc_ok:
                cells.append("accepted")
                passed += 1
                details.append("%s / %s: accepted divergence: %s\n%s" % (n, impl, acc["reason"], diff(ref, got)))
            else:
                cells.append("DIFFERS")
                failed += 1
                what = "expect block" if impl == "asyncio" else "asyncio"
                if acc:
                    what += " (and from the outcome divergences.json accepts)"
                details.append("%s / %s: DIFFERS from %s\n%s%s" % (n, impl, what, diff(ref, got),
                               ("\n  stderr: " + res[(n, impl)]["stderr"].strip()[-600:]) if res[(n, impl)]["stderr"].strip() else ""))
            if args.v:
                print("%s/%s: %s %s" % (n, impl, got["trace"], got["client"]))
        rows.append((n, cells))

    w = max(len(n) for n, _ in rows) if rows else 10
    print("%-*s  %s" % (w, "scenario", "  ".join("%-8s" % i for i in names)))
    for n, cells in rows:
        print("%-*s  %s" % (w, n, "  ".join("%-8s" % c for c in cells)))
    if details:
        print()
        print("\n".join(details))
    shutil.rmtree(tmpdir, ignore_errors=True)
    print()
    print("conformance: %d scenarios x %d implementations (%s) in %.1f s" % (
        len(scenarios), len(names), ", ".join(names), time.time() - t0))
    na = ", %d n/a (TLS unsupported)" % unsupported if unsupported else ""
    print("%d passed, %d failed%s" % (passed, failed, na))
    if not failed:  # the line scripts/test.sh's run_suite turns into the table's note
        print("ok conformance suite: %d passed, %d failed%s" % (passed, failed, na))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
