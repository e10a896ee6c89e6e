/* echo_client: connects to an echo server, sends N messages of S bytes one at a time,
 * checks every echoed byte, and prints the round-trip figures.
 *
 *   echo_client [--host H] [--port P | --unix PATH] [--count N] [--size S]
 *               [--tls [--ca CA.pem] [--server-name NAME] [--insecure]]
 *
 * --tls connects over TLS, verifying the server against CA.pem (else the system store) and
 * NAME (else the host); --insecure skips verification.
 */
#include <aioloop.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    aiol_loop *loop;
    unsigned char *msg;
    size_t size, got;
    long count, done;
    uint64_t sent_at;
    uint64_t *rtt;
    int status;
} client;

static void fill(client *c) {
    for (size_t i = 0; i < c->size; i++) c->msg[i] = (unsigned char)(i * 31 + c->done * 7);
    c->got = 0;
    c->sent_at = aiol_loop_now(c->loop);
}

static void on_made(aiol_transport *t, void *ud) {
    client *c = ud;
    fill(c);
    aiol_transport_write(t, c->msg, c->size);
}

static void on_data(aiol_transport *t, const void *data, size_t len, void *ud) {
    client *c = ud;
    if (c->got + len > c->size || memcmp(c->msg + c->got, data, len) != 0) {
        fprintf(stderr, "echo_client: echo mismatch at message %ld\n", c->done);
        c->status = 1;
        aiol_transport_abort(t);
        return;
    }
    c->got += len;
    if (c->got < c->size) return;
    c->rtt[c->done++] = aiol_loop_now(c->loop) - c->sent_at;
    if (c->done == c->count) {
        aiol_transport_close(t);
        return;
    }
    fill(c);
    aiol_transport_write(t, c->msg, c->size);
}

static void on_lost(aiol_transport *t, int status, void *ud) {
    (void)t;
    client *c = ud;
    if (status != 0) {
        fprintf(stderr, "echo_client: connection lost: %s\n", aiol_strerror(status));
        c->status = 1;
    }
}

static void on_connected(aiol_transport *t, int status, void *ud) {
    (void)t;
    client *c = ud;
    if (status != 0) {
        fprintf(stderr, "echo_client: connect failed: %s (%s)\n", aiol_strerror(status),
                aiol_err_name(status));
        c->status = 1;
    }
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    aiol_connect_config cfg = {sizeof cfg};
    cfg.host = "127.0.0.1";
    cfg.port = 8888;
    cfg.timeout_ns = 10000000000ull;
    client c = {0};
    int use_tls = 0, insecure = 0;
    const char *ca = NULL;
    c.count = 10000;
    c.size = 1024;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--host") && i + 1 < argc) cfg.host = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc) cfg.port = (uint16_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--unix") && i + 1 < argc) cfg.unix_path = argv[++i], cfg.host = NULL;
        else if (!strcmp(argv[i], "--count") && i + 1 < argc) c.count = atol(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) c.size = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--tls")) use_tls = 1;
        else if (!strcmp(argv[i], "--ca") && i + 1 < argc) ca = argv[++i], use_tls = 1;
        else if (!strcmp(argv[i], "--server-name") && i + 1 < argc)
            cfg.server_hostname = argv[++i], use_tls = 1;
        else if (!strcmp(argv[i], "--insecure")) insecure = 1, use_tls = 1;
        else {
            fprintf(stderr, "usage: %s [--host H] [--port P | --unix PATH] [--count N] [--size S] "
                            "[--tls [--ca CA] [--server-name NAME] [--insecure]]\n",
                    argv[0]);
            return 2;
        }
    }
    if (c.count < 1 || c.size < 1) return 2;
    c.msg = malloc(c.size);
    c.rtt = malloc(sizeof *c.rtt * (size_t)c.count);

    aiol_protocol proto = {sizeof proto};
    proto.connection_made = on_made;
    proto.data_received = on_data;
    proto.connection_lost = on_lost;

    aiol_tls_context *tls = NULL;
    if (use_tls) {
        int trc = aiol_tls_context_new_client(ca, !insecure, &tls);
        if (trc < 0) {
            fprintf(stderr, "echo_client: TLS: %s (%s)\n", aiol_strerror(trc), aiol_err_name(trc));
            return 1;
        }
        cfg.tls = tls;
    }

    int rc = aiol_loop_new(&c.loop);
    if (rc == 0) rc = aiol_loop_connect(c.loop, &cfg, &proto, &c, on_connected, &c, NULL);
    if (rc < 0) {
        fprintf(stderr, "echo_client: %s\n", aiol_strerror(rc));
        return 1;
    }
    uint64_t t0 = aiol_loop_now(c.loop);
    aiol_loop_run(c.loop, AIOL_RUN_DEFAULT);
    double secs = (double)(aiol_loop_now(c.loop) - t0) / 1e9;
    aiol_loop_free(c.loop);
    aiol_tls_context_free(tls);

    if (c.done > 0) {
        qsort(c.rtt, (size_t)c.done, sizeof *c.rtt, cmp);
        printf("echo_client: %ld/%ld messages of %zu bytes echoed intact in %.3f s: %.0f msgs/s, "
               "rtt p50 %.1f us, p99 %.1f us\n",
               c.done, c.count, c.size, secs, c.done / secs, c.rtt[c.done / 2] / 1e3,
               c.rtt[(size_t)(c.done * 99 / 100)] / 1e3);
    }
    free(c.msg);
    free(c.rtt);
    return c.status || c.done != c.count;
}
