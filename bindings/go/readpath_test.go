package aioloop

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"
)

// The read path: plain protocols on the plain C vtable (data_received), BufferedProtocols
// on the buffered one (get_buffer + buffer_updated), and SetProtocol switching between
// them either way, also from inside GetBuffer.

// stageState is shared by the protocols one connection switches through.
type stageState struct {
	got    []byte
	stages []Protocol // switched to in turn
	errs   []string
}

func (s *stageState) errorf(format string, a ...any) {
	if len(s.errs) < 5 {
		s.errs = append(s.errs, fmt.Sprintf(format, a...))
	}
}

func (s *stageState) next(t *Transport) {
	if len(s.stages) == 0 {
		return
	}
	p := s.stages[0]
	s.stages = s.stages[1:]
	if err := t.SetProtocol(p); err != nil {
		s.errorf("SetProtocol: %v", err)
	}
}

func (s *stageState) eof(t *Transport) bool {
	t.Write(s.got) // echo it all back at EOF
	return false
}

// plainStage reads reads times, then switches to the next stage.
type plainStage struct {
	BaseProtocol
	s     *stageState
	after int
	reads int
}

func (p *plainStage) DataReceived(t *Transport, data []byte) {
	// The first read after a switch made inside GetBuffer comes through the buffered
	// vtable (the bytes read into the old protocol's buffer); every later one must come
	// through data_received.
	if p.reads > 0 && t.c.cBuffered {
		p.s.errorf("plain stage read %d on the buffered vtable", p.reads)
	}
	p.s.got = append(p.s.got, data...)
	if p.reads++; p.reads == p.after {
		p.s.next(t)
	}
}
func (p *plainStage) EOFReceived(t *Transport) bool { return p.s.eof(t) }

// bufStage reads into a small buffer; after reads reads it switches to the next stage,
// inside GetBuffer (inGet) or inside BufferUpdated.
type bufStage struct {
	BaseProtocol
	s     *stageState
	after int
	inGet bool
	reads int
	buf   []byte // its own allocation: pinning &buf[0] must not reach Go pointers
}

func (b *bufStage) GetBuffer(t *Transport, hint int) []byte {
	if !t.c.cBuffered {
		b.s.errorf("GetBuffer on the plain vtable")
	}
	if b.inGet && b.reads == b.after-1 {
		b.s.next(t) // this read is reported to the next stage
	}
	if b.buf == nil {
		b.buf = make([]byte, 1000)
	}
	return b.buf
}
func (b *bufStage) BufferUpdated(t *Transport, n int) {
	b.s.got = append(b.s.got, b.buf[:n]...)
	if b.reads++; !b.inGet && b.reads == b.after {
		b.s.next(t)
	}
}
func (b *bufStage) DataReceived(t *Transport, data []byte) {
	b.s.errorf("DataReceived on a BufferedProtocol")
}
func (b *bufStage) EOFReceived(t *Transport) bool { return b.s.eof(t) }

func newStages() (Protocol, *stageState) {
	s := &stageState{}
	first := &bufStage{s: s, after: 3, inGet: true}
	s.stages = []Protocol{
		&plainStage{s: s, after: 2},             // buffered -> plain inside GetBuffer
		&bufStage{s: s, after: 3},               // plain -> buffered inside DataReceived
		&plainStage{s: s, after: 1},             // buffered -> plain inside BufferUpdated
		&bufStage{s: s, after: 2, inGet: true},  // plain -> buffered
		&bufStage{s: s, after: 2, inGet: false}, // buffered -> buffered inside GetBuffer (fed by copy)
		&plainStage{s: s},                       // buffered -> plain; reads the rest
	}
	return first, s
}

func checkStages(t *testing.T, s *stageState, c *sender, want []byte) {
	t.Helper()
	if len(s.errs) > 0 {
		t.Fatalf("errors: %v", s.errs)
	}
	if len(s.stages) != 0 {
		t.Fatalf("%d stages not reached (got %d bytes)", len(s.stages), len(s.got))
	}
	if !bytes.Equal(s.got, want) || !bytes.Equal(c.got.Bytes(), want) {
		t.Fatalf("got %d / echoed %d of %d bytes", len(s.got), c.got.Len(), len(want))
	}
}

func TestReadPathSwitching(t *testing.T) {
	want := payload(2 << 20)
	t.Run("server", func(t *testing.T) {
		l := newLoop(t)
		var s *stageState
		_, port := listenTCP(t, l, func() Protocol {
			var p Protocol
			p, s = newStages()
			return p
		})
		c := &sender{loop: l, payload: want}
		l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, c, dialDone(t, l))
		mustRun(t, l)
		checkStages(t, s, c, want)
	})
	t.Run("adopt", func(t *testing.T) {
		l := newLoop(t)
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		p, s := newStages()
		if err := l.Adopt(fds[0], p); err != nil {
			t.Fatal(err)
		}
		c := &sender{loop: l, payload: want}
		if err := l.Adopt(fds[1], c); err != nil {
			t.Fatal(err)
		}
		mustRun(t, l)
		checkStages(t, s, c, want)
	})
}

// vtableProbe records which C vtable each read came through.
type vtableProbe struct {
	echoServer
	plainOnBuffered int
}

func (v *vtableProbe) DataReceived(t *Transport, data []byte) {
	if t.c.cBuffered {
		v.plainOnBuffered++
	}
	t.Write(data)
}

type bufProbe struct {
	bufProto
	onPlain int
}

func (b *bufProbe) GetBuffer(t *Transport, hint int) []byte {
	if !t.c.cBuffered {
		b.onPlain++
	}
	return b.bufProto.GetBuffer(t, hint)
}

func TestReadPathVtable(t *testing.T) {
	l := newLoop(t)
	var plain *vtableProbe
	_, port := listenTCP(t, l, func() Protocol { plain = &vtableProbe{}; return plain })
	want := payload(300000)
	c := &sender{loop: l, payload: want}
	l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, c, dialDone(t, l))
	mustRun(t, l)
	if !bytes.Equal(c.got.Bytes(), want) || plain.plainOnBuffered != 0 {
		t.Fatalf("echoed %d bytes; %d plain reads on the buffered vtable",
			c.got.Len(), plain.plainOnBuffered)
	}

	// A BufferedProtocol dialled: switched to the buffered vtable in connection_made.
	_, port = listenTCP(t, l, func() Protocol { return &echoServer{} })
	bc := &bufClient{loop: l}
	done := false
	l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, bc, func(tr *Transport, err error) {
		if err != nil {
			t.Error(err)
			l.Stop()
			return
		}
		if !tr.c.cBuffered {
			t.Error("dialled BufferedProtocol on the plain vtable")
		}
		done = true
		tr.Write(want[:5000])
		tr.WriteEOF()
	})
	mustRun(t, l)
	if !done || !bytes.Equal(bc.got, want[:5000]) || bc.calls < 5 || bc.onPlain != 0 {
		t.Fatalf("done %v, got %d bytes in %d GetBuffer calls (%d on the plain vtable)",
			done, len(bc.got), bc.calls, bc.onPlain)
	}
}

type bufClient struct {
	bufProbe
	loop *Loop
}

func (b *bufClient) EOFReceived(t *Transport) bool          { return false }
func (b *bufClient) ConnectionLost(t *Transport, err error) { b.loop.Stop() }
