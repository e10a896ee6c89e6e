// FZ-01 (RELIABILITY.md 3.11): a libFuzzer target that drives random sequences of
// libaioloop API calls on one loop. Transports are adopted ends of AF_UNIX socketpairs or
// connections accepted by servers on 127.0.0.1 port 0; the fuzzer also plays every peer
// (read, write, shutdown, close, reset). Timers, call_soon handles and fd watchers on
// pipes run actions, and protocol callbacks run a per-connection action (close, abort,
// pause_reading, write, write_eof, switch to BufferedProtocol and back), so transports
// and servers are torn down from inside callbacks. Built outside Meson by
// tests/fuzz/run.sh (clang, -fsanitize=fuzzer,address,undefined).
//
// Oracles (abort() on violation, on top of ASan/UBSan):
//   * connection_made once, before anything else; connection_lost at most once; no protocol
//     callback after connection_lost; destroy exactly once per adopted user_data, after
//     connection_lost; pause_writing / resume_writing strictly alternate, pause first;
//   * after pause_reading, close or abort returned (or close_clients / abort_clients), no
//     data_received, buffer_updated or eof_received until resume_reading;
//   * calls on a lost transport return AIOL_ECLOSED (or AIOL_ESTATE after write_eof);
//   * a server's wait_closed callback runs exactly once, its factory_destroy once;
//   * the peer receives an in-order prefix of the bytes write/writev accepted;
//   * every handle callback or destroy runs at most once; at the end aiol_loop_close() and
//     aiol_loop_free() return 0 and every destroy has run.
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
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#define CHECK(c)                                                                     \
    do {                                                                             \
        if (!(c)) {                                                                  \
            fprintf(stderr, "fuzz_api: check failed at line %d: %s\n", __LINE__, #c); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

namespace {

constexpr int kSlots = 6;     // adopted socketpair transports
constexpr int kAccepted = 10; // user_data for connections accepted by the servers
constexpr int kConns = kSlots + kAccepted;
constexpr int kHandles = 12;
constexpr int kServers = 2;
constexpr int kClients = 8;   // our client sockets towards the servers
constexpr int kPipes = 2;     // pipes watched with add_reader / add_writer
constexpr int kConnects = 4;  // aiol_loop_connect requests, each may be cancelled

struct Input {
    const uint8_t *p;
    size_t n;
    uint8_t u8() { return n ? (n--, *p++) : 0; }
    uint32_t u16() { return u8() | (uint32_t(u8()) << 8); }
    bool empty() const { return n == 0; }
};

inline uint8_t pattern(int slot, uint64_t i) {
    return uint8_t(i * 131u + uint64_t(slot) * 7u + (i >> 9));
}

struct Srv;

struct Conn {
    int slot = -1;
    Srv *srv = nullptr;           // set for accepted connections
    bool borrowed = false;        // accepted or connected: t arrives in connection_made
    bool unchecked = false;       // sendfile bytes went out: the pattern check stops
    int sendfiles = 0, sendfile_dones = 0;
    aiol_transport *t = nullptr;  // we hold a ref from adopt / connection_made to the end
    int peer = -1;                // adopted: our end of the socketpair (checked bytes)
    bool made = false, lost = false, destroyed = false, paused_w = false;
    bool closing = false, paused_r = false, buffered = false;
    int eof_keep_open = 0;
    uint8_t act = 0;         // what data_received / eof_received / pause_writing do
    uint64_t accepted = 0;   // bytes write/writev accepted
    uint64_t peer_read = 0;  // bytes the peer has read and checked
    uint64_t received = 0;   // bytes data_received / buffer_updated saw
    uint8_t rbuf[1024];      // BufferedProtocol buffer
    size_t rbuf_len = 1;
};

struct Srv {
    aiol_server *s = nullptr;     // NULL once freed
    aiol_server *started = nullptr;
    int idx = 0;
    bool waiting = false, wait_ran = false, free_in_wait = false, factory_destroyed = false;
    uint8_t refuse = 0;           // bit mask over accept order: refuse those connections
    int accepts = 0;
    uint16_t port = 0;
};

struct State {
    aiol_loop *loop = nullptr;
    Conn conns[kConns];
    int naccepted = 0;
    Srv srvs[kServers];
    int clients[kClients];
    int pipes[kPipes][2];
    int watcher_destroys = 0, watchers_added = 0;
    aiol_handle *handles[kHandles] = {};
    int handle_runs = 0, handle_destroys = 0, handles_made = 0;
    int adopted = 0, destroys = 0;
    aiol_handle *connects[kConnects] = {};
    int connects_made = 0, connect_dones = 0;
    std::vector<uint8_t> buf;
};

State *g;

Conn *of(void *ud) { return static_cast<Conn *>(ud); }

aiol_protocol proto(bool buffered);
void do_write(Conn *c, size_t len, bool vec, int nvec);

void server_closes_clients(Srv *s, bool abort_all);

void mark_closing(Conn *c, int rc) {
    if (rc == 0) c->closing = true;
}

// The per-connection action, run from inside a protocol callback: the teardown and
// re-entrancy paths asyncio code takes from data_received and friends.
void cb_action(Conn *c) {
    aiol_transport *t = c->t;
    if (!t || c->lost) return;
    switch (c->act % 9) {
    case 0: break;
    case 1: mark_closing(c, aiol_transport_close(t)); break;
    case 2: mark_closing(c, aiol_transport_abort(t)); break;
    case 3:
        if (aiol_transport_pause_reading(t) == 0 && !c->closing) c->paused_r = true;
        break;
    case 4: do_write(c, 70000, false, 1); break;  // past the default high-water mark
    case 5: (void)aiol_transport_write_eof(t); break;
    case 6: {  // switch between plain and buffered reads; same user_data: no destroy
        aiol_protocol p = proto(!c->buffered);
        CHECK(aiol_transport_set_protocol(t, &p, c) == 0);
        c->buffered = !c->buffered;
        break;
    }
    case 7: CHECK(aiol_transport_set_write_buffer_limits(t, 0, 0) == 0); break;
    case 8:
        if (c->srv && c->srv->s) server_closes_clients(c->srv, true);
        break;
    }
}

void on_made(aiol_transport *t, void *ud) {
    Conn *c = of(ud);
    CHECK(!c->made && !c->lost && !c->destroyed);
    if (c->borrowed) {  // the transport is borrowed: keep it past connection_lost
        CHECK(!c->t);
        CHECK(aiol_transport_ref(t) == 0);
        c->t = t;
    }
    CHECK(t == c->t);
    c->made = true;
    if (c->act & 0x80) cb_action(c);
}

void got_data(Conn *c, size_t len) {
    CHECK(c->made && !c->lost && len > 0);
    CHECK(!c->closing && !c->paused_r);
    c->received += len;
    cb_action(c);
}

void on_data(aiol_transport *, const void *data, size_t len, void *ud) {
    CHECK(data);
    CHECK(!of(ud)->buffered);
    got_data(of(ud), len);
}

void *on_get_buffer(aiol_transport *, size_t, size_t *len, void *ud) {
    Conn *c = of(ud);
    CHECK(c->made && !c->lost && c->buffered);
    CHECK(!c->closing && !c->paused_r);
    *len = c->rbuf_len;
    return c->rbuf;
}

void on_buffer_updated(aiol_transport *, size_t n, void *ud) {
    CHECK(n <= of(ud)->rbuf_len);
    CHECK(of(ud)->buffered);
    got_data(of(ud), n);
}

int on_eof(aiol_transport *, void *ud) {
    Conn *c = of(ud);
    CHECK(c->made && !c->lost);
    CHECK(!c->closing && !c->paused_r);
    cb_action(c);
    return c->eof_keep_open;
}

void on_lost(aiol_transport *, int, void *ud) {
    Conn *c = of(ud);
    CHECK(c->made && !c->lost && !c->destroyed);
    c->lost = true;
}

void on_pause(aiol_transport *, void *ud) {
    Conn *c = of(ud);
    CHECK(c->made);
    CHECK(!c->lost);
    CHECK(!c->paused_w);
    c->paused_w = true;
    if (c->act & 0x40) cb_action(c);
}

void on_resume(aiol_transport *, void *ud) {
    Conn *c = of(ud);
    CHECK(c->made);
    CHECK(!c->lost);
    CHECK(c->paused_w);
    c->paused_w = false;
}

void on_destroy(void *ud) {
    Conn *c = of(ud);
    CHECK(!c->destroyed);
    CHECK(c->lost || !c->made);
    c->destroyed = true;
    g->destroys++;
}

aiol_protocol proto(bool buffered) {
    aiol_protocol p = {sizeof p};
    p.connection_made = on_made;
    p.data_received = on_data;
    p.eof_received = on_eof;
    p.connection_lost = on_lost;
    p.pause_writing = on_pause;
    p.resume_writing = on_resume;
    p.destroy = on_destroy;
    if (buffered) {
        p.get_buffer = on_get_buffer;
        p.buffer_updated = on_buffer_updated;
    }
    return p;
}

void check_rc_after_lost(Conn *c, int rc) {
    if (c->lost) CHECK(rc == AIOL_ECLOSED || rc == AIOL_ESTATE);
}

void do_write(Conn *c, size_t len, bool vec, int nvec) {
    if (!c->t || len == 0) return;
    if (aiol_transport_get_write_buffer_size(c->t) > (4u << 20)) return;  // bound memory
    std::vector<uint8_t> data(len);
    for (size_t i = 0; i < len; i++) data[i] = pattern(c->slot, c->accepted + i);
    int rc;
    if (!vec) {
        rc = aiol_transport_write(c->t, data.data(), len);
    } else {
        std::vector<aiol_buf> v(nvec);
        size_t off = 0;
        for (int i = 0; i < nvec; i++) {
            size_t take = (i == nvec - 1) ? len - off : (len - off) / 2;
            v[i].base = data.data() + off;
            v[i].len = take;
            off += take;
        }
        rc = aiol_transport_writev(c->t, v.data(), v.size());
    }
    if (rc == 0) c->accepted += len;
    else CHECK(rc == AIOL_ECLOSED || rc == AIOL_ESTATE || rc == AIOL_EBUSY);
}

void peer_read(Conn *c, size_t want) {
    if (c->peer < 0) return;
    uint8_t tmp[65536];
    while (want > 0) {
        ssize_t n = recv(c->peer, tmp, want < sizeof tmp ? want : sizeof tmp, MSG_DONTWAIT);
        if (n <= 0) break;
        if (!c->unchecked) {
            for (ssize_t i = 0; i < n; i++) CHECK(tmp[i] == pattern(c->slot, c->peer_read + i));
            c->peer_read += uint64_t(n);
            CHECK(c->peer_read <= c->accepted);
        }
        want -= size_t(n);
    }
}

void client_drain(int fd) {
    uint8_t tmp[65536];
    while (recv(fd, tmp, sizeof tmp, MSG_DONTWAIT) > 0) {}
}

// ---- servers ---------------------------------------------------------------------------

int factory(void *fd, const struct sockaddr *peer, socklen_t peer_len, void **ud) {
    Srv *s = static_cast<Srv *>(fd);
    CHECK(s->s && peer && peer_len > 0);
    int n = s->accepts++;
    if ((s->refuse >> (n % 8)) & 1) return 1;
    if (g->naccepted >= kAccepted) return 1;
    Conn *c = &g->conns[kSlots + g->naccepted++];
    c->srv = s;
    c->borrowed = true;
    g->adopted++;
    *ud = c;
    return 0;
}

void factory_destroy(void *fd) {
    Srv *s = static_cast<Srv *>(fd);
    CHECK(!s->factory_destroyed);
    s->factory_destroyed = true;
}

void on_wait_closed(aiol_server *sv, void *ud) {
    Srv *s = static_cast<Srv *>(ud);
    CHECK(s->started == sv && s->waiting && !s->wait_ran);
    s->wait_ran = true;
    if (s->free_in_wait && s->s) {  // unless we gave up our pointer already
        CHECK(aiol_server_free(sv) == 0);
        s->s = nullptr;
    }
}

void server_closes_clients(Srv *s, bool abort_all) {
    int rc = abort_all ? aiol_server_abort_clients(s->s) : aiol_server_close_clients(s->s);
    CHECK(rc == 0);
    for (int i = kSlots; i < kConns; i++)
        if (g->conns[i].srv == s && !g->conns[i].lost) g->conns[i].closing = true;
}

// ---- sendfile and connect --------------------------------------------------------------

int g_file = -1;  // a 1 MiB memfd, made once

void sendfile_done(aiol_transport *t, int status, uint64_t sent, void *ud) {
    Conn *c = of(ud);
    CHECK(t == c->t && !c->lost);  // done runs before connection_lost
    CHECK(c->sendfile_dones < c->sendfiles);
    CHECK(status <= 0 && sent <= (1u << 20));
    c->sendfile_dones++;
    cb_action(c);
}

void connect_done(aiol_transport *t, int status, void *ud) {
    Conn *c = of(ud);
    g->connect_dones++;
    if (t) {
        CHECK(status == 0 && c->made && t == c->t);
    } else {
        CHECK(status < 0 && !c->made);
    }
}

// ---- handles and watchers --------------------------------------------------------------

// Handle callbacks carry an action: low 4 bits the connection, next bits the action.
void handle_cb(aiol_loop *, void *ud) {
    uintptr_t a = reinterpret_cast<uintptr_t>(ud);
    g->handle_runs++;
    Conn *c = &g->conns[(a & 0xf) % kConns];
    Srv *s = &g->srvs[(a >> 4) & 1];
    switch ((a >> 5) & 7) {
    case 0: break;
    case 1: do_write(c, 100 + (a >> 8) % 5000, false, 1); break;
    case 2:
        if (c->t) {
            int rc = aiol_transport_close(c->t);
            check_rc_after_lost(c, rc);
            mark_closing(c, rc);
        }
        break;
    case 3:
        if (c->t && aiol_transport_pause_reading(c->t) == 0 && !c->closing) c->paused_r = true;
        break;
    case 4:
        if (c->t && aiol_transport_resume_reading(c->t) == 0 && !c->closing) c->paused_r = false;
        break;
    case 5: if (s->s) CHECK(aiol_server_close(s->s) == 0); break;
    case 6: if (s->s) server_closes_clients(s, (a >> 8) & 1); break;
    case 7: if (c->t) mark_closing(c, aiol_transport_abort(c->t)); break;
    }
}

void handle_destroy(void *) { g->handle_destroys++; }

// A watcher on a pipe: reads (or writes) a little; its user_data picks an extra action.
void watch_cb(aiol_loop *loop, int fd, void *ud) {
    uintptr_t a = reinterpret_cast<uintptr_t>(ud);
    char tmp[64];
    if (a & 1) (void)!write(fd, "w", 1);
    else (void)!read(fd, tmp, sizeof tmp);
    switch ((a >> 1) & 3) {
    case 1: (a & 1) ? aiol_loop_remove_writer(loop, fd) : aiol_loop_remove_reader(loop, fd); break;
    case 2: handle_cb(loop, reinterpret_cast<void *>(a >> 3)), g->handle_runs--; break;
    default: break;
    }
}

void watch_destroy(void *) { g->watcher_destroys++; }

// Reports (asyncio's "socket.send() raised exception" after writes on a lost transport,
// and the like) are expected here; check their shape instead of printing them.
void on_report(const aiol_error_context *ctx, void *) {
    CHECK(ctx && ctx->size >= sizeof(aiol_error_context) && ctx->message);
    CHECK(ctx->loop == g->loop);
}

void run_nowait(int turns) {
    for (int i = 0; i < turns; i++) CHECK(aiol_loop_run(g->loop, AIOL_RUN_NOWAIT) >= 0);
}

void set_reading(Conn *c, bool pause) {
    if (!c->t) return;
    int rc = pause ? aiol_transport_pause_reading(c->t) : aiol_transport_resume_reading(c->t);
    check_rc_after_lost(c, rc);
    if (rc == 0 && !c->closing) c->paused_r = pause;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    signal(SIGPIPE, SIG_IGN);
    g_file = memfd_create("fuzz_api", 0);
    if (g_file >= 0) {
        std::vector<uint8_t> b(1u << 20, 0x77);
        CHECK(write(g_file, b.data(), b.size()) == ssize_t(b.size()));
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    State st;
    g = &st;
    for (int i = 0; i < kConns; i++) st.conns[i].slot = i;
    for (int i = 0; i < kServers; i++) st.srvs[i].idx = i;
    for (int &fd : st.clients) fd = -1;
    for (auto &p : st.pipes) p[0] = p[1] = -1;
    CHECK(aiol_loop_new(&st.loop) == 0);
    CHECK(aiol_loop_set_exception_handler(st.loop, on_report, nullptr, nullptr) == 0);
    Input in{data, size};
    static const bool trace = getenv("FUZZ_TRACE") != nullptr;
    int ops = 0;
    while (!in.empty() && ops++ < 400) {
        static_assert(kConns <= 16, "selectors");
        uint8_t op = in.u8();
        uint8_t sel = in.u8();
        Conn *c = &st.conns[sel % kConns];
        Srv *s = &st.srvs[sel % kServers];
        int *cl = &st.clients[sel % kClients];
        if (trace) fprintf(stderr, "op %d sel %d\n", op % 34, sel);
        switch (op % 34) {
        case 0: {  // adopt one end of a socketpair
            if (c->t || c->slot >= kSlots) break;
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) break;
            aiol_transport *t = nullptr;
            uint8_t mode = in.u8();
            c->buffered = mode & 2;
            c->rbuf_len = 1 + (mode >> 2) * 4;
            aiol_protocol p = proto(c->buffered);
            int rc = aiol_transport_adopt(st.loop, sv[0], &p, c, &t);
            if (rc != 0) {
                close(sv[0]);
                close(sv[1]);
                break;
            }
            CHECK(t);
            CHECK(aiol_transport_ref(t) == 0);
            c->t = t;
            c->peer = sv[1];
            fcntl(c->peer, F_SETFL, O_NONBLOCK);
            c->eof_keep_open = mode & 1;
            st.adopted++;
            break;
        }
        case 1: do_write(c, in.u16() % 65536 + 1, false, 1); break;
        case 2: do_write(c, in.u16() % 65536 + 1, true, in.u8() % 16 + 1); break;
        case 3:
            if (c->t) check_rc_after_lost(c, aiol_transport_write_eof(c->t));
            break;
        case 4:
            if (c->t) {
                int rc = aiol_transport_close(c->t);
                check_rc_after_lost(c, rc);
                mark_closing(c, rc);
            }
            break;
        case 5:
            if (c->t) {
                int rc = aiol_transport_abort(c->t);
                if (c->lost) CHECK(rc == AIOL_ECLOSED);
                mark_closing(c, rc);
            }
            break;
        case 6: set_reading(c, true); break;
        case 7: set_reading(c, false); break;
        case 8:
            if (c->t) {
                size_t hi = in.u16() * 16u, lo = in.u16() * 4u;
                if (in.u8() & 1) hi = AIOL_WBUF_DEFAULT;
                int rc = aiol_transport_set_write_buffer_limits(c->t, hi, lo);
                if (rc != 0) CHECK(rc == AIOL_EINVAL || rc == AIOL_ECLOSED);
                size_t h2 = 0, l2 = 0;
                if (aiol_transport_get_write_buffer_limits(c->t, &h2, &l2) == 0)
                    CHECK(l2 <= h2);
            }
            break;
        case 9: peer_read(c, in.u16() * 4u + 1); break;
        case 10:
            if (c->peer >= 0) {
                size_t n = in.u16() % 20000 + 1;
                st.buf.assign(n, 0x5a);
                (void)!send(c->peer, st.buf.data(), n, MSG_DONTWAIT);
            }
            break;
        case 11:
            if (c->peer >= 0) shutdown(c->peer, SHUT_WR);
            break;
        case 12:
            if (c->peer >= 0) {  // the peer vanishes: unread data makes our side see a reset
                close(c->peer);
                c->peer = -1;
            }
            break;
        case 13:
        case 14: {  // call_soon / call_later with an action
            int h = in.u8() % kHandles;
            uintptr_t a = in.u16();
            aiol_handle **ret = st.handles[h] ? nullptr : &st.handles[h];
            int rc = op % 34 == 13
                         ? aiol_loop_call_soon(st.loop, handle_cb, (void *)a, handle_destroy, ret)
                         : aiol_loop_call_later(st.loop, uint64_t(in.u8()) * 10000u, handle_cb,
                                                (void *)a, handle_destroy, ret);
            CHECK(rc == 0);
            st.handles_made++;
            break;
        }
        case 15: {
            int h = in.u8() % kHandles;
            if (st.handles[h]) {
                int rc = aiol_handle_cancel(st.handles[h]);
                CHECK(rc == 0 || rc == 1);
                CHECK(aiol_handle_cancelled(st.handles[h]) == 1 || rc == 0);
            }
            break;
        }
        case 16: {
            int h = in.u8() % kHandles;
            if (st.handles[h]) {
                CHECK(aiol_handle_release(st.handles[h]) == 0);
                st.handles[h] = nullptr;
            }
            break;
        }
        case 17: run_nowait(in.u8() % 4 + 1); break;
        case 18:
            if (c->t) {  // queries on a live or lost transport
                (void)aiol_transport_is_closing(c->t);
                (void)aiol_transport_is_reading(c->t);
                (void)aiol_transport_can_write_eof(c->t);
                (void)aiol_transport_get_protocol_data(c->t);
                struct sockaddr_storage ss;
                socklen_t sl = sizeof ss;
                (void)aiol_transport_peername(c->t, &ss, &sl);
                int fd = aiol_transport_fileno(c->t);
                if (c->lost) CHECK(fd == AIOL_ECLOSED);
                if (c->lost) CHECK(aiol_transport_loop(c->t) == nullptr);
            }
            break;
        case 19:  // stop + run exercises stop
            CHECK(aiol_loop_stop(st.loop) == 0);
            run_nowait(1);
            break;
        case 20: c->act = in.u8(); break;  // what this connection's callbacks do
        case 21: {  // start a server on 127.0.0.1, port 0
            if (s->s || s->port) break;  // one server per slot and input
            s->refuse = in.u8();
            aiol_server_config cfg = {sizeof cfg};
            cfg.host = "127.0.0.1";
            cfg.backlog = in.u8() % 4 + 1;
            aiol_protocol p = proto(false);
            int rc = aiol_server_start(st.loop, &cfg, &p, factory, s, factory_destroy, &s->s);
            if (rc != 0) {
                CHECK(rc == AIOL_EMFILE || rc == AIOL_ENFILE || rc == AIOL_ENOBUFS);
                s->s = nullptr;
                break;
            }
            s->started = s->s;
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            CHECK(aiol_server_sockname(s->s, 0, &ss, &sl) == 0);
            s->port = ntohs(reinterpret_cast<sockaddr_in *>(&ss)->sin_port);
            CHECK(aiol_server_sockname(s->s, 1, &ss, &sl) == AIOL_ERANGE);
            CHECK(aiol_server_socket_count(s->s) == 1 && aiol_server_is_serving(s->s) == 1);
            break;
        }
        case 22:
            if (s->s) {
                CHECK(aiol_server_close(s->s) == 0);
                CHECK(aiol_server_is_serving(s->s) == 0);
            }
            break;
        case 23: if (s->s) server_closes_clients(s, in.u8() & 1); break;
        case 24:
            if (s->s && !s->waiting) {
                s->free_in_wait = in.u8() & 1;
                CHECK(aiol_server_wait_closed(s->s, on_wait_closed, s) == 0);
                s->waiting = true;
            }
            break;
        case 25:
            if (s->s) {  // give up our pointer; connections go on
                CHECK(aiol_server_free(s->s) == 0);
                s->s = nullptr;
            }
            break;
        case 26:  // a client connects to a server that may or may not still listen
            if (*cl < 0 && s->port) {
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
                if (fd < 0) break;
                sockaddr_in a = {};
                a.sin_family = AF_INET;
                a.sin_port = htons(s->port);
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                (void)connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
                *cl = fd;
            }
            break;
        case 27:
            if (*cl >= 0) {
                size_t n = in.u16() % 20000 + 1;
                st.buf.assign(n, 0x33);
                (void)!send(*cl, st.buf.data(), n, MSG_DONTWAIT | MSG_NOSIGNAL);
                client_drain(*cl);
            }
            break;
        case 28:
            if (*cl >= 0) {
                uint8_t how = in.u8();
                if (how & 1) {  // reset: SO_LINGER 0 then close sends RST
                    linger lg = {1, 0};
                    setsockopt(*cl, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                }
                if (how & 2) {
                    shutdown(*cl, SHUT_WR);
                } else {
                    close(*cl);
                    *cl = -1;
                }
            }
            break;
        case 29: {  // a pipe watched for reading or writing; the watcher may act
            int pi = sel % kPipes;
            if (st.pipes[pi][0] < 0 && pipe2(st.pipes[pi], O_NONBLOCK) != 0) break;
            uintptr_t a = in.u16();
            int fd = st.pipes[pi][a & 1];
            int rc = (a & 1) ? aiol_loop_add_writer(st.loop, fd, watch_cb, (void *)a, watch_destroy)
                             : aiol_loop_add_reader(st.loop, fd, watch_cb, (void *)a, watch_destroy);
            CHECK(rc == 0);
            st.watchers_added++;
            if (!(a & 1)) (void)!write(st.pipes[pi][1], "r", 1);
            break;
        }
        case 30: {
            int pi = sel % kPipes;
            if (st.pipes[pi][0] < 0) break;
            uint8_t w = in.u8();
            int rc = (w & 1) ? aiol_loop_remove_writer(st.loop, st.pipes[pi][1])
                             : aiol_loop_remove_reader(st.loop, st.pipes[pi][0]);
            CHECK(rc == 0 || rc == 1);
            break;
        }
        case 31:  // run until the next timer (at most 2.5 ms) or I/O
            if (aiol_loop_call_later(st.loop, uint64_t(in.u8()) * 10000u, handle_cb, nullptr,
                                     handle_destroy, nullptr) == 0)
                st.handles_made++;
            CHECK(aiol_loop_run(st.loop, AIOL_RUN_ONCE) >= 0);
            break;
        case 32:  // sendfile a range of the memfd (the peer stops checking bytes)
            if (c->t && g_file >= 0) {
                uint64_t off = uint64_t(in.u16()) * 16u, count = uint64_t(in.u16()) * 8u;
                int rc = aiol_transport_sendfile(c->t, g_file, off, count, sendfile_done, c);
                if (rc == 0) {
                    c->sendfiles++;
                    c->unchecked = true;
                } else {
                    CHECK(rc == AIOL_ECLOSED || rc == AIOL_ESTATE || rc == AIOL_EBUSY ||
                          rc == AIOL_EINVAL);
                }
            }
            break;
        case 33: {  // connect to a server (or to a port nobody listens on); may be cancelled
            int k = in.u8() % kConnects;
            if (st.naccepted >= kAccepted) break;
            aiol_connect_config cfg = {sizeof cfg};
            cfg.host = "127.0.0.1";
            cfg.port = s->port ? s->port : 1;
            cfg.timeout_ns = uint64_t(in.u8()) * 20000u;
            Conn *nc = &st.conns[kSlots + st.naccepted];
            aiol_protocol p = proto(false);
            aiol_handle **ret = st.connects[k] ? nullptr : &st.connects[k];
            int rc = aiol_loop_connect(st.loop, &cfg, &p, nc, connect_done, nc, ret);
            CHECK(rc == 0);
            st.naccepted++;
            nc->borrowed = true;
            st.adopted++;
            st.connects_made++;
            if (in.u8() & 1 && st.connects[k]) aiol_handle_cancel(st.connects[k]);
            break;
        }
        }
    }
    // Drain what we can, then tear down: abort every transport, run, close.
    run_nowait(3);
    if (trace)
        for (auto &c : st.conns)
            if (c.made || c.srv || c.borrowed)
                fprintf(stderr, "conn %d: made %d lost %d received %llu sendfiles %d\n", c.slot,
                        c.made, c.lost, (unsigned long long)c.received, c.sendfiles);
    for (auto &c : st.conns) peer_read(&c, SIZE_MAX);
    for (auto &c : st.conns)
        if (c.t && !c.lost) aiol_transport_abort(c.t);
    for (auto &s : st.srvs)
        if (s.s) aiol_server_close(s.s);
    run_nowait(3);
    for (auto &c : st.conns) CHECK(!c.t || c.lost || !c.made);
    for (int h = 0; h < kHandles; h++)
        if (st.handles[h]) aiol_handle_cancel(st.handles[h]);
    CHECK(aiol_loop_close(st.loop) == 0);
    for (auto &s : st.srvs) {
        if (s.waiting) CHECK(s.wait_ran);
        if (s.s) CHECK(aiol_server_free(s.s) == 0);
    }
    for (auto &c : st.conns) {
        if (c.t) {
            CHECK(c.destroyed);
            CHECK(aiol_transport_write(c.t, "x", 1) == AIOL_ECLOSED);
            CHECK(aiol_transport_unref(c.t) == 0);
        }
        if (c.peer >= 0) close(c.peer);
    }
    for (int fd : st.clients)
        if (fd >= 0) close(fd);
    for (auto &p : st.pipes)
        if (p[0] >= 0) close(p[0]), close(p[1]);
    for (int h = 0; h < kHandles; h++)
        if (st.handles[h]) CHECK(aiol_handle_release(st.handles[h]) == 0);
    for (auto *h : st.connects)
        if (h) CHECK(aiol_handle_release(h) == 0);
    CHECK(st.connect_dones == st.connects_made);
    for (auto &c : st.conns) CHECK(c.sendfile_dones == c.sendfiles);
    CHECK(st.destroys == st.adopted);
    CHECK(st.handle_destroys == st.handles_made);
    CHECK(st.handle_runs <= st.handles_made);
    CHECK(st.watcher_destroys == st.watchers_added);
    CHECK(aiol_loop_free(st.loop) == 0);
    for (auto &s : st.srvs)
        if (s.port) CHECK(s.factory_destroyed);
    g = nullptr;
    return 0;
}
