#!/usr/bin/env python3
"""The oracle: the conformance scenario server on CPython asyncio (stdlib only).

    server_asyncio.py BEHAVIOUR ADDR [key=value ...]

ADDR is a TCP port on 127.0.0.1 (0: ephemeral) or unix:PATH. Prints "listening PORT" (or
"listening unix"), then one line per protocol event (see README.md, "Trace lines"), and
exits once the server is closed and its connections are gone. Every other scenario server
(C, Lua, Go, Rust) implements exactly this behaviour menu.
"""
import asyncio
import os
import ssl
import sys

BLOCK = bytes(((i * 131) + (i >> 9)) & 0xFF for i in range(131072))


def gen(n):
    reps = n // len(BLOCK) + 1
    return (BLOCK * reps)[:n]


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Conn:
    """Shared bookkeeping: collapses data runs, classifies connection_lost."""

    def __init__(self, srv):
        self.srv = srv
        self.p = srv.params
        self.pending = 0
        self.aborted = False
        self.paused_reading = False
        self.total = 0
        self.t = None

    def flush(self):
        if self.pending:
            out("data %d" % self.pending)
            self.pending = 0

    def event(self, line):
        self.flush()
        out(line)

    # -- Protocol callbacks ---------------------------------------------------------
    def connection_made(self, t):
        self.t = t
        self.srv.live += 1  # counted here, not in factory(): a failed TLS handshake never ends
        self.event("made")
        p = self.p
        if "high" in p:
            t.set_write_buffer_limits(high=p["high"], low=p.get("low", p["high"] // 4))
        if p.get("close_server"):
            self.srv.close_server()
        b = self.srv.behaviour
        if b == "write_on_connect":
            t.write(gen(p.get("size", 0)))
            then = p.get("then", "none")
            if then == "close":
                t.close()
            elif then == "write_eof":
                t.write_eof()
            elif then == "abort":
                self.aborted = True
                t.abort()

    def on_data(self, data):
        if self.paused_reading:
            self.event("violation data_while_paused")
        self.pending += len(data)
        self.total += len(data)
        t, b, p = self.t, self.srv.behaviour, self.p
        if b in ("echo", "flow_echo", "buffered", "pause_reading", "write_eof_after_eof",
                 "keep_open_write_later"):
            t.write(bytes(data))
            if b == "pause_reading" and not self.paused_reading and self.total >= p.get("after", 0) \
                    and not getattr(self, "did_pause", False):
                self.did_pause = True
                self.paused_reading = True
                t.pause_reading()
                asyncio.get_running_loop().call_later(p.get("delay", 50) / 1000.0, self.resume)
        elif b == "close_on_data":
            if p.get("queue"):
                t.write(gen(p["queue"]))
            t.close()
        elif b == "abort_on_data":
            if p.get("queue"):
                t.write(gen(p["queue"]))
            self.aborted = True
            t.abort()

    def resume(self):
        self.paused_reading = False
        if not self.t.is_closing():
            self.t.resume_reading()

    def data_received(self, data):
        self.on_data(data)

    def eof_received(self):
        b, p = self.srv.behaviour, self.p
        if self.paused_reading:
            self.event("violation eof_while_paused")
        if b == "write_eof_after_eof":
            keep = True
        elif b == "keep_open_write_later":
            keep = True
        else:
            keep = bool(p.get("keep_open", 0))
        self.event("eof %s" % ("keep" if keep else "close"))
        t = self.t
        loop = asyncio.get_running_loop()
        if b == "write_eof_after_eof":
            t.write(gen(p.get("tail", 0)))
            t.write_eof()
            loop.call_later(p.get("delay", 50) / 1000.0, t.close)
        elif b == "keep_open_write_later":
            def later():
                t.write(gen(p.get("tail", 0)))
                t.close()
            loop.call_later(p.get("delay", 50) / 1000.0, later)
        elif keep:
            # keep_open with no plan: close after a delay so the run ends
            loop.call_later(p.get("delay", 50) / 1000.0, t.close)
        return keep

    def pause_writing(self):
        self.event("pause")
        if self.srv.behaviour == "flow_echo":
            self.t.pause_reading()

    def resume_writing(self):
        self.event("resume")
        if self.srv.behaviour == "flow_echo" and not self.t.is_closing():
            self.t.resume_reading()

    def connection_lost(self, exc):
        if exc is None:
            cls = "clean"
        elif isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            cls = "reset"
        else:
            cls = "error:" + type(exc).__name__
        if self.aborted and cls == "clean":
            cls = "aborted"  # asyncio passes None after abort(); libaioloop ECANCELED
        self.event("lost " + cls)
        self.srv.conn_lost()


class Plain(Conn, asyncio.Protocol):
    pass


class Buffered(Conn, asyncio.BufferedProtocol):
    def get_buffer(self, sizehint):
        if not hasattr(self, "buf"):
            self.buf = bytearray(self.p.get("bufsize", 16))
        return self.buf

    def buffer_updated(self, n):
        self.on_data(self.buf[:n])


class Srv:
    def __init__(self, behaviour, params):
        self.behaviour = behaviour
        self.params = params
        self.conns_left = params.get("conns", 1)
        self.live = 0
        self.closing = False
        self.done = None
        self.unix_path = None

    def close_server(self):
        if self.closing:
            return
        self.closing = True
        self.server.close()
        if self.unix_path and sys.version_info < (3, 13):
            # 3.13's create_unix_server(cleanup_socket=True) unlinks the path on close();
            # emulate that on older Pythons so the oracle stays the same.
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass
        asyncio.get_running_loop().create_task(self.wait())

    async def wait(self):
        await self.server.wait_closed()
        if sys.version_info < (3, 12):
            # 3.11's wait_closed returns at once after close(); 3.12+ waits for the
            # connections (gh-79033). Emulate the 3.12 rule on older Pythons.
            while self.live:
                await asyncio.sleep(0.01)
        out("wait_closed")
        self.done.set_result(None)

    def factory(self):
        self.conns_left -= 1
        return (Buffered if self.behaviour == "buffered" else Plain)(self)

    def conn_lost(self):
        self.live -= 1
        if self.conns_left <= 0:
            self.close_server()


async def main():
    behaviour, addr = sys.argv[1], sys.argv[2]
    params = {}
    for kv in sys.argv[3:]:
        k, v = kv.split("=", 1)
        params[k] = int(v) if v.lstrip("-").isdigit() else v
    srv = Srv(behaviour, params)
    loop = asyncio.get_running_loop()
    srv.done = loop.create_future()
    tls = {}
    if "tls_cert" in params:  # TLS: asyncio's SSL transport (sslproto) over the same socket
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(params["tls_cert"], params["tls_key"])
        tls["ssl"] = ctx
        if "handshake_timeout_ms" in params:  # else asyncio's default (60 s)
            tls["ssl_handshake_timeout"] = params["handshake_timeout_ms"] / 1000.0
    if addr.startswith("unix:"):
        srv.unix_path = addr[5:]
        srv.server = await loop.create_unix_server(srv.factory, srv.unix_path, **tls)
        out("listening unix")
    else:
        srv.server = await loop.create_server(srv.factory, "127.0.0.1", int(addr), **tls)
        out("listening %d" % srv.server.sockets[0].getsockname()[1])
    if behaviour == "close_now" or srv.conns_left <= 0:
        srv.close_server()
    loop.call_later(30, lambda: (out("watchdog"), os._exit(3)))
    await srv.done


asyncio.run(main())
