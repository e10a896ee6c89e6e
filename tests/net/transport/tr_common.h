/*
 * tr_common.h — shared harness for the socket transport tests (cmocka).
 *
 * Each case gets a fresh loop, an exception handler that records reports, and a baseline
 * count of open fds; teardown asserts aiol_loop_free() == 0, that the fd count is back,
 * and that no CHECK() made inside a callback failed (callbacks never use cmocka asserts,
 * so a failure never longjmps through library frames).
 *
 * `conn` is a recording protocol: it checks the callback order of aioloop.h (made, data /
 * pause / resume, at most one eof, lost, destroy), that no callback runs inside an
 * aiol_* call (API() marks those), and collects or verifies what it receives. `peer` is
 * the other end of the socket: a plain POSIX socket driven by the loop's add_reader /
 * add_writer.
 */
#ifndef AIOL_TR_COMMON_H
#define AIOL_TR_COMMON_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "aioloop.h"

#define UNUSED(x) (void)(x)
#define MS 1000000ull /* ns */
#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

/* ---- failures inside callbacks -------------------------------------------------------- */

static int g_check_failures;
static const char *g_check_first_file;
static int g_check_first_line;
static const char *g_check_first_expr;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            if (g_check_failures++ == 0) {                                            \
                g_check_first_file = __FILE__;                                        \
                g_check_first_line = __LINE__;                                        \
                g_check_first_expr = #cond;                                           \
            }                                                                         \
        }                                                                             \
    } while (0)

static inline void assert_no_check_failures(void) {
    if (g_check_failures)
        fail_msg("%d CHECK(s) failed in callbacks; first at %s:%d: %s", g_check_failures,
                 g_check_first_file, g_check_first_line, g_check_first_expr);
}

/* API(expr): the thread is inside an aiol_* call while expr runs; every callback of this
   harness CHECKs that it never sees the mark. */
static __thread int g_in_api;
static __thread long g_api_rc;
#define API(expr) (g_in_api = 1, g_api_rc = (long)(expr), g_in_api = 0, (int)g_api_rc)
#define APIZ(expr) (g_in_api = 1, g_api_rc = (long)(expr), g_in_api = 0, (size_t)g_api_rc)

/* ---- open fds ------------------------------------------------------------------------- */

static inline int count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1;
}

/* ---- exception handler reports -------------------------------------------------------- */

static int g_reports;
static int g_report_code;
static void *g_report_object;
static int g_report_kind;

static void tr_exception_handler(const aiol_error_context *ctx, void *ud) {
    UNUSED(ud);
    CHECK(!g_in_api);
    g_reports++;
    g_report_code = ctx->code;
    g_report_object = ctx->object;
    g_report_kind = ctx->object_kind;
}

/* ---- fixture ----------------------------------------------------------------------- */

typedef struct fixture {
    aiol_loop *loop;
    int fd_baseline;
} fixture;

static inline int setup(void **state) {
    static fixture f;
    memset(&f, 0, sizeof f);
    g_check_failures = 0;
    g_reports = 0;
    g_report_code = 0;
    g_report_object = NULL;
    g_in_api = 0;
    f.fd_baseline = count_open_fds();
    assert_true(f.fd_baseline > 0);
    assert_int_equal(aiol_loop_new(&f.loop), 0);
    assert_int_equal(aiol_loop_set_exception_handler(f.loop, tr_exception_handler, NULL, NULL), 0);
    *state = &f;
    return 0;
}

static inline int teardown(void **state) {
    fixture *f = (fixture *)*state;
    if (f->loop) assert_int_equal(aiol_loop_free(f->loop), 0);
    f->loop = NULL;
    assert_int_equal(count_open_fds(), f->fd_baseline);
    assert_no_check_failures();
    return 0;
}

#define LOOP(state) (((fixture *)*(state))->loop)
#define CASE(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* ---- running the loop until something happened --------------------------------------- */

static int g_watchdog_fired;
static void tr_watchdog(aiol_loop *loop, void *ud) {
    UNUSED(loop), UNUSED(ud);
    g_watchdog_fired = 1;
}

/* Runs one iteration at a time until cond holds; a 20 s timer (never reached when the
   code works: the tests wait for events, not for time) turns a hang into a failure. */
#define RUN_UNTIL(loop, cond)                                                                \
    do {                                                                                     \
        aiol_handle *wd_ = NULL;                                                             \
        g_watchdog_fired = 0;                                                                \
        assert_int_equal(aiol_loop_call_later((loop), 20000 * MS, tr_watchdog, NULL, NULL,   \
                                              &wd_), 0);                                     \
        while (!(cond) && !g_watchdog_fired) assert_true(aiol_loop_run((loop), AIOL_RUN_ONCE) >= 0); \
        aiol_handle_cancel(wd_);                                                             \
        aiol_handle_release(wd_);                                                            \
        if (!(cond)) fail_msg("timed out waiting for %s", #cond);                            \
    } while (0)

/* Runs until nothing is alive (all transports gone). */
static inline void run_to_end(aiol_loop *loop) {
    g_watchdog_fired = 0;
    int rc;
    for (int i = 0; (rc = aiol_loop_run(loop, AIOL_RUN_ONCE)) > 0; i++) assert_true(i < 10000000);
    assert_int_equal(rc, 0);
}

/* ---- byte patterns and hashes --------------------------------------------------------- */

static inline unsigned char pat(uint64_t i) {
    uint64_t h = (i + 0x632be59bd9b4e019ull) * 0x9E3779B97F4A7C15ull;
    return (unsigned char)(h >> 56);
}
static inline void fill_pattern(unsigned char *p, uint64_t off, size_t len) {
    for (size_t i = 0; i < len; i++) p[i] = pat(off + i);
}
/* 1 if p[0..len) is the pattern at off */
static inline int is_pattern(const unsigned char *p, uint64_t off, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (p[i] != pat(off + i)) return 0;
    return 1;
}

#define FNV_INIT 0xcbf29ce484222325ull
static inline uint64_t fnv(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ---- sockets ------------------------------------------------------------------------- */

static inline void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static inline void unix_pair(int sv[2]) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static inline void set_bufs(int fd, int rcvbuf, int sndbuf) {
    if (rcvbuf) assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    if (sndbuf) assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
}

/* A connected TCP pair on 127.0.0.1: *ours is the accepted end, *theirs the connecting
   one. Buffer sizes (0: default) are set before connect so the window is small from the
   start; rcv/snd apply to both ends. */
static inline void tcp_pair(int *ours, int *theirs, int rcvbuf, int sndbuf) {
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    set_bufs(l, rcvbuf, sndbuf);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 1), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    set_bufs(c, rcvbuf, sndbuf);
    assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(s >= 0);
    close(l);
    *ours = s;
    *theirs = c;
}

/* SO_LINGER {1, 0} then close: the peer's kernel sends RST. */
static inline void close_with_rst(int fd) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* ---- conn: a recording protocol ------------------------------------------------------ */

typedef struct conn conn;
struct conn {
    aiol_transport *t;
    int made, lost, destroyed, eofs, pauses, resumes, data_calls, buffer_calls;
    int get_buffer_calls;
    int lost_status;
    int user_closed;   /* the test called close: no data/eof after it */
    int user_aborted;  /* the test called abort: nothing but connection_lost after it */
    int user_paused;   /* pause_reading in effect: no data/eof */
    int writing_paused;
    int pause_in_api;  /* pause_writing seen while a write was on the stack */
    int lost_before_made;
    uint64_t rx_len;
    unsigned char *rx;  /* optional store, capacity rx_cap */
    size_t rx_cap;
    int verify_pattern; /* check received bytes against pat() */
    uint64_t rx_bad;    /* mismatching bytes */
    uint64_t rx_hash;
    size_t max_chunk;
    int zero_len;
    int eof_ret;       /* what eof_received returns (without on_eof) */
    /* BufferedProtocol */
    unsigned char *bbuf;
    size_t bbuf_len;
    int bbuf_null;     /* get_buffer returns NULL */
    int bbuf_zero;     /* get_buffer returns *len = 0 */
    unsigned char *bbuf_pending;  /* handed out, not yet updated */
    /* hooks (run inside the callback, after the bookkeeping) */
    void (*on_made)(conn *c);
    void (*on_data)(conn *c, const void *data, size_t len);
    int (*on_eof)(conn *c);
    void (*on_lost)(conn *c, int status);
    void (*on_pause)(conn *c);
    void (*on_resume)(conn *c);
    void (*on_destroy)(conn *c);
    void (*on_get_buffer)(conn *c);
    int switched;       /* replaced by set_protocol: destroyed without connection_lost */
    void *ctx;
    int event_seq;      /* monotonically increasing event counter */
    int lost_seq, destroy_seq, eof_seq;
};

static inline void conn_init(conn *c) {
    memset(c, 0, sizeof *c);
    c->rx_hash = FNV_INIT;
}

static inline void conn_common_checks(conn *c, aiol_transport *t, int after_abort_ok) {
    CHECK(!g_in_api);
    CHECK(c->made == 1);
    CHECK(!c->lost);
    CHECK(!c->destroyed);
    CHECK(after_abort_ok || !c->user_aborted);
    CHECK(!c->switched);
    CHECK(t == c->t);
    c->event_seq++;
}

static inline void conn_common(conn *c, aiol_transport *t) { conn_common_checks(c, t, 0); }

static inline void conn_store(conn *c, const unsigned char *p, size_t len) {
    if (c->rx) {
        CHECK(c->rx_len + len <= c->rx_cap);
        if (c->rx_len + len <= c->rx_cap) memcpy(c->rx + c->rx_len, p, len);
    }
    if (c->verify_pattern && !is_pattern(p, c->rx_len, len)) c->rx_bad++;
    c->rx_hash = fnv(c->rx_hash, p, len);
    c->rx_len += len;
    if (len > c->max_chunk) c->max_chunk = len;
}

static void conn_made_cb(aiol_transport *t, void *ud) {
    conn *c = (conn *)ud;
    CHECK(!g_in_api);
    CHECK(c->made == 0);
    CHECK(!c->lost && !c->destroyed);
    if (!c->t) c->t = t;
    CHECK(c->t == t);
    c->made++;
    c->event_seq++;
    if (c->on_made) c->on_made(c);
}

static void conn_data_cb(aiol_transport *t, const void *data, size_t len, void *ud) {
    conn *c = (conn *)ud;
    conn_common(c, t);
    CHECK(!c->user_closed && !c->user_paused && c->eofs == 0);
    CHECK(data != NULL);
    if (len == 0) c->zero_len++;
    c->data_calls++;
    conn_store(c, (const unsigned char *)data, len);
    if (c->on_data) c->on_data(c, data, len);
}

static int conn_eof_cb(aiol_transport *t, void *ud) {
    conn *c = (conn *)ud;
    conn_common(c, t);
    CHECK(!c->user_closed && !c->user_paused && c->eofs == 0);
    c->eofs++;
    c->eof_seq = c->event_seq;
    if (c->on_eof) return c->on_eof(c);
    return c->eof_ret;
}

static void conn_lost_cb(aiol_transport *t, int status, void *ud) {
    conn *c = (conn *)ud;
    CHECK(!g_in_api);
    CHECK(c->made == 1);
    CHECK(c->lost == 0);
    CHECK(!c->destroyed);
    CHECK(t == c->t);
    c->lost++;
    c->lost_status = status;
    c->lost_seq = ++c->event_seq;
    if (c->on_lost) c->on_lost(c, status);
}

static void conn_pause_cb(aiol_transport *t, void *ud) {
    conn *c = (conn *)ud;
    /* The one callback allowed after abort: asyncio calls pause_writing inside write(),
       before the abort; here it is deferred past the write, so a write over the high mark
       followed by abort still shows pause_writing before connection_lost. */
    conn_common_checks(c, t, 1);
    CHECK(!c->writing_paused);  /* strictly alternating, pause first */
    c->writing_paused = 1;
    c->pauses++;
    if (c->on_pause) c->on_pause(c);
}

static void conn_resume_cb(aiol_transport *t, void *ud) {
    conn *c = (conn *)ud;
    conn_common(c, t);
    CHECK(c->writing_paused);
    c->writing_paused = 0;
    c->resumes++;
    if (c->on_resume) c->on_resume(c);
}

static void *conn_get_buffer_cb(aiol_transport *t, size_t hint, size_t *len, void *ud) {
    conn *c = (conn *)ud;
    UNUSED(hint);
    conn_common(c, t);
    CHECK(!c->user_closed && !c->user_paused && c->eofs == 0);
    CHECK(len != NULL);
    c->get_buffer_calls++;
    if (c->bbuf_null) {
        *len = 16;
        return NULL;
    }
    if (c->bbuf_zero) {
        *len = 0;
        return c->bbuf;
    }
    /* poison: bytes the transport did not report must not be mistaken for data */
    memset(c->bbuf, 0xA5, c->bbuf_len);
    c->bbuf_pending = c->bbuf;
    *len = c->bbuf_len;
    if (c->on_get_buffer) c->on_get_buffer(c);
    return c->bbuf;
}

static void conn_buffer_updated_cb(aiol_transport *t, size_t n, void *ud) {
    conn *c = (conn *)ud;
    conn_common(c, t);
    CHECK(!c->user_closed && !c->user_paused && c->eofs == 0);
    CHECK(c->bbuf_pending == c->bbuf);
    CHECK(n > 0 && n <= c->bbuf_len);
    c->bbuf_pending = NULL;
    c->buffer_calls++;
    if (n > c->bbuf_len) n = c->bbuf_len;
    conn_store(c, c->bbuf, n);
    if (c->on_data) c->on_data(c, c->bbuf, n);
}

static void conn_destroy_cb(void *ud) {
    conn *c = (conn *)ud;
    CHECK(!g_in_api);
    CHECK(c->destroyed == 0);
    CHECK(c->lost == c->made || c->switched); /* after connection_lost (if made ran) */
    c->destroyed++;
    c->destroy_seq = ++c->event_seq;
    if (c->on_destroy) c->on_destroy(c);
}

static inline aiol_protocol conn_protocol(void) {
    aiol_protocol p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    p.connection_made = conn_made_cb;
    p.data_received = conn_data_cb;
    p.eof_received = conn_eof_cb;
    p.connection_lost = conn_lost_cb;
    p.pause_writing = conn_pause_cb;
    p.resume_writing = conn_resume_cb;
    p.destroy = conn_destroy_cb;
    return p;
}

static inline aiol_protocol conn_buffered_protocol(void) {
    aiol_protocol p = conn_protocol();
    p.data_received = NULL;
    p.get_buffer = conn_get_buffer_cb;
    p.buffer_updated = conn_buffer_updated_cb;
    return p;
}

/* Adopts fd with the recording protocol. */
static inline aiol_transport *adopt(aiol_loop *loop, int fd, conn *c) {
    aiol_protocol p = conn_protocol();
    aiol_transport *t = NULL;
    assert_int_equal(API(aiol_transport_adopt(loop, fd, &p, c, &t)), 0);
    assert_non_null(t);
    c->t = t;
    return t;
}

/* close / abort marking the conn so its callbacks can check what may follow */
static inline int conn_close(conn *c) {
    c->user_closed = 1;
    return API(aiol_transport_close(c->t));
}
static inline int conn_abort(conn *c) {
    c->user_closed = 1;
    c->user_aborted = 1;
    return API(aiol_transport_abort(c->t));
}

/* ---- peer: the other end, a plain socket driven by the loop ---------------------------- */

typedef struct peer {
    aiol_loop *loop;
    int fd;
    int reading, writing;
    /* receive side */
    uint64_t rx_len;
    uint64_t rx_hash;
    unsigned char *rx; /* optional store */
    size_t rx_cap;
    int verify_pattern;
    uint64_t rx_bad;
    int rx_eof;
    int rx_err;
    size_t read_chunk; /* max bytes per readiness (0: 64 KiB) */
    uint64_t stop_after; /* stop reading once this many bytes arrived (0: never) */
    /* send side */
    const unsigned char *tx;
    size_t tx_len, tx_off;
    int tx_pattern;    /* send pat() bytes instead of tx */
    int shut_when_sent;
    int tx_err;
    void (*on_rx)(struct peer *p);
} peer;

static inline void peer_init(peer *p, aiol_loop *loop, int fd) {
    memset(p, 0, sizeof *p);
    p->loop = loop;
    p->fd = fd;
    p->rx_hash = FNV_INIT;
    set_nonblock(fd);
}

static void peer_read_cb(aiol_loop *loop, int fd, void *ud) {
    UNUSED(loop);
    peer *p = (peer *)ud;
    CHECK(!g_in_api);
    unsigned char buf[64 * 1024];
    size_t want = p->read_chunk ? p->read_chunk : sizeof buf;
    if (want > sizeof buf) want = sizeof buf;
    ssize_t n = recv(fd, buf, want, 0);
    if (n > 0) {
        if (p->rx) {
            CHECK(p->rx_len + (size_t)n <= p->rx_cap);
            if (p->rx_len + (size_t)n <= p->rx_cap) memcpy(p->rx + p->rx_len, buf, (size_t)n);
        }
        if (p->verify_pattern && !is_pattern(buf, p->rx_len, (size_t)n)) p->rx_bad++;
        p->rx_hash = fnv(p->rx_hash, buf, (size_t)n);
        p->rx_len += (uint64_t)n;
        if (p->stop_after && p->rx_len >= p->stop_after) {
            aiol_loop_remove_reader(p->loop, p->fd);
            p->reading = 0;
        }
    } else if (n == 0) {
        p->rx_eof++;
        aiol_loop_remove_reader(p->loop, p->fd);
        p->reading = 0;
    } else if (errno != EAGAIN && errno != EINTR) {
        p->rx_err = -errno;
        aiol_loop_remove_reader(p->loop, p->fd);
        p->reading = 0;
    }
    if (p->on_rx) p->on_rx(p);
}

static inline void peer_start_reading(peer *p) {
    if (p->reading) return;
    assert_int_equal(aiol_loop_add_reader(p->loop, p->fd, peer_read_cb, p, NULL), 0);
    p->reading = 1;
}
static inline void peer_stop_reading(peer *p) {
    if (!p->reading) return;
    aiol_loop_remove_reader(p->loop, p->fd);
    p->reading = 0;
}

static void peer_write_cb(aiol_loop *loop, int fd, void *ud) {
    UNUSED(loop);
    peer *p = (peer *)ud;
    CHECK(!g_in_api);
    unsigned char buf[64 * 1024];
    size_t left = p->tx_len - p->tx_off;
    const void *src;
    if (p->tx_pattern) {
        if (left > sizeof buf) left = sizeof buf;
        fill_pattern(buf, p->tx_off, left);
        src = buf;
    } else {
        src = p->tx + p->tx_off;
    }
    ssize_t n = left ? send(fd, src, left, MSG_NOSIGNAL) : 0;
    if (n > 0) p->tx_off += (size_t)n;
    else if (n < 0 && errno != EAGAIN && errno != EINTR) p->tx_err = -errno;
    if (p->tx_off == p->tx_len || p->tx_err) {
        aiol_loop_remove_writer(p->loop, p->fd);
        p->writing = 0;
        if (p->shut_when_sent && !p->tx_err) shutdown(p->fd, SHUT_WR);
    }
}

/* Sends data (NULL: the pattern) through the loop; shut: shutdown(SHUT_WR) afterwards. */
static inline void peer_send(peer *p, const void *data, size_t len, int shut) {
    p->tx = (const unsigned char *)data;
    p->tx_pattern = data == NULL;
    p->tx_len = len;
    p->tx_off = 0;
    p->shut_when_sent = shut;
    assert_int_equal(aiol_loop_add_writer(p->loop, p->fd, peer_write_cb, p, NULL), 0);
    p->writing = 1;
}

static inline void peer_close(peer *p) {
    if (p->fd < 0) return;
    if (p->reading) aiol_loop_remove_reader(p->loop, p->fd);
    if (p->writing) aiol_loop_remove_writer(p->loop, p->fd);
    p->reading = p->writing = 0;
    close(p->fd);
    p->fd = -1;
}

static inline void peer_rst(peer *p) {
    if (p->reading) aiol_loop_remove_reader(p->loop, p->fd);
    if (p->writing) aiol_loop_remove_writer(p->loop, p->fd);
    p->reading = p->writing = 0;
    close_with_rst(p->fd);
    p->fd = -1;
}

/* Blocking write of everything (the peer end in a test's main body or a thread). */
static inline void write_all(int fd, const void *data, size_t len) {
    const unsigned char *q = (const unsigned char *)data;
    while (len) {
        ssize_t n = send(fd, q, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            struct timespec ts = {0, 100000};
            if (errno == EAGAIN) nanosleep(&ts, NULL);  /* only in writer threads */
            continue;
        }
        assert_true(n > 0);
        q += n;
        len -= (size_t)n;
    }
}

/* ---- main ---------------------------------------------------------------------------- */

static inline int test_main(const char *group, const struct CMUnitTest *tests, size_t n,
                            int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--registered") == 0) {
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            int found = 0;
            for (int a = 2; a < argc; a++) found |= strcmp(tests[i].name, argv[a]) == 0;
            if (!found) {
                fprintf(stderr, "%s: case %s is not registered in meson.build\n", group,
                        tests[i].name);
                bad = 1;
            }
        }
        for (int a = 2; a < argc; a++) {
            int found = 0;
            for (size_t i = 0; i < n; i++) found |= strcmp(tests[i].name, argv[a]) == 0;
            if (!found) {
                fprintf(stderr, "%s: %s is registered but is not a case\n", group, argv[a]);
                bad = 1;
            }
        }
        return bad;
    }
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}

#define TEST_MAIN(group, tests) \
    test_main(group, tests, sizeof(tests) / sizeof((tests)[0]), argc, argv)

#endif
