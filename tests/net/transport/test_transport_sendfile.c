/* aiol_transport_sendfile: sendfile(2), ranges, the read + send fallback, EBUSY and paused
   reading while it runs, and every way it can end early. */
#include <sys/sendfile.h>

#include "tr_common.h"

#define BIG (32 * MiB)

/* A file of `size` pseudo-random bytes (xorshift64*) in a fresh temporary directory; the
   name and the directory are removed at once, the fd stays open. */
static int make_file(size_t size) {
    char dir[] = "/tmp/aiol-sendfile-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/data", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    size_t chunk = MiB;
    uint64_t *buf = malloc(chunk);
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        for (size_t i = 0; i < chunk / 8; i++) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            buf[i] = x * 0x2545F4914F6CDD1Dull;
        }
        assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
    }
    free(buf);
    return fd;
}

/* FNV-1a of the file's bytes [off, off + len) */
static uint64_t file_hash(int fd, uint64_t h, uint64_t off, size_t len) {
    unsigned char *buf = malloc(MiB);
    while (len) {
        size_t n = len < MiB ? len : MiB;
        ssize_t r = pread(fd, buf, n, (off_t)off);
        assert_true(r > 0);
        h = fnv(h, buf, (size_t)r);
        off += (uint64_t)r;
        len -= (size_t)r;
    }
    free(buf);
    return h;
}

typedef struct sf {
    conn *c;
    int done;
    int status;
    uint64_t sent;
    int lost_at_done;
    int done_in_api;
} sf;

static void sf_done(aiol_transport *t, int status, uint64_t sent, void *ud) {
    sf *s = ud;
    if (g_in_api) s->done_in_api++;
    CHECK(s->done == 0);
    CHECK(t == s->c->t);
    CHECK(s->c->lost == 0); /* done runs before connection_lost */
    s->done++;
    s->status = status;
    s->sent = sent;
}

static int g_sending; /* set while a sendfile is in flight: no data_received then */
static void sf_data(conn *c, const void *d, size_t n) {
    UNUSED(c), UNUSED(d), UNUSED(n);
    CHECK(!g_sending);
}

static void sf_done_flag(aiol_transport *t, int status, uint64_t sent, void *ud) {
    sf_done(t, status, sent, ud);
    g_sending = 0;
}

/* 32 MiB: done(t, 0, 33554432) after every byte went out, verified by hash; writes,
   write_eof and a second sendfile give AIOL_EBUSY while it runs; reading is paused (data
   the peer sends meanwhile arrives after done). */
static void sendfile_32mib(void **state) {
    aiol_loop *loop = LOOP(state);
    int file = make_file(BIG);
    uint64_t want = file_hash(file, FNV_INIT, 0, BIG);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 0, 0);
    conn c;
    conn_init(&c);
    c.verify_pattern = 1;
    c.on_data = sf_data;
    aiol_transport *t = adopt(loop, ours, &c);
    peer p;
    peer_init(&p, loop, theirs);
    RUN_UNTIL(loop, c.made);
    sf s = {&c};
    g_sending = 1;
    assert_int_equal(API(aiol_transport_sendfile(t, file, 0, 0, sf_done_flag, &s)), 0);
    assert_int_equal(s.done, 0); /* never inside the call */
    /* while it runs */
    aiol_buf b = {"x", 1};
    assert_int_equal(API(aiol_transport_write(t, "x", 1)), AIOL_EBUSY);
    assert_int_equal(API(aiol_transport_writev(t, &b, 1)), AIOL_EBUSY);
    assert_int_equal(API(aiol_transport_write_eof(t)), AIOL_EBUSY);
    assert_int_equal(API(aiol_transport_sendfile(t, file, 0, 0, sf_done, &s)), AIOL_EBUSY);
    assert_int_equal(API(aiol_transport_is_reading(t)), 0);
    unsigned char hello[1000];
    fill_pattern(hello, 0, sizeof hello);
    write_all(theirs, hello, sizeof hello); /* held back until done */
    peer_start_reading(&p);
    RUN_UNTIL(loop, s.done);
    assert_int_equal(s.done_in_api, 0);
    assert_int_equal(s.status, 0);
    assert_int_equal(s.sent, BIG);
    assert_int_equal(API(aiol_transport_is_reading(t)), 1);
    RUN_UNTIL(loop, p.rx_len == BIG && c.rx_len == sizeof hello);
    assert_int_equal(p.rx_hash, want);
    assert_int_equal(c.rx_bad, 0);
    /* writes work again */
    assert_int_equal(API(aiol_transport_write(t, "end", 3)), 0);
    assert_int_equal(conn_close(&c), 0);
    RUN_UNTIL(loop, c.destroyed && p.rx_eof);
    assert_int_equal(p.rx_len, BIG + 3);
    assert_int_equal(c.lost_status, 0);
    run_to_end(loop);
    peer_close(&p);
    close(file);
}

/* offset + count ranges, one after another (the next started from done): count 0 means
   to the end; a count past the end sends what is there. */
typedef struct range {
    uint64_t off, count, expect;
} range;
static range g_ranges[6];
static int g_range_i, g_range_n, g_range_file;
static uint64_t g_range_status_bad;

static void range_done(aiol_transport *t, int status, uint64_t sent, void *ud) {
    UNUSED(ud);
    CHECK(!g_in_api);
    if (status != 0 || sent != g_ranges[g_range_i].expect) g_range_status_bad++;
    if (++g_range_i < g_range_n) {
        CHECK(API(aiol_transport_sendfile(t, g_range_file, g_ranges[g_range_i].off,
                                      g_ranges[g_range_i].count, range_done, NULL)) == 0);
    } else {
        CHECK(API(aiol_transport_close(t)) == 0);
    }
}

static void sendfile_ranges(void **state) {
    aiol_loop *loop = LOOP(state);
    size_t size = 3 * MiB + 777;
    int file = make_file(size);
    range r[] = {
        {0, 1, 1},
        {12345, 100000, 100000},
        {MiB, 2 * MiB, 2 * MiB},
        {size - 10, 0, 10},
        {size - 10, 100, 10},
        {size, 0, 0},
    };
    memcpy(g_ranges, r, sizeof r);
    g_range_n = 6;
    g_range_i = 0;
    g_range_file = file;
    g_range_status_bad = 0;
    uint64_t want = FNV_INIT;
    for (int i = 0; i < 6; i++) want = file_hash(file, want, r[i].off, r[i].expect);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, sv[0], &c);
    peer p;
    peer_init(&p, loop, sv[1]);
    peer_start_reading(&p);
    RUN_UNTIL(loop, c.made);
    assert_int_equal(API(aiol_transport_sendfile(t, file, r[0].off, r[0].count, range_done,
                                                 NULL)), 0);
    c.user_closed = 1;
    RUN_UNTIL(loop, c.destroyed && p.rx_eof);
    assert_int_equal(g_range_i, 6);
    assert_int_equal(g_range_status_bad, 0);
    assert_int_equal(p.rx_len, 1 + 100000 + 2 * MiB + 10 + 10);
    assert_int_equal(p.rx_hash, want);
    assert_int_equal(c.lost_status, 0);
    /* argument checks */
    run_to_end(loop);
    peer_close(&p);
    close(file);
}

static void sendfile_bad_args(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, sv[0], &c);
    RUN_UNTIL(loop, c.made);
    assert_int_equal(API(aiol_transport_sendfile(NULL, 0, 0, 0, NULL, NULL)), AIOL_EINVAL);
    assert_int_equal(API(aiol_transport_sendfile(t, -1, 0, 0, NULL, NULL)), AIOL_EBADF);
    assert_int_equal(API(aiol_transport_sendfile(t, 0, (uint64_t)INT64_MAX + 1, 0, NULL, NULL)),
                     AIOL_EINVAL);
    assert_int_equal(API(aiol_transport_write(t, "ok", 2)), 0); /* nothing started */
    assert_int_equal(conn_close(&c), 0);
    run_to_end(loop);
    char b[4];
    assert_int_equal(recv(sv[1], b, sizeof b, 0), 2);
    close(sv[1]);
}

/* Data queued by write goes first, then the file, then what done writes. */
static sf g_tail_sf;
static void tail_done(aiol_transport *t, int status, uint64_t sent, void *ud) {
    sf_done(t, status, sent, ud);
    unsigned char tail[5000];
    fill_pattern(tail, 0, sizeof tail);
    CHECK(API(aiol_transport_write(t, tail, sizeof tail)) == 0);
    g_tail_sf.c->user_closed = 1;
    CHECK(API(aiol_transport_close(t)) == 0);
}

static void sendfile_after_queued_write(void **state) {
    aiol_loop *loop = LOOP(state);
    size_t fsize = 4 * MiB;
    int file = make_file(fsize);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 8192, 8192);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, ours, &c);
    peer p;
    peer_init(&p, loop, theirs);
    RUN_UNTIL(loop, c.made);
    unsigned char *head = malloc(MiB);
    fill_pattern(head, 0, MiB);
    assert_int_equal(API(aiol_transport_write(t, head, MiB)), 0);
    assert_true(APIZ(aiol_transport_get_write_buffer_size(t)) > 0);
    memset(&g_tail_sf, 0, sizeof g_tail_sf);
    g_tail_sf.c = &c;
    assert_int_equal(API(aiol_transport_sendfile(t, file, 0, 0, tail_done, &g_tail_sf)), 0);
    peer_start_reading(&p);
    RUN_UNTIL(loop, c.destroyed && p.rx_eof);
    unsigned char tail[5000];
    fill_pattern(tail, 0, sizeof tail);
    uint64_t want = file_hash(file, fnv(FNV_INIT, head, MiB), 0, fsize);
    want = fnv(want, tail, sizeof tail);
    free(head);
    assert_int_equal(g_tail_sf.done, 1);
    assert_int_equal(g_tail_sf.status, 0);
    assert_int_equal(g_tail_sf.sent, fsize);
    assert_int_equal(p.rx_len, MiB + fsize + 5000);
    assert_int_equal(p.rx_hash, want);
    assert_int_equal(c.lost_status, 0);
    run_to_end(loop);
    peer_close(&p);
    close(file);
}

/* Files sendfile(2) refuses go through read + send: a /proc file (EINVAL) and the read
   end of a pipe (ESPIPE). */
static void fallback_one(aiol_loop *loop, int fd, const unsigned char *want, size_t len,
                         uint64_t off, uint64_t count) {
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, sv[0], &c);
    peer p;
    static unsigned char rx[256 * 1024];
    peer_init(&p, loop, sv[1]);
    p.rx = rx;
    p.rx_cap = sizeof rx;
    peer_start_reading(&p);
    RUN_UNTIL(loop, c.made);
    sf s = {&c};
    assert_int_equal(API(aiol_transport_sendfile(t, fd, off, count, sf_done, &s)), 0);
    RUN_UNTIL(loop, s.done || c.lost);
    assert_int_equal(s.done, 1);
    assert_int_equal(s.status, 0);
    assert_int_equal(s.sent, len);
    assert_int_equal(c.lost, 0);
    assert_int_equal(conn_close(&c), 0);
    RUN_UNTIL(loop, c.destroyed && p.rx_eof);
    assert_int_equal(p.rx_len, len);
    assert_memory_equal(rx, want, len);
    assert_int_equal(c.lost_status, 0);
    run_to_end(loop);
    peer_close(&p);
}

static void sendfile_fallback_proc_file(void **state) {
    aiol_loop *loop = LOOP(state);
    int fd = open("/proc/self/limits", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    unsigned char want[16384];
    ssize_t n = pread(fd, want, sizeof want, 0);
    assert_true(n > 100);
    /* sendfile(2) refuses it: the case this test is about */
    int sv[2];
    unix_pair(sv);
    off_t o = 0;
    assert_int_equal(sendfile(sv[0], fd, &o, 10), -1);
    assert_int_equal(errno, EINVAL);
    close(sv[0]);
    close(sv[1]);
    fallback_one(loop, fd, want, (size_t)n, 0, 0);
    fallback_one(loop, fd, want + 10, 50, 10, 50); /* a range */
    close(fd);
}

static void sendfile_fallback_pipe(void **state) {
    aiol_loop *loop = LOOP(state);
    static unsigned char want[60000];
    fill_pattern(want, 0, sizeof want);
    int pp[2];
    assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
    {
        size_t off = 0;
        while (off < sizeof want) {
            ssize_t k = write(pp[1], want + off, sizeof want - off);
            assert_true(k > 0);
            off += (size_t)k;
        }
    }
    close(pp[1]);
    fallback_one(loop, pp[0], want, sizeof want, 0, 0);
    close(pp[0]);
    /* count: only that much is taken */
    assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
    assert_int_equal(write(pp[1], want, 1000), 1000);
    close(pp[1]);
    fallback_one(loop, pp[0], want, 300, 0, 300);
    close(pp[0]);
}

/* The peer resets mid-transfer (SIGPIPE at its default disposition): done gets the
   error, then connection_lost gets it; the process survives. */
static void assert_sigpipe_default(void) {
    struct sigaction sa;
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_DFL);
    sigset_t cur;
    assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &cur), 0);
    assert_false(sigismember(&cur, SIGPIPE));
}

static peer *g_reset_peer;
static void reset_after_some(peer *p) {
    if (p->rx_len >= 256 * KiB && p->fd >= 0) peer_rst(p);
}

static void sendfile_peer_reset(void **state) {
    aiol_loop *loop = LOOP(state);
    assert_sigpipe_default();
    int file = make_file(BIG);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 16384, 16384);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, ours, &c);
    peer p;
    peer_init(&p, loop, theirs);
    p.read_chunk = 16384;
    p.on_rx = reset_after_some;
    g_reset_peer = &p;
    RUN_UNTIL(loop, c.made);
    sf s = {&c};
    assert_int_equal(API(aiol_transport_sendfile(t, file, 0, 0, sf_done, &s)), 0);
    peer_start_reading(&p);
    RUN_UNTIL(loop, c.destroyed);
    assert_int_equal(s.done, 1);
    assert_true(s.status == AIOL_ECONNRESET || s.status == AIOL_EPIPE);
    assert_true(s.sent < BIG);
    assert_true(c.lost_status == AIOL_ECONNRESET || c.lost_status == AIOL_EPIPE);
    run_to_end(loop);
    assert_sigpipe_default();
    close(file);
}

/* close while a sendfile is pending: the write queue is flushed, the sendfile cancelled
   (done(AIOL_ECANCELED) before connection_lost(0)); the peer gets exactly what was sent,
   then EOF. With and without data queued before the sendfile. */
static void sendfile_close_during(void **state) {
    aiol_loop *loop = LOOP(state);
    size_t fsize = 8 * MiB;
    int file = make_file(fsize);
    for (int queued = 0; queued < 2; queued++) {
        int ours, theirs;
        tcp_pair(&ours, &theirs, 16384, 16384);
        conn c;
        conn_init(&c);
        aiol_transport *t = adopt(loop, ours, &c);
        peer p;
        peer_init(&p, loop, theirs);
        RUN_UNTIL(loop, c.made);
        uint64_t want = FNV_INIT;
        size_t head_len = queued ? MiB : 0;
        if (queued) {
            unsigned char *head = malloc(head_len);
            fill_pattern(head, 0, head_len);
            assert_int_equal(API(aiol_transport_write(t, head, head_len)), 0);
            want = fnv(want, head, head_len);
            free(head);
        }
        sf s = {&c};
        assert_int_equal(API(aiol_transport_sendfile(t, file, 0, 0, sf_done, &s)), 0);
        assert_int_equal(conn_close(&c), 0);
        assert_int_equal(API(aiol_transport_is_closing(t)), 1);
        peer_start_reading(&p);
        RUN_UNTIL(loop, c.destroyed && p.rx_eof);
        /* API.md: closing first cancels the sendfile: done(AIOL_ECANCELED, bytes so far)
           runs before connection_lost, which is clean (the queued data was flushed). */
        assert_int_equal(s.done, 1);
        assert_int_equal(s.status, AIOL_ECANCELED);
        assert_true(s.sent < fsize);
        want = file_hash(file, want, 0, s.sent);
        assert_int_equal(c.lost_status, 0);
        assert_int_equal(p.rx_len, head_len + s.sent);
        assert_int_equal(p.rx_hash, want);
        run_to_end(loop);
        peer_close(&p);
    }
    close(file);
}

/* abort during sendfile: done(AIOL_ECANCELED, what went so far) before
   connection_lost(AIOL_ECANCELED). */
static conn *g_abort_conn;
static void abort_after_some(peer *p) {
    if (p->rx_len >= MiB && !g_abort_conn->user_closed) {
        CHECK(conn_abort(g_abort_conn) == 0);
    }
}

static void sendfile_abort_during(void **state) {
    aiol_loop *loop = LOOP(state);
    int file = make_file(BIG);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 16384, 16384);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, ours, &c);
    g_abort_conn = &c;
    peer p;
    peer_init(&p, loop, theirs);
    p.read_chunk = 16384;
    p.on_rx = abort_after_some;
    RUN_UNTIL(loop, c.made);
    sf s = {&c};
    assert_int_equal(API(aiol_transport_sendfile(t, file, 0, 0, sf_done, &s)), 0);
    peer_start_reading(&p);
    RUN_UNTIL(loop, c.destroyed && (p.rx_eof || p.rx_err));
    assert_int_equal(s.done, 1);
    assert_int_equal(s.status, AIOL_ECANCELED);
    assert_true(s.sent >= MiB && s.sent < BIG);
    assert_true(p.rx_len <= s.sent);
    assert_int_equal(c.lost_status, AIOL_ECANCELED);
    run_to_end(loop);
    peer_close(&p);
    close(file);
}

/* aiol_loop_close during sendfile: done(AIOL_ECANCELED) then connection_lost, inside
   close. */
static void sendfile_loop_close(void **state) {
    aiol_loop *loop = LOOP(state);
    int file = make_file(BIG);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 16384, 16384);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, ours, &c);
    RUN_UNTIL(loop, c.made);
    sf s = {&c};
    assert_int_equal(API(aiol_transport_sendfile(t, file, 0, 0, sf_done, &s)), 0);
    for (int i = 0; i < 5; i++) assert_true(aiol_loop_run(loop, AIOL_RUN_NOWAIT) >= 0);
    assert_int_equal(s.done, 0); /* the peer does not read: it cannot finish */
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(s.done, 1);
    assert_int_equal(s.status, AIOL_ECANCELED);
    assert_true(s.sent < BIG);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.lost_status, AIOL_ECANCELED);
    assert_int_equal(c.destroyed, 1);
    close(theirs);
    close(file);
}

/* pause_reading while a sendfile runs is kept after done: reading comes back only with
   resume_reading. */
static void sendfile_pause_reading_kept(void **state) {
    aiol_loop *loop = LOOP(state);
    int file = make_file(MiB);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    aiol_transport *t = adopt(loop, sv[0], &c);
    peer p;
    peer_init(&p, loop, sv[1]);
    peer_start_reading(&p);
    RUN_UNTIL(loop, c.made);
    sf s = {&c};
    assert_int_equal(API(aiol_transport_sendfile(t, file, 0, 0, sf_done, &s)), 0);
    assert_int_equal(API(aiol_transport_pause_reading(t)), 0);
    c.user_paused = 1;
    write_all(sv[1], "ping", 4);
    RUN_UNTIL(loop, s.done && p.rx_len == MiB);
    assert_int_equal(s.status, 0);
    for (int i = 0; i < 10; i++) assert_true(aiol_loop_run(loop, AIOL_RUN_NOWAIT) >= 0);
    assert_int_equal(c.data_calls, 0);
    assert_int_equal(API(aiol_transport_is_reading(t)), 0);
    c.user_paused = 0;
    assert_int_equal(API(aiol_transport_resume_reading(t)), 0);
    RUN_UNTIL(loop, c.rx_len == 4);
    assert_int_equal(conn_close(&c), 0);
    run_to_end(loop);
    assert_int_equal(c.lost_status, 0);
    peer_close(&p);
    close(file);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        CASE(sendfile_32mib),
        CASE(sendfile_ranges),
        CASE(sendfile_bad_args),
        CASE(sendfile_after_queued_write),
        CASE(sendfile_fallback_proc_file),
        CASE(sendfile_fallback_pipe),
        CASE(sendfile_peer_reset),
        CASE(sendfile_close_during),
        CASE(sendfile_abort_during),
        CASE(sendfile_loop_close),
        CASE(sendfile_pause_reading_kept),
    };
    return TEST_MAIN("test_transport_sendfile", tests);
}
