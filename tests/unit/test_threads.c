/* Threads: stop and call_soon_threadsafe from other threads under holds, wake-ups, and
   AIOL_ETHREAD for loop-thread-only calls made from another thread while the loop runs.
   Registered in the 'threads' suite too (run under TSan). */
#include <semaphore.h>
#include <signal.h>

#include "common.h"

#define HOUR (3600 * 1000 * MS)

static int load_flag(const int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void store_flag(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/* ---- stop from another thread ------------------------------------------------------ */

typedef struct stopper {
    aiol_loop *loop;
    int running;       /* set by a callback on the loop */
    sem_t may_unhold;  /* posted by main after run returned */
    int stop_rc, unhold_rc;
} stopper;

static void mark_running(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    store_flag(&((stopper *)ud)->running, 1);
}

static void *stop_thread(void *arg) {
    stopper *s = (stopper *)arg;
    while (!load_flag(&s->running)) sched_yield();
    s->stop_rc = aiol_loop_stop(s->loop);
    while (sem_wait(&s->may_unhold) != 0) {
    }
    s->unhold_rc = aiol_loop_unhold(s->loop);
    return NULL;
}

/* A thread holding the loop stops a DEFAULT run that would otherwise wait forever (the
   hold keeps it alive); it releases its hold only after run returned. */
static void stop_from_other_thread(void **state) {
    aiol_loop *loop = LOOP(state);
    stopper s = {.loop = loop};
    assert_int_equal(sem_init(&s.may_unhold, 0, 0), 0);
    assert_int_equal(API(aiol_loop_hold(loop)), 0);  /* hold first, then hand it over */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stop_thread, &s), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, mark_running, &s, NULL, NULL)), 0);

    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 1);  /* stopped; hold alive */
    assert_int_equal(sem_post(&s.may_unhold), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(s.stop_rc, 0);
    assert_int_equal(s.unhold_rc, 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    sem_destroy(&s.may_unhold);
}

/* ---- 8 threads x 100,000 call_soon_threadsafe ----------------------------------------- */

#define N_THREADS 8
#define N_POSTS 100000

typedef struct poster {
    aiol_loop *loop;
    int index;
    int failures;
} poster;

static long g_next[N_THREADS];  /* loop thread only */
static long g_ts_calls, g_ts_destroys, g_ts_bad;
static pthread_t g_loop_thread;

static void ts_cb(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    uintptr_t v = (uintptr_t)ud;
    size_t t = v / N_POSTS;
    long seq = (long)(v % N_POSTS);
    if (t >= N_THREADS || g_next[t] != seq) g_ts_bad++;  /* per-thread FIFO */
    else g_next[t]++;
    if (!pthread_equal(pthread_self(), g_loop_thread) || g_in_api) g_ts_bad++;
    g_ts_calls++;
}

static void ts_destroy(void *ud) {
    UNUSED(ud);
    if (!pthread_equal(pthread_self(), g_loop_thread) || g_in_api) g_ts_bad++;
    g_ts_destroys++;
}

static void *post_thread(void *arg) {
    poster *p = (poster *)arg;
    for (uintptr_t i = 0; i < N_POSTS; i++) {
        uintptr_t v = (uintptr_t)p->index * N_POSTS + i;
        if (API(aiol_loop_call_soon_threadsafe(p->loop, ts_cb, (void *)v, ts_destroy)) != 0)
            p->failures++;
    }
    if (aiol_loop_unhold(p->loop) != 0) p->failures++;  /* the loop is not ours after this */
    return NULL;
}

/* All 800,000 callbacks run exactly once, in per-thread posting order, on the loop
   thread; the DEFAULT run returns when the last hold is gone and everything ran. */
static void threadsafe_8_threads_100k_each(void **state) {
    aiol_loop *loop = LOOP(state);
    poster p[N_THREADS];
    pthread_t t[N_THREADS];
    memset(g_next, 0, sizeof g_next);
    g_ts_calls = g_ts_destroys = g_ts_bad = 0;
    g_loop_thread = pthread_self();
    for (int i = 0; i < N_THREADS; i++) {
        p[i] = (poster){loop, i, 0};
        assert_int_equal(API(aiol_loop_hold(loop)), 0);
        assert_int_equal(pthread_create(&t[i], NULL, post_thread, &p[i]), 0);
    }
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(p[i].failures, 0);
    }
    assert_int_equal(g_ts_calls, (long)N_THREADS * N_POSTS);
    assert_int_equal(g_ts_destroys, (long)N_THREADS * N_POSTS);
    for (int i = 0; i < N_THREADS; i++) assert_int_equal(g_next[i], N_POSTS);
    assert_int_equal(g_ts_bad, 0);
}

/* ---- no lost wake-ups ------------------------------------------------------------------ */

#define WAKE_ROUNDS 100
#define WAKE_THREADS 4
#define WAKE_POSTS 20000

static long g_wake_calls;
static void wake_cb(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    UNUSED(ud);
    g_wake_calls++;
}

static void *post_bursts(void *arg) {
    poster *p = (poster *)arg;
    for (int i = 0; i < WAKE_POSTS; i++) {
        if (aiol_loop_call_soon_threadsafe(p->loop, wake_cb, NULL, NULL) != 0) p->failures++;
        if (i % 64 == 0)  /* vary the timing so the loop often catches up and sleeps */
            for (volatile int k = 0; k < 2000; k++) {
            }
    }
    if (aiol_loop_unhold(p->loop) != 0) p->failures++;
    return NULL;
}

/* Posts racing with the loop draining its wake-up fd are never lost: a DEFAULT run that
   went to sleep always wakes for the next post and for the last unhold. (A lost wake-up
   hangs a round; the Meson timeout catches it.) */
static void threadsafe_wakeups_not_lost(void **state) {
    aiol_loop *loop = LOOP(state);
    g_wake_calls = 0;
    for (int r = 0; r < WAKE_ROUNDS; r++) {
        poster p[WAKE_THREADS];
        pthread_t t[WAKE_THREADS];
        for (int i = 0; i < WAKE_THREADS; i++) {
            p[i] = (poster){loop, i, 0};
            assert_int_equal(API(aiol_loop_hold(loop)), 0);
            assert_int_equal(pthread_create(&t[i], NULL, post_bursts, &p[i]), 0);
        }
        assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
        for (int i = 0; i < WAKE_THREADS; i++) {
            assert_int_equal(pthread_join(t[i], NULL), 0);
            assert_int_equal(p[i].failures, 0);
        }
        assert_int_equal(g_wake_calls, (long)(r + 1) * WAKE_THREADS * WAKE_POSTS);
    }
}

/* ---- wake-up of a sleeping loop ------------------------------------------------------ */

/* A loop asleep in poll (the next timer is an hour away) wakes for a threadsafe call:
   ONCE returns after running it. */
static counter g_woken;
static void *post_wake(void *arg) {
    poster *p = (poster *)arg;
    if (aiol_loop_call_soon_threadsafe(p->loop, count_call, &g_woken, count_destroy) != 0)
        p->failures++;
    if (aiol_loop_unhold(p->loop) != 0) p->failures++;
    return NULL;
}

static void threadsafe_wakes_sleeping_loop(void **state) {
    aiol_loop *loop = LOOP(state);
    counter far;
    counter_init(&far);
    counter_init(&g_woken);
    aiol_handle *h = NULL;
    assert_int_equal(API(aiol_loop_call_later(loop, HOUR, count_call, &far, count_destroy, &h)), 0);
    poster p = {loop, 0, 0};
    assert_int_equal(API(aiol_loop_hold(loop)), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, post_wake, &p), 0);
    /* runs until the posted callback ran (the hold may still be held until joined) */
    while (g_woken.calls == 0) assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(p.failures, 0);
    assert_int_equal(g_woken.calls, 1);
    assert_destroyed(&g_woken, 1);
    assert_int_equal(API(aiol_handle_cancel(h)), 1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(far.calls, 0);
    aiol_handle_release(h);
}

/* call_soon_threadsafe from the loop thread itself, inside a callback: next iteration. */
static counter g_ts_self;
static void post_from_loop(aiol_loop *loop, void *ud) {
    UNUSED(ud);
    CHECK(API(aiol_loop_call_soon_threadsafe(loop, count_call, &g_ts_self, count_destroy)) == 0);
}

static void threadsafe_from_loop_thread(void **state) {
    aiol_loop *loop = LOOP(state);
    counter_init(&g_ts_self);
    assert_int_equal(API(aiol_loop_call_soon(loop, post_from_loop, NULL, NULL, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(g_ts_self.calls, 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 0);
    assert_int_equal(g_ts_self.calls, 1);
    assert_destroyed(&g_ts_self, 1);
}

/* ---- wrong thread ----------------------------------------------------------------------- */

typedef struct intruder {
    aiol_loop *loop;
    aiol_handle *h;
    int fd;
    counter c;
    int rc[16];
    int n;
} intruder;

static void *intrude(void *arg) {
    intruder *x = (intruder *)arg;
    aiol_handle *h = NULL;
    x->rc[x->n++] = aiol_loop_call_soon(x->loop, count_call, &x->c, count_destroy, &h);
    x->rc[x->n++] = aiol_loop_call_later(x->loop, 0, count_call, &x->c, count_destroy, &h);
    x->rc[x->n++] = aiol_loop_call_at(x->loop, 0, count_call, &x->c, count_destroy, &h);
    x->rc[x->n++] = aiol_loop_add_reader(x->loop, x->fd, count_fd_call, &x->c, count_destroy);
    x->rc[x->n++] = aiol_loop_add_writer(x->loop, x->fd, count_fd_call, &x->c, count_destroy);
    x->rc[x->n++] = aiol_loop_remove_reader(x->loop, x->fd);
    x->rc[x->n++] = aiol_loop_add_signal_handler(x->loop, SIGUSR1, count_call, &x->c, count_destroy);
    x->rc[x->n++] = aiol_loop_set_exception_handler(x->loop, NULL, &x->c, count_destroy);
    x->rc[x->n++] = aiol_loop_set_debug(x->loop, 1);
    x->rc[x->n++] = aiol_loop_run(x->loop, AIOL_RUN_NOWAIT);
    x->rc[x->n++] = aiol_loop_close(x->loop);
    x->rc[x->n++] = aiol_loop_free(x->loop);
    x->rc[x->n++] = aiol_handle_cancel(x->h);
    return NULL;
}

static void start_intruder(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, intrude, ud) == 0);
    CHECK(pthread_join(t, NULL) == 0);
}

/* While the loop runs, loop-thread-only calls from another thread give AIOL_ETHREAD and
   the refused callbacks' destroys never run. */
static void wrong_thread_is_ethread(void **state) {
    aiol_loop *loop = LOOP(state);
    intruder x;
    memset(&x, 0, sizeof x);
    counter_init(&x.c);
    x.loop = loop;
    int p[2];
    assert_int_equal(pipe(p), 0);
    x.fd = p[0];
    counter pending;
    counter_init(&pending);
    assert_int_equal(API(aiol_loop_call_later(loop, HOUR, count_call, &pending, count_destroy, &x.h)), 0);
    assert_int_equal(API(aiol_loop_call_soon(loop, start_intruder, &x, NULL, NULL)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(x.n, 13);
    for (int i = 0; i < x.n; i++) {
        if (x.rc[i] != AIOL_ETHREAD) fail_msg("call %d from the wrong thread gave %d", i, x.rc[i]);
    }
    assert_int_equal(aiol_loop_get_debug(loop), 0);
    assert_int_equal(aiol_handle_cancelled(x.h), 0);
    assert_int_equal(API(aiol_handle_cancel(x.h)), 1);  /* the owner thread may */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(x.c.calls, 0);
    assert_int_equal(x.c.destroys, 0);
    assert_destroyed(&pending, 1);
    aiol_handle_release(x.h);
    close(p[0]);
    close(p[1]);
}

static const struct CMUnitTest tests[] = {
    CASE(stop_from_other_thread),
    CASE(threadsafe_8_threads_100k_each),
    CASE(threadsafe_wakeups_not_lost),
    CASE(threadsafe_wakes_sleeping_loop),
    CASE(threadsafe_from_loop_thread),
    CASE(wrong_thread_is_ethread),
};

TEST_MAIN("threads", tests)
