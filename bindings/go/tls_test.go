package aioloop

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// testPKI is a throwaway CA and a leaf for "localhost" and 127.0.0.1 it signed, made at
// test time, as PEM in memory and in files.
type testPKI struct {
	caPEM, certPEM, keyPEM []byte
	caPath, certPath       string
	keyPath                string
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "aioloop test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{caPEM: pemOf("CERTIFICATE", caDER), certPEM: pemOf("CERTIFICATE", leafDER),
		keyPEM: pemOf("PRIVATE KEY", keyDER)}
	dir := t.TempDir()
	p.caPath, p.certPath, p.keyPath = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"),
		filepath.Join(dir, "key.pem")
	for path, b := range map[string][]byte{p.caPath: p.caPEM, p.certPath: p.certPEM, p.keyPath: p.keyPEM} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func needTLS(t *testing.T) {
	if !HasFeature("tls") {
		t.Skip("libaioloop built without TLS")
	}
}

// mustTLS(t)(NewXxxTLS(...)) fails the test on error and closes the context at its end.
func mustTLS(t *testing.T) func(*TLSContext, error) *TLSContext {
	return func(c *TLSContext, err error) *TLSContext {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

// tlsServerSide echoes and records what the server side of the connection saw.
type tlsServerSide struct {
	echoServer
	alpn, sni string
	isTLS     bool
	peerErr   error
	peerDER   []byte
}

func (s *tlsServerSide) ConnectionMade(t *Transport) {
	s.alpn, s.sni, s.isTLS = t.ALPN(), t.ServerName(), t.IsTLS()
	s.peerDER, s.peerErr = t.PeerCertificateDER()
}

// tlsClient writes payload, reads the echo back in full, checks the session, then closes.
type tlsClient struct {
	BaseProtocol
	loop    *Loop
	payload []byte
	got     bytes.Buffer
	alpn    string
	sni     string
	cert    *x509.Certificate
	certErr error
	err     error
	lost    bool
}

func (c *tlsClient) ConnectionMade(t *Transport) {
	c.alpn, c.sni = t.ALPN(), t.ServerName()
	c.cert, c.certErr = t.PeerCertificate()
	if err := t.Write(c.payload); err != nil {
		panic(err)
	}
	// Over TLS there is no half-close (asyncio: can_write_eof is false).
	if t.IsTLS() && (t.CanWriteEOF() || !errors.Is(t.WriteEOF(), ErrState)) {
		panic("WriteEOF over TLS")
	}
}

func (c *tlsClient) DataReceived(t *Transport, data []byte) {
	c.got.Write(data)
	if c.got.Len() >= len(c.payload) {
		t.Close() // close_notify, then the socket
	}
}

func (c *tlsClient) ConnectionLost(t *Transport, err error) {
	c.err, c.lost = err, true
	c.loop.Stop()
}

func TestTLSEcho(t *testing.T) {
	needTLS(t)
	pki := newPKI(t)
	for _, fromPEM := range []bool{false, true} {
		name := "files"
		if fromPEM {
			name = "pem"
		}
		t.Run(name, func(t *testing.T) {
			l := newLoop(t)
			var sctx *TLSContext
			var err error
			if fromPEM {
				sctx, err = NewServerTLSPEM(pki.certPEM, pki.keyPEM)
			} else {
				sctx, err = NewServerTLS(pki.certPath, pki.keyPath)
			}
			mustTLS(t)(sctx, err)
			if err := sctx.SetALPN("h2", "echo/1"); err != nil {
				t.Fatal(err)
			}
			if err := sctx.SetMinVersion(tls.VersionTLS13); err != nil {
				t.Fatal(err)
			}
			ss := &tlsServerSide{}
			srv, err := l.Listen(ServerConfig{Host: "127.0.0.1", TLS: sctx}, func() Protocol { return ss })
			if err != nil {
				t.Fatal(err)
			}
			// The server holds its own reference: the caller's may go now.
			if err := sctx.Close(); err != nil {
				t.Fatal(err)
			}
			if !errors.Is(sctx.SetALPN("x"), ErrClosed) || sctx.Close() != nil {
				t.Fatal("closed context")
			}
			port := srv.Addrs()[0].(*net.TCPAddr).Port

			cctx := mustTLS(t)(NewClientTLS(pki.caPath, true))
			if err := cctx.SetALPN("echo/1", "http/1.1"); err != nil {
				t.Fatal(err)
			}
			c := &tlsClient{loop: l, payload: payload(1 << 20)}
			if _, err := l.Dial(DialConfig{Host: "127.0.0.1", Port: port, TLS: cctx,
				ServerHostname: "localhost"}, c, dialDone(t, l)); err != nil {
				t.Fatal(err)
			}
			// Used: the context is immutable now.
			if !errors.Is(cctx.SetALPN("h2"), ErrState) {
				t.Fatal("SetALPN after use")
			}
			mustRun(t, l)
			if !c.lost || c.err != nil || !bytes.Equal(c.got.Bytes(), c.payload) {
				t.Fatalf("client: lost=%v err=%v got %d of %d bytes", c.lost, c.err, c.got.Len(), len(c.payload))
			}
			if c.alpn != "echo/1" || ss.alpn != "echo/1" {
				t.Fatalf("ALPN client %q server %q", c.alpn, ss.alpn)
			}
			if c.sni != "localhost" || ss.sni != "localhost" || !ss.isTLS {
				t.Fatalf("SNI client %q server %q, server IsTLS %v", c.sni, ss.sni, ss.isTLS)
			}
			if c.certErr != nil || c.cert == nil || c.cert.Subject.CommonName != "localhost" {
				t.Fatalf("peer certificate %v %v", c.cert, c.certErr)
			}
			if ss.peerDER != nil || ss.peerErr != nil { // no client certificate
				t.Fatalf("server's peer certificate %d bytes, %v", len(ss.peerDER), ss.peerErr)
			}
		})
	}
}

// TestTLSInteropGo serves TLS to crypto/tls clients and dials a crypto/tls server: the
// binding speaks real TLS, not just to itself.
func TestTLSInteropGo(t *testing.T) {
	needTLS(t)
	pki := newPKI(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pki.caPEM)
	pair, err := tls.X509KeyPair(pki.certPEM, pki.keyPEM)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("server", func(t *testing.T) {
		l := newLoop(t)
		sctx := mustTLS(t)(NewServerTLS(pki.certPath, pki.keyPath))
		sctx.SetALPN("echo/1")
		lost := make(chan error, 1)
		srv, err := l.Listen(ServerConfig{Host: "127.0.0.1", TLS: sctx},
			func() Protocol { return &echoServer{lost: lost} })
		if err != nil {
			t.Fatal(err)
		}
		port := srv.Addrs()[0].(*net.TCPAddr).Port
		want := payload(300000)
		res := make(chan error, 1)
		go func() {
			res <- func() error {
				conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
					&tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"echo/1"}})
				if err != nil {
					return err
				}
				defer conn.Close()
				if p := conn.ConnectionState().NegotiatedProtocol; p != "echo/1" {
					return errors.New("ALPN " + p)
				}
				go conn.Write(want)
				got := make([]byte, len(want))
				if _, err := io.ReadFull(conn, got); err != nil {
					return err
				}
				if !bytes.Equal(got, want) {
					return errors.New("echo differs")
				}
				return conn.Close()
			}()
			l.Stop()
		}()
		mustRun(t, l)
		if err := <-res; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("client", func(t *testing.T) {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			io.Copy(conn, conn) // echo until the client's close_notify
		}()
		l := newLoop(t)
		cctx := mustTLS(t)(NewClientTLS(pki.caPath, true))
		c := &tlsClient{loop: l, payload: payload(200000)}
		port := ln.Addr().(*net.TCPAddr).Port
		if _, err := l.Dial(DialConfig{Host: "localhost", Port: port, TLS: cctx}, c, dialDone(t, l)); err != nil {
			t.Fatal(err)
		}
		mustRun(t, l)
		if !bytes.Equal(c.got.Bytes(), c.payload) || c.cert == nil || c.sni != "localhost" {
			t.Fatalf("got %d bytes, cert %v, sni %q", c.got.Len(), c.cert, c.sni)
		}
	})
}

// TestTLSVerifyFailure: a server whose certificate the client cannot verify makes Dial
// fail with ErrTLS, and the protocol sees no callback.
func TestTLSVerifyFailure(t *testing.T) {
	needTLS(t)
	pki, other := newPKI(t), newPKI(t)
	cases := []struct {
		name, ca, host string
	}{
		{"unknown CA", other.caPath, "localhost"},
		{"wrong name", pki.caPath, "not-this-host.example"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLoop(t)
			sctx := mustTLS(t)(NewServerTLSPEM(pki.certPEM, pki.keyPEM))
			srv, err := l.Listen(ServerConfig{Host: "127.0.0.1", TLS: sctx},
				func() Protocol { return &echoServer{} })
			if err != nil {
				t.Fatal(err)
			}
			cctx := mustTLS(t)(NewClientTLS(tc.ca, true))
			p := &recorder{}
			var derr error
			if _, err := l.Dial(DialConfig{Host: "127.0.0.1", Port: srv.Addrs()[0].(*net.TCPAddr).Port,
				TLS: cctx, ServerHostname: tc.host}, p, func(tr *Transport, err error) {
				derr = err
				if tr != nil {
					t.Error("a transport on failure")
				}
				l.Stop()
			}); err != nil {
				t.Fatal(err)
			}
			mustRun(t, l)
			if !errors.Is(derr, ErrTLS) || derr.(Errno).Name() != "AIOL_ETLS" {
				t.Fatalf("done: %v", derr)
			}
			if p.events != 0 {
				t.Fatalf("protocol saw %d callbacks", p.events)
			}
		})
	}

	// Without verification the same handshake succeeds.
	t.Run("verify off", func(t *testing.T) {
		l := newLoop(t)
		sctx := mustTLS(t)(NewServerTLS(pki.certPath, pki.keyPath))
		srv, err := l.Listen(ServerConfig{Host: "127.0.0.1", TLS: sctx},
			func() Protocol { return &echoServer{} })
		if err != nil {
			t.Fatal(err)
		}
		cctx := mustTLS(t)(NewClientTLS(other.caPath, false))
		c := &tlsClient{loop: l, payload: []byte("hello")}
		if _, err := l.Dial(DialConfig{Host: "127.0.0.1", Port: srv.Addrs()[0].(*net.TCPAddr).Port,
			TLS: cctx}, c, dialDone(t, l)); err != nil {
			t.Fatal(err)
		}
		mustRun(t, l)
		if c.got.String() != "hello" || c.err != nil {
			t.Fatalf("got %q, %v", c.got.String(), c.err)
		}
	})
}

// recorder counts protocol callbacks.
type recorder struct {
	BaseProtocol
	events int
}

func (r *recorder) ConnectionMade(*Transport)        { r.events++ }
func (r *recorder) ConnectionLost(*Transport, error) { r.events++ }

// TestTLSHandshakeTimeout: a silent peer makes a client handshake fail with ErrTimedOut,
// and a server close a connection that never completes its handshake.
func TestTLSHandshakeTimeout(t *testing.T) {
	needTLS(t)
	pki := newPKI(t)
	const timeout = 200 * time.Millisecond

	t.Run("dial", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts (the kernel does) and never speaks
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		l := newLoop(t)
		cctx := mustTLS(t)(NewClientTLS(pki.caPath, true))
		p := &recorder{}
		var derr error
		start := time.Now()
		if _, err := l.Dial(DialConfig{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port,
			TLS: cctx, ServerHostname: "localhost", TLSHandshakeTimeout: timeout}, p,
			func(tr *Transport, err error) { derr = err; l.Stop() }); err != nil {
			t.Fatal(err)
		}
		mustRun(t, l)
		if el := time.Since(start); !errors.Is(derr, ErrTimedOut) || !errors.Is(derr, os.ErrDeadlineExceeded) ||
			el < timeout || el > 5*time.Second || p.events != 0 {
			t.Fatalf("done %v after %v, %d callbacks", derr, el, p.events)
		}
	})

	t.Run("server", func(t *testing.T) {
		l := newLoop(t)
		sctx := mustTLS(t)(NewServerTLS(pki.certPath, pki.keyPath))
		p := &recorder{}
		srv, err := l.Listen(ServerConfig{Host: "127.0.0.1", TLS: sctx, TLSHandshakeTimeout: timeout},
			func() Protocol { return p })
		if err != nil {
			t.Fatal(err)
		}
		port := srv.Addrs()[0].(*net.TCPAddr).Port
		type result struct {
			el  time.Duration
			err error
		}
		res := make(chan result, 1)
		go func() {
			conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				res <- result{err: err}
				l.Stop()
				return
			}
			defer conn.Close()
			start := time.Now()
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1)) // silent: no ClientHello
			res <- result{time.Since(start), err}
			l.Stop()
		}()
		mustRun(t, l)
		r := <-res
		if r.err == nil || errors.Is(r.err, os.ErrDeadlineExceeded) || r.el < timeout/2 || r.el > 5*time.Second {
			t.Fatalf("server closed after %v: %v", r.el, r.err)
		}
		if p.events != 0 {
			t.Fatalf("protocol saw %d callbacks", p.events)
		}
	})
}

func TestTLSErrors(t *testing.T) {
	needTLS(t)
	pki := newPKI(t)
	if _, err := NewServerTLS(filepath.Join(t.TempDir(), "missing.pem"), pki.keyPath); !errors.Is(err, ErrTLS) {
		t.Fatalf("missing cert: %v", err)
	}
	if _, err := NewServerTLSPEM(pki.certPEM, []byte("not a key")); !errors.Is(err, ErrTLS) {
		t.Fatalf("bad key: %v", err)
	}
	if _, err := NewServerTLSPEM(nil, pki.keyPEM); !errors.Is(err, ErrTLS) {
		t.Fatalf("empty cert: %v", err)
	}
	other := newPKI(t)
	if _, err := NewServerTLSPEM(pki.certPEM, other.keyPEM); !errors.Is(err, ErrTLS) {
		t.Fatalf("key does not match: %v", err)
	}
	ctx := mustTLS(t)(NewClientTLS("", true)) // the system store
	if err := ctx.SetMinVersion(tls.VersionTLS11); !errors.Is(err, ErrInvalid) {
		t.Fatalf("TLS 1.1: %v", err)
	}
	if err := ctx.SetMinVersion(tls.VersionTLS12); err != nil {
		t.Fatal(err)
	}
	ctx.Close()
	l := newLoop(t)
	if _, err := l.Listen(ServerConfig{Host: "127.0.0.1", TLS: ctx}, func() Protocol { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Listen with a closed context: %v", err)
	}
	if _, err := l.Dial(DialConfig{Host: "127.0.0.1", Port: 1, TLS: ctx}, &recorder{}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Dial with a closed context: %v", err)
	}

	// A plain transport has no TLS side.
	srv, port := listenTCP(t, l, func() Protocol { return &echoServer{} })
	defer srv.Close()
	var perr error
	var plain bool
	c := &tlsClient{loop: l, payload: []byte("x")}
	if _, err := l.Dial(DialConfig{Host: "127.0.0.1", Port: port}, c, func(tr *Transport, err error) {
		if err != nil {
			t.Error(err)
			l.Stop()
			return
		}
		_, perr = tr.PeerCertificateDER()
		plain = !tr.IsTLS() && tr.ALPN() == "" && tr.ServerName() == ""
	}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, l)
	if !errors.Is(perr, ErrInvalid) || !plain {
		t.Fatalf("plain transport: %v %v", perr, plain)
	}
}
