// FZ-02 (RELIABILITY.md 3.11): a scripted peer. The fuzz input drives real loopback
// clients (byte stream and timing) against an echo server on 127.0.0.1 port 0 in the
// same process and thread: sends of any size, partial reads, a small receive buffer,
// half-closes, resets (SO_LINGER 0), pauses of the loop, and on the server side the
// protocol's own pause_reading / resume_reading (flow control from pause_writing, or a
// scripted action inside data_received), close, abort, write_eof and watermarks.
//
// Built twice by tests/fuzz/run.sh: fuzz_peer (plain TCP) and fuzz_tls (-DFUZZ_TLS=1: the
// server is TLS with a throwaway certificate made at start-up; a peer is either raw, its
// input bytes fed as they are to the TLS port, or an OpenSSL client doing a real
// handshake, then real records (application data, close_notify, key updates,
// renegotiation) mixed with fuzzed records injected into the stream).
//
// Oracles (abort() on violation, on top of ASan/UBSan): the callback order of aioloop.h
// (connection_made first, lost once, destroy once after it, pause/resume_writing
// alternate); no data after pause_reading / close / abort returned until resume_reading;
// every byte a peer reads back is the in-order prefix of what it sent (plaintext for TLS,
// until the peer injected raw bytes); at the end loop_close, server free, the
// wait_closed callback and every destroy have run, and loop_free returns 0.
#include <aioloop.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#if FUZZ_TLS
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#endif

#define CHECK(c)                                                                      \
    do {                                                                              \
        if (!(c)) {                                                                   \
            fprintf(stderr, "fuzz_peer: check failed at line %d: %s\n", __LINE__, #c); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

namespace {

constexpr int kPeers = 4;
constexpr int kConns = 8;  // connections the factory accepts per input

struct Input {
    const uint8_t *p;
    size_t n;
    uint8_t u8() { return n ? (n--, *p++) : 0; }
    uint32_t u16() { return u8() | (uint32_t(u8()) << 8); }
    // Up to max bytes of the input itself (what a peer sends).
    const uint8_t *take(size_t want, size_t *got) {
        *got = want < n ? want : n;
        const uint8_t *r = p;
        p += *got;
        n -= *got;
        return r;
    }
    bool empty() const { return n == 0; }
};

// ---- the server side: an echo protocol whose behaviour the input scripts ---------------

struct Conn {
    aiol_transport *t = nullptr;  // ref taken in connection_made
    bool made = false, lost = false, destroyed = false, paused_w = false;
    bool closing = false, paused_r = false, flow = false;
    uint8_t act = 0;  // what the next data_received does besides echoing
    uint8_t rbuf[4096];
    size_t rbuf_len = 1;
};

struct State {
    aiol_loop *loop = nullptr;
    aiol_server *server = nullptr;
    uint16_t port = 0;
    Conn conns[kConns];
    int nconns = 0, destroys = 0;
    bool buffered = false, keep_open = false, wait_ran = false, factory_gone = false;
    size_t high = AIOL_WBUF_DEFAULT, low = AIOL_WBUF_DEFAULT;
};

State *g;

Conn *of(void *ud) { return static_cast<Conn *>(ud); }

void set_reading(Conn *c, bool pause) {
    int rc = pause ? aiol_transport_pause_reading(c->t) : aiol_transport_resume_reading(c->t);
    if (c->lost) CHECK(rc == AIOL_ECLOSED);
    if (rc == 0 && !c->closing) c->paused_r = pause;
}

void close_conn(Conn *c, bool abort_it) {
    int rc = abort_it ? aiol_transport_abort(c->t) : aiol_transport_close(c->t);
    if (c->lost) CHECK(rc == AIOL_ECLOSED);
    if (rc == 0) c->closing = true;
}

void on_made(aiol_transport *t, void *ud) {
    Conn *c = of(ud);
    CHECK(!c->made && !c->lost && !c->destroyed && !c->t);
    CHECK(aiol_transport_ref(t) == 0);
    c->t = t;
    c->made = true;
    if (g->high != AIOL_WBUF_DEFAULT || g->low != AIOL_WBUF_DEFAULT)
        CHECK(aiol_transport_set_write_buffer_limits(t, g->high, g->low) == 0);
}

void got(Conn *c, const void *data, size_t len) {
    CHECK(c->made && !c->lost && len > 0);
    CHECK(!c->closing && !c->paused_r);
    int rc = aiol_transport_write(c->t, data, len);  // echo
    CHECK(rc == 0 || rc == AIOL_ESTATE || rc == AIOL_ECLOSED);
    uint8_t a = c->act;
    c->act = 0;
    switch (a % 6) {
    case 0: break;
    case 1: set_reading(c, true); break;
    case 2: close_conn(c, false); break;
    case 3: close_conn(c, true); break;
    case 4: (void)aiol_transport_write_eof(c->t); break;
    case 5: set_reading(c, true), set_reading(c, false); break;
    }
}

void on_data(aiol_transport *, const void *data, size_t len, void *ud) {
    CHECK(data);
    got(of(ud), data, len);
}

void *on_get_buffer(aiol_transport *, size_t, size_t *len, void *ud) {
    Conn *c = of(ud);
    CHECK(c->made && !c->lost && !c->closing && !c->paused_r);
    *len = c->rbuf_len;
    return c->rbuf;
}

void on_buffer_updated(aiol_transport *, size_t n, void *ud) {
    CHECK(n <= of(ud)->rbuf_len);
    got(of(ud), of(ud)->rbuf, n);
}

int on_eof(aiol_transport *, void *ud) {
    Conn *c = of(ud);
    CHECK(c->made && !c->lost && !c->closing && !c->paused_r);
    return g->keep_open;
}

void on_lost(aiol_transport *, int, void *ud) {
    Conn *c = of(ud);
    CHECK(c->made && !c->lost && !c->destroyed);
    c->lost = true;
}

// Flow control from the protocol side, as asyncio streams do: stop reading while the
// peer does not read what we echo.
void on_pause(aiol_transport *, void *ud) {
    Conn *c = of(ud);
    CHECK(c->made && !c->lost && !c->paused_w);
    c->paused_w = true;
    if (c->flow) set_reading(c, true);
}

void on_resume(aiol_transport *, void *ud) {
    Conn *c = of(ud);
    CHECK(c->made && !c->lost && c->paused_w);
    c->paused_w = false;
    if (c->flow) set_reading(c, false);
}

void on_destroy(void *ud) {
    Conn *c = of(ud);
    CHECK(!c->destroyed && (c->lost || !c->made));
    c->destroyed = true;
    g->destroys++;
}

int factory(void *, const struct sockaddr *, socklen_t, void **ud) {
    if (g->nconns >= kConns) return 1;
    Conn *c = &g->conns[g->nconns++];
    c->flow = g->nconns & 1;
    c->rbuf_len = 1 + (g->nconns * 997) % sizeof c->rbuf;
    *ud = c;
    return 0;
}

void factory_destroy(void *) {
    CHECK(!g->factory_gone);
    g->factory_gone = true;
}

void on_wait_closed(aiol_server *, void *) {
    CHECK(!g->wait_ran);
    g->wait_ran = true;
}

void on_report(const aiol_error_context *ctx, void *) {
    CHECK(ctx && ctx->message && ctx->loop == g->loop);
}

void noop(aiol_loop *, void *) {}

// ---- the peers -------------------------------------------------------------------------

struct Peer {
    int fd = -1;
    std::vector<uint8_t> sent;  // plaintext sent, in order
    size_t echoed = 0;          // plaintext read back and checked
    bool wrote_shut = false, tainted = false;
#if FUZZ_TLS
    SSL *ssl = nullptr;
    std::vector<uint8_t> pending;  // an SSL_write to retry after WANT_WRITE
#endif
};

Peer peers[kPeers];

void check_echo(Peer *p, const uint8_t *b, size_t n) {
    if (p->tainted) return;
    CHECK(p->echoed + n <= p->sent.size());
    CHECK(memcmp(b, p->sent.data() + p->echoed, n) == 0);
    p->echoed += n;
}

void peer_close(Peer *p, bool reset) {
    if (p->fd < 0) return;
    if (reset) {
        linger lg = {1, 0};
        setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
#if FUZZ_TLS
    SSL_free(p->ssl);
    p->ssl = nullptr;
    p->pending.clear();
#endif
    close(p->fd);
    p->fd = -1;
}

size_t raw_send(Peer *p, const uint8_t *b, size_t n) {
    if (p->fd < 0 || n == 0) return 0;
    ssize_t r = send(p->fd, b, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    return r > 0 ? size_t(r) : 0;
}

#if FUZZ_TLS
SSL_CTX *client_ctx[2];  // [0] TLS 1.2 only, [1] up to TLS 1.3
aiol_tls_context *server_ctx;

// A throwaway self-signed P-256 certificate for the server, made in memory.
void make_server_ctx() {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    CHECK(key);
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost",
                               -1, -1, 0);
    X509_set_issuer_name(x, name);
    CHECK(X509_sign(x, key, EVP_sha256()) > 0);
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    CHECK(PEM_write_bio_X509(cb, x) == 1);
    CHECK(PEM_write_bio_PrivateKey(kb, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
    char *cp, *kp;
    long cl = BIO_get_mem_data(cb, &cp), kl = BIO_get_mem_data(kb, &kp);
    CHECK(aiol_tls_context_new_server_pem(cp, size_t(cl), kp, size_t(kl), &server_ctx) == 0);
    BIO_free(cb);
    BIO_free(kb);
    X509_free(x);
    EVP_PKEY_free(key);
    for (int i = 0; i < 2; i++) {
        client_ctx[i] = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(client_ctx[i], SSL_VERIFY_NONE, nullptr);
        SSL_CTX_set_max_proto_version(client_ctx[i], i ? TLS1_3_VERSION : TLS1_2_VERSION);
        SSL_CTX_set_mode(client_ctx[i], SSL_MODE_ENABLE_PARTIAL_WRITE);
    }
}

void tls_write(Peer *p, const uint8_t *b, size_t n) {
    if (!p->ssl || p->tainted || p->wrote_shut) return;
    if (p->pending.empty()) p->pending.assign(b, b + n);
    if (p->pending.empty()) return;
    ERR_clear_error();
    int r = SSL_write(p->ssl, p->pending.data(), int(p->pending.size()));
    if (r > 0) {
        p->sent.insert(p->sent.end(), p->pending.begin(), p->pending.begin() + r);
        p->pending.erase(p->pending.begin(), p->pending.begin() + r);
    } else {
        int e = SSL_get_error(p->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) p->tainted = true;
    }
}

void tls_read(Peer *p, size_t want) {
    if (!p->ssl || p->tainted) return;
    uint8_t tmp[16384];
    ERR_clear_error();
    int r = SSL_read(p->ssl, tmp, int(want < sizeof tmp ? want : sizeof tmp));
    if (r > 0) check_echo(p, tmp, size_t(r));
    else if (SSL_get_error(p->ssl, r) == SSL_ERROR_SSL) p->tainted = true;
}
#endif

void peer_read(Peer *p, size_t want) {
    if (p->fd < 0) return;
#if FUZZ_TLS
    if (p->ssl && !p->tainted) return tls_read(p, want);
#endif
    uint8_t tmp[65536];
    ssize_t n = recv(p->fd, tmp, want < sizeof tmp ? want : sizeof tmp, MSG_DONTWAIT);
    if (n > 0) check_echo(p, tmp, size_t(n));
}

void run(int mode) { CHECK(aiol_loop_run(g->loop, mode) >= 0); }

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    signal(SIGPIPE, SIG_IGN);
#if FUZZ_TLS
    make_server_ctx();
#endif
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    State st;
    g = &st;
    Input in{data, size};
    uint8_t cfg_bits = in.u8();
    st.buffered = cfg_bits & 1;
    st.keep_open = cfg_bits & 2;
    if (cfg_bits & 4) {
        st.high = 1 + in.u16() * 4u;
        st.low = st.high / 4;
    }
    CHECK(aiol_loop_new(&st.loop) == 0);
    CHECK(aiol_loop_set_exception_handler(st.loop, on_report, nullptr, nullptr) == 0);
    aiol_server_config cfg = {sizeof cfg};
    cfg.host = "127.0.0.1";
#if FUZZ_TLS
    cfg.tls = server_ctx;
    cfg.tls_handshake_timeout_ns = (1 + in.u8()) * 200000ull;  // 0.2 ms .. 51 ms
    cfg.tls_shutdown_timeout_ns = (1 + in.u8()) * 200000ull;
    if (cfg_bits & 8) CHECK(aiol_loop_set_debug(st.loop, 1) == 0);  // handshake reports
#endif
    aiol_protocol p = {sizeof p};
    p.connection_made = on_made;
    p.data_received = on_data;
    p.eof_received = on_eof;
    p.connection_lost = on_lost;
    p.pause_writing = on_pause;
    p.resume_writing = on_resume;
    p.destroy = on_destroy;
    if (st.buffered) {
        p.get_buffer = on_get_buffer;
        p.buffer_updated = on_buffer_updated;
    }
    CHECK(aiol_server_start(st.loop, &cfg, &p, factory, nullptr, factory_destroy, &st.server) == 0);
    sockaddr_in sa = {};
    socklen_t sl = sizeof sa;
    CHECK(aiol_server_sockname(st.server, 0, reinterpret_cast<sockaddr_storage *>(&sa), &sl) == 0);

    static const bool trace = getenv("FUZZ_TRACE") != nullptr;
    int ops = 0;
    while (!in.empty() && ops++ < 300) {
        uint8_t op = in.u8();
        uint8_t arg = in.u8();
        Peer *pe = &peers[arg % kPeers];
        Conn *c = &st.conns[arg % kConns];
        if (trace) fprintf(stderr, "op %d arg %d\n", op % 16, arg);
        switch (op % 16) {
        case 0: {  // connect a peer (optionally with a tiny receive buffer)
            if (pe->fd >= 0) break;
            *pe = Peer();
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (fd < 0) break;
            if (arg & 0x10) {
                int rcv = 1;  // the kernel rounds it up to its minimum
                setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
            }
            int rc = connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa);
            CHECK(rc == 0 || errno == EINPROGRESS);
            pe->fd = fd;
#if FUZZ_TLS
            if (arg & 0x20) {  // a real TLS client; else raw bytes on the TLS port
                pe->ssl = SSL_new(client_ctx[(arg >> 6) & 1]);
                SSL_set_fd(pe->ssl, fd);
                SSL_set_connect_state(pe->ssl);
            } else {
                pe->tainted = true;  // raw bytes: what comes back is TLS, not an echo
            }
#endif
            break;
        }
        case 1: {  // send bytes taken from the input (TLS: as application data)
            size_t n;
            const uint8_t *b = in.take(in.u8() + 1u, &n);
            if (pe->fd < 0 || pe->wrote_shut) break;
#if FUZZ_TLS
            if (pe->ssl && !pe->tainted) {
                tls_write(pe, b, n);
                break;
            }
#endif
            pe->sent.insert(pe->sent.end(), b, b + raw_send(pe, b, n));
            break;
        }
        case 2: {  // send a big pattern block (fills buffers: flow control)
            if (pe->fd < 0 || pe->wrote_shut) break;
            size_t n = (in.u16() % 256 + 1) * 256;
            std::vector<uint8_t> b(n);
            for (size_t i = 0; i < n; i++) b[i] = uint8_t(pe->sent.size() + i * 7);
#if FUZZ_TLS
            if (pe->ssl && !pe->tainted) {
                tls_write(pe, b.data(), n);
                break;
            }
#endif
            pe->sent.insert(pe->sent.end(), b.begin(), b.begin() + raw_send(pe, b.data(), n));
            break;
        }
        case 3: peer_read(pe, in.u16() % 20000 + 1); break;  // a partial read
        case 4:  // half-close from the peer
            if (pe->fd >= 0) {
#if FUZZ_TLS
                if (pe->ssl && !pe->tainted) (void)SSL_shutdown(pe->ssl);  // close_notify
#endif
                shutdown(pe->fd, SHUT_WR);
                pe->wrote_shut = true;
            }
            break;
        case 5: peer_close(pe, false); break;
        case 6: peer_close(pe, true); break;  // RST
        case 7: for (int i = in.u8() % 4; i >= 0; i--) run(AIOL_RUN_NOWAIT); break;
        case 8:  // a pause: the loop waits for I/O or a timer of up to 1.3 ms
            CHECK(aiol_loop_call_later(st.loop, uint64_t(in.u8()) * 5000u, noop, nullptr,
                                       nullptr, nullptr) == 0);
            run(AIOL_RUN_ONCE);
            break;
        case 9: c->act = in.u8(); break;  // scripts the next data_received of a connection
        case 10:  // the server side acts now
            if (c->t) {
                switch (in.u8() % 6) {
                case 0: set_reading(c, true); break;
                case 1: set_reading(c, false); break;
                case 2: close_conn(c, false); break;
                case 3: close_conn(c, true); break;
                case 4: (void)aiol_transport_write_eof(c->t); break;
                case 5: {
                    size_t hi = in.u16(), lo = hi / (1 + in.u8() % 8);
                    CHECK(aiol_transport_set_write_buffer_limits(c->t, hi, lo) == 0 || c->lost);
                    break;
                }
                }
            }
            break;
        case 11: {  // raw bytes into the stream (for TLS: a record header, then any body)
            if (pe->fd < 0) break;
            uint8_t rec[5 + 256];
            size_t n;
            const uint8_t *b = in.take(in.u8() % 256, &n);
            size_t off = 0;
            if (arg & 0x40) {
                rec[0] = uint8_t(20 + in.u8() % 4);  // ccs, alert, handshake, app data
                rec[1] = 3;
                rec[2] = uint8_t(1 + in.u8() % 4);
                rec[3] = uint8_t(n >> 8);
                rec[4] = uint8_t(n);
                off = 5;
            }
            if (n) memcpy(rec + off, b, n);
            size_t w = raw_send(pe, rec, off + n);
#if FUZZ_TLS
            (void)w;
            pe->tainted = true;  // the stream is no longer the client's
#else
            pe->sent.insert(pe->sent.end(), rec, rec + w);
#endif
            break;
        }
#if FUZZ_TLS
        case 12:  // drive the client's handshake
            if (pe->ssl && !pe->tainted) {
                ERR_clear_error();
                int r = SSL_do_handshake(pe->ssl);
                if (r <= 0) {
                    int e = SSL_get_error(pe->ssl, r);
                    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) pe->tainted = true;
                }
            }
            break;
        case 13:  // post-handshake messages: a key update (1.3) or renegotiation (1.2)
            if (pe->ssl && !pe->tainted && SSL_is_init_finished(pe->ssl)) {
                ERR_clear_error();
                if (SSL_version(pe->ssl) == TLS1_3_VERSION)
                    (void)SSL_key_update(pe->ssl, arg & 1 ? SSL_KEY_UPDATE_REQUESTED
                                                          : SSL_KEY_UPDATE_NOT_REQUESTED);
                else
                    (void)SSL_renegotiate(pe->ssl);
                tls_write(pe, nullptr, 0);
                uint8_t one = uint8_t(in.u8());
                tls_write(pe, &one, 1);  // sends what was queued
            }
            break;
#endif
        case 14:  // the server: stop accepting, or close/abort every client
            switch (in.u8() % 4) {
            case 0: CHECK(aiol_server_close(st.server) == 0); break;
            case 1:
            case 2: {
                CHECK((arg & 1 ? aiol_server_abort_clients(st.server)
                               : aiol_server_close_clients(st.server)) == 0);
                for (auto &k : st.conns)
                    if (&k - st.conns < st.nconns && !k.lost) k.closing = true;
                break;
            }
            default: break;
            }
            break;
        default: break;
        }
    }
    // Teardown: read what is there, drop the peers, close everything, check the rest.
    for (int i = 0; i < 3; i++) run(AIOL_RUN_NOWAIT);
    if (trace) {
        for (auto &pr : peers)
            fprintf(stderr, "peer: sent %zu echoed %zu tainted %d\n", pr.sent.size(), pr.echoed,
                    int(pr.tainted));
        for (int i = 0; i < st.nconns; i++)
            fprintf(stderr, "conn %d: made %d lost %d\n", i, st.conns[i].made, st.conns[i].lost);
    }
    for (auto &pr : peers) peer_read(&pr, 65536), peer_close(&pr, false);
    CHECK(aiol_server_wait_closed(st.server, on_wait_closed, nullptr) == 0);
    CHECK(aiol_server_close(st.server) == 0);
    CHECK(aiol_server_abort_clients(st.server) == 0);
    for (int i = 0; i < 3; i++) run(AIOL_RUN_NOWAIT);
    CHECK(aiol_loop_close(st.loop) == 0);
    CHECK(st.wait_ran);
    CHECK(aiol_server_free(st.server) == 0);
    CHECK(st.factory_gone);
    for (int i = 0; i < st.nconns; i++) {
        Conn *k = &st.conns[i];
        CHECK(k->destroyed && (k->lost || !k->made));
        if (k->t) CHECK(aiol_transport_unref(k->t) == 0);
    }
    CHECK(st.destroys == st.nconns);
    CHECK(aiol_loop_free(st.loop) == 0);
    g = nullptr;
    return 0;
}
