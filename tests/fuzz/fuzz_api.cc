// FZ-01 (RELIABILITY.md 3.11), reduced: a libFuzzer target that drives random sequences of
// libaioloop API calls on one loop. Transports are adopted ends of AF_UNIX socketpairs
// (no network); the fuzzer also plays the peer (read, write, shutdown, close). Built
// outside Meson by tests/fuzz/fuzz.sh (clang, -fsanitize=fuzzer,address,undefined).
//
// Oracles (abort() on violation, on top of ASan/UBSan):
//   * connection_made once, before anything else; connection_lost at most once; no protocol
//     callback after connection_lost; destroy exactly once per adopted user_data, after
//     connection_lost; pause_writing / resume_writing strictly alternate, pause first;
//   * calls on a lost transport return AIOL_ECLOSED (or AIOL_ESTATE after write_eof);
//   * the peer receives an in-order prefix of the bytes write/writev accepted;
//   * every handle callback or destroy runs at most once; at the end aiol_loop_close() and
//     aiol_loop_free() return 0 and every destroy has run.
#include <aioloop.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

constexpr int kSlots = 6;
constexpr int kHandles = 12;

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

struct Conn {
    int slot = -1;
    aiol_transport *t = nullptr;  // we hold a ref from adopt to the end
    int peer = -1;
    bool made = false, lost = false, destroyed = false, paused_w = false, eof_sent = false;
    int eof_keep_open = 0;
    uint64_t accepted = 0;   // bytes write/writev accepted
    uint64_t peer_read = 0;  // bytes the peer has read and checked
    uint64_t received = 0;   // bytes data_received saw
};

struct State {
    aiol_loop *loop = nullptr;
    Conn conns[kSlots];
    aiol_handle *handles[kHandles] = {};
    int handle_runs = 0, handle_destroys = 0, handles_made = 0;
    int adopted = 0, destroys = 0;
    std::vector<uint8_t> buf;
};

State *g;

Conn *of(void *ud) { return static_cast<Conn *>(ud); }

void on_made(aiol_transport *t, void *ud) {
    Conn *c = of(ud);
    CHECK(!c->made && !c->lost && !c->destroyed);
    CHECK(t == c->t);
    c->made = true;
}

void on_data(aiol_transport *, const void *data, size_t len, void *ud) {
    Conn *c = of(ud);
    CHECK(c->made && !c->lost && len > 0 && data);
    c->received += len;
}

int on_eof(aiol_transport *, void *ud) {
    Conn *c = of(ud);
    CHECK(c->made && !c->lost);
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

aiol_protocol proto() {
    aiol_protocol p = {sizeof p};
    p.connection_made = on_made;
    p.data_received = on_data;
    p.eof_received = on_eof;
    p.connection_lost = on_lost;
    p.pause_writing = on_pause;
    p.resume_writing = on_resume;
    p.destroy = on_destroy;
    return p;
}

void check_rc_after_lost(Conn *c, int rc) {
    if (c->lost) CHECK(rc == AIOL_ECLOSED || rc == AIOL_ESTATE);
}

// Known library bug (reported): writing past the high-water mark before connection_made
// has run makes pause_writing run before connection_made, against aioloop.h's callback
// order. Until it is fixed, writes wait for connection_made unless FUZZ_WRITE_BEFORE_MADE
// is set (tests/reliability/repro_pause_before_made.c reproduces it).
bool write_before_made() {
    static int v = getenv("FUZZ_WRITE_BEFORE_MADE") ? 1 : 0;
    return v;
}

void do_write(Conn *c, size_t len, bool vec, int nvec) {
    if (!c->t || len == 0) return;
    if (!c->made && !write_before_made()) return;
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
        for (ssize_t i = 0; i < n; i++) CHECK(tmp[i] == pattern(c->slot, c->peer_read + i));
        c->peer_read += uint64_t(n);
        CHECK(c->peer_read <= c->accepted);
        want -= size_t(n);
    }
}

// Handle callbacks carry an action: low 4 bits the slot, next bits the action.
void handle_cb(aiol_loop *, void *ud) {
    uintptr_t a = reinterpret_cast<uintptr_t>(ud);
    g->handle_runs++;
    Conn *c = &g->conns[(a & 0xf) % kSlots];
    if (!c->t) return;
    switch ((a >> 4) & 3) {
    case 0: break;
    case 1: do_write(c, 100 + (a >> 6) % 5000, false, 1); break;
    case 2: check_rc_after_lost(c, aiol_transport_close(c->t)); break;
    case 3: check_rc_after_lost(c, aiol_transport_pause_reading(c->t)); break;
    }
}

void handle_destroy(void *) { g->handle_destroys++; }

// Reports (asyncio's "socket.send() raised exception" after writes on a lost transport,
// and the like) are expected here; check their shape instead of printing them.
void on_report(const aiol_error_context *ctx, void *) {
    CHECK(ctx && ctx->size >= sizeof(aiol_error_context) && ctx->message);
    CHECK(ctx->loop == g->loop);
}

void run_nowait(int turns) {
    for (int i = 0; i < turns; i++) CHECK(aiol_loop_run(g->loop, AIOL_RUN_NOWAIT) >= 0);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    State st;
    g = &st;
    for (int i = 0; i < kSlots; i++) st.conns[i].slot = i;
    CHECK(aiol_loop_new(&st.loop) == 0);
    CHECK(aiol_loop_set_exception_handler(st.loop, on_report, nullptr, nullptr) == 0);
    Input in{data, size};
    aiol_protocol p = proto();
    int ops = 0;
    while (!in.empty() && ops++ < 400) {
        uint8_t op = in.u8();
        Conn *c = &st.conns[in.u8() % kSlots];
        if (getenv("FUZZ_TRACE")) fprintf(stderr, "op %d slot %d\n", op % 20, c->slot);
        switch (op % 20) {
        case 0: {  // adopt one end of a socketpair
            if (c->t) break;
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) break;
            aiol_transport *t = nullptr;
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
            c->eof_keep_open = in.u8() & 1;
            st.adopted++;
            break;
        }
        case 1: do_write(c, in.u16() % 65536 + 1, false, 1); break;
        case 2: do_write(c, in.u16() % 65536 + 1, true, in.u8() % 16 + 1); break;
        case 3:
            if (c->t) {
                int rc = aiol_transport_write_eof(c->t);
                check_rc_after_lost(c, rc);
            }
            break;
        case 4:
            if (c->t) check_rc_after_lost(c, aiol_transport_close(c->t));
            break;
        case 5:
            if (c->t) {
                int rc = aiol_transport_abort(c->t);
                if (c->lost) CHECK(rc == AIOL_ECLOSED);
            }
            break;
        case 6:
            if (c->t) check_rc_after_lost(c, aiol_transport_pause_reading(c->t));
            break;
        case 7:
            if (c->t) check_rc_after_lost(c, aiol_transport_resume_reading(c->t));
            break;
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
            int rc = op % 20 == 13
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
                int fd = aiol_transport_fileno(c->t);
                if (c->lost) CHECK(fd == AIOL_ECLOSED);
                if (c->lost) CHECK(aiol_transport_loop(c->t) == nullptr);
            }
            break;
        case 19:  // BufferedProtocol switch is out of scope; stop + run exercises stop
            CHECK(aiol_loop_stop(st.loop) == 0);
            run_nowait(1);
            break;
        }
    }
    // Drain what we can, then tear down: abort every transport, run, close.
    run_nowait(3);
    for (auto &c : st.conns) peer_read(&c, SIZE_MAX);
    for (auto &c : st.conns)
        if (c.t && !c.lost) aiol_transport_abort(c.t);
    run_nowait(3);
    for (auto &c : st.conns) CHECK(!c.t || c.lost || !c.made);
    for (int h = 0; h < kHandles; h++)
        if (st.handles[h]) aiol_handle_cancel(st.handles[h]);
    CHECK(aiol_loop_close(st.loop) == 0);
    for (auto &c : st.conns) {
        if (c.t) {
            CHECK(c.destroyed);
            CHECK(aiol_transport_write(c.t, "x", 1) == AIOL_ECLOSED);
            CHECK(aiol_transport_unref(c.t) == 0);
        }
        if (c.peer >= 0) close(c.peer);
    }
    for (int h = 0; h < kHandles; h++)
        if (st.handles[h]) CHECK(aiol_handle_release(st.handles[h]) == 0);
    CHECK(st.destroys == st.adopted);
    CHECK(st.handle_destroys == st.handles_made);
    CHECK(st.handle_runs <= st.handles_made);
    CHECK(aiol_loop_free(st.loop) == 0);
    g = nullptr;
    return 0;
}
