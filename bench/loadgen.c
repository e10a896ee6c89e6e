/* loadgen: an epoll load generator for echo servers. It does not use libaioloop, so it
 * measures the server, not itself.
 *
 *   loadgen --port P [--host 127.0.0.1] [--mode echo|churn|idle] [--conns N] [--size S]
 *           [--pipeline K] [--duration SEC] [--warmup SEC] [--idle N]
 *           [--tls [--tls-ca CA.pem] [--tls-version 1.2|1.3]]
 *
 * echo:  N connections, each keeping K messages of S bytes in flight (K=1: ping-pong).
 * churn: N slots, each looping connect, one S-byte echo, close; counts connections/s.
 * idle:  opens --idle connections that never send, then runs the echo mode on N
 *        connections meanwhile (the idle ones stay open until the end).
 *
 * --tls: every connection (not the idle ones) speaks TLS through OpenSSL directly: a
 * non-blocking SSL on the socket (SSL_set_fd), driven by the same epoll loop, retrying
 * on SSL_ERROR_WANT_READ/WANT_WRITE. TLS 1.3 unless --tls-version 1.2. The certificate is
 * verified against --tls-ca (name 127.0.0.1 or the --host given), or not at all without it.
 * churn over TLS is the handshake-rate mode: connect, a full handshake, one echo,
 * close_notify, close. Sessions are never resumed (client session cache off, no saved
 * session offered), so every handshake is a full one; its latency runs from connect() to the
 * echo's last byte, where plain churn times the echo alone.
 *
 * Every echoed byte is checked against what was sent (a per-connection offset into one
 * pseudo-random pattern). Prints one JSON line; exit 1 on any error or mismatch, 2 on bad
 * usage or an unreachable server. Only loopback addresses are accepted.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifdef LOADGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#endif

#define PATTERN_LEN (1u << 20)
#define MAX_PIPELINE 256

static unsigned char pattern[2 * PATTERN_LEN];  /* doubled: any window is contiguous */

typedef struct {
    int fd;
    int id;
    uint64_t sent, recvd;   /* stream positions */
    uint64_t msgs_started;  /* messages whose first byte may be sent */
    uint64_t start_ns[MAX_PIPELINE];
    int want_out;
    int connecting;
    uint64_t conn_ns;        /* when connect() was called (TLS churn latency) */
#ifdef LOADGEN_TLS
    SSL *ssl;                /* NULL without --tls */
    int handshaking;
    int read_wants_write;    /* SSL_read asked for EPOLLOUT (TLS record write pending) */
#endif
} conn;

static struct {
    const char *host, *mode;
    int port, conns, pipeline, idle;
    size_t size;
    double duration, warmup;
    int tls;
    const char *tls_ca, *tls_version;
} opt = {"127.0.0.1", "echo", 0, 10, 1, 0, 1024, 5, 1, 0, NULL, "1.3"};

static struct sockaddr_in addr;
static int ep;
static uint64_t msgs, errors, bytes, measure_from, measure_to;
#ifdef LOADGEN_TLS
static uint64_t handshakes;  /* completed in the measured window */
static SSL_CTX *tls_ctx;
static char tls_proto[32] = "", tls_cipher[64] = "";
#endif
static uint64_t *lat;
static size_t lat_n, lat_cap;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const unsigned char *stream_at(const conn *c, uint64_t pos) {
    return pattern + (pos + (uint64_t)c->id * 7919u) % PATTERN_LEN;
}

static void record(uint64_t start, uint64_t end) {
    if (end < measure_from || end >= measure_to) return;
    msgs++;
    if (lat_n == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
        lat = realloc(lat, lat_cap * sizeof *lat);
        if (!lat) exit(2);
    }
    lat[lat_n++] = end - start;
}

static int open_conn(conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->sent = c->recvd = c->msgs_started = 0;
    c->connecting = 1;
    c->conn_ns = now_ns();
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->want_out = 1;
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void set_out(conn *c, int want) {
#ifdef LOADGEN_TLS
    want = want || c->read_wants_write;
#endif
    if (c->want_out == want) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0u), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

/* Closes the connection; over TLS, sends close_notify first (one try: the socket is
 * non-blocking and we do not wait for the peer's). */
static void close_conn(conn *c) {
#ifdef LOADGEN_TLS
    if (c->ssl) {
        if (!c->handshaking) SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
        ERR_clear_error();
    }
#endif
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

static void fail(conn *c, const char *why) {
    if (errors++ < 5) fprintf(stderr, "loadgen: connection %d: %s\n", c->id, why);
#ifdef LOADGEN_TLS
    if (c->ssl) SSL_set_quiet_shutdown(c->ssl, 1);  /* no close_notify on a failed one */
#endif
    close_conn(c);
    c->fd = -1;
}

#ifdef LOADGEN_TLS
/* What an SSL_* call's failure means: 0 = retry when the socket is ready (WANT_*), -1 =
 * the connection failed (it is closed and counted). */
static int tls_failed(conn *c, int ret, const char *what) {
    int e = SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    char why[300];
    unsigned long code = ERR_peek_error();
    if (e == SSL_ERROR_ZERO_RETURN) snprintf(why, sizeof why, "%s: close_notify from the server", what);
    else if (e == SSL_ERROR_SYSCALL && !code)
        snprintf(why, sizeof why, "%s: %s", what, errno ? strerror(errno) : "EOF without close_notify");
    else snprintf(why, sizeof why, "%s: %s", what, ERR_error_string(code, NULL));
    fail(c, why);
    return -1;
}

/* Drives the handshake (SSL_connect). Returns 1 when done, 0 to wait, -1 on failure. */
static int tls_handshake(conn *c) {
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->handshaking = 0;
        if (now_ns() >= measure_from && now_ns() < measure_to) handshakes++;
        if (!tls_proto[0]) {
            snprintf(tls_proto, sizeof tls_proto, "%s", SSL_get_version(c->ssl));
            snprintf(tls_cipher, sizeof tls_cipher, "%s", SSL_get_cipher_name(c->ssl));
        }
        if (SSL_session_reused(c->ssl)) {  /* cannot happen: no session is ever offered */
            fail(c, "TLS session was resumed");
            return -1;
        }
        return 1;
    }
    if (tls_failed(c, r, "handshake") < 0) return -1;
    set_out(c, SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_WRITE);
    return 0;
}

static int tls_start(conn *c) {
    c->ssl = SSL_new(tls_ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
        fail(c, "SSL_new");
        return -1;
    }
    if (opt.tls_ca && !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), opt.host)) {
        fail(c, "X509_VERIFY_PARAM_set1_ip_asc");
        return -1;
    }
    SSL_set_connect_state(c->ssl);
    c->handshaking = 1;
    c->read_wants_write = 0;
    return 0;
}
#endif

/* send() or SSL_write(): bytes written, 0 to wait for EPOLLOUT (or, TLS, EPOLLIN), -1 on
 * failure (the connection is closed). */
static ssize_t conn_write(conn *c, const void *p, size_t n) {
#ifdef LOADGEN_TLS
    if (c->ssl) {
        ERR_clear_error();
        int w = SSL_write(c->ssl, p, n > (1u << 30) ? 1 << 30 : (int)n);
        if (w > 0) return w;
        return tls_failed(c, w, "SSL_write");
    }
#endif
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w >= 0) return w;
    if (errno == EAGAIN || errno == EINTR) return 0;
    fail(c, strerror(errno));
    return -1;
}

/* recv() or SSL_read(): bytes read, 0 when nothing more is there for now, -1 on failure
 * or EOF (the connection is closed). */
static ssize_t conn_read(conn *c, void *p, size_t n) {
#ifdef LOADGEN_TLS
    if (c->ssl) {
        ERR_clear_error();
        int was = c->read_wants_write;
        c->read_wants_write = 0;
        int r = SSL_read(c->ssl, p, n > (1u << 30) ? 1 << 30 : (int)n);
        if (r > 0) return r;
        if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_WRITE) c->read_wants_write = 1;
        if (was != c->read_wants_write) set_out(c, c->want_out);
        return tls_failed(c, r, "SSL_read");
    }
#endif
    ssize_t r = recv(c->fd, p, n, 0);
    if (r > 0) return r;
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    fail(c, r == 0 ? "closed by the server" : strerror(errno));
    return -1;
}

/* Sends what the pipeline allows. Returns -1 if the connection failed. */
static int pump_out(conn *c, int churn) {
    uint64_t depth = churn ? 1 : (uint64_t)opt.pipeline;
    if (churn && c->msgs_started >= 1 && c->sent >= opt.size) {
        set_out(c, 0);
        return 0;
    }
    for (;;) {
        uint64_t done_msgs = c->recvd / opt.size;
        uint64_t limit = (done_msgs + depth) * opt.size;
        if (churn) limit = opt.size;
        if (c->sent >= limit) break;
        size_t n = (size_t)(limit - c->sent);
        if (n > PATTERN_LEN) n = PATTERN_LEN;
        /* A message's clock starts when its first byte is handed to send(). */
        uint64_t t = now_ns();
        while (c->msgs_started * opt.size < c->sent + n) {
            c->start_ns[c->msgs_started % MAX_PIPELINE] = t;
            c->msgs_started++;
        }
        /* A TLS retry passes the same pointer (c->sent has not moved) and no fewer bytes. */
        ssize_t w = conn_write(c, stream_at(c, c->sent), n);
        if (w < 0) return -1;
        if (w == 0) {
#ifdef LOADGEN_TLS
            /* SSL_write may wait for EPOLLIN (never in TLS 1.3): we always listen for it */
            if (c->ssl && SSL_want_read(c->ssl)) {
                set_out(c, 0);
                return 0;
            }
#endif
            set_out(c, 1);
            return 0;
        }
        c->sent += (uint64_t)w;
    }
    set_out(c, 0);
    return 0;
}

static unsigned char rbuf[1 << 20];

static int pump_in(conn *c, int churn) {
    for (;;) {
        ssize_t r = conn_read(c, rbuf, sizeof rbuf);
        if (r < 0) return -1;
        if (r == 0) return 0;
        if (c->recvd + (uint64_t)r > c->sent) {
            fail(c, "more bytes back than were sent");
            return -1;
        }
        if (memcmp(rbuf, stream_at(c, c->recvd), (size_t)r) != 0) {
            fail(c, "echoed bytes differ from what was sent");
            return -1;
        }
        uint64_t before = c->recvd / opt.size;
        c->recvd += (uint64_t)r;
        bytes += (uint64_t)r;
        uint64_t after = c->recvd / opt.size, t = now_ns();
        /* TLS churn times the whole connection: connect, handshake, echo */
        int whole = churn && opt.tls;
        for (uint64_t m = before; m < after; m++)
            record(whole ? c->conn_ns : c->start_ns[m % MAX_PIPELINE], t);
        if (churn && c->recvd == opt.size) {  /* one echo done: close and start again */
            close_conn(c);
            if (open_conn(c) < 0) {
                errors++;
                return -1;
            }
            return 0;
        }
        /* recv: a short read emptied the socket. SSL_read returns one record at most:
         * read on while its read-ahead buffer holds more (the socket's rest wakes epoll). */
#ifdef LOADGEN_TLS
        if (c->ssl) {
            if (!SSL_has_pending(c->ssl)) return 0;
            continue;
        }
#endif
        if ((size_t)r < sizeof rbuf) return 0;
    }
}

static int cmp64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(void) {
    fprintf(stderr, "usage: loadgen --port P [--host 127.0.0.1] [--mode echo|churn|idle] [--conns N]\n"
                    "               [--size S] [--pipeline K] [--duration S] [--warmup S] [--idle N]\n"
                    "               [--tls [--tls-ca CA.pem] [--tls-version 1.2|1.3]]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--tls")) {  /* the one flag without a value */
            opt.tls = 1;
            continue;
        }
        if (!v) usage();
        if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--mode")) opt.mode = v;
        else if (!strcmp(a, "--conns")) opt.conns = atoi(v);
        else if (!strcmp(a, "--size")) opt.size = (size_t)atol(v);
        else if (!strcmp(a, "--pipeline")) opt.pipeline = atoi(v);
        else if (!strcmp(a, "--duration")) opt.duration = atof(v);
        else if (!strcmp(a, "--warmup")) opt.warmup = atof(v);
        else if (!strcmp(a, "--idle")) opt.idle = atoi(v);
        else if (!strcmp(a, "--tls-ca")) opt.tls_ca = v;
        else if (!strcmp(a, "--tls-version")) opt.tls_version = v;
        else usage();
        i++;
    }
    int churn = !strcmp(opt.mode, "churn");
    if (opt.port <= 0 || opt.conns < 1 || opt.size < 1 || opt.pipeline < 1 ||
        opt.pipeline > MAX_PIPELINE || opt.duration <= 0 || opt.idle < 0 ||
        (!churn && strcmp(opt.mode, "echo") && strcmp(opt.mode, "idle")) ||
        (strcmp(opt.tls_version, "1.3") && strcmp(opt.tls_version, "1.2")))
        usage();
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1 ||
        (ntohl(addr.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "loadgen: only loopback IPv4 addresses (127.0.0.0/8) are accepted\n");
        return 2;
    }
    struct rlimit rl;  /* room for every connection, up to the hard limit */
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    uint32_t x = 2463534242u;  /* xorshift: the same pattern every run */
    for (size_t i = 0; i < PATTERN_LEN; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        pattern[i] = pattern[i + PATTERN_LEN] = (unsigned char)x;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);  /* SSL_write uses write(): a reset peer must not kill us */
    if (opt.tls) {
#ifdef LOADGEN_TLS
        int v = strcmp(opt.tls_version, "1.2") ? TLS1_3_VERSION : TLS1_2_VERSION;
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (!tls_ctx || !SSL_CTX_set_min_proto_version(tls_ctx, v) ||
            !SSL_CTX_set_max_proto_version(tls_ctx, v) ||
            (opt.tls_ca && SSL_CTX_load_verify_locations(tls_ctx, opt.tls_ca, NULL) != 1)) {
            fprintf(stderr, "loadgen: TLS setup: %s\n", ERR_error_string(ERR_get_error(), NULL));
            return 2;
        }
        SSL_CTX_set_verify(tls_ctx, opt.tls_ca ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
        /* Never resume: no client session cache (no SSL_set_session either), and no
         * session ticket asked for in TLS 1.2. */
        SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(tls_ctx, SSL_OP_NO_TICKET);
        /* SSL_write returns after each record; a retry may come with a longer length. */
        SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_read_ahead(tls_ctx, 1);  /* one recv per buffer, not two per record */
#else
        fprintf(stderr, "loadgen: built without OpenSSL (cc -DLOADGEN_TLS ... -lssl -lcrypto)\n");
        return 2;
#endif
    }

    int *idle_fds = calloc((size_t)opt.idle + 1, sizeof *idle_fds);
    for (int i = 0; i < opt.idle; i++) {  /* blocking connects: simple, and they are idle */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
            fprintf(stderr, "loadgen: idle connection %d: %s\n", i, strerror(errno));
            return 2;
        }
        idle_fds[i] = fd;
    }

    conn *cs = calloc((size_t)opt.conns, sizeof *cs);
    for (int i = 0; i < opt.conns; i++) {
        cs[i].id = i;
        if (open_conn(&cs[i]) < 0) {
            fprintf(stderr, "loadgen: connect: %s\n", strerror(errno));
            return 2;
        }
    }
    uint64_t t0 = now_ns();
    measure_from = t0 + (uint64_t)(opt.warmup * 1e9);
    measure_to = measure_from + (uint64_t)(opt.duration * 1e9);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);  /* in case every connection fails before measuring */
    int measuring = 0;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= measure_from) {
            getrusage(RUSAGE_SELF, &ru0);
            measuring = 1;
        }
        if (t >= measure_to) break;
        int n = epoll_wait(ep, evs, 256, 10);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c->fd < 0) continue;
            if (c->connecting) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    if (t < measure_from && !churn) return fprintf(stderr, "loadgen: connect: %s\n", strerror(err)), 2;
                    fail(c, strerror(err));
                    continue;
                }
                if (!(evs[i].events & EPOLLOUT)) continue;
                c->connecting = 0;
#ifdef LOADGEN_TLS
                if (opt.tls && tls_start(c) < 0) continue;
#endif
            }
#ifdef LOADGEN_TLS
            if (c->ssl && c->handshaking) {
                if (tls_handshake(c) <= 0) continue;  /* failed, or waiting for the server */
                evs[i].events |= EPOLLIN;  /* read-ahead may hold what came after it */
            }
            if (c->read_wants_write && (evs[i].events & EPOLLOUT)) evs[i].events |= EPOLLIN;
#endif
            if ((evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && pump_in(c, churn) < 0) continue;
            if (c->fd >= 0 && !c->connecting) pump_out(c, churn);
        }
        int live = 0;
        for (int i = 0; i < opt.conns; i++) live += cs[i].fd >= 0;
        if (!live) break;
    }
    getrusage(RUSAGE_SELF, &ru1);
    double secs = opt.duration;
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    qsort(lat, lat_n, sizeof *lat, cmp64);
    double p50 = lat_n ? lat[lat_n / 2] / 1e3 : 0, p99 = lat_n ? lat[lat_n * 99 / 100] / 1e3 : 0;
    char tls[256] = "";
#ifdef LOADGEN_TLS
    if (opt.tls)  /* "resumption":false: every handshake was a full one */
        snprintf(tls, sizeof tls, ",\"tls\":true,\"tls_protocol\":\"%s\",\"tls_cipher\":\"%s\","
                 "\"tls_verify\":%s,\"resumption\":false,\"handshakes\":%llu,\"handshakes_per_s\":%.1f",
                 tls_proto, tls_cipher, opt.tls_ca ? "true" : "false",
                 (unsigned long long)handshakes, handshakes / secs);
#endif
    printf("{\"mode\":\"%s\",\"conns\":%d,\"idle\":%d,\"size\":%zu,\"pipeline\":%d,\"msgs\":%llu,"
           "\"msgs_per_s\":%.1f,\"mib_per_s\":%.2f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
           "\"cpu_pct\":%.1f,\"errors\":%llu%s}\n",
           opt.mode, opt.conns, opt.idle, opt.size, opt.pipeline, (unsigned long long)msgs,
           msgs / secs, (double)msgs * opt.size / secs / (1 << 20), p50, p99, 100 * cpu / secs,
           (unsigned long long)errors, tls);
    for (int i = 0; i < opt.idle; i++) close(idle_fds[i]);
    return errors || msgs == 0 ? 1 : 0;
}
