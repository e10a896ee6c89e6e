package aioloop

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"crypto/tls"
	"crypto/x509"
	"sync"
	"unsafe"
)

// TLSContext is a TLS configuration (asyncio's ssl.SSLContext) for Loop.Listen
// (ServerConfig.TLS) and Loop.Dial (DialConfig.TLS), over the library's OpenSSL context.
//
// Ownership is explicit, as for every object of the binding (no finalizer): the caller
// frees its context with Close. A server, dial or connection that uses a context holds
// its own reference in the library, so Close may be called right after Listen or Dial.
// Configure (SetALPN, SetMinVersion) before the first use; afterwards the context is
// immutable (ErrState). The methods are safe from any goroutine.
//
// Without TLS built into the library (HasFeature("tls") false) every constructor returns
// ErrNotSupp.
type TLSContext struct {
	mu  sync.Mutex
	ptr *C.aiol_tls_context // nil once closed
}

func newTLS(rc C.int, p *C.aiol_tls_context) (*TLSContext, error) {
	if rc < 0 {
		return nil, Errno(rc)
	}
	return &TLSContext{ptr: p}, nil
}

// NewServerTLS makes a server context from PEM files; the certificate file may hold the
// chain after the leaf. ErrTLS if a file cannot be loaded or the key does not match.
func NewServerTLS(certPath, keyPath string) (*TLSContext, error) {
	cc, ck := C.CString(certPath), C.CString(keyPath)
	defer C.free(unsafe.Pointer(cc))
	defer C.free(unsafe.Pointer(ck))
	var p *C.aiol_tls_context
	rc := C.aiol_tls_context_new_server(cc, ck, &p)
	return newTLS(rc, p)
}

// NewServerTLSPEM is NewServerTLS from PEM text in memory (the library copies it).
func NewServerTLSPEM(cert, key []byte) (*TLSContext, error) {
	if len(cert) == 0 || len(key) == 0 {
		return nil, ErrTLS // what the library says for an unloadable certificate or key
	}
	var p *C.aiol_tls_context
	// Go memory passed for the call only, holding no Go pointers: allowed by cgo.
	rc := C.aiol_tls_context_new_server_pem(unsafe.Pointer(&cert[0]), C.size_t(len(cert)),
		unsafe.Pointer(&key[0]), C.size_t(len(key)), &p)
	return newTLS(rc, p)
}

// NewClientTLS makes a client context trusting the CAs in the PEM file caPath ("" : the
// system store). With verify, the handshake checks the chain and the host name
// (DialConfig.ServerHostname, else Host) and fails with ErrTLS otherwise.
func NewClientTLS(caPath string, verify bool) (*TLSContext, error) {
	var cca *C.char
	if caPath != "" {
		cca = C.CString(caPath)
		defer C.free(unsafe.Pointer(cca))
	}
	v := C.int(0)
	if verify {
		v = 1
	}
	var p *C.aiol_tls_context
	rc := C.aiol_tls_context_new_client(cca, v, &p)
	return newTLS(rc, p)
}

// SetALPN sets the ALPN protocols in preference order. A server with no overlap with
// the client goes on without ALPN. ErrState once the context has been used.
func (c *TLSContext) SetALPN(protocols ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return ErrClosed
	}
	if len(protocols) == 0 {
		return errorOf(C.aiol_tls_context_set_alpn(c.ptr, nil, 0))
	}
	// A C array of C strings: cgo forbids passing Go memory that holds pointers.
	arr := unsafe.Slice((**C.char)(C.malloc(C.size_t(len(protocols))*C.size_t(unsafe.Sizeof((*C.char)(nil))))), len(protocols))
	defer C.free(unsafe.Pointer(&arr[0]))
	for i, p := range protocols {
		arr[i] = C.CString(p)
	}
	defer func() {
		for _, s := range arr {
			C.free(unsafe.Pointer(s))
		}
	}()
	return errorOf(C.aiol_tls_context_set_alpn(c.ptr, &arr[0], C.size_t(len(protocols))))
}

// SetMinVersion sets the minimum protocol version: tls.VersionTLS12 (the default; 0
// means that too) or tls.VersionTLS13. ErrInvalid for anything else.
func (c *TLSContext) SetMinVersion(version uint16) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return ErrClosed
	}
	if version != 0 && version != tls.VersionTLS12 && version != tls.VersionTLS13 {
		return ErrInvalid
	}
	return errorOf(C.aiol_tls_context_set_min_version(c.ptr, C.int(version)))
}

// Close gives up the caller's reference; servers and connections using the context keep
// theirs. Idempotent; nil-safe.
func (c *TLSContext) Close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr == nil {
		return nil
	}
	rc := C.aiol_tls_context_free(c.ptr)
	c.ptr = nil
	return errorOf(rc)
}

// useTLS returns ctx's C context (nil for a nil ctx) locked for a Listen or Dial call,
// and the function that unlocks it. The library takes its own reference inside that
// call; holding the lock until then keeps a concurrent Close from freeing it first.
func useTLS(ctx *TLSContext) (*C.aiol_tls_context, func(), error) {
	if ctx == nil {
		return nil, func() {}, nil
	}
	ctx.mu.Lock()
	if ctx.ptr == nil {
		ctx.mu.Unlock()
		return nil, nil, ErrClosed
	}
	return ctx.ptr, ctx.mu.Unlock, nil
}

// ---- the TLS side of a Transport (asyncio's get_extra_info("ssl_object") and friends) ----

// IsTLS reports whether the transport speaks TLS (false once the connection is lost).
func (t *Transport) IsTLS() bool {
	p, err := t.cptr()
	return err == nil && C.aiol_transport_tls_ssl(p) != nil
}

// ALPN returns the negotiated ALPN protocol, "" if none (or for a plain transport).
func (t *Transport) ALPN() string {
	p, err := t.cptr()
	if err != nil {
		return ""
	}
	var s *C.char
	var n C.size_t
	if C.aiol_transport_tls_alpn(p, &s, &n) < 0 || s == nil {
		return ""
	}
	return C.GoStringN(s, C.int(n))
}

// ServerName returns the SNI name the client sent (server side) or asked for (client
// side); "" if none or plain.
func (t *Transport) ServerName() string {
	p, err := t.cptr()
	if err != nil {
		return ""
	}
	if s := C.aiol_transport_tls_server_name(p); s != nil {
		return C.GoString(s)
	}
	return ""
}

// PeerCertificateDER returns a copy of the peer's certificate in DER; nil if it sent
// none. ErrInvalid for a plain transport, ErrClosed once the connection is lost.
func (t *Transport) PeerCertificateDER() ([]byte, error) {
	p, err := t.cptr()
	if err != nil {
		return nil, err
	}
	var der unsafe.Pointer
	var n C.size_t
	if rc := C.aiol_transport_tls_peer_cert_der(p, &der, &n); rc < 0 {
		return nil, Errno(rc)
	}
	if der == nil {
		return nil, nil
	}
	return C.GoBytes(der, C.int(n)), nil
}

// PeerCertificate returns the peer's certificate parsed; nil, nil if it sent none.
func (t *Transport) PeerCertificate() (*x509.Certificate, error) {
	der, err := t.PeerCertificateDER()
	if der == nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
