/*
 * Listening sockets: which sockets aiol_server_start makes for a host (NULL, "localhost",
 * "127.0.0.1"), EADDRINUSE with nothing left open, SO_REUSEPORT, adopting a listening fd
 * (aiol_server_start_fd) and refusing the wrong kinds of fd, Unix sockets, and the
 * asyncio _ensure_fd_no_transport rule for add_reader on library-owned fds.
 */
#include "net_helpers.h"

static aiol_server_config cfg_host(const char *host, uint16_t port) {
    aiol_server_config c;
    memset(&c, 0, sizeof c);
    c.size = sizeof c;
    c.host = host;
    c.port = port;
    return c;
}

/* Connects to addr (v4 or v6), sends "ping", expects it echoed back while the loop runs. */
static void echo_roundtrip(srv_state *s, const struct sockaddr_storage *addr, socklen_t len) {
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)addr, len), 0);
    int before = s->data_total;
    assert_int_equal(send(fd, "ping", 4, MSG_NOSIGNAL), 4);
    PUMP_UNTIL_GE(s->loop, &s->data_total, before + 1, 5000);
    char buf[8] = {0};
    assert_int_equal(read_exact(fd, buf, 4, 5000), 4);
    assert_memory_equal(buf, "ping", 4);
    int destroyed = s->destroy_total;
    close(fd); /* EOF: the server's transport closes */
    PUMP_UNTIL_GE(s->loop, &s->destroy_total, destroyed + 1, 5000);
}

/* Connecting to a wildcard-bound socket goes to the family's loopback address. */
static void loopback_of(struct sockaddr_storage *ss, socklen_t *len) {
    if (ss->ss_family == AF_INET) {
        ((struct sockaddr_in *)ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof(struct sockaddr_in);
    } else {
        ((struct sockaddr_in6 *)ss)->sin6_addr = in6addr_loopback;
        *len = sizeof(struct sockaddr_in6);
    }
}

static void finish_server(srv_state *s) {
    assert_int_equal(aiol_server_close(s->server), 0);
    assert_int_equal(aiol_server_free(s->server), 0);
    s->server = NULL;
    assert_true(aiol_loop_run(s->loop, AIOL_RUN_NOWAIT) >= 0); /* factory_destroy */
    assert_int_equal(s->factory_destroyed, 1);
    assert_int_equal(s->destroy_total, s->nconns);
    free(s);
}

/* host NULL: one socket per family (asyncio: every address getaddrinfo(None) returns),
   IPv6 with IPV6_V6ONLY, each with its own ephemeral port. */
static void host_null_v4_and_v6(void **state) {
    srv_state *s = srv_new(LOOP(state));
    s->echo = 1;
    aiol_server_config cfg = cfg_host(NULL, 0);
    assert_int_equal(srv_start_cfg(s, &cfg), 0);
    int v6 = 0;
    {
        int fd = socket(AF_INET6, SOCK_STREAM, 0);
        if (fd >= 0) {
            v6 = 1;
            close(fd);
        }
    }
    int n = aiol_server_socket_count(s->server);
    assert_int_equal(n, v6 ? 2 : 1);
    int seen4 = 0, seen6 = 0;
    for (int i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        assert_int_equal(aiol_server_sockname(s->server, i, &ss, &len), 0);
        assert_true(addr_port(&ss) != 0);
        if (ss.ss_family == AF_INET) {
            seen4++;
            assert_int_equal(len, sizeof(struct sockaddr_in));
            assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_ANY));
        } else {
            assert_int_equal(ss.ss_family, AF_INET6);
            seen6++;
            assert_int_equal(len, sizeof(struct sockaddr_in6));
            assert_memory_equal(&((struct sockaddr_in6 *)&ss)->sin6_addr, &in6addr_any,
                                sizeof in6addr_any);
            if (!have_ipv6()) continue; /* no ::1 to connect through */
        }
        loopback_of(&ss, &len);
        echo_roundtrip(s, &ss, len);
    }
    assert_int_equal(seen4, 1);
    assert_int_equal(seen6, v6 ? 1 : 0);
    /* index out of range, and a short buffer reports the full length */
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(aiol_server_sockname(s->server, n, &ss, &len), AIOL_ERANGE);
    assert_int_equal(aiol_server_sockname(s->server, -1, &ss, &len), AIOL_ERANGE);
    len = 2;
    assert_int_equal(aiol_server_sockname(s->server, 0, &ss, &len), 0);
    assert_true(len == sizeof(struct sockaddr_in) || len == sizeof(struct sockaddr_in6));
    finish_server(s);
}

/* host "localhost": every address it resolves to, all loopback. */
static void host_localhost(void **state) {
    srv_state *s = srv_new(LOOP(state));
    s->echo = 1;
    aiol_server_config cfg = cfg_host("localhost", 0);
    assert_int_equal(srv_start_cfg(s, &cfg), 0);
    int n = aiol_server_socket_count(s->server);
    assert_true(n >= 1 && n <= 2);
    for (int i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        assert_int_equal(aiol_server_sockname(s->server, i, &ss, &len), 0);
        assert_true(addr_port(&ss) != 0);
        if (ss.ss_family == AF_INET) {
            assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
        } else {
            assert_int_equal(ss.ss_family, AF_INET6);
            assert_memory_equal(&((struct sockaddr_in6 *)&ss)->sin6_addr, &in6addr_loopback,
                                sizeof in6addr_loopback);
        }
        echo_roundtrip(s, &ss, len);
    }
    finish_server(s);
}

/* host "127.0.0.1": exactly one IPv4 socket on the loopback address. */
static void host_ipv4_literal(void **state) {
    srv_state *s = srv_new(LOOP(state));
    s->echo = 1;
    srv_start_local(s);
    assert_int_equal(aiol_server_socket_count(s->server), 1);
    assert_int_equal(aiol_server_is_serving(s->server), 1);
    assert_ptr_equal(aiol_server_loop(s->server), LOOP(state));
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(aiol_server_sockname(s->server, 0, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    assert_true(addr_port(&ss) != 0);
    echo_roundtrip(s, &ss, len);
    finish_server(s);
}

static int plain_listener(int family, uint16_t port, int v6only) {
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        a->sin_addr.s_addr = htonl(INADDR_ANY);
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        a->sin6_addr = in6addr_any;
        len = sizeof *a;
        assert_int_equal(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only), 0);
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(listen(fd, 8), 0);
    return fd;
}

static uint16_t fd_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    return addr_port(&ss);
}

/* A port already taken (a listening socket, no SO_REUSEPORT) gives AIOL_EADDRINUSE and
   leaves nothing open: not the sockets bound before the failing one, not the caller's
   factory_data (factory_destroy never runs), and *ret untouched. */
static void addrinuse_closes_everything(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    aiol_server *marker = (aiol_server *)0x1234;

    /* 1: 127.0.0.1:P held by a running server */
    srv_start_local(s);
    uint16_t p = server_port(s->server, 0);
    srv_state *s2 = srv_new(loop);
    int fds = count_open_fds();
    aiol_server_config cfg = cfg_host("127.0.0.1", p);
    s2->server = marker;
    assert_int_equal(srv_start_cfg(s2, &cfg), AIOL_EADDRINUSE);
    assert_ptr_equal(s2->server, marker);
    assert_int_equal(count_open_fds(), fds);
    finish_server(s);

    /* 2: host NULL with the IPv4 wildcard port taken */
    int held = plain_listener(AF_INET, 0, 0);
    p = fd_port(held);
    fds = count_open_fds();
    cfg = cfg_host(NULL, p);
    assert_int_equal(srv_start_cfg(s2, &cfg), AIOL_EADDRINUSE);
    assert_ptr_equal(s2->server, marker);
    assert_int_equal(count_open_fds(), fds);
    close(held);

    /* 3: host NULL with only the IPv6 wildcard port taken: the IPv4 socket may have been
       bound first and must be closed again (the port is then free for IPv4). */
    int fd6 = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd6 >= 0) {
        close(fd6);
        held = plain_listener(AF_INET6, 0, 1);
        p = fd_port(held);
        /* Some network stacks (gVisor's) sometimes refuse IPv4 on a port an IPv6-only
           socket holds: then only the fd count can show that nothing of ours stayed. */
        int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a4 = {0};
        a4.sin_family = AF_INET;
        a4.sin_port = htons(p);
        int v4_free = bind(probe, (struct sockaddr *)&a4, sizeof a4) == 0;
        close(probe);
        fds = count_open_fds();
        cfg = cfg_host(NULL, p);
        assert_int_equal(srv_start_cfg(s2, &cfg), AIOL_EADDRINUSE);
        assert_ptr_equal(s2->server, marker);
        assert_int_equal(count_open_fds(), fds);
        if (v4_free) {
            int v4 = plain_listener(AF_INET, p, 0); /* nothing of ours kept IPv4 :p */
            close(v4);
        }
        close(held);
    }
    assert_int_equal(s2->factory_destroyed, 0);
    assert_int_equal(s2->factory_calls, 0);
    free(s2);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
}

/* reuse_port: two servers bind the same port; connections reach one of them. Without
   reuse_port on the second, EADDRINUSE. */
static void reuse_port_two_servers(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *a = srv_new(loop), *b = srv_new(loop), *c = srv_new(loop);
    aiol_server_config cfg = cfg_host("127.0.0.1", 0);
    cfg.reuse_port = 1;
    assert_int_equal(srv_start_cfg(a, &cfg), 0);
    uint16_t p = server_port(a->server, 0);
    cfg.port = p;
    assert_int_equal(srv_start_cfg(b, &cfg), 0);
    assert_int_equal(server_port(b->server, 0), p);
    cfg.reuse_port = 0;
    int fds = count_open_fds();
    assert_int_equal(srv_start_cfg(c, &cfg), AIOL_EADDRINUSE);
    assert_int_equal(count_open_fds(), fds);

    enum { N = 16 };
    int cl[N];
    for (int i = 0; i < N; i++) {
        cl[i] = tcp_client(p);
        assert_true(cl[i] >= 0);
    }
    int total = 0;
    for (int tries = 0; tries < 1000 && total < N; tries++) {
        assert_true(aiol_loop_run(loop, AIOL_RUN_ONCE) >= 0);
        total = a->factory_calls + b->factory_calls;
    }
    assert_int_equal(total, N);
    for (int i = 0; i < N; i++) close(cl[i]);
    for (int tries = 0; tries < 1000 && a->destroy_total + b->destroy_total < N; tries++)
        assert_true(aiol_loop_run(loop, AIOL_RUN_ONCE) >= 0);
    assert_int_equal(a->destroy_total + b->destroy_total, N);
    finish_server(a);
    finish_server(b);
    free(c);
}

/* aiol_server_start_fd: adopts a listening socket (made non-blocking), serves it, and the
   server closes it on close. cfg may be NULL. */
static void start_fd_adopts_listener(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    s->echo = 1;
    int lfd = socket(AF_INET, SOCK_STREAM, 0); /* blocking, no CLOEXEC: as inherited */
    assert_true(lfd >= 0);
    struct sockaddr_in a = loopback4(0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 16), 0);
    uint16_t p = fd_port(lfd);
    aiol_protocol proto = rec_protocol();
    assert_int_equal(aiol_server_start_fd(loop, lfd, NULL, &proto, rec_factory, s,
                                          srv_factory_destroy, &s->server),
                     0);
    assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
    assert_int_equal(aiol_server_socket_count(s->server), 1);
    assert_int_equal(server_port(s->server, 0), p);
    assert_int_equal(aiol_server_is_serving(s->server), 1);
    /* the same fd again: the loop already owns it */
    srv_state *s2 = srv_new(loop);
    aiol_server *other = NULL;
    assert_int_equal(aiol_server_start_fd(loop, lfd, NULL, &proto, rec_factory, s2,
                                          srv_factory_destroy, &other),
                     AIOL_EBUSY);
    assert_null(other);
    free(s2);

    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(aiol_server_sockname(s->server, 0, &ss, &len), 0);
    echo_roundtrip(s, &ss, len);

    assert_int_equal(aiol_server_close(s->server), 0);
    assert_false(fd_is_open(lfd)); /* the server owned it */
    assert_int_equal(aiol_server_free(s->server), 0);
    assert_true(aiol_loop_run(loop, AIOL_RUN_NOWAIT) >= 0);
    assert_int_equal(s->factory_destroyed, 1);
    free(s);
}

/* Refused: a TCP socket that is not listening, a non-socket, a UDP socket, a bad fd. The
   fd stays the caller's, untouched (still open, still blocking); nothing runs. */
static void start_fd_refuses_bad_fds(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    aiol_protocol proto = rec_protocol();
    aiol_server *ret = NULL;

    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(tcp >= 0);
    struct sockaddr_in a = loopback4(0);
    assert_int_equal(bind(tcp, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(aiol_server_start_fd(loop, tcp, NULL, &proto, rec_factory, s,
                                          srv_factory_destroy, &ret),
                     AIOL_EINVAL);
    assert_true(fd_is_open(tcp));
    assert_false(fcntl(tcp, F_GETFL) & O_NONBLOCK);

    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(aiol_server_start_fd(loop, pfd[0], NULL, &proto, rec_factory, s,
                                          srv_factory_destroy, &ret),
                     AIOL_ENOTSOCK);
    assert_true(fd_is_open(pfd[0]));
    assert_false(fcntl(pfd[0], F_GETFL) & O_NONBLOCK);

    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(udp >= 0);
    assert_int_equal(bind(udp, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(aiol_server_start_fd(loop, udp, NULL, &proto, rec_factory, s,
                                          srv_factory_destroy, &ret),
                     AIOL_EINVAL);
    assert_true(fd_is_open(udp));

    assert_int_equal(aiol_server_start_fd(loop, -1, NULL, &proto, rec_factory, s,
                                          srv_factory_destroy, &ret),
                     AIOL_EBADF);
    int closed_fd = dup(udp);
    close(closed_fd);
    assert_int_equal(aiol_server_start_fd(loop, closed_fd, NULL, &proto, rec_factory, s,
                                          srv_factory_destroy, &ret),
                     AIOL_EBADF);

    /* a listening socket the loop already watches for the caller */
    assert_int_equal(listen(tcp, 4), 0);
    assert_int_equal(aiol_loop_add_reader(loop, tcp, never_fd_cb, NULL, NULL), 0);
    assert_int_equal(aiol_server_start_fd(loop, tcp, NULL, &proto, rec_factory, s,
                                          srv_factory_destroy, &ret),
                     AIOL_EBUSY);
    assert_int_equal(aiol_loop_remove_reader(loop, tcp), 1);
    assert_true(fd_is_open(tcp));

    assert_null(ret);
    close(tcp);
    close(pfd[0]);
    close(pfd[1]);
    close(udp);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    assert_int_equal(s->factory_destroyed, 0);
    assert_int_equal(s->factory_calls, 0);
    free(s);
}

/* ---- Unix sockets -------------------------------------------------------------------- */

typedef struct tmpdir {
    char dir[32];
    char path[96];
} tmpdir;

static void tmpdir_make(tmpdir *t) {
    snprintf(t->dir, sizeof t->dir, "/tmp/aiol-srv-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/s.sock", t->dir);
}

static void tmpdir_remove(tmpdir *t) {
    unlink(t->path);
    assert_int_equal(rmdir(t->dir), 0);
}

static int path_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

typedef struct client_conn {
    conn_rec rec;
    int done_calls, done_status;
    aiol_transport *t;
} client_conn;

static void client_done(aiol_transport *t, int status, void *ud) {
    client_conn *c = (client_conn *)ud;
    CHECK(!g_in_api);
    c->done_calls++;
    c->done_status = status;
    c->t = t;
}

/* Echo over a Unix socket, both with a plain client and with aiol_loop_connect(unix_path);
   can_write_eof is true on both ends; the path is unlinked on close. */
static void unix_echo_and_connect(void **state) {
    aiol_loop *loop = LOOP(state);
    tmpdir td;
    tmpdir_make(&td);
    srv_state *s = srv_new(loop);
    s->echo = 1;
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.unix_path = td.path;
    assert_int_equal(srv_start_cfg(s, &cfg), 0);
    assert_int_equal(aiol_server_socket_count(s->server), 1);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(aiol_server_sockname(s->server, 0, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_UNIX);
    assert_string_equal(((struct sockaddr_un *)&ss)->sun_path, td.path);
    struct stat st;
    assert_int_equal(stat(td.path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));

    /* a plain client */
    int fd = unix_client(td.path);
    assert_true(fd >= 0);
    PUMP_UNTIL_GE(loop, &s->made_total, 1, 5000);
    assert_int_equal(aiol_transport_can_write_eof(s->conns[0].t), 1);
    assert_int_equal(send(fd, "unix", 4, MSG_NOSIGNAL), 4);
    PUMP_UNTIL_GE(loop, &s->data_total, 1, 5000);
    char buf[8] = {0};
    assert_int_equal(read_exact(fd, buf, 4, 5000), 4);
    assert_memory_equal(buf, "unix", 4);
    /* half close from the server: write_eof works on AF_UNIX */
    assert_int_equal(aiol_transport_write_eof(s->conns[0].t), 0);
    size_t n = 0;
    assert_int_equal(read_to_eof(fd, &n, 5000), 0);
    assert_int_equal(n, 0);
    close(fd);
    PUMP_UNTIL_GE(loop, &s->destroy_total, 1, 5000);

    /* aiol_loop_connect with unix_path */
    client_conn cc;
    memset(&cc, 0, sizeof cc);
    aiol_protocol cp = rec_protocol();
    aiol_connect_config ccfg;
    memset(&ccfg, 0, sizeof ccfg);
    ccfg.size = sizeof ccfg;
    ccfg.unix_path = td.path;
    assert_int_equal(aiol_loop_connect(loop, &ccfg, &cp, &cc.rec, client_done, &cc, NULL), 0);
    PUMP_UNTIL_GE(loop, &cc.done_calls, 1, 5000);
    assert_int_equal(cc.done_status, 0);
    assert_non_null(cc.t);
    assert_ptr_equal(cc.t, cc.rec.t);
    assert_int_equal(aiol_transport_can_write_eof(cc.t), 1);
    assert_int_equal(aiol_transport_write(cc.t, "hello", 5), 0);
    assert_int_equal(aiol_transport_write_eof(cc.t), 0);
    /* the echo comes back, then the server sees EOF, closes, and we see EOF */
    PUMP_UNTIL_GE(loop, &cc.rec.destroyed, 1, 5000);
    assert_int_equal(cc.rec.bytes, 5);
    assert_int_equal(cc.rec.eof, 1);
    assert_int_equal(cc.rec.lost_status, 0);
    PUMP_UNTIL_GE(loop, &s->destroy_total, 2, 5000);
    assert_int_equal(s->conns[1].bytes, 5);

    assert_int_equal(aiol_server_close(s->server), 0);
    assert_false(path_exists(td.path));
    finish_server(s);
    tmpdir_remove(&td);
}

/* A socket file left by an earlier run is replaced (asyncio); a regular file at the path
   is not a stale socket: it is left alone and the bind error comes back. */
static void unix_stale_socket_replaced(void **state) {
    aiol_loop *loop = LOOP(state);
    tmpdir td;
    tmpdir_make(&td);
    int old = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, td.path, strlen(td.path) + 1);
    assert_int_equal(bind(old, (struct sockaddr *)&a, sizeof a), 0);
    close(old);
    assert_true(path_exists(td.path));
    assert_int_equal(unix_client(td.path), -ECONNREFUSED); /* stale */

    srv_state *s = srv_new(loop);
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.unix_path = td.path;
    assert_int_equal(srv_start_cfg(s, &cfg), 0);
    int fd = unix_client(td.path);
    assert_true(fd >= 0);
    PUMP_UNTIL_GE(loop, &s->made_total, 1, 5000);
    close(fd);
    PUMP_UNTIL_GE(loop, &s->destroy_total, 1, 5000);
    finish_server(s); /* free closes: unlinks */
    assert_false(path_exists(td.path));

    /* a regular file */
    int f = open(td.path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(f >= 0);
    close(f);
    s = srv_new(loop);
    int fds = count_open_fds();
    assert_int_equal(srv_start_cfg(s, &cfg), AIOL_EADDRINUSE);
    assert_int_equal(count_open_fds(), fds);
    assert_true(path_exists(td.path));
    free(s);
    tmpdir_remove(&td);
}

/* The path goes on close, on free without close, and at loop close. */
static void unix_path_unlinked(void **state) {
    aiol_loop *loop = LOOP(state);
    tmpdir td;
    tmpdir_make(&td);
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.unix_path = td.path;

    srv_state *s = srv_new(loop);
    assert_int_equal(srv_start_cfg(s, &cfg), 0);
    assert_true(path_exists(td.path));
    assert_int_equal(aiol_server_free(s->server), 0); /* free without close */
    assert_false(path_exists(td.path));
    assert_true(aiol_loop_run(loop, AIOL_RUN_NOWAIT) >= 0);
    assert_int_equal(s->factory_destroyed, 1);
    free(s);

    s = srv_new(loop);
    assert_int_equal(srv_start_cfg(s, &cfg), 0);
    assert_true(path_exists(td.path));
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_false(path_exists(td.path));
    assert_int_equal(s->factory_destroyed, 1);
    assert_int_equal(aiol_server_free(s->server), 0); /* allowed after loop close */
    free(s);
    tmpdir_remove(&td);
}

/* asyncio _ensure_fd_no_transport: add/remove reader/writer on a transport's fd or a
   listening socket's fd is AIOL_EBUSY (and changes nothing). */
static void add_reader_on_owned_fds_is_ebusy(void **state) {
    aiol_loop *loop = LOOP(state);
    srv_state *s = srv_new(loop);
    s->echo = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback4(0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 16), 0);
    aiol_protocol proto = rec_protocol();
    assert_int_equal(aiol_server_start_fd(loop, lfd, NULL, &proto, rec_factory, s,
                                          srv_factory_destroy, &s->server),
                     0);
    int dummy = 0;
    assert_int_equal(aiol_loop_add_reader(loop, lfd, never_fd_cb, &dummy, NULL),
                     AIOL_EBUSY);
    assert_int_equal(aiol_loop_add_writer(loop, lfd, never_fd_cb, &dummy, NULL),
                     AIOL_EBUSY);
    assert_int_equal(aiol_loop_remove_reader(loop, lfd), AIOL_EBUSY);
    assert_int_equal(aiol_loop_remove_writer(loop, lfd), AIOL_EBUSY);

    int fd = tcp_client(fd_port(lfd));
    assert_true(fd >= 0);
    PUMP_UNTIL_GE(loop, &s->made_total, 1, 5000);
    aiol_transport *t = s->conns[0].t;
    int tfd = aiol_transport_fileno(t);
    assert_true(tfd >= 0);
    assert_int_equal(aiol_loop_add_reader(loop, tfd, never_fd_cb, &dummy, NULL),
                     AIOL_EBUSY);
    assert_int_equal(aiol_loop_add_writer(loop, tfd, never_fd_cb, &dummy, NULL),
                     AIOL_EBUSY);
    assert_int_equal(aiol_loop_remove_reader(loop, tfd), AIOL_EBUSY);
    assert_int_equal(aiol_loop_remove_writer(loop, tfd), AIOL_EBUSY);
    /* the transport still reads */
    assert_int_equal(send(fd, "x", 1, MSG_NOSIGNAL), 1);
    PUMP_UNTIL_GE(loop, &s->data_total, 1, 5000);
    char c;
    assert_int_equal(read_exact(fd, &c, 1, 5000), 1);
    close(fd);
    PUMP_UNTIL_GE(loop, &s->destroy_total, 1, 5000);
    assert_int_equal(dummy, 0);
    finish_server(s);
}

static const struct CMUnitTest tests[] = {
    CASE(host_null_v4_and_v6),
    CASE(host_localhost),
    CASE(host_ipv4_literal),
    CASE(addrinuse_closes_everything),
    CASE(reuse_port_two_servers),
    CASE(start_fd_adopts_listener),
    CASE(start_fd_refuses_bad_fds),
    CASE(unix_echo_and_connect),
    CASE(unix_stale_socket_replaced),
    CASE(unix_path_unlinked),
    CASE(add_reader_on_owned_fds_is_ebusy),
};

TEST_MAIN("test_server_listen", tests)
