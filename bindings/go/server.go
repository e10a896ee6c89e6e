package aioloop

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"net"
	"time"
	"unsafe"
)

// ServerConfig says where a server listens.
type ServerConfig struct {
	Host      string // "" : all interfaces, every family (one socket each); resolved synchronously
	Port      int    // 0: an ephemeral port (read it back with Server.Addrs)
	UnixPath  string // set: a Unix socket at this path (a stale socket file is replaced, the path unlinked on close)
	Backlog   int    // 0: 100
	ReusePort bool   // SO_REUSEPORT

	// TLS: nil serves plain TCP; else TLS with this context (a NewServerTLS one).
	// ConnectionMade then runs once the handshake has completed.
	TLS                 *TLSContext
	TLSHandshakeTimeout time.Duration // 0: 60 s; a handshake not done by then closes the socket
	TLSShutdownTimeout  time.Duration // 0: 30 s; how long Close waits to flush close_notify
}

// Server is a listening server (asyncio Server). Loop goroutine only.
//
// The C server is freed by the binding: once Close was called and the last connection
// has gone (the binding registers its own wait_closed for this), or at Loop.Close for
// servers still open then. No finalizer is needed: the Loop keeps every live Server.
type Server struct {
	ptr     *C.aiol_server // nil once freed
	loop    *Loop
	factory func() Protocol
	closing bool // the internal wait_closed that frees ptr is registered
}

// Listen binds every address, listens and starts serving (asyncio create_server). For
// each accepted connection, factory returns its Protocol (nil refuses the connection:
// the socket is closed). If any address fails to bind, nothing is left open and the error
// is returned.
func (l *Loop) Listen(cfg ServerConfig, factory func() Protocol) (*Server, error) {
	if factory == nil {
		return nil, errNilFunc
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	if cfg.Port < 0 || cfg.Port > 65535 || cfg.TLSHandshakeTimeout < 0 || cfg.TLSShutdownTimeout < 0 {
		return nil, ErrInvalid
	}
	cc := C.aiol_server_config{size: C.size_t(unsafe.Sizeof(C.aiol_server_config{}))}
	tls, unlock, err := useTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cc.tls = tls
	cc.tls_handshake_timeout_ns = C.uint64_t(cfg.TLSHandshakeTimeout)
	cc.tls_shutdown_timeout_ns = C.uint64_t(cfg.TLSShutdownTimeout)
	if cfg.Host != "" {
		cc.host = C.CString(cfg.Host)
		defer C.free(unsafe.Pointer(cc.host))
	}
	if cfg.UnixPath != "" {
		cc.unix_path = C.CString(cfg.UnixPath)
		defer C.free(unsafe.Pointer(cc.unix_path))
	}
	cc.port = C.uint16_t(cfg.Port)
	cc.backlog = C.int(cfg.Backlog)
	if cfg.ReusePort {
		cc.reuse_port = 1
	}
	s := &Server{loop: l, factory: factory}
	h := newHandle(s) // factory_data; deleted by factory_destroy
	var sp *C.aiol_server
	if rc := C.aiolgo_server_start(l.ptr, &cc, C.uintptr_t(h), &sp); rc < 0 {
		deleteHandle(h)
		return nil, Errno(rc)
	}
	s.ptr = sp
	l.servers[s] = struct{}{}
	return s, nil
}

// accept runs the factory for one connection; 0 refuses it.
func (s *Server) accept() (h C.uintptr_t) {
	defer s.loop.recoverPanic(nil)
	p := s.factory()
	if p == nil {
		return 0
	}
	return C.uintptr_t(newConn(s.loop, p).newHandle())
}

func (s *Server) free() {
	if s.ptr != nil {
		C.aiol_server_free(s.ptr)
		s.ptr = nil
		delete(s.loop.servers, s)
	}
}

// Close stops listening and closes the listening sockets; the factory never runs after
// it returns; live connections go on (see CloseClients). Idempotent.
func (s *Server) Close() error {
	if s.ptr == nil {
		return nil
	}
	if err := errorOf(C.aiol_server_close(s.ptr)); err != nil {
		return err
	}
	if !s.closing {
		h := newHandle(&waitEntry{server: s})
		if rc := C.aiolgo_server_wait_closed(s.ptr, C.uintptr_t(h)); rc < 0 {
			deleteHandle(h) // freed at Loop.Close instead
		} else {
			s.closing = true
		}
	}
	return nil
}

// CloseClients closes every connection of the server (flushing what is queued).
func (s *Server) CloseClients() error {
	if s.ptr == nil {
		return nil // freed: no connection is left
	}
	return errorOf(C.aiol_server_close_clients(s.ptr))
}

// AbortClients aborts every connection of the server.
func (s *Server) AbortClients() error {
	if s.ptr == nil {
		return nil
	}
	return errorOf(C.aiol_server_abort_clients(s.ptr))
}

// WaitClosed calls fn once, on the loop goroutine, after Close and after the last
// connection has gone (asyncio wait_closed); never inside this call.
func (s *Server) WaitClosed(fn func()) error {
	if fn == nil {
		return errNilFunc
	}
	if s.ptr == nil {
		// Already closed and drained (or the loop is closed).
		return s.loop.CallSoon(fn)
	}
	h := newHandle(&waitEntry{server: s, fn: fn})
	if rc := C.aiolgo_server_wait_closed(s.ptr, C.uintptr_t(h)); rc < 0 {
		deleteHandle(h)
		return Errno(rc)
	}
	return nil
}

// IsServing reports whether the server is accepting connections.
func (s *Server) IsServing() bool {
	return s.ptr != nil && C.aiol_server_is_serving(s.ptr) == 1
}

// Addrs returns the listening addresses (*net.TCPAddr or *net.UnixAddr); nil once
// closed.
func (s *Server) Addrs() []net.Addr {
	if s.ptr == nil {
		return nil
	}
	n := int(C.aiol_server_socket_count(s.ptr))
	var out []net.Addr
	for i := 0; i < n; i++ {
		var ss C.struct_sockaddr_storage
		sl := C.socklen_t(unsafe.Sizeof(ss))
		if C.aiol_server_sockname(s.ptr, C.int(i), &ss, &sl) == 0 {
			if a := sockaddrToAddr(&ss, sl); a != nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// waitEntry is a wait_closed registration; the C call has no destroy: the callback,
// which always runs exactly once (at the latest inside aiol_loop_close), deletes it.
type waitEntry struct {
	server *Server
	fn     func() // nil: the binding's own, which frees the server
}

func (e *waitEntry) run() {
	if e.fn == nil {
		e.server.free()
		return
	}
	defer e.server.loop.recoverPanic(nil)
	e.fn()
}
