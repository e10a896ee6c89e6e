/* Debug mode and the exception handler: slow-callback reports, reports queued with
   aiol_loop_call_exception_handler, open resources reported at close. */
#include <signal.h>

#include "common.h"

/* An exception handler that keeps a copy of what it saw. */
typedef struct reports {
    int n;
    int in_api;
    int code[8];
    int kind[8];
    aiol_loop *loop[8];
    char message[8][160];
    char detail[8][64];
} reports;

static reports g_rep;
static int g_in_callback;  /* set while one of our loop callbacks runs */
static int g_report_in_callback;

static void record_report(const aiol_error_context *ctx, void *ud) {
    reports *r = (reports *)ud;
    if (g_in_api) r->in_api++;
    if (g_in_callback) g_report_in_callback++;
    if (r->n < 8) {
        CHECK(ctx->size >= sizeof(aiol_error_context));
        r->code[r->n] = ctx->code;
        r->kind[r->n] = ctx->object_kind;
        r->loop[r->n] = ctx->loop;
        snprintf(r->message[r->n], sizeof r->message[0], "%s", ctx->message ? ctx->message : "(null)");
        snprintf(r->detail[r->n], sizeof r->detail[0], "%s", ctx->detail ? ctx->detail : "(null)");
    }
    r->n++;
}

static void slow_callback(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    UNUSED(ud);
    sleep_ns(150 * MS);  /* the event under test: a callback that blocks the loop */
}

/* In debug mode a 150 ms callback produces exactly one report through the handler. */
static void slow_callback_reported_once(void **state) {
    aiol_loop *loop = LOOP(state);
    memset(&g_rep, 0, sizeof g_rep);
    counter c;
    counter_init(&c);
    assert_int_equal(API(aiol_loop_get_debug(loop)), 0);
    assert_int_equal(API(aiol_loop_set_debug(loop, 1)), 0);
    assert_int_equal(API(aiol_loop_get_debug(loop)), 1);
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, record_report, &g_rep, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, slow_callback, NULL, NULL, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &c, count_destroy, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(g_rep.n, 1);
    assert_int_equal(g_rep.in_api, 0);
    assert_ptr_equal(g_rep.loop[0], loop);
    assert_int_equal(g_rep.kind[0], AIOL_OBJ_LOOP);
    assert_non_null(strstr(g_rep.message[0], "took"));
    assert_int_equal(c.calls, 1);  /* fast ones are not reported */
}

/* Without debug mode, no report. */
static void slow_callback_silent_without_debug(void **state) {
    aiol_loop *loop = LOOP(state);
    memset(&g_rep, 0, sizeof g_rep);
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, record_report, &g_rep, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, slow_callback, NULL, NULL, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(g_rep.n, 0);
    assert_int_equal(API(aiol_loop_set_debug(loop, 1)), 0);
    assert_int_equal(API(aiol_loop_set_debug(loop, 0)), 0);
    assert_int_equal(aiol_loop_get_debug(loop), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, slow_callback, NULL, NULL, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(g_rep.n, 0);
}

/* aiol_loop_call_exception_handler delivers later, never inside the call or inside the
   calling callback, with message and detail copied (the caller's buffers may change). */
static char g_msg_buf[64], g_detail_buf[64];
static void report_from_callback(aiol_loop *loop, void *ud) {
    UNUSED(ud);
    g_in_callback = 1;
    snprintf(g_msg_buf, sizeof g_msg_buf, "from a callback");
    aiol_error_context ctx = {sizeof ctx, AIOL_ECONNRESET, g_msg_buf, NULL, NULL,
                              AIOL_OBJ_NONE, NULL, NULL};
    CHECK(API(aiol_loop_call_exception_handler(loop, &ctx)) == 0);
    CHECK(g_rep.n == 1);
    memset(g_msg_buf, 'X', sizeof g_msg_buf - 1);
    g_in_callback = 0;
}

static void call_exception_handler_is_deferred(void **state) {
    aiol_loop *loop = LOOP(state);
    memset(&g_rep, 0, sizeof g_rep);
    g_in_callback = g_report_in_callback = 0;
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, record_report, &g_rep, NULL)), 0);

    snprintf(g_msg_buf, sizeof g_msg_buf, "first report");
    snprintf(g_detail_buf, sizeof g_detail_buf, "some detail");
    aiol_error_context ctx = {sizeof ctx, AIOL_ETIMEDOUT, g_msg_buf, g_detail_buf, NULL,
                              AIOL_OBJ_HANDLE, &ctx, NULL};
    assert_int_equal(API(aiol_loop_call_exception_handler(loop, &ctx)), 0);
    assert_int_equal(g_rep.n, 0);  /* not inside the call */
    memset(g_msg_buf, 'X', sizeof g_msg_buf - 1);
    memset(g_detail_buf, 'Y', sizeof g_detail_buf - 1);

    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    assert_int_equal(g_rep.n, 1);
    assert_int_equal(g_rep.code[0], AIOL_ETIMEDOUT);
    assert_int_equal(g_rep.kind[0], AIOL_OBJ_HANDLE);
    assert_ptr_equal(g_rep.loop[0], loop);  /* set by the library */
    assert_string_equal(g_rep.message[0], "first report");
    assert_string_equal(g_rep.detail[0], "some detail");

    assert_int_equal(API(aiol_loop_call_soon(loop, report_from_callback, NULL, NULL, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(g_rep.n, 2);
    assert_int_equal(g_rep.code[1], AIOL_ECONNRESET);
    assert_string_equal(g_rep.message[1], "from a callback");
    assert_string_equal(g_rep.detail[1], "(null)");
    assert_int_equal(g_report_in_callback, 0);
    assert_int_equal(g_rep.in_api, 0);
}

/* In debug mode, close reports what was still open (pending callbacks, fd watchers);
   without debug it reports nothing. */
static void open_resources_reported_at_close(void **state) {
    aiol_loop *loop = LOOP(state);
    int p[2];
    assert_int_equal(pipe(p), 0);
    for (int debug = 0; debug < 2; debug++) {
        aiol_loop *l = loop;
        if (debug) assert_int_equal(aiol_loop_new(&l), 0);
        memset(&g_rep, 0, sizeof g_rep);
        assert_int_equal(API(aiol_loop_set_debug(l, debug)), 0);
        assert_int_equal(API(aiol_loop_set_exception_handler(l, record_report, &g_rep, NULL)), 0);
        assert_int_equal(API(aiol_loop_call_later(l, 3600 * 1000 * MS, count_call, NULL, NULL, NULL)), 0);
        assert_int_equal(API(aiol_loop_add_reader(l, p[0], count_fd_call, NULL, NULL)), 0);
        assert_int_equal(aiol_loop_close(l), 0);
        if (!debug) {
            assert_int_equal(g_rep.n, 0);
            continue;
        }
        assert_int_equal(g_rep.n, 2);
        assert_non_null(strstr(g_rep.message[0], "pending"));
        assert_non_null(strstr(g_rep.message[1], "watcher"));
        assert_ptr_equal(g_rep.loop[0], l);
        assert_int_equal(aiol_loop_free(l), 0);
    }
    close(p[0]);
    close(p[1]);
}

/* Replacing the exception handler: the old one's destroy runs after the call (in the
   next run), the last one's at close; NULL restores the default (stderr). */
static void exception_handler_replaced(void **state) {
    aiol_loop *loop = LOOP(state);
    counter a, b;
    counter_init(&a);
    counter_init(&b);
    memset(&g_rep, 0, sizeof g_rep);
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, record_report, &g_rep, NULL)), 0);
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, record_report, &a, count_destroy)), 0);
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, record_report, &g_rep, NULL)), 0);
    assert_int_equal(a.destroys, 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    assert_destroyed(&a, 1);
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, record_report, &b, count_destroy)), 0);
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, NULL, NULL, NULL)), 0);  /* default */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
    assert_destroyed(&b, 1);
    assert_int_equal(g_rep.n, 0);
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, record_report, &a, count_destroy)), 0);
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_destroyed(&a, 2);
}

static const struct CMUnitTest tests[] = {
    CASE(slow_callback_reported_once),
    CASE(slow_callback_silent_without_debug),
    CASE(call_exception_handler_is_deferred),
    CASE(open_resources_reported_at_close),
    CASE(exception_handler_replaced),
};

TEST_MAIN("debug", tests)
