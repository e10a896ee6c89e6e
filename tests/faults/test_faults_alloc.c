/* Allocation failure in every constructor (libuv's loop_init_oom, RELIABILITY.md RX-03):
   for N = 0, 1, 2, ... the N-th allocation of the call fails (operator new throws, the
   nothrow forms and OpenSSL's allocator return NULL) until the call needs fewer than N+1.
   Each failure must come back as AIOL_ENOMEM (AIOL_ENOMEM or AIOL_ETLS where OpenSSL
   reports it), with no destroy run, no fd left open and, under ASan, nothing leaked; each
   success must give a working object. */
#include <signal.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "faults_common.h"

static int g_tls_hooked;

/* ---- the sweep ------------------------------------------------------------------------ */

typedef struct op {
    int (*call)(struct op *o);  /* the constructor; returns its code */
    void (*undo)(struct op *o); /* after success: check it works, free it */
    aiol_loop *loop;
    int alt_rc;                 /* another acceptable failure code (0: none) */
    void *obj;
    int fd, fd2;
    int destroys;
    int ran;
    int stride;                 /* past the first 64, every stride-th (OpenSSL's thousands) */
    int fresh;                  /* a new loop for each round (state the call keeps in the
                                   loop, such as the signal pipe, is gone with it) */
} op;

static void noop(aiol_loop *loop, void *ud) { UNUSED(loop), UNUSED(ud); }
static void op_destroy(void *ud) { ((op *)ud)->destroys++; }
static void op_mark(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    ((op *)ud)->ran++;
}

/* Returns how many allocations the call made when nothing failed. */
static long sweep(const char *name, op *o) {
    for (long n = 0;; n += n < 64 || o->stride <= 1 ? 1 : o->stride) {
        assert_true(n < 100000);
        int fds = count_open_fds();
        if (o->fresh) {
            assert_int_equal(aiol_loop_new(&o->loop), 0);
            assert_int_equal(aiol_loop_set_exception_handler(o->loop, record_report, NULL, NULL), 0);
        }
        o->destroys = 0;
        o->ran = 0;
        o->obj = NULL;
        aiol_fault_set(AIOL_FAULT_ALLOC, ENOMEM, n, 1);
        int rc = o->call(o);
        long hits = aiol_fault_hits(AIOL_FAULT_ALLOC);
        aiol_fault_clear();
        if (rc == 0) {
            o->undo(o);
        } else {
            if (rc != AIOL_ENOMEM && (!o->alt_rc || rc != o->alt_rc))
                fail_msg("%s: allocation %ld failed: got %d (%s), want AIOL_ENOMEM", name, n, rc,
                         aiol_err_name(rc));
            if (hits != 1) fail_msg("%s: %d without an injected failure", name, rc);
            if (o->destroys) fail_msg("%s: destroy ran after a failed call", name);
        }
        if (o->loop) run_to_end(o->loop);
        if (o->fresh) {
            assert_int_equal(aiol_loop_free(o->loop), 0);
            o->loop = NULL;
        }
        if (count_open_fds() != fds) fail_msg("%s: allocation %ld: fds %d -> %d", name, n, fds, count_open_fds());
        if (g_check_failures) fail_msg("%s: allocation %ld: a CHECK failed (%s:%d %s)", name, n,
                                       g_check_file, g_check_line, g_check_expr);
        if (hits == 0) {
            assert_int_equal(rc, 0);
            print_message("%s: no failure left to inject at allocation %ld; each earlier one handled\n", name, n);
            return n;
        }
    }
}

/* ---- the loop and its callbacks ------------------------------------------------------------ */

static int loop_new_call(op *o) { return aiol_loop_new((aiol_loop **)&o->obj); }
static void loop_new_undo(op *o) {
    aiol_loop *l = (aiol_loop *)o->obj;
    assert_int_equal(aiol_loop_call_soon(l, op_mark, o, NULL, NULL), 0);
    assert_int_equal(aiol_loop_run(l, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(o->ran, 1);
    assert_int_equal(aiol_loop_free(l), 0);
}

static void loop_new_alloc(void **state) {
    UNUSED(state);
    op o = {loop_new_call, loop_new_undo, NULL, 0, NULL, -1, -1, 0, 0};
    assert_true(sweep("aiol_loop_new", &o) > 0);
}

static void undo_handle(op *o) {
    aiol_handle *h = (aiol_handle *)o->obj;
    assert_int_equal(aiol_handle_cancel(h), 1); /* pending: cancelled */
    assert_int_equal(aiol_handle_release(h), 0);
    run_to_end(o->loop);
    assert_int_equal(o->destroys, 1);
    assert_int_equal(o->ran, 0);
}
static void undo_run(op *o) {
    run_to_end(o->loop);
    assert_int_equal(o->ran, 1);
    assert_int_equal(o->destroys, 1);
}
static int call_soon_handle(op *o) {
    return aiol_loop_call_soon(o->loop, op_mark, o, op_destroy, (aiol_handle **)&o->obj);
}
static int call_soon_plain(op *o) { return aiol_loop_call_soon(o->loop, op_mark, o, op_destroy, NULL); }
static int call_later_handle(op *o) {
    return aiol_loop_call_later(o->loop, 3600000 * MS, op_mark, o, op_destroy, (aiol_handle **)&o->obj);
}
static int call_at_plain(op *o) {
    return aiol_loop_call_at(o->loop, aiol_loop_now(o->loop), op_mark, o, op_destroy, NULL);
}
static int call_threadsafe(op *o) {
    return aiol_loop_call_soon_threadsafe(o->loop, op_mark, o, op_destroy);
}

/* The sweeps run on a fresh loop each time, so the first-use growth of every queue is in
   the path; a second loop call on the same loop would find them grown. */
static void sweep_fresh(const char *name, int (*call)(op *), void (*undo)(op *)) {
    for (int warm = 0; warm < 2; warm++) {
        aiol_loop *l;
        assert_int_equal(aiol_loop_new(&l), 0);
        assert_int_equal(aiol_loop_set_exception_handler(l, record_report, NULL, NULL), 0);
        if (warm) { /* and once with everything grown and the handle pool full */
            for (int i = 0; i < 100; i++) assert_int_equal(aiol_loop_call_soon(l, noop, NULL, NULL, NULL), 0);
            run_to_end(l);
        }
        op o = {call, undo, l, 0, NULL, -1, -1, 0, 0};
        sweep(name, &o);
        assert_int_equal(aiol_loop_free(l), 0);
    }
}

static void callbacks_alloc(void **state) {
    UNUSED(state);
    sweep_fresh("aiol_loop_call_soon (handle)", call_soon_handle, undo_handle);
    sweep_fresh("aiol_loop_call_soon", call_soon_plain, undo_run);
    sweep_fresh("aiol_loop_call_later (handle)", call_later_handle, undo_handle);
    sweep_fresh("aiol_loop_call_at", call_at_plain, undo_run);
    sweep_fresh("aiol_loop_call_soon_threadsafe", call_threadsafe, undo_run);
}

static void fd_mark(aiol_loop *loop, int fd, void *ud) {
    UNUSED(fd);
    op_mark(loop, ud);
}
static int add_reader_call(op *o) {
    return aiol_loop_add_reader(o->loop, o->fd, fd_mark, o, op_destroy);
}
static int add_writer_call(op *o) {
    return aiol_loop_add_writer(o->loop, o->fd2, fd_mark, o, op_destroy);
}
static void fd_undo(op *o, int fd, int writer) {
    if (!writer) assert_int_equal(write(o->fd2, "x", 1), 1);
    while (!o->ran) assert_true(aiol_loop_run(o->loop, AIOL_RUN_ONCE) >= 0);
    if (!writer) {
        char b;
        assert_int_equal(read(o->fd, &b, 1), 1);
    }
    assert_int_equal(writer ? aiol_loop_remove_writer(o->loop, fd) : aiol_loop_remove_reader(o->loop, fd), 1);
    run_to_end(o->loop);
    assert_int_equal(o->destroys, 1);
}
static void add_reader_undo(op *o) { fd_undo(o, o->fd, 0); }
static void add_writer_undo(op *o) { fd_undo(o, o->fd2, 1); }

static void fd_watchers_alloc(void **state) {
    aiol_loop *loop = LOOP(state);
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    op o = {add_reader_call, add_reader_undo, loop, 0, NULL, pp[0], pp[1], 0, 0};
    sweep("aiol_loop_add_reader", &o);
    o.call = add_writer_call;
    o.undo = add_writer_undo;
    sweep("aiol_loop_add_writer", &o);
    close(pp[0]);
    close(pp[1]);
}

static int signal_call(op *o) {
    return aiol_loop_add_signal_handler(o->loop, SIGUSR2, op_mark, o, op_destroy);
}
static void signal_undo(op *o) {
    raise(SIGUSR2);
    while (!o->ran) assert_true(aiol_loop_run(o->loop, AIOL_RUN_ONCE) >= 0);
    assert_int_equal(aiol_loop_remove_signal_handler(o->loop, SIGUSR2), 1);
    run_to_end(o->loop);
    assert_int_equal(o->destroys, 1);
}
static void ignore_report(const aiol_error_context *ctx, void *ud) {
    UNUSED(ctx);
    ((op *)ud)->ran++;
}
static int handler_call(op *o) {
    return aiol_loop_set_exception_handler(o->loop, ignore_report, o, op_destroy);
}
static void handler_undo(op *o) {
    aiol_error_context ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.size = sizeof ctx;
    ctx.message = "test";
    assert_int_equal(aiol_loop_call_exception_handler(o->loop, &ctx), 0);
    run_to_end(o->loop);
    assert_int_equal(o->ran, 1);
    assert_int_equal(aiol_loop_set_exception_handler(o->loop, record_report, NULL, NULL), 0);
    run_to_end(o->loop);
    assert_int_equal(o->destroys, 1);
}
static int report_call(op *o) {
    aiol_error_context ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.size = sizeof ctx;
    ctx.message = "a queued report";
    ctx.detail = "with detail";
    return aiol_loop_call_exception_handler(o->loop, &ctx);
}
static void report_undo(op *o) {
    int before = g_reports;
    run_to_end(o->loop);
    assert_int_equal(g_reports, before + 1);
}

static void loop_misc_alloc(void **state) {
    aiol_loop *loop = LOOP(state);
    op o = {signal_call, signal_undo, NULL, 0, NULL, -1, -1, 0, 0, 0, 1};
    sweep("aiol_loop_add_signal_handler", &o);
    o.fresh = 0;
    o.loop = loop;
    o.call = handler_call;
    o.undo = handler_undo;
    sweep("aiol_loop_set_exception_handler", &o);
    o.call = report_call;
    o.undo = report_undo;
    sweep("aiol_loop_call_exception_handler", &o);
}

/* ---- servers ------------------------------------------------------------------------------ */

static int refuse_factory(void *fd_, const struct sockaddr *peer, socklen_t len, void **ud) {
    UNUSED(fd_), UNUSED(peer), UNUSED(len), UNUSED(ud);
    return 1;
}
static char g_unix_path[108];

static int server_common(op *o, const char *host, const char *path, int fd) {
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = host;
    cfg.unix_path = path;
    aiol_protocol p = conn_protocol(0);
    if (fd >= 0)
        return aiol_server_start_fd(o->loop, fd, &cfg, &p, refuse_factory, o, op_destroy,
                                    (aiol_server **)&o->obj);
    return aiol_server_start(o->loop, &cfg, &p, refuse_factory, o, op_destroy, (aiol_server **)&o->obj);
}
static int server_tcp_call(op *o) { return server_common(o, "127.0.0.1", NULL, -1); }
static int server_unix_call(op *o) { return server_common(o, NULL, g_unix_path, -1); }
static int server_fd_call(op *o) { return server_common(o, NULL, NULL, o->fd); }
static void server_undo(op *o) {
    aiol_server *s = (aiol_server *)o->obj;
    assert_int_equal(aiol_server_is_serving(s), 1);
    assert_int_equal(aiol_server_close(s), 0);
    assert_int_equal(aiol_server_free(s), 0);
    run_to_end(o->loop);
    assert_int_equal(o->destroys, 1);
}
static void server_fd_undo(op *o) {
    server_undo(o);
    /* the server took the listener; a new one for the next round */
    uint16_t port;
    o->fd = tcp_listener(&port);
}

static void server_start_alloc(void **state) {
    aiol_loop *loop = LOOP(state);
    op o = {server_tcp_call, server_undo, loop, 0, NULL, -1, -1, 0, 0};
    sweep("aiol_server_start (tcp)", &o);
    snprintf(g_unix_path, sizeof g_unix_path, "/tmp/aiol-faults-%d.sock", (int)getpid());
    o.call = server_unix_call;
    sweep("aiol_server_start (unix)", &o);
    struct stat st;
    assert_int_equal(stat(g_unix_path, &st), -1); /* unlinked on every path */

    uint16_t port;
    o.fd = tcp_listener(&port);
    int flags = fcntl(o.fd, F_GETFL);
    o.call = server_fd_call;
    o.undo = server_fd_undo;
    /* a failed start leaves the fd the caller's, flags as they were: checked by the fd
       count (it stays open) and below */
    sweep("aiol_server_start_fd", &o);
    assert_int_equal(fcntl(o.fd, F_GETFL), flags);
    close(o.fd);
}

/* ---- transports and connect ------------------------------------------------------------------ */

static conn g_conn;

static int adopt_call(op *o) {
    aiol_protocol p = conn_protocol(0);
    memset(&g_conn, 0, sizeof g_conn);
    int rc = aiol_transport_adopt(o->loop, o->fd, &p, &g_conn, NULL);
    if (rc == 0) return 0;
    CHECK(g_conn.destroyed == 0);
    return rc;
}
static void adopt_undo(op *o) {
    while (!g_conn.made) assert_true(aiol_loop_run(o->loop, AIOL_RUN_ONCE) >= 0);
    assert_int_equal(aiol_transport_write(g_conn.t, "ping", 4), 0);
    char b[4];
    ssize_t got = 0;
    while (got < 4) {
        aiol_loop_run(o->loop, AIOL_RUN_NOWAIT);
        ssize_t n = recv(o->fd2, b + got, 4 - (size_t)got, MSG_DONTWAIT);
        if (n > 0) got += n;
    }
    assert_int_equal(aiol_transport_close(g_conn.t), 0);
    run_to_end(o->loop);
    assert_int_equal(g_conn.destroyed, 1);
    assert_int_equal(g_conn.lost_status, 0);
    close(o->fd2);
    tcp_pair(&o->fd, &o->fd2); /* the transport took and closed fd: a new pair */
}

static void transport_adopt_alloc(void **state) {
    aiol_loop *loop = LOOP(state);
    op o = {adopt_call, adopt_undo, loop, 0, NULL, -1, -1, 0, 0};
    tcp_pair(&o.fd, &o.fd2);
    sweep("aiol_transport_adopt", &o);
    close(o.fd);
    close(o.fd2);
}

typedef struct cstate {
    int calls, status;
    aiol_transport *t;
} cstate;
static cstate g_cs;
static int n_with_handle;
static void on_connect(aiol_transport *t, int status, void *ud) {
    UNUSED(ud);
    g_cs.calls++;
    g_cs.status = status;
    g_cs.t = t;
}

/* The call itself (the resolver-free path for a literal address): everything it
   allocates is allocated before anything is scheduled. The connection then completes
   with the fault cleared. */
static int connect_call(op *o) {
    aiol_connect_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    cfg.port = (uint16_t)o->fd2;
    aiol_protocol p = conn_protocol(0);
    memset(&g_conn, 0, sizeof g_conn);
    memset(&g_cs, 0, sizeof g_cs);
    int s;
    while ((s = accept4(o->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) close(s); /* earlier attempts */
    aiol_handle *h = NULL;
    int rc = aiol_loop_connect(o->loop, &cfg, &p, &g_conn, on_connect, NULL, (n_with_handle ? &h : NULL));
    if (h) aiol_handle_release(h);
    CHECK(rc == 0 || (g_conn.destroyed == 0 && g_cs.calls == 0));
    return rc;
}
static void connect_undo(op *o) {
    while (!g_cs.calls) assert_true(aiol_loop_run(o->loop, AIOL_RUN_ONCE) >= 0);
    assert_int_equal(g_cs.status, 0);
    assert_non_null(g_cs.t);
    assert_int_equal(g_conn.made, 1);
    assert_int_equal(aiol_transport_close(g_cs.t), 0);
    run_to_end(o->loop);
    assert_int_equal(g_conn.destroyed, 1);
}

static void connect_alloc(void **state) {
    aiol_loop *loop = LOOP(state);
    uint16_t port;
    op o = {connect_call, connect_undo, loop, 0, NULL, -1, -1, 0, 0};
    o.fd = tcp_listener(&port);
    o.fd2 = port;
    set_nonblock(o.fd); /* connect_call drains it */
    sweep("aiol_loop_connect", &o);
    n_with_handle = 1;
    sweep("aiol_loop_connect (handle)", &o);
    n_with_handle = 0;
    close(o.fd);
}

/* ---- accepting -------------------------------------------------------------------------------- */

static conn g_accepted;
static int g_run_enomem;
static int g_accepts;
static int accept_factory(void *fd_, const struct sockaddr *peer, socklen_t len, void **ud) {
    UNUSED(fd_), UNUSED(peer), UNUSED(len);
    memset(&g_accepted, 0, sizeof g_accepted);
    g_accepted.echo = 1;
    g_accepts++;
    *ud = &g_accepted;
    return 0;
}

/* A client arriving while the N-th allocation fails: either it is served, or the server
   reports AIOL_ENOMEM once, closes that socket and destroys its user_data, and serves the
   next client. (Not a constructor call: "rc" here is the report.) */
static int accept_call(op *o) {
    aiol_server *s = (aiol_server *)o->obj;
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    assert_int_equal(aiol_server_sockname(s, 0, &a, &len), 0);
    g_accepts = 0;
    g_reports = 0;
    o->fd2 = tcp_client(ntohs(((struct sockaddr_in *)&a)->sin_port));
    while (!g_accepted.made && !g_reports) {
        int r = aiol_loop_run(o->loop, AIOL_RUN_ONCE);
        if (r == AIOL_ENOMEM) g_run_enomem++; /* the loop's own queues could not grow */
        else assert_true(r >= 0);
    }
    if (g_reports) {
        CHECK(g_reports == 1 && g_report_code == AIOL_ENOMEM && g_report_kind == AIOL_OBJ_SERVER);
        CHECK(g_accepted.made == 0);
        CHECK(g_accepts == 0 || g_accepted.destroyed == 1);
        char b;
        CHECK(recv(o->fd2, &b, 1, 0) <= 0); /* closed */
        close(o->fd2);
        return AIOL_ENOMEM;
    }
    return 0;
}
static void accept_undo(op *o) {
    send_pattern(o->fd2, 0, 10);
    char b[10];
    ssize_t got = 0;
    while (got < 10) {
        aiol_loop_run(o->loop, AIOL_RUN_NOWAIT);
        ssize_t n = recv(o->fd2, b + got, 10 - (size_t)got, MSG_DONTWAIT);
        if (n > 0) got += n;
    }
    close(o->fd2);
    while (!g_accepted.lost) assert_true(aiol_loop_run(o->loop, AIOL_RUN_ONCE) >= 0);
    memset(&g_accepted, 0, sizeof g_accepted);
}

static void accept_alloc(void **state) {
    aiol_loop *loop = LOOP(state);
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    aiol_protocol p = conn_protocol(0);
    aiol_server *s;
    assert_int_equal(aiol_server_start(loop, &cfg, &p, accept_factory, NULL, NULL, &s), 0);
    memset(&g_accepted, 0, sizeof g_accepted);
    /* not sweep(): its run_to_end would wait for the server */
    op o = {accept_call, accept_undo, loop, 0, s, -1, -1, 0, 0};
    assert_int_equal(accept_call(&o), 0); /* once unfaulted: the loop's queues grown */
    accept_undo(&o);
    for (long n = 0;; n++) {
        assert_true(n < 10000);
        aiol_fault_set(AIOL_FAULT_ALLOC, ENOMEM, n, 1);
        int rc = accept_call(&o);
        long hits = aiol_fault_hits(AIOL_FAULT_ALLOC);
        aiol_fault_clear();
        if (rc == 0) accept_undo(&o);
        if (g_check_failures) fail_msg("accept: allocation %ld: a CHECK failed (%s:%d %s)", n,
                                       g_check_file, g_check_line, g_check_expr);
        if (hits == 0 && rc == 0) {
            print_message("accepting: %ld allocation(s), each failure handled (%d came back "
                          "from aiol_loop_run as AIOL_ENOMEM)\n", n, g_run_enomem);
            break;
        }
    }
    assert_int_equal(aiol_server_close(s), 0);
    assert_int_equal(aiol_server_free(s), 0);
    run_to_end(loop);
}

/* A write that must be queued (the socket took nothing) when the queue cannot grow:
   AIOL_ENOMEM, nothing queued, nothing lost; the next write goes through. */
static void write_queue_alloc(void **state) {
    aiol_loop *loop = LOOP(state);
    int ours, theirs;
    tcp_pair(&ours, &theirs);
    conn c;
    adopt(loop, ours, &c, 0);
    peer pr;
    peer_start(loop, &pr, theirs);
    unsigned char data[2000];
    fill_pattern(data, 0, sizeof data);
    aiol_fault_set(AIOL_FAULT_SEND, EAGAIN, 0, 1);
    aiol_fault_set(AIOL_FAULT_ALLOC, ENOMEM, 0, 1);
    assert_int_equal(aiol_transport_write(c.t, data, 1000), AIOL_ENOMEM);
    assert_int_equal(aiol_transport_get_write_buffer_size(c.t), 0);
    aiol_fault_set(AIOL_FAULT_SENDMSG, EAGAIN, 0, 1);
    aiol_fault_set(AIOL_FAULT_ALLOC, ENOMEM, 0, 1);
    aiol_buf b[2] = {{data, 500}, {data + 500, 500}};
    assert_int_equal(aiol_transport_writev(c.t, b, 2), AIOL_ENOMEM);
    assert_int_equal(aiol_transport_get_write_buffer_size(c.t), 0);
    aiol_fault_clear();
    assert_int_equal(aiol_transport_write(c.t, data, 1000), 0);
    assert_int_equal(aiol_transport_writev(c.t, (aiol_buf[]){{data + 1000, 1000}}, 1), 0);
    RUN_UNTIL(loop, pr.rx == 2000);
    assert_int_equal(pr.rx_bad, 0);
    assert_int_equal(c.lost, 0);
    assert_int_equal(aiol_transport_close(c.t), 0);
    RUN_UNTIL(loop, c.lost);
    peer_stop(loop, &pr);
    run_to_end(loop);
}

/* ---- TLS contexts -------------------------------------------------------------------------- */
#if FAULTS_TLS

static char g_dir[64], g_cert[128], g_key[128];
static char *g_cert_pem, *g_key_pem;
static size_t g_cert_len, g_key_len;

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char *p = malloc(n);
    assert_non_null(p);
    memcpy(p, buf, n);
    *len = n;
    return p;
}

static int tls_server_call(op *o) {
    return aiol_tls_context_new_server(g_cert, g_key, (aiol_tls_context **)&o->obj);
}
static int tls_pem_call(op *o) {
    return aiol_tls_context_new_server_pem(g_cert_pem, g_cert_len, g_key_pem, g_key_len,
                                           (aiol_tls_context **)&o->obj);
}
static int tls_client_call(op *o) {
    return aiol_tls_context_new_client(g_cert, 1, (aiol_tls_context **)&o->obj);
}
static void tls_undo(op *o) { assert_int_equal(aiol_tls_context_free((aiol_tls_context *)o->obj), 0); }
static int tls_alpn_call(op *o) {
    const char *protos[] = {"h2", "http/1.1"};
    return aiol_tls_context_set_alpn((aiol_tls_context *)o->obj, protos, 2);
}

static void tls_contexts_alloc(void **state) {
    UNUSED(state);
    assert_true(g_tls_hooked); /* OpenSSL's allocations go through the fault table */
    strcpy(g_dir, "/tmp/aiol-faults-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_cert, sizeof g_cert, "%s/cert.pem", g_dir);
    snprintf(g_key, sizeof g_key, "%s/key.pem", g_dir);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -keyout %s -out %s >/dev/null 2>&1", g_key, g_cert);
    assert_int_equal(system(cmd), 0);
    g_cert_pem = slurp(g_cert, &g_cert_len);
    g_key_pem = slurp(g_key, &g_key_len);

    /* OpenSSL's one-time initialisation first: a failure there is sticky by design */
    op o = {tls_server_call, tls_undo, NULL, AIOL_ETLS, NULL, -1, -1, 0, 0};
    assert_int_equal(o.call(&o), 0);
    tls_undo(&o);
    o.call = tls_client_call;
    assert_int_equal(o.call(&o), 0);
    tls_undo(&o);

    o.stride = 7; /* about 2,500 rounds instead of 14,000 */
    o.call = tls_server_call;
    sweep("aiol_tls_context_new_server", &o);
    o.call = tls_pem_call;
    sweep("aiol_tls_context_new_server_pem", &o);
    o.call = tls_client_call;
    sweep("aiol_tls_context_new_client", &o);

    aiol_tls_context *ctx;
    assert_int_equal(aiol_tls_context_new_server(g_cert, g_key, &ctx), 0);
    for (long n = 0;; n++) {
        aiol_fault_set(AIOL_FAULT_ALLOC, ENOMEM, n, 1);
        int rc = tls_alpn_call(&(op){.obj = ctx});
        long hits = aiol_fault_hits(AIOL_FAULT_ALLOC);
        aiol_fault_clear();
        if (hits == 0) {
            assert_int_equal(rc, 0);
            break;
        }
        assert_int_equal(rc, AIOL_ENOMEM);
    }
    assert_int_equal(aiol_tls_context_free(ctx), 0);

    free(g_cert_pem);
    free(g_key_pem);
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    assert_int_equal(system(cmd), 0);
}
#endif

int main(int argc, char **argv) {
    g_tls_hooked = aiol_fault_hook_openssl();
    const struct CMUnitTest tests[] = {
        CASE(loop_new_alloc),
        CASE(callbacks_alloc),
        CASE(fd_watchers_alloc),
        CASE(loop_misc_alloc),
        CASE(server_start_alloc),
        CASE(transport_adopt_alloc),
        CASE(connect_alloc),
        CASE(accept_alloc),
        CASE(write_queue_alloc),
#if FAULTS_TLS
        CASE(tls_contexts_alloc),
#endif
    };
    return TEST_MAIN("test_faults_alloc", tests);
}
