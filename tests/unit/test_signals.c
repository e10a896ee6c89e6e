/* Signal handlers (asyncio add_signal_handler): delivery on the loop thread, replace,
   remove, the previous disposition restored, one owner loop per signal, bad numbers. */
#include <signal.h>

#include "common.h"

/* Runs one iteration. The C handler wrote to the loop's self-pipe before raise() returned,
   so the iteration finds it readable without waiting. */
static void run_once(aiol_loop *loop) { assert_true(aiol_loop_run(loop, AIOL_RUN_ONCE) >= 0); }

/* raise() and kill(getpid()) reach the handler on the loop, once per delivery; signal
   handlers alone do not keep the loop alive. */
static void signal_reaches_handler(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    assert_int_equal(API(aiol_loop_add_signal_handler(loop, SIGUSR1, count_call, &c, count_destroy)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);  /* not alive */
    assert_int_equal(c.calls, 0);
    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(c.calls, 0);  /* only the loop runs it */
    run_once(loop);
    assert_int_equal(c.calls, 1);
    assert_int_equal(kill(getpid(), SIGUSR1), 0);
    run_once(loop);
    assert_int_equal(c.calls, 2);
    run_once(loop);
    assert_int_equal(c.calls, 2);
    assert_int_equal(API(aiol_loop_remove_signal_handler(loop, SIGUSR1)), 1);
    assert_int_equal(c.destroys, 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_destroyed(&c, 1);
}

/* Adding again replaces: the old callback's destroy runs (later), only the new runs. */
static void signal_handler_replaced(void **state) {
    aiol_loop *loop = LOOP(state);
    counter a, b;
    counter_init(&a);
    counter_init(&b);
    assert_int_equal(API(aiol_loop_add_signal_handler(loop, SIGUSR1, count_call, &a, count_destroy)), 0);
    assert_int_equal(API(aiol_loop_add_signal_handler(loop, SIGUSR1, count_call, &b, count_destroy)), 0);
    assert_int_equal(a.destroys, 0);
    assert_int_equal(raise(SIGUSR1), 0);
    run_once(loop);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 1);
    assert_destroyed(&a, 1);
    assert_int_equal(b.destroys, 0);
    assert_int_equal(aiol_loop_close(loop), 0);  /* close removes it */
    assert_destroyed(&b, 1);
}

/* remove returns 1 then 0; a signal delivered before the removal is not run after it. */
static void signal_remove_then_none(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    assert_int_equal(API(aiol_loop_add_signal_handler(loop, SIGUSR1, count_call, &c, count_destroy)), 0);
    assert_int_equal(raise(SIGUSR1), 0);  /* in the self-pipe now */
    assert_int_equal(API(aiol_loop_remove_signal_handler(loop, SIGUSR1)), 1);
    assert_int_equal(API(aiol_loop_remove_signal_handler(loop, SIGUSR1)), 0);
    assert_int_equal(API(aiol_loop_remove_signal_handler(loop, SIGUSR2)), 0);
    run_once(loop);  /* reads the byte: no handler any more */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(c.calls, 0);
    assert_destroyed(&c, 1);
}

/* The disposition installed before (a C handler with its flags) comes back on removal and
   on close; while ours is installed, the C handler is not called. */
static volatile sig_atomic_t g_c_handler_calls;
static void c_handler(int signum) {
    UNUSED(signum);
    g_c_handler_calls++;
}

static void signal_previous_disposition_restored(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    struct sigaction mine, now, dfl;
    memset(&mine, 0, sizeof mine);
    mine.sa_handler = c_handler;
    sigemptyset(&mine.sa_mask);
    sigaddset(&mine.sa_mask, SIGINT);
    mine.sa_flags = SA_RESTART;
    assert_int_equal(sigaction(SIGUSR2, &mine, NULL), 0);
    g_c_handler_calls = 0;

    for (int via_close = 0; via_close < 2; via_close++) {
        assert_int_equal(API(aiol_loop_add_signal_handler(loop, SIGUSR2, count_call, &c, NULL)), 0);
        assert_int_equal(sigaction(SIGUSR2, NULL, &now), 0);
        assert_true(now.sa_handler != c_handler);
        assert_int_equal(raise(SIGUSR2), 0);
        assert_int_equal(g_c_handler_calls, via_close);  /* ours took it, not the C one */
        run_once(loop);
        assert_int_equal(c.calls, via_close + 1);

        if (via_close) assert_int_equal(aiol_loop_close(loop), 0);
        else assert_int_equal(API(aiol_loop_remove_signal_handler(loop, SIGUSR2)), 1);
        assert_int_equal(sigaction(SIGUSR2, NULL, &now), 0);
        assert_true(now.sa_handler == c_handler);
        assert_true((now.sa_flags & SA_RESTART) != 0);
        assert_int_equal(sigismember(&now.sa_mask, SIGINT), 1);
        assert_int_equal(raise(SIGUSR2), 0);
        assert_int_equal(g_c_handler_calls, via_close + 1);
    }
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    assert_int_equal(sigaction(SIGUSR2, &dfl, NULL), 0);
}

/* One loop owns a signal: a second loop gets AIOL_EBUSY (and the refused destroy never
   runs) until the first removes it. */
static void signal_owned_by_one_loop(void **state) {
    aiol_loop *loop = LOOP(state), *other = NULL;
    counter a, b;
    counter_init(&a);
    counter_init(&b);
    assert_int_equal(aiol_loop_new(&other), 0);
    assert_int_equal(API(aiol_loop_add_signal_handler(loop, SIGUSR1, count_call, &a, count_destroy)), 0);
    assert_int_equal(API(aiol_loop_add_signal_handler(other, SIGUSR1, count_call, &b, count_destroy)), AIOL_EBUSY);
    assert_int_equal(API(aiol_loop_remove_signal_handler(other, SIGUSR1)), 0);  /* not its */
    assert_int_equal(raise(SIGUSR1), 0);
    run_once(other);
    run_once(loop);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 0);
    assert_int_equal(aiol_loop_close(other), 0);
    assert_int_equal(b.destroys, 0);

    assert_int_equal(aiol_loop_free(other), 0);
    assert_int_equal(aiol_loop_new(&other), 0);
    assert_int_equal(API(aiol_loop_remove_signal_handler(loop, SIGUSR1)), 1);
    assert_int_equal(API(aiol_loop_add_signal_handler(other, SIGUSR1, count_call, &b, count_destroy)), 0);
    assert_int_equal(raise(SIGUSR1), 0);
    run_once(other);
    assert_int_equal(b.calls, 1);
    assert_int_equal(aiol_loop_close(other), 0);
    assert_int_equal(aiol_loop_free(other), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_destroyed(&a, 1);
    assert_destroyed(&b, 1);
}

/* SIGKILL, SIGSTOP and numbers out of range: AIOL_EINVAL, destroy never runs. */
static void signal_invalid_numbers(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    int bad[] = {SIGKILL, SIGSTOP, 0, -1, 65, 1000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(API(aiol_loop_add_signal_handler(loop, bad[i], count_call, &c, count_destroy)), AIOL_EINVAL);
    assert_int_equal(API(aiol_loop_remove_signal_handler(loop, 0)), AIOL_EINVAL);
    assert_int_equal(API(aiol_loop_remove_signal_handler(loop, 65)), AIOL_EINVAL);
    assert_int_equal(API(aiol_loop_remove_signal_handler(loop, SIGKILL)), 0);  /* none */
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(c.destroys, 0);
}

/* The handler may remove itself; its destroy runs after it returned. */
static int g_sig_in_cb, g_sig_destroy_in_cb;
static void sig_destroy(void *ud) {
    if (g_sig_in_cb) g_sig_destroy_in_cb++;
    count_destroy(ud);
}
static void remove_self(aiol_loop *loop, void *ud) {
    g_sig_in_cb = 1;
    count_call(loop, ud);
    CHECK(API(aiol_loop_remove_signal_handler(loop, SIGUSR1)) == 1);
    g_sig_in_cb = 0;
}

static void signal_handler_removes_itself(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    g_sig_in_cb = g_sig_destroy_in_cb = 0;
    assert_int_equal(API(aiol_loop_add_signal_handler(loop, SIGUSR1, remove_self, &c, sig_destroy)), 0);
    assert_int_equal(raise(SIGUSR1), 0);
    run_once(loop);
    assert_int_equal(c.calls, 1);
    assert_destroyed(&c, 1);
    assert_int_equal(g_sig_destroy_in_cb, 0);
}

static const struct CMUnitTest tests[] = {
    CASE(signal_reaches_handler),
    CASE(signal_handler_replaced),
    CASE(signal_remove_then_none),
    CASE(signal_previous_disposition_restored),
    CASE(signal_owned_by_one_loop),
    CASE(signal_invalid_numbers),
    CASE(signal_handler_removes_itself),
};

TEST_MAIN("signals", tests)
