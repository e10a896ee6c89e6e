/* Scheduled callbacks (asyncio Handle): call_soon order, iterations, cancel, release. */
#include "common.h"

/* A callback that appends its id to a log. */
typedef struct order_log {
    int ids[256];
    int n;
} order_log;

static order_log g_log;

static void log_id(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    CHECK(g_log.n < 256);
    if (g_log.n < 256) g_log.ids[g_log.n++] = (int)(intptr_t)ud;
}

/* call_soon callbacks run in the order they were scheduled (FIFO). */
static void call_soon_fifo(void **state) {
    aiol_loop *loop = LOOP(state);
    memset(&g_log, 0, sizeof g_log);
    for (int i = 0; i < 100; i++)
        assert_int_equal(API(aiol_loop_call_soon(loop, log_id, (void *)(intptr_t)i, NULL, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(g_log.n, 100);
    for (int i = 0; i < 100; i++) assert_int_equal(g_log.ids[i], i);
}

/* A callback queued from a callback runs in the next iteration, not in this one; the
   batch is exactly what was queued when the iteration started. */
static void schedule_nested(aiol_loop *loop, void *ud) {
    log_id(loop, ud);
    CHECK(API(aiol_loop_call_soon(loop, log_id, (void *)(intptr_t)100, NULL, NULL)) == 0);
}

static void nested_call_soon_runs_next_iteration(void **state) {
    aiol_loop *loop = LOOP(state);
    memset(&g_log, 0, sizeof g_log);
    assert_int_equal(API(aiol_loop_call_soon(loop, schedule_nested, (void *)1, NULL, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, log_id, (void *)2, NULL, NULL)), 0);

    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);  /* the nested one is alive */
    assert_int_equal(g_log.n, 2);
    assert_int_equal(g_log.ids[0], 1);
    assert_int_equal(g_log.ids[1], 2);

    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 0);
    assert_int_equal(g_log.n, 3);
    assert_int_equal(g_log.ids[2], 100);
}

/* Growth: a callback that re-schedules itself 100 times runs once per iteration. */
static int g_resched_calls;
static void reschedule_self(aiol_loop *loop, void *ud) {
    UNUSED(ud);
    if (++g_resched_calls < 100)
        CHECK(API(aiol_loop_call_soon(loop, reschedule_self, NULL, NULL, NULL)) == 0);
}

static void reschedule_self_runs_once_per_iteration(void **state) {
    aiol_loop *loop = LOOP(state);
    g_resched_calls = 0;
    assert_int_equal(API(aiol_loop_call_soon(loop, reschedule_self, NULL, NULL, NULL)), 0);
    for (int i = 1; i <= 100; i++) {
        int rc = aiol_loop_run(loop, AIOL_RUN_ONCE);
        assert_int_equal(g_resched_calls, i);
        assert_int_equal(rc, i < 100 ? 1 : 0);
    }
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(g_resched_calls, 100);
}

/* Cancel inside callbacks: own handle -> 0 (it is running), another pending handle -> 1
   and it never runs; a finished handle -> 0. Each destroy runs exactly once. */
static aiol_handle *g_ha, *g_hb, *g_hc, *g_ht;
static counter g_ca, g_cb, g_cc, g_ct;

static void cb_a(aiol_loop *loop, void *ud) {
    count_call(loop, ud);
    CHECK(API(aiol_handle_cancel(g_ha)) == 0);  /* own handle: running */
    CHECK(API(aiol_handle_cancelled(g_ha)) == 0);
    CHECK(API(aiol_handle_cancel(g_hb)) == 1);  /* pending in this very batch */
    CHECK(API(aiol_handle_cancelled(g_hb)) == 1);
    CHECK(API(aiol_handle_cancel(g_hb)) == 0);  /* idempotent */
    CHECK(g_cb.destroys == 0);                  /* not inside the cancel call */
}

static void cb_c(aiol_loop *loop, void *ud) {
    count_call(loop, ud);
    CHECK(API(aiol_handle_cancel(g_ha)) == 0);  /* already ran */
    CHECK(API(aiol_handle_cancel(g_ht)) == 1);  /* a pending timer, from another callback */
}

static void cancel_from_callbacks(void **state) {
    aiol_loop *loop = LOOP(state);
    counter_init(&g_ca);
    counter_init(&g_cb);
    counter_init(&g_cc);
    counter_init(&g_ct);
    assert_int_equal(API(aiol_loop_call_later(loop, 3600 * 1000 * MS, count_call, &g_ct,
                                              count_destroy, &g_ht)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, cb_a, &g_ca, count_destroy, &g_ha)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &g_cb, count_destroy, &g_hb)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, cb_c, &g_cc, count_destroy, &g_hc)), 0);

    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);  /* the timer was cancelled */
    assert_int_equal(g_ca.calls, 1);
    assert_int_equal(g_cb.calls, 0);
    assert_int_equal(g_cc.calls, 1);
    assert_int_equal(g_ct.calls, 0);
    assert_destroyed(&g_ca, 1);
    assert_destroyed(&g_cb, 1);
    assert_destroyed(&g_cc, 1);
    assert_destroyed(&g_ct, 1);
    assert_int_equal(aiol_handle_cancelled(g_ha), 0);
    assert_int_equal(aiol_handle_cancelled(g_hb), 1);
    assert_int_equal(aiol_handle_cancelled(g_ht), 1);
    aiol_handle *hs[] = {g_ha, g_hb, g_hc, g_ht};
    for (int i = 0; i < 4; i++) assert_int_equal(aiol_handle_release(hs[i]), 0);
}

/* Cancel outside the loop: 1, then 0; the callback never runs; its destroy runs once,
   in the next run (never inside aiol_handle_cancel). */
static void cancel_idempotent(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    aiol_handle *h = NULL;
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &c, count_destroy, &h)), 0);
    assert_non_null(h);
    assert_int_equal(aiol_handle_cancelled(h), 0);
    assert_int_equal(API(aiol_handle_cancel(h)), 1);
    assert_int_equal(API(aiol_handle_cancel(h)), 0);
    assert_int_equal(aiol_handle_cancelled(h), 1);
    assert_int_equal(c.destroys, 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(c.calls, 0);
    assert_destroyed(&c, 1);
    assert_int_equal(API(aiol_handle_cancel(h)), 0);
    assert_int_equal(aiol_handle_release(h), 0);
}

/* A handle that ran: cancel gives 0, cancelled() stays 0. */
static void cancel_after_run(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    aiol_handle *h = NULL;
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &c, count_destroy, &h)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(c.calls, 1);
    assert_destroyed(&c, 1);
    assert_int_equal(API(aiol_handle_cancel(h)), 0);
    assert_int_equal(aiol_handle_cancelled(h), 0);
    assert_int_equal(aiol_handle_release(h), 0);
}

/* Releasing the handle never cancels: the callback still runs. The handle may also be
   released after the loop is freed. */
static void release_never_cancels(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c1, c2;
    counter_init(&c1);
    counter_init(&c2);
    aiol_handle *h1 = NULL, *h2 = NULL;
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &c1, count_destroy, &h1)), 0);
    assert_int_equal(API(aiol_loop_call_later(loop, 0, count_call, &c2, count_destroy, &h2)), 0);
    assert_int_equal(aiol_handle_release(h1), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(c1.calls, 1);
    assert_int_equal(c2.calls, 1);
    assert_destroyed(&c1, 1);
    assert_destroyed(&c2, 1);

    fixture *f = (fixture *)*state;
    assert_int_equal(aiol_loop_free(loop), 0);
    f->loop = NULL;
    assert_int_equal(aiol_handle_cancelled(h2), 0);
    assert_int_equal(aiol_handle_cancel(h2), 0);  /* finished: does not touch the loop */
    assert_int_equal(aiol_handle_release(h2), 0);
}

/* The destroy of a call_soon callback runs after the callback returned, once. */
static int g_in_cb, g_destroy_saw_cb;
static aiol_handle *g_flag_handle;
static void flag_cb(aiol_loop *loop, void *ud) {
    UNUSED(ud);
    g_in_cb = 1;
    /* calls that could tempt the library to finish this handle inline */
    CHECK(API(aiol_handle_cancel(g_flag_handle)) == 0);
    CHECK(API(aiol_handle_release(g_flag_handle)) == 0);
    CHECK(API(aiol_loop_call_soon(loop, count_call, ud, NULL, NULL)) == 0);
    g_in_cb = 0;
}
static void flag_destroy(void *ud) {
    if (g_in_cb) g_destroy_saw_cb = 1;
    count_destroy(ud);
}

static void destroy_after_callback_returns(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    g_in_cb = g_destroy_saw_cb = 0;
    assert_int_equal(API(aiol_loop_call_soon(loop, flag_cb, &c, flag_destroy, &g_flag_handle)), 0);
    assert_int_equal(c.destroys, 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(c.calls, 1); /* the follow-up call_soon */
    assert_destroyed(&c, 1);
    assert_int_equal(g_destroy_saw_cb, 0);
}

static const struct CMUnitTest tests[] = {
    CASE(call_soon_fifo),
    CASE(nested_call_soon_runs_next_iteration),
    CASE(reschedule_self_runs_once_per_iteration),
    CASE(cancel_from_callbacks),
    CASE(cancel_idempotent),
    CASE(cancel_after_run),
    CASE(release_never_cancels),
    CASE(destroy_after_callback_returns),
};

TEST_MAIN("callbacks", tests)
