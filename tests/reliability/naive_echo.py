#!/usr/bin/env python3
"""A deliberately naive echo server with echo_server's command line (RELIABILITY.md 4.6):
asyncio, writes in data_received with no flow control (no pause_reading when the peer
does not read). The hostile tests should FAIL against it (slow_readers: unbounded RSS),
which shows they can fail:  hostile.py slow_readers tests/reliability/naive_echo.py"""
import asyncio
import signal
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t

    def data_received(self, data):
        self.t.write(data)


async def main():
    host, port = '127.0.0.1', 0
    args = sys.argv[1:]
    if '--host' in args:
        host = args[args.index('--host') + 1]
    if '--port' in args:
        port = int(args[args.index('--port') + 1])
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Echo, host, port)
    print('listening on %s:%d' % srv.sockets[0].getsockname()[:2], flush=True)
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGINT, done.set)
    await done.wait()
    srv.close()


asyncio.run(main())
