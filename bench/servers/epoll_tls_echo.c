/* epoll_tls_echo: the least work an epoll + OpenSSL echo server can do, as the baseline
 * of the TLS comparison (what epoll_echo is for plain TCP). Level-triggered, OpenSSL
 * straight on the socket (SSL_set_fd, no memory BIOs), non-blocking: the handshake,
 * SSL_read and SSL_write are retried when epoll says the socket is ready for what they
 * asked (SSL_ERROR_WANT_READ / WANT_WRITE). Read-ahead on (one recv fills a buffer, as
 * the library's recv into its read BIO does), one readiness decrypts what that buffer
 * holds, each plaintext chunk is encrypted back at once, and only what the socket refused
 * is queued (then reading stops until it drains). close_notify is answered with one.
 * The TLS settings are the library's server defaults (TLS 1.2 minimum, no compression, no
 * renegotiation, server cipher preference; OpenSSL's defaults otherwise, so TLS 1.3 and
 * its session tickets), except SSL_MODE_RELEASE_BUFFERS, left off as the cheaper choice.
 *
 *   epoll_tls_echo --tls-cert CERT.pem --tls-key KEY.pem --port P [--host 127.0.0.1]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int fd;
    SSL *ssl;
    int handshaking;
    uint32_t events;  /* what epoll watches for us now */
    char *pending;  /* plaintext SSL_write has not taken yet */
    size_t len, off;
} conn;

static int ep;
static char buf[256 * 1024];

static void drop(conn *c, int notify) {
    if (notify) SSL_shutdown(c->ssl);  /* one try at close_notify; we do not wait for it */
    else SSL_set_quiet_shutdown(c->ssl, 1);
    SSL_free(c->ssl);
    ERR_clear_error();
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    free(c);
}

static void want(conn *c, uint32_t events) {
    if (c->events == events) return;
    c->events = events;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* After an SSL call returned ret <= 0: 1 = wait for the socket (events set), 0 = dropped. */
static int retry_later(conn *c, int ret) {
    switch (SSL_get_error(c->ssl, ret)) {
    case SSL_ERROR_WANT_READ: want(c, EPOLLIN); return 1;
    case SSL_ERROR_WANT_WRITE: want(c, EPOLLOUT); return 1;
    case SSL_ERROR_ZERO_RETURN: drop(c, 1); return 0;  /* close_notify: answer it */
    default: drop(c, 0); return 0;                       /* EOF, reset, bad record */
    }
}

/* Encrypts and sends p[0..n); queues what the socket does not take. 1 = all sent, 0 =
 * queued (waiting for EPOLLOUT) or dropped (*alive cleared). */
static int send_plain(conn *c, const char *p, size_t n, int *alive) {
    while (n) {
        int w = SSL_write(c->ssl, p, (int)n);
        if (w > 0) {
            p += w, n -= (size_t)w;
            continue;
        }
        int e = SSL_get_error(c->ssl, w);
        if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
            drop(c, 0);
            *alive = 0;
            return 0;
        }
        c->pending = malloc(n);
        memcpy(c->pending, p, n);
        c->len = n, c->off = 0;
        want(c, e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN);
        return 0;
    }
    return 1;
}

static void on_ready(conn *c) {
    ERR_clear_error();
    if (c->handshaking) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            retry_later(c, r);
            return;
        }
        c->handshaking = 0;
        want(c, EPOLLIN);  /* it may have been waiting for EPOLLOUT */
        /* fall through: read-ahead may already hold the client's first message */
    }
    if (c->pending) {  /* draining what the socket refused (moving buffer: same bytes) */
        int w = SSL_write(c->ssl, c->pending + c->off, (int)(c->len - c->off));
        if (w <= 0) {
            retry_later(c, w);
            return;
        }
        c->off += (size_t)w;
        if (c->off < c->len) return;
        free(c->pending);
        c->pending = NULL;
        want(c, EPOLLIN);
        /* fall through: read-ahead may hold records we stopped short of */
    }
    /* Decrypt what this readiness brought: SSL_read gives one record at a time, so go on
     * while the read-ahead buffer holds more; the socket's rest wakes epoll again. */
    do {
        int r = SSL_read(c->ssl, buf, sizeof buf);
        if (r <= 0) {
            retry_later(c, r);
            return;
        }
        int alive = 1;
        if (!send_plain(c, buf, (size_t)r, &alive)) return;
    } while (SSL_has_pending(c->ssl));
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *cert = NULL, *key = NULL;
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host")) host = argv[i + 1];
        else if (!strcmp(argv[i], "--tls-cert")) cert = argv[i + 1];
        else if (!strcmp(argv[i], "--tls-key")) key = argv[i + 1];
    }
    if (!cert || !key) {
        fprintf(stderr, "usage: epoll_tls_echo --tls-cert CERT --tls-key KEY [--host H] [--port P]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);  /* SSL_write writes to sockets the peer may have reset */
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr, "epoll_tls_echo: %s\n", ERR_error_string(ERR_get_error(), NULL));
        return 1;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* SSL_write returns after each record it sent, and a retry may pass the queued bytes
     * from wherever they are now. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1024) < 0) {
        perror("epoll_tls_echo");
        return 1;
    }
    socklen_t alen = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &alen);
    printf("listening on %s:%u\n", host, ntohs(a.sin_port));
    fflush(stdout);
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c) {
                on_ready(c);
                continue;
            }
            for (int k = 0; k < 100; k++) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                if (fd < 0) break;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                conn *nc = calloc(1, sizeof *nc);
                nc->fd = fd;
                nc->ssl = SSL_new(ctx);
                SSL_set_fd(nc->ssl, fd);
                SSL_set_accept_state(nc->ssl);
                nc->handshaking = 1;
                nc->events = EPOLLIN;
                struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
            }
        }
    }
}
