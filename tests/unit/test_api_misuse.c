/* API misuse: NULL for every object and callback argument of every function declared in
   aioloop.h (AIOL_EINVAL, or 0 / NULL for pure getters, never a crash), and a refused call
   never runs its callback or destroy. The table is written by hand; a separate symbol
   check makes sure the header and the library agree. */
#include <signal.h>
#include <sys/socket.h>

#include "common.h"

static void noop_exc(const aiol_error_context *ctx, void *ud) {
    UNUSED(ctx);
    UNUSED(ud);
}
static int noop_factory(void *fd, const struct sockaddr *peer, socklen_t len, void **ud) {
    UNUSED(fd);
    UNUSED(peer);
    UNUSED(len);
    UNUSED(ud);
    return 0;
}
static void noop_wait_closed(aiol_server *s, void *ud) {
    UNUSED(s);
    UNUSED(ud);
}
static void noop_done(aiol_transport *t, int status, void *ud) {
    UNUSED(t);
    UNUSED(status);
    UNUSED(ud);
}
static void noop_sendfile_done(aiol_transport *t, int status, uint64_t sent, void *ud) {
    UNUSED(t);
    UNUSED(status);
    UNUSED(sent);
    UNUSED(ud);
}

/* The loop core: a NULL loop, handle or callback. */
static void null_loop_functions(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    aiol_handle *h = NULL;
    aiol_error_context ctx = {sizeof ctx, 0, "m", NULL, NULL, 0, NULL, NULL};

    assert_int_equal(aiol_loop_new(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_loop_run(NULL, AIOL_RUN_DEFAULT), AIOL_EINVAL);
    assert_int_equal(aiol_loop_stop(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_loop_close(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_loop_free(NULL), 0);
    assert_int_equal(aiol_loop_hold(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_loop_unhold(NULL), AIOL_EINVAL);
    assert_true(aiol_loop_now(NULL) == 0);
    assert_int_equal(aiol_loop_set_debug(NULL, 1), AIOL_EINVAL);
    assert_int_equal(aiol_loop_get_debug(NULL), 0);
    assert_int_equal(aiol_loop_set_exception_handler(NULL, noop_exc, &c, count_destroy), AIOL_EINVAL);
    assert_int_equal(aiol_loop_call_exception_handler(NULL, &ctx), AIOL_EINVAL);
    assert_int_equal(aiol_loop_call_exception_handler(loop, NULL), AIOL_EINVAL);

    assert_int_equal(aiol_loop_call_soon(NULL, count_call, &c, count_destroy, &h), AIOL_EINVAL);
    assert_int_equal(aiol_loop_call_soon(loop, NULL, &c, count_destroy, &h), AIOL_EINVAL);
    assert_int_equal(aiol_loop_call_later(NULL, 0, count_call, &c, count_destroy, &h), AIOL_EINVAL);
    assert_int_equal(aiol_loop_call_later(loop, 0, NULL, &c, count_destroy, &h), AIOL_EINVAL);
    assert_int_equal(aiol_loop_call_at(NULL, 0, count_call, &c, count_destroy, &h), AIOL_EINVAL);
    assert_int_equal(aiol_loop_call_at(loop, 0, NULL, &c, count_destroy, &h), AIOL_EINVAL);
    assert_int_equal(aiol_loop_call_soon_threadsafe(NULL, count_call, &c, count_destroy), AIOL_EINVAL);
    assert_int_equal(aiol_loop_call_soon_threadsafe(loop, NULL, &c, count_destroy), AIOL_EINVAL);
    assert_null(h);

    assert_int_equal(aiol_handle_cancel(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_handle_cancelled(NULL), 0);
    assert_true(aiol_handle_when(NULL) == 0);
    assert_int_equal(aiol_handle_release(NULL), AIOL_EINVAL);

    assert_int_equal(aiol_loop_add_reader(NULL, 0, count_fd_call, &c, count_destroy), AIOL_EINVAL);
    assert_int_equal(aiol_loop_add_reader(loop, 0, NULL, &c, count_destroy), AIOL_EINVAL);
    assert_int_equal(aiol_loop_remove_reader(NULL, 0), AIOL_EINVAL);
    assert_int_equal(aiol_loop_add_writer(NULL, 1, count_fd_call, &c, count_destroy), AIOL_EINVAL);
    assert_int_equal(aiol_loop_add_writer(loop, 1, NULL, &c, count_destroy), AIOL_EINVAL);
    assert_int_equal(aiol_loop_remove_writer(NULL, 1), AIOL_EINVAL);
    assert_int_equal(aiol_loop_add_signal_handler(NULL, SIGUSR1, count_call, &c, count_destroy), AIOL_EINVAL);
    assert_int_equal(aiol_loop_add_signal_handler(loop, SIGUSR1, NULL, &c, count_destroy), AIOL_EINVAL);
    assert_int_equal(aiol_loop_remove_signal_handler(NULL, SIGUSR1), AIOL_EINVAL);

    assert_int_equal(aiol_has_feature(NULL), 0);

    /* nothing was accepted: no callback, no destroy, nothing alive */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(c.calls, 0);
    assert_int_equal(c.destroys, 0);
}

/* The net layer: a NULL loop, server, transport, config, protocol or callback. */
static void null_net_functions(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    aiol_protocol proto;
    memset(&proto, 0, sizeof proto);
    proto.size = sizeof proto;
    aiol_server_config scfg;
    memset(&scfg, 0, sizeof scfg);
    scfg.size = sizeof scfg;
    scfg.host = "127.0.0.1";
    aiol_connect_config ccfg;
    memset(&ccfg, 0, sizeof ccfg);
    ccfg.size = sizeof ccfg;
    ccfg.host = "127.0.0.1";
    ccfg.port = 9;
    aiol_server *s = NULL;
    aiol_transport *t = NULL;
    aiol_handle *h = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    size_t hi, lo;
    aiol_buf buf = {"x", 1};

    assert_int_equal(aiol_server_start(NULL, &scfg, &proto, noop_factory, &c, count_destroy, &s), AIOL_EINVAL);
    assert_int_equal(aiol_server_start(loop, NULL, &proto, noop_factory, &c, count_destroy, &s), AIOL_EINVAL);
    assert_int_equal(aiol_server_start(loop, &scfg, NULL, noop_factory, &c, count_destroy, &s), AIOL_EINVAL);
    assert_int_equal(aiol_server_start(loop, &scfg, &proto, NULL, &c, count_destroy, &s), AIOL_EINVAL);
    assert_int_equal(aiol_server_start(loop, &scfg, &proto, noop_factory, &c, count_destroy, NULL), AIOL_EINVAL);
    assert_int_equal(aiol_server_start_fd(NULL, 0, &scfg, &proto, noop_factory, &c, count_destroy, &s), AIOL_EINVAL);
    assert_int_equal(aiol_server_start_fd(loop, 0, &scfg, NULL, noop_factory, &c, count_destroy, &s), AIOL_EINVAL);
    assert_int_equal(aiol_server_start_fd(loop, 0, &scfg, &proto, NULL, &c, count_destroy, &s), AIOL_EINVAL);
    assert_int_equal(aiol_server_start_fd(loop, 0, &scfg, &proto, noop_factory, &c, count_destroy, NULL), AIOL_EINVAL);
    assert_null(s);
    assert_int_equal(aiol_server_close(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_server_close_clients(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_server_abort_clients(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_server_wait_closed(NULL, noop_wait_closed, &c), AIOL_EINVAL);
    assert_int_equal(aiol_server_is_serving(NULL), 0);
    assert_int_equal(aiol_server_socket_count(NULL), 0);
    assert_int_equal(aiol_server_sockname(NULL, 0, &ss, &sl), AIOL_EINVAL);
    assert_null(aiol_server_loop(NULL));
    assert_int_equal(aiol_server_free(NULL), 0);

    assert_int_equal(aiol_transport_write(NULL, "x", 1), AIOL_EINVAL);
    assert_int_equal(aiol_transport_writev(NULL, &buf, 1), AIOL_EINVAL);
    assert_int_equal(aiol_transport_write_eof(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_transport_can_write_eof(NULL), 0);
    assert_int_equal(aiol_transport_close(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_transport_abort(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_transport_is_closing(NULL), 0);
    assert_int_equal(aiol_transport_pause_reading(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_transport_resume_reading(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_transport_is_reading(NULL), 0);
    assert_int_equal(aiol_transport_set_write_buffer_limits(NULL, 10, 1), AIOL_EINVAL);
    assert_true(aiol_transport_get_write_buffer_size(NULL) == 0);
    assert_int_equal(aiol_transport_get_write_buffer_limits(NULL, &hi, &lo), AIOL_EINVAL);
    assert_int_equal(aiol_transport_peername(NULL, &ss, &sl), AIOL_EINVAL);
    assert_int_equal(aiol_transport_sockname(NULL, &ss, &sl), AIOL_EINVAL);
    assert_int_equal(aiol_transport_fileno(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_transport_sendfile(NULL, 0, 0, 1, noop_sendfile_done, &c), AIOL_EINVAL);
    assert_null(aiol_transport_loop(NULL));
    assert_null(aiol_transport_get_protocol_data(NULL));
    assert_int_equal(aiol_transport_set_protocol(NULL, &proto, &c), AIOL_EINVAL);
    assert_int_equal(aiol_transport_ref(NULL), AIOL_EINVAL);
    assert_int_equal(aiol_transport_unref(NULL), AIOL_EINVAL);

    assert_int_equal(aiol_loop_connect(NULL, &ccfg, &proto, &c, noop_done, &c, &h), AIOL_EINVAL);
    assert_int_equal(aiol_loop_connect(loop, NULL, &proto, &c, noop_done, &c, &h), AIOL_EINVAL);
    assert_int_equal(aiol_loop_connect(loop, &ccfg, NULL, &c, noop_done, &c, &h), AIOL_EINVAL);
    assert_null(h);
    assert_int_equal(aiol_transport_adopt(NULL, 0, &proto, &c, &t), AIOL_EINVAL);
    assert_int_equal(aiol_transport_adopt(loop, 0, NULL, &c, &t), AIOL_EINVAL);
    assert_null(t);

    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(c.destroys, 0);
}

/* A failed call never runs its callback or destroy: the caller keeps user_data. */
static void refused_calls_never_destroy(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    assert_int_equal(API(aiol_loop_add_reader(loop, -1, count_fd_call, &c, count_destroy)), AIOL_EBADF);
    assert_int_equal(API(aiol_loop_add_signal_handler(loop, SIGKILL, count_call, &c, count_destroy)), AIOL_EINVAL);
    assert_int_equal(API(aiol_loop_run(loop, 7)), AIOL_EINVAL);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &c, count_destroy, NULL)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_call_soon_threadsafe(loop, count_call, &c, count_destroy)), AIOL_ECLOSED);
    assert_int_equal(c.calls, 0);
    assert_int_equal(c.destroys, 0);
}

/* Unbalanced unhold is refused; an error context shorter than the 0.1 struct's `code`
   is AIOL_EINVAL. */
static void unbalanced_and_short_inputs(void **state) {
    aiol_loop *loop = LOOP(state);
    assert_int_equal(API(aiol_loop_unhold(loop)), AIOL_ESTATE);
    aiol_error_context ctx = {sizeof(size_t), 0, "m", NULL, NULL, 0, NULL, NULL};
    assert_int_equal(API(aiol_loop_call_exception_handler(loop, &ctx)), AIOL_EINVAL);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
}

static const struct CMUnitTest tests[] = {
    CASE(null_loop_functions),
    CASE(null_net_functions),
    CASE(refused_calls_never_destroy),
    CASE(unbalanced_and_short_inputs),
};

TEST_MAIN("api_misuse", tests)
