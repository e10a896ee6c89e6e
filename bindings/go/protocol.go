package aioloop

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// Protocol receives a connection's events (asyncio Protocol). All methods run on the loop
// goroutine, per connection in this order: ConnectionMade; then DataReceived (or, for a
// BufferedProtocol, GetBuffer/BufferUpdated), interleaved with PauseWriting/ResumeWriting
// (strictly alternating, pause first); then at most one EOFReceived; then ConnectionLost
// (if and only if ConnectionMade ran). Embed BaseProtocol to implement only what you need.
//
// A panic in any method is recovered before it reaches C: the connection is aborted, the
// loop is stopped, and Run returns a *PanicError.
type Protocol interface {
	// ConnectionMade is called once the connection is up. t is valid until
	// ConnectionLost returns; after that every call on it returns ErrClosed.
	ConnectionMade(t *Transport)

	// DataReceived is called with the bytes read (never empty).
	//
	// data IS ONLY VALID DURING THE CALL: it is a zero-copy view of the loop's C read
	// buffer, overwritten by the next read. Copy it (append([]byte(nil), data...)) to
	// keep it. Passing it to t.Write is fine: Write copies what it cannot send at once.
	DataReceived(t *Transport, data []byte)

	// EOFReceived is called when the peer shut down its writing side. Returning true
	// keeps the transport open for writing (half-close; close it yourself later);
	// false closes it.
	EOFReceived(t *Transport) bool

	// ConnectionLost is called once when the connection is gone: err is nil for a clean
	// close, ErrCanceled after Abort (or Loop.Close), else the error (an Errno).
	ConnectionLost(t *Transport, err error)

	// PauseWriting is called when the write buffer goes over the high-water mark;
	// ResumeWriting when it drains below the low-water mark (asyncio flow control).
	PauseWriting(t *Transport)
	ResumeWriting(t *Transport)
}

// BufferedProtocol is a Protocol that reads into its own buffers (asyncio
// BufferedProtocol); it is detected with a type assertion and, when implemented,
// DataReceived is never called.
//
// GetBuffer returns the buffer for the next read (sizeHint 0 means no hint); an empty
// buffer aborts the connection with ErrInvalid. The library reads straight into it, with
// no copy: the binding pins it with runtime.Pinner until the next BufferUpdated,
// GetBuffer or ConnectionLost, and the protocol must not touch it until then.
// BufferUpdated(t, n) reports that buf[:n] was filled.
//
// Pinning rather than copying through C memory keeps the zero-copy point of the
// interface; the pin is released as soon as the library is done with the buffer.
type BufferedProtocol interface {
	Protocol
	GetBuffer(t *Transport, sizeHint int) []byte
	BufferUpdated(t *Transport, n int)
}

// BaseProtocol implements every Protocol method as a no-op (EOFReceived returns false);
// embed it and override what you need.
type BaseProtocol struct{}

func (BaseProtocol) ConnectionMade(*Transport)        {}
func (BaseProtocol) DataReceived(*Transport, []byte)  {}
func (BaseProtocol) EOFReceived(*Transport) bool      { return false }
func (BaseProtocol) ConnectionLost(*Transport, error) {}
func (BaseProtocol) PauseWriting(*Transport)          {}
func (BaseProtocol) ResumeWriting(*Transport)         {}

// conn is the user data of one connection (the cgo.Handle given to C points at it).
//
// Read path. The C side registers the plain vtable (data_received, one C->Go call per
// read) and switches a connection to the buffered vtable (get_buffer + buffer_updated)
// while its Go protocol is a BufferedProtocol (syncVtable: in connectionMade, before any
// read, and on SetProtocol). Both vtables share the user data and the destroy callback,
// so the library destroys nothing on such a switch (aiol_transport_set_protocol).
type conn struct {
	loop  *Loop
	h     cgo.Handle // this conn's handle: the transport's user data
	proto Protocol
	bp    BufferedProtocol // proto, if it is one
	t     *Transport

	cBuffered   bool // the buffered C vtable is registered (else the plain one)
	inGetBuffer bool // BufferedProtocol.GetBuffer is running
	switched    bool // SetProtocol ran inside the running GetBuffer

	pin    runtime.Pinner
	pinned bool
	buf    []byte // the buffer handed to the library by the last get_buffer
	bufOwn bool   // buf came from the BufferedProtocol (else the loop's C buffer)

	// Dial only.
	done func(*Transport, error)
	dial *DialHandle
}

func newConn(l *Loop, p Protocol) *conn {
	c := &conn{loop: l}
	c.t = &Transport{loop: l, c: c}
	c.setProtocol(p)
	return c
}

// newHandle makes the conn's handle, the user data given to C; the protocol's destroy
// deletes it.
func (c *conn) newHandle() cgo.Handle {
	c.h = newHandle(c)
	return c.h
}

func (c *conn) setProtocol(p Protocol) {
	if c.inGetBuffer {
		c.switched = true
	}
	c.proto = p
	c.bp, _ = p.(BufferedProtocol)
}

// syncVtable registers the C vtable matching the protocol (buffered or plain), with the
// same user data. It waits while GetBuffer runs: the library calls the registered
// vtable's buffer_updated right after get_buffer returns, so there the switch is left to
// the end of bufferUpdated (or the next eofReceived or SetProtocol). Until it is made, a
// plain protocol on the buffered vtable reads through the loop's C buffer (getBuffer,
// bufferUpdated), and a BufferedProtocol on the plain vtable is fed by copy
// (dataReceived).
func (c *conn) syncVtable() error {
	want := c.bp != nil
	if want == c.cBuffered || c.inGetBuffer || c.t.ptr == nil {
		return nil
	}
	b := C.int(0)
	if want {
		b = 1
	}
	if rc := C.aiolgo_transport_set_vtable(c.t.ptr, b, C.uintptr_t(c.h)); rc < 0 {
		return Errno(rc)
	}
	c.cBuffered = want
	return nil
}

func (c *conn) unpin() {
	if c.pinned {
		c.pin.Unpin()
		c.pinned = false
	}
}

func (c *conn) destroyed() { c.unpin() }

// ---- trampoline bodies (called from callbacks.go, on the loop thread) ------------------------

func (c *conn) connectionMade(t *C.aiol_transport) {
	c.t.ptr = t
	defer c.loop.recoverPanic(c)
	// Reading starts only after connection_made returns, so a BufferedProtocol's first
	// read already goes through get_buffer. A failure (none is expected: the transport is
	// live) leaves the plain vtable, whose dataReceived feeds a BufferedProtocol by copy.
	_ = c.syncVtable()
	c.proto.ConnectionMade(c.t)
}

// dataReceived serves the plain vtable: data is the library's read buffer, borrowed for
// the call, handed over without a copy.
func (c *conn) dataReceived(data unsafe.Pointer, n C.size_t) {
	c.loop.yieldSometimes()
	defer c.loop.recoverPanic(c)
	b := unsafe.Slice((*byte)(data), int(n))
	if c.bp != nil {
		// Only if the switch to the buffered vtable failed.
		feedBuffered(c.bp, c.t, b)
		return
	}
	c.proto.DataReceived(c.t, b)
}

func (c *conn) getBuffer(hint C.size_t, lenp *C.size_t) (p unsafe.Pointer) {
	c.unpin()
	c.buf = nil
	if c.bp == nil {
		// A plain protocol set inside the previous GetBuffer, before its switch to the
		// plain vtable was made: read into the loop's C buffer.
		if c.loop.readBuf == nil {
			if c.loop.readBuf = C.malloc(readBufSize); c.loop.readBuf == nil {
				return nil // the library aborts the transport with EINVAL and a report
			}
		}
		c.buf = unsafe.Slice((*byte)(c.loop.readBuf), readBufSize)
		c.bufOwn = false
		*lenp = readBufSize
		return c.loop.readBuf
	}
	defer c.loop.recoverPanic(c)
	c.inGetBuffer, c.switched = true, false
	defer func() { c.inGetBuffer = false }()
	buf := c.bp.GetBuffer(c.t, int(hint))
	if len(buf) == 0 {
		return nil // the library aborts the transport with EINVAL and a report
	}
	c.pin.Pin(&buf[0])
	c.pinned = true
	c.buf = buf
	c.bufOwn = !c.switched // else the buffer is the previous protocol's
	*lenp = C.size_t(len(buf))
	return unsafe.Pointer(&buf[0])
}

func (c *conn) bufferUpdated(n C.size_t) {
	c.loop.yieldSometimes()
	defer c.loop.recoverPanic(c)
	defer c.syncVtable() // a switch SetProtocol made inside GetBuffer
	data := c.buf[:n]
	c.buf = nil
	c.unpin()
	switch {
	case c.bp == nil:
		// The loop buffer (see getBuffer), or the previous BufferedProtocol's buffer if
		// GetBuffer switched to a plain protocol.
		c.proto.DataReceived(c.t, data)
	case c.bufOwn:
		c.bp.BufferUpdated(c.t, int(n))
	default:
		// GetBuffer switched to another BufferedProtocol: the bytes are in the previous
		// one's buffer, so copy them into the new one's.
		feedBuffered(c.bp, c.t, data)
	}
}

func feedBuffered(bp BufferedProtocol, t *Transport, data []byte) {
	for len(data) > 0 && t.ptr != nil {
		buf := bp.GetBuffer(t, len(data))
		if len(buf) == 0 {
			t.Abort()
			return
		}
		n := copy(buf, data)
		data = data[n:]
		bp.BufferUpdated(t, n)
	}
}

func (c *conn) eofReceived() (keep bool) {
	defer c.loop.recoverPanic(c)
	_ = c.syncVtable() // a switch still pending from a GetBuffer that read nothing
	return c.proto.EOFReceived(c.t)
}

func (c *conn) connectionLost(status C.int) {
	defer c.t.lost()
	defer c.loop.recoverPanic(c)
	c.unpin()
	c.proto.ConnectionLost(c.t, errorOf(status))
}

func (c *conn) pauseWriting() {
	defer c.loop.recoverPanic(c)
	c.proto.PauseWriting(c.t)
}

func (c *conn) resumeWriting() {
	defer c.loop.recoverPanic(c)
	c.proto.ResumeWriting(c.t)
}
