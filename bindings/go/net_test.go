package aioloop

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// echoServer echoes with asyncio's flow-control pattern and records what it saw.
type echoServer struct {
	BaseProtocol
	lost    chan error // optional
	paused  int
	resumed int
}

func (e *echoServer) DataReceived(t *Transport, data []byte) { t.Write(data) }
func (e *echoServer) PauseWriting(t *Transport)              { e.paused++; t.PauseReading() }
func (e *echoServer) ResumeWriting(t *Transport)             { e.resumed++; t.ResumeReading() }
func (e *echoServer) ConnectionLost(t *Transport, err error) {
	if e.lost != nil {
		e.lost <- err
	}
}

// sender writes payload, half-closes, collects the reply and stops the loop when lost.
type sender struct {
	BaseProtocol
	loop     *Loop
	payload  []byte
	chunk    int
	got      bytes.Buffer
	eof      bool
	err      error
	lostDone bool
	t        *Transport
}

func (s *sender) ConnectionMade(t *Transport) {
	s.t = t
	p := s.payload
	for len(p) > 0 {
		n := s.chunk
		if n == 0 || n > len(p) {
			n = len(p)
		}
		if err := t.Write(p[:n]); err != nil {
			panic(err)
		}
		p = p[n:]
	}
	if err := t.WriteEOF(); err != nil {
		panic(err)
	}
}
func (s *sender) DataReceived(t *Transport, data []byte) { s.got.Write(data) }
func (s *sender) EOFReceived(t *Transport) bool          { s.eof = true; return false }
func (s *sender) ConnectionLost(t *Transport, err error) {
	s.err, s.lostDone = err, true
	s.loop.Stop()
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func listenTCP(t *testing.T, l *Loop, f func() Protocol) (*Server, int) {
	t.Helper()
	srv, err := l.Listen(ServerConfig{Host: "127.0.0.1"}, f)
	if err != nil {
		t.Fatal(err)
	}
	addrs := srv.Addrs()
	if len(addrs) != 1 {
		t.Fatalf("addrs %v", addrs)
	}
	a := addrs[0].(*net.TCPAddr)
	if !a.IP.Equal(net.IPv4(127, 0, 0, 1)) || a.Port == 0 {
		t.Fatalf("addr %v", a)
	}
	return srv, a.Port
}

func dialDone(t *testing.T, l *Loop) func(*Transport, error) {
	return func(tr *Transport, err error) {
		if err != nil {
			t.Errorf("dial: %v", err)
			l.Stop()
		}
	}
}

func TestEchoTCP(t *testing.T) {
	l := newLoop(t)
	srv, port := listenTCP(t, l, func() Protocol { return &echoServer{} })
	want := payload(1 << 20)
	c := &sender{loop: l, payload: want, chunk: 10000}
	var doneT *Transport
	if _, err := l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, c, func(tr *Transport, err error) {
		if err != nil {
			t.Errorf("dial: %v", err)
			l.Stop()
			return
		}
		doneT = tr
		ra := tr.RemoteAddr().(*net.TCPAddr)
		la := tr.LocalAddr().(*net.TCPAddr)
		if ra.Port != port || la.Port == 0 || la.Port == port {
			t.Errorf("addresses: local %v remote %v", la, ra)
		}
		if fd, err := tr.Fileno(); err != nil || fd < 0 {
			t.Errorf("Fileno: %d %v", fd, err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, l)
	if doneT != c.t {
		t.Fatal("done got another transport")
	}
	if !bytes.Equal(c.got.Bytes(), want) || !c.eof || c.err != nil {
		t.Fatalf("got %d bytes (want %d), eof=%v err=%v", c.got.Len(), len(want), c.eof, c.err)
	}
	// After ConnectionLost the transport refuses calls; addresses stay readable.
	if err := c.t.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after lost: %v", err)
	}
	if c.t.RemoteAddr() == nil || !c.t.IsClosing() || c.t.IsReading() {
		t.Fatal("state after lost")
	}
	if c.t.Close() != nil || c.t.Abort() != nil {
		t.Fatal("Close/Abort after lost")
	}
	srv.Close()
	if srv.IsServing() {
		t.Fatal("still serving")
	}
}

func TestEchoUnix(t *testing.T) {
	l := newLoop(t)
	path := filepath.Join(t.TempDir(), "echo.sock")
	srv, err := l.Listen(ServerConfig{UnixPath: path}, func() Protocol { return &echoServer{} })
	if err != nil {
		t.Fatal(err)
	}
	if a := srv.Addrs(); len(a) != 1 || a[0].String() != path || a[0].Network() != "unix" {
		t.Fatalf("addrs %v", a)
	}
	want := payload(300000)
	c := &sender{loop: l, payload: want}
	if _, err := l.Dial(DialConfig{UnixPath: path}, c, dialDone(t, l)); err != nil {
		t.Fatal(err)
	}
	mustRun(t, l)
	if !bytes.Equal(c.got.Bytes(), want) || c.err != nil {
		t.Fatalf("got %d bytes, err %v", c.got.Len(), c.err)
	}
	if ra, ok := c.t.RemoteAddr().(*net.UnixAddr); !ok || ra.Name != path {
		t.Fatalf("remote %v", c.t.RemoteAddr())
	}
	// The stdlib can talk to it too (from another goroutine while the loop runs).
	go func() {
		defer l.CallSoonThreadsafe(func() { l.Stop() })
		nc, err := net.Dial("unix", path)
		if err != nil {
			t.Error(err)
			return
		}
		defer nc.Close()
		nc.Write([]byte("ping"))
		b := make([]byte, 4)
		if _, err := nc.Read(b); err != nil || string(b) != "ping" {
			t.Errorf("read %q %v", b, err)
		}
	}()
	mustRun(t, l)
}

// halfCloser answers after the peer's EOF, keeping its side open (EOFReceived true).
type halfCloser struct {
	BaseProtocol
	got []byte
}

func (h *halfCloser) DataReceived(t *Transport, data []byte) { h.got = append(h.got, data...) }
func (h *halfCloser) EOFReceived(t *Transport) bool {
	t.WriteString(fmt.Sprintf("got %d bytes", len(h.got)))
	t.Writev([][]byte{[]byte(", "), nil, []byte("bye")})
	t.Close()
	return true
}

func TestHalfClose(t *testing.T) {
	l := newLoop(t)
	_, port := listenTCP(t, l, func() Protocol { return &halfCloser{} })
	c := &sender{loop: l, payload: payload(5000)}
	if _, err := l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, c, func(tr *Transport, err error) {
		if err != nil {
			t.Error(err)
			l.Stop()
			return
		}
		// After WriteEOF the client can still read, but not write.
		if err := tr.Write([]byte("x")); !errors.Is(err, ErrState) {
			t.Errorf("Write after WriteEOF: %v", err)
		}
		if !tr.CanWriteEOF() {
			t.Error("CanWriteEOF")
		}
	}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, l)
	if got := c.got.String(); got != "got 5000 bytes, bye" || !c.eof || c.err != nil {
		t.Fatalf("got %q eof=%v err=%v", got, c.eof, c.err)
	}
}

// slowReader pauses reading at connection and resumes later.
type slowReader struct {
	BaseProtocol
	loop *Loop
	n    int
	want int
}

func (s *slowReader) ConnectionMade(t *Transport) {
	t.PauseReading()
	if t.IsReading() {
		panic("still reading")
	}
}
func (s *slowReader) DataReceived(t *Transport, data []byte) {
	s.n += len(data)
	if s.n >= s.want {
		t.Close()
	}
}
func (s *slowReader) ConnectionLost(t *Transport, err error) { s.loop.Stop() }

// flooder writes until paused, and again on each resume, up to total bytes.
type flooder struct {
	BaseProtocol
	total, sent     int
	paused, resumed int
	isPaused        bool
	maxBuf          int
}

func (f *flooder) ConnectionMade(t *Transport) {
	if err := t.SetWriteBufferLimits(64*1024, 16*1024); err != nil {
		panic(err)
	}
	if h, lo, err := t.WriteBufferLimits(); err != nil || h != 64*1024 || lo != 16*1024 {
		panic(fmt.Sprint(h, lo, err))
	}
	if err := t.SetWriteBufferLimits(1, 2); !errors.Is(err, ErrInvalid) {
		panic(err)
	}
	f.fill(t)
}
func (f *flooder) fill(t *Transport) {
	chunk := payload(32 * 1024)
	for f.sent < f.total && !f.isPaused {
		t.Write(chunk)
		f.sent += len(chunk)
		if n := t.WriteBufferSize(); n > f.maxBuf {
			f.maxBuf = n
		}
		// pause_writing runs after this callback returns: check the buffer ourselves.
		if t.WriteBufferSize() > 64*1024 {
			break
		}
	}
	if f.sent >= f.total {
		t.Close()
	}
}
func (f *flooder) PauseWriting(t *Transport) { f.paused++; f.isPaused = true }
func (f *flooder) ResumeWriting(t *Transport) {
	f.resumed++
	f.isPaused = false
	f.fill(t)
}

func TestFlowControlSlowReader(t *testing.T) {
	l := newLoop(t)
	const total = 8 << 20
	f := &flooder{total: total}
	_, port := listenTCP(t, l, func() Protocol { return f })
	r := &slowReader{loop: l, want: total}
	var rt *Transport
	if _, err := l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, r, func(tr *Transport, err error) {
		if err != nil {
			t.Error(err)
			l.Stop()
			return
		}
		rt = tr
		l.CallLater(100*time.Millisecond, func() { rt.ResumeReading() })
	}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, l)
	if r.n != total {
		t.Fatalf("read %d of %d", r.n, total)
	}
	if f.paused == 0 || f.resumed == 0 {
		t.Fatalf("paused %d resumed %d", f.paused, f.resumed)
	}
	if f.maxBuf > 4<<20 {
		t.Fatalf("write buffer grew to %d despite flow control", f.maxBuf)
	}
}

// closer closes or aborts from inside a callback.
type closer struct {
	BaseProtocol
	mode string
	lost chan error
}

func (c *closer) ConnectionMade(t *Transport) {
	switch c.mode {
	case "abort-made":
		t.Abort()
	case "close-made":
		t.WriteString("bye")
		t.Close()
	}
}
func (c *closer) DataReceived(t *Transport, data []byte) {
	if c.mode == "close-data" {
		t.Close()
		t.Close() // idempotent
		if err := t.Write(data); !errors.Is(err, ErrClosed) {
			panic(err)
		}
	}
}
func (c *closer) ConnectionLost(t *Transport, err error) { c.lost <- err }

func TestCloseFromCallbacks(t *testing.T) {
	for _, mode := range []string{"abort-made", "close-made", "close-data"} {
		t.Run(mode, func(t *testing.T) {
			l := newLoop(t)
			lost := make(chan error, 1)
			srv, port := listenTCP(t, l, func() Protocol { return &closer{mode: mode, lost: lost} })
			c := &sender{loop: l, payload: []byte("hello")}
			if _, err := l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, c, nil); err != nil {
				t.Fatal(err)
			}
			mustRun(t, l)
			err := <-lost
			switch mode {
			case "abort-made":
				if !errors.Is(err, ErrCanceled) {
					t.Fatalf("server lost: %v", err)
				}
			case "close-made":
				if err != nil || c.got.String() != "bye" {
					t.Fatalf("server lost: %v, client got %q", err, c.got.String())
				}
			default:
				if err != nil {
					t.Fatalf("server lost: %v", err)
				}
			}
			// Close the server from inside a callback, then wait for it.
			waited := false
			l.CallSoon(func() {
				srv.Close()
				srv.Close()
				srv.WaitClosed(func() { waited = true; l.Stop() })
			})
			mustRun(t, l)
			if !waited || srv.IsServing() || srv.Addrs() != nil {
				t.Fatal("server not closed")
			}
			// After it is freed, WaitClosed still calls back (soon).
			srv.WaitClosed(func() { l.Stop() })
			mustRun(t, l)
		})
	}
}

// The factory may refuse (nil) and may close its own server.
func TestFactoryRefusesAndClosesServer(t *testing.T) {
	l := newLoop(t)
	var srv *Server
	calls := 0
	srv, port := listenTCP(t, l, func() Protocol {
		calls++
		srv.Close()
		return nil
	})
	c := &sender{loop: l, payload: []byte("x")}
	l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, c, nil)
	mustRun(t, l)
	if calls != 1 || c.got.Len() != 0 {
		t.Fatalf("calls %d got %q", calls, c.got.String())
	}
	if c.err != nil && !errors.Is(c.err, syscall.ECONNRESET) {
		t.Fatalf("client: %v", c.err)
	}
}

type panicky struct {
	BaseProtocol
	where string
}

func (p *panicky) ConnectionMade(t *Transport) {
	if p.where == "made" {
		panic("made")
	}
}
func (p *panicky) DataReceived(t *Transport, data []byte) {
	if p.where == "data" {
		panic("data")
	}
}
func (p *panicky) EOFReceived(t *Transport) bool {
	if p.where == "eof" {
		panic("eof")
	}
	return false
}

func TestPanicInProtocol(t *testing.T) {
	for _, where := range []string{"made", "data", "eof", "factory"} {
		t.Run(where, func(t *testing.T) {
			l := newLoop(t)
			srvLost := make(chan error, 1)
			_, port := listenTCP(t, l, func() Protocol {
				if where == "factory" {
					panic("factory")
				}
				return &panickyLost{panicky: panicky{where: where}, lost: srvLost}
			})
			c := &sender{loop: l, payload: []byte("hello")}
			l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, c, nil)
			err := run(t, l, 10*time.Second)
			var pe *PanicError
			if !errors.As(err, &pe) || pe.Value != where {
				t.Fatalf("Run: %v", err)
			}
			// The process survives and the loop goes on: the aborted connection's
			// ConnectionLost(ErrCanceled) comes next, and the client sees the reset.
			for deadline := time.Now().Add(5 * time.Second); !c.lostDone || (where != "factory" && len(srvLost) == 0); {
				if time.Now().After(deadline) {
					t.Fatal("connection not aborted")
				}
				if err := l.RunOnce(); err != nil {
					t.Fatal(err)
				}
			}
			if where != "factory" {
				if err := <-srvLost; !errors.Is(err, ErrCanceled) {
					t.Fatalf("server lost: %v", err)
				}
			}
		})
	}
}

type panickyLost struct {
	panicky
	lost chan error
}

func (p *panickyLost) ConnectionLost(t *Transport, err error) { p.lost <- err }

// bufProto reads into its own small buffers.
type bufProto struct {
	BaseProtocol
	buf     []byte
	got     []byte
	calls   int
	hints   []int
	lastLen int
}

func (b *bufProto) GetBuffer(t *Transport, hint int) []byte {
	b.calls++
	b.hints = append(b.hints, hint)
	if b.buf == nil {
		b.buf = make([]byte, 1000)
	}
	return b.buf
}
func (b *bufProto) BufferUpdated(t *Transport, n int) {
	b.got = append(b.got, b.buf[:n]...)
	b.lastLen = n
}
func (b *bufProto) DataReceived(t *Transport, data []byte) {
	panic("DataReceived on a BufferedProtocol")
}
func (b *bufProto) EOFReceived(t *Transport) bool {
	t.Write(b.got) // echo it all back at EOF
	return false
}

func TestBufferedProtocol(t *testing.T) {
	l := newLoop(t)
	var bp *bufProto
	_, port := listenTCP(t, l, func() Protocol { bp = &bufProto{}; return bp })
	want := payload(100000)
	c := &sender{loop: l, payload: want}
	l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, c, dialDone(t, l))
	mustRun(t, l)
	if !bytes.Equal(c.got.Bytes(), want) || !bytes.Equal(bp.got, want) {
		t.Fatalf("got %d / %d bytes", c.got.Len(), len(bp.got))
	}
	if bp.calls < 100 {
		t.Fatalf("GetBuffer called %d times", bp.calls)
	}
}

// A client can be buffered too, and switch protocols mid-stream.
type switcher struct {
	sender
	next Protocol
}

func (s *switcher) DataReceived(t *Transport, data []byte) {
	s.got.Write(data)
	t.SetProtocol(s.next)
}

func TestSetProtocol(t *testing.T) {
	l := newLoop(t)
	_, port := listenTCP(t, l, func() Protocol { return &echoServer{} })
	next := &bufProto{}
	sw := &switcher{sender: sender{loop: l, payload: payload(50000)}, next: &stopOnLost{bufProto: next, loop: l}}
	l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, sw, dialDone(t, l))
	mustRun(t, l)
	all := append(sw.got.Bytes(), next.got...)
	if !bytes.Equal(all, payload(50000)) {
		t.Fatalf("got %d+%d bytes", sw.got.Len(), len(next.got))
	}
}

type stopOnLost struct {
	*bufProto
	loop *Loop
}

func (s *stopOnLost) EOFReceived(t *Transport) bool          { return false }
func (s *stopOnLost) ConnectionLost(t *Transport, err error) { s.loop.Stop() }

func TestDialErrors(t *testing.T) {
	l := newLoop(t)
	// A port nobody listens on: grab one and close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var derr error
	p := &BaseProtocol{}
	if _, err := l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, p, func(tr *Transport, err error) {
		if tr != nil {
			t.Error("transport on failure")
		}
		derr = err
		l.Stop()
	}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, l)
	if !errors.Is(derr, syscall.ECONNREFUSED) {
		t.Fatalf("dial: %v", derr)
	}
	var e Errno
	if !errors.As(derr, &e) || e.Name() != "ECONNREFUSED" {
		t.Fatalf("errno %v", derr)
	}

	// Cancel before it completes.
	derr = nil
	dh, err := l.Dial(DialConfig{UnixPath: filepath.Join(t.TempDir(), "nope")}, p, func(tr *Transport, err error) {
		derr = err
		l.Stop()
	})
	if err != nil {
		t.Fatal(err)
	}
	if !dh.Cancel() {
		t.Fatal("Cancel returned false")
	}
	mustRun(t, l)
	if !errors.Is(derr, ErrCanceled) || dh.Cancel() {
		t.Fatalf("cancelled dial: %v", derr)
	}

	// Argument errors come back directly and nothing runs.
	if _, err := l.Dial(DialConfig{Port: 70000}, p, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad port: %v", err)
	}
	if _, err := l.Listen(ServerConfig{Host: "127.0.0.1", Port: port}, nil); err == nil {
		t.Fatal("nil factory")
	}
	// EADDRINUSE from a second server on the same port.
	srv, port2 := listenTCP(t, l, func() Protocol { return nil })
	if _, err := l.Listen(ServerConfig{Host: "127.0.0.1", Port: port2}, func() Protocol { return nil }); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second listen: %v", err)
	}
	srv.Close()
}

// Loop.Close aborts live connections (ConnectionLost(ErrCanceled) runs inside Close),
// runs pending wait_closed callbacks and deletes every handle (checked by newLoop).
func TestLoopCloseTearsDown(t *testing.T) {
	l := newLoop(t)
	srvLost := make(chan error, 1)
	srv, port := listenTCP(t, l, func() Protocol { return &echoServer{lost: srvLost} })
	cl := &closer{lost: make(chan error, 1)}
	var ct *Transport
	l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, cl, func(tr *Transport, err error) {
		ct = tr
		l.CallLater(20*time.Millisecond, func() { l.Stop() })
	})
	l.CallLater(time.Hour, func() {})
	mustRun(t, l)
	if ct == nil {
		t.Fatal("not connected")
	}
	waited := false
	srv.WaitClosed(func() { waited = true })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !waited {
		t.Fatal("wait_closed did not run at Close")
	}
	if err := <-cl.lost; !errors.Is(err, ErrCanceled) {
		t.Fatalf("client lost: %v", err)
	}
	if err := <-srvLost; !errors.Is(err, ErrCanceled) {
		t.Fatalf("server lost: %v", err)
	}
	if err := ct.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	if srv.Close() != nil || srv.CloseClients() != nil || srv.AbortClients() != nil {
		t.Fatal("server calls after loop Close")
	}
	if _, err := l.Listen(ServerConfig{}, func() Protocol { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Listen after Close: %v", err)
	}
}

func TestServerCloseClients(t *testing.T) {
	for _, abort := range []bool{false, true} {
		l := newLoop(t)
		srvLost := make(chan error, 2)
		srv, port := listenTCP(t, l, func() Protocol { return &echoServer{lost: srvLost} })
		connected := 0
		for i := 0; i < 2; i++ {
			l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, &BaseProtocol{}, func(tr *Transport, err error) {
				if err != nil {
					t.Error(err)
				}
				connected++
				if connected == 2 {
					// Let the server accept both.
					l.CallLater(20*time.Millisecond, func() {
						srv.Close()
						if abort {
							srv.AbortClients()
						} else {
							srv.CloseClients()
						}
						srv.WaitClosed(func() { l.Stop() })
					})
				}
			})
		}
		mustRun(t, l)
		for i := 0; i < 2; i++ {
			err := <-srvLost
			if abort != errors.Is(err, ErrCanceled) {
				t.Fatalf("abort=%v lost: %v", abort, err)
			}
		}
	}
}

func TestExceptionHandler(t *testing.T) {
	l := newLoop(t)
	var reports []*ErrorContext
	if err := l.SetExceptionHandler(func(c *ErrorContext) { reports = append(reports, c) }); err != nil {
		t.Fatal(err)
	}
	// An empty buffer from GetBuffer aborts the transport with EINVAL and a report.
	lost := make(chan error, 1)
	_, port := listenTCP(t, l, func() Protocol { return &emptyBuf{lost: lost} })
	c := &sender{loop: l, payload: []byte("x")}
	l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, c, nil)
	mustRun(t, l)
	if err := <-lost; !errors.Is(err, ErrInvalid) {
		t.Fatalf("lost: %v", err)
	}
	if len(reports) != 1 || !errors.Is(reports[0].Err, ErrInvalid) || reports[0].Message == "" ||
		reports[0].Transport == nil {
		t.Fatalf("reports %+v", reports)
	}
	// Replacing and restoring deletes the old handler's handle.
	l.SetExceptionHandler(func(*ErrorContext) {})
	l.SetExceptionHandler(nil)
	// One still set at Close is destroyed by Close (newLoop checks the handles).
	l.SetExceptionHandler(func(*ErrorContext) {})
}

type emptyBuf struct {
	BaseProtocol
	lost chan error
}

func (e *emptyBuf) GetBuffer(t *Transport, hint int) []byte { return nil }
func (e *emptyBuf) BufferUpdated(t *Transport, n int)       {}
func (e *emptyBuf) ConnectionLost(t *Transport, err error)  { e.lost <- err }

func TestAdopt(t *testing.T) {
	l := newLoop(t)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Adopt(fds[0], &echoServer{}); err != nil {
		t.Fatal(err)
	}
	c := &sender{loop: l, payload: []byte("adopted")}
	if err := l.Adopt(fds[1], c); err != nil {
		t.Fatal(err)
	}
	mustRun(t, l)
	if c.got.String() != "adopted" {
		t.Fatalf("got %q", c.got.String())
	}
	if err := l.Adopt(-1, c); err == nil {
		t.Fatal("Adopt(-1)")
	}
}
