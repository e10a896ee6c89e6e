/* Shared scaffolding for the TLS tests: throwaway certificates made at test time with the
   openssl command (a CA, a server certificate for localhost / 127.0.0.1 signed by it, and
   an unrelated second CA), an echo-capable protocol that records everything, and loop
   helpers. Nothing here is committed key material: it all lives in a mkdtemp directory
   removed at the end of the case. */
#ifndef AIOL_TLS_COMMON_H
#define AIOL_TLS_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cmocka.h>

#include <openssl/ssl.h>

#include "aioloop.h"

#define CASE(name) cmocka_unit_test_setup_teardown(name, tls_setup, tls_teardown)

static char g_dir[64];
static char g_ca[128], g_ca_key[128], g_cert[128], g_key[128], g_other_ca[128];

static int sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int tls_setup(void **state) {
    (void)state;
    strcpy(g_dir, "/tmp/aiol-tls-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_ca, sizeof g_ca, "%s/ca.pem", g_dir);
    snprintf(g_ca_key, sizeof g_ca_key, "%s/ca.key", g_dir);
    snprintf(g_cert, sizeof g_cert, "%s/server.pem", g_dir);
    snprintf(g_key, sizeof g_key, "%s/server.key", g_dir);
    snprintf(g_other_ca, sizeof g_other_ca, "%s/other-ca.pem", g_dir);
    const char *q = ">/dev/null 2>&1";
    if (sh("cd %s && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
           "keyUsage=digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth\\n' > ext.cnf",
           g_dir) ||
        sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout ca.key -out ca.pem -days 2 -subj /CN=aioloop-test-ca %s", g_dir, q) ||
        sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=aioloop-other-ca %s", g_dir, q) ||
        sh("cd %s && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout server.key -out server.csr -subj /CN=localhost %s", g_dir, q) ||
        sh("cd %s && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
           "-out server.pem -days 2 -extfile ext.cnf %s", g_dir, q)) {
        fprintf(stderr, "tls_setup: making certificates with the openssl command failed\n");
        return -1;
    }
    return 0;
}

static int tls_teardown(void **state) {
    (void)state;
    if (g_dir[0]) sh("rm -rf %s", g_dir);
    return 0;
}

/* ---- loop helpers ----------------------------------------------------------------- */

static void noop_cb(aiol_loop *loop, void *ud) { (void)loop; (void)ud; }

/* Runs the loop until pred(arg) or max_ms pass; returns pred's last value. */
static int run_until(aiol_loop *loop, int (*pred)(void *), void *arg, unsigned max_ms) {
    uint64_t end = aiol_loop_now(loop) + (uint64_t)max_ms * 1000000u;
    while (!pred(arg)) {
        if (aiol_loop_now(loop) > end) return pred(arg);
        aiol_loop_call_later(loop, 5 * 1000000u, noop_cb, NULL, NULL, NULL);
        int rc = aiol_loop_run(loop, AIOL_RUN_ONCE);
        if (rc < 0) return pred(arg);
    }
    return 1;
}

static int int_set(void *p) { return *(int *)p != 0; }

static void run_ms(aiol_loop *loop, unsigned ms) {
    int never = 0;
    run_until(loop, int_set, &never, ms);
}

/* ---- a recording protocol --------------------------------------------------------- */

enum { MODE_SINK = 0, MODE_ECHO = 1 };

typedef struct conn {
    int mode;
    aiol_transport *t;
    int made, lost, lost_status, destroyed, eofs, pauses, resumes, data_calls;
    int pause_in_data;         /* pause_reading in the first data_received */
    size_t close_after_bytes;  /* close (after writing `reply_len` bytes) once this many came */
    size_t reply_len;
    int eof_return;
    size_t rx;
    uint64_t rx_hash;
    size_t max_wbuf;
    int done_called, done_status;
    aiol_transport *done_t;
} conn;

static uint64_t fnv(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
#define FNV0 14695981039346656037ull

static void c_made(aiol_transport *t, void *ud) {
    conn *c = (conn *)ud;
    c->t = t;
    c->made++;
}

static void c_data(aiol_transport *t, const void *data, size_t len, void *ud) {
    conn *c = (conn *)ud;
    c->data_calls++;
    c->rx += len;
    c->rx_hash = fnv(c->rx_hash, data, len);
    if (c->mode == MODE_ECHO) aiol_transport_write(t, data, len);
    if (c->pause_in_data && c->data_calls == 1) aiol_transport_pause_reading(t);
    if (c->close_after_bytes && c->rx >= c->close_after_bytes) {
        c->close_after_bytes = 0;
        if (c->reply_len) {
            unsigned char *big = (unsigned char *)malloc(c->reply_len);
            for (size_t i = 0; i < c->reply_len; i++) big[i] = (unsigned char)(i * 7);
            aiol_transport_write(t, big, c->reply_len);
            free(big);
        }
        aiol_transport_close(t);
    }
    size_t w = aiol_transport_get_write_buffer_size(t);
    if (w > c->max_wbuf) c->max_wbuf = w;
}

static int c_eof(aiol_transport *t, void *ud) {
    (void)t;
    conn *c = (conn *)ud;
    c->eofs++;
    return c->eof_return;
}

static void c_lost(aiol_transport *t, int status, void *ud) {
    (void)t;
    conn *c = (conn *)ud;
    c->lost++;
    c->lost_status = status;
}

static void c_pause(aiol_transport *t, void *ud) {
    (void)t;
    ((conn *)ud)->pauses++;
}

static void c_resume(aiol_transport *t, void *ud) {
    (void)t;
    ((conn *)ud)->resumes++;
}

static void c_destroy(void *ud) { ((conn *)ud)->destroyed++; }

static const aiol_protocol conn_protocol = {
    sizeof(aiol_protocol), c_made, c_data, c_eof, c_lost, c_pause, c_resume, NULL, NULL, c_destroy,
};

/* The server side: up to 8 accepted connections, each a conn from this array. */
typedef struct server_side {
    conn conns[8];
    int accepted;
    int mode;
    int eof_return;
    size_t close_after_bytes, reply_len;
    int closed_waited;
} server_side;

static int factory(void *fd, const struct sockaddr *peer, socklen_t len, void **ud) {
    (void)peer;
    (void)len;
    server_side *s = (server_side *)fd;
    if (s->accepted >= 8) return -1;
    conn *c = &s->conns[s->accepted++];
    memset(c, 0, sizeof *c);
    c->mode = s->mode;
    c->eof_return = s->eof_return;
    c->close_after_bytes = s->close_after_bytes;
    c->reply_len = s->reply_len;
    c->rx_hash = FNV0;
    *ud = c;
    return 0;
}

static aiol_tls_context *server_ctx(void) {
    aiol_tls_context *ctx = NULL;
    assert_int_equal(aiol_tls_context_new_server(g_cert, g_key, &ctx), 0);
    return ctx;
}

static aiol_tls_context *client_ctx(const char *ca, int verify) {
    aiol_tls_context *ctx = NULL;
    assert_int_equal(aiol_tls_context_new_client(ca, verify, &ctx), 0);
    return ctx;
}

static aiol_server *start_tls_server(aiol_loop *loop, aiol_tls_context *ctx, server_side *s,
                                     uint64_t hs_timeout_ns, uint16_t *port) {
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    cfg.tls = ctx;
    cfg.tls_handshake_timeout_ns = hs_timeout_ns;
    aiol_server *srv = NULL;
    assert_int_equal(aiol_server_start(loop, &cfg, &conn_protocol, factory, s, NULL, &srv), 0);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    assert_int_equal(aiol_server_sockname(srv, 0, &ss, &sl), 0);
    *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return srv;
}

static void on_done(aiol_transport *t, int status, void *ud) {
    conn *c = (conn *)ud;
    c->done_called++;
    c->done_status = status;
    c->done_t = t;
}

static int tls_connect(aiol_loop *loop, aiol_tls_context *ctx, uint16_t port,
                       const char *server_hostname, conn *c) {
    aiol_connect_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    cfg.port = port;
    cfg.tls = ctx;
    cfg.server_hostname = server_hostname;
    c->rx_hash = FNV0;
    return aiol_loop_connect(loop, &cfg, &conn_protocol, c, on_done, c, NULL);
}

static int done_called(void *p) { return ((conn *)p)->done_called != 0; }
static int conn_destroyed(void *p) { return ((conn *)p)->destroyed != 0; }

/* A raw TCP socket connected to 127.0.0.1:port (blocking). */
__attribute__((unused)) static int raw_connect(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

__attribute__((unused)) static void raw_rst_close(int fd) {
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static void free_loop(aiol_loop *loop) {
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(aiol_loop_free(loop), 0);
}

static int test_main(const char *group, const struct CMUnitTest *tests, size_t n, int argc,
                     char **argv) {
    if (argc > 1 && strcmp(argv[1], "--registered") == 0) {
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            int found = 0;
            for (int a = 2; a < argc; a++) found |= strcmp(tests[i].name, argv[a]) == 0;
            if (!found) {
                fprintf(stderr, "%s: case %s is not registered in meson.build\n", group, tests[i].name);
                bad = 1;
            }
        }
        for (int a = 2; a < argc; a++) {
            int found = 0;
            for (size_t i = 0; i < n; i++) found |= strcmp(tests[i].name, argv[a]) == 0;
            if (!found) {
                fprintf(stderr, "%s: %s is registered but is not a case\n", group, argv[a]);
                bad = 1;
            }
        }
        return bad;
    }
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}

#define TEST_MAIN(group, tests) \
    test_main(group, tests, sizeof(tests) / sizeof((tests)[0]), argc, argv)

#endif
