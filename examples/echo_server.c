/* echo_server: a flow-controlled TCP (or Unix socket) echo server on libaioloop.
 *
 *   echo_server [--host H] [--port P] [--unix PATH] [--tls-cert CERT.pem --tls-key KEY.pem]
 *               [--tls-handshake-timeout SECS]
 *
 * With --tls-cert and --tls-key it serves TLS (the certificate file may hold the chain);
 * --tls-handshake-timeout (seconds, fractions allowed; default 60) closes connections that
 * do not finish the handshake in time (asyncio's ssl_handshake_timeout).
 * Prints "listening on HOST:PORT" per listening socket (the real port when P is 0).
 * Echo with back-pressure: when the transport asks us to pause writing, we pause reading,
 * and resume when it drains (asyncio's flow-control pattern). On EOF we close, which
 * flushes what we still owe the peer. SIGINT/SIGTERM close the server and its clients and
 * exit 0 once wait_closed fires (clients still there after 5 s are aborted).
 */
#include <aioloop.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static aiol_server *server;

static void on_data(aiol_transport *t, const void *data, size_t len, void *ud) {
    (void)ud;
    aiol_transport_write(t, data, len);
}

static void on_pause(aiol_transport *t, void *ud) {
    (void)ud;
    aiol_transport_pause_reading(t);
}

static void on_resume(aiol_transport *t, void *ud) {
    (void)ud;
    aiol_transport_resume_reading(t);
}

static int make_conn(void *factory_data, const struct sockaddr *peer, socklen_t len, void **ud) {
    (void)factory_data, (void)peer, (void)len;
    *ud = NULL;
    return 0;
}

static void on_closed(aiol_server *s, void *ud) {
    (void)s;
    aiol_loop_stop(ud);
}

static void on_deadline(aiol_loop *loop, void *ud) {
    (void)loop, (void)ud;
    aiol_server_abort_clients(server);
}

static void on_signal(aiol_loop *loop, void *ud) {
    (void)ud;
    aiol_loop_remove_signal_handler(loop, SIGINT);
    aiol_loop_remove_signal_handler(loop, SIGTERM);
    aiol_server_close(server);
    aiol_server_close_clients(server);
    aiol_server_wait_closed(server, on_closed, loop);
    aiol_loop_call_later(loop, 5000000000ull, on_deadline, NULL, NULL, NULL);
}

static void print_address(const struct sockaddr_storage *ss) {
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        printf("listening on %s:%u\n", host, ntohs(a->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        printf("listening on [%s]:%u\n", host, ntohs(a->sin6_port));
    } else if (ss->ss_family == AF_UNIX) {
        printf("listening on %s\n", ((const struct sockaddr_un *)ss)->sun_path);
    }
}

int main(int argc, char **argv) {
    aiol_server_config cfg = {sizeof cfg};
    const char *tls_cert = NULL, *tls_key = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--host") && i + 1 < argc) cfg.host = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc) cfg.port = (uint16_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--unix") && i + 1 < argc) cfg.unix_path = argv[++i];
        else if (!strcmp(argv[i], "--tls-cert") && i + 1 < argc) tls_cert = argv[++i];
        else if (!strcmp(argv[i], "--tls-key") && i + 1 < argc) tls_key = argv[++i];
        else if (!strcmp(argv[i], "--tls-handshake-timeout") && i + 1 < argc) {
            double secs = atof(argv[++i]);
            if (!(secs > 0 && secs < 1e9)) {
                fprintf(stderr, "echo_server: --tls-handshake-timeout needs seconds > 0\n");
                return 2;
            }
            cfg.tls_handshake_timeout_ns = (uint64_t)(secs * 1e9);
        }
        else if (i == argc - 1 && argv[i][0] != '-') cfg.port = (uint16_t)atoi(argv[i]);
        else {
            fprintf(stderr, "usage: %s [--host H] [--port P] [--unix PATH] "
                            "[--tls-cert CERT --tls-key KEY [--tls-handshake-timeout SECS]]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!tls_cert != !tls_key) {
        fprintf(stderr, "echo_server: --tls-cert and --tls-key go together\n");
        return 2;
    }

    aiol_protocol echo = {sizeof echo};
    echo.data_received = on_data;
    echo.pause_writing = on_pause;
    echo.resume_writing = on_resume;

    aiol_tls_context *tls = NULL;
    if (tls_cert) {
        int trc = aiol_tls_context_new_server(tls_cert, tls_key, &tls);
        if (trc < 0) {
            fprintf(stderr, "echo_server: TLS: %s (%s)\n", aiol_strerror(trc), aiol_err_name(trc));
            return 1;
        }
        cfg.tls = tls;
    }

    aiol_loop *loop;
    int rc = aiol_loop_new(&loop);
    if (rc == 0) rc = aiol_server_start(loop, &cfg, &echo, make_conn, NULL, NULL, &server);
    if (rc < 0) {
        fprintf(stderr, "echo_server: %s (%s)\n", aiol_strerror(rc), aiol_err_name(rc));
        return 1;
    }
    for (int i = 0; i < aiol_server_socket_count(server); i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (aiol_server_sockname(server, i, &ss, &len) == 0) print_address(&ss);
    }
    fflush(stdout);
    aiol_loop_add_signal_handler(loop, SIGINT, on_signal, NULL, NULL);
    aiol_loop_add_signal_handler(loop, SIGTERM, on_signal, NULL, NULL);

    rc = aiol_loop_run(loop, AIOL_RUN_DEFAULT);
    aiol_server_free(server);
    aiol_tls_context_free(tls);  /* the server and its transports keep their references */
    aiol_loop_close(loop);
    if (aiol_loop_free(loop) != 0 || rc < 0) return 1;
    return 0;
}
