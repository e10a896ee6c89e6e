/* Timers (asyncio TimerHandle): (deadline, scheduling order), call_soon before due timers,
   never early, clamping, cancel, and a million timers without quadratic behaviour. */
#include "common.h"

static int g_ids[1024];
static int g_n;

static void log_id(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    CHECK(g_n < 1024);
    if (g_n < 1024) g_ids[g_n++] = (int)(intptr_t)ud;
}

/* Timers with one fixed deadline run in scheduling order. */
static void same_deadline_keeps_order(void **state) {
    aiol_loop *loop = LOOP(state);
    g_n = 0;
    uint64_t when = aiol_loop_now(loop);
    for (int i = 0; i < 500; i++)
        assert_int_equal(API(aiol_loop_call_at(loop, when, log_id, (void *)(intptr_t)i, NULL, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(g_n, 500);
    for (int i = 0; i < 500; i++) assert_int_equal(g_ids[i], i);
}

/* Timers run by deadline first (scheduled in reverse), ties by scheduling order. */
static void deadline_then_scheduling_order(void **state) {
    aiol_loop *loop = LOOP(state);
    g_n = 0;
    uint64_t base = aiol_loop_now(loop);
    /* ids: deadline base+k for k = 9..0, two timers per deadline */
    for (int k = 9; k >= 0; k--) {
        assert_int_equal(API(aiol_loop_call_at(loop, base + (uint64_t)k, log_id,
                                               (void *)(intptr_t)(k * 2), NULL, NULL)), 0);
        assert_int_equal(API(aiol_loop_call_at(loop, base + (uint64_t)k, log_id,
                                               (void *)(intptr_t)(k * 2 + 1), NULL, NULL)), 0);
    }
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(g_n, 20);
    for (int i = 0; i < 20; i++) assert_int_equal(g_ids[i], i);
}

/* call_soon callbacks queued before an iteration run before the timers due in it, even
   when the timer was scheduled first. */
static void call_soon_before_due_timers(void **state) {
    aiol_loop *loop = LOOP(state);
    g_n = 0;
    assert_int_equal(API(aiol_loop_call_at(loop, 0, log_id, (void *)1, NULL, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, log_id, (void *)2, NULL, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_at(loop, 0, log_id, (void *)3, NULL, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, log_id, (void *)4, NULL, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 0);  /* all in one iteration */
    assert_int_equal(g_n, 4);
    assert_int_equal(g_ids[0], 2);
    assert_int_equal(g_ids[1], 4);
    assert_int_equal(g_ids[2], 1);
    assert_int_equal(g_ids[3], 3);
}

/* A timer never fires before its deadline, and ONCE blocks until it is due. */
static uint64_t g_fired_at;
static void record_now(aiol_loop *loop, void *ud) {
    UNUSED(ud);
    g_fired_at = aiol_loop_now(loop);
}

static void timer_never_early(void **state) {
    aiol_loop *loop = LOOP(state);
    aiol_handle *h = NULL;
    g_fired_at = 0;
    assert_int_equal(API(aiol_loop_call_later(loop, 20 * MS, record_now, NULL, NULL, &h)), 0);
    uint64_t when = aiol_handle_when(h);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 0);  /* slept until it was due */
    assert_true(g_fired_at != 0);
    assert_true(g_fired_at >= when);
    assert_int_equal(aiol_handle_release(h), 0);
}

/* aiol_handle_when: the absolute deadline for call_at / call_later, 0 for call_soon. */
static void handle_when_values(void **state) {
    aiol_loop *loop = LOOP(state);
    aiol_handle *h_at = NULL, *h_later = NULL, *h_soon = NULL;
    uint64_t when = aiol_loop_now(loop) + 3600 * 1000 * MS;
    assert_int_equal(API(aiol_loop_call_at(loop, when, log_id, NULL, NULL, &h_at)), 0);
    uint64_t before = aiol_loop_now(loop);
    assert_int_equal(API(aiol_loop_call_later(loop, 5000 * MS, log_id, NULL, NULL, &h_later)), 0);
    uint64_t after = aiol_loop_now(loop);
    assert_int_equal(API(aiol_loop_call_soon(loop, log_id, NULL, NULL, &h_soon)), 0);
    assert_true(aiol_handle_when(h_at) == when);
    assert_true(aiol_handle_when(h_later) >= before + 5000 * MS);
    assert_true(aiol_handle_when(h_later) <= after + 5000 * MS);
    assert_true(aiol_handle_when(h_soon) == 0);
    assert_int_equal(API(aiol_handle_cancel(h_at)), 1);
    assert_int_equal(API(aiol_handle_cancel(h_later)), 1);
    assert_true(aiol_handle_when(h_at) == when);  /* still readable after cancel */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    aiol_handle_release(h_at);
    aiol_handle_release(h_later);
    aiol_handle_release(h_soon);
}

/* A delay that overflows is clamped to UINT64_MAX: never fires, keeps the loop alive. */
static void overflowing_delay_clamped(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    aiol_handle *h = NULL;
    assert_int_equal(API(aiol_loop_call_later(loop, UINT64_MAX - 5, count_call, &c, count_destroy, &h)), 0);
    assert_true(aiol_handle_when(h) == UINT64_MAX);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(c.calls, 0);
    assert_int_equal(API(aiol_handle_cancel(h)), 1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(c.calls, 0);
    assert_destroyed(&c, 1);
    aiol_handle_release(h);
}

/* Two timers due in one iteration: the first cancels the second (1), which never runs. */
static aiol_handle *g_second;
static void cancel_second(aiol_loop *loop, void *ud) {
    count_call(loop, ud);
    CHECK(API(aiol_handle_cancel(g_second)) == 1);
}

static void cancel_timer_due_in_same_batch(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c1, c2;
    counter_init(&c1);
    counter_init(&c2);
    aiol_handle *h1 = NULL;
    assert_int_equal(API(aiol_loop_call_at(loop, 1, cancel_second, &c1, count_destroy, &h1)), 0);
    assert_int_equal(API(aiol_loop_call_at(loop, 2, count_call, &c2, count_destroy, &g_second)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 0);
    assert_int_equal(c1.calls, 1);
    assert_int_equal(c2.calls, 0);
    assert_destroyed(&c1, 1);
    assert_destroyed(&c2, 1);
    assert_int_equal(aiol_handle_cancelled(g_second), 1);
    aiol_handle_release(h1);
    aiol_handle_release(g_second);
}

/* 1,000,000 timers with handles, half cancelled: exactly the other half runs, in
   deadline order, and every destroy runs once. Needs the lazy purge to be linear-ish;
   the Meson timeout is the only clock. */
#define N_TIMERS 1000000
static uint64_t *g_whens;
static uint64_t g_last_when;
static long g_timer_calls, g_timer_destroys, g_timer_bad;

static void million_cb(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    size_t i = (size_t)(uintptr_t)ud;
    if (i % 2 == 0 || g_whens[i] < g_last_when) g_timer_bad++;  /* cancelled, or out of order */
    g_last_when = g_whens[i];
    g_timer_calls++;
}

static void million_destroy(void *ud) {
    UNUSED(ud);
    if (g_in_api) g_timer_bad++;
    g_timer_destroys++;
}

static void million_timers_half_cancelled(void **state) {
    aiol_loop *loop = LOOP(state);
    aiol_handle **hs = calloc(N_TIMERS, sizeof *hs);
    g_whens = calloc(N_TIMERS, sizeof *g_whens);
    assert_non_null(hs);
    assert_non_null(g_whens);
    g_last_when = 0;
    g_timer_calls = g_timer_destroys = g_timer_bad = 0;

    for (size_t i = 0; i < N_TIMERS; i++) {
        uint64_t delay = (uint64_t)((i * 7919) % 1000) * 1000;  /* 0..1 ms, shuffled */
        assert_int_equal(API(aiol_loop_call_later(loop, delay, million_cb, (void *)(uintptr_t)i,
                                                  million_destroy, &hs[i])), 0);
        g_whens[i] = aiol_handle_when(hs[i]);
    }
    for (size_t i = 0; i < N_TIMERS; i += 2) assert_int_equal(API(aiol_handle_cancel(hs[i])), 1);
    assert_int_equal(g_timer_destroys, 0);
    for (size_t i = 0; i < N_TIMERS; i++) assert_int_equal(aiol_handle_release(hs[i]), 0);

    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(g_timer_calls, N_TIMERS / 2);
    assert_int_equal(g_timer_destroys, N_TIMERS);
    assert_int_equal(g_timer_bad, 0);
    free(hs);
    free(g_whens);
}

static const struct CMUnitTest tests[] = {
    CASE(same_deadline_keeps_order),
    CASE(deadline_then_scheduling_order),
    CASE(call_soon_before_due_timers),
    CASE(timer_never_early),
    CASE(handle_when_values),
    CASE(overflowing_delay_clamped),
    CASE(cancel_timer_due_in_same_batch),
    CASE(million_timers_half_cancelled),
};

TEST_MAIN("timers", tests)
