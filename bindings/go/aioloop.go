package aioloop

/*
#cgo pkg-config: aioloop
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"runtime/cgo"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// readBufSize is the size of the loop's C read buffer, which a plain protocol reads into
// in the one case it is served by the buffered vtable (a switch from a BufferedProtocol
// still pending, see conn.syncVtable); the library's own read size is the same (asyncio
// max_size).
const readBufSize = 256 * 1024

// liveHandles counts the cgo.Handles this package has made and not yet deleted (a test
// hook: every handle is deleted by the destroy callback that ends its C registration).
var liveHandles atomic.Int64

func newHandle(v any) cgo.Handle {
	liveHandles.Add(1)
	return cgo.NewHandle(v)
}

func deleteHandle(h cgo.Handle) {
	h.Delete()
	liveHandles.Add(-1)
}

// Version returns the version of the C library actually loaded, as "major.minor.patch".
func Version() string { return C.GoString(C.aiol_version_string()) }

// HasFeature reports whether the loaded library has the named optional feature built in:
// "epoll", "poll", "tls", "io_uring", "debug" (aiol_has_feature).
func HasFeature(name string) bool {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	return C.aiol_has_feature(cs) == 1
}

// Loop is a libaioloop event loop (asyncio's BaseSelectorEventLoop).
//
// Threads. Run, RunOnce and every callback run on one goroutine, locked to its OS thread
// for the duration of the run. Everything except Stop and CallSoonThreadsafe must be
// called on that goroutine (from callbacks, or before and after Run); when the loop is
// not running, one goroutine at a time may use it. Stop and CallSoonThreadsafe may be
// called from any goroutine at any time, also concurrently with Close: the Loop keeps a
// C hold (aiol_loop_hold) from New to Close, and after Close they return ErrClosed
// instead of touching freed memory.
//
// Signals. The Go runtime owns signal handling, so the binding does not expose the C
// signal handler API. Use os/signal and hop onto the loop with CallSoonThreadsafe:
//
//	ch := make(chan os.Signal, 1)
//	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
//	go func() { <-ch; loop.CallSoonThreadsafe(shutdown) }()
type Loop struct {
	ptr     *C.aiol_loop
	mu      sync.RWMutex // excludes Close from in-flight [any thread] calls
	closed  atomic.Bool
	running atomic.Bool
	panic   error          // first recovered panic since the last run returned
	readBuf unsafe.Pointer // C memory, readBufSize bytes, made on first use (conn.getBuffer)
	servers map[*Server]struct{}

	calls   uint32    // callbacks since the last look at the clock (yieldSometimes)
	schedAt time.Time // when the loop goroutine last went through the Go scheduler
}

// New makes a loop. Close it when done (a finalizer closes a forgotten, unreachable loop
// as a safety net).
func New() (*Loop, error) {
	if v := C.aiol_version(); v>>16 != C.AIOL_VERSION_MAJOR {
		return nil, fmt.Errorf("aioloop: library version %#x does not match header %#x",
			uint(v), uint(C.AIOL_VERSION_HEX))
	}
	var p *C.aiol_loop
	if rc := C.aiol_loop_new(&p); rc < 0 {
		return nil, Errno(rc)
	}
	if rc := C.aiol_loop_hold(p); rc < 0 {
		C.aiol_loop_free(p)
		return nil, Errno(rc)
	}
	l := &Loop{ptr: p, servers: map[*Server]struct{}{}}
	runtime.SetFinalizer(l, func(l *Loop) { l.Close() })
	return l, nil
}

// check returns ErrClosed after Close (for loop-thread calls).
func (l *Loop) check() error {
	if l.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Run runs the loop until Stop (asyncio run_forever). Because the Loop holds a C hold
// from New to Close, and holds count as alive, Run never returns merely because nothing
// is left to do: only Stop, an error or a panicking callback end it. The calling
// goroutine is locked to its OS thread while Run is active.
//
// If a callback panicked, the panic was recovered, its connection aborted and the loop
// stopped; Run returns a *PanicError. The loop stays usable (Run again, or Close).
func (l *Loop) Run() error { return l.run(C.AIOL_RUN_DEFAULT) }

// RunOnce runs one iteration (asyncio _run_once): it polls, blocking until an fd is ready
// or the next timer is due if nothing is ready yet, then runs the callbacks that are due.
func (l *Loop) RunOnce() error { return l.run(C.AIOL_RUN_ONCE) }

// RunNoWait runs one iteration with a zero poll timeout.
func (l *Loop) RunNoWait() error { return l.run(C.AIOL_RUN_NOWAIT) }

func (l *Loop) run(mode C.int) error {
	if err := l.check(); err != nil {
		return err
	}
	if !l.running.CompareAndSwap(false, true) {
		return ErrState
	}
	runtime.LockOSThread()
	l.schedAt = time.Now()
	rc := C.aiol_loop_run(l.ptr, mode)
	runtime.UnlockOSThread()
	l.running.Store(false)
	return l.takePanic(errorOf(rc))
}

func (l *Loop) takePanic(err error) error {
	if p := l.panic; p != nil {
		l.panic = nil
		return p
	}
	return err
}

// Stop makes the running (or the next) Run return after its current batch of callbacks.
// Any goroutine; ErrClosed after Close.
func (l *Loop) Stop() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed.Load() {
		return ErrClosed
	}
	return errorOf(C.aiol_loop_stop(l.ptr))
}

// Close tears everything down (aiol_loop_close: servers closed, transports aborted with
// ConnectionLost(ErrCanceled), timers cancelled, queued threadsafe callbacks dropped, all
// running their callbacks on the calling goroutine before Close returns), releases the
// hold and frees the loop. Idempotent. It returns ErrState while Run is active (also from
// inside a callback), and a *PanicError if a callback it ran panicked.
func (l *Loop) Close() error {
	if l.running.Load() {
		return ErrState
	}
	l.mu.Lock()
	if l.closed.Load() {
		l.mu.Unlock()
		return nil
	}
	l.closed.Store(true) // from here Stop and CallSoonThreadsafe refuse
	l.mu.Unlock()
	runtime.SetFinalizer(l, nil)

	err := errorOf(C.aiol_loop_close(l.ptr))
	for s := range l.servers {
		s.free()
	}
	C.aiol_loop_unhold(l.ptr)
	if rc := C.aiol_loop_free(l.ptr); rc < 0 && err == nil {
		err = Errno(rc) // the loop is leaked rather than freed under something alive
	}
	l.ptr = nil
	if l.readBuf != nil {
		C.free(l.readBuf)
		l.readBuf = nil
	}
	return l.takePanic(err)
}

// Now returns the loop's clock (CLOCK_MONOTONIC), as a duration since an arbitrary origin.
func (l *Loop) Now() time.Duration {
	if l.closed.Load() {
		return 0
	}
	return time.Duration(C.aiol_loop_now(l.ptr))
}

// SetDebug turns asyncio's debug mode on or off (slow callbacks reported, resources still
// open at Close reported).
func (l *Loop) SetDebug(on bool) error {
	if err := l.check(); err != nil {
		return err
	}
	v := C.int(0)
	if on {
		v = 1
	}
	return errorOf(C.aiol_loop_set_debug(l.ptr, v))
}

// yieldSometimes passes the loop goroutine through the Go scheduler every 5 ms while
// connections deliver data. Why: Run spends its life inside one cgo call, which the
// runtime sees as a syscall on a P whose goroutine never reschedules; after 10 ms of that
// (forcePreemptNS) sysmon takes the P away at each of its ticks (20 µs, no back-off) that
// finds the loop in C, and wakes another thread to hold it, which finds nothing to do and
// sleeps again; each callback then has to win a P back. With an idle P to spare
// (GOMAXPROCS raised by one for the loop's thread, see "Performance" in doc.go) one
// Gosched every 5 ms resets the runtime's per-P schedule tick and keeps sysmon quiet.
// Only the data path yields, and it reads the clock once per 8 calls.
func (l *Loop) yieldSometimes() {
	if l.calls++; l.calls&7 != 0 {
		return
	}
	if now := time.Now(); now.Sub(l.schedAt) >= 5*time.Millisecond {
		l.schedAt = now
		runtime.Gosched()
	}
}

// recoverPanic is deferred by every trampoline that runs user code: it stops a panic at
// the C boundary, aborts the connection it belongs to (if any) and stops the loop.
func (l *Loop) recoverPanic(c *conn) {
	if r := recover(); r != nil {
		l.panicked(r, c)
	}
}

func (l *Loop) panicked(r any, c *conn) {
	if l.panic == nil {
		l.panic = &PanicError{Value: r, Stack: debug.Stack()}
	}
	if c != nil && c.t.ptr != nil {
		C.aiol_transport_abort(c.t.ptr)
	}
	C.aiol_loop_stop(l.ptr)
}

// ---- scheduled callbacks ------------------------------------------------------------------

// callEntry is the user data of call_soon, call_later and call_soon_threadsafe.
type callEntry struct {
	loop  *Loop
	fn    func()
	timer *Timer // call_later only: released in destroy
}

func (e *callEntry) destroyed() {
	if t := e.timer; t != nil && t.h != nil {
		C.aiol_handle_release(t.h)
		t.h = nil
	}
}

// Timer is a scheduled callback (asyncio TimerHandle). Loop goroutine only.
type Timer struct {
	h    *C.aiol_handle // nil once the callback ran, was cancelled or the loop closed
	when time.Duration
}

// Cancel prevents the callback from running. It returns true if this call prevented it,
// false if it already ran, is running or was cancelled (asyncio semantics). A nil Timer
// returns false.
func (t *Timer) Cancel() bool {
	if t == nil || t.h == nil {
		return false
	}
	return C.aiol_handle_cancel(t.h) == 1
}

// When returns the timer's deadline on the loop clock (see Loop.Now).
func (t *Timer) When() time.Duration { return t.when }

// CallSoon schedules fn for the next iteration (asyncio call_soon). Callbacks run in
// scheduling order. Loop goroutine only.
func (l *Loop) CallSoon(fn func()) error {
	if fn == nil {
		return errNilFunc
	}
	if err := l.check(); err != nil {
		return err
	}
	h := newHandle(&callEntry{loop: l, fn: fn})
	if rc := C.aiolgo_call_soon(l.ptr, C.uintptr_t(h), nil); rc < 0 {
		deleteHandle(h)
		return Errno(rc)
	}
	return nil
}

// CallLater runs fn once d has passed on the monotonic clock (never early; a negative d
// counts as 0). Equal deadlines run in scheduling order. Loop goroutine only.
func (l *Loop) CallLater(d time.Duration, fn func()) (*Timer, error) {
	if fn == nil {
		return nil, errNilFunc
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	if d < 0 {
		d = 0
	}
	t := &Timer{}
	h := newHandle(&callEntry{loop: l, fn: fn, timer: t})
	var ch *C.aiol_handle
	if rc := C.aiolgo_call_later(l.ptr, C.uint64_t(d), C.uintptr_t(h), &ch); rc < 0 {
		deleteHandle(h)
		return nil, Errno(rc)
	}
	t.h = ch
	t.when = time.Duration(C.aiol_handle_when(ch))
	return t, nil
}

// CallSoonThreadsafe schedules fn on the loop from any goroutine and wakes the loop.
// Callbacks posted by one goroutine run in posting order. It returns ErrClosed once Close
// has begun; callbacks still queued when the loop closes are dropped.
func (l *Loop) CallSoonThreadsafe(fn func()) error {
	if fn == nil {
		return errNilFunc
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed.Load() {
		return ErrClosed
	}
	h := newHandle(&callEntry{loop: l, fn: fn})
	if rc := C.aiolgo_call_soon_threadsafe(l.ptr, C.uintptr_t(h)); rc < 0 {
		deleteHandle(h)
		return Errno(rc)
	}
	return nil
}

// ---- fd watchers --------------------------------------------------------------------------

type fdEntry struct {
	loop *Loop
	fn   func()
}

// AddReader calls fn whenever fd is readable (level-triggered), replacing any reader
// already registered for fd. Remove the watcher before closing fd. ErrBusy for an fd owned
// by a transport or server. Loop goroutine only.
func (l *Loop) AddReader(fd int, fn func()) error { return l.addWatcher(fd, fn, false) }

// AddWriter calls fn whenever fd is writable; see AddReader.
func (l *Loop) AddWriter(fd int, fn func()) error { return l.addWatcher(fd, fn, true) }

func (l *Loop) addWatcher(fd int, fn func(), write bool) error {
	if fn == nil {
		return errNilFunc
	}
	if err := l.check(); err != nil {
		return err
	}
	h := newHandle(&fdEntry{loop: l, fn: fn})
	var rc C.int
	if write {
		rc = C.aiolgo_add_writer(l.ptr, C.int(fd), C.uintptr_t(h))
	} else {
		rc = C.aiolgo_add_reader(l.ptr, C.int(fd), C.uintptr_t(h))
	}
	if rc < 0 {
		deleteHandle(h)
		return Errno(rc)
	}
	return nil
}

// RemoveReader removes fd's reader; it reports whether there was one. Once it returns,
// the old callback never runs again.
func (l *Loop) RemoveReader(fd int) (bool, error) {
	if err := l.check(); err != nil {
		return false, err
	}
	rc := C.aiol_loop_remove_reader(l.ptr, C.int(fd))
	return rc == 1, errorOf(rc)
}

// RemoveWriter removes fd's writer; see RemoveReader.
func (l *Loop) RemoveWriter(fd int) (bool, error) {
	if err := l.check(); err != nil {
		return false, err
	}
	rc := C.aiol_loop_remove_writer(l.ptr, C.int(fd))
	return rc == 1, errorOf(rc)
}

// ---- exception handler --------------------------------------------------------------------

// ErrorContext is asyncio's exception-handler context: an error the loop reports rather
// than returns (a failed accept, a fatal transport error, ...).
type ErrorContext struct {
	Err       error      // an Errno, or nil
	Message   string     // what happened
	Detail    string     // extra detail (e.g. a TLS library's reason), or ""
	Transport *Transport // the transport concerned, if any and still known
}

type excEntry struct {
	loop *Loop
	fn   func(*ErrorContext)
}

// SetExceptionHandler replaces the loop's exception handler; nil restores the default,
// which writes one line to stderr. fn runs on the loop goroutine.
func (l *Loop) SetExceptionHandler(fn func(*ErrorContext)) error {
	if err := l.check(); err != nil {
		return err
	}
	if fn == nil {
		return errorOf(C.aiolgo_set_exception_handler(l.ptr, 0))
	}
	h := newHandle(&excEntry{loop: l, fn: fn})
	if rc := C.aiolgo_set_exception_handler(l.ptr, C.uintptr_t(h)); rc < 0 {
		deleteHandle(h)
		return Errno(rc)
	}
	return nil
}
