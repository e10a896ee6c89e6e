/* BufferedProtocol, set_protocol, and close / abort / unref from inside every callback. */
#include <sys/mman.h>

#include "tr_common.h"

/* ---- BufferedProtocol ------------------------------------------------------------------- */

static aiol_transport *adopt_buffered(aiol_loop *loop, int fd, conn *c) {
    aiol_protocol p = conn_buffered_protocol();
    p.data_received = conn_data_cb; /* set too: it must never be called */
    aiol_transport *t = NULL;
    assert_int_equal(API(aiol_transport_adopt(loop, fd, &p, c, &t)), 0);
    c->t = t;
    return t;
}

/* A 1-byte buffer: one byte per buffer_updated, byte-exact, data_received never. */
static void buffered_one_byte_buffer(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    unsigned char b1;
    c.bbuf = &b1;
    c.bbuf_len = 1;
    c.verify_pattern = 1;
    adopt_buffered(loop, sv[0], &c);
    unsigned char data[5000];
    fill_pattern(data, 0, sizeof data);
    write_all(sv[1], data, sizeof data);
    shutdown(sv[1], SHUT_WR);
    RUN_UNTIL(loop, c.destroyed);
    assert_int_equal(c.rx_len, sizeof data);
    assert_int_equal(c.rx_bad, 0);
    assert_int_equal(c.buffer_calls, (int)sizeof data);
    assert_int_equal(c.get_buffer_calls, (int)sizeof data + 1); /* + the one that saw EOF */
    assert_int_equal(c.data_calls, 0);
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.lost_status, 0);
    run_to_end(loop);
    close(sv[1]);
}

static void *bulk_writer(void *arg) {
    int fd = *(int *)arg;
    size_t total = 8 * MiB, off = 0, step = 77777;
    unsigned char *buf = malloc(step);
    while (off < total) {
        size_t n = total - off < step ? total - off : step;
        fill_pattern(buf, off, n);
        size_t done = 0;
        while (done < n) {
            ssize_t k = send(fd, buf + done, n - done, MSG_NOSIGNAL);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) goto out;
            done += (size_t)k;
        }
        off += n;
    }
    shutdown(fd, SHUT_WR);
out:
    free(buf);
    return NULL;
}

/* A 1 MiB buffer over TCP: 8 MiB byte-exact, data_received never. */
static void buffered_large_buffer(void **state) {
    aiol_loop *loop = LOOP(state);
    int ours, theirs;
    tcp_pair(&ours, &theirs, 0, 0);
    conn c;
    conn_init(&c);
    c.bbuf = malloc(MiB);
    c.bbuf_len = MiB;
    c.verify_pattern = 1;
    adopt_buffered(loop, ours, &c);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bulk_writer, &theirs), 0);
    RUN_UNTIL(loop, c.destroyed);
    pthread_join(th, NULL);
    assert_int_equal(c.rx_len, 8 * MiB);
    assert_int_equal(c.rx_bad, 0);
    assert_int_equal(c.data_calls, 0);
    assert_true(c.buffer_calls > 0);
    assert_true(c.max_chunk <= MiB);
    assert_int_equal(c.eofs, 1);
    assert_int_equal(c.lost_status, 0);
    run_to_end(loop);
    free(c.bbuf);
    close(theirs);
}

/* get_buffer returning NULL, or *len == 0: the transport is aborted, connection_lost gets
   AIOL_EINVAL, and the exception handler gets exactly one report about this transport. */
static void buffered_empty_buffer_aborts(void **state) {
    aiol_loop *loop = LOOP(state);
    for (int zero = 0; zero < 2; zero++) {
        g_reports = 0;
        int sv[2];
        unix_pair(sv);
        conn c;
        conn_init(&c);
        unsigned char b[8];
        c.bbuf = b;
        c.bbuf_len = sizeof b;
        c.bbuf_null = !zero;
        c.bbuf_zero = zero;
        aiol_transport *t = adopt_buffered(loop, sv[0], &c);
        write_all(sv[1], "data", 4);
        RUN_UNTIL(loop, c.destroyed);
        assert_int_equal(c.get_buffer_calls, 1);
        assert_int_equal(c.buffer_calls, 0);
        assert_int_equal(c.data_calls, 0);
        assert_int_equal(c.lost_status, AIOL_EINVAL);
        assert_int_equal(g_reports, 1);
        assert_int_equal(g_report_code, AIOL_EINVAL);
        assert_ptr_equal(g_report_object, t);
        assert_int_equal(g_report_kind, AIOL_OBJ_TRANSPORT);
        run_to_end(loop);
        assert_int_equal(g_reports, 1);
        char x;
        assert_true(recv(sv[1], &x, 1, 0) <= 0); /* closed (ECONNRESET: data was unread) */
        close(sv[1]);
    }
}

static int never_factory(void *fd, const struct sockaddr *a, socklen_t l, void **ud) {
    UNUSED(fd), UNUSED(a), UNUSED(l), UNUSED(ud);
    CHECK(0);
    return -1;
}

/* Only one of get_buffer / buffer_updated: AIOL_EINVAL from adopt (the fd stays ours),
   set_protocol and server_start. */
static void buffered_half_set_is_einval(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    aiol_protocol only_get = conn_protocol(), only_upd = conn_protocol();
    only_get.get_buffer = conn_get_buffer_cb;
    only_upd.buffer_updated = conn_buffer_updated_cb;
    aiol_transport *t = NULL;
    assert_int_equal(API(aiol_transport_adopt(loop, sv[0], &only_get, &c, &t)), AIOL_EINVAL);
    assert_int_equal(API(aiol_transport_adopt(loop, sv[0], &only_upd, &c, &t)), AIOL_EINVAL);
    assert_null(t);
    /* still ours: usable and not watched by the loop */
    assert_int_equal(send(sv[0], "k", 1, 0), 1);
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    aiol_server *s = NULL;
    assert_int_equal(aiol_server_start(loop, &cfg, &only_get, never_factory, NULL,
                                       NULL, &s), AIOL_EINVAL);
    t = adopt(loop, sv[0], &c);
    RUN_UNTIL(loop, c.made);
    assert_int_equal(API(aiol_transport_set_protocol(t, &only_get, &c)), AIOL_EINVAL);
    assert_int_equal(API(aiol_transport_set_protocol(t, &only_upd, &c)), AIOL_EINVAL);
    assert_ptr_equal(aiol_transport_get_protocol_data(t), &c);
    assert_int_equal(conn_close(&c), 0);
    run_to_end(loop);
    assert_int_equal(c.destroyed, 1);
    assert_int_equal(c.lost_status, 0);
    close(sv[1]);
}

/* ---- set_protocol mid-stream ---------------------------------------------------------------- */

static conn g_a, g_b;

static void switch_on_data(conn *c, const void *data, size_t len) {
    UNUSED(data), UNUSED(len);
    CHECK(c == &g_a);
    aiol_protocol p = conn_protocol();
    g_b.t = c->t;
    g_b.made = 1;  /* b starts mid-stream: a connection_made for it fails conn_made_cb */
    c->switched = 1;
    CHECK(API(aiol_transport_set_protocol(c->t, &p, &g_b)) == 0);
    CHECK(aiol_transport_get_protocol_data(c->t) == &g_b);
    CHECK(g_a.destroyed == 0);  /* after this callback, not inside set_protocol */
}

static void b_on_data(conn *c, const void *data, size_t len) {
    UNUSED(c), UNUSED(data), UNUSED(len);
    CHECK(g_a.destroyed == 1);
}

static void set_protocol_mid_stream(void **state) {
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn_init(&g_a);
    conn_init(&g_b);
    g_a.on_data = switch_on_data;
    g_b.on_data = b_on_data;
    aiol_transport *t = adopt(loop, sv[0], &g_a);
    assert_ptr_equal(aiol_transport_get_protocol_data(t), &g_a);
    assert_null(aiol_transport_get_protocol_data(NULL));
    write_all(sv[1], "first", 5);
    RUN_UNTIL(loop, g_a.switched);
    assert_int_equal(g_a.destroyed, 1);
    assert_int_equal(g_a.data_calls, 1);
    assert_int_equal(g_a.rx_len, 5);
    /* same user_data and destroy: not a switch, nothing destroyed */
    aiol_protocol p = conn_protocol();
    assert_int_equal(API(aiol_transport_set_protocol(t, &p, &g_b)), 0);
    write_all(sv[1], "second", 6);
    shutdown(sv[1], SHUT_WR);
    RUN_UNTIL(loop, g_b.destroyed);
    assert_int_equal(g_b.rx_len, 6);
    assert_int_equal(g_b.eofs, 1);
    assert_int_equal(g_b.lost, 1);
    assert_int_equal(g_b.lost_status, 0);
    assert_int_equal(g_a.lost, 0);
    assert_int_equal(g_a.destroyed, 1);
    run_to_end(loop);
    close(sv[1]);
}

/* ---- close / abort / unref from inside every callback ------------------------------------- */

enum { AT_MADE, AT_DATA, AT_GET_BUFFER, AT_BUFFER_UPDATED, AT_EOF, AT_PAUSE, AT_RESUME,
       AT_SENDFILE_DONE, AT_LOST };
enum { DO_CLOSE, DO_ABORT, DO_UNREF, DO_COUNT };
static const char *const do_names[] = {"close", "abort", "unref"};

typedef struct reent {
    int at, what, acted;
    int extra_ref;
    int sf_fd;
    int sf_done, sf_status;
    uint64_t sf_sent;
    int lost_after_done;
    conn c;
} reent;
static reent g_r;

static void act(conn *c) {
    reent *r = &g_r;
    if (r->acted) return;
    r->acted = 1;
    aiol_loop *loop = aiol_transport_loop(c->t);
    CHECK(loop != NULL);
    CHECK(aiol_loop_free(loop) == AIOL_ESTATE); /* not from inside a callback */
    int expect = r->at == AT_LOST ? AIOL_ECLOSED : 0;
    switch (r->what) {
    case DO_CLOSE:
        c->user_closed = 1;
        CHECK(API(aiol_transport_close(c->t)) == expect);
        CHECK(API(aiol_transport_close(c->t)) == expect);
        break;
    case DO_ABORT:
        c->user_closed = 1;
        if (r->at != AT_LOST) c->user_aborted = 1;
        CHECK(API(aiol_transport_abort(c->t)) == expect);
        break;
    case DO_UNREF:
        CHECK(API(aiol_transport_unref(c->t)) == 0);
        r->extra_ref = 0;
        break;
    }
}

static void sf_done(aiol_transport *t, int status, uint64_t sent, void *ud) {
    reent *r = ud;
    CHECK(!g_in_api);
    CHECK(t == r->c.t);
    CHECK(r->c.lost == 0);
    CHECK(r->sf_done == 0);
    r->sf_done++;
    r->sf_status = status;
    r->sf_sent = sent;
    if (r->at == AT_SENDFILE_DONE) act(&r->c);
}

static void r_made(conn *c) {
    reent *r = &g_r;
    if (r->at == AT_MADE) act(c);
    if (r->at == AT_PAUSE || r->at == AT_RESUME) {
        unsigned char *buf = malloc(4 * MiB);
        fill_pattern(buf, 0, 4 * MiB);
        CHECK(API(aiol_transport_write(c->t, buf, 4 * MiB)) == 0);
        free(buf);
    }
    if (r->at == AT_SENDFILE_DONE)
        CHECK(API(aiol_transport_sendfile(c->t, r->sf_fd, 0, 0, sf_done, r)) == 0);
    if (r->at == AT_LOST) {
        c->user_closed = 1;
        CHECK(API(aiol_transport_close(c->t)) == 0);
    }
}
static void r_data(conn *c, const void *d, size_t n) {
    UNUSED(d), UNUSED(n);
    if (g_r.at == AT_DATA || g_r.at == AT_BUFFER_UPDATED) act(c);
}
static void r_get_buffer(conn *c) {
    if (g_r.at == AT_GET_BUFFER) act(c);
}
static int r_eof(conn *c) {
    if (g_r.at == AT_EOF) {
        act(c);
        return g_r.what == DO_CLOSE; /* keep open, but closing anyway */
    }
    return 0;
}
static void r_pause(conn *c) {
    if (g_r.at == AT_PAUSE) act(c);
}
static void r_resume(conn *c) {
    if (g_r.at == AT_RESUME) act(c);
}
static void r_lost(conn *c, int status) {
    UNUSED(status);
    reent *r = &g_r;
    if (r->at == AT_SENDFILE_DONE) r->lost_after_done = r->sf_done == 1;
    if (r->at == AT_LOST) act(c);
}

static void run_reentrant(aiol_loop *loop, int at) {
    for (int what = 0; what < DO_COUNT; what++) {
        print_message("  %s inside callback %d\n", do_names[what], at);
        reent *r = &g_r;
        memset(r, 0, sizeof *r);
        r->at = at;
        r->what = what;
        r->sf_fd = -1;
        conn *c = &r->c;
        conn_init(c);
        c->on_made = r_made;
        c->on_data = r_data;
        c->on_get_buffer = r_get_buffer;
        c->on_eof = r_eof;
        c->on_pause = r_pause;
        c->on_resume = r_resume;
        c->on_lost = r_lost;
        int sv[2];
        unix_pair(sv);
        unsigned char bbuf[4096];
        if (at == AT_SENDFILE_DONE) {
            r->sf_fd = memfd_create("sf", MFD_CLOEXEC);
            assert_true(r->sf_fd >= 0);
            unsigned char d[100000];
            fill_pattern(d, 0, sizeof d);
            assert_int_equal(write(r->sf_fd, d, sizeof d), (ssize_t)sizeof d);
        }
        aiol_transport *t;
        if (at == AT_GET_BUFFER || at == AT_BUFFER_UPDATED) {
            c->bbuf = bbuf;
            c->bbuf_len = sizeof bbuf;
            t = adopt_buffered(loop, sv[0], c);
        } else {
            t = adopt(loop, sv[0], c);
        }
        assert_int_equal(API(aiol_transport_ref(t)), 0);
        r->extra_ref = 1;
        peer p;
        peer_init(&p, loop, sv[1]);
        peer_start_reading(&p);
        if (at == AT_DATA || at == AT_GET_BUFFER || at == AT_BUFFER_UPDATED)
            write_all(sv[1], "some data", 9);
        if (at == AT_EOF) shutdown(sv[1], SHUT_WR);
        RUN_UNTIL(loop, r->acted);
        if (what == DO_UNREF && !c->lost && !c->user_closed) {
            /* the library's own reference keeps t valid until connection_lost */
            assert_int_equal(conn_close(c), 0);
        }
        /* the peer sees EOF, or ECONNRESET when data we never read was discarded */
        RUN_UNTIL(loop, c->destroyed && (p.rx_eof || p.rx_err));
        assert_int_equal(c->made, 1);
        assert_int_equal(c->lost, 1);
        assert_int_equal(c->destroyed, 1);
        assert_true(c->destroy_seq > c->lost_seq);
        if (what == DO_ABORT && at != AT_LOST) assert_int_equal(c->lost_status, AIOL_ECANCELED);
        else assert_int_equal(c->lost_status, 0);
        if (at == AT_PAUSE || at == AT_RESUME) {
            assert_int_equal(c->pauses, 1);
            if (what != DO_ABORT || at == AT_RESUME) assert_int_equal(c->resumes, 1);
            if (what == DO_ABORT && at == AT_PAUSE) assert_int_equal(c->resumes, 0);
            if (what != DO_ABORT) assert_int_equal(p.rx_len, 4 * MiB); /* close flushed */
        }
        if (at == AT_SENDFILE_DONE) {
            assert_int_equal(r->sf_done, 1);
            assert_int_equal(r->sf_status, 0);
            assert_int_equal(r->sf_sent, 100000);
            assert_true(r->lost_after_done);
            assert_int_equal(p.rx_len, 100000);
            close(r->sf_fd);
        }
        run_to_end(loop);
        if (r->extra_ref) assert_int_equal(API(aiol_transport_unref(t)), 0);
        peer_close(&p);
        assert_no_check_failures();
    }
}

static void reenter_connection_made(void **state) { run_reentrant(LOOP(state), AT_MADE); }
static void reenter_data_received(void **state) { run_reentrant(LOOP(state), AT_DATA); }
static void reenter_get_buffer(void **state) { run_reentrant(LOOP(state), AT_GET_BUFFER); }
static void reenter_buffer_updated(void **state) { run_reentrant(LOOP(state), AT_BUFFER_UPDATED); }
static void reenter_eof_received(void **state) { run_reentrant(LOOP(state), AT_EOF); }
static void reenter_pause_writing(void **state) { run_reentrant(LOOP(state), AT_PAUSE); }
static void reenter_resume_writing(void **state) { run_reentrant(LOOP(state), AT_RESUME); }
static void reenter_sendfile_done(void **state) { run_reentrant(LOOP(state), AT_SENDFILE_DONE); }
static void reenter_connection_lost(void **state) { run_reentrant(LOOP(state), AT_LOST); }

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        CASE(buffered_one_byte_buffer),
        CASE(buffered_large_buffer),
        CASE(buffered_empty_buffer_aborts),
        CASE(buffered_half_set_is_einval),
        CASE(set_protocol_mid_stream),
        CASE(reenter_connection_made),
        CASE(reenter_data_received),
        CASE(reenter_get_buffer),
        CASE(reenter_buffer_updated),
        CASE(reenter_eof_received),
        CASE(reenter_pause_writing),
        CASE(reenter_resume_writing),
        CASE(reenter_sendfile_done),
        CASE(reenter_connection_lost),
    };
    return TEST_MAIN("test_transport_callbacks", tests);
}
