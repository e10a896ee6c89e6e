/* server_c.c: the conformance scenario server on the libaioloop C core.
 *
 *   server_c BEHAVIOUR ADDR [key=value ...]
 *
 * The C twin of server_asyncio.py (the oracle): same behaviour menu, same trace lines.
 * ADDR is a TCP port on 127.0.0.1 (0: ephemeral) or unix:PATH. tls_cert=PATH tls_key=PATH
 * (and handshake_timeout_ms=N) serve TLS.
 */
#include <aioloop.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXP 32
static const char *pk[MAXP], *pv[MAXP];
static int np;
static const char *behaviour;
static aiol_loop *loop;
static aiol_server *server;
static int conns_left = 1, server_closing;

static const char *sparam(const char *k, const char *def) {
    for (int i = 0; i < np; i++)
        if (!strcmp(pk[i], k)) return pv[i];
    return def;
}
static long long iparam(const char *k, long long def) {
    const char *v = sparam(k, NULL);
    return v ? atoll(v) : def;
}
static int has(const char *k) { return sparam(k, NULL) != NULL; }
static int is(const char *b) { return !strcmp(behaviour, b); }

static unsigned char *gen(size_t n) {
    unsigned char *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)((i % 131072) * 131 + ((i % 131072) >> 9));
    return p;
}
static void write_gen(aiol_transport *t, size_t n) {
    unsigned char *p = gen(n);
    aiol_transport_write(t, p, n);
    free(p);
}

static void out(const char *line) {
    printf("%s\n", line);
    fflush(stdout);
}

typedef struct conn {
    aiol_transport *t;
    size_t pending, total;
    int aborted, paused_reading, did_pause;
    unsigned char *buf;
    size_t bufsize;
} conn;

static void flush_data(conn *c) {
    if (c->pending) {
        printf("data %zu\n", c->pending);
        fflush(stdout);
        c->pending = 0;
    }
}
static void event(conn *c, const char *line) {
    flush_data(c);
    out(line);
}

static void on_closed(aiol_server *s, void *ud) {
    (void)s, (void)ud;
    out("wait_closed");
    aiol_loop_stop(loop);
}
static void close_server(void) {
    if (server_closing) return;
    server_closing = 1;
    aiol_server_close(server);
    aiol_server_wait_closed(server, on_closed, NULL);
}

static void made(aiol_transport *t, void *ud) {
    conn *c = ud;
    c->t = t;
    event(c, "made");
    if (has("high"))
        aiol_transport_set_write_buffer_limits(t, (size_t)iparam("high", 0),
                                               (size_t)iparam("low", iparam("high", 0) / 4));
    if (iparam("close_server", 0)) close_server();
    if (is("write_on_connect")) {
        write_gen(t, (size_t)iparam("size", 0));
        const char *then = sparam("then", "none");
        if (!strcmp(then, "close")) aiol_transport_close(t);
        else if (!strcmp(then, "write_eof")) aiol_transport_write_eof(t);
        else if (!strcmp(then, "abort")) {
            c->aborted = 1;
            aiol_transport_abort(t);
        }
    }
}

static void resume_cb(aiol_loop *l, void *ud) {
    (void)l;
    conn *c = ud;
    c->paused_reading = 0;
    if (!aiol_transport_is_closing(c->t)) aiol_transport_resume_reading(c->t);
    aiol_transport_unref(c->t);
}

static void on_data(conn *c, const void *data, size_t len) {
    aiol_transport *t = c->t;
    if (c->paused_reading) event(c, "violation data_while_paused");
    c->pending += len;
    c->total += len;
    if (is("echo") || is("flow_echo") || is("buffered") || is("pause_reading") ||
        is("write_eof_after_eof") || is("keep_open_write_later")) {
        aiol_transport_write(t, data, len);
        if (is("pause_reading") && !c->paused_reading && !c->did_pause &&
            c->total >= (size_t)iparam("after", 0)) {
            c->did_pause = c->paused_reading = 1;
            aiol_transport_pause_reading(t);
            aiol_transport_ref(t);
            aiol_loop_call_later(loop, (uint64_t)iparam("delay", 50) * 1000000ull, resume_cb, c,
                                 NULL, NULL);
        }
    } else if (is("close_on_data")) {
        if (iparam("queue", 0)) write_gen(t, (size_t)iparam("queue", 0));
        aiol_transport_close(t);
    } else if (is("abort_on_data")) {
        if (iparam("queue", 0)) write_gen(t, (size_t)iparam("queue", 0));
        c->aborted = 1;
        aiol_transport_abort(t);
    }
}
static void data_received(aiol_transport *t, const void *d, size_t len, void *ud) {
    (void)t;
    on_data(ud, d, len);
}
static void *get_buffer(aiol_transport *t, size_t hint, size_t *len, void *ud) {
    (void)t, (void)hint;
    conn *c = ud;
    if (!c->buf) {
        c->bufsize = (size_t)iparam("bufsize", 16);
        c->buf = malloc(c->bufsize);
    }
    *len = c->bufsize;
    return c->buf;
}
static void buffer_updated(aiol_transport *t, size_t n, void *ud) {
    (void)t;
    conn *c = ud;
    on_data(c, c->buf, n);
}

static void close_cb(aiol_loop *l, void *ud) {
    (void)l;
    aiol_transport *t = ud;
    aiol_transport_close(t);
    aiol_transport_unref(t);
}
static void later_cb(aiol_loop *l, void *ud) {
    (void)l;
    aiol_transport *t = ud;
    if (aiol_transport_loop(t)) { /* not lost yet */
        write_gen(t, (size_t)iparam("tail", 0));
        aiol_transport_close(t);
    }
    aiol_transport_unref(t);
}

static int eof_received(aiol_transport *t, void *ud) {
    conn *c = ud;
    if (c->paused_reading) event(c, "violation eof_while_paused");
    int keep;
    if (is("write_eof_after_eof") || is("keep_open_write_later")) keep = 1;
    else keep = iparam("keep_open", 0) != 0;
    event(c, keep ? "eof keep" : "eof close");
    uint64_t delay = (uint64_t)iparam("delay", 50) * 1000000ull;
    if (is("write_eof_after_eof")) {
        write_gen(t, (size_t)iparam("tail", 0));
        aiol_transport_write_eof(t);
        aiol_transport_ref(t);
        aiol_loop_call_later(loop, delay, close_cb, t, NULL, NULL);
    } else if (is("keep_open_write_later")) {
        aiol_transport_ref(t);
        aiol_loop_call_later(loop, delay, later_cb, t, NULL, NULL);
    } else if (keep) {
        aiol_transport_ref(t);
        aiol_loop_call_later(loop, delay, close_cb, t, NULL, NULL);
    }
    return keep;
}

static void pause_writing(aiol_transport *t, void *ud) {
    event(ud, "pause");
    if (is("flow_echo")) aiol_transport_pause_reading(t);
}
static void resume_writing(aiol_transport *t, void *ud) {
    event(ud, "resume");
    if (is("flow_echo") && !aiol_transport_is_closing(t)) aiol_transport_resume_reading(t);
}

static void connection_lost(aiol_transport *t, int status, void *ud) {
    (void)t;
    conn *c = ud;
    char line[128];
    const char *cls;
    if (status == 0) cls = "clean";
    else if (status == AIOL_ECONNRESET || status == AIOL_EPIPE) cls = "reset";
    else if (status == AIOL_ECANCELED && c->aborted) cls = "aborted";
    else cls = NULL;
    if (c->aborted && cls && !strcmp(cls, "clean")) cls = "aborted";
    if (cls) snprintf(line, sizeof line, "lost %s", cls);
    else snprintf(line, sizeof line, "lost error:%s", aiol_err_name(status));
    event(c, line);
    if (conns_left <= 0) close_server();
}

static void destroy(void *ud) {
    conn *c = ud;
    free(c->buf);
    free(c);
}

static int factory(void *fd, const struct sockaddr *peer, socklen_t len, void **ud) {
    (void)fd, (void)peer, (void)len;
    conns_left--;
    *ud = calloc(1, sizeof(conn));
    return *ud ? 0 : -1;
}

static void watchdog(aiol_loop *l, void *ud) {
    (void)l, (void)ud;
    out("watchdog");
    exit(3);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s BEHAVIOUR ADDR [k=v ...]\n", argv[0]);
        return 2;
    }
    behaviour = argv[1];
    for (int i = 3; i < argc && np < MAXP; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) return 2;
        *eq = 0;
        pk[np] = argv[i];
        pv[np++] = eq + 1;
    }
    conns_left = (int)iparam("conns", 1);

    aiol_protocol p = {sizeof p};
    p.connection_made = made;
    p.eof_received = eof_received;
    p.connection_lost = connection_lost;
    p.pause_writing = pause_writing;
    p.resume_writing = resume_writing;
    p.destroy = destroy;
    if (is("buffered")) {
        p.get_buffer = get_buffer;
        p.buffer_updated = buffer_updated;
    } else {
        p.data_received = data_received;
    }

    aiol_server_config cfg = {sizeof cfg};
    const char *addr = argv[2];
    if (!strncmp(addr, "unix:", 5)) cfg.unix_path = addr + 5;
    else {
        cfg.host = "127.0.0.1";
        cfg.port = (uint16_t)atoi(addr);
    }
    aiol_tls_context *tls = NULL;
    int rc = 0;
    if (has("tls_cert")) {  /* TLS: the SSL transport; the runner's protocol if not built */
        if (!aiol_has_feature("tls")) {
            out("unsupported tls");
            return 77;
        }
        rc = aiol_tls_context_new_server(sparam("tls_cert", ""), sparam("tls_key", ""), &tls);
        cfg.tls = tls;
        cfg.tls_handshake_timeout_ns = (uint64_t)iparam("handshake_timeout_ms", 0) * 1000000ull;
    }
    if (rc == 0) rc = aiol_loop_new(&loop);
    if (rc == 0) rc = aiol_server_start(loop, &cfg, &p, factory, NULL, NULL, &server);
    aiol_tls_context_free(tls); /* the server holds its own reference */
    if (rc < 0) {
        fprintf(stderr, "server_c: %s (%s)\n", aiol_strerror(rc), aiol_err_name(rc));
        return 1;
    }
    if (cfg.unix_path) {
        out("listening unix");
    } else {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        aiol_server_sockname(server, 0, &ss, &len);
        printf("listening %u\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
        fflush(stdout);
    }
    if (is("close_now") || conns_left <= 0) close_server();
    aiol_handle *wd;
    aiol_loop_call_later(loop, 30000000000ull, watchdog, NULL, NULL, &wd);
    rc = aiol_loop_run(loop, AIOL_RUN_DEFAULT);
    aiol_handle_cancel(wd);
    aiol_handle_release(wd);
    aiol_server_free(server);
    aiol_loop_close(loop);
    aiol_loop_free(loop);
    return rc < 0 ? 1 : 0;
}
