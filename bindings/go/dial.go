package aioloop

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"time"
	"unsafe"
)

// DialConfig says where to connect.
type DialConfig struct {
	Host     string        // name or address; resolved off the loop thread
	Port     int           //
	UnixPath string        // set: connect to this Unix socket instead
	Timeout  time.Duration // 0: none; covers resolution, connect and the TLS handshake

	// TLS: nil for plain TCP; else TLS with this context (a NewClientTLS one).
	// ConnectionMade and done run once the handshake has completed; a failed handshake
	// (verification included) is done(nil, ErrTLS), a timed-out one done(nil, ErrTimedOut).
	TLS                 *TLSContext
	ServerHostname      string        // SNI and the name verified; "": Host
	TLSHandshakeTimeout time.Duration // 0: 60 s
	TLSShutdownTimeout  time.Duration // 0: 30 s; how long Close waits to flush close_notify
}

// DialHandle is a pending connection attempt.
type DialHandle struct {
	h *C.aiol_handle // released when done runs
}

// Cancel abandons the attempt: done then runs with ErrCanceled (never inside this call).
// It returns true if this call prevented the connection, false if done has run or is
// already on its way. Loop goroutine only.
func (d *DialHandle) Cancel() bool {
	if d == nil || d.h == nil {
		return false
	}
	return C.aiol_handle_cancel(d.h) == 1
}

// Dial connects to cfg with protocol p (asyncio create_connection). On success,
// p.ConnectionMade(t) runs and then done(t, nil); on failure done(nil, err) runs and p
// sees no callback at all. done is never called inside Dial; it may be nil. Only argument
// and loop-state errors (ErrInvalid, ErrClosed, ErrThread, ...) are returned directly, and
// then done never runs. errors.Is(err, syscall.ECONNREFUSED) and
// errors.Is(err, os.ErrDeadlineExceeded) work on done's error.
func (l *Loop) Dial(cfg DialConfig, p Protocol, done func(*Transport, error)) (*DialHandle, error) {
	if p == nil {
		return nil, ErrInvalid
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	if cfg.Port < 0 || cfg.Port > 65535 || cfg.Timeout < 0 || cfg.TLSHandshakeTimeout < 0 ||
		cfg.TLSShutdownTimeout < 0 {
		return nil, ErrInvalid
	}
	cc := C.aiol_connect_config{size: C.size_t(unsafe.Sizeof(C.aiol_connect_config{}))}
	tls, unlock, err := useTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cc.tls = tls
	if cfg.ServerHostname != "" {
		cc.server_hostname = C.CString(cfg.ServerHostname)
		defer C.free(unsafe.Pointer(cc.server_hostname))
	}
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
	cc.timeout_ns = C.uint64_t(cfg.Timeout)

	c := newConn(l, p)
	c.done = done
	c.dial = &DialHandle{}
	h := c.newHandle() // the protocol's user data and done's; deleted by the protocol's destroy
	var ch *C.aiol_handle
	if rc := C.aiolgo_connect(l.ptr, &cc, C.uintptr_t(h), &ch); rc < 0 {
		deleteHandle(h)
		return nil, Errno(rc)
	}
	c.dial.h = ch
	return c.dial, nil
}

func (c *conn) connectDone(status C.int) {
	if d := c.dial; d != nil && d.h != nil {
		C.aiol_handle_release(d.h)
		d.h = nil
	}
	if c.done == nil {
		return
	}
	defer c.loop.recoverPanic(c)
	if status == 0 {
		c.done(c.t, nil)
	} else {
		c.done(nil, Errno(status))
	}
}

// Adopt wraps a connected stream socket fd (made non-blocking) as a transport speaking
// p; ConnectionMade runs in the next iteration. On success the transport owns fd (it is
// closed with the transport); on failure the caller keeps it. To adopt a socket held by
// an *os.File or net.Conn, pass a dup of its descriptor (syscall.Dup).
func (l *Loop) Adopt(fd int, p Protocol) error {
	if p == nil {
		return ErrInvalid
	}
	if err := l.check(); err != nil {
		return err
	}
	h := newConn(l, p).newHandle()
	if rc := C.aiolgo_adopt(l.ptr, C.int(fd), C.uintptr_t(h), nil); rc < 0 {
		deleteHandle(h)
		return Errno(rc)
	}
	return nil
}
