/* Socket transports (asyncio _SelectorSocketTransport) under injected recv, send,
   sendmsg, sendfile, read and epoll_ctl failures and short writes: EINTR and EAGAIN are
   retried transparently, other errors end in connection_lost(-errno) without a report
   (asyncio only debug-logs OSErrors), short writes still deliver every byte in order. */
#include <signal.h>
#include <stdlib.h>
#include <sys/uio.h>

#include "faults_common.h"

/* ---- reading ------------------------------------------------------------------------ */

static void recv_case(void **state, int err, int buffered) {
    aiol_loop *loop = LOOP(state);
    int ours, theirs;
    tcp_pair(&ours, &theirs);
    conn c;
    adopt(loop, ours, &c, buffered);
    aiol_fault_set(AIOL_FAULT_RECV, err, 0, 1);
    send_pattern(theirs, 0, 100);
    if (err == EINTR || err == EAGAIN) {
        RUN_UNTIL(loop, c.rx == 100); /* the next readiness reads it */
        assert_int_equal(c.rx_bad, 0);
        assert_int_equal(c.lost, 0);
        assert_int_equal(aiol_transport_close(c.t), 0);
        RUN_UNTIL(loop, c.lost);
        assert_int_equal(c.lost_status, 0);
    } else {
        RUN_UNTIL(loop, c.lost);
        assert_int_equal(c.lost_status, -err);
        assert_int_equal(c.rx, 0);
    }
    assert_int_equal(aiol_fault_hits(AIOL_FAULT_RECV), 1);
    assert_int_equal(g_reports, 0);
    run_to_end(loop);
    assert_int_equal(c.destroyed, 1);
    close(theirs);
}

static void recv_eintr_retried(void **state) { recv_case(state, EINTR, 0); }
static void recv_eagain_noop(void **state) { recv_case(state, EAGAIN, 0); }
static void recv_econnreset_lost(void **state) { recv_case(state, ECONNRESET, 0); }
static void recv_enomem_lost(void **state) { recv_case(state, ENOMEM, 0); }
static void buffered_recv_eintr_retried(void **state) { recv_case(state, EINTR, 1); }
static void buffered_recv_econnreset_lost(void **state) { recv_case(state, ECONNRESET, 1); }

/* A 1-byte recv each time: every byte still arrives, in order. */
static void recv_short_1_byte(void **state) {
    aiol_loop *loop = LOOP(state);
    int ours, theirs;
    tcp_pair(&ours, &theirs);
    conn c;
    adopt(loop, ours, &c, 0);
    aiol_fault_short(AIOL_FAULT_RECV, 1, 0, -1);
    for (int i = 0; i < 4; i++) send_pattern(theirs, (uint64_t)i * 1000, 1000);
    RUN_UNTIL(loop, c.rx == 4000);
    assert_int_equal(c.rx_bad, 0);
    assert_true(aiol_fault_hits(AIOL_FAULT_RECV) >= 4000);
    aiol_fault_clear();
    assert_int_equal(aiol_transport_close(c.t), 0);
    run_to_end(loop);
    close(theirs);
}

/* ---- writing ------------------------------------------------------------------------ */

typedef struct wfix {
    int ours, theirs;
    conn c;
    peer p;
} wfix;

static void wfix_open(aiol_loop *loop, wfix *w) {
    tcp_pair(&w->ours, &w->theirs);
    adopt(loop, w->ours, &w->c, 0);
    peer_start(loop, &w->p, w->theirs);
}

static void wfix_close(aiol_loop *loop, wfix *w) {
    if (!w->c.lost) assert_int_equal(aiol_transport_close(w->c.t), 0);
    RUN_UNTIL(loop, w->c.lost);
    peer_stop(loop, &w->p);
    run_to_end(loop);
    assert_int_equal(w->c.destroyed, 1);
}

static int write_pattern(aiol_transport *t, uint64_t off, size_t len) {
    unsigned char *buf = malloc(len);
    assert_non_null(buf);
    fill_pattern(buf, off, len);
    int rc = aiol_transport_write(t, buf, len);
    free(buf);
    return rc;
}

/* EINTR / EAGAIN on the first send: nothing lost, all queued, sent once writable. */
static void write_would_block(void **state, int err) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    aiol_fault_set(AIOL_FAULT_SEND, err, 0, 1);
    assert_int_equal(write_pattern(w.c.t, 0, 1000), 0);
    assert_int_equal(aiol_fault_hits(AIOL_FAULT_SEND), 1);
    assert_int_equal(aiol_transport_get_write_buffer_size(w.c.t), 1000);
    RUN_UNTIL(loop, w.p.rx == 1000);
    assert_int_equal(w.p.rx_bad, 0);
    assert_int_equal(aiol_transport_get_write_buffer_size(w.c.t), 0);
    assert_int_equal(w.c.lost, 0);
    assert_int_equal(g_reports, 0);
    wfix_close(loop, &w);
    assert_int_equal(w.c.lost_status, 0);
}

static void write_eintr_queued(void **state) { write_would_block(state, EINTR); }
static void write_eagain_queued(void **state) { write_would_block(state, EAGAIN); }

/* Any other error on the first send: write still returns 0 (the data was accepted), then
   connection_lost(-errno) from the loop, no report, later writes AIOL_ECLOSED. */
static void write_fatal(void **state, int err) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    aiol_fault_set(AIOL_FAULT_SEND, err, 0, 1);
    assert_int_equal(write_pattern(w.c.t, 0, 1000), 0);
    assert_int_equal(w.c.lost, 0); /* never inside the call */
    assert_int_equal(write_pattern(w.c.t, 0, 10), AIOL_ECLOSED);
    RUN_UNTIL(loop, w.c.lost);
    assert_int_equal(w.c.lost_status, -err);
    assert_int_equal(g_reports, 0);
    RUN_UNTIL(loop, w.p.eof || w.p.err);
    assert_int_equal(w.p.rx, 0);
    wfix_close(loop, &w);
}

static void write_epipe_lost(void **state) { write_fatal(state, EPIPE); }
static void write_econnreset_lost(void **state) { write_fatal(state, ECONNRESET); }
static void write_enobufs_lost(void **state) { write_fatal(state, ENOBUFS); }

/* The real thing: writes to a peer that is gone, with SIGPIPE's default action (kill)
   in place. The process survives; connection_lost carries EPIPE or ECONNRESET. */
static void write_real_epipe_no_sigpipe(void **state) {
    aiol_loop *loop = LOOP(state);
    void (*old)(int) = signal(SIGPIPE, SIG_DFL);
    int ours, theirs;
    tcp_pair(&ours, &theirs);
    conn c;
    adopt(loop, ours, &c, 0);
    struct linger lg = {1, 0};
    setsockopt(theirs, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(theirs); /* RST */
    for (int i = 0; i < 100 && !c.lost; i++) {
        int rc = write_pattern(c.t, 0, 1000);
        assert_true(rc == 0 || rc == AIOL_ECLOSED);
        aiol_loop_run(loop, AIOL_RUN_NOWAIT);
    }
    RUN_UNTIL(loop, c.lost);
    assert_true(c.lost_status == -EPIPE || c.lost_status == -ECONNRESET);
    run_to_end(loop);
    signal(SIGPIPE, old);
}

/* Errors in write_ready (the queued path): EINTR retried, ECONNRESET loses the queue. */
static void write_ready_errors(void **state) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    aiol_fault_set(AIOL_FAULT_SEND, EAGAIN, 0, 1);
    assert_int_equal(write_pattern(w.c.t, 0, 1000), 0);
    aiol_fault_set(AIOL_FAULT_SEND, EINTR, 0, 1); /* the first write_ready */
    RUN_UNTIL(loop, w.p.rx == 1000);
    assert_int_equal(aiol_fault_hits(AIOL_FAULT_SEND), 1);
    assert_int_equal(w.p.rx_bad, 0);

    aiol_fault_set(AIOL_FAULT_SEND, EAGAIN, 0, 1);
    assert_int_equal(write_pattern(w.c.t, 1000, 1000), 0);
    aiol_fault_set(AIOL_FAULT_SEND, ECONNRESET, 0, 1);
    RUN_UNTIL(loop, w.c.lost);
    assert_int_equal(w.c.lost_status, -ECONNRESET); /* the queue dropped: 1000 bytes, not 2000 */
    assert_int_equal(g_reports, 0);
    wfix_close(loop, &w);
    assert_int_equal(w.p.rx, 1000);
}

/* Every send and sendmsg moves 1 byte: 96 KiB written with write and writev (crossing
   the 64 KiB high-water mark) arrive whole and in order; pause/resume_writing pair up. */
static void short_writes_1_byte(void **state) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    aiol_fault_short(AIOL_FAULT_SEND, 1, 0, -1);
    aiol_fault_short(AIOL_FAULT_SENDMSG, 1, 0, -1);
    const size_t total = 96 * KiB;
    unsigned char *buf = malloc(total);
    assert_non_null(buf);
    fill_pattern(buf, 0, total);
    size_t off = 0, chunk = 1;
    int i = 0;
    while (off < total) {
        size_t n = chunk < total - off ? chunk : total - off;
        if (i++ % 2) {
            assert_int_equal(aiol_transport_write(w.c.t, buf + off, n), 0);
        } else {  /* three pieces, one empty */
            aiol_buf b[3] = {{buf + off, n / 2}, {NULL, 0}, {buf + off + n / 2, n - n / 2}};
            assert_int_equal(aiol_transport_writev(w.c.t, b, 3), 0);
        }
        off += n;
        chunk = chunk * 3 + 1;
        if (i % 4 == 0) aiol_loop_run(loop, AIOL_RUN_NOWAIT); /* some go out while others queue */
    }
    free(buf);
    RUN_UNTIL(loop, w.p.rx == total);
    assert_int_equal(w.p.rx_bad, 0);
    assert_true(w.c.pauses >= 1);
    assert_int_equal(w.c.pauses, w.c.resumes);
    assert_true(aiol_fault_hits(AIOL_FAULT_SEND) > 1000);
    assert_true(aiol_fault_hits(AIOL_FAULT_SENDMSG) >= 1);
    aiol_fault_clear();
    wfix_close(loop, &w);
    assert_int_equal(w.c.lost_status, 0);
}

/* writev whose sendmsg takes k bytes, for every k across a set of buffers with empty and
   1-byte ones: the rest is queued from exactly byte k. */
static void writev_short_at_every_offset(void **state) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    const size_t lens[] = {3, 0, 1, 7, 2, 16, 5};
    const size_t total = 34;
    unsigned char data[34];
    uint64_t off = 0;
    for (size_t k = 0; k < total; k++) {
        fill_pattern(data, off, total);
        aiol_buf b[7];
        size_t at = 0;
        for (int i = 0; i < 7; i++) {
            b[i].base = lens[i] ? data + at : NULL;
            b[i].len = lens[i];
            at += lens[i];
        }
        if (k == 0) aiol_fault_set(AIOL_FAULT_SENDMSG, EAGAIN, 0, 1);
        else aiol_fault_short(AIOL_FAULT_SENDMSG, k, 0, 1);
        assert_int_equal(aiol_transport_writev(w.c.t, b, 7), 0);
        assert_int_equal(aiol_fault_hits(AIOL_FAULT_SENDMSG), 1);
        assert_int_equal(aiol_transport_get_write_buffer_size(w.c.t), total - k);
        off += total;
        RUN_UNTIL(loop, w.p.rx == off);
        assert_int_equal(w.p.rx_bad, 0);
    }
    aiol_fault_clear();
    wfix_close(loop, &w);
}

/* sendmsg errors: EINTR queues everything; EPIPE is connection_lost(-EPIPE). */
static void writev_errors(void **state) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    unsigned char data[300];
    fill_pattern(data, 0, sizeof data);
    aiol_buf b[2] = {{data, 100}, {data + 100, 200}};
    aiol_fault_set(AIOL_FAULT_SENDMSG, EINTR, 0, 1);
    assert_int_equal(aiol_transport_writev(w.c.t, b, 2), 0);
    assert_int_equal(aiol_transport_get_write_buffer_size(w.c.t), 300);
    RUN_UNTIL(loop, w.p.rx == 300);
    assert_int_equal(w.p.rx_bad, 0);
    aiol_fault_set(AIOL_FAULT_SENDMSG, EPIPE, 0, 1);
    assert_int_equal(aiol_transport_writev(w.c.t, b, 2), 0);
    RUN_UNTIL(loop, w.c.lost);
    assert_int_equal(w.c.lost_status, -EPIPE);
    assert_int_equal(g_reports, 0);
    wfix_close(loop, &w);
}

/* ---- sendfile --------------------------------------------------------------------------- */

typedef struct sf_done {
    int calls, status;
    uint64_t sent;
} sf_done;

static void on_sendfile_done(aiol_transport *t, int status, uint64_t sent, void *ud) {
    UNUSED(t);
    sf_done *d = (sf_done *)ud;
    d->calls++;
    d->status = status;
    d->sent = sent;
}

/* A temporary file holding the pattern (already unlinked). */
static int pattern_file(size_t len) {
    char path[] = "/tmp/aiol-faults-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    unsigned char *buf = malloc(len);
    assert_non_null(buf);
    fill_pattern(buf, 0, len);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    free(buf);
    return fd;
}

/* Runs a sendfile of a len-byte file (or pipe, when file < 0 and pipe_len is set) and
   expects it to finish with `status`; 0 means every byte arrived in order. */
static void sendfile_expect(aiol_loop *loop, wfix *w, int fd, size_t len, int status) {
    sf_done d;
    memset(&d, 0, sizeof d);
    assert_int_equal(aiol_transport_sendfile(w->c.t, fd, 0, len, on_sendfile_done, &d), 0);
    RUN_UNTIL(loop, d.calls == 1);
    assert_int_equal(d.status, status);
    if (status == 0) {
        assert_int_equal(d.sent, len);
        RUN_UNTIL(loop, w->p.rx == len);
        assert_int_equal(w->p.rx_bad, 0);
    }
}

static void sendfile_would_block(void **state, int err) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    int fd = pattern_file(256 * KiB);
    aiol_fault_set(AIOL_FAULT_SENDFILE, err, 0, 1);
    sendfile_expect(loop, &w, fd, 256 * KiB, 0);
    assert_int_equal(aiol_fault_hits(AIOL_FAULT_SENDFILE), 1);
    assert_int_equal(g_reports, 0);
    wfix_close(loop, &w);
    close(fd);
}

static void sendfile_eintr_retried(void **state) { sendfile_would_block(state, EINTR); }
static void sendfile_eagain_retried(void **state) { sendfile_would_block(state, EAGAIN); }

/* EPIPE: done(-EPIPE) first, then connection_lost(-EPIPE). */
static void sendfile_epipe_lost(void **state) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    int fd = pattern_file(64 * KiB);
    aiol_fault_set(AIOL_FAULT_SENDFILE, EPIPE, 0, 1);
    sendfile_expect(loop, &w, fd, 64 * KiB, -EPIPE);
    assert_int_equal(w.c.lost, 0); /* done ran before connection_lost */
    RUN_UNTIL(loop, w.c.lost);
    assert_int_equal(w.c.lost_status, -EPIPE);
    assert_int_equal(g_reports, 0);
    wfix_close(loop, &w);
    close(fd);
}

/* sendfile moving 1 byte per call: the whole file arrives. */
static void sendfile_short_1_byte(void **state) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    int fd = pattern_file(16 * KiB);
    aiol_fault_short(AIOL_FAULT_SENDFILE, 1, 0, -1);
    sendfile_expect(loop, &w, fd, 16 * KiB, 0);
    assert_true(aiol_fault_hits(AIOL_FAULT_SENDFILE) >= 16 * 1024);
    aiol_fault_clear();
    wfix_close(loop, &w);
    close(fd);
}

/* EINVAL on the first sendfile: the read + send fallback, here with sends of 7 bytes. */
static void sendfile_einval_fallback_short_sends(void **state) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    int fd = pattern_file(20000);
    aiol_fault_set(AIOL_FAULT_SENDFILE, EINVAL, 0, 1);
    aiol_fault_short(AIOL_FAULT_SEND, 7, 0, -1);
    sendfile_expect(loop, &w, fd, 20000, 0);
    assert_int_equal(aiol_fault_hits(AIOL_FAULT_SENDFILE), 1);
    assert_true(aiol_fault_hits(AIOL_FAULT_SEND) >= 20000 / 7);
    aiol_fault_clear();
    wfix_close(loop, &w);
    close(fd);
}

/* The fallback's file read: EINTR is retried; EIO ends the sendfile with -EIO and leaves
   the transport open and usable. */
static void sendfile_fallback_read_errors(void **state) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    int fd = pattern_file(8000);
    aiol_fault_set(AIOL_FAULT_SENDFILE, EINVAL, 0, 1);
    aiol_fault_set(AIOL_FAULT_READ, EINTR, 0, 1);
    sendfile_expect(loop, &w, fd, 8000, 0);
    assert_int_equal(aiol_fault_hits(AIOL_FAULT_READ), 1);

    aiol_fault_set(AIOL_FAULT_SENDFILE, EINVAL, 0, 1);
    aiol_fault_set(AIOL_FAULT_READ, EIO, 0, 1);
    sf_done d;
    memset(&d, 0, sizeof d);
    assert_int_equal(aiol_transport_sendfile(w.c.t, fd, 0, 8000, on_sendfile_done, &d), 0);
    RUN_UNTIL(loop, d.calls == 1);
    assert_int_equal(d.status, -EIO);
    assert_int_equal(d.sent, 0);
    aiol_fault_clear();
    assert_int_equal(write_pattern(w.c.t, 8000, 100), 0);
    RUN_UNTIL(loop, w.p.rx == 8100);
    assert_int_equal(w.p.rx_bad, 0);
    assert_int_equal(w.c.lost, 0);
    assert_int_equal(g_reports, 0);
    wfix_close(loop, &w);
    close(fd);
}

/* From a pipe (a stream: bytes read cannot be read again) with sends of 5 bytes: what a
   send does not take is queued, nothing is lost or repeated. */
static void sendfile_pipe_short_sends(void **state) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    unsigned char buf[30000];
    fill_pattern(buf, 0, sizeof buf);
    assert_int_equal(write(pp[1], buf, sizeof buf), (ssize_t)sizeof buf);
    close(pp[1]);
    aiol_fault_short(AIOL_FAULT_SEND, 5, 0, -1);
    sf_done d;
    memset(&d, 0, sizeof d);
    assert_int_equal(aiol_transport_sendfile(w.c.t, pp[0], 0, 0, on_sendfile_done, &d), 0);
    RUN_UNTIL(loop, d.calls == 1);
    assert_int_equal(d.status, 0);
    assert_int_equal(d.sent, sizeof buf);
    RUN_UNTIL(loop, w.p.rx == sizeof buf);
    assert_int_equal(w.p.rx_bad, 0);
    aiol_fault_clear();
    wfix_close(loop, &w);
    close(pp[0]);
}

/* ---- epoll_ctl ------------------------------------------------------------------------ */

static void fd_cb(aiol_loop *loop, int fd, void *ud) {
    UNUSED(loop), UNUSED(fd);
    (*(int *)ud)++;
}
static int g_destroys;
static void count_destroy(void *ud) {
    UNUSED(ud);
    g_destroys++;
}

/* add_reader / add_writer when epoll_ctl fails: the errno comes back, destroy never runs
   (the caller keeps user_data), nothing is registered; the next try works. */
static void add_reader_epoll_ctl_fails(void **state) {
    aiol_loop *loop = LOOP(state);
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    int reads = 0, writes = 0;
    g_destroys = 0;
    aiol_fault_set(AIOL_FAULT_EPOLL_CTL, ENOMEM, 0, 1);
    assert_int_equal(aiol_loop_add_reader(loop, pp[0], fd_cb, &reads, count_destroy), AIOL_ENOMEM);
    aiol_fault_set(AIOL_FAULT_EPOLL_CTL, ENOSPC, 0, 1);
    assert_int_equal(aiol_loop_add_writer(loop, pp[1], fd_cb, &writes, count_destroy), -ENOSPC);
    aiol_fault_clear();
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0); /* nothing registered */
    assert_int_equal(g_destroys, 0);
    assert_int_equal(aiol_loop_remove_reader(loop, pp[0]), 0);

    assert_int_equal(aiol_loop_add_reader(loop, pp[0], fd_cb, &reads, count_destroy), 0);
    assert_int_equal(aiol_loop_add_writer(loop, pp[1], fd_cb, &writes, count_destroy), 0);
    assert_int_equal(write(pp[1], "x", 1), 1);
    RUN_UNTIL(loop, reads >= 1 && writes >= 1);
    /* a second watcher on an fd already registered: the MOD fails, the first stays */
    int writes2 = 0;
    aiol_fault_set(AIOL_FAULT_EPOLL_CTL, ENOMEM, 0, 1);
    assert_int_equal(aiol_loop_add_writer(loop, pp[0], fd_cb, &writes2, count_destroy), AIOL_ENOMEM);
    aiol_fault_clear();
    reads = 0;
    RUN_UNTIL(loop, reads >= 1);
    assert_int_equal(writes2, 0);
    assert_int_equal(aiol_loop_remove_reader(loop, pp[0]), 1);
    assert_int_equal(aiol_loop_remove_writer(loop, pp[1]), 1);
    run_to_end(loop);
    assert_int_equal(g_destroys, 2);
    close(pp[0]);
    close(pp[1]);
}

/* A transport whose interest change is refused (a write that must wait for EPOLLOUT):
   connection_lost with that error. */
static void transport_epoll_ctl_fails(void **state) {
    aiol_loop *loop = LOOP(state);
    wfix w;
    wfix_open(loop, &w);
    aiol_fault_set(AIOL_FAULT_SEND, EAGAIN, 0, 1);
    aiol_fault_set(AIOL_FAULT_EPOLL_CTL, ENOSPC, 0, 1);
    assert_int_equal(write_pattern(w.c.t, 0, 100), 0);
    assert_int_equal(aiol_fault_hits(AIOL_FAULT_EPOLL_CTL), 1);
    RUN_UNTIL(loop, w.c.lost);
    assert_int_equal(w.c.lost_status, -ENOSPC);
    assert_int_equal(g_reports, 0);
    aiol_fault_clear();
    wfix_close(loop, &w);
}

/* ---- connect ---------------------------------------------------------------------------- */

typedef struct cdone {
    int calls, status;
    aiol_transport *t;
} cdone;

static void on_connect(aiol_transport *t, int status, void *ud) {
    cdone *d = (cdone *)ud;
    d->calls++;
    d->status = status;
    d->t = t;
}

/* epoll_ctl refusing the connecting socket: done(NULL, -errno), user_data destroyed, no
   fd left (teardown counts). */
static void connect_epoll_ctl_fails(void **state) {
    aiol_loop *loop = LOOP(state);
    uint16_t port;
    int l = tcp_listener(&port);
    aiol_connect_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    cfg.port = port;
    aiol_protocol p = conn_protocol(0);
    conn c;
    memset(&c, 0, sizeof c);
    cdone d;
    memset(&d, 0, sizeof d);
    aiol_fault_set(AIOL_FAULT_EPOLL_CTL, ENOMEM, 0, 1);
    assert_int_equal(aiol_loop_connect(loop, &cfg, &p, &c, on_connect, &d, NULL), 0);
    RUN_UNTIL(loop, d.calls == 1);
    assert_int_equal(aiol_fault_hits(AIOL_FAULT_EPOLL_CTL), 1);
    assert_int_equal(d.status, AIOL_ENOMEM);
    assert_null(d.t);
    aiol_fault_clear();
    run_to_end(loop);
    assert_int_equal(c.destroyed, 1);
    assert_int_equal(c.made, 0);
    close(l);
}

/* ---- the loop's own fds ------------------------------------------------------------------ */

static void mark(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    (*(int *)ud)++;
}

static void *post_mark(void *arg) {
    struct timespec ts = {0, 50 * 1000000};
    nanosleep(&ts, NULL);
    void **a = (void **)arg;
    CHECK(aiol_loop_call_soon_threadsafe((aiol_loop *)a[0], mark, a[1], NULL) == 0);
    return NULL;
}

/* eventfd failing: the loop falls back to a pipe (one more fd), and a post from another
   thread still wakes it. */
static void loop_new_eventfd_fails_uses_pipe(void **state) {
    int base = count_open_fds();
    aiol_loop *loop = NULL;
    aiol_fault_set(AIOL_FAULT_EVENTFD, EMFILE, 0, 1);
    assert_int_equal(aiol_loop_new(&loop), 0);
    assert_int_equal(aiol_fault_hits(AIOL_FAULT_EVENTFD), 1);
    aiol_fault_clear();
    assert_int_equal(count_open_fds(), base + 3); /* epoll + the pipe's two ends */
    int ran = 0;
    void *arg[2] = {loop, &ran};
    pthread_t th;
    assert_int_equal(aiol_loop_hold(loop), 0); /* a DEFAULT run would otherwise return */
    assert_int_equal(pthread_create(&th, NULL, post_mark, arg), 0);
    while (!ran) assert_true(aiol_loop_run(loop, AIOL_RUN_ONCE) >= 0); /* blocks until woken */
    pthread_join(th, NULL);
    assert_int_equal(aiol_loop_unhold(loop), 0);
    assert_int_equal(aiol_loop_free(loop), 0);
    assert_int_equal(count_open_fds(), base);
    (void)state;
}

/* eventfd and the pipe fallback both failing, or the wake-up fd's registration: an error
   back from aiol_loop_new, *ret untouched, no fd left open. */
static void loop_new_wakeup_fails(void **state) {
    UNUSED(state);
    int base = count_open_fds();
    aiol_loop *sentinel = (aiol_loop *)&base, *loop = sentinel;
    aiol_fault_set(AIOL_FAULT_EVENTFD, EMFILE, 0, 1);
    aiol_fault_set(AIOL_FAULT_PIPE2, EMFILE, 0, 1);
    assert_int_equal(aiol_loop_new(&loop), -EMFILE);
    assert_ptr_equal(loop, sentinel);
    assert_int_equal(count_open_fds(), base);
    aiol_fault_clear();
    aiol_fault_set(AIOL_FAULT_EPOLL_CTL, ENOMEM, 0, 1);
    assert_int_equal(aiol_loop_new(&loop), AIOL_ENOMEM);
    assert_ptr_equal(loop, sentinel);
    assert_int_equal(count_open_fds(), base);
    aiol_fault_set(AIOL_FAULT_EVENTFD, ENFILE, 0, 1);
    aiol_fault_set(AIOL_FAULT_EPOLL_CTL, ENOMEM, 0, 1); /* the pipe's registration */
    assert_int_equal(aiol_loop_new(&loop), AIOL_ENOMEM);
    assert_int_equal(count_open_fds(), base);
    aiol_fault_clear();
}

/* The signal pipe failing: add_signal_handler returns the error and keeps nothing. */
static void signal_pipe_fails(void **state) {
    aiol_loop *loop = LOOP(state);
    int ran = 0;
    g_destroys = 0;
    aiol_fault_set(AIOL_FAULT_PIPE2, EMFILE, 0, 1);
    assert_int_equal(aiol_loop_add_signal_handler(loop, SIGUSR1, mark, &ran, count_destroy), -EMFILE);
    aiol_fault_set(AIOL_FAULT_EPOLL_CTL, ENOMEM, 0, 1);
    assert_int_equal(aiol_loop_add_signal_handler(loop, SIGUSR1, mark, &ran, count_destroy), AIOL_ENOMEM);
    aiol_fault_clear();
    assert_int_equal(g_destroys, 0);
    assert_int_equal(aiol_loop_add_signal_handler(loop, SIGUSR1, mark, &ran, count_destroy), 0);
    raise(SIGUSR1);
    RUN_UNTIL(loop, ran == 1);
    assert_int_equal(aiol_loop_remove_signal_handler(loop, SIGUSR1), 1);
    run_to_end(loop);
    assert_int_equal(g_destroys, 1);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        CASE(recv_eintr_retried),
        CASE(recv_eagain_noop),
        CASE(recv_econnreset_lost),
        CASE(recv_enomem_lost),
        CASE(buffered_recv_eintr_retried),
        CASE(buffered_recv_econnreset_lost),
        CASE(recv_short_1_byte),
        CASE(write_eintr_queued),
        CASE(write_eagain_queued),
        CASE(write_epipe_lost),
        CASE(write_econnreset_lost),
        CASE(write_enobufs_lost),
        CASE(write_real_epipe_no_sigpipe),
        CASE(write_ready_errors),
        CASE(short_writes_1_byte),
        CASE(writev_short_at_every_offset),
        CASE(writev_errors),
        CASE(sendfile_eintr_retried),
        CASE(sendfile_eagain_retried),
        CASE(sendfile_epipe_lost),
        CASE(sendfile_short_1_byte),
        CASE(sendfile_einval_fallback_short_sends),
        CASE(sendfile_fallback_read_errors),
        CASE(sendfile_pipe_short_sends),
        CASE(add_reader_epoll_ctl_fails),
        CASE(transport_epoll_ctl_fails),
        CASE(connect_epoll_ctl_fails),
        CASE(loop_new_eventfd_fails_uses_pipe),
        CASE(loop_new_wakeup_fails),
        CASE(signal_pipe_fails),
    };
    return TEST_MAIN("test_faults_transport", tests);
}
