package aioloop

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	if Version() == "" {
		t.Fatal("empty version")
	}
}

func TestTimersOrder(t *testing.T) {
	l := newLoop(t)
	var got []string
	add := func(s string) func() { return func() { got = append(got, s) } }
	must := func(_ *Timer, err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.CallLater(30*time.Millisecond, add("t30")))
	must(l.CallLater(10*time.Millisecond, add("t10a")))
	must(l.CallLater(20*time.Millisecond, add("t20")))
	must(l.CallLater(10*time.Millisecond, add("t10b"))) // same delay: scheduling order
	must(l.CallLater(-time.Second, add("t0")))          // negative counts as 0
	cancelled, err := l.CallLater(15*time.Millisecond, add("cancelled"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CallSoon(add("soon1")); err != nil {
		t.Fatal(err)
	}
	if err := l.CallSoon(func() {
		got = append(got, "soon2")
		// Queued from a callback: runs in a later iteration, after soon3.
		l.CallSoon(add("nested"))
	}); err != nil {
		t.Fatal(err)
	}
	l.CallSoon(add("soon3"))
	if !cancelled.Cancel() {
		t.Fatal("Cancel of a pending timer returned false")
	}
	if cancelled.Cancel() {
		t.Fatal("second Cancel returned true")
	}
	start := time.Now()
	l.CallLater(40*time.Millisecond, func() { l.Stop() })
	mustRun(t, l)
	if el := time.Since(start); el < 40*time.Millisecond {
		t.Fatalf("timer fired early: %v", el)
	}
	want := []string{"soon1", "soon2", "soon3", "t0", "nested", "t10a", "t10b", "t20", "t30"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// t0 is due at once: it runs in the first or second batch; the rest is ordered.
	for i, w := range want {
		if got[i] != w && !(i == 3 || i == 4) {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestTimerCancelInsideAndAfter(t *testing.T) {
	l := newLoop(t)
	var tm *Timer
	var inside bool
	tm, _ = l.CallLater(time.Millisecond, func() {
		inside = tm.Cancel() // running: nothing to prevent
		l.Stop()
	})
	mustRun(t, l)
	if inside {
		t.Fatal("Cancel inside its own callback returned true")
	}
	if tm.Cancel() {
		t.Fatal("Cancel after the run returned true")
	}
	var nilTimer *Timer
	if nilTimer.Cancel() {
		t.Fatal("nil Timer")
	}
	if tm.When() <= 0 || l.Now() < tm.When() {
		t.Fatalf("When %v, Now %v", tm.When(), l.Now())
	}
}

func TestPendingTimersDroppedAtClose(t *testing.T) {
	before := liveHandles.Load()
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	tm, _ := l.CallLater(time.Hour, func() { ran = true })
	l.CallSoon(func() { ran = true })
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	if err := l.AddReader(p[0], func() { ran = true }); err != nil {
		t.Fatal(err)
	}
	if n := liveHandles.Load() - before; n != 3 {
		t.Fatalf("%d live handles, want 3", n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if ran || tm.Cancel() {
		t.Fatal("callback ran or timer still cancellable after Close")
	}
	if n := liveHandles.Load() - before; n != 0 {
		t.Fatalf("%d live handles after Close", n)
	}
	if err := l.CallSoon(func() {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("CallSoon after Close: %v", err)
	}
	if err := l.Run(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
	if err := l.Stop(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stop after Close: %v", err)
	}
}

func TestStopFromGoroutine(t *testing.T) {
	l := newLoop(t)
	go func() {
		time.Sleep(20 * time.Millisecond)
		if err := l.Stop(); err != nil {
			t.Error(err)
		}
	}()
	// Nothing scheduled: Run blocks (the Loop's hold keeps it alive) until Stop.
	mustRun(t, l)
	// A stop before Run makes the next run do one iteration.
	l.Stop()
	mustRun(t, l)
}

func TestCallSoonThreadsafe(t *testing.T) {
	l := newLoop(t)
	const G, N = 4, 200
	seen := make([]int, G) // loop goroutine only
	total := 0
	var wg sync.WaitGroup
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < N; i++ {
				i := i
				if err := l.CallSoonThreadsafe(func() {
					if seen[g] != i {
						t.Errorf("goroutine %d: got %d, want %d (posting order)", g, i, seen[g])
					}
					seen[g]++
					total++
					if total == G*N {
						l.Stop()
					}
				}); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	mustRun(t, l)
	wg.Wait()
	if total != G*N {
		t.Fatalf("ran %d callbacks, want %d", total, G*N)
	}
}

// Goroutines keep posting while the loop runs, stops and closes: nothing may touch
// freed memory, and every handle must be deleted (run under -race).
func TestCallSoonThreadsafeRacesClose(t *testing.T) {
	before := liveHandles.Load()
	for round := 0; round < 5; round++ {
		l, err := New()
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := l.CallSoonThreadsafe(func() {}); err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Error(err)
						}
						return
					}
					l.Stop()
				}
			}()
		}
		for i := 0; i < 3; i++ {
			if err := l.Run(); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		if err := l.CallSoonThreadsafe(func() {}); !errors.Is(err, ErrClosed) {
			t.Fatalf("after Close: %v", err)
		}
	}
	if n := liveHandles.Load() - before; n != 0 {
		t.Fatalf("%d live handles", n)
	}
}

func TestRunStateErrors(t *testing.T) {
	l := newLoop(t)
	var nested, closeErr error
	l.CallSoon(func() {
		nested = l.Run()
		closeErr = l.Close()
		l.Stop()
	})
	mustRun(t, l)
	if !errors.Is(nested, ErrState) || !errors.Is(closeErr, ErrState) {
		t.Fatalf("nested Run: %v, Close in callback: %v", nested, closeErr)
	}
	// RunOnce with something ready runs it and returns.
	ran := false
	l.CallSoon(func() { ran = true })
	if err := l.RunOnce(); err != nil || !ran {
		t.Fatalf("RunOnce: %v ran=%v", err, ran)
	}
	if err := l.RunNoWait(); err != nil {
		t.Fatal(err)
	}
}

func TestPanicInCallback(t *testing.T) {
	l := newLoop(t)
	after := false
	l.CallSoon(func() { panic("boom") })
	l.CallLater(time.Second, func() { after = true })
	err := run(t, l, 10*time.Second)
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" || len(pe.Stack) == 0 {
		t.Fatalf("Run: %v", err)
	}
	if after {
		t.Fatal("loop kept running after the panic")
	}
	// The loop is still usable.
	l.CallSoon(func() { l.Stop() })
	mustRun(t, l)

	// A panic with an error value unwraps to it.
	l.CallSoon(func() { panic(os.ErrNotExist) })
	if err := run(t, l, 10*time.Second); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Run: %v", err)
	}
}

func TestFdWatchers(t *testing.T) {
	l := newLoop(t)
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	var got []byte
	if err := l.AddWriter(p[1], func() {
		syscall.Write(p[1], []byte("x"))
		if ok, err := l.RemoveWriter(p[1]); !ok || err != nil {
			t.Errorf("RemoveWriter: %v %v", ok, err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	// Replacing a reader drops the old one (its handle is deleted by its destroy).
	l.AddReader(p[0], func() { t.Error("replaced reader ran") })
	if err := l.AddReader(p[0], func() {
		var b [16]byte
		n, _ := syscall.Read(p[0], b[:])
		got = append(got, b[:n]...)
		l.RemoveReader(p[0])
		l.Stop()
	}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, l)
	if string(got) != "x" {
		t.Fatalf("got %q", got)
	}
	if ok, err := l.RemoveReader(p[0]); ok || err != nil {
		t.Fatalf("second RemoveReader: %v %v", ok, err)
	}
}

func TestErrno(t *testing.T) {
	e := Errno(-int(syscall.ECONNRESET))
	if !errors.Is(e, syscall.ECONNRESET) || errors.Is(e, syscall.EPIPE) {
		t.Fatal("ECONNRESET")
	}
	if e.Name() != "ECONNRESET" || e.Error() == "" {
		t.Fatalf("name %q msg %q", e.Name(), e.Error())
	}
	if !errors.Is(ErrTimedOut, os.ErrDeadlineExceeded) || !ErrTimedOut.Timeout() ||
		!errors.Is(ErrTimedOut, context.DeadlineExceeded) {
		t.Fatal("ETIMEDOUT")
	}
	if !errors.Is(ErrClosed, net.ErrClosed) || ErrClosed.Name() != "AIOL_ECLOSED" ||
		ErrClosed.Error() != "object is closed" {
		t.Fatalf("ECLOSED: %q %q", ErrClosed.Name(), ErrClosed.Error())
	}
	if !errors.Is(ErrCanceled, context.Canceled) {
		t.Fatal("ECANCELED")
	}
	if !errors.Is(Errno(-int(syscall.EACCES)), os.ErrPermission) {
		t.Fatal("EACCES")
	}
	if _, ok := ErrState.Syscall(); ok {
		t.Fatal("library code mapped to a syscall.Errno")
	}
	var err error = Errno(-int(syscall.EADDRINUSE))
	var se syscall.Errno
	if s, ok := err.(Errno).Syscall(); !ok || s != syscall.EADDRINUSE {
		t.Fatal("Syscall")
	}
	_ = se
}
