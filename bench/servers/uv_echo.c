/* uv_echo: the libuv echo server of the comparison: uv_read_start into a reused buffer,
 * uv_try_write first, uv_write (with a copy) for the rest, reading stopped until it is
 * written.
 *
 *   uv_echo --port P [--host 127.0.0.1]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
    uv_tcp_t tcp;
    char buf[256 * 1024];
} conn;

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} pending_write;

static uv_loop_t *loop;

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
    (void)hint;
    conn *c = (conn *)h;
    *b = uv_buf_init(c->buf, sizeof c->buf);
}

static void on_close(uv_handle_t *h) { free(h); }

static void on_written(uv_write_t *req, int status) {
    pending_write *p = (pending_write *)req;
    uv_stream_t *s = req->handle;
    free(p->buf.base);
    free(p);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, on_close);
        return;
    }
    void on_read(uv_stream_t *, ssize_t, const uv_buf_t *);
    uv_read_start(s, on_alloc, on_read);
}

void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (n == 0) return;
    uv_buf_t out = uv_buf_init(b->base, (unsigned)n);
    int w = uv_try_write(s, &out, 1);
    if (w == n) return;
    if (w < 0 && w != UV_EAGAIN) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (w < 0) w = 0;
    pending_write *p = malloc(sizeof *p);
    p->buf = uv_buf_init(malloc((size_t)(n - w)), (unsigned)(n - w));
    memcpy(p->buf.base, b->base + w, (size_t)(n - w));
    uv_read_stop(s);
    uv_write(&p->req, s, &p->buf, 1, on_written);
}

static void on_connection(uv_stream_t *server, int status) {
    if (status < 0) return;
    conn *c = malloc(sizeof *c);
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    }
    loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_in a;
    uv_ip4_addr(host, port, &a);
    if (uv_tcp_bind(&server, (const struct sockaddr *)&a, 0) < 0 ||
        uv_listen((uv_stream_t *)&server, 1024, on_connection) < 0) {
        fprintf(stderr, "uv_echo: cannot listen\n");
        return 1;
    }
    int len = sizeof a;
    uv_tcp_getsockname(&server, (struct sockaddr *)&a, &len);
    printf("listening on %s:%u\n", host, ntohs(a.sin_port));
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
