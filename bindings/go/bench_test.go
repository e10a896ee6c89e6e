package aioloop

import (
	"net"
	"path/filepath"
	"testing"
)

// pump writes total bytes in chunks, honouring flow control, and stops the loop once
// the echo has all come back.
type pump struct {
	BaseProtocol
	loop        *Loop
	chunk       []byte
	total       int
	sent, recvd int
	paused      bool
}

func (p *pump) ConnectionMade(t *Transport) { p.fill(t) }

func (p *pump) fill(t *Transport) {
	for !p.paused && p.sent < p.total && t.WriteBufferSize() <= 64*1024 {
		n := min(len(p.chunk), p.total-p.sent)
		t.Write(p.chunk[:n])
		p.sent += n
	}
}

func (p *pump) PauseWriting(t *Transport)  { p.paused = true }
func (p *pump) ResumeWriting(t *Transport) { p.paused = false; p.fill(t) }

func (p *pump) DataReceived(t *Transport, data []byte) {
	p.recvd += len(data)
	if p.recvd >= p.total {
		t.Close()
		p.loop.Stop()
		return
	}
	p.fill(t)
}

func benchEcho(b *testing.B, unix bool) {
	l := newLoop(b)
	factory := func() Protocol { return &echoServer{} }
	var cfg DialConfig
	if unix {
		cfg.UnixPath = filepath.Join(b.TempDir(), "bench.sock")
		if _, err := l.Listen(ServerConfig{UnixPath: cfg.UnixPath}, factory); err != nil {
			b.Fatal(err)
		}
	} else {
		srv, err := l.Listen(ServerConfig{Host: "127.0.0.1"}, factory)
		if err != nil {
			b.Fatal(err)
		}
		cfg.Host, cfg.Port = "127.0.0.1", srv.Addrs()[0].(*net.TCPAddr).Port
	}
	const chunk = 64 * 1024
	p := &pump{loop: l, chunk: payload(chunk), total: b.N * chunk}
	b.SetBytes(chunk)
	b.ResetTimer()
	if _, err := l.Dial(cfg, p, func(t *Transport, err error) {
		if err != nil {
			b.Error(err)
			l.Stop()
		}
	}); err != nil {
		b.Fatal(err)
	}
	if err := l.Run(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if p.recvd != p.total {
		b.Fatalf("echoed %d of %d bytes", p.recvd, p.total)
	}
}

// BenchmarkEcho measures echo throughput over loopback TCP: one client pumping 64 KiB
// writes through an echo server on the same loop (MB/s counts one direction).
func BenchmarkEcho(b *testing.B) { benchEcho(b, false) }

// BenchmarkEchoUnix is BenchmarkEcho over a Unix socket.
func BenchmarkEchoUnix(b *testing.B) { benchEcho(b, true) }
