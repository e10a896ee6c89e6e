/* The accept loop under injected accept4 and epoll_ctl failures (asyncio
   BaseSelectorEventLoop._accept_connection): transient errors are skipped, EAGAIN ends the
   batch, resource exhaustion reports once and stops accepting for 1 s, anything else is
   reported and the next readiness tries again. */
#include "faults_common.h"

#define MAX_CONNS 8

typedef struct srv {
    aiol_server *s;
    uint16_t port;
    int accepted;
    conn conns[MAX_CONNS];
} srv;

static int srv_factory(void *fd_, const struct sockaddr *peer, socklen_t len, void **ud) {
    UNUSED(peer), UNUSED(len);
    srv *s = (srv *)fd_;
    if (s->accepted >= MAX_CONNS) return 1;
    conn *c = &s->conns[s->accepted++];
    memset(c, 0, sizeof *c);
    c->echo = 1;
    *ud = c;
    return 0;
}

static void srv_start(aiol_loop *loop, srv *s) {
    memset(s, 0, sizeof *s);
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    aiol_protocol p = conn_protocol(0);
    assert_int_equal(aiol_server_start(loop, &cfg, &p, srv_factory, s, NULL, &s->s), 0);
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    assert_int_equal(aiol_server_sockname(s->s, 0, &a, &len), 0);
    s->port = ntohs(((struct sockaddr_in *)&a)->sin_port);
}

static void srv_stop(aiol_loop *loop, srv *s) {
    assert_int_equal(aiol_server_close(s->s), 0);
    assert_int_equal(aiol_server_abort_clients(s->s), 0);
    assert_int_equal(aiol_server_free(s->s), 0);
    run_to_end(loop);
    for (int i = 0; i < s->accepted; i++) assert_int_equal(s->conns[i].destroyed, 1);
}

/* The newest accepted connection echoes: the server really serves after the fault. */
static void check_echo(aiol_loop *loop, srv *s, int client) {
    conn *c = &s->conns[s->accepted - 1];
    size_t before = c->rx;
    send_pattern(client, before, 100);
    RUN_UNTIL(loop, c->rx == before + 100);
    unsigned char got[100], want[100];
    fill_pattern(want, before, 100);
    size_t have = 0;
    while (have < sizeof got) {
        ssize_t n = recv(client, got + have, sizeof got - have, 0);
        assert_true(n > 0);
        have += (size_t)n;
    }
    assert_memory_equal(got, want, sizeof got);
    assert_int_equal(c->rx_bad, 0);
}

/* EINTR, ECONNABORTED, EPROTO and the network-gone errors: that connection is gone, the
   next accept4 of the same batch takes the client. No report. */
static void accept_transient_errors_skipped(void **state) {
    aiol_loop *loop = LOOP(state);
    srv s;
    srv_start(loop, &s);
    const int errs[] = {EINTR, ECONNABORTED, EPROTO, ENETDOWN, EHOSTUNREACH, ENETUNREACH};
    int clients[6];
    for (int i = 0; i < 6; i++) {
        aiol_fault_set(AIOL_FAULT_ACCEPT, errs[i], 0, 1);
        clients[i] = tcp_client(s.port);
        RUN_UNTIL(loop, s.accepted == i + 1);
        assert_int_equal(aiol_fault_hits(AIOL_FAULT_ACCEPT), 1);
        assert_true(aiol_fault_seen(AIOL_FAULT_ACCEPT) >= 2); /* retried in the same batch */
        check_echo(loop, &s, clients[i]);
    }
    aiol_fault_clear();
    assert_int_equal(g_reports, 0);
    srv_stop(loop, &s);
    for (int i = 0; i < 6; i++) close(clients[i]);
}

/* EAGAIN: the backlog looked empty; nothing happens until the next readiness, which is
   the very next iteration (level-triggered). No report. */
static void accept_eagain_is_noop(void **state) {
    aiol_loop *loop = LOOP(state);
    srv s;
    srv_start(loop, &s);
    aiol_fault_set(AIOL_FAULT_ACCEPT, EAGAIN, 0, 1);
    int client = tcp_client(s.port);
    RUN_UNTIL(loop, aiol_fault_hits(AIOL_FAULT_ACCEPT) == 1);
    assert_int_equal(s.accepted, 0);
    assert_int_equal(aiol_fault_seen(AIOL_FAULT_ACCEPT), 1); /* the batch ended there */
    RUN_UNTIL(loop, s.accepted == 1);
    check_echo(loop, &s, client);
    assert_int_equal(g_reports, 0);
    srv_stop(loop, &s);
    close(client);
}

/* EMFILE / ENFILE / ENOBUFS / ENOMEM: one report, no accept4 for 1 s (asyncio's
   ACCEPT_RETRY_DELAY; staying registered would spin on a readable listener), then the
   pending client is accepted. */
static void back_off(void **state, int err) {
    aiol_loop *loop = LOOP(state);
    srv s;
    srv_start(loop, &s);
    aiol_fault_set(AIOL_FAULT_ACCEPT, err, 0, 1);
    int client = tcp_client(s.port);
    RUN_UNTIL(loop, aiol_fault_hits(AIOL_FAULT_ACCEPT) == 1);
    uint64_t t0 = mono_ns();
    assert_int_equal(g_reports, 1);
    assert_int_equal(g_report_code, -err);
    assert_int_equal(g_report_kind, AIOL_OBJ_SERVER);
    assert_string_equal(g_report_message, "socket.accept() out of system resource");
    RUN_UNTIL(loop, s.accepted == 1);
    uint64_t waited = mono_ns() - t0;
    assert_true(waited >= 900 * MS);
    assert_true(waited < 2000 * MS);
    /* the fault, then the retry's accept and its EAGAIN: none during the back-off */
    assert_int_equal(aiol_fault_seen(AIOL_FAULT_ACCEPT), 3);
    assert_int_equal(g_reports, 1);
    check_echo(loop, &s, client);
    srv_stop(loop, &s);
    close(client);
}

static void accept_emfile_backs_off(void **state) { back_off(state, EMFILE); }
static void accept_enfile_backs_off(void **state) { back_off(state, ENFILE); }
static void accept_enobufs_backs_off(void **state) { back_off(state, ENOBUFS); }
static void accept_enomem_backs_off(void **state) { back_off(state, ENOMEM); }

/* EMFILE that never ends: one report and one accept4 per retry period, no spinning. */
static void accept_persistent_emfile_no_spin(void **state) {
    aiol_loop *loop = LOOP(state);
    srv s;
    srv_start(loop, &s);
    aiol_fault_set(AIOL_FAULT_ACCEPT, EMFILE, 0, -1);
    int client = tcp_client(s.port);
    uint64_t t0 = mono_ns();
    clock_t cpu0 = clock();
    RUN_UNTIL(loop, mono_ns() - t0 >= 2500 * MS);
    double cpu = (double)(clock() - cpu0) / CLOCKS_PER_SEC;
    assert_int_equal(s.accepted, 0);
    assert_int_equal(aiol_fault_seen(AIOL_FAULT_ACCEPT), 3); /* at 0, 1 and 2 s */
    assert_int_equal(g_reports, 3);
    assert_true(cpu < 0.5);
    aiol_fault_clear(); /* fds free again: served within the next retry period */
    t0 = mono_ns();
    RUN_UNTIL(loop, s.accepted == 1);
    assert_true(mono_ns() - t0 < 1500 * MS);
    check_echo(loop, &s, client);
    srv_stop(loop, &s);
    close(client);
}

/* Any other error: reported ("accept() failed"), the listener stays armed, the next
   readiness accepts. */
static void accept_other_error_reported(void **state) {
    aiol_loop *loop = LOOP(state);
    srv s;
    srv_start(loop, &s);
    aiol_fault_set(AIOL_FAULT_ACCEPT, EPERM, 0, 1);
    int client = tcp_client(s.port);
    RUN_UNTIL(loop, s.accepted == 1);
    assert_int_equal(g_reports, 1);
    assert_int_equal(g_report_code, -EPERM);
    assert_int_equal(g_report_kind, AIOL_OBJ_SERVER);
    assert_string_equal(g_report_message, "accept() failed");
    check_echo(loop, &s, client);
    srv_stop(loop, &s);
    close(client);
}

/* epoll_ctl refusing the new connection's registration (after connection_made, when the
   transport starts reading): connection_lost with that error, the client sees the close,
   and the server goes on serving. */
static void accept_epoll_ctl_fails_for_connection(void **state) {
    aiol_loop *loop = LOOP(state);
    srv s;
    srv_start(loop, &s);
    int c1 = tcp_client(s.port);
    aiol_fault_set(AIOL_FAULT_EPOLL_CTL, ENOSPC, 0, 1);
    RUN_UNTIL(loop, s.accepted == 1 && s.conns[0].lost);
    assert_int_equal(aiol_fault_hits(AIOL_FAULT_EPOLL_CTL), 1);
    assert_int_equal(s.conns[0].made, 1);
    assert_int_equal(s.conns[0].lost_status, -ENOSPC);
    char b;
    assert_true(recv(c1, &b, 1, 0) <= 0); /* closed */
    aiol_fault_clear();
    int c2 = tcp_client(s.port);
    RUN_UNTIL(loop, s.accepted == 2);
    check_echo(loop, &s, c2);
    srv_stop(loop, &s);
    close(c1);
    close(c2);
}

/* epoll_ctl refusing the listener: aiol_server_start returns the error, nothing stays
   open (teardown counts fds). */
static void server_start_epoll_ctl_fails(void **state) {
    aiol_loop *loop = LOOP(state);
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    aiol_protocol p = conn_protocol(0);
    srv s;
    memset(&s, 0, sizeof s);
    aiol_server *srvp = (aiol_server *)&s; /* must stay untouched */
    aiol_fault_set(AIOL_FAULT_EPOLL_CTL, ENOMEM, 0, 1);
    assert_int_equal(aiol_server_start(loop, &cfg, &p, srv_factory, &s, NULL, &srvp), AIOL_ENOMEM);
    assert_ptr_equal(srvp, (aiol_server *)&s);
    assert_int_equal(aiol_fault_hits(AIOL_FAULT_EPOLL_CTL), 1);
    aiol_fault_clear();
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0); /* nothing alive */
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        CASE(accept_transient_errors_skipped),
        CASE(accept_eagain_is_noop),
        CASE(accept_emfile_backs_off),
        CASE(accept_enfile_backs_off),
        CASE(accept_enobufs_backs_off),
        CASE(accept_enomem_backs_off),
        CASE(accept_persistent_emfile_no_spin),
        CASE(accept_other_error_reported),
        CASE(accept_epoll_ctl_fails_for_connection),
        CASE(server_start_epoll_ctl_fails),
    };
    return TEST_MAIN("test_faults_accept", tests);
}
