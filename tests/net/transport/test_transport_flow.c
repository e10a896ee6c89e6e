/* Flow control (pause_writing / resume_writing), half-close in both directions, and peers
   that reset the connection. */
#include "tr_common.h"

/* ---- flow control ------------------------------------------------------------------------ */

#define CHUNK (64 * KiB)
#define TOTAL (4 * MiB)

static int g_in_write;        /* set around aiol_transport_write */
static int g_expect_pause;    /* connection_made returned after a write over the mark */
static int g_other_ran_first; /* another callback ran between that return and pause */
static size_t g_sizes[TOTAL / CHUNK];
static peer g_peer;

static void flow_made(conn *c) {
    unsigned char *buf = malloc(CHUNK);
    for (size_t i = 0; i < TOTAL / CHUNK; i++) {
        fill_pattern(buf, i * CHUNK, CHUNK);
        g_in_write = 1;
        int rc = API(aiol_transport_write(c->t, buf, CHUNK));
        g_in_write = 0;
        CHECK(rc == 0);
        g_sizes[i] = APIZ(aiol_transport_get_write_buffer_size(c->t));
        CHECK(c->pauses == 0);
    }
    free(buf);
    g_expect_pause = 1;
}

static void flow_other_cb(aiol_loop *loop, void *ud) {
    UNUSED(loop), UNUSED(ud);
    CHECK(!g_in_api);
    if (g_expect_pause) g_other_ran_first = 1;
}

static void flow_pause(conn *c) {
    CHECK(!g_in_write);
    CHECK(g_expect_pause);
    g_expect_pause = 0;
    CHECK(APIZ(aiol_transport_get_write_buffer_size(c->t)) > 64 * KiB);
    /* the slow reader starts now */
    g_peer.read_chunk = 4096;
    CHECK(aiol_loop_add_reader(aiol_transport_loop(c->t), g_peer.fd, peer_read_cb, &g_peer,
                               NULL) == 0);
    g_peer.reading = 1;
}

static void flow_resume(conn *c) {
    CHECK(!g_in_write);
    CHECK(APIZ(aiol_transport_get_write_buffer_size(c->t)) <= 16 * KiB);
    c->user_closed = 1;
    CHECK(API(aiol_transport_close(c->t)) == 0);
}

static void flow_control_4mib(void **state) {
    aiol_loop *loop = LOOP(state);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 8192, 8192);
    conn c;
    conn_init(&c);
    c.on_made = flow_made;
    c.on_pause = flow_pause;
    c.on_resume = flow_resume;
    peer_init(&g_peer, loop, theirs);
    g_peer.verify_pattern = 1;
    adopt(loop, ours, &c);
    /* queued after connection_made: runs in the same batch, after it */
    assert_int_equal(aiol_loop_call_soon(loop, flow_other_cb, NULL, NULL, NULL), 0);
    RUN_UNTIL(loop, c.destroyed && g_peer.rx_eof);
    assert_int_equal(g_other_ran_first, 0);  /* pause_writing came right after the callback */
    assert_int_equal(c.pauses, 1);
    assert_int_equal(c.resumes, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_status, 0);
    /* the queue grew with every write once the socket was full */
    int grew = 0;
    for (size_t i = 1; i < TOTAL / CHUNK; i++) {
        assert_true(g_sizes[i] >= g_sizes[i - 1]);
        grew += g_sizes[i] > g_sizes[i - 1];
    }
    assert_true(grew > (int)(TOTAL / CHUNK) / 2);
    assert_true(g_sizes[TOTAL / CHUNK - 1] > TOTAL / 2);
    assert_int_equal(g_peer.rx_len, TOTAL);
    assert_int_equal(g_peer.rx_bad, 0);
    run_to_end(loop);
    peer_close(&g_peer);
}

/* Custom limits: no pause at or below high, pause above it, resume at or below low;
   three full cycles, strictly alternating. */
typedef struct cyc {
    uint64_t written;
    int cycles;
    size_t high, low;
} cyc;

static void cyc_fill(conn *c) {
    cyc *k = c->ctx;
    unsigned char buf[4096];
    /* up to the mark exactly: no pause yet */
    while (APIZ(aiol_transport_get_write_buffer_size(c->t)) < k->high) {
        size_t room = k->high - APIZ(aiol_transport_get_write_buffer_size(c->t));
        size_t n = room < sizeof buf ? room : sizeof buf;
        fill_pattern(buf, k->written, n);
        CHECK(API(aiol_transport_write(c->t, buf, n)) == 0);
        k->written += n;
    }
    fill_pattern(buf, k->written, 1);
    CHECK(API(aiol_transport_write(c->t, buf, 1)) == 0);  /* now above high */
    k->written += 1;
}

static void cyc_made(conn *c) {
    cyc *k = c->ctx;
    CHECK(API(aiol_transport_set_write_buffer_limits(c->t, k->high, k->low)) == 0);
    cyc_fill(c);
}

static void cyc_pause(conn *c) {
    cyc *k = c->ctx;
    CHECK(APIZ(aiol_transport_get_write_buffer_size(c->t)) > k->high);
}

static void cyc_resume(conn *c) {
    cyc *k = c->ctx;
    CHECK(APIZ(aiol_transport_get_write_buffer_size(c->t)) <= k->low);
    if (++k->cycles < 3) {
        cyc_fill(c);
    } else {
        c->user_closed = 1;
        CHECK(API(aiol_transport_close(c->t)) == 0);
    }
}

static void flow_custom_limits_cycles(void **state) {
    aiol_loop *loop = LOOP(state);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 8192, 8192);
    conn c;
    conn_init(&c);
    cyc k = {0, 0, 300 * KiB, 100 * KiB};
    c.ctx = &k;
    c.on_made = cyc_made;
    c.on_pause = cyc_pause;
    c.on_resume = cyc_resume;
    peer p;
    peer_init(&p, loop, theirs);
    p.verify_pattern = 1;
    adopt(loop, ours, &c);
    RUN_UNTIL(loop, c.pauses == 1);
    peer_start_reading(&p);
    RUN_UNTIL(loop, c.destroyed && p.rx_eof);
    assert_int_equal(c.pauses, 3);
    assert_int_equal(c.resumes, 3);
    assert_int_equal(p.rx_len, k.written);
    assert_int_equal(p.rx_bad, 0);
    run_to_end(loop);
    peer_close(&p);
}

/* ---- EOF and half-close ---------------------------------------------------------------------- */

/* eof_received returning 0 closes: connection_lost(0), the peer sees our FIN. */
static void eof_received_0_closes(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    c.eof_ret = 0;
    adopt(loop, sv[0], &c);
    write_all(sv[1], "abc", 3);
    shutdown(sv[1], SHUT_WR);
    RUN_UNTIL(loop, c.destroyed);
    assert_int_equal(c.rx_len, 3);
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_status, 0);
    char b;
    assert_int_equal(recv(sv[1], &b, 1, 0), 0);
    run_to_end(loop);
    close(sv[1]);
}

/* eof_received returning nonzero keeps the transport open for writing: writes after EOF
   reach the peer; then close; eof_received ran exactly once. TCP and AF_UNIX. */
static void keep_open_write(conn *c) {
    CHECK(API(aiol_transport_write(c->t, "after-eof", 9)) == 0);
}
static void keep_open_write_close(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    conn *c = ud;
    CHECK(!g_in_api);
    CHECK(API(aiol_transport_is_closing(c->t)) == 0);
    CHECK(API(aiol_transport_write(c->t, "+more", 5)) == 0);
    c->user_closed = 1;
    CHECK(API(aiol_transport_close(c->t)) == 0);
}
static int keep_open_eof(conn *c) {
    keep_open_write(c);
    CHECK(aiol_loop_call_soon(aiol_transport_loop(c->t), keep_open_write_close, c, NULL,
                              NULL) == 0);
    return 1;
}

static void eof_keep_open_then_write(void **state) {
    aiol_loop *loop = LOOP(state);
    for (int tcp = 0; tcp < 2; tcp++) {
        int ours, theirs;
        if (tcp) {
            tcp_pair(&ours, &theirs, 0, 0);
        } else {
            int sv[2];
            unix_pair(sv);
            ours = sv[0];
            theirs = sv[1];
        }
        conn c;
        conn_init(&c);
        c.on_eof = keep_open_eof;
        adopt(loop, ours, &c);
        peer p;
        static unsigned char rx[64];
        peer_init(&p, loop, theirs);
        p.rx = rx;
        p.rx_cap = sizeof rx;
        write_all(theirs, "hello", 5);
        shutdown(theirs, SHUT_WR);
        peer_start_reading(&p);
        RUN_UNTIL(loop, c.destroyed && p.rx_eof);
        assert_int_equal(c.rx_len, 5);
        assert_int_equal(c.eofs, 1);
        assert_int_equal(c.lost_status, 0);
        assert_int_equal(p.rx_len, 14);
        assert_memory_equal(rx, "after-eof+more", 14);
        run_to_end(loop);
        peer_close(&p);
    }
}

/* write_eof: the peer reads EOF but can still send to us; then the peer's EOF arrives
   once and eof_received returning 0 closes. */
static void write_eof_peer_still_sends(void **state) {
    aiol_loop *loop = LOOP(state);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 0, 0);
    conn c;
    conn_init(&c);
    c.verify_pattern = 1;
    aiol_transport *t = adopt(loop, ours, &c);
    RUN_UNTIL(loop, c.made);
    assert_int_equal(API(aiol_transport_can_write_eof(t)), 1);
    assert_int_equal(API(aiol_transport_write(t, "bye", 3)), 0);
    assert_int_equal(API(aiol_transport_write_eof(t)), 0);
    assert_int_equal(API(aiol_transport_write_eof(t)), 0);  /* idempotent */
    assert_int_equal(API(aiol_transport_is_closing(t)), 0);
    assert_int_equal(API(aiol_transport_write(t, "x", 1)), AIOL_ESTATE);
    aiol_buf b = {"x", 1};
    assert_int_equal(API(aiol_transport_writev(t, &b, 1)), AIOL_ESTATE);
    peer p;
    static unsigned char rx[16];
    peer_init(&p, loop, theirs);
    p.rx = rx;
    p.rx_cap = sizeof rx;
    peer_start_reading(&p);
    RUN_UNTIL(loop, p.rx_eof);
    assert_int_equal(p.rx_len, 3);
    assert_memory_equal(rx, "bye", 3);
    /* half-closed from our side: the peer still sends, we still read */
    peer_send(&p, NULL, 300 * KiB, 1);
    RUN_UNTIL(loop, c.destroyed);
    assert_int_equal(c.rx_len, 300 * KiB);
    assert_int_equal(c.rx_bad, 0);
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.lost_status, 0);
    run_to_end(loop);
    peer_close(&p);
}

/* write_eof with data queued: the FIN goes only after the queue drained; the peer gets
   every byte, then EOF. */
static void write_eof_after_queue_drains(void **state) {
    aiol_loop *loop = LOOP(state);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 8192, 8192);
    conn c;
    conn_init(&c);
    c.eof_ret = 0;
    aiol_transport *t = adopt(loop, ours, &c);
    RUN_UNTIL(loop, c.made);
    unsigned char *data = malloc(2 * MiB);
    fill_pattern(data, 0, 2 * MiB);
    assert_int_equal(API(aiol_transport_write(t, data, 2 * MiB)), 0);
    free(data);
    assert_true(APIZ(aiol_transport_get_write_buffer_size(t)) > 0);
    assert_int_equal(API(aiol_transport_write_eof(t)), 0);
    assert_int_equal(API(aiol_transport_write(t, "x", 1)), AIOL_ESTATE);
    int sfd[2];
    assert_int_equal(pipe(sfd), 0);
    assert_int_equal(API(aiol_transport_sendfile(t, sfd[0], 0, 1, NULL, NULL)), AIOL_ESTATE);
    close(sfd[0]);
    close(sfd[1]);
    peer p;
    peer_init(&p, loop, theirs);
    p.verify_pattern = 1;
    peer_start_reading(&p);
    RUN_UNTIL(loop, p.rx_eof);
    assert_int_equal(p.rx_len, 2 * MiB);
    assert_int_equal(p.rx_bad, 0);
    assert_int_equal(c.lost, 0);
    /* then the peer closes its side: eof_received, returns 0, connection_lost(0) */
    shutdown(theirs, SHUT_WR);
    RUN_UNTIL(loop, c.destroyed);
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.lost_status, 0);
    run_to_end(loop);
    peer_close(&p);
}

/* ---- peers that vanish ----------------------------------------------------------------- */

static void assert_sigpipe_default(void) {
    struct sigaction sa;
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_DFL);
    sigset_t cur;
    assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &cur), 0);
    assert_false(sigismember(&cur, SIGPIPE));
}

static peer *g_rst_peer;
static void rst_now(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    conn *c = ud;
    CHECK(!g_in_api);
    peer_rst(g_rst_peer);
    /* a write racing with the reset: queued behind the rest, never a signal */
    CHECK(API(aiol_transport_write(c->t, "late", 4)) == 0);
}
static void rst_on_pause(conn *c) {
    CHECK(aiol_loop_call_soon(aiol_transport_loop(c->t), rst_now, c, NULL, NULL) == 0);
}
static void rst_made(conn *c) {
    unsigned char *buf = malloc(4 * MiB);
    fill_pattern(buf, 0, 4 * MiB);
    CHECK(API(aiol_transport_write(c->t, buf, 4 * MiB)) == 0);
    free(buf);
}

/* The peer resets (SO_LINGER {1, 0} + close) while 4 MiB are queued: connection_lost with
   -ECONNRESET or -EPIPE, and the process (SIGPIPE at its default) survives. */
static void peer_rst_mid_write(void **state) {
    aiol_loop *loop = LOOP(state);
    assert_sigpipe_default();
    int ours, theirs;
    tcp_pair(&ours, &theirs, 8192, 8192);
    conn c;
    conn_init(&c);
    c.on_made = rst_made;
    c.on_pause = rst_on_pause;
    peer p;
    peer_init(&p, loop, theirs);
    g_rst_peer = &p;
    adopt(loop, ours, &c);
    RUN_UNTIL(loop, c.destroyed);
    assert_int_equal(c.pauses, 1);
    assert_true(c.lost_status == AIOL_ECONNRESET || c.lost_status == AIOL_EPIPE);
    run_to_end(loop);
    assert_sigpipe_default();
}

/* A write straight into a socket whose peer is gone (nothing queued, so the transport
   sends at once): write returns 0, the error reaches connection_lost, no SIGPIPE. */
static void write_to_vanished_peer(void **state) {
    aiol_loop *loop = LOOP(state);
    assert_sigpipe_default();
    for (int tcp = 0; tcp < 2; tcp++) {
        int ours, theirs;
        if (tcp) {
            tcp_pair(&ours, &theirs, 0, 0);
        } else {
            int sv[2];
            unix_pair(sv);
            ours = sv[0];
            theirs = sv[1];
        }
        conn c;
        conn_init(&c);
        aiol_transport *t = adopt(loop, ours, &c);
        RUN_UNTIL(loop, c.made);
        close_with_rst(theirs);
        /* TCP: the first send after a RST may still succeed; keep writing until the
           transport notices (each write is accepted: 0) */
        int i;
        for (i = 0; i < 100 && !API(aiol_transport_is_closing(t)); i++)
            assert_int_equal(API(aiol_transport_write(t, "data", 4)), 0);
        assert_true(i < 100);
        RUN_UNTIL(loop, c.destroyed);
        assert_true(c.lost_status == AIOL_ECONNRESET || c.lost_status == AIOL_EPIPE);
        run_to_end(loop);
    }
    assert_sigpipe_default();
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        CASE(flow_control_4mib),
        CASE(flow_custom_limits_cycles),
        CASE(eof_received_0_closes),
        CASE(eof_keep_open_then_write),
        CASE(write_eof_peer_still_sends),
        CASE(write_eof_after_queue_drains),
        CASE(peer_rst_mid_write),
        CASE(write_to_vanished_peer),
    };
    return TEST_MAIN("test_transport_flow", tests);
}
