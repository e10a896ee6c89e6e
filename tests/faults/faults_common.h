/*
 * faults_common.h — harness for the fault-injection tests (cmocka), linked against
 * libaioloop_faults.a (the library with its syscalls and allocations failing on demand,
 * lib/sys/fault.h) instead of libaioloop.so.
 *
 * Each case gets a fresh loop with a recording exception handler and a baseline count of
 * open fds; teardown clears every fault rule, asserts aiol_loop_free() == 0, that the fd
 * count is back, and that no CHECK() made inside a callback failed. Run under ASan with
 * leak checking (the `faults` build of scripts/test.sh is plain; the asan build's options
 * plus -Dfault_injection=true give the same cases under ASan).
 *
 * `conn` is a recording protocol; peers are plain sockets on 127.0.0.1 port 0.
 */
#ifndef AIOL_FAULTS_COMMON_H
#define AIOL_FAULTS_COMMON_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "aioloop.h"
#include "fault.h"

#define UNUSED(x) (void)(x)
#define MS 1000000ull /* ns */
#define KiB ((size_t)1024)

/* ---- failures inside callbacks ------------------------------------------------------ */

static int g_check_failures;
static const char *g_check_file;
static int g_check_line;
static const char *g_check_expr;

#define CHECK(cond)                                  \
    do {                                             \
        if (!(cond) && g_check_failures++ == 0) {    \
            g_check_file = __FILE__;                 \
            g_check_line = __LINE__;                 \
            g_check_expr = #cond;                    \
        }                                            \
    } while (0)

/* ---- open fds ---------------------------------------------------------------------- */

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

/* ---- exception handler reports ------------------------------------------------------ */

static int g_reports;
static int g_report_code;
static int g_report_kind;
static char g_report_message[128];

static void record_report(const aiol_error_context *ctx, void *ud) {
    UNUSED(ud);
    g_reports++;
    g_report_code = ctx->code;
    g_report_kind = ctx->object_kind;
    snprintf(g_report_message, sizeof g_report_message, "%s", ctx->message ? ctx->message : "");
}

/* ---- fixture ------------------------------------------------------------------------ */

typedef struct fixture {
    aiol_loop *loop;
    int fd_baseline;
} fixture;

static inline void reset_globals(void) {
    g_check_failures = 0;
    g_reports = 0;
    g_report_code = 0;
    g_report_kind = 0;
    g_report_message[0] = 0;
}

static inline int setup(void **state) {
    static fixture f;
    memset(&f, 0, sizeof f);
    reset_globals();
    aiol_fault_clear();
    f.fd_baseline = count_open_fds();
    assert_true(f.fd_baseline > 0);
    assert_int_equal(aiol_loop_new(&f.loop), 0);
    assert_int_equal(aiol_loop_set_exception_handler(f.loop, record_report, NULL, NULL), 0);
    *state = &f;
    return 0;
}

static inline int teardown(void **state) {
    fixture *f = (fixture *)*state;
    aiol_fault_clear();
    if (f->loop) assert_int_equal(aiol_loop_free(f->loop), 0);
    f->loop = NULL;
    assert_int_equal(count_open_fds(), f->fd_baseline);
    if (g_check_failures)
        fail_msg("%d CHECK(s) failed in callbacks; first at %s:%d: %s", g_check_failures,
                 g_check_file, g_check_line, g_check_expr);
    return 0;
}

#define LOOP(state) (((fixture *)*(state))->loop)
#define FIX(state) ((fixture *)*(state))
#define CASE(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* ---- running the loop ---------------------------------------------------------------- */

static int g_watchdog_fired;
static void watchdog(aiol_loop *loop, void *ud) {
    UNUSED(loop), UNUSED(ud);
    g_watchdog_fired = 1;
}

/* One iteration at a time until cond holds; a 20 s timer turns a hang into a failure. */
#define RUN_UNTIL(loop, cond)                                                                 \
    do {                                                                                      \
        aiol_handle *wd_ = NULL;                                                              \
        g_watchdog_fired = 0;                                                                 \
        assert_int_equal(aiol_loop_call_later((loop), 20000 * MS, watchdog, NULL, NULL, &wd_), 0); \
        while (!(cond) && !g_watchdog_fired) assert_true(aiol_loop_run((loop), AIOL_RUN_ONCE) >= 0); \
        aiol_handle_cancel(wd_);                                                              \
        aiol_handle_release(wd_);                                                             \
        if (!(cond)) fail_msg("timed out waiting for %s", #cond);                             \
    } while (0)

static inline void run_to_end(aiol_loop *loop) {
    int rc;
    for (long i = 0; (rc = aiol_loop_run(loop, AIOL_RUN_ONCE)) > 0; i++) assert_true(i < 10000000);
    assert_int_equal(rc, 0);
}

static inline uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- byte patterns ------------------------------------------------------------------- */

static inline unsigned char pat(uint64_t i) {
    return (unsigned char)(((i + 0x632be59bd9b4e019ull) * 0x9E3779B97F4A7C15ull) >> 56);
}
static inline void fill_pattern(unsigned char *p, uint64_t off, size_t len) {
    for (size_t i = 0; i < len; i++) p[i] = pat(off + i);
}

/* ---- sockets ------------------------------------------------------------------------- */

static inline void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* A listening TCP socket on 127.0.0.1 port 0 (not on the loop); *port gets its port. */
static inline int tcp_listener(uint16_t *port) {
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 16), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return l;
}

/* A blocking client connected to 127.0.0.1:port (the kernel completes it from the
   backlog, before anyone accepts), with a 10 s receive timeout. */
static inline int tcp_client(uint16_t port) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {10, 0};
    assert_int_equal(setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    return c;
}

/* A connected TCP pair on 127.0.0.1: *ours the accepted end, *theirs the client. */
static inline void tcp_pair(int *ours, int *theirs) {
    uint16_t port;
    int l = tcp_listener(&port);
    int c = tcp_client(port);
    int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(s >= 0);
    close(l);
    *ours = s;
    *theirs = c;
}

/* ---- conn: a recording protocol --------------------------------------------------------- */

typedef struct conn {
    aiol_transport *t;
    int made, lost, destroyed, eofs, pauses, resumes;
    int lost_status;
    size_t rx;             /* bytes received */
    uint64_t rx_bad;       /* received bytes that broke the pattern */
    int echo;              /* write back what arrives */
    int buffered;          /* BufferedProtocol with this buffer */
    unsigned char buf[4096];
} conn;

static void conn_made(aiol_transport *t, void *ud) {
    conn *c = (conn *)ud;
    CHECK(c->made == 0 && c->lost == 0);
    c->t = t;
    c->made++;
}
static void conn_got(conn *c, const unsigned char *p, size_t n) {
    CHECK(c->made == 1 && c->lost == 0);
    if (c->echo) CHECK(aiol_transport_write(c->t, p, n) == 0);
    for (size_t i = 0; i < n; i++)
        if (p[i] != pat(c->rx + i)) c->rx_bad++;
    c->rx += n;
}
static void conn_data(aiol_transport *t, const void *data, size_t len, void *ud) {
    UNUSED(t);
    conn_got((conn *)ud, (const unsigned char *)data, len);
}
static void *conn_get_buffer(aiol_transport *t, size_t hint, size_t *len, void *ud) {
    UNUSED(t), UNUSED(hint);
    conn *c = (conn *)ud;
    *len = sizeof c->buf;
    return c->buf;
}
static void conn_buffer_updated(aiol_transport *t, size_t n, void *ud) {
    UNUSED(t);
    conn *c = (conn *)ud;
    conn_got(c, c->buf, n);
}
static int conn_eof(aiol_transport *t, void *ud) {
    UNUSED(t);
    ((conn *)ud)->eofs++;
    return 0;
}
static void conn_lost(aiol_transport *t, int status, void *ud) {
    UNUSED(t);
    conn *c = (conn *)ud;
    CHECK(c->made == 1 && c->lost == 0);
    c->lost++;
    c->lost_status = status;
}
static void conn_pause(aiol_transport *t, void *ud) {
    UNUSED(t);
    ((conn *)ud)->pauses++;
}
static void conn_resume(aiol_transport *t, void *ud) {
    UNUSED(t);
    ((conn *)ud)->resumes++;
}
static void conn_destroy(void *ud) {
    conn *c = (conn *)ud;
    CHECK(c->destroyed == 0);
    c->destroyed++;
}

static inline aiol_protocol conn_protocol(int buffered) {
    aiol_protocol p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    p.connection_made = conn_made;
    p.eof_received = conn_eof;
    p.connection_lost = conn_lost;
    p.pause_writing = conn_pause;
    p.resume_writing = conn_resume;
    p.destroy = conn_destroy;
    if (buffered) {
        p.get_buffer = conn_get_buffer;
        p.buffer_updated = conn_buffer_updated;
    } else {
        p.data_received = conn_data;
    }
    return p;
}

/* Adopts fd as a transport with a conn protocol and runs until connection_made. */
static inline void adopt(aiol_loop *loop, int fd, conn *c, int buffered) {
    memset(c, 0, sizeof *c);
    aiol_protocol p = conn_protocol(buffered);
    assert_int_equal(aiol_transport_adopt(loop, fd, &p, c, NULL), 0);
    RUN_UNTIL(loop, c->made);
}

/* ---- peer: the other end, read by the loop's add_reader ------------------------------ */

typedef struct peer {
    int fd;
    size_t rx;
    uint64_t rx_bad;
    int eof, err;
} peer;

static void peer_readable(aiol_loop *loop, int fd, void *ud) {
    UNUSED(loop);
    peer *p = (peer *)ud;
    unsigned char buf[65536];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != pat(p->rx + (size_t)i)) p->rx_bad++;
        p->rx += (size_t)n;
    } else if (n == 0) {
        p->eof = 1;
        aiol_loop_remove_reader(loop, fd);
    } else if (errno != EAGAIN) {
        p->err = errno;
        aiol_loop_remove_reader(loop, fd);
    }
}

static inline void peer_start(aiol_loop *loop, peer *p, int fd) {
    memset(p, 0, sizeof *p);
    p->fd = fd;
    set_nonblock(fd);
    assert_int_equal(aiol_loop_add_reader(loop, fd, peer_readable, p, NULL), 0);
}

static inline void peer_stop(aiol_loop *loop, peer *p) {
    aiol_loop_remove_reader(loop, p->fd);
    close(p->fd);
}

/* Sends the pattern from offset off (blocking socket or a small amount). */
static inline void send_pattern(int fd, uint64_t off, size_t len) {
    unsigned char buf[4096];
    assert_true(len <= sizeof buf);
    fill_pattern(buf, off, len);
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* ---- main ------------------------------------------------------------------------------ */

static inline int test_main(const char *group, const struct CMUnitTest *tests, size_t n,
                            int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--registered") == 0) {
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            int found = 0;
            for (int a = 2; a < argc; a++) found |= strcmp(tests[i].name, argv[a]) == 0;
            if (!found) fprintf(stderr, "%s: case %s is not registered in meson.build\n", group, tests[i].name);
            bad |= !found;
        }
        for (int a = 2; a < argc; a++) {
            int found = 0;
            for (size_t i = 0; i < n; i++) found |= strcmp(tests[i].name, argv[a]) == 0;
            if (!found) fprintf(stderr, "%s: %s is registered but is not a case\n", group, argv[a]);
            bad |= !found;
        }
        return bad;
    }
    if (argc > 1) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(tests[i].name, argv[1]) == 0)
                return _cmocka_run_group_tests(group, &tests[i], 1, NULL, NULL);
        fprintf(stderr, "%s: no case %s\n", group, argv[1]);
        return 2;
    }
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}

#define TEST_MAIN(group, tests) test_main(group, tests, sizeof tests / sizeof tests[0], argc, argv)

#endif
