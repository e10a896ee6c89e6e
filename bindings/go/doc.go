// Package aioloop is the Go binding of libaioloop, a C event loop with asyncio's
// semantics: a Loop (BaseSelectorEventLoop) with call_soon/call_later timers and fd
// watchers, Servers and stream Transports driven by Protocol callbacks (asyncio Protocol
// and BufferedProtocol), over TCP and Unix sockets.
//
// # Model
//
// A Loop is run by one goroutine (Run locks it to its OS thread); every callback —
// CallSoon/CallLater functions, fd watchers, Protocol methods, Dial's done, WaitClosed —
// runs on that goroutine, one at a time, so protocol state needs no locking. Only Stop
// and CallSoonThreadsafe may be called from other goroutines; use CallSoonThreadsafe to
// hand work (a write, a shutdown) to the loop.
//
// Run returns only when Stop is called (or a callback panics): the Loop keeps a C hold
// for its whole life so that Stop and CallSoonThreadsafe are safe from any goroutine, and
// a hold keeps the loop alive. Close tears everything down (transports are aborted and
// see ConnectionLost(ErrCanceled)) and frees the loop.
//
// # Memory and callbacks
//
// The binding never stores Go pointers in C memory: each registration's user data is a
// runtime/cgo.Handle, deleted by the C destroy callback that ends it, exactly once.
// DataReceived's data slice is a zero-copy view of C memory, valid only during the call.
// A BufferedProtocol's buffers are pinned (runtime.Pinner) while the library may write
// into them.
//
// A panic in a callback is recovered at the C boundary: the connection it belongs to is
// aborted, the loop is stopped, and Run returns a *PanicError. It never unwinds through
// C.
//
// # Errors
//
// Failures are Errno values (the C library's negative codes). errors.Is maps them onto
// the standard errors: syscall.ECONNREFUSED and the other -errno codes,
// os.ErrDeadlineExceeded for ETIMEDOUT, net.ErrClosed for ErrClosed, context.Canceled
// for ErrCanceled.
//
// # TLS
//
// A TLSContext (NewServerTLS, NewServerTLSPEM, NewClientTLS) in ServerConfig.TLS or
// DialConfig.TLS serves or dials TLS (asyncio's SSL transports, over OpenSSL in the C
// library) with the same Protocol callbacks; ConnectionMade runs once the handshake is
// done. There is no half-close over TLS (WriteEOF is ErrState), and handshake failures
// are ErrTLS. Transport.ALPN, ServerName and PeerCertificate read the session.
//
// # Performance
//
// Run spends its life in one cgo call, which the Go runtime treats as a syscall holding a
// P. Without an idle P, the runtime's sysmon takes the loop's P away whenever the loop
// stays in C past its 20 µs tick (a long send, a wait for data), wakes another thread to
// hold it, and keeps waking every 20 µs itself; each callback then wins a P back. That
// costs up to a sixth of the server's CPU with 100 KiB messages when the process is
// pinned to one CPU (GOMAXPROCS 1). A program whose main work is a Loop should give the
// loop's thread a P of its own, as examples/echo_server does:
//
//	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
//
// For the same reason the loop passes through the Go scheduler every 5 ms while data
// arrives (a runtime.Gosched inside DataReceived/BufferUpdated dispatch).
//
// # Signals
//
// The Go runtime owns signal handling, so the C signal API is not exposed: use os/signal
// and CallSoonThreadsafe (see examples/echo_server).
//
// # Building
//
// The package uses cgo with "#cgo pkg-config: aioloop": set PKG_CONFIG_PATH to find
// aioloop.pc (for an uninstalled build, <builddir>/meson-uninstalled) and, at run time,
// LD_LIBRARY_PATH if the library is not installed.
package aioloop
