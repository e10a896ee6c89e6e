/* Socket transport basics: TCP_NODELAY, reads, writes and writev, limits, close / abort,
   calls after connection_lost, ref / unref, pause_reading. */
#include "tr_common.h"

/* ---- TCP_NODELAY ---------------------------------------------------------------------- */

static int nodelay_of(int fd) {
    int v = -1;
    socklen_t len = sizeof v;
    if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) < 0) return -errno;
    return v;
}

static int g_server_nodelay = -2;
static conn g_server_conn;

static int nodelay_factory(void *fd, const struct sockaddr *peer, socklen_t len, void **ud) {
    UNUSED(fd), UNUSED(peer), UNUSED(len);
    CHECK(!g_in_api);
    *ud = &g_server_conn;
    return 0;
}

static void nodelay_server_made(conn *c) {
    g_server_nodelay = nodelay_of(API(aiol_transport_fileno(c->t)));
    c->user_closed = 1;
    CHECK(API(aiol_transport_close(c->t)) == 0);
}

static void tcp_nodelay_set(void **state) {
    aiol_loop *loop = LOOP(state);
    /* adopted accepted end of a TCP pair */
    int ours, theirs;
    tcp_pair(&ours, &theirs, 0, 0);
    assert_int_equal(nodelay_of(theirs), 0); /* plain socket: off */
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, ours, &c);
    int fd = API(aiol_transport_fileno(t));
    assert_int_equal(fd, ours);
    assert_int_equal(nodelay_of(fd), 1);
    RUN_UNTIL(loop, c.made);
    assert_int_equal(conn_close(&c), 0);
    run_to_end(loop);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_status, 0);
    close(theirs);

    /* a connection accepted by aiol_server_start on port 0 */
    conn_init(&g_server_conn);
    g_server_conn.on_made = nodelay_server_made;
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    aiol_protocol p = conn_protocol();
    aiol_server *s = NULL;
    assert_int_equal(aiol_server_start(loop, &cfg, &p, nodelay_factory, NULL, NULL, &s), 0);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    assert_int_equal(aiol_server_sockname(s, 0, &ss, &sl), 0);
    int cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(cl, (struct sockaddr *)&ss, sl), 0);
    RUN_UNTIL(loop, g_server_conn.destroyed);
    assert_int_equal(g_server_nodelay, 1);
    assert_int_equal(aiol_server_free(s), 0);
    run_to_end(loop);
    close(cl);
}

/* ---- reads ---------------------------------------------------------------------------- */

/* 1 MiB already waiting in an AF_UNIX socket: four data_received of exactly 256 KiB, one
   per loop iteration (one recv per readiness), in order, then eof_received. */
static void reads_one_recv_per_readiness(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    int big = 8 << 20;
    if (setsockopt(sv[1], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0)
        set_bufs(sv[1], 0, big);
    unsigned char *data = malloc(MiB);
    fill_pattern(data, 0, MiB);
    write_all(sv[1], data, MiB);  /* fits in the forced send buffer: all queued now */
    free(data);
    shutdown(sv[1], SHUT_WR);

    conn c;
    conn_init(&c);
    c.verify_pattern = 1;
    adopt(loop, sv[0], &c);
    size_t sizes[16];
    int n = 0;
    while (c.lost == 0) {
        int before = c.data_calls;
        assert_true(aiol_loop_run(loop, AIOL_RUN_ONCE) >= 0);
        assert_true(c.data_calls - before <= 1);
        if (c.data_calls > before && n < 16) sizes[n++] = c.max_chunk;
        assert_true(n < 16);
    }
    assert_int_equal(c.data_calls, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(sizes[i], 256 * KiB);
    assert_int_equal(c.rx_len, MiB);
    assert_int_equal(c.rx_bad, 0);
    assert_int_equal(c.zero_len, 0);
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.lost_status, 0);  /* eof_received returned 0: closed */
    run_to_end(loop);
    assert_int_equal(c.destroyed, 1);
    close(sv[1]);
}

struct writer_arg {
    int fd;
    size_t len;
};

static void *writer_thread(void *arg) {
    struct writer_arg *w = arg;
    unsigned char *buf = malloc(100003);
    size_t off = 0;
    while (off < w->len) {
        size_t n = w->len - off < 100003 ? w->len - off : 100003;
        fill_pattern(buf, off, n);
        const unsigned char *q = buf;
        size_t left = n;
        while (left) {
            ssize_t k = send(w->fd, q, left, MSG_NOSIGNAL);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) goto out;
            q += k;
            left -= (size_t)k;
        }
        off += n;
    }
    shutdown(w->fd, SHUT_WR);
out:
    free(buf);
    return NULL;
}

/* 16 MiB streamed over TCP by a blocking writer thread: every byte in order, never len 0,
   never more than 256 KiB per call, at most one call per iteration. */
static void reads_tcp_stream_in_order(void **state) {
    aiol_loop *loop = LOOP(state);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 0, 0);
    conn c;
    conn_init(&c);
    c.verify_pattern = 1;
    adopt(loop, ours, &c);
    struct writer_arg w = {theirs, 16 * MiB};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_thread, &w), 0);
    while (c.lost == 0) {
        int before = c.data_calls;
        assert_true(aiol_loop_run(loop, AIOL_RUN_ONCE) >= 0);
        assert_true(c.data_calls - before <= 1);
    }
    pthread_join(th, NULL);
    assert_int_equal(c.rx_len, 16 * MiB);
    assert_int_equal(c.rx_bad, 0);
    assert_int_equal(c.zero_len, 0);
    assert_true(c.max_chunk <= 256 * KiB);
    assert_true(c.data_calls >= 64);
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.lost_status, 0);
    run_to_end(loop);
    close(theirs);
}

/* ---- writes ----------------------------------------------------------------------------- */

static void zero_length_write_is_noop(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, sv[0], &c);
    RUN_UNTIL(loop, c.made);
    char x = 'x';
    aiol_buf zero[3] = {{&x, 0}, {NULL, 0}, {&x, 0}};
    assert_int_equal(API(aiol_transport_write(t, &x, 0)), 0);
    assert_int_equal(API(aiol_transport_write(t, NULL, 0)), 0);
    assert_int_equal(API(aiol_transport_writev(t, NULL, 0)), 0);
    assert_int_equal(API(aiol_transport_writev(t, zero, 3)), 0);
    assert_int_equal(APIZ(aiol_transport_get_write_buffer_size(t)), 0);
    assert_int_equal(API(aiol_transport_write(t, NULL, 5)), AIOL_EINVAL);
    assert_int_equal(API(aiol_transport_writev(t, NULL, 2)), AIOL_EINVAL);
    aiol_buf bad[2] = {{&x, 1}, {NULL, 5}};
    assert_int_equal(API(aiol_transport_writev(t, bad, 2)), AIOL_EINVAL);
    assert_int_equal(API(aiol_transport_write(NULL, &x, 1)), AIOL_EINVAL);
    assert_int_equal(API(aiol_transport_writev(NULL, zero, 1)), AIOL_EINVAL);
    /* nothing was sent by any of those: the peer's first byte is the next write */
    char buf[8];
    assert_int_equal(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(API(aiol_transport_write(t, "y", 1)), 0);
    assert_int_equal(conn_close(&c), 0);
    run_to_end(loop);
    assert_int_equal(recv(sv[1], buf, sizeof buf, 0), 1);
    assert_int_equal(buf[0], 'y');
    assert_int_equal(recv(sv[1], buf, sizeof buf, 0), 0);
    assert_int_equal(c.lost_status, 0);
    close(sv[1]);
}

/* 1,000 buffers of varied sizes (some empty) in one writev: byte-exact at the peer. */
static size_t make_bufs(aiol_buf *bufs, size_t n, unsigned char *data, uint64_t off) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = (i % 17 == 5) ? 0 : (i * 7919) % 2039 + (i % 3 == 0 ? 1 : 100);
        fill_pattern(data + total, off + total, len);
        bufs[i].base = len ? data + total : NULL;
        bufs[i].len = len;
        total += len;
    }
    return total;
}

static void writev_1000_buffers(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, sv[0], &c);
    peer p;
    peer_init(&p, loop, sv[1]);
    p.verify_pattern = 1;
    peer_start_reading(&p);
    RUN_UNTIL(loop, c.made);
    static aiol_buf bufs[1000];
    unsigned char *data = malloc(1000 * 2200);
    size_t total = make_bufs(bufs, 1000, data, 0);
    assert_true(total > 500 * KiB);  /* more than the socket takes at once: some queued */
    assert_int_equal(API(aiol_transport_writev(t, bufs, 1000)), 0);
    free(data);  /* the transport copied what it queued */
    assert_true(APIZ(aiol_transport_get_write_buffer_size(t)) > 0);
    assert_int_equal(conn_close(&c), 0);
    RUN_UNTIL(loop, p.rx_eof);
    assert_int_equal(p.rx_len, total);
    assert_int_equal(p.rx_bad, 0);
    run_to_end(loop);
    assert_int_equal(c.lost_status, 0);
    peer_close(&p);
}

/* writev while data is already queued: it goes after the queue, byte-exact. */
static void writev_when_queued(void **state) {
    aiol_loop *loop = LOOP(state);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 16384, 16384);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, ours, &c);
    peer p;
    peer_init(&p, loop, theirs);
    p.verify_pattern = 1;
    RUN_UNTIL(loop, c.made);
    unsigned char *first = malloc(MiB);
    fill_pattern(first, 0, MiB);
    assert_int_equal(API(aiol_transport_write(t, first, MiB)), 0);
    free(first);
    size_t queued = APIZ(aiol_transport_get_write_buffer_size(t));
    assert_true(queued > 0);
    static aiol_buf bufs[1000];
    unsigned char *data = malloc(1000 * 2200);
    size_t total = make_bufs(bufs, 1000, data, MiB);
    assert_int_equal(API(aiol_transport_writev(t, bufs, 1000)), 0);
    free(data);
    assert_int_equal(APIZ(aiol_transport_get_write_buffer_size(t)), queued + total);
    assert_int_equal(conn_close(&c), 0);
    peer_start_reading(&p);
    RUN_UNTIL(loop, p.rx_eof);
    assert_int_equal(p.rx_len, MiB + total);
    assert_int_equal(p.rx_bad, 0);
    run_to_end(loop);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_status, 0);
    peer_close(&p);
}

/* ---- write buffer limits ------------------------------------------------------------------ */

static void write_buffer_limits(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, sv[0], &c);
    RUN_UNTIL(loop, c.made);
    size_t hi = 1, lo = 1;
    assert_int_equal(API(aiol_transport_get_write_buffer_limits(t, &hi, &lo)), 0);
    assert_int_equal(hi, 64 * KiB);
    assert_int_equal(lo, 16 * KiB);
    assert_int_equal(API(aiol_transport_set_write_buffer_limits(t, 1000, AIOL_WBUF_DEFAULT)), 0);
    assert_int_equal(API(aiol_transport_get_write_buffer_limits(t, &hi, &lo)), 0);
    assert_int_equal(hi, 1000);
    assert_int_equal(lo, 250);
    assert_int_equal(API(aiol_transport_set_write_buffer_limits(t, AIOL_WBUF_DEFAULT, 1000)), 0);
    assert_int_equal(API(aiol_transport_get_write_buffer_limits(t, &hi, &lo)), 0);
    assert_int_equal(hi, 4000);
    assert_int_equal(lo, 1000);
    assert_int_equal(API(aiol_transport_set_write_buffer_limits(t, 300, 200)), 0);
    assert_int_equal(API(aiol_transport_get_write_buffer_limits(t, &hi, &lo)), 0);
    assert_int_equal(hi, 300);
    assert_int_equal(lo, 200);
    /* high < low: refused, limits unchanged */
    assert_int_equal(API(aiol_transport_set_write_buffer_limits(t, 100, 200)), AIOL_EINVAL);
    assert_int_equal(API(aiol_transport_set_write_buffer_limits(t, AIOL_WBUF_DEFAULT, 100000)),
                     0); /* high = 4 x low */
    assert_int_equal(API(aiol_transport_set_write_buffer_limits(t, 10, AIOL_WBUF_DEFAULT - 1)),
                     AIOL_EINVAL);
    assert_int_equal(API(aiol_transport_get_write_buffer_limits(t, &hi, &lo)), 0);
    assert_int_equal(hi, 400000);
    assert_int_equal(lo, 100000);
    assert_int_equal(API(aiol_transport_set_write_buffer_limits(t, 0, 0)), 0);
    assert_int_equal(API(aiol_transport_get_write_buffer_limits(t, &hi, &lo)), 0);
    assert_int_equal(hi, 0);
    assert_int_equal(lo, 0);
    assert_int_equal(API(aiol_transport_set_write_buffer_limits(t, AIOL_WBUF_DEFAULT,
                                                                AIOL_WBUF_DEFAULT)), 0);
    assert_int_equal(API(aiol_transport_get_write_buffer_limits(t, &hi, &lo)), 0);
    assert_int_equal(hi, 64 * KiB);
    assert_int_equal(lo, 16 * KiB);
    assert_int_equal(API(aiol_transport_set_write_buffer_limits(NULL, 1, 1)), AIOL_EINVAL);
    assert_int_equal(API(aiol_transport_get_write_buffer_limits(NULL, &hi, &lo)), AIOL_EINVAL);
    assert_int_equal(API(aiol_transport_get_write_buffer_limits(t, NULL, &lo)), AIOL_EINVAL);
    assert_int_equal(conn_close(&c), 0);
    run_to_end(loop);
    assert_int_equal(c.made, 1);
    assert_int_equal(c.pauses, 0);
    close(sv[1]);
}

/* ---- close and abort ---------------------------------------------------------------------- */

/* abort with data queued: the queue is dropped, connection_lost(AIOL_ECANCELED); the peer
   gets only a prefix of what was written, then EOF. */
static void abort_drops_queue(void **state) {
    aiol_loop *loop = LOOP(state);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 16384, 16384);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, ours, &c);
    RUN_UNTIL(loop, c.made);
    unsigned char *data = malloc(4 * MiB);
    fill_pattern(data, 0, 4 * MiB);
    assert_int_equal(API(aiol_transport_write(t, data, 4 * MiB)), 0);
    free(data);
    size_t queued = APIZ(aiol_transport_get_write_buffer_size(t));
    assert_true(queued > 0);
    assert_int_equal(conn_abort(&c), 0);
    assert_int_equal(API(aiol_transport_is_closing(t)), 1);
    assert_int_equal(APIZ(aiol_transport_get_write_buffer_size(t)), 0);
    assert_int_equal(API(aiol_transport_write(t, "x", 1)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_transport_abort(t)), 0);  /* again: no second connection_lost */
    assert_int_equal(API(aiol_transport_close(t)), 0);
    peer p;
    peer_init(&p, loop, theirs);
    p.verify_pattern = 1;
    peer_start_reading(&p);
    RUN_UNTIL(loop, c.destroyed && (p.rx_eof || p.rx_err));
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_status, AIOL_ECANCELED);
    assert_int_equal(p.rx_bad, 0);
    assert_true(p.rx_len <= 4 * MiB - queued);
    run_to_end(loop);
    peer_close(&p);
}

/* close with data queued: everything is flushed, then connection_lost(0); the peer gets
   every byte and then EOF. close is idempotent. */
static void close_flushes_queue(void **state) {
    aiol_loop *loop = LOOP(state);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 16384, 16384);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, ours, &c);
    RUN_UNTIL(loop, c.made);
    unsigned char *data = malloc(4 * MiB);
    fill_pattern(data, 0, 4 * MiB);
    assert_int_equal(API(aiol_transport_write(t, data, 4 * MiB)), 0);
    free(data);
    assert_true(APIZ(aiol_transport_get_write_buffer_size(t)) > 0);
    assert_int_equal(conn_close(&c), 0);
    assert_int_equal(API(aiol_transport_close(t)), 0);
    assert_int_equal(API(aiol_transport_is_closing(t)), 1);
    assert_int_equal(API(aiol_transport_is_reading(t)), 0);
    assert_int_equal(API(aiol_transport_write(t, "x", 1)), AIOL_ECLOSED);
    /* nothing is lost while the queue drains */
    for (int i = 0; i < 5; i++) assert_true(aiol_loop_run(loop, AIOL_RUN_NOWAIT) >= 0);
    assert_int_equal(c.lost, 0);
    assert_int_equal(API(aiol_transport_close(t)), 0);
    peer p;
    peer_init(&p, loop, theirs);
    p.verify_pattern = 1;
    peer_start_reading(&p);
    RUN_UNTIL(loop, c.destroyed && p.rx_eof);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_status, 0);
    assert_int_equal(p.rx_len, 4 * MiB);
    assert_int_equal(p.rx_bad, 0);
    run_to_end(loop);
    peer_close(&p);
}

/* After connection_lost every call but ref, unref and the address getters is
   AIOL_ECLOSED; pure getters give 0. */
static void lost_check_calls(conn *c, int status) {
    UNUSED(status);
    aiol_transport *t = c->t;
    /* still inside connection_lost */
    CHECK(API(aiol_transport_close(t)) == AIOL_ECLOSED);
    CHECK(API(aiol_transport_abort(t)) == AIOL_ECLOSED);
    CHECK(API(aiol_transport_write(t, "x", 1)) == AIOL_ECLOSED);
}

static void calls_after_lost_are_eclosed(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    c.on_lost = lost_check_calls;
    aiol_transport *t = adopt(loop, sv[0], &c);
    assert_int_equal(API(aiol_transport_ref(t)), 0);
    RUN_UNTIL(loop, c.made);
    assert_int_equal(conn_close(&c), 0);
    RUN_UNTIL(loop, c.destroyed);
    aiol_buf b = {"x", 1};
    size_t hi, lo;
    assert_int_equal(API(aiol_transport_write(t, "x", 1)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_transport_writev(t, &b, 1)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_transport_write_eof(t)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_transport_close(t)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_transport_abort(t)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_transport_pause_reading(t)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_transport_resume_reading(t)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_transport_set_write_buffer_limits(t, 10, 1)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_transport_fileno(t)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_transport_sendfile(t, sv[1], 0, 1, NULL, NULL)), AIOL_ECLOSED);
    aiol_protocol p = conn_protocol();
    assert_int_equal(API(aiol_transport_set_protocol(t, &p, &c)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_transport_is_reading(t)), 0);
    assert_int_equal(API(aiol_transport_is_closing(t)), 1);
    assert_int_equal(API(aiol_transport_can_write_eof(t)), 0);
    assert_int_equal(APIZ(aiol_transport_get_write_buffer_size(t)), 0);
    assert_int_equal(API(aiol_transport_get_write_buffer_limits(t, &hi, &lo)), AIOL_ECLOSED);
    assert_null(aiol_transport_get_protocol_data(t));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    assert_int_equal(API(aiol_transport_sockname(t, &ss, &sl)), 0);
    assert_int_equal(ss.ss_family, AF_UNIX);
    sl = sizeof ss;
    assert_int_equal(API(aiol_transport_peername(t, &ss, &sl)), 0);
    assert_int_equal(API(aiol_transport_ref(t)), 0);
    assert_int_equal(API(aiol_transport_unref(t)), 0);
    assert_int_equal(API(aiol_transport_unref(t)), 0);  /* the last one: freed */
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.destroyed, 1);
    close(sv[1]);
}

/* get_write_buffer_limits is a call that is not ref, unref or an address getter: the
   API.md rule gives AIOL_ECLOSED after connection_lost. */
static void get_limits_after_lost_is_eclosed(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, sv[0], &c);
    assert_int_equal(API(aiol_transport_ref(t)), 0);
    RUN_UNTIL(loop, c.made);
    assert_int_equal(conn_close(&c), 0);
    RUN_UNTIL(loop, c.destroyed);
    size_t hi = 0, lo = 0;
    int rc = API(aiol_transport_get_write_buffer_limits(t, &hi, &lo));
    assert_int_equal(API(aiol_transport_unref(t)), 0);
    close(sv[1]);
    assert_int_equal(rc, AIOL_ECLOSED);
}

/* ref keeps the memory past connection_lost and past aiol_loop_free. */
static void ref_outlives_lost_and_loop(void **state) {
    fixture *f = (fixture *)*state;
    aiol_loop *loop = f->loop;
    int ours, theirs;
    tcp_pair(&ours, &theirs, 0, 0);
    struct sockaddr_storage want;
    socklen_t wl = sizeof want;
    assert_int_equal(getsockname(theirs, (struct sockaddr *)&want, &wl), 0);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, ours, &c);
    assert_int_equal(API(aiol_transport_ref(t)), 0);
    RUN_UNTIL(loop, c.made);
    assert_ptr_equal(aiol_transport_loop(t), loop);
    close(theirs); /* the peer goes: EOF, eof_received returns 0, connection_lost(0) */
    run_to_end(loop);  /* a transport kept only by our ref does not keep the loop alive */
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_status, 0);
    assert_int_equal(c.destroyed, 1);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    assert_int_equal(API(aiol_transport_peername(t, &ss, &sl)), 0);
    assert_int_equal(sl, wl);
    assert_memory_equal(&ss, &want, wl);
    assert_int_equal(API(aiol_transport_write(t, "x", 1)), AIOL_ECLOSED);
    assert_null(aiol_transport_loop(t));
    assert_int_equal(aiol_loop_free(loop), 0);
    f->loop = NULL;
    /* still readable after the loop is gone */
    sl = sizeof ss;
    assert_int_equal(API(aiol_transport_peername(t, &ss, &sl)), 0);
    assert_memory_equal(&ss, &want, wl);
    sl = sizeof ss;
    assert_int_equal(API(aiol_transport_sockname(t, &ss, &sl)), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(API(aiol_transport_write(t, "x", 1)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_transport_close(t)), AIOL_ECLOSED);
    assert_null(aiol_transport_loop(t));
    assert_null(aiol_transport_get_protocol_data(t)); /* destroyed after connection_lost */
    assert_int_equal(API(aiol_transport_unref(t)), 0);
}

/* ---- pause_reading / resume_reading -------------------------------------------------------- */

static void pause_on_made(conn *c) {
    CHECK(API(aiol_transport_is_reading(c->t)) == 1);
    CHECK(API(aiol_transport_pause_reading(c->t)) == 0);
    c->user_paused = 1;
    CHECK(API(aiol_transport_is_reading(c->t)) == 0);
    CHECK(API(aiol_transport_pause_reading(c->t)) == 0);  /* idempotent */
}

static void pause_resume_reading(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    c.verify_pattern = 1;
    c.on_made = pause_on_made;
    aiol_transport *t = adopt(loop, sv[0], &c);
    RUN_UNTIL(loop, c.made);
    /* the peer sends while we are paused (all of it is in our socket now) */
    unsigned char data[100000];
    fill_pattern(data, 0, sizeof data);
    write_all(sv[1], data, sizeof data);
    for (int i = 0; i < 20; i++) assert_true(aiol_loop_run(loop, AIOL_RUN_NOWAIT) >= 0);
    assert_int_equal(c.data_calls, 0);
    assert_int_equal(API(aiol_transport_is_reading(t)), 0);
    c.user_paused = 0;
    assert_int_equal(API(aiol_transport_resume_reading(t)), 0);
    assert_int_equal(API(aiol_transport_is_reading(t)), 1);
    assert_int_equal(API(aiol_transport_resume_reading(t)), 0);  /* idempotent */
    RUN_UNTIL(loop, c.rx_len == sizeof data);
    assert_int_equal(c.rx_bad, 0);
    /* paused again: EOF is held back too */
    assert_int_equal(API(aiol_transport_pause_reading(t)), 0);
    c.user_paused = 1;
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 20; i++) assert_true(aiol_loop_run(loop, AIOL_RUN_NOWAIT) >= 0);
    assert_int_equal(c.eofs, 0);
    c.user_paused = 0;
    assert_int_equal(API(aiol_transport_resume_reading(t)), 0);
    RUN_UNTIL(loop, c.destroyed);
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.lost_status, 0);
    run_to_end(loop);
    close(sv[1]);
}

/* ---- no callback inside an API call -------------------------------------------------------- */

static void *g_old_destroyed;
static void old_destroy(void *ud) {
    CHECK(!g_in_api);
    g_old_destroyed = ud;
}

/* Everything that makes the transport call back (writes over the high-water mark, close,
   set_protocol's destroy of the old user_data, write_eof, abort) is done from the test body
   outside aiol_loop_run: the callbacks come later, inside run, never inside the call. */
static void callbacks_never_inside_api(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    aiol_protocol p0 = conn_protocol();
    p0.destroy = old_destroy;
    aiol_transport *t = NULL;
    assert_int_equal(API(aiol_transport_adopt(loop, sv[0], &p0, &c, &t)), 0);
    c.t = t;
    assert_int_equal(c.made, 0);  /* connection_made comes from the loop */
    RUN_UNTIL(loop, c.made);
    /* same user_data, another destroy: the old destroy runs later, from the loop */
    aiol_protocol p = conn_protocol();
    assert_int_equal(API(aiol_transport_set_protocol(t, &p, &c)), 0);
    assert_null(g_old_destroyed);
    assert_true(aiol_loop_run(loop, AIOL_RUN_NOWAIT) >= 0);
    assert_ptr_equal(g_old_destroyed, &c);
    unsigned char *data = malloc(2 * MiB);
    fill_pattern(data, 0, 2 * MiB);
    assert_int_equal(API(aiol_transport_write(t, data, 2 * MiB)), 0);
    assert_int_equal(c.pauses, 0); /* not inside write */
    assert_int_equal(API(aiol_transport_set_write_buffer_limits(t, 1, 0)), 0);
    assert_int_equal(c.pauses, 0);
    assert_int_equal(API(aiol_transport_pause_reading(t)), 0);
    assert_int_equal(API(aiol_transport_resume_reading(t)), 0);
    assert_int_equal(API(aiol_transport_write_eof(t)), 0);
    assert_int_equal(c.pauses, 0);
    assert_true(aiol_loop_run(loop, AIOL_RUN_NOWAIT) >= 0);
    assert_int_equal(c.pauses, 1);  /* delivered by the loop */
    peer p2;
    peer_init(&p2, loop, sv[1]);
    p2.verify_pattern = 1;
    peer_start_reading(&p2);
    RUN_UNTIL(loop, p2.rx_eof);
    assert_int_equal(p2.rx_len, 2 * MiB);
    assert_int_equal(p2.rx_bad, 0);
    assert_int_equal(c.resumes, 1);
    free(data);
    assert_int_equal(conn_abort(&c), 0);
    assert_int_equal(c.lost, 0);
    run_to_end(loop);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_status, AIOL_ECANCELED);
    assert_int_equal(c.destroyed, 1);
    peer_close(&p2);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        CASE(tcp_nodelay_set),
        CASE(reads_one_recv_per_readiness),
        CASE(reads_tcp_stream_in_order),
        CASE(zero_length_write_is_noop),
        CASE(writev_1000_buffers),
        CASE(writev_when_queued),
        CASE(write_buffer_limits),
        CASE(abort_drops_queue),
        CASE(close_flushes_queue),
        CASE(calls_after_lost_are_eclosed),
        CASE(get_limits_after_lost_is_eclosed),
        CASE(ref_outlives_lost_and_loop),
        CASE(pause_resume_reading),
        CASE(callbacks_never_inside_api),
    };
    return TEST_MAIN("test_transport_basic", tests);
}
