/* TLS transports: contexts, echo over real OpenSSL on both ends (aioloop server and
   aioloop client over 127.0.0.1), verification, ALPN / SNI getters, EOF rules. */
#include "tls_common.h"

typedef struct pair {
    aiol_loop *loop;
    aiol_tls_context *sctx, *cctx;
    aiol_server *srv;
    server_side ss;
    conn cl;
    uint16_t port;
} pair;

static void pair_open(pair *p, const char *ca, int verify, const char *hostname) {
    memset(p, 0, sizeof *p);
    assert_int_equal(aiol_loop_new(&p->loop), 0);
    p->sctx = server_ctx();
    p->cctx = client_ctx(ca, verify);
    p->ss.mode = MODE_ECHO;
    p->srv = start_tls_server(p->loop, p->sctx, &p->ss, 0, &p->port);
    assert_int_equal(tls_connect(p->loop, p->cctx, p->port, hostname, &p->cl), 0);
}

static void pair_close(pair *p) {
    if (p->cl.t && !p->cl.lost) aiol_transport_close(p->cl.t);
    run_until(p->loop, conn_destroyed, &p->cl, 5000);
    aiol_server_free(p->srv);
    free_loop(p->loop);
    for (int i = 0; i < p->ss.accepted; i++) assert_int_equal(p->ss.conns[i].destroyed, 1);
    assert_int_equal(aiol_tls_context_free(p->sctx), 0);
    assert_int_equal(aiol_tls_context_free(p->cctx), 0);
}

static void echo_n(size_t total) {
    pair p;
    pair_open(&p, g_ca, 1, "localhost");
    assert_true(run_until(p.loop, done_called, &p.cl, 10000));
    assert_int_equal(p.cl.done_status, 0);
    assert_non_null(p.cl.done_t);
    assert_int_equal(p.cl.made, 1);  /* connection_made before done */
    aiol_transport *t = p.cl.done_t;
    assert_int_equal(aiol_transport_can_write_eof(t), 0);
    assert_int_equal(aiol_transport_write_eof(t), AIOL_ESTATE);
    assert_non_null(aiol_transport_tls_ssl(t));

    size_t chunk = 256 * 1024;
    unsigned char *buf = malloc(chunk);
    uint64_t tx_hash = FNV0;
    size_t sent = 0, seed = 1;
    uint64_t end = aiol_loop_now(p.loop) + 120ull * 1000000000u;
    while (p.cl.rx < total && aiol_loop_now(p.loop) < end && !p.cl.lost) {
        if (sent < total && aiol_transport_get_write_buffer_size(t) < 1024 * 1024) {
            size_t n = total - sent < chunk ? total - sent : chunk;
            for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)((seed = seed * 1103515245 + 12345) >> 16);
            tx_hash = fnv(tx_hash, buf, n);
            assert_int_equal(aiol_transport_write(t, buf, n), 0);
            sent += n;
        }
        aiol_loop_call_later(p.loop, 1000000u, noop_cb, NULL, NULL, NULL);
        aiol_loop_run(p.loop, AIOL_RUN_ONCE);
    }
    free(buf);
    assert_int_equal(p.cl.rx, total);
    assert_true(p.cl.rx_hash == tx_hash);
    assert_int_equal(p.ss.accepted, 1);
    assert_int_equal(p.ss.conns[0].made, 1);
    assert_int_equal(p.ss.conns[0].rx, total);
    pair_close(&p);
    assert_int_equal(p.cl.lost, 1);
    assert_int_equal(p.cl.lost_status, 0);
}

static void echo_1_byte(void **state) { (void)state; echo_n(1); }
static void echo_16k_plus_1(void **state) { (void)state; echo_n(16 * 1024 + 1); }
static void echo_64mib_hash(void **state) { (void)state; echo_n(64u * 1024 * 1024); }

static void verify_fail(const char *ca, const char *hostname) {
    pair p;
    pair_open(&p, ca, 1, hostname);
    assert_true(run_until(p.loop, done_called, &p.cl, 10000));
    assert_null(p.cl.done_t);
    assert_int_equal(p.cl.done_status, AIOL_ETLS);
    assert_int_equal(p.cl.made, 0);
    assert_true(run_until(p.loop, conn_destroyed, &p.cl, 5000));
    assert_int_equal(p.cl.lost, 0);
    /* the server side never saw connection_made and let the attempt go */
    server_side *s = &p.ss;
    run_ms(p.loop, 100);
    assert_int_equal(s->accepted, 1);
    assert_int_equal(s->conns[0].made, 0);
    pair_close(&p);
}

static void verify_wrong_ca(void **state) { (void)state; verify_fail(g_other_ca, "localhost"); }
static void verify_wrong_hostname(void **state) { (void)state; verify_fail(g_ca, "example.com"); }

static void verify_ip_address(void **state) {
    (void)state;
    pair p;
    pair_open(&p, g_ca, 1, NULL);  /* server_hostname NULL: host, 127.0.0.1 (an IP SAN) */
    assert_true(run_until(p.loop, done_called, &p.cl, 10000));
    assert_int_equal(p.cl.done_status, 0);
    pair_close(&p);
}

static void verify_off_accepts_unknown_ca(void **state) {
    (void)state;
    pair p;
    pair_open(&p, g_other_ca, 0, "example.com");
    assert_true(run_until(p.loop, done_called, &p.cl, 10000));
    assert_int_equal(p.cl.done_status, 0);
    pair_close(&p);
}

static int alpn_case(const char *const *sp, size_t sn, const char *const *cp, size_t cn,
                     char *out_server, char *out_client) {
    aiol_loop *loop;
    assert_int_equal(aiol_loop_new(&loop), 0);
    aiol_tls_context *sctx = server_ctx(), *cctx = client_ctx(g_ca, 1);
    assert_int_equal(aiol_tls_context_set_alpn(sctx, sp, sn), 0);
    assert_int_equal(aiol_tls_context_set_alpn(cctx, cp, cn), 0);
    server_side ss;
    memset(&ss, 0, sizeof ss);
    uint16_t port;
    aiol_server *srv = start_tls_server(loop, sctx, &ss, 0, &port);
    assert_int_equal(aiol_tls_context_set_alpn(sctx, sp, sn), AIOL_ESTATE);
    conn cl;
    memset(&cl, 0, sizeof cl);
    assert_int_equal(tls_connect(loop, cctx, port, "localhost", &cl), 0);
    assert_int_equal(aiol_tls_context_set_alpn(cctx, cp, cn), AIOL_ESTATE);
    assert_true(run_until(loop, done_called, &cl, 10000));
    assert_int_equal(cl.done_status, 0);
    assert_true(run_until(loop, int_set, &ss.conns[0].made, 5000));
    const char *proto;
    size_t len;
    assert_int_equal(aiol_transport_tls_alpn(cl.t, &proto, &len), 0);
    snprintf(out_client, 32, "%.*s", (int)len, proto ? proto : "");
    assert_int_equal(aiol_transport_tls_alpn(ss.conns[0].t, &proto, &len), 0);
    snprintf(out_server, 32, "%.*s", (int)len, proto ? proto : "");
    /* SNI and the peer certificate while we are here */
    const char *sn_server = aiol_transport_tls_server_name(ss.conns[0].t);
    assert_non_null(sn_server);
    assert_string_equal(sn_server, "localhost");
    const void *der;
    size_t der_len;
    assert_int_equal(aiol_transport_tls_peer_cert_der(cl.t, &der, &der_len), 0);
    assert_non_null(der);
    assert_true(der_len > 100);
    assert_int_equal(aiol_transport_tls_peer_cert_der(ss.conns[0].t, &der, &der_len), 0);
    assert_null(der);  /* no client certificate asked for */
    aiol_transport_close(cl.t);
    run_until(loop, conn_destroyed, &cl, 5000);
    aiol_server_free(srv);
    free_loop(loop);
    aiol_tls_context_free(sctx);
    aiol_tls_context_free(cctx);
    return 0;
}

static void alpn_negotiated(void **state) {
    (void)state;
    const char *sp[] = {"h2", "http/1.1"}, *cp[] = {"http/1.1", "h2"};
    char s[32], c[32];
    alpn_case(sp, 2, cp, 2, s, c);
    assert_string_equal(s, "h2");  /* server preference */
    assert_string_equal(c, "h2");
}

static void alpn_mismatched(void **state) {
    (void)state;
    const char *sp[] = {"h2"}, *cp[] = {"spdy/3"};
    char s[32], c[32];
    alpn_case(sp, 1, cp, 1, s, c);
    assert_string_equal(s, "");
    assert_string_equal(c, "");
}

static void context_api(void **state) {
    (void)state;
    assert_int_equal(aiol_has_feature("tls"), 1);
    aiol_tls_context *ctx = NULL;
    assert_int_equal(aiol_tls_context_new_server("/nonexistent.pem", g_key, &ctx), AIOL_ETLS);
    assert_int_equal(aiol_tls_context_new_server(g_cert, g_ca_key, &ctx), AIOL_ETLS);  /* key mismatch */
    assert_int_equal(aiol_tls_context_new_server(NULL, g_key, &ctx), AIOL_EINVAL);
    assert_int_equal(aiol_tls_context_new_client("/nonexistent.pem", 1, &ctx), AIOL_ETLS);
    assert_int_equal(aiol_tls_context_free(NULL), 0);
    /* PEM in memory */
    char cert[8192], key[8192];
    FILE *f = fopen(g_cert, "rb");
    size_t cl = fread(cert, 1, sizeof cert, f);
    fclose(f);
    f = fopen(g_key, "rb");
    size_t kl = fread(key, 1, sizeof key, f);
    fclose(f);
    assert_int_equal(aiol_tls_context_new_server_pem(cert, cl, key, kl, &ctx), 0);
    assert_non_null(aiol_tls_context_ssl_ctx(ctx));
    assert_int_equal(aiol_tls_context_set_min_version(ctx, 0x0304), 0);
    assert_int_equal(aiol_tls_context_set_min_version(ctx, 0x0301), AIOL_EINVAL);
    const char *bad[] = {""};
    assert_int_equal(aiol_tls_context_set_alpn(ctx, bad, 1), AIOL_EINVAL);
    /* a client context cannot serve, a server context cannot connect */
    aiol_loop *loop;
    assert_int_equal(aiol_loop_new(&loop), 0);
    aiol_tls_context *cctx = client_ctx(g_ca, 1);
    server_side ss;
    memset(&ss, 0, sizeof ss);
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    cfg.tls = cctx;
    aiol_server *srv = NULL;
    assert_int_equal(aiol_server_start(loop, &cfg, &conn_protocol, factory, &ss, NULL, &srv), AIOL_EINVAL);
    conn c;
    memset(&c, 0, sizeof c);
    assert_int_equal(tls_connect(loop, ctx, 1, "localhost", &c), AIOL_EINVAL);
    free_loop(loop);
    assert_int_equal(aiol_tls_context_free(cctx), 0);
    assert_int_equal(aiol_tls_context_free(ctx), 0);
}

static void context_freed_while_in_use(void **state) {
    (void)state;
    pair p;
    pair_open(&p, g_ca, 1, "localhost");
    /* the caller's references go now; the server and the request keep theirs */
    assert_int_equal(aiol_tls_context_free(p.sctx), 0);
    assert_int_equal(aiol_tls_context_free(p.cctx), 0);
    assert_true(run_until(p.loop, done_called, &p.cl, 10000));
    assert_int_equal(p.cl.done_status, 0);
    aiol_transport_write(p.cl.t, "x", 1);
    assert_true(run_until(p.loop, int_set, &p.cl.rx, 5000));
    aiol_transport_close(p.cl.t);
    run_until(p.loop, conn_destroyed, &p.cl, 5000);
    aiol_server_free(p.srv);
    free_loop(p.loop);
}

static void eof_return_ignored(void **state) {
    (void)state;
    pair p;
    pair_open(&p, g_ca, 1, "localhost");
    p.ss.eof_return = 1;  /* would keep a plain transport open */
    assert_true(run_until(p.loop, done_called, &p.cl, 10000));
    assert_int_equal(p.cl.done_status, 0);
    assert_true(run_until(p.loop, int_set, &p.ss.conns[0].made, 5000));
    p.ss.conns[0].eof_return = 1;
    aiol_transport_close(p.cl.t);  /* close_notify */
    assert_true(run_until(p.loop, int_set, &p.ss.conns[0].destroyed, 5000));
    assert_int_equal(p.ss.conns[0].eofs, 1);
    assert_int_equal(p.ss.conns[0].lost, 1);
    assert_int_equal(p.ss.conns[0].lost_status, 0);
    pair_close(&p);
}

static void plain_transport_getters(void **state) {
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    aiol_loop *loop;
    assert_int_equal(aiol_loop_new(&loop), 0);
    conn c;
    memset(&c, 0, sizeof c);
    aiol_transport *t = NULL;
    assert_int_equal(aiol_transport_adopt(loop, sv[0], &conn_protocol, &c, &t), 0);
    const char *proto;
    size_t len;
    const void *der;
    assert_int_equal(aiol_transport_tls_alpn(t, &proto, &len), AIOL_EINVAL);
    assert_int_equal(aiol_transport_tls_peer_cert_der(t, &der, &len), AIOL_EINVAL);
    assert_null(aiol_transport_tls_server_name(t));
    assert_null(aiol_transport_tls_ssl(t));
    assert_int_equal(aiol_transport_can_write_eof(t), 1);
    aiol_transport_abort(t);
    free_loop(loop);
    close(sv[1]);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        CASE(echo_1_byte),
        CASE(echo_16k_plus_1),
        CASE(echo_64mib_hash),
        CASE(verify_wrong_ca),
        CASE(verify_wrong_hostname),
        CASE(verify_ip_address),
        CASE(verify_off_accepts_unknown_ca),
        CASE(alpn_negotiated),
        CASE(alpn_mismatched),
        CASE(context_api),
        CASE(context_freed_while_in_use),
        CASE(eof_return_ignored),
        CASE(plain_transport_getters),
    };
    return TEST_MAIN("test_tls_basic", tests);
}
