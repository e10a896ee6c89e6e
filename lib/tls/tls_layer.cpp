// The TLS layer: asyncio's SSLProtocol (sslproto.py) folded into SocketTransport. An SSL
// object reads from a memory BIO (rbio: what recv returned) and writes to a BIO whose
// write appends to the transport's write buffer (wbio; asyncio's outgoing MemoryBIO
// without the second copy, nor the memset a mem BIO's reset does over its whole
// allocation, which was a quarter of a 100 KiB TLS echo's CPU). The plain path
// pays one pointer check (tls_) in on_io, write, writev and sendfile.
//
// Handshake: connection_made waits for it (asyncio); a timer closes a peer that does not
// finish it in time. Reading: each recv is fed to rbio and decrypted with SSL_read into
// data_received (or a BufferedProtocol's buffer) while the transport is reading, so
// pause_reading also holds back plaintext already received. Writing: SSL_write to wbio,
// then the ciphertext joins the transport's write buffer (try-now-then-queue); the
// watermarks count those bytes. Closing: close_notify is queued, the queue is flushed
// under the shutdown timeout, then the socket is closed.
#include "tls_layer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <new>

#include "../net/connect.h"
#include "../net/server.h"
#include "../net/transport.h"
#include "../sys/sys.h"

namespace aiol {

namespace {

constexpr uint64_t kDefaultHandshakeTimeoutNs = 60ull * 1000000000ull;  // asyncio constants
constexpr uint64_t kDefaultShutdownTimeoutNs = 30ull * 1000000000ull;
constexpr size_t kFallbackChunk = 256 * 1024;
constexpr size_t kSendfileBudget = 8u << 20;

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

bool is_ip_literal(const char *s) {
    unsigned char buf[sizeof(in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

uint64_t deadline(uint64_t delay) {
    uint64_t now = Loop::now();
    return delay > UINT64_MAX - now ? UINT64_MAX : now + delay;
}

}  // namespace

std::string tls_error_string() {
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (!e) return std::string();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

void tls_context_ref(aiol_tls_context *c) {  // a server, connect or transport uses it
    c->refs.fetch_add(1, std::memory_order_relaxed);
    c->used.store(true, std::memory_order_relaxed);
}

void tls_context_unref(aiol_tls_context *c) {
    if (c->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        SSL_CTX_free(c->ctx);
        delete c;
    }
}

bool tls_context_is_server(const aiol_tls_context *c) { return c->server; }

namespace {

// wbio: OpenSSL's records go straight into the WriteBuffer set as the BIO's data.
int wbio_write(BIO *b, const char *data, int len) {
    auto *q = static_cast<WriteBuffer *>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    if (!q || len < 0) return -1;
    try {
        q->append(data, (size_t)len);
    } catch (const std::bad_alloc &) {
        return -1;  // SSL_write fails; the caller reports it
    }
    return len;
}

long wbio_ctrl(BIO *, int cmd, long, void *) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

// rbio: OpenSSL reads the TlsLayer's kept bytes, then the current recv's.
int rbio_read(BIO *b, char *out, int len) {
    auto *l = static_cast<TlsLayer *>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    if (!l || len <= 0) return 0;
    size_t want = (size_t)len, got = 0;
    if (!l->in.empty()) {
        got = want < l->in.size() ? want : l->in.size();
        std::memcpy(out, l->in.data(), got);
        l->in.consume(got);
    }
    if (got < want && l->ext_len) {
        size_t n = want - got < l->ext_len ? want - got : l->ext_len;
        std::memcpy(out + got, l->ext, n);
        l->ext += n;
        l->ext_len -= n;
        got += n;
    }
    if (got == 0) {  // nothing yet: "try again", not EOF (that comes from recv)
        BIO_set_retry_read(b);
        return -1;
    }
    return (int)got;
}

long rbio_ctrl(BIO *b, int cmd, long, void *) {
    auto *l = static_cast<TlsLayer *>(BIO_get_data(b));
    switch (cmd) {
    case BIO_CTRL_PENDING: return l ? (long)(l->in.size() + l->ext_len) : 0;
    case BIO_CTRL_FLUSH: return 1;
    default: return 0;
    }
}

BIO_METHOD *make_method(const char *name, int (*read)(BIO *, char *, int),
                        int (*write)(BIO *, const char *, int), long (*ctrl)(BIO *, int, long, void *)) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, name);
    if (m && ((read && !BIO_meth_set_read(m, read)) || (write && !BIO_meth_set_write(m, write)) ||
              !BIO_meth_set_ctrl(m, ctrl))) {
        BIO_meth_free(m);
        m = nullptr;
    }
    return m;
}

// Made once; freed when the library is unloaded (a binding's module can be dlclose'd).
struct BioMethods {
    BIO_METHOD *read = make_method("aioloop received bytes", rbio_read, nullptr, rbio_ctrl);
    BIO_METHOD *write = make_method("aioloop write buffer", nullptr, wbio_write, wbio_ctrl);
    ~BioMethods() {
        BIO_meth_free(read);
        BIO_meth_free(write);
    }
};

const BioMethods &bio_methods() {
    static const BioMethods methods;
    return methods;
}

BIO_METHOD *wbio_method() { return bio_methods().write; }
BIO_METHOD *rbio_method() { return bio_methods().read; }

}  // namespace

TlsLayer *tls_layer_new(aiol_tls_context *ctx, const char *server_hostname,
                        uint64_t handshake_timeout_ns, uint64_t shutdown_timeout_ns) {
    auto *l = new TlsLayer();
    l->ssl = SSL_new(ctx->ctx);
    BIO_METHOD *rm = rbio_method(), *wm = wbio_method();
    BIO *r = rm ? BIO_new(rm) : nullptr;
    BIO *w = wm ? BIO_new(wm) : nullptr;
    if (!l->ssl || !r || !w) {
        BIO_free(r);
        BIO_free(w);
        SSL_free(l->ssl);
        delete l;
        ERR_clear_error();
        throw std::bad_alloc();
    }
    BIO_set_data(r, l);
    BIO_set_init(r, 1);
    BIO_set_init(w, 1);  // its WriteBuffer is set by tls_start
    SSL_set_bio(l->ssl, r, w);  // the SSL owns both now
    l->rbio = r;
    l->wbio = w;
    if (ctx->server) {
        SSL_set_accept_state(l->ssl);
    } else {
        SSL_set_connect_state(l->ssl);
        if (server_hostname && *server_hostname) {
            bool ip = is_ip_literal(server_hostname);
            bool ok = true;
            if (!ip) ok = SSL_set_tlsext_host_name(l->ssl, server_hostname) == 1;  // SNI
            if (ok && ctx->verify) {
                if (ip) {
                    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl), server_hostname) == 1;
                } else {
                    SSL_set_hostflags(l->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                    ok = SSL_set1_host(l->ssl, server_hostname) == 1;
                }
            }
            if (!ok) {
                SSL_free(l->ssl);
                delete l;
                ERR_clear_error();
                throw std::bad_alloc();
            }
        }
    }
    l->ctx = ctx;
    tls_context_ref(ctx);
    l->handshake_timeout_ns = handshake_timeout_ns ? handshake_timeout_ns : kDefaultHandshakeTimeoutNs;
    l->shutdown_timeout_ns = shutdown_timeout_ns ? shutdown_timeout_ns : kDefaultShutdownTimeoutNs;
    return l;
}

void tls_layer_free(TlsLayer *l) {
    SSL_free(l->ssl);  // and both BIOs
    tls_context_unref(l->ctx);
    delete l;
}

// ---- the transport's TLS side ---------------------------------------------------------

void SocketTransport::tls_start() {
    BIO_set_data(tls_->wbio, &wbuf_);
    handshaking_ = true;
    ref();  // held by the timer
    try {
        Handle *h = nullptr;
        loop_->call_at(deadline(tls_->handshake_timeout_ns), cb_tls_handshake_timeout, this,
                       cb_unref, &h);
        tls_->handshake_timer = h;
    } catch (...) {
        refs_.fetch_sub(1, std::memory_order_relaxed);
        tls_handshake_failed(AIOL_ENOMEM, nullptr);
        return;
    }
    update_interest();  // reading, for the handshake
    if (!conn_lost_) tls_process();  // a client sends its ClientHello now
}

void SocketTransport::cb_tls_handshake_timeout(aiol_loop *, void *p) {
    auto *t = static_cast<SocketTransport *>(p);
    if (!t->tls_->handshake_timer) return;
    t->tls_->handshake_timer->unref();
    t->tls_->handshake_timer = nullptr;
    if (t->handshaking_ && !t->conn_lost_)
        t->tls_handshake_failed(AIOL_ETIMEDOUT, "SSL handshake is taking too long: aborting the connection");
}

void SocketTransport::cb_tls_shutdown_timeout(aiol_loop *, void *p) {
    auto *t = static_cast<SocketTransport *>(p);
    if (!t->tls_->shutdown_timer) return;
    t->tls_->shutdown_timer->unref();
    t->tls_->shutdown_timer = nullptr;
    if (!t->conn_lost_) t->force_close(AIOL_ETIMEDOUT);  // asyncio: SSL shutdown timed out
}

void SocketTransport::tls_teardown() {
    for (Handle **h : {&tls_->handshake_timer, &tls_->shutdown_timer}) {
        if (*h) {
            Handle *x = *h;
            *h = nullptr;
            loop_->cancel(x);
            x->unref();
        }
    }
}

void SocketTransport::tls_handshake_failed(int err, const char *detail) {
    if (conn_lost_) return;
    // Scanners and port probes would flood the handler: server failures only in debug mode.
    if (server_ && loop_->debug())
        loop_->report(err, "SSL handshake failed", AIOL_OBJ_TRANSPORT, self(), ud_,
                      detail && *detail ? detail : nullptr);
    force_close(err);  // no connection_lost: connection_made never ran
    if (ConnectRequest *r = connect_) {
        connect_ = nullptr;
        r->on_handshake_failed(err);  // done(NULL, err)
    }
}

void SocketTransport::tls_on_io(uint32_t events) {
    if ((events & kReadable) && !conn_lost_ && is_reading()) tls_read_ready();
    if ((events & kWritable) && !conn_lost_) {
        if (!wbuf_.empty()) write_ready();
        else if (sendfile_ && !closing_) tls_sendfile_step();
    }
}

// The loop's read buffer, split: ciphertext is received into the upper half and read
// from there by OpenSSL, plaintext is decrypted into the lower half for data_received.
static constexpr size_t kTlsHalf = Loop::kReadSize / 2;

void SocketTransport::tls_read_ready() {
    unsigned char *buf = loop_->read_buffer() + kTlsHalf;
    ssize_t n = sys::recv(fd_, buf, kTlsHalf, 0);
    if (n > 0) {
        TlsLayer *l = tls_;
        l->ext = buf;
        l->ext_len = (size_t)n;
        tls_process();
        if (l->ext_len && !conn_lost_) {  // a partial record, or held back by pause_reading
            try {
                l->in.append(l->ext, l->ext_len);
            } catch (const std::bad_alloc &) {
                l->ext = nullptr;
                l->ext_len = 0;
                if (handshaking_) tls_handshake_failed(AIOL_ENOMEM, nullptr);
                else fatal_error(AIOL_ENOMEM, "out of memory in the SSL layer", false);
                return;
            }
        }
        l->ext = nullptr;
        l->ext_len = 0;
    } else if (n == 0) {
        tls_on_eof(false);
    } else if (!would_block(errno)) {
        int err = -errno;
        if (handshaking_) tls_handshake_failed(err, nullptr);
        else fatal_error(err, "Fatal read error on SSL transport", false);
    }
}

void SocketTransport::tls_process() {
    SSL *ssl = tls_->ssl;
    if (handshaking_) {
        ERR_clear_error();
        int r = SSL_do_handshake(ssl);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
        std::string detail;
        if (r != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            detail = tls_error_string();
            long vr = SSL_get_verify_result(ssl);
            if (vr != X509_V_OK) {
                if (!detail.empty()) detail += ": ";
                detail += X509_verify_cert_error_string(vr);
            }
        }
        if (!tls_flush_out()) return;  // an alert or the next flight
        if (r != 1) {
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
            tls_handshake_failed(AIOL_ETLS, detail.c_str());
            return;
        }
        handshaking_ = false;
        if (Handle *h = tls_->handshake_timer) {
            tls_->handshake_timer = nullptr;
            loop_->cancel(h);
            h->unref();
        }
        make_connection();  // connection_made, then done(t, 0) for connect
        if (conn_lost_) return;
    }
    // Plaintext, while the protocol wants it (pause_reading holds the rest back).
    while (!conn_lost_ && is_reading()) {
        if (!SSL_has_pending(ssl) && BIO_ctrl_pending(tls_->rbio) == 0) break;
        ERR_clear_error();
        int n;
        if (proto_.get_buffer) {
            size_t len = 0;
            void *b = proto_.get_buffer(self(), 0, &len, ud_);
            if (!is_reading()) {
                loop_->drain_deferred();
                break;
            }
            if (!b || len == 0) {
                fatal_error(AIOL_EINVAL,
                            "Fatal error: protocol get_buffer() returned an empty buffer", true);
                loop_->drain_deferred();
                return;
            }
            n = SSL_read(ssl, b, len > INT_MAX ? INT_MAX : (int)len);
            if (n > 0) {
                loop_->invoke([&] { proto_.buffer_updated(self(), (size_t)n, ud_); },
                              (const void *)proto_.buffer_updated);
                continue;
            }
            loop_->drain_deferred();
        } else {
            unsigned char *buf = loop_->read_buffer();
            n = SSL_read(ssl, buf, (int)kTlsHalf);
            if (n > 0) {
                if (proto_.data_received)
                    loop_->invoke([&] { proto_.data_received(self(), buf, (size_t)n, ud_); },
                                  (const void *)proto_.data_received);
                continue;
            }
        }
        int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
        if (e == SSL_ERROR_ZERO_RETURN) {  // close_notify: EOF
            if (!tls_flush_out()) return;
            tls_on_eof(true);
            return;
        }
        std::string detail = tls_error_string();
        if (!conn_lost_) {
            // ssl.SSLError is an OSError: asyncio only logs it in debug mode.
            if (loop_->debug())
                loop_->report(AIOL_ETLS, "SSL error in data received", AIOL_OBJ_TRANSPORT,
                              self(), ud_, detail.empty() ? nullptr : detail.c_str());
            force_close(AIOL_ETLS);
        }
        return;
    }
    tls_flush_out();  // SSL_read may answer (a key update)
}

// close_notify: EOF over TLS (the peer's TLS close); else the socket's EOF without one.
void SocketTransport::tls_on_eof(bool close_notify) {
    if (handshaking_) {
        tls_handshake_failed(AIOL_ECONNRESET, "EOF during the SSL handshake");
        return;
    }
    // asyncio's SSL transport ignores eof_received's return value: it always closes.
    if (proto_.eof_received)
        loop_->invoke([&] { (void)proto_.eof_received(self(), ud_); },
                      (const void *)proto_.eof_received);
    if (conn_lost_ || closing_) return;
    // asyncio (_do_shutdown) answers a close_notify with its own, but sends none after a
    // bare socket EOF: the peer is gone or going.
    if (!close_notify) tls_->shutdown_sent = true;
    else tls_->peer_close_notify = true;
    close();
}

// Moves what OpenSSL wrote into the transport's write buffer and tries to send it now.
// Never runs a protocol callback (it is reached from aiol_transport_write). Returns false
// once the connection is lost.
bool SocketTransport::tls_flush_out() {
    if (wbuf_.empty()) return !conn_lost_;
    if (conn_lost_) {  // records made after the loss (a close_notify): nowhere to go
        wbuf_.clear();
        return false;
    }
    // The records are already queued; if the queue was empty before them (we are not
    // waiting for the socket to drain), try to send now.
    if (!(interest_ & kWritable)) {
        ssize_t n = sys::send(fd_, wbuf_.data(), wbuf_.size(), MSG_NOSIGNAL);
        if (n > 0) {
            wbuf_.consume((size_t)n);
        } else if (n < 0 && !would_block(errno)) {
            int err = -errno;
            wbuf_.clear();
            if (handshaking_) tls_handshake_failed(err, nullptr);
            // A peer that sent close_notify may close its socket without waiting for ours
            // (libaioloop itself does): failing to deliver the answer is still a clean end.
            else fatal_error(tls_->shutdown_sent && (closing_ || tls_->peer_close_notify) ? 0 : err,
                             "Fatal write error on SSL transport", false);
            return false;
        }
    }
    update_interest();
    return !conn_lost_;
}

bool SocketTransport::tls_encrypt(const void *data, size_t len) {
    auto *p = static_cast<const unsigned char *>(data);
    while (len > 0) {
        int chunk = len > (size_t)INT_MAX ? INT_MAX : (int)len;
        ERR_clear_error();
        int n = SSL_write(tls_->ssl, p, chunk);
        if (n <= 0) {
            std::string detail = tls_error_string();
            loop_->report(AIOL_ETLS, "SSL write failed", AIOL_OBJ_TRANSPORT, self(), ud_,
                          detail.empty() ? nullptr : detail.c_str());
            force_close(AIOL_ETLS);
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

int SocketTransport::tls_write(const aiol_buf *bufs, size_t n) {
    if (handshaking_ || tls_->shutdown_sent) return AIOL_ESTATE;
    for (size_t i = 0; i < n; i++)
        if (bufs[i].len && !tls_encrypt(bufs[i].base, bufs[i].len)) return 0;
    if (!tls_flush_out()) return 0;
    maybe_pause_protocol();
    return 0;
}

void SocketTransport::tls_close() {
    if (handshaking_) {  // asyncio aborts a transport closed during its handshake
        force_close(AIOL_ECANCELED);
        return;
    }
    if (!tls_->shutdown_sent) {
        tls_->shutdown_sent = true;
        ERR_clear_error();
        SSL_shutdown(tls_->ssl);  // queues close_notify; we do not wait for the peer's
        ERR_clear_error();
        if (!tls_flush_out()) return;
    }
    if (wbuf_.empty() || tls_->shutdown_timer) return;
    ref();  // held by the timer
    try {
        Handle *h = nullptr;
        loop_->call_at(deadline(tls_->shutdown_timeout_ns), cb_tls_shutdown_timeout, this,
                       cb_unref, &h);
        tls_->shutdown_timer = h;
    } catch (...) {
        refs_.fetch_sub(1, std::memory_order_relaxed);  // no timer: the flush goes on
    }
}

void SocketTransport::tls_resumed() {
    if (tls_->resume_scheduled || conn_lost_) return;
    if (!SSL_has_pending(tls_->ssl) && BIO_ctrl_pending(tls_->rbio) == 0) return;
    ref();  // held by the scheduled call
    try {
        loop_->call_soon_internal(cb_tls_resume, this, cb_unref);
    } catch (...) {
        refs_.fetch_sub(1, std::memory_order_relaxed);
        return;
    }
    tls_->resume_scheduled = true;
}

void SocketTransport::cb_tls_resume(aiol_loop *, void *p) {
    auto *t = static_cast<SocketTransport *>(p);
    t->tls_->resume_scheduled = false;
    if (!t->conn_lost_ && t->is_reading()) t->tls_process();
}

void SocketTransport::tls_sendfile_step() {
    // asyncio: sendfile over SSL is the read + write fallback through the SSL transport.
    SendfileJob *job = sendfile_;
    size_t budget = kSendfileBudget;
    bool eof = false;
    while (job->remaining > 0 && budget > 0 && wbuf_.empty()) {
        unsigned char *buf = loop_->read_buffer();
        size_t want = job->remaining < kFallbackChunk ? (size_t)job->remaining : kFallbackChunk;
        ssize_t r = job->stream ? sys::read(job->fd, buf, want)
                                : sys::pread(job->fd, buf, want, (off_t)job->offset);
        if (r < 0 && errno == ESPIPE && !job->stream && job->sent == 0) {
            job->stream = true;
            continue;
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            finish_sendfile(-errno);
            return;
        }
        if (r == 0) {
            eof = true;
            break;
        }
        if (!tls_encrypt(buf, (size_t)r)) {
            finish_sendfile(AIOL_ETLS);
            return;
        }
        job->sent += (uint64_t)r;
        job->offset += (uint64_t)r;
        if (job->remaining != UINT64_MAX) job->remaining -= (uint64_t)r;
        budget = (size_t)r >= budget ? 0 : budget - (size_t)r;
        if (!tls_flush_out()) {
            if (sendfile_) finish_sendfile(lost_status_ ? lost_status_ : AIOL_ECONNRESET);
            return;
        }
    }
    if (!wbuf_.empty()) return;  // write_ready drains it, then the next step
    if (job->remaining == 0 || eof) finish_sendfile(0);
}

}  // namespace aiol
