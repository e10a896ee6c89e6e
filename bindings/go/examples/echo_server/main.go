// echo_server: a flow-controlled TCP (or Unix socket) echo server on libaioloop, the Go
// twin of examples/echo_server.c.
//
//	echo_server [--host H] [--port P] [--unix PATH] [--tls-cert CERT.pem --tls-key KEY.pem]
//
// With --tls-cert and --tls-key it serves TLS (the certificate file may hold the chain).
// Prints "listening on HOST:PORT" per listening socket (the real port when P is 0). Echo
// with back-pressure: when the transport asks us to pause writing, we pause reading, and
// resume when it drains (asyncio's flow-control pattern). On EOF we close, which flushes
// what we still owe the peer. SIGINT/SIGTERM close the server and its clients and exit 0
// once WaitClosed fires (clients still there after 5 s are aborted).
//
// Signals go through os/signal and Loop.CallSoonThreadsafe: the Go runtime owns signal
// handling, so the binding does not use the C library's signal handlers.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	aioloop "github.com/libaioloop/aioloop/bindings/go"
)

type echo struct{ aioloop.BaseProtocol }

func (echo) DataReceived(t *aioloop.Transport, data []byte) { t.Write(data) }
func (echo) PauseWriting(t *aioloop.Transport)              { t.PauseReading() }
func (echo) ResumeWriting(t *aioloop.Transport)             { t.ResumeReading() }

func main() {
	host := flag.String("host", "", "address to bind (default: all interfaces)")
	port := flag.Int("port", 0, "port (0: ephemeral)")
	unix := flag.String("unix", "", "listen on this Unix socket path instead")
	tlsCert := flag.String("tls-cert", "", "serve TLS with this PEM certificate (chain)")
	tlsKey := flag.String("tls-key", "", "the PEM private key for --tls-cert")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [--host H] [--port P] [--unix PATH] "+
			"[--tls-cert CERT --tls-key KEY]\n", os.Args[0])
	}
	flag.Parse()
	if flag.NArg() == 1 { // a trailing port, as the C example accepts
		p, err := strconv.Atoi(flag.Arg(0))
		if err != nil {
			flag.Usage()
			os.Exit(2)
		}
		*port = p
	} else if flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		fmt.Fprintln(os.Stderr, "echo_server: --tls-cert and --tls-key go together")
		os.Exit(2)
	}
	cfg := aioloop.ServerConfig{Host: *host, Port: *port, UnixPath: *unix}
	if *tlsCert != "" {
		tls, err := aioloop.NewServerTLS(*tlsCert, *tlsKey)
		if err != nil {
			os.Exit(fail(fmt.Errorf("TLS: %w (%s)", err, err.(aioloop.Errno).Name())))
		}
		cfg.TLS = tls
	}
	code := run(cfg)
	cfg.TLS.Close() // the server held its own reference; nil-safe
	os.Exit(code)
}

func fail(err error) int {
	if e, ok := err.(aioloop.Errno); ok {
		fmt.Fprintf(os.Stderr, "echo_server: %v (%s)\n", e, e.Name())
	} else {
		fmt.Fprintf(os.Stderr, "echo_server: %v\n", err)
	}
	return 1
}

func run(cfg aioloop.ServerConfig) int {
	// A spare P for the loop's thread, which lives in C (see "Performance" in the
	// package documentation): without it, a process pinned to one CPU has GOMAXPROCS 1
	// and the runtime keeps moving the loop's P to idle threads and back.
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	loop, err := aioloop.New()
	if err != nil {
		return fail(err)
	}
	defer loop.Close()
	server, err := loop.Listen(cfg, func() aioloop.Protocol { return echo{} })
	if err != nil {
		return fail(err)
	}
	for _, a := range server.Addrs() {
		fmt.Printf("listening on %s\n", a) // HOST:PORT, [HOST]:PORT or the socket path
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		// Back on the loop goroutine: everything below is loop-thread API.
		loop.CallSoonThreadsafe(func() {
			signal.Stop(sigs) // a second signal gets the default action
			server.Close()
			server.CloseClients()
			server.WaitClosed(func() { loop.Stop() })
			loop.CallLater(5*time.Second, func() { server.AbortClients() })
		})
	}()

	if err := loop.Run(); err != nil {
		return fail(err)
	}
	if err := loop.Close(); err != nil {
		return fail(err)
	}
	return 0
}
