package aioloop

// This file holds only the //export trampolines: cgo cannot export Go functions from a
// file whose preamble defines C functions, so the C side (the protocol vtables and the
// wrappers that call these) is in shim.c (the go-sqlite3 layout).
//
// Every trampoline turns the cgo.Handle back into its Go value and hands over to a method
// that recovers panics (Loop.recoverPanic): no Go panic ever unwinds through C.

/*
#include "shim.h"
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

func connOf(h C.uintptr_t) *conn { return cgo.Handle(h).Value().(*conn) }

//export aiolgoCallback
func aiolgoCallback(h C.uintptr_t) {
	e := cgo.Handle(h).Value().(*callEntry)
	defer e.loop.recoverPanic(nil)
	e.fn()
}

//export aiolgoFdCallback
func aiolgoFdCallback(fd C.int, h C.uintptr_t) {
	e := cgo.Handle(h).Value().(*fdEntry)
	defer e.loop.recoverPanic(nil)
	e.fn()
}

//export aiolgoDestroy
func aiolgoDestroy(h C.uintptr_t) {
	ch := cgo.Handle(h)
	if d, ok := ch.Value().(interface{ destroyed() }); ok {
		d.destroyed()
	}
	deleteHandle(ch)
}

//export aiolgoException
func aiolgoException(ctx *C.aiol_error_context, h C.uintptr_t) {
	e := cgo.Handle(h).Value().(*excEntry)
	defer e.loop.recoverPanic(nil)
	ec := &ErrorContext{Err: errorOf(ctx.code)}
	if ctx.message != nil {
		ec.Message = C.GoString(ctx.message)
	}
	if ctx.detail != nil {
		ec.Detail = C.GoString(ctx.detail)
	}
	if ctx.object_kind == C.AIOL_OBJ_TRANSPORT && ctx.protocol_data != nil {
		if c, ok := handleValue(C.uintptr_t(uintptr(ctx.protocol_data))).(*conn); ok {
			ec.Transport = c.t
		}
	}
	e.fn(ec)
}

// handleValue is cgo.Handle.Value for a handle that may already be deleted (a report can
// name a transport whose user data has gone): nil instead of a panic.
func handleValue(h C.uintptr_t) (v any) {
	defer func() { _ = recover() }()
	return cgo.Handle(h).Value()
}

//export aiolgoFactory
func aiolgoFactory(h C.uintptr_t) C.uintptr_t {
	return cgo.Handle(h).Value().(*Server).accept()
}

//export aiolgoConnectionMade
func aiolgoConnectionMade(t *C.aiol_transport, h C.uintptr_t) { connOf(h).connectionMade(t) }

//export aiolgoDataReceived
func aiolgoDataReceived(t *C.aiol_transport, data unsafe.Pointer, n C.size_t, h C.uintptr_t) {
	connOf(h).dataReceived(data, n)
}

//export aiolgoEOFReceived
func aiolgoEOFReceived(t *C.aiol_transport, h C.uintptr_t) C.int {
	if connOf(h).eofReceived() {
		return 1
	}
	return 0
}

//export aiolgoConnectionLost
func aiolgoConnectionLost(t *C.aiol_transport, status C.int, h C.uintptr_t) {
	connOf(h).connectionLost(status)
}

//export aiolgoPauseWriting
func aiolgoPauseWriting(t *C.aiol_transport, h C.uintptr_t) { connOf(h).pauseWriting() }

//export aiolgoResumeWriting
func aiolgoResumeWriting(t *C.aiol_transport, h C.uintptr_t) { connOf(h).resumeWriting() }

//export aiolgoGetBuffer
func aiolgoGetBuffer(t *C.aiol_transport, hint C.size_t, n *C.size_t, h C.uintptr_t) unsafe.Pointer {
	return connOf(h).getBuffer(hint, n)
}

//export aiolgoBufferUpdated
func aiolgoBufferUpdated(t *C.aiol_transport, n C.size_t, h C.uintptr_t) {
	connOf(h).bufferUpdated(n)
}

//export aiolgoConnectDone
func aiolgoConnectDone(t *C.aiol_transport, status C.int, h C.uintptr_t) {
	connOf(h).connectDone(status)
}

//export aiolgoWaitClosed
func aiolgoWaitClosed(h C.uintptr_t) {
	ch := cgo.Handle(h)
	e := ch.Value().(*waitEntry)
	deleteHandle(ch) // runs exactly once, and has no destroy
	e.run()
}
