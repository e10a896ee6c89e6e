// The conformance scenario server on the Go binding.
//
//	server_go BEHAVIOUR ADDR [key=value ...]
//
// The Go twin of server_asyncio.py (the oracle): same behaviour menu, same trace lines.
// ADDR is a TCP port on 127.0.0.1 (0: ephemeral) or unix:PATH. tls_cert=PATH tls_key=PATH
// (and handshake_timeout_ms=N) serve TLS; a library without TLS answers "unsupported tls"
// and exits 77 (the runner's protocol).
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	aioloop "github.com/libaioloop/aioloop/bindings/go"
)

var (
	behaviour     string
	params        = map[string]string{}
	loop          *aioloop.Loop
	server        *aioloop.Server
	connsLeft     = 1
	serverClosing bool
)

func sparam(k, def string) string {
	if v, ok := params[k]; ok {
		return v
	}
	return def
}

func iparam(k string, def int) int {
	if v, ok := params[k]; ok {
		n, err := strconv.Atoi(v)
		if err == nil {
			return n
		}
	}
	return def
}

func has(k string) bool { _, ok := params[k]; return ok }

func gen(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		j := i % 131072
		b[i] = byte(j*131 + j>>9)
	}
	return b
}

func out(s string) { os.Stdout.WriteString(s + "\n") }

func closeServer() {
	if serverClosing {
		return
	}
	serverClosing = true
	server.Close()
	server.WaitClosed(func() {
		out("wait_closed")
		loop.Stop()
	})
}

type conn struct {
	t                             *aioloop.Transport
	pending, total                int
	aborted, pausedRead, didPause bool
	buf                           []byte
}

func (c *conn) flush() {
	if c.pending > 0 {
		out(fmt.Sprintf("data %d", c.pending))
		c.pending = 0
	}
}

func (c *conn) event(s string) { c.flush(); out(s) }

func (c *conn) ConnectionMade(t *aioloop.Transport) {
	c.t = t
	c.event("made")
	if has("high") {
		t.SetWriteBufferLimits(iparam("high", 0), iparam("low", iparam("high", 0)/4))
	}
	if iparam("close_server", 0) != 0 {
		closeServer()
	}
	if behaviour == "write_on_connect" {
		t.Write(gen(iparam("size", 0)))
		switch sparam("then", "none") {
		case "close":
			t.Close()
		case "write_eof":
			t.WriteEOF()
		case "abort":
			c.aborted = true
			t.Abort()
		}
	}
}

func (c *conn) onData(t *aioloop.Transport, data []byte) {
	if c.pausedRead {
		c.event("violation data_while_paused")
	}
	c.pending += len(data)
	c.total += len(data)
	switch behaviour {
	case "echo", "flow_echo", "buffered", "pause_reading", "write_eof_after_eof", "keep_open_write_later":
		t.Write(data)
		if behaviour == "pause_reading" && !c.didPause && c.total >= iparam("after", 0) {
			c.didPause, c.pausedRead = true, true
			t.PauseReading()
			loop.CallLater(time.Duration(iparam("delay", 50))*time.Millisecond, func() {
				c.pausedRead = false
				if !t.IsClosing() {
					t.ResumeReading()
				}
			})
		}
	case "close_on_data":
		if q := iparam("queue", 0); q > 0 {
			t.Write(gen(q))
		}
		t.Close()
	case "abort_on_data":
		if q := iparam("queue", 0); q > 0 {
			t.Write(gen(q))
		}
		c.aborted = true
		t.Abort()
	}
}

func (c *conn) DataReceived(t *aioloop.Transport, data []byte) { c.onData(t, data) }

func (c *conn) EOFReceived(t *aioloop.Transport) bool {
	if c.pausedRead {
		c.event("violation eof_while_paused")
	}
	keep := iparam("keep_open", 0) != 0
	if behaviour == "write_eof_after_eof" || behaviour == "keep_open_write_later" {
		keep = true
	}
	if keep {
		c.event("eof keep")
	} else {
		c.event("eof close")
	}
	delay := time.Duration(iparam("delay", 50)) * time.Millisecond
	switch {
	case behaviour == "write_eof_after_eof":
		t.Write(gen(iparam("tail", 0)))
		t.WriteEOF()
		loop.CallLater(delay, func() { t.Close() })
	case behaviour == "keep_open_write_later":
		loop.CallLater(delay, func() {
			t.Write(gen(iparam("tail", 0)))
			t.Close()
		})
	case keep:
		loop.CallLater(delay, func() { t.Close() })
	}
	return keep
}

func (c *conn) PauseWriting(t *aioloop.Transport) {
	c.event("pause")
	if behaviour == "flow_echo" {
		t.PauseReading()
	}
}

func (c *conn) ResumeWriting(t *aioloop.Transport) {
	c.event("resume")
	if behaviour == "flow_echo" && !t.IsClosing() {
		t.ResumeReading()
	}
}

func (c *conn) ConnectionLost(t *aioloop.Transport, err error) {
	var cls string
	switch {
	case err == nil:
		cls = "clean"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		cls = "reset"
	case errors.Is(err, aioloop.ErrCanceled) && c.aborted:
		cls = "aborted"
	default:
		var e aioloop.Errno
		if errors.As(err, &e) {
			cls = "error:" + e.Name()
		} else {
			cls = "error:" + err.Error()
		}
	}
	if c.aborted && cls == "clean" {
		cls = "aborted"
	}
	c.event("lost " + cls)
	if connsLeft <= 0 {
		closeServer()
	}
}

type bufConn struct{ conn }

func (c *bufConn) GetBuffer(t *aioloop.Transport, hint int) []byte {
	if c.buf == nil {
		c.buf = make([]byte, iparam("bufsize", 16))
	}
	return c.buf
}

func (c *bufConn) BufferUpdated(t *aioloop.Transport, n int) { c.onData(t, c.buf[:n]) }

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: server_go BEHAVIOUR ADDR [k=v ...]")
		os.Exit(2)
	}
	behaviour = os.Args[1]
	for _, kv := range os.Args[3:] {
		k, v, _ := strings.Cut(kv, "=")
		params[k] = v
	}
	connsLeft = iparam("conns", 1)
	var err error
	loop, err = aioloop.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg := aioloop.ServerConfig{Host: "127.0.0.1"}
	addr := os.Args[2]
	if strings.HasPrefix(addr, "unix:") {
		cfg = aioloop.ServerConfig{UnixPath: addr[5:]}
	} else {
		cfg.Port, _ = strconv.Atoi(addr)
	}
	if has("tls_cert") { // asyncio's SSL transport: same protocol callbacks over TLS
		if !aioloop.HasFeature("tls") {
			out("unsupported tls")
			os.Exit(77)
		}
		if cfg.TLS, err = aioloop.NewServerTLS(sparam("tls_cert", ""), sparam("tls_key", "")); err != nil {
			fmt.Fprintln(os.Stderr, "server_go:", err)
			os.Exit(1)
		}
		cfg.TLSHandshakeTimeout = time.Duration(iparam("handshake_timeout_ms", 0)) * time.Millisecond
	}
	server, err = loop.Listen(cfg, func() aioloop.Protocol {
		connsLeft--
		if behaviour == "buffered" {
			return &bufConn{}
		}
		return &conn{}
	})
	cfg.TLS.Close() // the server holds its own reference
	if err != nil {
		fmt.Fprintln(os.Stderr, "server_go:", err)
		os.Exit(1)
	}
	if cfg.UnixPath != "" {
		out("listening unix")
	} else {
		out(fmt.Sprintf("listening %d", server.Addrs()[0].(*net.TCPAddr).Port))
	}
	if behaviour == "close_now" || connsLeft <= 0 {
		closeServer()
	}
	wd, _ := loop.CallLater(30*time.Second, func() { out("watchdog"); os.Exit(3) })
	if err := loop.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "server_go:", err)
		os.Exit(1)
	}
	wd.Cancel()
	loop.Close()
}
