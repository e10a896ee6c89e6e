package aioloop

import (
	"os"
	"sync/atomic"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if n := liveHandles.Load(); n != 0 && code == 0 {
		println("aioloop: cgo handles still live after all tests:", n)
		code = 1
	}
	os.Exit(code)
}

// newLoop makes a loop closed at the end of the test, and checks that closing it deleted
// every cgo.Handle the test made.
func newLoop(t testing.TB) *Loop {
	t.Helper()
	before := liveHandles.Load()
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if n := liveHandles.Load(); n != before {
			t.Errorf("live cgo handles after Close: %d, want %d", n, before)
		}
	})
	return l
}

// run runs the loop until Stop, failing the test if that takes longer than d.
func run(t testing.TB, l *Loop, d time.Duration) error {
	t.Helper()
	var timedOut atomic.Bool
	timer := time.AfterFunc(d, func() {
		timedOut.Store(true)
		l.Stop()
	})
	err := l.Run()
	timer.Stop()
	if timedOut.Load() {
		t.Fatalf("loop still running after %v", d)
	}
	return err
}

func mustRun(t testing.TB, l *Loop) {
	t.Helper()
	if err := run(t, l, 10*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
