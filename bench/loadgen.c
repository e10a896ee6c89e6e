/* loadgen: an epoll load generator for echo servers. It does not use libaioloop, so it
 * measures the server, not itself.
 *
 *   loadgen --port P [--host 127.0.0.1] [--mode echo|churn|idle] [--conns N] [--size S]
 *           [--pipeline K] [--duration SEC] [--warmup SEC] [--idle N]
 *
 * echo:  N connections, each keeping K messages of S bytes in flight (K=1: ping-pong).
 * churn: N slots, each looping connect, one S-byte echo, close; counts connections/s.
 * idle:  opens --idle connections that never send, then runs the echo mode on N
 *        connections meanwhile (the idle ones stay open until the end).
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
} conn;

static struct {
    const char *host, *mode;
    int port, conns, pipeline, idle;
    size_t size;
    double duration, warmup;
} opt = {"127.0.0.1", "echo", 0, 10, 1, 0, 1024, 5, 1};

static struct sockaddr_in addr;
static int ep;
static uint64_t msgs, errors, bytes, measure_from, measure_to;
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
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->want_out = 1;
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void set_out(conn *c, int want) {
    if (c->want_out == want) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0u), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

static void fail(conn *c, const char *why) {
    if (errors++ < 5) fprintf(stderr, "loadgen: connection %d: %s\n", c->id, why);
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
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
        ssize_t w = send(c->fd, stream_at(c, c->sent), n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                set_out(c, 1);
                return 0;
            }
            fail(c, strerror(errno));
            return -1;
        }
        c->sent += (uint64_t)w;
    }
    set_out(c, 0);
    return 0;
}

static unsigned char rbuf[1 << 20];

static int pump_in(conn *c, int churn) {
    for (;;) {
        ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) return 0;
            fail(c, strerror(errno));
            return -1;
        }
        if (r == 0) {
            fail(c, "closed by the server");
            return -1;
        }
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
        for (uint64_t m = before; m < after; m++) record(c->start_ns[m % MAX_PIPELINE], t);
        if (churn && c->recvd == opt.size) {  /* one echo done: close and start again */
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            if (open_conn(c) < 0) {
                errors++;
                return -1;
            }
            return 0;
        }
        if ((size_t)r < sizeof rbuf) return 0;
    }
}

static int cmp64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(void) {
    fprintf(stderr, "usage: loadgen --port P [--host 127.0.0.1] [--mode echo|churn|idle] [--conns N]\n"
                    "               [--size S] [--pipeline K] [--duration S] [--warmup S] [--idle N]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
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
        else usage();
        i++;
    }
    int churn = !strcmp(opt.mode, "churn");
    if (opt.port <= 0 || opt.conns < 1 || opt.size < 1 || opt.pipeline < 1 ||
        opt.pipeline > MAX_PIPELINE || opt.duration <= 0 || opt.idle < 0 ||
        (!churn && strcmp(opt.mode, "echo") && strcmp(opt.mode, "idle")))
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
            }
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
    printf("{\"mode\":\"%s\",\"conns\":%d,\"idle\":%d,\"size\":%zu,\"pipeline\":%d,\"msgs\":%llu,"
           "\"msgs_per_s\":%.1f,\"mib_per_s\":%.2f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
           "\"cpu_pct\":%.1f,\"errors\":%llu}\n",
           opt.mode, opt.conns, opt.idle, opt.size, opt.pipeline, (unsigned long long)msgs,
           msgs / secs, (double)msgs * opt.size / secs / (1 << 20), p50, p99, 100 * cpu / secs,
           (unsigned long long)errors);
    for (int i = 0; i < opt.idle; i++) close(idle_fds[i]);
    return errors || msgs == 0 ? 1 : 0;
}
