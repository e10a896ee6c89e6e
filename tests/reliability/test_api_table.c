/* API misuse, table-driven (RELIABILITY.md API-01..API-03, TS-04; issue 6 "API misuse"):
 * every function exported in lib/aioloop.sym is called
 *   - with NULL for its object (and NULL required pointers): AIOL_EINVAL, or 0 / NULL for
 *     the pure getters, AIOL_ENOTSUP for TLS calls when TLS is not built in;
 *   - on a closed object: a loop after aiol_loop_close, a server detached by that close, a
 *     transport whose connection_lost has run (kept by a ref), a handle that ran or was
 *     cancelled: AIOL_ECLOSED (idempotent closes give 0, getters 0 / NULL);
 *   - from the wrong thread while the loop runs: AIOL_ETHREAD for every loop-thread-only
 *     call on a loop, server, transport or handle;
 *   - in the wrong state (write after write_eof, writes during sendfile, unbalanced unhold,
 *     free while alive, run/close from a callback, ...): the documented code;
 *   - with invalid values (API-04: overlong paths, bad backlogs, grown structs, high < low,
 *     bad run modes, signal numbers and fds, bad TLS settings) and with fds that cannot be
 *     adopted (LC-02: pipe, file, UDP, closed, watched, owned; the caller keeps them).
 * Each call is recorded as (function, variant, got, want). A case fails on any mismatch,
 * and `coverage` fails if a symbol of lib/aioloop.sym (path in $AIOL_SYM_FILE) has no row
 * in the NULL table or, unless listed in no_object[] with the reason, in the closed and
 * wrong-thread tables: a new export cannot ship without its misuse rows.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>

#include "common.h"

/* ---- the record -------------------------------------------------------------------- */

typedef struct rec {
    const char *fn;
    const char *variant;
    long got, want;
} rec;

static rec g_recs[512];
static int g_nrec;

static void record(const char *variant, const char *fn, long want, long got) {
    if (g_nrec < (int)(sizeof g_recs / sizeof g_recs[0]))
        g_recs[g_nrec++] = (rec){fn, variant, got, want};
}

/* R: an int-returning call with an expected code. P: a pointer getter that must give NULL
   (recorded as 0 / 1). U: an integer getter that must give 0. */
#define R(v, fn, want, ...) record(v, #fn, (long)(want), (long)fn(__VA_ARGS__))
#define P(v, fn, ...) record(v, #fn, 0, fn(__VA_ARGS__) != NULL)
#define U(v, fn, ...) record(v, #fn, 0, fn(__VA_ARGS__) != 0)

static int has_row(const char *fn, const char *variant) {
    for (int i = 0; i < g_nrec; i++)
        if (!strcmp(g_recs[i].fn, fn) && !strcmp(g_recs[i].variant, variant)) return 1;
    return 0;
}

/* Prints every mismatch and fails if there is one. */
static void assert_table(const char *variant) {
    int bad = 0, n = 0;
    for (int i = 0; i < g_nrec; i++) {
        if (strcmp(g_recs[i].variant, variant)) continue;
        n++;
        if (g_recs[i].got != g_recs[i].want) {
            fprintf(stderr, "%s(%s): got %ld (%s), want %ld (%s)\n", g_recs[i].fn, variant,
                    g_recs[i].got, aiol_err_name((int)g_recs[i].got), g_recs[i].want,
                    aiol_err_name((int)g_recs[i].want));
            bad++;
        }
    }
    printf("%s: %d calls, %d mismatches\n", variant, n, bad);
    if (bad) fail_msg("%d of %d %s calls gave the wrong code", bad, n, variant);
}

/* ---- callbacks ------------------------------------------------------------------------ */

static void noop_cb(aiol_loop *l, void *ud) { UNUSED(l); UNUSED(ud); }
static void noop_fd_cb(aiol_loop *l, int fd, void *ud) { UNUSED(l); UNUSED(fd); UNUSED(ud); }
static void noop_exc(const aiol_error_context *c, void *ud) { UNUSED(c); UNUSED(ud); }
static void noop_wait(aiol_server *s, void *ud) { UNUSED(s); UNUSED(ud); }
static void noop_done(aiol_transport *t, int st, void *ud) { UNUSED(t); UNUSED(st); UNUSED(ud); }
static void noop_sf(aiol_transport *t, int st, uint64_t n, void *ud) {
    UNUSED(t); UNUSED(st); UNUSED(n); UNUSED(ud);
}
static void noop_bu(aiol_transport *t, size_t n, void *ud) { UNUSED(t); UNUSED(n); UNUSED(ud); }
static int noop_factory(void *fd, const struct sockaddr *a, socklen_t l, void **ud) {
    UNUSED(fd); UNUSED(a); UNUSED(l);
    *ud = NULL;
    return 0;
}
/* Destroys the refused calls would own: none may ever run. */
static int g_destroys;
static void count_d(void *ud) { UNUSED(ud); g_destroys++; }

static aiol_protocol g_proto = {sizeof(aiol_protocol)};

static aiol_server_config server_cfg(void) {
    aiol_server_config c;
    memset(&c, 0, sizeof c);
    c.size = sizeof c;
    c.host = "127.0.0.1";
    return c;
}

static aiol_connect_config connect_cfg(void) {
    aiol_connect_config c;
    memset(&c, 0, sizeof c);
    c.size = sizeof c;
    c.host = "127.0.0.1";
    c.port = 9;
    return c;
}

/* TLS calls give AIOL_ENOTSUP without TLS, whatever the arguments. */
static int tls_or(int code) { return aiol_has_feature("tls") ? code : AIOL_ENOTSUP; }

/* ---- NULL ------------------------------------------------------------------------------- */

static void null_every_export(void **state) {
    aiol_loop *loop = LOOP(state);
    const char *v = "null";
    aiol_server_config scfg = server_cfg();
    aiol_connect_config ccfg = connect_cfg();
    aiol_error_context ctx = {sizeof ctx, 0, "m", NULL, NULL, 0, NULL, NULL};
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    size_t hi, lo, len;
    const char *name;
    const void *der;
    aiol_buf buf = {"x", 1};
    aiol_handle *h = NULL;
    aiol_server *s = NULL;
    aiol_transport *t = NULL;
    aiol_tls_context *tc = NULL;
    g_destroys = 0;

    /* no object: boundary inputs instead */
    record(v, "aiol_version", AIOL_VERSION_HEX, aiol_version());
    record(v, "aiol_version_string", 1, aiol_version_string() != NULL);
    record(v, "aiol_strerror", 1, aiol_strerror(-29999) != NULL && aiol_strerror(1) != NULL);
    record(v, "aiol_err_name", 0, strcmp(aiol_err_name(-29999), "UNKNOWN"));
    R(v, aiol_has_feature, 0, NULL);
    R(v, aiol_loop_new, AIOL_EINVAL, NULL);

    R(v, aiol_loop_run, AIOL_EINVAL, NULL, AIOL_RUN_NOWAIT);
    R(v, aiol_loop_stop, AIOL_EINVAL, NULL);
    R(v, aiol_loop_close, AIOL_EINVAL, NULL);
    R(v, aiol_loop_free, 0, NULL);
    R(v, aiol_loop_hold, AIOL_EINVAL, NULL);
    R(v, aiol_loop_unhold, AIOL_EINVAL, NULL);
    U(v, aiol_loop_now, NULL);
    R(v, aiol_loop_set_debug, AIOL_EINVAL, NULL, 1);
    R(v, aiol_loop_get_debug, 0, NULL);
    R(v, aiol_loop_set_exception_handler, AIOL_EINVAL, NULL, noop_exc, NULL, count_d);
    R(v, aiol_loop_call_exception_handler, AIOL_EINVAL, NULL, &ctx);
    R(v, aiol_loop_call_exception_handler, AIOL_EINVAL, loop, NULL);
    R(v, aiol_loop_call_soon, AIOL_EINVAL, NULL, noop_cb, NULL, count_d, &h);
    R(v, aiol_loop_call_soon, AIOL_EINVAL, loop, NULL, NULL, count_d, &h);
    R(v, aiol_loop_call_later, AIOL_EINVAL, NULL, 0, noop_cb, NULL, count_d, &h);
    R(v, aiol_loop_call_later, AIOL_EINVAL, loop, 0, NULL, NULL, count_d, &h);
    R(v, aiol_loop_call_at, AIOL_EINVAL, NULL, 0, noop_cb, NULL, count_d, &h);
    R(v, aiol_loop_call_at, AIOL_EINVAL, loop, 0, NULL, NULL, count_d, &h);
    R(v, aiol_loop_call_soon_threadsafe, AIOL_EINVAL, NULL, noop_cb, NULL, count_d);
    R(v, aiol_loop_call_soon_threadsafe, AIOL_EINVAL, loop, NULL, NULL, count_d);
    R(v, aiol_handle_cancel, AIOL_EINVAL, NULL);
    R(v, aiol_handle_cancelled, 0, NULL);
    U(v, aiol_handle_when, NULL);
    R(v, aiol_handle_release, AIOL_EINVAL, NULL);
    R(v, aiol_loop_add_reader, AIOL_EINVAL, NULL, 0, noop_fd_cb, NULL, count_d);
    R(v, aiol_loop_add_reader, AIOL_EINVAL, loop, 0, NULL, NULL, count_d);
    R(v, aiol_loop_remove_reader, AIOL_EINVAL, NULL, 0);
    R(v, aiol_loop_add_writer, AIOL_EINVAL, NULL, 1, noop_fd_cb, NULL, count_d);
    R(v, aiol_loop_add_writer, AIOL_EINVAL, loop, 1, NULL, NULL, count_d);
    R(v, aiol_loop_remove_writer, AIOL_EINVAL, NULL, 1);
    R(v, aiol_loop_add_signal_handler, AIOL_EINVAL, NULL, SIGUSR1, noop_cb, NULL, count_d);
    R(v, aiol_loop_add_signal_handler, AIOL_EINVAL, loop, SIGUSR1, NULL, NULL, count_d);
    R(v, aiol_loop_remove_signal_handler, AIOL_EINVAL, NULL, SIGUSR1);

    R(v, aiol_server_start, AIOL_EINVAL, NULL, &scfg, &g_proto, noop_factory, NULL, count_d, &s);
    R(v, aiol_server_start, AIOL_EINVAL, loop, NULL, &g_proto, noop_factory, NULL, count_d, &s);
    R(v, aiol_server_start, AIOL_EINVAL, loop, &scfg, NULL, noop_factory, NULL, count_d, &s);
    R(v, aiol_server_start, AIOL_EINVAL, loop, &scfg, &g_proto, NULL, NULL, count_d, &s);
    R(v, aiol_server_start, AIOL_EINVAL, loop, &scfg, &g_proto, noop_factory, NULL, count_d, NULL);
    R(v, aiol_server_start_fd, AIOL_EINVAL, NULL, 0, &scfg, &g_proto, noop_factory, NULL, count_d, &s);
    R(v, aiol_server_start_fd, AIOL_EINVAL, loop, 0, &scfg, NULL, noop_factory, NULL, count_d, &s);
    R(v, aiol_server_start_fd, AIOL_EINVAL, loop, 0, &scfg, &g_proto, NULL, NULL, count_d, &s);
    R(v, aiol_server_start_fd, AIOL_EINVAL, loop, 0, &scfg, &g_proto, noop_factory, NULL, count_d, NULL);
    R(v, aiol_server_close, AIOL_EINVAL, NULL);
    R(v, aiol_server_close_clients, AIOL_EINVAL, NULL);
    R(v, aiol_server_abort_clients, AIOL_EINVAL, NULL);
    R(v, aiol_server_wait_closed, AIOL_EINVAL, NULL, noop_wait, NULL);
    R(v, aiol_server_is_serving, 0, NULL);
    R(v, aiol_server_socket_count, 0, NULL);
    R(v, aiol_server_sockname, AIOL_EINVAL, NULL, 0, &ss, &sl);
    P(v, aiol_server_loop, NULL);
    R(v, aiol_server_free, 0, NULL);

    R(v, aiol_transport_write, AIOL_EINVAL, NULL, "x", 1);
    R(v, aiol_transport_writev, AIOL_EINVAL, NULL, &buf, 1);
    R(v, aiol_transport_write_eof, AIOL_EINVAL, NULL);
    R(v, aiol_transport_can_write_eof, 0, NULL);
    R(v, aiol_transport_close, AIOL_EINVAL, NULL);
    R(v, aiol_transport_abort, AIOL_EINVAL, NULL);
    R(v, aiol_transport_is_closing, 0, NULL);
    R(v, aiol_transport_pause_reading, AIOL_EINVAL, NULL);
    R(v, aiol_transport_resume_reading, AIOL_EINVAL, NULL);
    R(v, aiol_transport_is_reading, 0, NULL);
    R(v, aiol_transport_set_write_buffer_limits, AIOL_EINVAL, NULL, 10, 1);
    U(v, aiol_transport_get_write_buffer_size, NULL);
    R(v, aiol_transport_get_write_buffer_limits, AIOL_EINVAL, NULL, &hi, &lo);
    R(v, aiol_transport_peername, AIOL_EINVAL, NULL, &ss, &sl);
    R(v, aiol_transport_sockname, AIOL_EINVAL, NULL, &ss, &sl);
    R(v, aiol_transport_fileno, AIOL_EINVAL, NULL);
    R(v, aiol_transport_sendfile, AIOL_EINVAL, NULL, 0, 0, 1, noop_sf, NULL);
    P(v, aiol_transport_loop, NULL);
    P(v, aiol_transport_get_protocol_data, NULL);
    R(v, aiol_transport_set_protocol, AIOL_EINVAL, NULL, &g_proto, NULL);
    R(v, aiol_transport_ref, AIOL_EINVAL, NULL);
    R(v, aiol_transport_unref, AIOL_EINVAL, NULL);
    R(v, aiol_loop_connect, AIOL_EINVAL, NULL, &ccfg, &g_proto, NULL, noop_done, NULL, &h);
    R(v, aiol_loop_connect, AIOL_EINVAL, loop, NULL, &g_proto, NULL, noop_done, NULL, &h);
    R(v, aiol_loop_connect, AIOL_EINVAL, loop, &ccfg, NULL, NULL, noop_done, NULL, &h);
    R(v, aiol_transport_adopt, AIOL_EINVAL, NULL, 0, &g_proto, NULL, &t);
    R(v, aiol_transport_adopt, AIOL_EINVAL, loop, 0, NULL, NULL, &t);

    R(v, aiol_tls_context_new_server, tls_or(AIOL_EINVAL), NULL, NULL, &tc);
    R(v, aiol_tls_context_new_server, tls_or(AIOL_EINVAL), "c.pem", "k.pem", NULL);
    R(v, aiol_tls_context_new_server_pem, tls_or(AIOL_EINVAL), NULL, 0, NULL, 0, &tc);
    R(v, aiol_tls_context_new_server_pem, tls_or(AIOL_EINVAL), "c", 1, "k", 1, NULL);
    R(v, aiol_tls_context_new_client, tls_or(AIOL_EINVAL), NULL, 1, NULL);
    R(v, aiol_tls_context_set_alpn, tls_or(AIOL_EINVAL), NULL, NULL, 0);
    R(v, aiol_tls_context_set_min_version, tls_or(AIOL_EINVAL), NULL, 0x0303);
    P(v, aiol_tls_context_ssl_ctx, NULL);
    R(v, aiol_tls_context_free, tls_or(0), NULL);
    R(v, aiol_transport_tls_alpn, tls_or(AIOL_EINVAL), NULL, &name, &len);
    P(v, aiol_transport_tls_server_name, NULL);
    R(v, aiol_transport_tls_peer_cert_der, tls_or(AIOL_EINVAL), NULL, &der, &len);
    P(v, aiol_transport_tls_ssl, NULL);

    assert_null(h);
    assert_null(s);
    assert_null(t);
    assert_null(tc);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(g_destroys, 0);
    assert_table(v);
}

/* ---- closed objects --------------------------------------------------------------------- */

static void lost_cb(aiol_transport *t, int status, void *ud) {
    UNUSED(t); UNUSED(status);
    (*(int *)ud)++;
}

/* A transport on one end of a socketpair whose connection_lost has run; the caller keeps a
   ref. *peer is the other end. */
static aiol_transport *lost_transport(aiol_loop *loop, int *peer, int *lost) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    aiol_protocol p = {sizeof p};
    p.connection_lost = lost_cb;
    aiol_transport *t = NULL;
    assert_int_equal(aiol_transport_adopt(loop, sv[0], &p, lost, &t), 0);
    assert_int_equal(aiol_transport_ref(t), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);  /* connection_made */
    assert_int_equal(aiol_transport_abort(t), 0);
    for (int i = 0; i < 10 && !*lost; i++) aiol_loop_run(loop, AIOL_RUN_NOWAIT);
    assert_int_equal(*lost, 1);
    *peer = sv[1];
    return t;
}

/* Names whose closed / wrong-thread rows do not apply: no object, or the object is not
   tied to a loop thread. */
static const char *const no_object[] = {
    "aiol_version", "aiol_version_string", "aiol_strerror", "aiol_err_name",
    "aiol_has_feature", "aiol_loop_new",
    /* TLS contexts are reference-counted values, not loop objects: no closed state and no
       owning thread (their "used" state is tests/tls test_tls_basic context_api). */
    "aiol_tls_context_new_server", "aiol_tls_context_new_server_pem",
    "aiol_tls_context_new_client", "aiol_tls_context_set_alpn",
    "aiol_tls_context_set_min_version", "aiol_tls_context_ssl_ctx", "aiol_tls_context_free",
};

/* [any thread] functions and pure getters (value, or 0 / NULL): API.md lets any thread
   call the first; the getters read fields and are not checked for the thread. */
static const char *const not_thread_checked[] = {
    "aiol_loop_stop", "aiol_loop_hold", "aiol_loop_unhold", "aiol_loop_call_soon_threadsafe",
    "aiol_handle_release", "aiol_transport_ref", "aiol_transport_unref",
    "aiol_loop_now", "aiol_loop_get_debug", "aiol_handle_cancelled", "aiol_handle_when",
    "aiol_server_is_serving", "aiol_server_socket_count", "aiol_server_sockname",
    "aiol_server_loop", "aiol_transport_can_write_eof", "aiol_transport_is_closing",
    "aiol_transport_is_reading", "aiol_transport_get_write_buffer_size",
    "aiol_transport_get_write_buffer_limits", "aiol_transport_peername",
    "aiol_transport_sockname", "aiol_transport_fileno", "aiol_transport_loop",
    "aiol_transport_get_protocol_data", "aiol_transport_tls_alpn",
    "aiol_transport_tls_server_name", "aiol_transport_tls_peer_cert_der",
    "aiol_transport_tls_ssl",
};

static int listed(const char *fn, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], fn)) return 1;
    return 0;
}
#define LISTED(fn, list) listed(fn, list, sizeof list / sizeof list[0])

static void closed_every_export(void **state) {
    aiol_loop *loop = LOOP(state);
    const char *v = "closed";
    aiol_server_config scfg = server_cfg();
    aiol_connect_config ccfg = connect_cfg();
    aiol_error_context ctx = {sizeof ctx, 0, "m", NULL, NULL, 0, NULL, NULL};
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    size_t hi, lo, len;
    const char *name;
    const void *der;
    aiol_buf buf = {"x", 1};
    g_destroys = 0;

    /* a transport whose connection_lost ran (before the loop closed) */
    int peer = -1, lost = 0;
    aiol_transport *t = lost_transport(loop, &peer, &lost);
    /* a handle that ran and one that was cancelled */
    aiol_handle *ran = NULL, *cancelled = NULL;
    assert_int_equal(aiol_loop_call_soon(loop, noop_cb, NULL, NULL, &ran), 0);
    assert_int_equal(aiol_loop_call_later(loop, 3600 * 1000 * MS, noop_cb, NULL, NULL, &cancelled), 0);
    assert_int_equal(aiol_handle_cancel(cancelled), 1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    /* a server left open: aiol_loop_close detaches it */
    aiol_server *s = NULL;
    assert_int_equal(aiol_server_start(loop, &scfg, &g_proto, noop_factory, NULL, NULL, &s), 0);
    /* a hold taken before the close: releasing it stays possible afterwards */
    assert_int_equal(aiol_loop_hold(loop), 0);
    assert_int_equal(aiol_loop_close(loop), 0);

    int fd = dup(peer);
    R(v, aiol_loop_run, AIOL_ECLOSED, loop, AIOL_RUN_NOWAIT);
    R(v, aiol_loop_stop, AIOL_ECLOSED, loop);
    R(v, aiol_loop_close, 0, loop);  /* idempotent */
    R(v, aiol_loop_hold, AIOL_ECLOSED, loop);
    R(v, aiol_loop_unhold, 0, loop);            /* the hold taken before close */
    R(v, aiol_loop_unhold, AIOL_ESTATE, loop);  /* unbalanced: wrong state first */
    record(v, "aiol_loop_now", 1, aiol_loop_now(loop) != 0);  /* getter: still the clock */
    R(v, aiol_loop_set_debug, AIOL_ECLOSED, loop, 1);
    R(v, aiol_loop_get_debug, 0, loop);
    R(v, aiol_loop_set_exception_handler, AIOL_ECLOSED, loop, noop_exc, NULL, count_d);
    R(v, aiol_loop_call_exception_handler, AIOL_ECLOSED, loop, &ctx);
    R(v, aiol_loop_call_soon, AIOL_ECLOSED, loop, noop_cb, NULL, count_d, NULL);
    R(v, aiol_loop_call_later, AIOL_ECLOSED, loop, 0, noop_cb, NULL, count_d, NULL);
    R(v, aiol_loop_call_at, AIOL_ECLOSED, loop, 0, noop_cb, NULL, count_d, NULL);
    R(v, aiol_loop_call_soon_threadsafe, AIOL_ECLOSED, loop, noop_cb, NULL, count_d);
    R(v, aiol_loop_add_reader, AIOL_ECLOSED, loop, fd, noop_fd_cb, NULL, count_d);
    R(v, aiol_loop_remove_reader, AIOL_ECLOSED, loop, fd);
    R(v, aiol_loop_add_writer, AIOL_ECLOSED, loop, fd, noop_fd_cb, NULL, count_d);
    R(v, aiol_loop_remove_writer, AIOL_ECLOSED, loop, fd);
    R(v, aiol_loop_add_signal_handler, AIOL_ECLOSED, loop, SIGUSR1, noop_cb, NULL, count_d);
    R(v, aiol_loop_remove_signal_handler, AIOL_ECLOSED, loop, SIGUSR1);
    R(v, aiol_server_start, AIOL_ECLOSED, loop, &scfg, &g_proto, noop_factory, NULL, count_d, &s);
    R(v, aiol_server_start_fd, AIOL_ECLOSED, loop, fd, &scfg, &g_proto, noop_factory, NULL, count_d, &s);
    R(v, aiol_loop_connect, AIOL_ECLOSED, loop, &ccfg, &g_proto, NULL, noop_done, NULL, NULL);
    R(v, aiol_transport_adopt, AIOL_ECLOSED, loop, fd, &g_proto, NULL, NULL);
    /* the adoption was refused: fd is still ours and open */
    record(v, "adopt-refused-fd-still-open", 0, fcntl(fd, F_GETFD) < 0);
    close(fd);

    /* handles: ran / cancelled, loop gone */
    R(v, aiol_handle_cancel, 0, ran);
    R(v, aiol_handle_cancel, 0, cancelled);
    R(v, aiol_handle_cancelled, 0, ran);
    R(v, aiol_handle_cancelled, 1, cancelled);
    U(v, aiol_handle_when, ran);  /* a call_soon handle: 0 */
    R(v, aiol_handle_release, 0, ran);
    R(v, aiol_handle_release, 0, cancelled);

    /* the server detached by aiol_loop_close */
    R(v, aiol_server_close, 0, s);  /* idempotent */
    R(v, aiol_server_close_clients, AIOL_ECLOSED, s);
    R(v, aiol_server_abort_clients, AIOL_ECLOSED, s);
    R(v, aiol_server_wait_closed, AIOL_ECLOSED, s, noop_wait, NULL);
    R(v, aiol_server_is_serving, 0, s);
    R(v, aiol_server_socket_count, 0, s);
    R(v, aiol_server_sockname, AIOL_ECLOSED, s, 0, &ss, &sl);
    P(v, aiol_server_loop, s);

    /* the lost transport (a ref keeps its memory) */
    R(v, aiol_transport_write, AIOL_ECLOSED, t, "x", 1);
    R(v, aiol_transport_writev, AIOL_ECLOSED, t, &buf, 1);
    R(v, aiol_transport_write_eof, AIOL_ECLOSED, t);
    R(v, aiol_transport_can_write_eof, 0, t);
    R(v, aiol_transport_close, AIOL_ECLOSED, t);
    R(v, aiol_transport_abort, AIOL_ECLOSED, t);
    R(v, aiol_transport_is_closing, 1, t);
    R(v, aiol_transport_pause_reading, AIOL_ECLOSED, t);
    R(v, aiol_transport_resume_reading, AIOL_ECLOSED, t);
    R(v, aiol_transport_is_reading, 0, t);
    R(v, aiol_transport_set_write_buffer_limits, AIOL_ECLOSED, t, 10, 1);
    U(v, aiol_transport_get_write_buffer_size, t);
    R(v, aiol_transport_get_write_buffer_limits, AIOL_ECLOSED, t, &hi, &lo);
    R(v, aiol_transport_peername, 0, t, &ss, &sl);  /* captured at adopt: still readable */
    sl = sizeof ss;
    R(v, aiol_transport_sockname, 0, t, &ss, &sl);
    R(v, aiol_transport_fileno, AIOL_ECLOSED, t);
    R(v, aiol_transport_sendfile, AIOL_ECLOSED, t, 0, 0, 1, noop_sf, NULL);
    P(v, aiol_transport_loop, t);
    P(v, aiol_transport_get_protocol_data, t);
    R(v, aiol_transport_set_protocol, AIOL_ECLOSED, t, &g_proto, NULL);
    R(v, aiol_transport_tls_alpn, tls_or(AIOL_EINVAL), t, &name, &len);  /* plain */
    P(v, aiol_transport_tls_server_name, t);
    R(v, aiol_transport_tls_peer_cert_der, tls_or(AIOL_EINVAL), t, &der, &len);
    P(v, aiol_transport_tls_ssl, t);
    R(v, aiol_transport_ref, 0, t);
    R(v, aiol_transport_unref, 0, t);
    R(v, aiol_transport_unref, 0, t);  /* the last reference: freed */
    R(v, aiol_server_free, 0, s);
    R(v, aiol_loop_free, 0, loop);  /* a closed loop with nothing left: freed */
    ((fixture *)*state)->loop = NULL;

    close(peer);
    assert_int_equal(g_destroys, 0);
    assert_table(v);
}

/* ---- wrong thread ------------------------------------------------------------------------ */

typedef struct intruder {
    aiol_loop *loop;
    aiol_server *s;
    aiol_transport *t;
    aiol_handle *h;
    int fd;
} intruder;

static void *intrude(void *arg) {
    intruder *x = (intruder *)arg;
    const char *v = "thread";
    aiol_server_config scfg = server_cfg();
    aiol_connect_config ccfg = connect_cfg();
    aiol_error_context ctx = {sizeof ctx, 0, "m", NULL, NULL, 0, NULL, NULL};
    aiol_buf buf = {"x", 1};
    aiol_server *s2 = NULL;
    aiol_handle *h2 = NULL;
    const int E = AIOL_ETHREAD;

    R(v, aiol_loop_run, E, x->loop, AIOL_RUN_NOWAIT);
    R(v, aiol_loop_close, E, x->loop);
    R(v, aiol_loop_free, E, x->loop);
    R(v, aiol_loop_set_debug, E, x->loop, 1);
    R(v, aiol_loop_set_exception_handler, E, x->loop, noop_exc, NULL, count_d);
    R(v, aiol_loop_call_exception_handler, E, x->loop, &ctx);
    R(v, aiol_loop_call_soon, E, x->loop, noop_cb, NULL, count_d, &h2);
    R(v, aiol_loop_call_later, E, x->loop, 0, noop_cb, NULL, count_d, &h2);
    R(v, aiol_loop_call_at, E, x->loop, 0, noop_cb, NULL, count_d, &h2);
    R(v, aiol_loop_add_reader, E, x->loop, x->fd, noop_fd_cb, NULL, count_d);
    R(v, aiol_loop_remove_reader, E, x->loop, x->fd);
    R(v, aiol_loop_add_writer, E, x->loop, x->fd, noop_fd_cb, NULL, count_d);
    R(v, aiol_loop_remove_writer, E, x->loop, x->fd);
    R(v, aiol_loop_add_signal_handler, E, x->loop, SIGUSR1, noop_cb, NULL, count_d);
    R(v, aiol_loop_remove_signal_handler, E, x->loop, SIGUSR1);
    R(v, aiol_handle_cancel, E, x->h);
    R(v, aiol_server_start, E, x->loop, &scfg, &g_proto, noop_factory, NULL, count_d, &s2);
    R(v, aiol_server_start_fd, E, x->loop, x->fd, &scfg, &g_proto, noop_factory, NULL, count_d, &s2);
    R(v, aiol_server_close, E, x->s);
    R(v, aiol_server_close_clients, E, x->s);
    R(v, aiol_server_abort_clients, E, x->s);
    R(v, aiol_server_wait_closed, E, x->s, noop_wait, NULL);
    R(v, aiol_server_free, E, x->s);
    R(v, aiol_loop_connect, E, x->loop, &ccfg, &g_proto, NULL, noop_done, NULL, &h2);
    R(v, aiol_transport_adopt, E, x->loop, x->fd, &g_proto, NULL, NULL);
    R(v, aiol_transport_write, E, x->t, "x", 1);
    R(v, aiol_transport_writev, E, x->t, &buf, 1);
    R(v, aiol_transport_write_eof, E, x->t);
    R(v, aiol_transport_close, E, x->t);
    R(v, aiol_transport_abort, E, x->t);
    R(v, aiol_transport_pause_reading, E, x->t);
    R(v, aiol_transport_resume_reading, E, x->t);
    R(v, aiol_transport_set_write_buffer_limits, E, x->t, 10, 1);
    R(v, aiol_transport_sendfile, E, x->t, x->fd, 0, 1, noop_sf, NULL);
    R(v, aiol_transport_set_protocol, E, x->t, &g_proto, NULL);
    record(v, "no-objects-returned", 0, s2 != NULL || h2 != NULL);
    return NULL;
}

static void start_intruder(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, intrude, ud) == 0);
    CHECK(pthread_join(th, NULL) == 0);
}

static void wrong_thread_every_export(void **state) {
    aiol_loop *loop = LOOP(state);
    aiol_server_config scfg = server_cfg();
    intruder x;
    memset(&x, 0, sizeof x);
    x.loop = loop;
    g_destroys = 0;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int other[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, other), 0);
    x.fd = other[0];
    assert_int_equal(aiol_transport_adopt(loop, sv[0], &g_proto, NULL, &x.t), 0);
    assert_int_equal(aiol_transport_ref(x.t), 0);
    assert_int_equal(aiol_server_start(loop, &scfg, &g_proto, noop_factory, NULL, NULL, &x.s), 0);
    assert_int_equal(aiol_loop_call_later(loop, 3600 * 1000 * MS, noop_cb, NULL, NULL, &x.h), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);  /* connection_made */
    assert_int_equal(aiol_loop_call_soon(loop, start_intruder, &x, NULL, NULL), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);

    /* nothing changed: the owner thread still can do all of it */
    assert_int_equal(aiol_server_is_serving(x.s), 1);
    assert_int_equal(aiol_transport_is_closing(x.t), 0);
    assert_int_equal(aiol_handle_cancelled(x.h), 0);
    assert_int_equal(aiol_loop_get_debug(loop), 0);
    assert_int_equal(aiol_handle_cancel(x.h), 1);
    assert_int_equal(aiol_handle_release(x.h), 0);
    assert_int_equal(aiol_transport_close(x.t), 0);
    assert_int_equal(aiol_server_free(x.s), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(aiol_transport_unref(x.t), 0);
    close(sv[1]);
    close(other[0]);
    close(other[1]);
    assert_int_equal(g_destroys, 0);
    assert_table("thread");
}

/* ---- wrong state ---------------------------------------------------------------------- */

static void state_cb(aiol_loop *loop, void *ud) {
    UNUSED(ud);
    const char *v = "state";
    R(v, aiol_loop_run, AIOL_ESTATE, loop, AIOL_RUN_NOWAIT);
    R(v, aiol_loop_close, AIOL_ESTATE, loop);
    R(v, aiol_loop_free, AIOL_ESTATE, loop);
}

static void wrong_state_calls(void **state) {
    aiol_loop *loop = LOOP(state);
    const char *v = "state";
    g_destroys = 0;
    R(v, aiol_loop_unhold, AIOL_ESTATE, loop);  /* no hold */
    R(v, aiol_loop_run, AIOL_EINVAL, loop, 7);  /* unknown mode */
    assert_int_equal(aiol_loop_call_soon(loop, state_cb, NULL, NULL, NULL), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    aiol_transport *t = NULL;
    assert_int_equal(aiol_transport_adopt(loop, sv[0], &g_proto, NULL, &t), 0);
    R(v, aiol_transport_adopt, AIOL_EBUSY, loop, sv[0], &g_proto, NULL, NULL);  /* owned */
    R(v, aiol_loop_add_reader, AIOL_EBUSY, loop, sv[0], noop_fd_cb, NULL, count_d);
    R(v, aiol_loop_free, AIOL_EBUSY, loop);  /* alive */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    R(v, aiol_transport_set_write_buffer_limits, AIOL_EINVAL, t, 1, 10);  /* high < low */
    /* sendfile holds the transport: writes are refused until done, which never runs
       inside the call */
    FILE *file = tmpfile();
    assert_non_null(file);
    assert_int_equal(fwrite("y", 1, 1, file), 1);
    fflush(file);
    R(v, aiol_transport_sendfile, 0, t, fileno(file), 0, 1, noop_sf, NULL);
    R(v, aiol_transport_write, AIOL_EBUSY, t, "x", 1);
    R(v, aiol_transport_sendfile, AIOL_EBUSY, t, fileno(file), 0, 1, noop_sf, NULL);
    for (int i = 0; i < 20 && aiol_transport_write(t, "z", 1) == AIOL_EBUSY; i++)
        aiol_loop_run(loop, AIOL_RUN_ONCE);
    R(v, aiol_transport_write_eof, 0, t);
    R(v, aiol_transport_write_eof, 0, t);  /* idempotent */
    R(v, aiol_transport_write, AIOL_ESTATE, t, "x", 1);  /* after write_eof */
    R(v, aiol_transport_close, 0, t);
    R(v, aiol_transport_close, 0, t);  /* again, before connection_lost: 0 */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    fclose(file);
    close(sv[1]);
    assert_int_equal(g_destroys, 0);
    assert_table(v);
}

/* ---- invalid values (API-04) and fds that cannot be adopted (LC-02) ---------------------- */

static void invalid_values(void **state) {
    aiol_loop *loop = LOOP(state);
    const char *v = "values";
    aiol_server *s = NULL;
    g_destroys = 0;

    char longpath[200];
    memset(longpath, 'p', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = 0;
    aiol_server_config sc = server_cfg();
    sc.backlog = -1;
    R(v, aiol_server_start, AIOL_EINVAL, loop, &sc, &g_proto, noop_factory, NULL, count_d, &s);
    sc = server_cfg();
    sc.unix_path = "/tmp/x.sock";  /* host and unix_path together */
    R(v, aiol_server_start, AIOL_EINVAL, loop, &sc, &g_proto, noop_factory, NULL, count_d, &s);
    sc = server_cfg();
    sc.host = NULL;
    sc.unix_path = longpath;  /* > 107 bytes */
    R(v, aiol_server_start, -ENAMETOOLONG, loop, &sc, &g_proto, noop_factory, NULL, count_d, &s);
    sc = server_cfg();
    sc.size = 4;  /* shorter than the 0.1 struct */
    R(v, aiol_server_start, AIOL_EINVAL, loop, &sc, &g_proto, noop_factory, NULL, count_d, &s);
    struct {
        aiol_server_config c;
        uint64_t future;
    } grown;
    memset(&grown, 0, sizeof grown);
    grown.c = server_cfg();
    grown.c.size = sizeof grown;
    grown.future = 1;  /* a field this library does not know, set: refused */
    R(v, aiol_server_start, AIOL_ENOTSUP, loop, &grown.c, &g_proto, noop_factory, NULL, count_d, &s);
    grown.future = 0;  /* the same, zero: accepted */
    R(v, aiol_server_start, 0, loop, &grown.c, &g_proto, noop_factory, NULL, NULL, &s);
    R(v, aiol_server_free, 0, s);
    s = NULL;
    sc = server_cfg();
    sc.backlog = 0x7fffffff;  /* INT_MAX: the kernel clamps it */
    R(v, aiol_server_start, 0, loop, &sc, &g_proto, noop_factory, NULL, NULL, &s);
    R(v, aiol_server_free, 0, s);
    s = NULL;
    sc = server_cfg();
    sc.host = "300.1.2.3";  /* not an address, not a name that resolves */
    record(v, "server_start(host 300.1.2.3) fails", 1,
           aiol_server_start(loop, &sc, &g_proto, noop_factory, NULL, count_d, &s) < 0);

    aiol_connect_config cc = connect_cfg();
    cc.host = NULL;  /* neither host nor unix_path */
    R(v, aiol_loop_connect, AIOL_EINVAL, loop, &cc, &g_proto, NULL, noop_done, NULL, NULL);
    cc = connect_cfg();
    cc.unix_path = "/tmp/x.sock";  /* both */
    R(v, aiol_loop_connect, AIOL_EINVAL, loop, &cc, &g_proto, NULL, noop_done, NULL, NULL);
    cc = connect_cfg();
    cc.host = NULL;
    cc.unix_path = longpath;
    R(v, aiol_loop_connect, AIOL_EINVAL, loop, &cc, &g_proto, NULL, noop_done, NULL, NULL);

    aiol_protocol small = g_proto;
    small.size = 2;  /* shorter than the 0.1 struct */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    R(v, aiol_transport_adopt, AIOL_EINVAL, loop, sv[0], &small, NULL, NULL);
    aiol_protocol half = g_proto;
    half.buffer_updated = noop_bu;  /* without get_buffer */
    R(v, aiol_transport_adopt, AIOL_EINVAL, loop, sv[0], &half, NULL, NULL);

    aiol_transport *t = NULL;
    assert_int_equal(aiol_transport_adopt(loop, sv[0], &g_proto, NULL, &t), 0);
    R(v, aiol_transport_set_write_buffer_limits, AIOL_EINVAL, t, 10, 20);  /* high < low */
    R(v, aiol_transport_write, AIOL_EINVAL, t, NULL, 5);
    R(v, aiol_transport_writev, AIOL_EINVAL, t, NULL, 3);
    R(v, aiol_transport_write, 0, t, NULL, 0);   /* zero length: a no-op */
    R(v, aiol_transport_writev, 0, t, NULL, 0);
    R(v, aiol_transport_set_protocol, AIOL_EINVAL, t, &small, NULL);
    size_t hi = 0, lo = 0;
    R(v, aiol_transport_set_write_buffer_limits, 0, t, AIOL_WBUF_DEFAULT, 1000);
    R(v, aiol_transport_get_write_buffer_limits, 0, t, &hi, &lo);
    record(v, "low only: high = 4 x low", 4000, (long)hi);
    R(v, aiol_transport_close, 0, t);

    R(v, aiol_loop_run, AIOL_EINVAL, loop, 3);
    R(v, aiol_loop_run, AIOL_EINVAL, loop, -1);
    R(v, aiol_loop_add_signal_handler, AIOL_EINVAL, loop, 0, noop_cb, NULL, count_d);
    R(v, aiol_loop_add_signal_handler, AIOL_EINVAL, loop, -1, noop_cb, NULL, count_d);
    R(v, aiol_loop_add_signal_handler, AIOL_EINVAL, loop, 4096, noop_cb, NULL, count_d);
    R(v, aiol_loop_add_signal_handler, AIOL_EINVAL, loop, SIGSTOP, noop_cb, NULL, count_d);
    R(v, aiol_loop_add_reader, AIOL_EBADF, loop, -1, noop_fd_cb, NULL, count_d);
    R(v, aiol_loop_add_reader, AIOL_EBADF, loop, 1 << 28, noop_fd_cb, NULL, count_d);
    R(v, aiol_loop_add_writer, AIOL_EBADF, loop, -5, noop_fd_cb, NULL, count_d);
    aiol_error_context ctx = {3, 0, "m", NULL, NULL, 0, NULL, NULL};
    R(v, aiol_loop_call_exception_handler, AIOL_EINVAL, loop, &ctx);

    /* every code has a stable, non-NULL string, unknown ones included */
    int bad_strings = 0;
    for (int code = -30200; code <= 0; code++)
        if (!aiol_strerror(code) || !aiol_err_name(code) || !*aiol_strerror(code)) bad_strings++;
    record(v, "aiol_strerror/err_name of -30200..0 non-NULL", 0, bad_strings);

    if (aiol_has_feature("tls")) {
        aiol_tls_context *tc = NULL;
        assert_int_equal(aiol_tls_context_new_client(NULL, 0, &tc), 0);
        R(v, aiol_tls_context_set_min_version, AIOL_EINVAL, tc, 0x0302);  /* TLS 1.1 */
        R(v, aiol_tls_context_set_min_version, AIOL_EINVAL, tc, 0x0305);
        R(v, aiol_tls_context_set_min_version, 0, tc, 0x0304);
        const char *empty[] = {""};
        R(v, aiol_tls_context_set_alpn, AIOL_EINVAL, tc, empty, 1);
        char long_alpn[300];
        memset(long_alpn, 'a', sizeof long_alpn - 1);
        long_alpn[sizeof long_alpn - 1] = 0;
        const char *toolong[] = {long_alpn};
        R(v, aiol_tls_context_set_alpn, AIOL_EINVAL, tc, toolong, 1);
        /* a client context where a server one is needed, and the reverse */
        sc = server_cfg();
        sc.tls = tc;
        R(v, aiol_server_start, AIOL_EINVAL, loop, &sc, &g_proto, noop_factory, NULL, count_d, &s);
        R(v, aiol_tls_context_new_server, AIOL_ETLS, "/nonexistent.pem", "/nonexistent.pem", &tc);
        R(v, aiol_tls_context_free, 0, tc);
    }

    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    close(sv[1]);
    assert_table(v);
    assert_int_equal(g_destroys, 0);
}

static int still_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

static void adopt_invalid_fds(void **state) {
    aiol_loop *loop = LOOP(state);
    const char *v = "adopt";
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    R(v, aiol_transport_adopt, AIOL_ENOTSOCK, loop, pp[0], &g_proto, NULL, NULL);
    record(v, "pipe still the caller's", 1, still_open(pp[0]));
    FILE *f = tmpfile();
    R(v, aiol_transport_adopt, AIOL_ENOTSOCK, loop, fileno(f), &g_proto, NULL, NULL);
    record(v, "file still the caller's", 1, still_open(fileno(f)));
    R(v, aiol_transport_adopt, AIOL_EBADF, loop, -1, &g_proto, NULL, NULL);
    int closed_fd = dup(pp[1]);
    close(closed_fd);
    R(v, aiol_transport_adopt, AIOL_EBADF, loop, closed_fd, &g_proto, NULL, NULL);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    R(v, aiol_transport_adopt, AIOL_EINVAL, loop, udp, &g_proto, NULL, NULL);
    record(v, "udp still the caller's", 1, still_open(udp));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(aiol_loop_add_reader(loop, sv[0], noop_fd_cb, NULL, NULL), 0);
    R(v, aiol_transport_adopt, AIOL_EBUSY, loop, sv[0], &g_proto, NULL, NULL);  /* watched */
    assert_int_equal(aiol_loop_remove_reader(loop, sv[0]), 1);
    record(v, "watched fd still the caller's", 1, still_open(sv[0]));
    /* a successful adoption closes the fd exactly once, at connection_lost */
    aiol_transport *t = NULL;
    R(v, aiol_transport_adopt, 0, loop, sv[0], &g_proto, NULL, &t);
    R(v, aiol_transport_adopt, AIOL_EBUSY, loop, sv[0], &g_proto, NULL, NULL);  /* owned */
    R(v, aiol_transport_abort, 0, t);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    record(v, "adopted fd closed by the library", 0, still_open(sv[0]));
    close(pp[0]);
    close(pp[1]);
    fclose(f);
    close(udp);
    close(sv[1]);
    assert_table(v);
}

/* ---- coverage against lib/aioloop.sym ---------------------------------------------------- */

static void coverage(void **state) {
    aiol_loop *loop = LOOP(state);
    const char *path = getenv("AIOL_SYM_FILE");
    if (!path) fail_msg("AIOL_SYM_FILE is not set (meson.build sets it to lib/aioloop.sym)");
    /* the NULL / closed / thread rows are recorded by running those cases in-process */
    g_nrec = 0;
    null_every_export(state);
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(aiol_loop_free(loop), 0);
    assert_int_equal(aiol_loop_new(&((fixture *)*state)->loop), 0);
    closed_every_export(state);  /* frees its loop */
    assert_int_equal(aiol_loop_new(&((fixture *)*state)->loop), 0);
    wrong_thread_every_export(state);

    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s", path);
    char line[256];
    int exports = 0, missing = 0;
    while (fgets(line, sizeof line, f)) {
        char name[128];
        if (sscanf(line, " %127[a-z0-9_];", name) != 1 || strncmp(name, "aiol_", 5)) continue;
        exports++;
        if (!has_row(name, "null")) {
            fprintf(stderr, "%s: no NULL row\n", name);
            missing++;
        }
        if (LISTED(name, no_object)) continue;
        if (!has_row(name, "closed")) {
            fprintf(stderr, "%s: no closed-object row\n", name);
            missing++;
        }
        if (!LISTED(name, not_thread_checked) && !has_row(name, "thread")) {
            fprintf(stderr, "%s: no wrong-thread row\n", name);
            missing++;
        }
    }
    fclose(f);
    printf("%d exports in %s; %d rows; %d missing\n", exports, path, g_nrec, missing);
    assert_true(exports >= 77);
    assert_int_equal(missing, 0);
}

static const struct CMUnitTest tests[] = {
    CASE(null_every_export),
    CASE(closed_every_export),
    CASE(wrong_thread_every_export),
    CASE(wrong_state_calls),
    CASE(invalid_values),
    CASE(adopt_invalid_fds),
    CASE(coverage),
};

TEST_MAIN("api_table", tests)
