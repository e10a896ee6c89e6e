/*
 * net_helpers.h — harness for the server / accept / connect tests (cmocka).
 *
 * Every case gets a fresh loop and a baseline count of open fds; teardown asserts
 * aiol_loop_free() == 0, that the fd count is back to the baseline, and that no CHECK made
 * inside a callback failed (callbacks never use cmocka asserts: a longjmp must not cross
 * library frames).
 *
 * Peers are plain POSIX sockets driven from the test thread between loop iterations (or
 * from a helper thread that wakes the loop through a pipe watched with add_reader). The
 * loop is pumped with AIOL_RUN_ONCE until a condition holds; a watchdog timer bounds every
 * wait so a broken library fails a case instead of hanging it.
 */
#ifndef AIOL_NET_SERVER_HELPERS_H
#define AIOL_NET_SERVER_HELPERS_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "aioloop.h"

#define UNUSED(x) (void)(x)
#define MS 1000000ull /* ns */

/* ---- open fds ------------------------------------------------------------------------ */

static inline int count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

static inline int fd_is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* ---- failures inside callbacks ------------------------------------------------------- */

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

/* API(expr): marks the thread as inside an aiol_* call while expr runs; callbacks CHECK
   that they never see the mark (no callback may run inside an aiol_* call other than
   run and close, which are never wrapped). */
static __thread int g_in_api;
static __thread int g_api_rc __attribute__((unused));
#define API(expr) (g_in_api = 1, g_api_rc = (int)(expr), g_in_api = 0, g_api_rc)

/* A global sequence number for order checks. */
static int g_seq;
static inline int next_seq(void) { return ++g_seq; }

/* ---- time ---------------------------------------------------------------------------- */

static inline uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- fixture ------------------------------------------------------------------------- */

typedef struct fixture {
    aiol_loop *loop;
    int fd_baseline;
} fixture;

static inline int setup(void **state) {
    static fixture f;
    memset(&f, 0, sizeof f);
    g_check_failures = 0;
    g_seq = 0;
    f.fd_baseline = count_open_fds();
    assert_true(f.fd_baseline > 0);
    assert_int_equal(aiol_loop_new(&f.loop), 0);
    assert_non_null(f.loop);
    *state = &f;
    return 0;
}

/* Frees the loop (must succeed: nothing alive), then checks fds and callback CHECKs. A
   case that freed the loop itself sets f->loop = NULL. */
static inline int teardown(void **state) {
    fixture *f = (fixture *)*state;
    if (f->loop) assert_int_equal(aiol_loop_free(f->loop), 0);
    f->loop = NULL;
    assert_int_equal(count_open_fds(), f->fd_baseline);
    assert_no_check_failures();
    return 0;
}

#define LOOP(state) (((fixture *)*(state))->loop)
#define FIX(state) ((fixture *)*(state))
#define CASE(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* ---- pumping the loop ---------------------------------------------------------------- */

static inline void watchdog_fired(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    *(int *)ud = 1;
}

typedef int (*pred_fn)(void *arg);

/* Runs AIOL_RUN_ONCE until pred(arg) holds or timeout_ms pass (a watchdog timer wakes the
   loop). Returns 1 if pred held. The watchdog is cancelled before returning. */
static inline int pump_until(aiol_loop *loop, pred_fn pred, void *arg, unsigned timeout_ms) {
    int fired = 0;
    aiol_handle *h = NULL;
    if (pred(arg)) return 1;
    if (aiol_loop_call_later(loop, (uint64_t)timeout_ms * MS, watchdog_fired, &fired, NULL, &h) != 0)
        return 0;
    int ok = 0;
    while (!fired) {
        int rc = aiol_loop_run(loop, AIOL_RUN_ONCE);
        if (rc < 0) break;
        if (pred(arg)) {
            ok = 1;
            break;
        }
    }
    aiol_handle_cancel(h);
    aiol_handle_release(h);
    return ok;
}

/* Runs the loop for about ms milliseconds (used only where the behaviour under test is
   the absence of events over time: back-off, no busy loop). */
static inline void run_for(aiol_loop *loop, unsigned ms) {
    int fired = 0;
    aiol_handle *h = NULL;
    assert_int_equal(aiol_loop_call_later(loop, (uint64_t)ms * MS, watchdog_fired, &fired, NULL, &h), 0);
    while (!fired) assert_true(aiol_loop_run(loop, AIOL_RUN_ONCE) >= 0);
    aiol_handle_release(h);
}

/* An fd callback that must never run. */
static inline void never_fd_cb(aiol_loop *loop, int fd, void *ud) {
    UNUSED(loop), UNUSED(fd);
    if (ud) (*(int *)ud)++;
    CHECK(0);
}
typedef struct int_goal {
    const int *p;
    int v;
} int_goal;
static inline int pred_goal(void *arg) {
    int_goal *g = (int_goal *)arg;
    return *g->p >= g->v;
}
/* pump until *p >= v */
#define PUMP_UNTIL_GE(loop, p, v, ms)                                     \
    do {                                                                  \
        int_goal g_ = {(p), (v)};                                         \
        assert_true(pump_until((loop), pred_goal, &g_, (ms)));            \
    } while (0)

/* ---- addresses and client sockets --------------------------------------------------- */

static inline uint16_t addr_port(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return 0;
}

static inline uint16_t server_port(aiol_server *s, int index) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(aiol_server_sockname(s, index, &ss, &len), 0);
    return addr_port(&ss);
}

static inline struct sockaddr_in loopback4(uint16_t port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static inline int have_ipv6(void) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* A blocking TCP client connected to 127.0.0.1:port (-errno on failure). */
static inline int tcp_client(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_in a = loopback4(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* A non-blocking TCP client with connect started (0 or EINPROGRESS). */
static inline int tcp_client_nb(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    struct sockaddr_in a = loopback4(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static inline int unix_client(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof a.sun_path) {
        close(fd);
        return -ENAMETOOLONG;
    }
    memcpy(a.sun_path, path, n + 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* Waits (poll) up to ms for fd to become readable; 1 readable, 0 timeout. */
static inline int wait_readable(int fd, int ms) {
    struct pollfd p = {fd, POLLIN, 0};
    int rc;
    do rc = poll(&p, 1, ms);
    while (rc < 0 && errno == EINTR);
    return rc > 0;
}

/* Reads exactly len bytes (blocking via poll, each wait bounded); returns bytes read. */
static inline size_t read_exact(int fd, void *buf, size_t len, int ms) {
    size_t got = 0;
    while (got < len) {
        if (!wait_readable(fd, ms)) break;
        ssize_t n = recv(fd, (char *)buf + got, len - got, MSG_DONTWAIT);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            break;
        }
        got += (size_t)n;
    }
    return got;
}

/* Reads until EOF (0), an error (-errno) or a timeout (-ETIMEDOUT); *total counts bytes. */
static inline int read_to_eof(int fd, size_t *total, int ms) {
    char buf[65536];
    for (;;) {
        if (!wait_readable(fd, ms)) return -ETIMEDOUT;
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return -errno;
        }
        *total += (size_t)n;
    }
}

/* ---- the recording protocol ---------------------------------------------------------- */

#define MAX_CONNS 512

struct srv_state;

typedef struct conn_rec {
    struct srv_state *srv;
    aiol_transport *t;
    int made, lost, lost_status, eof, destroyed;
    int data_calls;
    size_t bytes;
    int seq_made, seq_first_data, seq_lost, seq_destroy;
    int data_before_made;
} conn_rec;

typedef struct srv_state {
    aiol_loop *loop;
    aiol_server *server;
    int echo;            /* data_received writes the data back */
    int refuse;          /* the factory refuses every connection */
    int factory_calls;
    int closed;          /* set by the test right after aiol_server_close */
    int factory_after_close;
    int factory_in_api;
    struct sockaddr_storage last_peer;
    socklen_t last_peer_len;
    int nconns;
    conn_rec conns[MAX_CONNS];
    int made_total, lost_total, destroy_total, eof_total, data_total;
    int factory_destroyed;
    int wait_closed_calls, seq_wait_closed, wait_closed_in_api;
    int free_in_wait_closed; /* wait_closed's callback frees the server */
    int abort_clients_in_lost; /* connection_lost calls aiol_server_abort_clients */
    int abort_clients_rc;
    int close_at_factory_call; /* the factory closes (1) or frees (2) the server at call n */
    int close_how;
} srv_state;

static inline void rec_made(aiol_transport *t, void *ud) {
    conn_rec *c = (conn_rec *)ud;
    CHECK(!g_in_api);
    CHECK(c->made == 0 && c->lost == 0 && c->destroyed == 0);
    c->made++;
    c->t = t;
    c->seq_made = next_seq();
    if (c->srv) c->srv->made_total++;
}

static inline void rec_data(aiol_transport *t, const void *data, size_t len, void *ud) {
    conn_rec *c = (conn_rec *)ud;
    CHECK(!g_in_api);
    CHECK(len > 0);
    if (!c->made) c->data_before_made++;
    CHECK(c->made == 1 && c->lost == 0);
    if (c->data_calls++ == 0) c->seq_first_data = next_seq();
    c->bytes += len;
    if (c->srv) {
        c->srv->data_total++;
        if (c->srv->echo) CHECK(aiol_transport_write(t, data, len) == 0);
    }
}

static inline int rec_eof(aiol_transport *t, void *ud) {
    UNUSED(t);
    conn_rec *c = (conn_rec *)ud;
    CHECK(!g_in_api);
    CHECK(c->made == 1 && c->lost == 0);
    c->eof++;
    if (c->srv) c->srv->eof_total++;
    return 0;
}

static inline void rec_lost(aiol_transport *t, int status, void *ud) {
    UNUSED(t);
    conn_rec *c = (conn_rec *)ud;
    CHECK(!g_in_api);
    CHECK(c->made == 1 && c->lost == 0 && c->destroyed == 0);
    c->lost++;
    c->lost_status = status;
    c->seq_lost = next_seq();
    if (c->srv) {
        c->srv->lost_total++;
        if (c->srv->abort_clients_in_lost && c->srv->server) {
            int rc = aiol_server_abort_clients(c->srv->server);
            if (rc < 0) c->srv->abort_clients_rc = rc;
        }
    }
}

static inline void rec_destroy(void *ud) {
    conn_rec *c = (conn_rec *)ud;
    CHECK(!g_in_api);
    CHECK(c->destroyed == 0);
    CHECK(c->lost == c->made); /* after connection_lost, if connection_made ran */
    c->destroyed++;
    c->seq_destroy = next_seq();
    if (c->srv) c->srv->destroy_total++;
}

static inline aiol_protocol rec_protocol(void) {
    aiol_protocol p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    p.connection_made = rec_made;
    p.data_received = rec_data;
    p.eof_received = rec_eof;
    p.connection_lost = rec_lost;
    p.destroy = rec_destroy;
    return p;
}

static inline int rec_factory(void *fd_, const struct sockaddr *peer, socklen_t peer_len,
                              void **ud) {
    srv_state *s = (srv_state *)fd_;
    CHECK(!g_in_api);
    if (g_in_api) s->factory_in_api++;
    s->factory_calls++;
    if (s->closed) s->factory_after_close++;
    CHECK(peer != NULL && peer_len > 0 && peer_len <= sizeof s->last_peer);
    if (peer && peer_len <= sizeof s->last_peer) {
        memcpy(&s->last_peer, peer, peer_len);
        s->last_peer_len = peer_len;
    }
    if (s->close_at_factory_call && s->factory_calls == s->close_at_factory_call && s->server) {
        if (s->close_how == 2) {
            CHECK(aiol_server_free(s->server) == 0);
            s->server = NULL;
        } else {
            CHECK(aiol_server_close(s->server) == 0);
        }
        s->closed = 1; /* the factory must not run again */
    }
    if (s->refuse) {
        *ud = (void *)0x1; /* must be ignored */
        return -1;
    }
    CHECK(s->nconns < MAX_CONNS);
    if (s->nconns >= MAX_CONNS) return -1;
    conn_rec *c = &s->conns[s->nconns++];
    memset(c, 0, sizeof *c);
    c->srv = s;
    *ud = c;
    return 0;
}

static inline void srv_factory_destroy(void *fd_) {
    srv_state *s = (srv_state *)fd_;
    CHECK(!g_in_api);
    s->factory_destroyed++;
}

static inline void srv_wait_closed(aiol_server *sv, void *ud) {
    srv_state *s = (srv_state *)ud;
    CHECK(!g_in_api);
    CHECK(s->server == NULL || sv == s->server); /* NULL: an earlier waiter freed it */
    s->wait_closed_calls++;
    s->seq_wait_closed = next_seq();
    if (s->free_in_wait_closed && s->server) { /* once: later waiters must not free again */
        CHECK(aiol_server_free(sv) == 0);
        s->server = NULL;
    }
}

static inline srv_state *srv_new(aiol_loop *loop) {
    srv_state *s = (srv_state *)calloc(1, sizeof *s);
    assert_non_null(s);
    s->loop = loop;
    return s;
}

/* Starts a recording server on 127.0.0.1:0 (backlog 0: the default). */
static inline int srv_start_cfg(srv_state *s, const aiol_server_config *cfg) {
    aiol_protocol p = rec_protocol();
    return aiol_server_start(s->loop, cfg, &p, rec_factory, s, srv_factory_destroy, &s->server);
}

static inline void srv_start_local(srv_state *s) {
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    assert_int_equal(srv_start_cfg(s, &cfg), 0);
    assert_non_null(s->server);
}

/* ---- a pipe the test (or a thread) pokes to wake the loop ---------------------------- */

typedef struct waker {
    int rfd, wfd;
    int fired;
} waker;

static inline void waker_cb(aiol_loop *loop, int fd, void *ud) {
    UNUSED(loop);
    waker *w = (waker *)ud;
    char b[64];
    ssize_t n;
    while ((n = read(fd, b, sizeof b)) > 0) w->fired += (int)n; /* one byte per poke */
}

static inline void waker_open(aiol_loop *loop, waker *w) {
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    w->rfd = p[0];
    w->wfd = p[1];
    w->fired = 0;
    assert_int_equal(aiol_loop_add_reader(loop, w->rfd, waker_cb, w, NULL), 0);
}

static inline void waker_poke(waker *w) {
    ssize_t n = write(w->wfd, "x", 1);
    UNUSED(n);
}

static inline void waker_close(aiol_loop *loop, waker *w) {
    assert_int_equal(aiol_loop_remove_reader(loop, w->rfd), 1);
    close(w->rfd);
    close(w->wfd);
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
    if (argc > 1) {
        size_t i = 0;
        while (i < n && strcmp(tests[i].name, argv[1]) != 0) i++;
        if (i == n) {
            fprintf(stderr, "%s: no case named %s\n", group, argv[1]);
            return 1;
        }
        cmocka_set_test_filter(argv[1]);
    }
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}

#define TEST_MAIN(group, tests)                                                          \
    int main(int argc, char **argv) {                                                    \
        return test_main(group, tests, sizeof(tests) / sizeof((tests)[0]), argc, argv); \
    }

#endif /* AIOL_NET_SERVER_HELPERS_H */
