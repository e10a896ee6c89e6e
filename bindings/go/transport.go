package aioloop

/*
#include <stdint.h>
#include "shim.h"
*/
import "C"

import (
	"net"
	"runtime"
	"unsafe"
)

// Transport is one stream connection (asyncio _SelectorSocketTransport). It is valid from
// ConnectionMade until ConnectionLost returns; afterwards every method returns ErrClosed
// (the address getters keep what they had already read). Loop goroutine only: to write
// from another goroutine, hop with Loop.CallSoonThreadsafe.
type Transport struct {
	ptr    *C.aiol_transport // nil before connection_made and after connection_lost
	loop   *Loop
	c      *conn
	local  net.Addr
	remote net.Addr
}

func (t *Transport) lost() {
	if t.ptr != nil {
		if t.remote == nil {
			t.remote = t.addr(true)
		}
		if t.local == nil {
			t.local = t.addr(false)
		}
	}
	t.ptr = nil
}

func (t *Transport) cptr() (*C.aiol_transport, error) {
	if t == nil || t.ptr == nil {
		return nil, ErrClosed
	}
	return t.ptr, nil
}

// Loop returns the transport's loop.
func (t *Transport) Loop() *Loop { return t.loop }

// Protocol returns the current protocol.
func (t *Transport) Protocol() Protocol { return t.c.proto }

// SetProtocol switches the protocol (asyncio set_protocol): later callbacks go to p; no
// ConnectionMade is called for it. Switching between a plain Protocol and a
// BufferedProtocol (either way) switches how the library reads. Called inside GetBuffer,
// the bytes then read into the buffer GetBuffer returns go to p: as DataReceived for a
// plain protocol, copied into p's own buffers (GetBuffer, BufferUpdated) for a
// BufferedProtocol.
func (t *Transport) SetProtocol(p Protocol) error {
	if _, err := t.cptr(); err != nil {
		return err
	}
	if p == nil {
		return ErrInvalid
	}
	t.c.setProtocol(p)
	// The switch is made either way: should the vtable not follow (none is expected: the
	// transport is live), the binding serves the protocol through the other one.
	_ = t.c.syncVtable()
	return nil
}

// Write queues b (sending what it can at once, copying the rest); it never blocks. It
// returns ErrState after WriteEOF, ErrClosed after Close/Abort or once the connection is
// lost. Socket errors are not returned: they reach ConnectionLost.
func (t *Transport) Write(b []byte) error {
	p, err := t.cptr()
	if err != nil || len(b) == 0 {
		return err
	}
	return errorOf(C.aiol_transport_write(p, unsafe.Pointer(&b[0]), C.size_t(len(b))))
}

// WriteString is Write for a string, without a copy.
func (t *Transport) WriteString(s string) error {
	p, err := t.cptr()
	if err != nil || len(s) == 0 {
		return err
	}
	return errorOf(C.aiol_transport_write(p, unsafe.Pointer(unsafe.StringData(s)), C.size_t(len(s))))
}

// Writev writes the buffers in order as one gathered write.
func (t *Transport) Writev(bufs [][]byte) error {
	p, err := t.cptr()
	if err != nil {
		return err
	}
	// The aiol_buf array holds Go pointers, so each buffer is pinned for the call.
	var pin runtime.Pinner
	defer pin.Unpin()
	cb := make([]C.aiol_buf, 0, len(bufs))
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		pin.Pin(&b[0])
		cb = append(cb, C.aiol_buf{base: unsafe.Pointer(&b[0]), len: C.size_t(len(b))})
	}
	if len(cb) == 0 {
		return nil
	}
	return errorOf(C.aiol_transport_writev(p, &cb[0], C.size_t(len(cb))))
}

// WriteEOF shuts down the writing side once the queue has drained (half-close).
// Idempotent.
func (t *Transport) WriteEOF() error {
	p, err := t.cptr()
	if err != nil {
		return err
	}
	return errorOf(C.aiol_transport_write_eof(p))
}

// CanWriteEOF reports whether WriteEOF is supported.
func (t *Transport) CanWriteEOF() bool {
	p, err := t.cptr()
	return err == nil && C.aiol_transport_can_write_eof(p) == 1
}

// Close stops reading, flushes the queue, then closes; ConnectionLost(nil) follows.
// Idempotent; nil after the connection is lost.
func (t *Transport) Close() error {
	if t == nil || t.ptr == nil {
		return nil
	}
	return errorOf(C.aiol_transport_close(t.ptr))
}

// Abort drops the queue and closes now; ConnectionLost(ErrCanceled) follows. Nil after
// the connection is lost.
func (t *Transport) Abort() error {
	if t == nil || t.ptr == nil {
		return nil
	}
	return errorOf(C.aiol_transport_abort(t.ptr))
}

// IsClosing reports whether Close or Abort was called or the connection is lost.
func (t *Transport) IsClosing() bool {
	p, err := t.cptr()
	return err != nil || C.aiol_transport_is_closing(p) == 1
}

// PauseReading stops DataReceived/BufferUpdated/EOFReceived until ResumeReading.
func (t *Transport) PauseReading() error {
	p, err := t.cptr()
	if err != nil {
		return err
	}
	return errorOf(C.aiol_transport_pause_reading(p))
}

// ResumeReading undoes PauseReading.
func (t *Transport) ResumeReading() error {
	p, err := t.cptr()
	if err != nil {
		return err
	}
	return errorOf(C.aiol_transport_resume_reading(p))
}

// IsReading reports whether the transport is reading.
func (t *Transport) IsReading() bool {
	p, err := t.cptr()
	return err == nil && C.aiol_transport_is_reading(p) == 1
}

// SetWriteBufferLimits sets the flow-control marks; a negative value means asyncio's
// default (high 64 KiB, or 4 x low when only low is given; low = high / 4). high < low
// gives ErrInvalid.
func (t *Transport) SetWriteBufferLimits(high, low int) error {
	p, err := t.cptr()
	if err != nil {
		return err
	}
	h, l := ^C.size_t(0), ^C.size_t(0) // AIOL_WBUF_DEFAULT
	if high >= 0 {
		h = C.size_t(high)
	}
	if low >= 0 {
		l = C.size_t(low)
	}
	return errorOf(C.aiol_transport_set_write_buffer_limits(p, h, l))
}

// WriteBufferLimits returns the current high- and low-water marks.
func (t *Transport) WriteBufferLimits() (high, low int, err error) {
	p, err := t.cptr()
	if err != nil {
		return 0, 0, err
	}
	var h, l C.size_t
	if rc := C.aiol_transport_get_write_buffer_limits(p, &h, &l); rc < 0 {
		return 0, 0, Errno(rc)
	}
	return int(h), int(l), nil
}

// WriteBufferSize returns the number of bytes queued for writing.
func (t *Transport) WriteBufferSize() int {
	p, err := t.cptr()
	if err != nil {
		return 0
	}
	return int(C.aiol_transport_get_write_buffer_size(p))
}

// Fileno returns the socket fd. Do not close it or watch it yourself.
func (t *Transport) Fileno() (int, error) {
	p, err := t.cptr()
	if err != nil {
		return -1, err
	}
	rc := C.aiol_transport_fileno(p)
	if rc < 0 {
		return -1, Errno(rc)
	}
	return int(rc), nil
}

// RemoteAddr returns the peer's address (*net.TCPAddr or *net.UnixAddr), captured at
// accept/connect; nil if unknown.
func (t *Transport) RemoteAddr() net.Addr {
	if t.remote == nil && t.ptr != nil {
		t.remote = t.addr(true)
	}
	return t.remote
}

// LocalAddr returns the socket's own address (*net.TCPAddr or *net.UnixAddr).
func (t *Transport) LocalAddr() net.Addr {
	if t.local == nil && t.ptr != nil {
		t.local = t.addr(false)
	}
	return t.local
}

func (t *Transport) addr(peer bool) net.Addr {
	var ss C.struct_sockaddr_storage
	n := C.socklen_t(unsafe.Sizeof(ss))
	var rc C.int
	if peer {
		rc = C.aiol_transport_peername(t.ptr, &ss, &n)
	} else {
		rc = C.aiol_transport_sockname(t.ptr, &ss, &n)
	}
	if rc < 0 {
		return nil
	}
	return sockaddrToAddr(&ss, n)
}
