package aioloop

/*
#include "shim.h"
*/
import "C"

import (
	"runtime"
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
type conn struct {
	loop  *Loop
	proto Protocol
	bp    BufferedProtocol // proto, if it is one
	t     *Transport

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

func (c *conn) setProtocol(p Protocol) {
	c.proto = p
	c.bp, _ = p.(BufferedProtocol)
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
	c.proto.ConnectionMade(c.t)
}

func (c *conn) getBuffer(hint C.size_t, lenp *C.size_t) (p unsafe.Pointer) {
	c.unpin()
	c.buf = nil
	if c.bp == nil {
		c.buf = unsafe.Slice((*byte)(c.loop.readBuf), readBufSize)
		c.bufOwn = false
		*lenp = readBufSize
		return c.loop.readBuf
	}
	defer c.loop.recoverPanic(c)
	buf := c.bp.GetBuffer(c.t, int(hint))
	if len(buf) == 0 {
		return nil // the library aborts the transport with EINVAL and a report
	}
	c.pin.Pin(&buf[0])
	c.pinned = true
	c.buf = buf
	c.bufOwn = true
	*lenp = C.size_t(len(buf))
	return unsafe.Pointer(&buf[0])
}

func (c *conn) bufferUpdated(n C.size_t) {
	defer c.loop.recoverPanic(c)
	data := c.buf[:n]
	c.buf = nil
	c.unpin()
	switch {
	case c.bp == nil:
		c.proto.DataReceived(c.t, data)
	case c.bufOwn:
		c.bp.BufferUpdated(c.t, int(n))
	default:
		// SetProtocol switched to a BufferedProtocol inside the previous get_buffer:
		// feed it the bytes read into the loop buffer.
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
