/*
 * The accept loop (asyncio selector_events._accept_connection): batches of `backlog`
 * accepts per readiness event, the EMFILE back-off (one report per ACCEPT_RETRY_DELAY, no
 * busy loop), the factory (peer address, refusal), and the per-connection callback order
 * and destroy-exactly-once on every path.
 */
#include <sys/resource.h>

#include "net_helpers.h"

/* Waits until the listener's accept queue holds n connections. TCP_INFO on a listening
   socket reports the accept queue length in tcpi_unacked (Linux). There is no event for
   "the peer's final ACK was processed", so this polls with 1 ms naps, bounded. */
static int wait_accept_queue(int lfd, unsigned n) {
    for (int i = 0; i < 5000; i++) {
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        if (getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) return 0;
        if (ti.tcpi_unacked >= n) return 1;
        poll(NULL, 0, 1);
    }
    return 0;
}

/* 300 connections queued on a listener with backlog 100: the server accepts at most
   `backlog` (100) per readiness event, so three events take them all.
   The kernel's queue for listen(fd, 100) holds only 101 completed connections (the rest
   would wait for SYN retransmits), so the listening socket is made here with listen(512)
   and adopted with aiol_server_start_fd and a config backlog of 100: the batch size
   comes from the config, the queue from our listen().
   Counting, with the loop not run until all 300 are queued:
     iteration 1: the listener is readable: accept 100 (100 connection_made scheduled);
     iteration 2: those 100 connection_made, then the still-readable listener: 100 more;
     iteration 3: 100 connection_made, 100 accepts (the queue is now empty);
     iteration 4: the last 100 connection_made.
   So accepts take exactly 3 readiness events and every connection_made has run after
   at most 4 iterations. */
static void accept_batches_300(void **state) {
    aiol_loop *loop = LOOP(state);
    enum { N = 300, BACKLOG = 100 };
    srv_state *s = srv_new(loop);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a = loopback4(0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 512), 0);
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.backlog = BACKLOG;
    aiol_protocol proto = rec_protocol();
    assert_int_equal(aiol_server_start_fd(loop, lfd, &cfg, &proto, rec_factory, s,
                                          srv_factory_destroy, &s->server),
                     0);
    uint16_t port = server_port(s->server, 0);

    static int cl[N];
    for (int i = 0; i < N; i++) {
        cl[i] = tcp_client_nb(port);
        assert_true(cl[i] >= 0);
    }
    for (int i = 0; i < N; i++) { /* each connect completed (writable, no error) */
        struct pollfd p = {cl[i], POLLOUT, 0};
        assert_int_equal(poll(&p, 1, 5000), 1);
        int err = -1;
        socklen_t len = sizeof err;
        assert_int_equal(getsockopt(cl[i], SOL_SOCKET, SO_ERROR, &err, &len), 0);
        assert_int_equal(err, 0);
    }
    assert_true(wait_accept_queue(lfd, N));

    int iter = 0;
    while (s->made_total < N && iter < 10) {
        assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
        iter++;
        if (iter <= 3) {
            /* one batch of `backlog` accepts per readiness event */
            assert_int_equal(s->factory_calls, iter * BACKLOG);
            assert_int_equal(s->made_total, (iter - 1) * BACKLOG);
        }
    }
    assert_int_equal(s->factory_calls, N);
    assert_int_equal(s->made_total, N);
    assert_true(iter <= 4);
    /* nothing more to accept: another iteration accepts nothing */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(s->factory_calls, N);

    for (int i = 0; i < N; i++) close(cl[i]);
    PUMP_UNTIL_GE(loop, &s->destroy_total, N, 10000);
    for (int i = 0; i < N; i++) {
        assert_int_equal(s->conns[i].destroyed, 1);
        assert_int_equal(s->conns[i].lost, 1);
        assert_int_equal(s->conns[i].lost_status, 0);
        assert_int_equal(s->conns[i].eof, 1);
    }
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    assert_int_equal(s->factory_destroyed, 1);
    free(s);
}

/* ---- EMFILE ------------------------------------------------------------------------- */

typedef struct report_log {
    int n;
    int codes[16];
    uint64_t at[16];
    int bad_message, bad_object;
    void *server;
} report_log;

static void record_report(const aiol_error_context *ctx, void *ud) {
    report_log *r = (report_log *)ud;
    CHECK(!g_in_api);
    if (r->n < 16) {
        r->codes[r->n] = ctx->code;
        r->at[r->n] = mono_ns();
    }
    r->n++;
    if (!ctx->message || !ctx->message[0]) r->bad_message++;
    if (ctx->object_kind != AIOL_OBJ_SERVER || ctx->object != r->server) r->bad_object++;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int max_open_fd(void) {
    DIR *d = opendir("/proc/self/fd");
    int m = -1;
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && atoi(e->d_name) > m) m = atoi(e->d_name);
    closedir(d);
    return m;
}

/* With the fd table full, accept() fails with EMFILE: the server reports it once, stops
   watching the listener for ACCEPT_RETRY_DELAY (1 s) and tries again, so over ~2.5 s of
   exhaustion there are exactly 3 reports (t = 0, 1, 2 s), at least 1 s apart, and almost
   no CPU is used (a level-triggered listener left registered would spin). Once fds are
   free again, the next retry (within 1.5 s) accepts the waiting clients. */
/* UBSan's vptr check, on a cache miss, probes memory through a pipe (sanitizer_common's
   IsAccessibleMemoryRange); with no fd left that fails and it reports a false "invalid
   vptr". So before exhausting fds, run the same kinds of objects through the same checks
   once (accept, a connection, timers with handles, wait_closed): later checks hit its
   cache. A no-op in builds without UBSan. */
static void warm_up_sanitizer_caches(aiol_loop *loop) {
    srv_state *w = srv_new(loop);
    srv_start_local(w);
    int fd = tcp_client(server_port(w->server, 0));
    assert_true(fd >= 0);
    PUMP_UNTIL_GE(loop, &w->made_total, 1, 5000);
    close(fd);
    PUMP_UNTIL_GE(loop, &w->destroy_total, 1, 5000);
    assert_int_equal(aiol_server_wait_closed(w->server, srv_wait_closed, w), 0);
    assert_int_equal(aiol_server_close(w->server), 0);
    PUMP_UNTIL_GE(loop, &w->wait_closed_calls, 1, 5000);
    assert_int_equal(aiol_server_free(w->server), 0);
    run_for(loop, 1);
    assert_int_equal(w->factory_destroyed, 1);
    free(w);
}

static void accept_emfile_backs_off(void **state) {
    aiol_loop *loop = LOOP(state);
    enum { CLIENTS = 3, MAX_FILL = 4096 };
    warm_up_sanitizer_caches(loop);
    srv_state *s = srv_new(loop);
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    report_log rep;
    memset(&rep, 0, sizeof rep);
    rep.server = s->server;
    assert_int_equal(aiol_loop_set_exception_handler(loop, record_report, &rep, NULL), 0);

    int cl[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        cl[i] = tcp_client(port); /* completes from the kernel's accept queue */
        assert_true(cl[i] >= 0);
    }

    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    struct rlimit low = old;
    low.rlim_cur = (rlim_t)max_open_fd() + 1 + 8;
    assert_true(low.rlim_cur <= old.rlim_cur);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    static int fill[MAX_FILL];
    int nfill = 0;
    for (;;) {
        int fd = dup(cl[0]);
        if (fd < 0) {
            assert_int_equal(errno, EMFILE);
            break;
        }
        assert_true(nfill < MAX_FILL);
        fill[nfill++] = fd;
    }
    assert_true(nfill > 0);

    double cpu0 = cpu_seconds();
    uint64_t t0 = mono_ns();
    run_for(loop, 2500);
    uint64_t t1 = mono_ns();
    double cpu = cpu_seconds() - cpu0;

    assert_int_equal(s->factory_calls, 0);
    assert_int_equal(rep.n, 3);
    for (int i = 0; i < rep.n; i++) assert_int_equal(rep.codes[i], AIOL_EMFILE);
    assert_int_equal(rep.bad_message, 0);
    assert_int_equal(rep.bad_object, 0);
    assert_true(rep.at[0] - t0 < 500 * MS); /* reported at the first readiness event */
    for (int i = 1; i < rep.n; i++) assert_true(rep.at[i] - rep.at[i - 1] >= 1000 * MS);
    assert_true(t1 - t0 >= 2500 * MS);
    if (cpu >= 0.1) fail_msg("busy loop: %.3f s CPU over %.3f s of EMFILE", cpu, (t1 - t0) / 1e9);

    /* free the fds: accepting resumes at the next retry */
    for (int i = 0; i < nfill; i++) close(fill[i]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    uint64_t t2 = mono_ns();
    PUMP_UNTIL_GE(loop, &s->factory_calls, CLIENTS, 1500);
    assert_true(mono_ns() - t2 <= 1500 * MS);
    PUMP_UNTIL_GE(loop, &s->made_total, CLIENTS, 1000);
    assert_int_equal(rep.n, 3); /* no EMFILE once fds are free */

    for (int i = 0; i < CLIENTS; i++) close(cl[i]);
    PUMP_UNTIL_GE(loop, &s->destroy_total, CLIENTS, 5000);
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(aiol_loop_set_exception_handler(loop, NULL, NULL, NULL), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    assert_int_equal(s->factory_destroyed, 1);
    free(s);
}

/* ---- the factory -------------------------------------------------------------------- */

/* The factory gets the peer's address (the client's own sockname); the transport's
   peername and sockname match. */
static void factory_gets_peer_address(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    int fd = tcp_client(port);
    assert_true(fd >= 0);
    struct sockaddr_in me;
    socklen_t mlen = sizeof me;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &mlen), 0);

    PUMP_UNTIL_GE(loop, &s->made_total, 1, 5000);
    assert_int_equal(s->factory_calls, 1);
    assert_int_equal(s->last_peer_len, sizeof(struct sockaddr_in));
    struct sockaddr_in *peer = (struct sockaddr_in *)&s->last_peer;
    assert_int_equal(peer->sin_family, AF_INET);
    assert_int_equal(peer->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    assert_int_equal(peer->sin_port, me.sin_port);

    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(aiol_transport_peername(s->conns[0].t, &ss, &len), 0);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(((struct sockaddr_in *)&ss)->sin_port, me.sin_port);
    len = sizeof ss;
    assert_int_equal(aiol_transport_sockname(s->conns[0].t, &ss, &len), 0);
    assert_int_equal(addr_port(&ss), port);

    close(fd);
    PUMP_UNTIL_GE(loop, &s->destroy_total, 1, 5000);
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    free(s);
}

/* A factory returning nonzero: the socket is closed (the client sees EOF), and neither
   connection_made nor destroy runs for it (*user_data is ignored). The server goes on
   accepting. */
static void factory_refusal_closes_socket(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    s->refuse = 1;
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    int fd = tcp_client(port);
    assert_true(fd >= 0);
    PUMP_UNTIL_GE(loop, &s->factory_calls, 1, 5000);
    size_t n = 0;
    int rc = read_to_eof(fd, &n, 5000);
    assert_true(rc == 0 || rc == -ECONNRESET);
    assert_int_equal(n, 0);
    close(fd);
    /* a few more iterations: nothing for the refused connection */
    for (int i = 0; i < 3; i++) assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(s->made_total, 0);
    assert_int_equal(s->destroy_total, 0);
    assert_int_equal(s->nconns, 0);

    s->refuse = 0; /* the next one is accepted */
    fd = tcp_client(port);
    assert_true(fd >= 0);
    PUMP_UNTIL_GE(loop, &s->made_total, 1, 5000);
    assert_int_equal(s->factory_calls, 2);
    close(fd);
    PUMP_UNTIL_GE(loop, &s->destroy_total, 1, 5000);
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    free(s);
}

/* Clients that send data and EOF before the loop ever runs: per connection, made before
   data before eof before lost before destroy, each once. */
static void made_before_data(void **state) {
    aiol_loop *loop = LOOP(state);
    enum { N = 10 };
    srv_state *s = srv_new(loop);
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    int cl[N];
    for (int i = 0; i < N; i++) {
        cl[i] = tcp_client(port);
        assert_true(cl[i] >= 0);
        assert_int_equal(send(cl[i], "early", 5, MSG_NOSIGNAL), 5);
        assert_int_equal(shutdown(cl[i], SHUT_WR), 0);
    }
    PUMP_UNTIL_GE(loop, &s->destroy_total, N, 5000);
    for (int i = 0; i < N; i++) {
        conn_rec *c = &s->conns[i];
        assert_int_equal(c->data_before_made, 0);
        assert_int_equal(c->made, 1);
        assert_int_equal(c->bytes, 5);
        assert_int_equal(c->eof, 1);
        assert_int_equal(c->lost, 1);
        assert_int_equal(c->lost_status, 0);
        assert_int_equal(c->destroyed, 1);
        assert_true(c->seq_made < c->seq_first_data);
        assert_true(c->seq_first_data < c->seq_lost);
        assert_true(c->seq_lost < c->seq_destroy);
        size_t n = 0;
        assert_int_equal(read_to_eof(cl[i], &n, 5000), 0);
        close(cl[i]);
    }
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    free(s);
}

/* destroy runs exactly once per accepted user_data: closed by us, aborted by us, closed
   by the peer, live at loop close (connection_lost(AIOL_ECANCELED) inside close), and
   accepted but not yet announced at loop close (no connection_made, no connection_lost,
   but destroy). */
static void destroy_once_every_path(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    enum { N = 5 };
    int cl[N + 1];
    for (int i = 0; i < N; i++) {
        cl[i] = tcp_client(port);
        assert_true(cl[i] >= 0);
        PUMP_UNTIL_GE(loop, &s->made_total, i + 1, 5000); /* conns[i] is client i */
    }
    assert_int_equal(API(aiol_transport_close(s->conns[0].t)), 0);
    assert_int_equal(API(aiol_transport_abort(s->conns[1].t)), 0);
    close(cl[2]);
    PUMP_UNTIL_GE(loop, &s->destroy_total, 3, 5000);
    assert_int_equal(s->conns[0].lost_status, 0);
    assert_int_equal(s->conns[1].lost_status, AIOL_ECANCELED);
    assert_int_equal(s->conns[2].lost_status, 0);
    assert_int_equal(s->conns[2].eof, 1);
    /* closed and aborted: the client sees the end */
    size_t n = 0;
    assert_true(read_to_eof(cl[0], &n, 5000) == 0);
    int rc = read_to_eof(cl[1], &n, 5000);
    assert_true(rc == 0 || rc == -ECONNRESET);

    /* one more client, accepted in an iteration whose connection_made has not run yet */
    cl[N] = tcp_client(port);
    assert_true(cl[N] >= 0);
    for (int i = 0; i < 100 && s->factory_calls < N + 1; i++)
        assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(s->factory_calls, N + 1);
    assert_int_equal(s->conns[N].made, 0);

    assert_int_equal(aiol_loop_close(loop), 0);
    for (int i = 0; i <= N; i++) assert_int_equal(s->conns[i].destroyed, 1);
    assert_int_equal(s->conns[3].lost_status, AIOL_ECANCELED);
    assert_int_equal(s->conns[4].lost_status, AIOL_ECANCELED);
    assert_int_equal(s->conns[N].made, 0);
    assert_int_equal(s->conns[N].lost, 0);
    assert_int_equal(s->factory_destroyed, 1);
    assert_int_equal(aiol_server_free(s->server), 0);
    for (int i = 0; i <= N; i++)
        if (i != 2) close(cl[i]);
    free(s);
}

/* The factory closes (or frees) the server in the middle of a batch: the batch stops at
   once (the factory never runs again), the connection it accepted while closing is made
   and works, the clients still queued are dropped, and wait_closed / factory_destroy come
   after that connection is gone. */
static void factory_closes_server_mid_batch(void **state) {
    aiol_loop *loop = LOOP(state);
    enum { N = 5 };
    for (int how = 1; how <= 2; how++) {
        srv_state *s = srv_new(loop);
        s->echo = 1;
        s->close_at_factory_call = 2;
        s->close_how = how;
        srv_start_local(s);
        uint16_t port = server_port(s->server, 0);
        if (how == 1) assert_int_equal(aiol_server_wait_closed(s->server, srv_wait_closed, s), 0);
        int cl[N];
        for (int i = 0; i < N; i++) {
            cl[i] = tcp_client(port); /* all queued before the loop runs */
            assert_true(cl[i] >= 0);
        }
        PUMP_UNTIL_GE(loop, &s->made_total, 2, 5000);
        assert_int_equal(s->factory_calls, 2);
        assert_int_equal(s->factory_after_close, 0);
        assert_int_equal(tcp_client(port), -ECONNREFUSED);
        /* connections 0 and 1 work; 2.. were dropped with the listening socket */
        for (int i = 0; i < 2; i++) {
            assert_int_equal(send(cl[i], "ab", 2, MSG_NOSIGNAL), 2);
            char b[2];
            int before = s->data_total;
            PUMP_UNTIL_GE(loop, &s->data_total, before + 1, 5000);
            assert_int_equal(read_exact(cl[i], b, 2, 5000), 2);
        }
        for (int i = 2; i < N; i++) {
            size_t n = 0;
            int rc = read_to_eof(cl[i], &n, 5000);
            assert_true(rc == 0 || rc == -ECONNRESET);
        }
        for (int i = 0; i < N; i++) close(cl[i]);
        PUMP_UNTIL_GE(loop, &s->destroy_total, 2, 5000);
        if (how == 1) {
            PUMP_UNTIL_GE(loop, &s->wait_closed_calls, 1, 5000);
            assert_true(s->seq_wait_closed > s->conns[1].seq_lost);
            assert_int_equal(aiol_server_free(s->server), 0);
        }
        assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
        assert_int_equal(s->factory_destroyed, 1);
        assert_int_equal(s->factory_calls, 2);
        free(s);
    }
}

static const struct CMUnitTest tests[] = {
    CASE(accept_batches_300),
    CASE(accept_emfile_backs_off),
    CASE(factory_gets_peer_address),
    CASE(factory_refusal_closes_socket),
    CASE(made_before_data),
    CASE(destroy_once_every_path),
    CASE(factory_closes_server_mid_batch),
};

TEST_MAIN("test_accept", tests)
