/*
 * aiol_loop_connect (asyncio create_connection): success with data both ways, refused,
 * name resolution through the resolver thread, unknown names, timeout, cancel through the
 * handle, argument errors (done never runs), and loop close with connects in flight.
 */
#include "net_helpers.h"

typedef struct client {
    conn_rec rec;
    int done_calls, done_status, done_in_api;
    int seq_done;
    int made_at_done, destroyed_at_done;
    aiol_transport *t;
} client;

static void client_done(aiol_transport *t, int status, void *ud) {
    client *c = (client *)ud;
    CHECK(!g_in_api);
    if (g_in_api) c->done_in_api++;
    c->done_calls++;
    c->done_status = status;
    c->t = t;
    c->seq_done = next_seq();
    c->made_at_done = c->rec.made;
    c->destroyed_at_done = c->rec.destroyed;
    CHECK((t != NULL) == (status == 0));
}

static aiol_connect_config tcp_cfg(const char *host, uint16_t port) {
    aiol_connect_config c;
    memset(&c, 0, sizeof c);
    c.size = sizeof c;
    c.host = host;
    c.port = port;
    return c;
}

static int start_connect(aiol_loop *loop, const aiol_connect_config *cfg, client *c,
                         aiol_handle **h) {
    aiol_protocol p = rec_protocol();
    return aiol_loop_connect(loop, cfg, &p, &c->rec, client_done, c, h);
}

/* The attempt failed with `status`: done(NULL, status) once, no connection_made or
   connection_lost, destroy exactly once and after done. */
static void assert_failed_attempt(client *c, int status) {
    assert_int_equal(c->done_calls, 1);
    assert_int_equal(c->done_status, status);
    assert_null(c->t);
    assert_int_equal(c->done_in_api, 0);
    assert_int_equal(c->rec.made, 0);
    assert_int_equal(c->rec.lost, 0);
    assert_int_equal(c->destroyed_at_done, 0);
    assert_int_equal(c->rec.destroyed, 1);
    assert_true(c->rec.seq_destroy > c->seq_done);
}

/* Runs until done and destroy both ran. */
static void pump_until_finished(aiol_loop *loop, client *c, unsigned ms) {
    PUMP_UNTIL_GE(loop, &c->done_calls, 1, ms);
    PUMP_UNTIL_GE(loop, &c->rec.destroyed, 1, 1000);
}

/* Connect to a listening 127.0.0.1 server: done(t, 0) after connection_made (never inside
   the call); data flows both ways; close gives connection_lost(0) then destroy. */
static void connect_ipv4_echo(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    s->echo = 1;
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    client c;
    memset(&c, 0, sizeof c);
    aiol_connect_config cfg = tcp_cfg("127.0.0.1", port);
    aiol_handle *h = NULL;
    assert_int_equal(API(start_connect(loop, &cfg, &c, &h)), 0);
    assert_non_null(h);
    assert_int_equal(c.done_calls, 0);
    PUMP_UNTIL_GE(loop, &c.done_calls, 1, 5000);
    assert_int_equal(c.done_status, 0);
    assert_non_null(c.t);
    assert_ptr_equal(c.t, c.rec.t);
    assert_int_equal(c.made_at_done, 1);
    assert_true(c.rec.seq_made < c.seq_done);
    assert_int_equal(aiol_handle_cancel(h), 0); /* finished: nothing to cancel */
    assert_int_equal(aiol_handle_release(h), 0);

    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(aiol_transport_peername(c.t, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(addr_port(&ss), port);

    assert_int_equal(aiol_transport_write(c.t, "hello", 5), 0);
    PUMP_UNTIL_GE(loop, &s->data_total, 1, 5000);
    PUMP_UNTIL_GE(loop, &c.rec.data_calls, 1, 5000);
    while (c.rec.bytes < 5) PUMP_UNTIL_GE(loop, &c.rec.data_calls, c.rec.data_calls + 1, 5000);
    assert_int_equal(c.rec.bytes, 5);
    assert_int_equal(s->conns[0].bytes, 5);

    assert_int_equal(aiol_transport_close(c.t), 0);
    PUMP_UNTIL_GE(loop, &c.rec.destroyed, 1, 5000);
    assert_int_equal(c.rec.lost_status, 0);
    PUMP_UNTIL_GE(loop, &s->destroy_total, 1, 5000);
    assert_int_equal(s->conns[0].eof, 1);
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    free(s);
}

/* A port with nothing listening: done(NULL, AIOL_ECONNREFUSED); destroy after done. A
   Unix path that does not exist: done(NULL, -ENOENT). */
static void connect_refused(void **state) {
    aiol_loop *loop = LOOP(state);
    /* a bound, not listening socket keeps the port ours and closed */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback4(0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);

    client c;
    memset(&c, 0, sizeof c);
    aiol_connect_config cfg = tcp_cfg("127.0.0.1", ntohs(a.sin_port));
    assert_int_equal(API(start_connect(loop, &cfg, &c, NULL)), 0);
    assert_int_equal(c.done_calls, 0);
    pump_until_finished(loop, &c, 5000);
    assert_failed_attempt(&c, AIOL_ECONNREFUSED);
    close(fd);

    client u;
    memset(&u, 0, sizeof u);
    aiol_connect_config ucfg;
    memset(&ucfg, 0, sizeof ucfg);
    ucfg.size = sizeof ucfg;
    ucfg.unix_path = "/nonexistent-aiol-dir/sock";
    assert_int_equal(start_connect(loop, &ucfg, &u, NULL), 0);
    pump_until_finished(loop, &u, 5000);
    assert_failed_attempt(&u, -ENOENT);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
}

static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    struct dirent *e;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* "localhost" is not numeric: it goes through the resolver thread (one more thread in the
   process once connect returns), then connects to 127.0.0.1 (an IPv6 ::1 tried first, if
   the resolver returns it, is refused and the next address is tried). */
static void connect_localhost_resolver(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    client c;
    memset(&c, 0, sizeof c);
    aiol_connect_config cfg = tcp_cfg("localhost", port);
    int threads = thread_count();
    assert_int_equal(API(start_connect(loop, &cfg, &c, NULL)), 0);
    assert_true(thread_count() > threads);
    assert_int_equal(c.done_calls, 0);
    PUMP_UNTIL_GE(loop, &c.done_calls, 1, 10000);
    assert_int_equal(c.done_status, 0);
    assert_int_equal(c.made_at_done, 1);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(aiol_transport_peername(c.t, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    assert_int_equal(addr_port(&ss), port);
    PUMP_UNTIL_GE(loop, &s->made_total, 1, 5000);
    assert_int_equal(aiol_transport_abort(c.t), 0);
    PUMP_UNTIL_GE(loop, &c.rec.destroyed, 1, 5000);
    assert_int_equal(c.rec.lost_status, AIOL_ECANCELED);
    PUMP_UNTIL_GE(loop, &s->destroy_total, 1, 5000);
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    free(s);
}

/* An unknown name: done(NULL, one of the resolver codes). */
static void connect_unknown_host(void **state) {
    aiol_loop *loop = LOOP(state);
    client c;
    memset(&c, 0, sizeof c);
    aiol_connect_config cfg = tcp_cfg("no-such-host.invalid", 80);
    assert_int_equal(API(start_connect(loop, &cfg, &c, NULL)), 0);
    pump_until_finished(loop, &c, 15000);
    if (c.done_status != AIOL_EAI_NONAME && c.done_status != AIOL_EAI_AGAIN &&
        c.done_status != AIOL_EAI_FAIL)
        fail_msg("unexpected status %d (%s)", c.done_status, aiol_err_name(c.done_status));
    assert_failed_attempt(&c, c.done_status);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
}

/* A listener whose accept queue is full: listen(fd, 0) holds one completed connection;
   after that the kernel drops further SYNs (net.ipv4.tcp_abort_on_overflow = 0), so our
   connect stays in SYN_SENT and the 200 ms timeout ends it: done(NULL, AIOL_ETIMEDOUT).
   The fillers are plain non-blocking connects we never accept. Everything is loopback. */
typedef struct full_listener {
    int lfd;
    uint16_t port;
    int fill[3];
} full_listener;

static void full_listener_open(full_listener *f) {
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    struct sockaddr_in a = loopback4(0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->lfd, 0), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
    f->port = ntohs(a.sin_port);
    for (int i = 0; i < 3; i++) {
        f->fill[i] = tcp_client_nb(f->port);
        assert_true(f->fill[i] >= 0);
    }
    /* the first filler completes (it is the one queued connection) */
    struct pollfd p = {f->fill[0], POLLOUT, 0};
    assert_int_equal(poll(&p, 1, 5000), 1);
}

static void full_listener_close(full_listener *f) {
    for (int i = 0; i < 3; i++) close(f->fill[i]);
    close(f->lfd);
}

static void connect_timeout_full_backlog(void **state) {
    aiol_loop *loop = LOOP(state);
    full_listener f;
    full_listener_open(&f);
    client c;
    memset(&c, 0, sizeof c);
    aiol_connect_config cfg = tcp_cfg("127.0.0.1", f.port);
    cfg.timeout_ns = 200 * MS;
    uint64_t t0 = mono_ns();
    assert_int_equal(start_connect(loop, &cfg, &c, NULL), 0);
    pump_until_finished(loop, &c, 5000);
    uint64_t dt = mono_ns() - t0;
    assert_failed_attempt(&c, AIOL_ETIMEDOUT);
    assert_true(dt >= 200 * MS);
    assert_true(dt < 900 * MS); /* the timeout, not a SYN retransmit (1 s) */
    full_listener_close(&f);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
}

/* Cancel through the handle: aiol_handle_cancel returns 1 and runs nothing itself;
   done(NULL, AIOL_ECANCELED) runs later, then destroy; no connection is made. A second
   cancel returns 0. Cancel while resolving behaves the same. */
static void connect_cancel(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    const char *hosts[2] = {"127.0.0.1", "localhost"};
    for (int i = 0; i < 2; i++) {
        client c;
        memset(&c, 0, sizeof c);
        aiol_connect_config cfg = tcp_cfg(hosts[i], port);
        aiol_handle *h = NULL;
        assert_int_equal(start_connect(loop, &cfg, &c, &h), 0);
        assert_non_null(h);
        assert_int_equal(API(aiol_handle_cancel(h)), 1);
        assert_int_equal(c.done_calls, 0);
        assert_int_equal(c.rec.destroyed, 0);
        assert_int_equal(aiol_handle_cancelled(h), 1);
        assert_int_equal(API(aiol_handle_cancel(h)), 0);
        pump_until_finished(loop, &c, 5000);
        assert_failed_attempt(&c, AIOL_ECANCELED);
        assert_int_equal(aiol_handle_cancel(h), 0);
        assert_int_equal(aiol_handle_release(h), 0);
    }
    /* the cancelled numeric connect never reached the server; drain anything it did */
    for (int i = 0; i < 3; i++) aiol_loop_run(loop, AIOL_RUN_NOWAIT);
    assert_int_equal(s->made_total, s->destroy_total);
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    free(s);
}

/* A cancel while the socket connect is in progress (SYN sent to a full listener). */
static void connect_cancel_in_progress(void **state) {
    aiol_loop *loop = LOOP(state);
    full_listener f;
    full_listener_open(&f);
    client c;
    memset(&c, 0, sizeof c);
    aiol_connect_config cfg = tcp_cfg("127.0.0.1", f.port);
    aiol_handle *h = NULL;
    int fds = count_open_fds();
    assert_int_equal(start_connect(loop, &cfg, &c, &h), 0);
    for (int i = 0; i < 5; i++) assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(count_open_fds(), fds + 1); /* the connecting socket */
    assert_int_equal(c.done_calls, 0);
    assert_int_equal(API(aiol_handle_cancel(h)), 1);
    assert_int_equal(c.done_calls, 0);
    pump_until_finished(loop, &c, 5000);
    assert_failed_attempt(&c, AIOL_ECANCELED);
    assert_int_equal(count_open_fds(), fds);
    assert_int_equal(aiol_handle_release(h), 0);
    full_listener_close(&f);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
}

/* A Unix server: connect() completes at once there, so after one iteration the socket is
   connected and wrapped, with connection_made still to come. */
typedef struct unix_server {
    srv_state *s;
    char dir[32];
    char path[64];
} unix_server;

static void unix_server_start(aiol_loop *loop, unix_server *u) {
    snprintf(u->dir, sizeof u->dir, "/tmp/aiol-con-XXXXXX");
    assert_non_null(mkdtemp(u->dir));
    snprintf(u->path, sizeof u->path, "%s/s", u->dir);
    u->s = srv_new(loop);
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.unix_path = u->path;
    assert_int_equal(srv_start_cfg(u->s, &cfg), 0);
}

/* Frees the server; factory_destroy has run once it returns (loop_open: after one more
   iteration, where the deferred destroy runs; else it ran in aiol_loop_close). */
static void unix_server_free(aiol_loop *loop, unix_server *u, int loop_open) {
    assert_int_equal(aiol_server_free(u->s->server), 0);
    if (loop_open) aiol_loop_run(loop, AIOL_RUN_NOWAIT);
    assert_int_equal(u->s->factory_destroyed, 1);
    free(u->s);
    assert_int_equal(rmdir(u->dir), 0);
}

/* Cancel after the socket connected but before connection_made ran: done(NULL,
   AIOL_ECANCELED), the transport is dropped without connection_made or connection_lost,
   destroy once after done; the server sees the connection end. */
static void connect_cancel_before_connection_made(void **state) {
    aiol_loop *loop = LOOP(state);
    unix_server u;
    unix_server_start(loop, &u);
    client c;
    memset(&c, 0, sizeof c);
    aiol_connect_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.unix_path = u.path;
    aiol_handle *h = NULL;
    int fds = count_open_fds();
    assert_int_equal(start_connect(loop, &cfg, &c, &h), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1); /* connect() + wrap */
    assert_int_equal(count_open_fds(), fds + 1);
    assert_int_equal(c.rec.made, 0);
    assert_int_equal(c.done_calls, 0);
    assert_int_equal(API(aiol_handle_cancel(h)), 1);
    assert_int_equal(c.done_calls, 0);
    assert_int_equal(c.rec.destroyed, 0);
    pump_until_finished(loop, &c, 5000);
    assert_failed_attempt(&c, AIOL_ECANCELED);
    assert_int_equal(aiol_handle_release(h), 0);
    /* the server accepted it and sees EOF */
    PUMP_UNTIL_GE(loop, &u.s->destroy_total, 1, 5000);
    assert_int_equal(u.s->conns[0].eof, 1);
    assert_int_equal(count_open_fds(), fds);
    unix_server_free(loop, &u, 1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
}

/* Bad arguments come back directly; done and destroy never run, *ret is untouched, and
   nothing is left alive. */
static int bad_destroys;
static void bad_destroy(void *ud) {
    UNUSED(ud);
    bad_destroys++;
}
static int bad_dones;
static void bad_done(aiol_transport *t, int status, void *ud) {
    UNUSED(t), UNUSED(status), UNUSED(ud);
    bad_dones++;
}

static void connect_bad_args_never_done(void **state) {
    aiol_loop *loop = LOOP(state);
    aiol_protocol p = rec_protocol();
    p.destroy = bad_destroy;
    aiol_handle *h = (aiol_handle *)0x1;
    int ud = 0;
    aiol_connect_config cfg = tcp_cfg("127.0.0.1", 9);

    assert_int_equal(aiol_loop_connect(NULL, &cfg, &p, &ud, bad_done, NULL, &h), AIOL_EINVAL);
    assert_int_equal(aiol_loop_connect(loop, NULL, &p, &ud, bad_done, NULL, &h), AIOL_EINVAL);
    assert_int_equal(aiol_loop_connect(loop, &cfg, NULL, &ud, bad_done, NULL, &h), AIOL_EINVAL);

    aiol_connect_config c2 = cfg; /* neither host nor unix_path */
    c2.host = NULL;
    assert_int_equal(aiol_loop_connect(loop, &c2, &p, &ud, bad_done, NULL, &h), AIOL_EINVAL);
    c2 = cfg; /* both */
    c2.unix_path = "/tmp/x";
    assert_int_equal(aiol_loop_connect(loop, &c2, &p, &ud, bad_done, NULL, &h), AIOL_EINVAL);
    c2 = cfg;
    c2.host = NULL;
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = 0;
    c2.unix_path = longpath;
    assert_int_equal(aiol_loop_connect(loop, &c2, &p, &ud, bad_done, NULL, &h), AIOL_EINVAL);
    c2 = cfg;
    c2.size = 4; /* smaller than the 0.1 struct */
    assert_int_equal(aiol_loop_connect(loop, &c2, &p, &ud, bad_done, NULL, &h), AIOL_EINVAL);
    c2 = cfg;
    c2.tls = (aiol_tls_context *)0x1;
    if (!aiol_has_feature("tls"))
        assert_int_equal(aiol_loop_connect(loop, &c2, &p, &ud, bad_done, NULL, &h), AIOL_ENOTSUP);
    struct {
        aiol_connect_config c;
        uint64_t extra;
    } grown;
    memset(&grown, 0, sizeof grown);
    grown.c = cfg;
    grown.c.size = sizeof grown;
    grown.extra = 1; /* a nonzero byte past the library's struct */
    assert_int_equal(aiol_loop_connect(loop, &grown.c, &p, &ud, bad_done, NULL, &h), AIOL_ENOTSUP);

    aiol_protocol half = p; /* get_buffer without buffer_updated */
    half.get_buffer = (void *(*)(aiol_transport *, size_t, size_t *, void *))0x1;
    assert_int_equal(aiol_loop_connect(loop, &cfg, &half, &ud, bad_done, NULL, &h), AIOL_EINVAL);
    aiol_protocol small = p;
    small.size = 4;
    assert_int_equal(aiol_loop_connect(loop, &cfg, &small, &ud, bad_done, NULL, &h), AIOL_EINVAL);

    assert_ptr_equal(h, (aiol_handle *)0x1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(bad_dones, 0);
    assert_int_equal(bad_destroys, 0);

    /* and after close: ECLOSED, still no callbacks */
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(aiol_loop_connect(loop, &cfg, &p, &ud, bad_done, NULL, &h), AIOL_ECLOSED);
    assert_int_equal(bad_dones, 0);
    assert_int_equal(bad_destroys, 0);
}

/* aiol_loop_close with connects in flight (SYN sent, connected but connection_made not
   run yet, not started yet, resolving): each gets done(NULL, AIOL_ECANCELED) inside
   close, then its destroy, never connection_made; free then returns 0, and the caller's
   handle stays valid until released, even after the loop is freed. */
static void loop_close_with_connects_in_flight(void **state) {
    aiol_loop *loop = LOOP(state);
    full_listener f;
    full_listener_open(&f);
    unix_server u;
    unix_server_start(loop, &u);
    client c[4];
    memset(c, 0, sizeof c);
    aiol_connect_config cfg = tcp_cfg("127.0.0.1", f.port);
    assert_int_equal(start_connect(loop, &cfg, &c[0], NULL), 0);
    aiol_connect_config ucfg;
    memset(&ucfg, 0, sizeof ucfg);
    ucfg.size = sizeof ucfg;
    ucfg.unix_path = u.path;
    assert_int_equal(start_connect(loop, &ucfg, &c[1], NULL), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(c[1].rec.made, 0);
    assert_int_equal(start_connect(loop, &cfg, &c[2], NULL), 0); /* not started */
    aiol_connect_config named = tcp_cfg("localhost", f.port);
    aiol_handle *h = NULL;
    assert_int_equal(start_connect(loop, &named, &c[3], &h), 0); /* resolving */
    assert_int_equal(aiol_loop_close(loop), 0);
    for (int i = 0; i < 4; i++) assert_failed_attempt(&c[i], AIOL_ECANCELED);
    unix_server_free(loop, &u, 0);
    assert_int_equal(aiol_loop_free(loop), 0);
    FIX(state)->loop = NULL;
    assert_int_equal(aiol_handle_cancel(h), 0); /* finished: a no-op, loop gone */
    assert_int_equal(aiol_handle_release(h), 0);
    full_listener_close(&f);
}

static const struct CMUnitTest tests[] = {
    CASE(connect_ipv4_echo),
    CASE(connect_refused),
    CASE(connect_localhost_resolver),
    CASE(connect_unknown_host),
    CASE(connect_timeout_full_backlog),
    CASE(connect_cancel),
    CASE(connect_cancel_in_progress),
    CASE(connect_cancel_before_connection_made),
    CASE(connect_bad_args_never_done),
    CASE(loop_close_with_connects_in_flight),
};

TEST_MAIN("test_connect", tests)
