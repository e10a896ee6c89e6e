/* Run modes and their return values, stop, free, close, and destroy exactly once on every
   path (never inside an aiol_* call other than run and close). */
#include <fcntl.h>
#include <signal.h>

#include "common.h"

#define HOUR (3600 * 1000 * MS)

/* DEFAULT with nothing alive returns 0 at once; so do ONCE and NOWAIT. */
static void run_with_nothing_alive_returns_0(void **state) {
    aiol_loop *loop = LOOP(state);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);
}

/* ONCE / NOWAIT return 1 while something is alive and 0 after; neither blocks on a timer
   an hour away while something is ready (NOWAIT never blocks: the Meson timeout would
   catch it). */
static void once_and_nowait_return_values(void **state) {
    aiol_loop *loop = LOOP(state);
    counter soon, far;
    counter_init(&soon);
    counter_init(&far);
    aiol_handle *h = NULL;
    assert_int_equal(API(aiol_loop_call_later(loop, HOUR, count_call, &far, count_destroy, &h)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &soon, count_destroy, NULL)), 0);

    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);  /* something ready: no wait */
    assert_int_equal(soon.calls, 1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);  /* timer far away: no wait */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(far.calls, 0);

    assert_int_equal(API(aiol_handle_cancel(h)), 1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 0);  /* its destroy ran */
    assert_destroyed(&far, 1);
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &soon, NULL, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 0);
    assert_int_equal(soon.calls, 2);
    aiol_handle_release(h);
}

static void invalid_run_mode(void **state) {
    aiol_loop *loop = LOOP(state);
    assert_int_equal(aiol_loop_run(loop, 3), AIOL_EINVAL);
    assert_int_equal(aiol_loop_run(loop, -1), AIOL_EINVAL);
}

/* run, close and free from inside a callback of the same loop give AIOL_ESTATE. */
static void reentrant(aiol_loop *loop, void *ud) {
    UNUSED(ud);
    CHECK(API(aiol_loop_run(loop, AIOL_RUN_DEFAULT)) == AIOL_ESTATE);
    CHECK(API(aiol_loop_run(loop, AIOL_RUN_ONCE)) == AIOL_ESTATE);
    CHECK(API(aiol_loop_run(loop, AIOL_RUN_NOWAIT)) == AIOL_ESTATE);
    CHECK(API(aiol_loop_close(loop)) == AIOL_ESTATE);
    CHECK(API(aiol_loop_free(loop)) == AIOL_ESTATE);
}

static void run_inside_callback_is_estate(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    assert_int_equal(API(aiol_loop_call_soon(loop, reentrant, NULL, NULL, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &c, NULL, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(c.calls, 1);  /* the loop went on normally */
}

/* A stop before run makes the next DEFAULT run do exactly one iteration. */
static int g_forever_calls;
static void forever(aiol_loop *loop, void *ud) {
    UNUSED(ud);
    g_forever_calls++;
    CHECK(API(aiol_loop_call_soon(loop, forever, NULL, NULL, NULL)) == 0);
}

static void stop_before_run_does_one_iteration(void **state) {
    aiol_loop *loop = LOOP(state);
    g_forever_calls = 0;
    assert_int_equal(API(aiol_loop_call_soon(loop, forever, NULL, NULL, NULL)), 0);
    assert_int_equal(API(aiol_loop_stop(loop)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 1);
    assert_int_equal(g_forever_calls, 1);
    /* the stop was consumed: a NOWAIT run does one more iteration, then stop again */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(g_forever_calls, 2);
    assert_int_equal(API(aiol_loop_stop(loop)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 1);
    assert_int_equal(g_forever_calls, 3);
    assert_int_equal(aiol_loop_close(loop), 0);  /* drops the queued call */
}

/* stop from a callback: the current batch finishes, then run returns; what the batch
   queued runs in the next run. */
static counter g_after;
static void stop_and_queue(aiol_loop *loop, void *ud) {
    count_call(loop, ud);
    CHECK(API(aiol_loop_stop(loop)) == 0);
    CHECK(API(aiol_loop_call_soon(loop, count_call, &g_after, count_destroy, NULL)) == 0);
}

static void stop_in_callback_finishes_batch(void **state) {
    aiol_loop *loop = LOOP(state);
    counter a, b;
    counter_init(&a);
    counter_init(&b);
    counter_init(&g_after);
    assert_int_equal(API(aiol_loop_call_soon(loop, stop_and_queue, &a, NULL, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &b, NULL, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 1);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);  /* same batch */
    assert_int_equal(g_after.calls, 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(g_after.calls, 1);
    assert_destroyed(&g_after, 1);
}

/* free is AIOL_EBUSY while a timer is pending, and frees nothing: the loop still works. */
static void free_busy_with_pending_timer(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    aiol_handle *h = NULL;
    assert_int_equal(API(aiol_loop_call_later(loop, HOUR, count_call, &c, count_destroy, &h)), 0);
    assert_int_equal(aiol_loop_free(loop), AIOL_EBUSY);
    assert_int_equal(c.destroys, 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &c, NULL, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(c.calls, 1);
    assert_int_equal(API(aiol_handle_cancel(h)), 1);
    assert_int_equal(aiol_loop_free(loop), AIOL_EBUSY);  /* its destroy is still pending */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_destroyed(&c, 1);
    aiol_handle_release(h);
}

/* free is AIOL_EBUSY while a watcher is registered. */
static void free_busy_with_watcher(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(API(aiol_loop_add_reader(loop, p[0], count_fd_call, &c, count_destroy)), 0);
    assert_int_equal(aiol_loop_free(loop), AIOL_EBUSY);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(API(aiol_loop_remove_reader(loop, p[0])), 1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(c.calls, 0);
    assert_destroyed(&c, 1);
    close(p[0]);
    close(p[1]);
}

/* free is AIOL_EBUSY while a hold remains, even after close. */
static void free_busy_with_hold(void **state) {
    aiol_loop *loop = LOOP(state);
    assert_int_equal(API(aiol_loop_hold(loop)), 0);
    assert_int_equal(API(aiol_loop_hold(loop)), 0);
    assert_int_equal(aiol_loop_free(loop), AIOL_EBUSY);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);  /* a hold is alive */
    assert_int_equal(API(aiol_loop_unhold(loop)), 0);
    assert_int_equal(aiol_loop_free(loop), AIOL_EBUSY);
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(API(aiol_loop_hold(loop)), AIOL_ECLOSED);
    assert_int_equal(aiol_loop_free(loop), AIOL_EBUSY);
    assert_int_equal(API(aiol_loop_unhold(loop)), 0);
    /* teardown frees it */
}

/* close with timers, call_soon callbacks, watchers, threadsafe callbacks, an exception
   handler and a signal handler pending: every destroy runs once during close, no
   callback runs, and afterwards every call is AIOL_ECLOSED; close is idempotent. */
static void exc_handler(const aiol_error_context *ctx, void *ud) {
    UNUSED(ctx);
    UNUSED(ud);
}

static void close_with_everything_pending(void **state) {
    aiol_loop *loop = LOOP(state);
    enum { TIMER, TIMER_H, SOON, SOON_H, READER, WRITER, TS1, TS2, EXC, SIG, N };
    counter c[N];
    for (int i = 0; i < N; i++) counter_init(&c[i]);
    aiol_handle *ht = NULL, *hs = NULL;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "x", 1), 1);  /* readable and writable: both would fire */

    assert_int_equal(API(aiol_loop_call_later(loop, 0, count_call, &c[TIMER], count_destroy, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_later(loop, HOUR, count_call, &c[TIMER_H], count_destroy, &ht)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &c[SOON], count_destroy, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &c[SOON_H], count_destroy, &hs)), 0);
    assert_int_equal(API(aiol_loop_add_reader(loop, p[0], count_fd_call, &c[READER], count_destroy)), 0);
    assert_int_equal(API(aiol_loop_add_writer(loop, p[1], count_fd_call, &c[WRITER], count_destroy)), 0);
    assert_int_equal(API(aiol_loop_call_soon_threadsafe(loop, count_call, &c[TS1], count_destroy)), 0);
    assert_int_equal(API(aiol_loop_call_soon_threadsafe(loop, count_call, &c[TS2], count_destroy)), 0);
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, exc_handler, &c[EXC], count_destroy)), 0);
    assert_int_equal(API(aiol_loop_add_signal_handler(loop, SIGUSR2, count_call, &c[SIG], count_destroy)), 0);
    for (int i = 0; i < N; i++) assert_int_equal(c[i].destroys, 0);

    assert_int_equal(aiol_loop_close(loop), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(c[i].calls, 0);
        assert_destroyed(&c[i], 1);
    }
    assert_int_equal(aiol_handle_cancelled(ht), 1);
    assert_int_equal(aiol_handle_cancelled(hs), 1);
    assert_int_equal(API(aiol_handle_cancel(ht)), 0);

    /* everything afterwards: AIOL_ECLOSED, and a refused call never destroys */
    counter late;
    counter_init(&late);
    aiol_handle *hl = NULL;
    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &late, count_destroy, &hl)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_call_later(loop, 0, count_call, &late, count_destroy, &hl)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_call_at(loop, 0, count_call, &late, count_destroy, &hl)), AIOL_ECLOSED);
    assert_null(hl);
    assert_int_equal(API(aiol_loop_call_soon_threadsafe(loop, count_call, &late, count_destroy)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_add_reader(loop, p[0], count_fd_call, &late, count_destroy)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_add_writer(loop, p[1], count_fd_call, &late, count_destroy)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_remove_reader(loop, p[0])), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_remove_writer(loop, p[1])), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_add_signal_handler(loop, SIGUSR2, count_call, &late, count_destroy)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_remove_signal_handler(loop, SIGUSR2)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, exc_handler, &late, count_destroy)), AIOL_ECLOSED);
    aiol_error_context ctx = {sizeof ctx, 0, "x", NULL, NULL, 0, NULL, NULL};
    assert_int_equal(API(aiol_loop_call_exception_handler(loop, &ctx)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_set_debug(loop, 1)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_run(loop, AIOL_RUN_DEFAULT)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_run(loop, AIOL_RUN_NOWAIT)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_stop(loop)), AIOL_ECLOSED);
    assert_int_equal(API(aiol_loop_hold(loop)), AIOL_ECLOSED);
    assert_int_equal(aiol_loop_close(loop), 0);  /* idempotent */
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(late.destroys, 0);
    for (int i = 0; i < N; i++) assert_int_equal(c[i].destroys, 1);

    /* the original disposition is back */
    struct sigaction sa;
    assert_int_equal(sigaction(SIGUSR2, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_DFL);

    aiol_handle_release(ht);
    aiol_handle_release(hs);
    close(p[0]);
    close(p[1]);
}

/* destroy exactly once on every path: ran, cancelled, replaced, removed, exception handler
   replaced, and never inside an aiol_* call (API() marks those). */
static void destroy_once_on_every_path(void **state) {
    aiol_loop *loop = LOOP(state);
    enum { RAN, TIMER_RAN, CANCELLED, READER_OLD, READER_NEW, WRITER, EXC_OLD, EXC_NEW, TS, N };
    counter c[N];
    for (int i = 0; i < N; i++) counter_init(&c[i]);
    int p[2];
    assert_int_equal(pipe(p), 0);
    aiol_handle *h = NULL;

    assert_int_equal(API(aiol_loop_call_soon(loop, count_call, &c[RAN], count_destroy, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_later(loop, 0, count_call, &c[TIMER_RAN], count_destroy, NULL)), 0);
    assert_int_equal(API(aiol_loop_call_later(loop, HOUR, count_call, &c[CANCELLED], count_destroy, &h)), 0);
    assert_int_equal(API(aiol_handle_cancel(h)), 1);
    assert_int_equal(API(aiol_loop_add_reader(loop, p[0], count_fd_call, &c[READER_OLD], count_destroy)), 0);
    assert_int_equal(API(aiol_loop_add_reader(loop, p[0], count_fd_call, &c[READER_NEW], count_destroy)), 0);
    assert_int_equal(API(aiol_loop_add_writer(loop, p[1], count_fd_call, &c[WRITER], count_destroy)), 0);
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, exc_handler, &c[EXC_OLD], count_destroy)), 0);
    assert_int_equal(API(aiol_loop_set_exception_handler(loop, exc_handler, &c[EXC_NEW], count_destroy)), 0);
    assert_int_equal(API(aiol_loop_call_soon_threadsafe(loop, count_call, &c[TS], count_destroy)), 0);
    for (int i = 0; i < N; i++) assert_int_equal(c[i].destroys, 0);

    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);  /* reader, writer alive */
    assert_int_equal(c[RAN].calls, 1);
    assert_int_equal(c[TIMER_RAN].calls, 1);
    assert_int_equal(c[TS].calls, 1);
    assert_int_equal(c[WRITER].calls, 1);
    assert_int_equal(c[CANCELLED].calls, 0);
    assert_int_equal(c[READER_OLD].calls + c[READER_NEW].calls, 0);  /* nothing to read */
    int done[] = {RAN, TIMER_RAN, CANCELLED, READER_OLD, EXC_OLD, TS};
    for (size_t i = 0; i < sizeof done / sizeof done[0]; i++) assert_destroyed(&c[done[i]], 1);
    assert_int_equal(c[READER_NEW].destroys, 0);
    assert_int_equal(c[WRITER].destroys, 0);

    assert_int_equal(API(aiol_loop_remove_reader(loop, p[0])), 1);
    assert_int_equal(API(aiol_loop_remove_writer(loop, p[1])), 1);
    assert_int_equal(c[READER_NEW].destroys, 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(aiol_loop_close(loop), 0);  /* the exception handler's destroy */
    for (int i = 0; i < N; i++) assert_destroyed(&c[i], 1);
    aiol_handle_release(h);
    close(p[0]);
    close(p[1]);
}

static const struct CMUnitTest tests[] = {
    CASE(run_with_nothing_alive_returns_0),
    CASE(once_and_nowait_return_values),
    CASE(invalid_run_mode),
    CASE(run_inside_callback_is_estate),
    CASE(stop_before_run_does_one_iteration),
    CASE(stop_in_callback_finishes_batch),
    CASE(free_busy_with_pending_timer),
    CASE(free_busy_with_watcher),
    CASE(free_busy_with_hold),
    CASE(close_with_everything_pending),
    CASE(destroy_once_on_every_path),
};

TEST_MAIN("lifecycle", tests)
