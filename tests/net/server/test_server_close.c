/*
 * Closing a server (asyncio Server.close / close_clients / abort_clients / wait_closed),
 * aiol_server_free in its various states, and aiol_loop_close with servers and
 * connections live.
 */
#include "net_helpers.h"

/* Connects n clients and runs the loop until all n are announced. */
static void connect_clients(srv_state *s, uint16_t port, int *cl, int n) {
    int base = s->made_total;
    for (int i = 0; i < n; i++) {
        cl[i] = tcp_client(port);
        assert_true(cl[i] >= 0);
        PUMP_UNTIL_GE(s->loop, &s->made_total, base + i + 1, 5000); /* conns in order */
    }
}

static void echo_check(srv_state *s, int fd, const char *msg) {
    size_t len = strlen(msg);
    int before = s->data_total;
    assert_int_equal(send(fd, msg, len, MSG_NOSIGNAL), (ssize_t)len);
    PUMP_UNTIL_GE(s->loop, &s->data_total, before + 1, 5000);
    char buf[64] = {0};
    assert_int_equal(read_exact(fd, buf, len, 5000), len);
    assert_memory_equal(buf, msg, len);
}

/* After close returns: is_serving 0, no listening socket, a new client is refused, a
   client that was queued but not yet accepted never reaches the factory; connections
   already made keep working. close is idempotent. */
static void close_refuses_new_keeps_live(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    s->echo = 1;
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    int live;
    connect_clients(s, port, &live, 1);
    int queued = tcp_client(port); /* in the kernel's accept queue; the loop never ran */
    assert_true(queued >= 0);

    assert_int_equal(aiol_server_is_serving(s->server), 1);
    assert_int_equal(aiol_server_socket_count(s->server), 1);
    assert_int_equal(API(aiol_server_close(s->server)), 0);
    s->closed = 1;
    assert_int_equal(aiol_server_is_serving(s->server), 0);
    assert_int_equal(aiol_server_socket_count(s->server), 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(aiol_server_sockname(s->server, 0, &ss, &len), AIOL_ECLOSED);
    assert_int_equal(aiol_server_close(s->server), 0); /* idempotent */
    assert_int_equal(tcp_client(port), -ECONNREFUSED);

    /* the queued client is dropped with the listening socket */
    size_t n = 0;
    int rc = read_to_eof(queued, &n, 5000);
    assert_true(rc == 0 || rc == -ECONNRESET);
    close(queued);

    echo_check(s, live, "still here");
    echo_check(s, live, "and again");
    assert_int_equal(s->factory_calls, 1);
    assert_int_equal(s->factory_after_close, 0);

    close(live);
    PUMP_UNTIL_GE(loop, &s->destroy_total, 1, 5000);
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    assert_int_equal(s->factory_destroyed, 1);
    free(s);
}

/* wait_closed's callback runs once, never inside the call, only after close and after
   the last connection's connection_lost; one registered after everything is gone runs
   in a later iteration. An open server with a wait_closed pending keeps the loop alive. */
static void wait_closed_after_last_connection(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    int cl[2];
    connect_clients(s, port, cl, 2);

    assert_int_equal(API(aiol_server_wait_closed(s->server, srv_wait_closed, s)), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(s->wait_closed_calls, 0); /* still open */

    assert_int_equal(API(aiol_server_close(s->server)), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(s->wait_closed_calls, 0); /* two connections live */

    close(cl[0]);
    PUMP_UNTIL_GE(loop, &s->lost_total, 1, 5000);
    for (int i = 0; i < 3; i++) assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(s->wait_closed_calls, 0); /* one left */

    close(cl[1]);
    PUMP_UNTIL_GE(loop, &s->wait_closed_calls, 1, 5000);
    assert_int_equal(s->lost_total, 2);
    assert_true(s->seq_wait_closed > s->conns[0].seq_lost);
    assert_true(s->seq_wait_closed > s->conns[1].seq_lost);

    /* registered after everything is gone: not inside the call, but in a later run */
    assert_int_equal(API(aiol_server_wait_closed(s->server, srv_wait_closed, s)), 0);
    assert_int_equal(s->wait_closed_calls, 1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(s->wait_closed_calls, 2);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    assert_int_equal(s->wait_closed_calls, 2); /* once each */
    assert_int_equal(aiol_server_wait_closed(s->server, NULL, s), AIOL_EINVAL);

    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    assert_int_equal(s->factory_destroyed, 1);
    free(s);
}

/* ---- close_clients / abort_clients ---------------------------------------------------- */

typedef struct reader {
    pthread_t th;
    int fd;
    size_t bytes;
    int result;
    waker *w;
} reader;

static void *reader_main(void *p) {
    reader *r = (reader *)p;
    r->result = read_to_eof(r->fd, &r->bytes, 10000);
    waker_poke(r->w);
    return NULL;
}

#define BIG (4u << 20)

/* close_clients closes every connection after its queue drains: each client gets all the
   pending data, then EOF; connection_lost(0); wait_closed fires after. */
static void close_clients_flushes_then_eof(void **state) {
    aiol_loop *loop = LOOP(state);
    enum { N = 2 };
    srv_state *s = srv_new(loop);
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    int cl[N];
    connect_clients(s, port, cl, N);
    unsigned char *big = (unsigned char *)malloc(BIG);
    assert_non_null(big);
    for (size_t i = 0; i < BIG; i++) big[i] = (unsigned char)i;
    for (int i = 0; i < N; i++) {
        assert_int_equal(aiol_transport_write(s->conns[i].t, big, BIG), 0);
        assert_true(aiol_transport_get_write_buffer_size(s->conns[i].t) > 0); /* queued */
    }
    assert_int_equal(aiol_server_close(s->server), 0);
    assert_int_equal(aiol_server_wait_closed(s->server, srv_wait_closed, s), 0);
    assert_int_equal(API(aiol_server_close_clients(s->server)), 0);
    for (int i = 0; i < N; i++) assert_int_equal(aiol_transport_is_closing(s->conns[i].t), 1);
    assert_int_equal(s->lost_total, 0); /* not inside the call */

    waker w;
    waker_open(loop, &w);
    reader rd[N];
    for (int i = 0; i < N; i++) {
        rd[i].fd = cl[i];
        rd[i].bytes = 0;
        rd[i].w = &w;
        assert_int_equal(pthread_create(&rd[i].th, NULL, reader_main, &rd[i]), 0);
    }
    PUMP_UNTIL_GE(loop, &w.fired, N, 15000);
    PUMP_UNTIL_GE(loop, &s->wait_closed_calls, 1, 5000);
    for (int i = 0; i < N; i++) {
        pthread_join(rd[i].th, NULL);
        assert_int_equal(rd[i].result, 0); /* EOF, not a reset */
        assert_int_equal(rd[i].bytes, BIG);
        assert_int_equal(s->conns[i].lost_status, 0);
        assert_int_equal(s->conns[i].destroyed, 1);
        assert_true(s->seq_wait_closed > s->conns[i].seq_lost);
        close(cl[i]);
    }
    waker_close(loop, &w);
    free(big);
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    assert_int_equal(s->factory_destroyed, 1);
    free(s);
}

/* abort_clients drops the queues and closes now: connection_lost(AIOL_ECANCELED); the
   clients get at most what the kernel had already taken, never the dropped queue. The
   server keeps serving new clients (abort_clients does not close it). */
static void abort_clients_drops_queues(void **state) {
    aiol_loop *loop = LOOP(state);
    enum { N = 2 };
    const size_t big = 16u << 20;
    srv_state *s = srv_new(loop);
    s->echo = 1;
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    int cl[N];
    connect_clients(s, port, cl, N);
    unsigned char *buf = (unsigned char *)calloc(1, big);
    assert_non_null(buf);
    size_t queued[N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(aiol_transport_write(s->conns[i].t, buf, big), 0);
        queued[i] = aiol_transport_get_write_buffer_size(s->conns[i].t);
        assert_true(queued[i] > 0);
    }
    assert_int_equal(API(aiol_server_abort_clients(s->server)), 0);
    assert_int_equal(s->lost_total, 0); /* not inside the call */
    PUMP_UNTIL_GE(loop, &s->destroy_total, N, 5000);
    for (int i = 0; i < N; i++) {
        assert_int_equal(s->conns[i].lost_status, AIOL_ECANCELED);
        size_t n = 0;
        int rc = read_to_eof(cl[i], &n, 5000);
        assert_true(rc == 0 || rc == -ECONNRESET);
        assert_true(n + queued[i] <= big);
        close(cl[i]);
    }
    free(buf);
    /* still serving */
    assert_int_equal(aiol_server_is_serving(s->server), 1);
    int again;
    connect_clients(s, port, &again, 1);
    echo_check(s, again, "after abort");
    close(again);
    PUMP_UNTIL_GE(loop, &s->destroy_total, N + 1, 5000);
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    free(s);
}

/* aiol_server_free from inside wait_closed's callback. */
static void free_inside_wait_closed(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    s->free_in_wait_closed = 1;
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    int cl;
    connect_clients(s, port, &cl, 1);
    assert_int_equal(aiol_server_wait_closed(s->server, srv_wait_closed, s), 0);
    assert_int_equal(aiol_server_wait_closed(s->server, srv_wait_closed, s), 0);
    assert_int_equal(aiol_server_close(s->server), 0);
    close(cl);
    PUMP_UNTIL_GE(loop, &s->wait_closed_calls, 1, 5000);
    assert_null(s->server);
    /* the second waiter ran too (the first freed the caller's pointer, not the waiters'
       references) */
    assert_int_equal(s->wait_closed_calls, 2);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(s->factory_destroyed, 1);
    assert_int_equal(s->destroy_total, 1);
    free(s);
}

/* aiol_server_free with connections live: the server stops listening, the connections go
   on; the memory (and factory_destroy) goes with the last of them. */
static void free_with_live_connections(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    s->echo = 1;
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    int cl[2];
    connect_clients(s, port, cl, 2);
    assert_int_equal(API(aiol_server_free(s->server)), 0);
    s->server = NULL;
    s->closed = 1;
    assert_int_equal(tcp_client(port), -ECONNREFUSED);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(s->factory_destroyed, 0);

    echo_check(s, cl[0], "one");
    echo_check(s, cl[1], "two");
    close(cl[0]);
    PUMP_UNTIL_GE(loop, &s->destroy_total, 1, 5000);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(s->factory_destroyed, 0);
    echo_check(s, cl[1], "three");
    close(cl[1]);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(s->destroy_total, 2);
    assert_int_equal(s->factory_destroyed, 1);
    assert_int_equal(s->factory_after_close, 0);
    free(s);
}

/* ---- loop close ------------------------------------------------------------------------- */

typedef struct client_side {
    conn_rec rec;
    int done_calls, done_status;
    aiol_transport *t;
} client_side;

static void client_done(aiol_transport *t, int status, void *ud) {
    client_side *c = (client_side *)ud;
    CHECK(!g_in_api);
    c->done_calls++;
    c->done_status = status;
    c->t = t;
}

/* aiol_loop_close with an open server (wait_closed pending, two live connections, one of
   them from aiol_loop_connect) and a closed server with a live connection: every
   connection_lost(AIOL_ECANCELED), every destroy, both wait_closed callbacks (after the
   connection_lost of their connections) and the factory_destroys run inside close. The
   servers can be freed after the loop is closed; loop free then returns 0. */
static void loop_close_with_servers_live(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *a = srv_new(loop), *b = srv_new(loop);
    srv_start_local(a);
    srv_start_local(b);
    uint16_t pa = server_port(a->server, 0), pb = server_port(b->server, 0);
    int ca, cb;
    connect_clients(a, pa, &ca, 1);
    connect_clients(b, pb, &cb, 1);

    client_side cs;
    memset(&cs, 0, sizeof cs);
    aiol_protocol cp = rec_protocol();
    aiol_connect_config cc;
    memset(&cc, 0, sizeof cc);
    cc.size = sizeof cc;
    cc.host = "127.0.0.1";
    cc.port = pa;
    assert_int_equal(aiol_loop_connect(loop, &cc, &cp, &cs.rec, client_done, &cs, NULL), 0);
    PUMP_UNTIL_GE(loop, &cs.done_calls, 1, 5000);
    assert_int_equal(cs.done_status, 0);
    PUMP_UNTIL_GE(loop, &a->made_total, 2, 5000);

    assert_int_equal(aiol_server_wait_closed(a->server, srv_wait_closed, a), 0);
    assert_int_equal(aiol_server_close(b->server), 0);
    assert_int_equal(aiol_server_wait_closed(b->server, srv_wait_closed, b), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(a->wait_closed_calls + b->wait_closed_calls, 0);

    assert_int_equal(aiol_loop_close(loop), 0);
    /* everything ran inside close */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(a->conns[i].lost, 1);
        assert_int_equal(a->conns[i].lost_status, AIOL_ECANCELED);
        assert_int_equal(a->conns[i].destroyed, 1);
        assert_true(a->seq_wait_closed > a->conns[i].seq_lost);
    }
    assert_int_equal(b->conns[0].lost_status, AIOL_ECANCELED);
    assert_int_equal(b->conns[0].destroyed, 1);
    assert_true(b->seq_wait_closed > b->conns[0].seq_lost);
    assert_int_equal(cs.rec.lost, 1);
    assert_int_equal(cs.rec.lost_status, AIOL_ECANCELED);
    assert_int_equal(cs.rec.destroyed, 1);
    assert_int_equal(a->wait_closed_calls, 1);
    assert_int_equal(b->wait_closed_calls, 1);
    assert_int_equal(a->factory_destroyed, 1);
    assert_int_equal(b->factory_destroyed, 1);
    assert_int_equal(aiol_server_is_serving(a->server), 0);

    /* after close: ECLOSED, no callbacks */
    assert_int_equal(aiol_server_close_clients(a->server), AIOL_ECLOSED);
    assert_int_equal(aiol_server_wait_closed(a->server, srv_wait_closed, a), AIOL_ECLOSED);
    assert_null(aiol_server_loop(a->server));
    assert_int_equal(aiol_loop_close(loop), 0); /* idempotent */
    assert_int_equal(aiol_server_free(a->server), 0);
    assert_int_equal(aiol_server_free(b->server), 0);
    assert_int_equal(a->factory_destroyed, 1);
    assert_int_equal(b->factory_destroyed, 1);

    /* the peers see the end */
    size_t n = 0;
    int rc = read_to_eof(ca, &n, 5000);
    assert_true(rc == 0 || rc == -ECONNRESET);
    close(ca);
    close(cb);
    free(a);
    free(b);
}

/* A connection_lost that calls aiol_server_abort_clients (a protocol tearing its
   siblings down), both in a normal run and during aiol_loop_close, where connection_lost
   runs inside the abort: every connection is lost and destroyed exactly once, nothing is
   touched after it is freed (ASan). */
static void abort_clients_from_connection_lost(void **state) {
    aiol_loop *loop = LOOP(state);
    enum { N = 4 };
    srv_state *s = srv_new(loop);
    srv_start_local(s);
    uint16_t port = server_port(s->server, 0);
    int cl[2 * N];
    connect_clients(s, port, cl, N);
    s->abort_clients_in_lost = 1;
    close(cl[0]); /* its connection_lost aborts the other three */
    PUMP_UNTIL_GE(loop, &s->destroy_total, N, 5000);
    assert_int_equal(s->conns[0].lost_status, 0);
    for (int i = 1; i < N; i++) assert_int_equal(s->conns[i].lost_status, AIOL_ECANCELED);
    assert_int_equal(s->abort_clients_rc, 0);

    connect_clients(s, port, cl + N, N);
    assert_int_equal(aiol_loop_close(loop), 0);
    for (int i = 0; i < 2 * N; i++) {
        assert_int_equal(s->conns[i].lost, 1);
        assert_int_equal(s->conns[i].destroyed, 1);
    }
    for (int i = N; i < 2 * N; i++) assert_int_equal(s->conns[i].lost_status, AIOL_ECANCELED);
    assert_int_equal(aiol_server_free(s->server), 0);
    for (int i = 1; i < 2 * N; i++) close(cl[i]);
    free(s);
}

/* A closed server without connections has its wait_closed callback scheduled; closing
   the loop before it ran runs it inside close, once. */
static void loop_close_runs_scheduled_wait_closed(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    srv_start_local(s);
    assert_int_equal(aiol_server_close(s->server), 0);
    assert_int_equal(aiol_server_wait_closed(s->server, srv_wait_closed, s), 0);
    assert_int_equal(aiol_server_wait_closed(s->server, srv_wait_closed, s), 0);
    assert_int_equal(s->wait_closed_calls, 0);
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(s->wait_closed_calls, 2);
    assert_int_equal(s->factory_destroyed, 1);
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_int_equal(s->wait_closed_calls, 2);
    free(s);
}

static const struct CMUnitTest tests[] = {
    CASE(close_refuses_new_keeps_live),
    CASE(wait_closed_after_last_connection),
    CASE(close_clients_flushes_then_eof),
    CASE(abort_clients_drops_queues),
    CASE(free_inside_wait_closed),
    CASE(free_with_live_connections),
    CASE(loop_close_with_servers_live),
    CASE(abort_clients_from_connection_lost),
    CASE(loop_close_runs_scheduled_wait_closed),
};

TEST_MAIN("test_server_close", tests)
