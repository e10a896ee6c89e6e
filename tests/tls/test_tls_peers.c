/* TLS transports against hostile and slow peers: silent and half-finished handshakes
   (timeout), plaintext on the TLS port, resets mid-handshake and mid-transfer, close from
   data_received with data queued, a slow-reading peer (pause_writing / resume_writing,
   bounded memory), pause_reading holding back decrypted plaintext, sendfile over TLS,
   wait_closed counting handshakes, and openssl s_client against the server. */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include "tls_common.h"

extern char **environ;

#define MS 1000000ull

typedef struct srv {
    aiol_loop *loop;
    aiol_tls_context *sctx;
    aiol_server *s;
    server_side ss;
    uint16_t port;
} srv;

static void srv_open(srv *v, int mode, uint64_t hs_timeout_ns) {
    memset(v, 0, sizeof *v);
    assert_int_equal(aiol_loop_new(&v->loop), 0);
    v->sctx = server_ctx();
    v->ss.mode = mode;
    v->s = start_tls_server(v->loop, v->sctx, &v->ss, hs_timeout_ns, &v->port);
}

static void srv_close(srv *v) {
    aiol_server_free(v->s);
    free_loop(v->loop);
    for (int i = 0; i < v->ss.accepted; i++) assert_int_equal(v->ss.conns[i].destroyed, 1);
    aiol_tls_context_free(v->sctx);
}

static int first_destroyed(void *p) {
    server_side *s = (server_side *)p;
    return s->accepted > 0 && s->conns[0].destroyed;
}

/* A raw peer that sends `bytes` (maybe none) and then waits: the server must close it once
   the handshake timeout expires, release the fd, never run connection_made. */
static void silent_peer(const void *bytes, size_t n) {
    srv v;
    srv_open(&v, MODE_ECHO, 200 * MS);
    int fd = raw_connect(v.port);
    if (n) assert_int_equal(send(fd, bytes, n, 0), (ssize_t)n);
    uint64_t t0 = aiol_loop_now(v.loop);
    assert_true(run_until(v.loop, first_destroyed, &v.ss, 5000));
    uint64_t took = aiol_loop_now(v.loop) - t0;
    assert_true(took >= 150 * MS);
    assert_true(took < 3000 * MS);
    assert_int_equal(v.ss.conns[0].made, 0);
    assert_int_equal(v.ss.conns[0].lost, 0);
    /* the server closed its end: the peer reads EOF */
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[64];
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
    close(fd);
    srv_close(&v);
}

static void handshake_timeout_silent(void **state) {
    (void)state;
    silent_peer(NULL, 0);
}

/* The first bytes of a TLS 1.2 ClientHello record announcing 512 bytes. */
static const unsigned char half_hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01,
                                           0xfc, 0x03, 0x03, 0x11, 0x22, 0x33, 0x44, 0x55};

static void handshake_timeout_half_hello(void **state) {
    (void)state;
    silent_peer(half_hello, sizeof half_hello);
}

static int reports;
static int report_code;
static void count_reports(const aiol_error_context *ctx, void *ud) {
    (void)ud;
    reports++;
    report_code = ctx->code;
}

static void plaintext_peer(int debug) {
    srv v;
    srv_open(&v, MODE_ECHO, 0);
    reports = 0;
    assert_int_equal(aiol_loop_set_exception_handler(v.loop, count_reports, NULL, NULL), 0);
    aiol_loop_set_debug(v.loop, debug);
    int fd = raw_connect(v.port);
    const char req[] = "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
    assert_true(run_until(v.loop, first_destroyed, &v.ss, 5000));
    assert_int_equal(v.ss.conns[0].made, 0);
    run_ms(v.loop, 20);
    if (debug) {
        assert_true(reports >= 1);
        assert_int_equal(report_code, AIOL_ETLS);
    } else {
        assert_int_equal(reports, 0);
    }
    close(fd);
    aiol_loop_set_debug(v.loop, 0);
    srv_close(&v);
}

static void plaintext_on_tls_port(void **state) {
    (void)state;
    plaintext_peer(0);
}

static void plaintext_reported_in_debug(void **state) {
    (void)state;
    plaintext_peer(1);
}

static void rst_mid_handshake(void **state) {
    (void)state;
    srv v;
    srv_open(&v, MODE_ECHO, 0);
    int fd = raw_connect(v.port);
    assert_int_equal(send(fd, half_hello, sizeof half_hello, 0), (ssize_t)sizeof half_hello);
    run_ms(v.loop, 50);
    raw_rst_close(fd);
    assert_true(run_until(v.loop, first_destroyed, &v.ss, 5000));
    assert_int_equal(v.ss.conns[0].made, 0);
    assert_int_equal(v.ss.conns[0].lost, 0);
    srv_close(&v);
}

/* ---- aioloop client helpers ----------------------------------------------------------- */

typedef struct both {
    srv v;
    aiol_tls_context *cctx;
    conn cl;
} both;

static void both_open(both *b, int mode) {
    srv_open(&b->v, mode, 0);
    b->cctx = client_ctx(g_ca, 1);
    memset(&b->cl, 0, sizeof b->cl);
    assert_int_equal(tls_connect(b->v.loop, b->cctx, b->v.port, "localhost", &b->cl), 0);
    assert_true(run_until(b->v.loop, done_called, &b->cl, 10000));
    assert_int_equal(b->cl.done_status, 0);
    assert_true(run_until(b->v.loop, int_set, &b->v.ss.conns[0].made, 5000));
}

static void both_close(both *b) {
    if (!b->cl.lost && b->cl.t) aiol_transport_close(b->cl.t);
    run_until(b->v.loop, conn_destroyed, &b->cl, 5000);
    srv_close(&b->v);
    aiol_tls_context_free(b->cctx);
}

static int srv_lost(void *p) { return ((server_side *)p)->conns[0].lost != 0; }

static void rst_mid_transfer(void **state) {
    (void)state;
    /* a blocking OpenSSL client: handshake, send some, then reset the connection */
    srv v;
    srv_open(&v, MODE_SINK, 0);
    int fd = raw_connect(v.port);
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(cctx);
    SSL_set_fd(ssl, fd);
    int rc;
    uint64_t end = aiol_loop_now(v.loop) + 5000 * MS;
    while ((rc = SSL_connect(ssl)) != 1 && aiol_loop_now(v.loop) < end) {
        int e = SSL_get_error(ssl, rc);
        assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
        aiol_loop_call_later(v.loop, 1 * MS, noop_cb, NULL, NULL, NULL);
        aiol_loop_run(v.loop, AIOL_RUN_ONCE);
    }
    assert_int_equal(rc, 1);
    static char data[64 * 1024];
    memset(data, 'x', sizeof data);
    size_t sent = 0;
    while (sent < 4 * sizeof data) {
        int n = SSL_write(ssl, data, sizeof data);
        if (n > 0) sent += (size_t)n;
        aiol_loop_run(v.loop, AIOL_RUN_NOWAIT);
    }
    assert_true(run_until(v.loop, int_set, &v.ss.conns[0].made, 5000));
    raw_rst_close(fd);
    SSL_free(ssl);
    SSL_CTX_free(cctx);
    assert_true(run_until(v.loop, srv_lost, &v.ss, 5000));
    assert_int_equal(v.ss.conns[0].lost, 1);
    assert_true(run_until(v.loop, first_destroyed, &v.ss, 5000));
    srv_close(&v);
}

static int cl_got(void *p) {
    conn *c = (conn *)p;
    return c->lost != 0;
}

static void close_in_data_received_with_queue(void **state) {
    (void)state;
    both b;
    memset(&b, 0, sizeof b);
    /* the server answers the first byte with 2 MiB and closes inside data_received */
    srv_open(&b.v, MODE_SINK, 0);
    b.v.ss.close_after_bytes = 1;
    b.v.ss.reply_len = 2u * 1024 * 1024;
    b.cctx = client_ctx(g_ca, 1);
    assert_int_equal(tls_connect(b.v.loop, b.cctx, b.v.port, "localhost", &b.cl), 0);
    assert_true(run_until(b.v.loop, done_called, &b.cl, 10000));
    assert_int_equal(b.cl.done_status, 0);
    assert_int_equal(aiol_transport_write(b.cl.t, "!", 1), 0);
    assert_true(run_until(b.v.loop, cl_got, &b.cl, 10000));
    assert_int_equal(b.cl.rx, 2u * 1024 * 1024);
    assert_int_equal(b.cl.eofs, 1);  /* close_notify, then EOF */
    assert_int_equal(b.cl.lost_status, 0);
    assert_true(run_until(b.v.loop, first_destroyed, &b.v.ss, 5000));
    assert_int_equal(b.v.ss.conns[0].lost_status, 0);
    both_close(&b);
}

static void slow_reader_flow_control(void **state) {
    (void)state;
    both b;
    memset(&b, 0, sizeof b);
    both_open(&b, MODE_SINK);
    conn *sc = &b.v.ss.conns[0];
    aiol_transport *st = sc->t;
    aiol_transport_pause_reading(b.cl.t);  /* the client reads slowly: not at all for now */
    static unsigned char chunk[64 * 1024];
    memset(chunk, 'y', sizeof chunk);
    size_t written = 0, max_buf = 0, total = 32u * 1024 * 1024;
    uint64_t end = aiol_loop_now(b.v.loop) + 60000 * MS;
    int toggle = 0;
    while (b.cl.rx < total && aiol_loop_now(b.v.loop) < end) {
        while (written < total && sc->pauses == sc->resumes) {
            assert_int_equal(aiol_transport_write(st, chunk, sizeof chunk), 0);
            written += sizeof chunk;
            size_t w = aiol_transport_get_write_buffer_size(st);
            if (w > max_buf) max_buf = w;
            aiol_loop_run(b.v.loop, AIOL_RUN_NOWAIT);  /* pause_writing is delivered */
        }
        /* the reader wakes up now and then */
        if (++toggle % 4 == 0) aiol_transport_resume_reading(b.cl.t);
        else aiol_transport_pause_reading(b.cl.t);
        aiol_loop_call_later(b.v.loop, 2 * MS, noop_cb, NULL, NULL, NULL);
        aiol_loop_run(b.v.loop, AIOL_RUN_ONCE);
        if (written >= total) aiol_transport_resume_reading(b.cl.t);
    }
    assert_int_equal(b.cl.rx, total);
    assert_true(sc->pauses >= 1);
    assert_true(sc->resumes >= 1);
    /* bounded: the high-water mark plus one write and one TLS record's overhead */
    assert_true(max_buf < 64 * 1024 + sizeof chunk + 16 * 1024);
    both_close(&b);
}

static int rx_at_least(void *p) { return ((conn *)p)->rx >= 3 * 16384; }

static void pause_reading_holds_plaintext(void **state) {
    (void)state;
    both b;
    memset(&b, 0, sizeof b);
    both_open(&b, MODE_SINK);
    b.cl.pause_in_data = 1;
    /* three TLS records in one burst: after the first data_received pauses, the others
       (already received and decryptable) must wait for resume_reading */
    static char rec[16384];
    memset(rec, 'r', sizeof rec);
    aiol_buf bufs[3] = {{rec, sizeof rec}, {rec, sizeof rec}, {rec, sizeof rec}};
    assert_int_equal(aiol_transport_writev(b.v.ss.conns[0].t, bufs, 3), 0);
    assert_true(run_until(b.v.loop, int_set, &b.cl.data_calls, 5000));
    run_ms(b.v.loop, 100);
    assert_int_equal(b.cl.data_calls, 1);
    assert_int_equal(aiol_transport_is_reading(b.cl.t), 0);
    assert_int_equal(aiol_transport_resume_reading(b.cl.t), 0);
    assert_true(run_until(b.v.loop, rx_at_least, &b.cl, 5000));
    assert_int_equal(b.cl.rx, 3 * sizeof rec);
    both_close(&b);
}

static int sf_done, sf_status;
static uint64_t sf_sent;
static void on_sendfile(aiol_transport *t, int status, uint64_t sent, void *ud) {
    (void)t;
    (void)ud;
    sf_done++;
    sf_status = status;
    sf_sent = sent;
}

static int rx_is(void *p) { return ((conn *)p)->rx >= 3u * 1024 * 1024 + 5; }

static void sendfile_over_tls(void **state) {
    (void)state;
    both b;
    memset(&b, 0, sizeof b);
    both_open(&b, MODE_SINK);
    char path[160];
    snprintf(path, sizeof path, "%s/file.bin", g_dir);
    FILE *f = fopen(path, "wb");
    uint64_t h = FNV0;
    for (size_t i = 0; i < 3u * 1024 * 1024 + 5; i++) {
        unsigned char c = (unsigned char)(i * 31 + 7);
        fputc(c, f);
        h = fnv(h, &c, 1);
    }
    fclose(f);
    int fd = open(path, O_RDONLY);
    sf_done = 0;
    assert_int_equal(aiol_transport_sendfile(b.v.ss.conns[0].t, fd, 0, 0, on_sendfile, NULL), 0);
    assert_true(run_until(b.v.loop, rx_is, &b.cl, 20000));
    assert_true(run_until(b.v.loop, int_set, &sf_done, 5000));
    assert_int_equal(sf_status, 0);
    assert_int_equal(sf_sent, 3u * 1024 * 1024 + 5);
    assert_true(b.cl.rx_hash == h);
    close(fd);
    both_close(&b);
}

static int waited;
static void on_wait_closed(aiol_server *s, void *ud) {
    (void)s;
    (void)ud;
    waited++;
}

static void wait_closed_counts_handshakes(void **state) {
    (void)state;
    srv v;
    srv_open(&v, MODE_ECHO, 300 * MS);
    int fd = raw_connect(v.port);
    assert_true(run_until(v.loop, int_set, &v.ss.accepted, 5000));
    waited = 0;
    assert_int_equal(aiol_server_close(v.s), 0);
    assert_int_equal(aiol_server_wait_closed(v.s, on_wait_closed, NULL), 0);
    run_ms(v.loop, 100);
    assert_int_equal(waited, 0);  /* the handshake in progress is still the server's */
    assert_true(run_until(v.loop, int_set, &waited, 5000));
    assert_int_equal(v.ss.conns[0].destroyed, 1);
    close(fd);
    srv_close(&v);
}

static void connect_handshake_timeout(void **state) {
    (void)state;
    /* a plain listener that never answers the ClientHello */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 4), 0);
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    aiol_loop *loop;
    assert_int_equal(aiol_loop_new(&loop), 0);
    aiol_tls_context *cctx = client_ctx(g_ca, 1);
    conn cl;
    memset(&cl, 0, sizeof cl);
    aiol_connect_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    cfg.port = ntohs(a.sin_port);
    cfg.tls = cctx;
    cfg.server_hostname = "localhost";
    cfg.tls_handshake_timeout_ns = 200 * MS;
    cl.rx_hash = FNV0;
    assert_int_equal(aiol_loop_connect(loop, &cfg, &conn_protocol, &cl, on_done, &cl, NULL), 0);
    assert_true(run_until(loop, done_called, &cl, 5000));
    assert_int_equal(cl.done_status, AIOL_ETIMEDOUT);
    assert_null(cl.done_t);
    assert_true(run_until(loop, conn_destroyed, &cl, 5000));
    assert_int_equal(cl.made, 0);
    free_loop(loop);
    aiol_tls_context_free(cctx);
    close(lfd);
}

/* aiol_loop_close while a server handshake and a client handshake are both in progress
   (the client talks to a silent raw listener): everything is torn down inside close, the
   connect reports AIOL_ECANCELED, every destroy runs. */
static void loop_close_mid_handshake(void **state) {
    (void)state;
    srv v;
    srv_open(&v, MODE_ECHO, 0);
    int fd = raw_connect(v.port);
    assert_true(run_until(v.loop, int_set, &v.ss.accepted, 5000));
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 4), 0);
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    aiol_tls_context *cctx = client_ctx(g_ca, 1);
    conn cl;
    memset(&cl, 0, sizeof cl);
    assert_int_equal(tls_connect(v.loop, cctx, ntohs(a.sin_port), "localhost", &cl), 0);
    run_ms(v.loop, 100);
    assert_int_equal(cl.done_called, 0);
    assert_int_equal(aiol_loop_close(v.loop), 0);
    assert_int_equal(cl.done_called, 1);
    assert_int_equal(cl.done_status, AIOL_ECANCELED);
    assert_int_equal(cl.destroyed, 1);
    assert_int_equal(v.ss.conns[0].destroyed, 1);
    assert_int_equal(v.ss.conns[0].made, 0);
    srv_close(&v);
    aiol_tls_context_free(cctx);
    close(fd);
    close(lfd);
}

static void cancel_connect_mid_handshake(void **state) {
    (void)state;
    srv v;
    srv_open(&v, MODE_ECHO, 0);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 4), 0);
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    aiol_tls_context *cctx = client_ctx(g_ca, 1);
    conn cl;
    memset(&cl, 0, sizeof cl);
    aiol_connect_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    cfg.port = ntohs(a.sin_port);
    cfg.tls = cctx;
    cfg.server_hostname = "localhost";
    aiol_handle *h = NULL;
    assert_int_equal(aiol_loop_connect(v.loop, &cfg, &conn_protocol, &cl, on_done, &cl, &h), 0);
    run_ms(v.loop, 100);  /* connected, ClientHello sent, no answer */
    assert_int_equal(aiol_handle_cancel(h), 1);
    assert_true(run_until(v.loop, conn_destroyed, &cl, 5000));
    assert_int_equal(cl.done_called, 1);
    assert_int_equal(cl.done_status, AIOL_ECANCELED);
    assert_int_equal(cl.made, 0);
    aiol_handle_release(h);
    srv_close(&v);
    aiol_tls_context_free(cctx);
    close(lfd);
}

static int child_exited(void *p) {
    int *st = (int *)p;
    if (st[1]) return 1;
    int status;
    if (waitpid((pid_t)st[0], &status, WNOHANG) > 0) {
        st[1] = 1;
        st[2] = status;
    }
    return st[1];
}

static void openssl_s_client(void **state) {
    (void)state;
    if (system("command -v openssl >/dev/null 2>&1") != 0) skip();
    srv v;
    srv_open(&v, MODE_ECHO, 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "printf 'hello-over-tls\\n' | (cat; sleep 1) | openssl s_client -connect 127.0.0.1:%u "
             "-servername localhost -verify_hostname localhost -CAfile %s -verify_return_error "
             "-quiet -no_ign_eof > %s/out 2> %s/err",
             (unsigned)v.port, g_ca, g_dir, g_dir);
    char *argv[] = {(char *)"sh", (char *)"-c", cmd, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ), 0);
    int st[3] = {(int)pid, 0, 0};
    assert_true(run_until(v.loop, child_exited, st, 20000));
    assert_true(WIFEXITED(st[2]));
    char path[160], out[256] = {0};
    snprintf(path, sizeof path, "%s/out", g_dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    fclose(f);
    out[n] = 0;
    assert_non_null(strstr(out, "hello-over-tls"));
    assert_true(run_until(v.loop, first_destroyed, &v.ss, 5000));
    assert_int_equal(v.ss.conns[0].made, 1);
    srv_close(&v);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        CASE(handshake_timeout_silent),
        CASE(handshake_timeout_half_hello),
        CASE(plaintext_on_tls_port),
        CASE(plaintext_reported_in_debug),
        CASE(rst_mid_handshake),
        CASE(rst_mid_transfer),
        CASE(close_in_data_received_with_queue),
        CASE(slow_reader_flow_control),
        CASE(pause_reading_holds_plaintext),
        CASE(sendfile_over_tls),
        CASE(wait_closed_counts_handshakes),
        CASE(connect_handshake_timeout),
        CASE(openssl_s_client),
        CASE(loop_close_mid_handshake),
        CASE(cancel_connect_mid_handshake),
    };
    return TEST_MAIN("test_tls_peers", tests);
}
