/* Micro-benchmarks of the loop core. Not a test: run it by hand on a release build.
 *
 *   bench_loop [-n N] [-r REPS] [filter]
 *
 * Each figure is the median of REPS runs of N operations (default 1000000 x 5); a filter
 * runs only the benchmarks whose name contains it. Output: one line per figure,
 *   call_soon chain: 12.3 M callbacks/s
 */
#include <aioloop.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t N = 1000000;
static int REPS = 5;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc) {
    fprintf(stderr, "bench_loop: %s: %s (%d)\n", what, aiol_strerror(rc), rc);
    exit(1);
}

#define CHECK(call)                                   \
    do {                                              \
        int rc_ = (call);                             \
        if (rc_ < 0) die(#call, rc_);                 \
    } while (0)

/* One loop for every run, as the yardsticks in bench/micro/reference.c keep one ring and
   one uv loop: figures are for a loop in steady state (its queues already grown), not for
   first-touch page faults. Each benchmark leaves it with nothing scheduled. */
static aiol_loop *shared_loop;

static aiol_loop *new_loop(void) {
    if (!shared_loop) CHECK(aiol_loop_new(&shared_loop));
    return shared_loop;
}

static void free_loop(aiol_loop *loop) {
    int alive = aiol_loop_run(loop, AIOL_RUN_NOWAIT);  /* also drops cancelled timers */
    if (alive != 0) die("loop left with work scheduled", alive);
}

static size_t counter;

static void count_cb(aiol_loop *loop, void *ud) {
    (void)loop;
    (void)ud;
    counter++;
}

static void expect_count(const char *name, size_t want) {
    if (counter != want) {
        fprintf(stderr, "bench_loop: %s: %zu callbacks ran, want %zu\n", name, counter, want);
        exit(1);
    }
}

/* Each benchmark returns the seconds its N operations took. */

/* A callback that re-schedules itself: one callback per loop iteration (each iteration
   polls with a zero timeout). */
static size_t chain_left;
static void chain_cb(aiol_loop *loop, void *ud) {
    counter++;
    if (--chain_left) CHECK(aiol_loop_call_soon(loop, chain_cb, ud, NULL, NULL));
}

static double b_soon_chain(void) {
    aiol_loop *loop = new_loop();
    double t;
    counter = 0;
    chain_left = N;
    t = now_s();
    CHECK(aiol_loop_call_soon(loop, chain_cb, NULL, NULL, NULL));
    CHECK(aiol_loop_run(loop, AIOL_RUN_DEFAULT));
    t = now_s() - t;
    expect_count("call_soon chain", N);
    free_loop(loop);
    return t;
}

/* N call_soon, then one run that runs them all in one batch. */
static double b_soon_batch(void) {
    aiol_loop *loop = new_loop();
    double t;
    size_t i;
    counter = 0;
    t = now_s();
    for (i = 0; i < N; i++) CHECK(aiol_loop_call_soon(loop, count_cb, NULL, NULL, NULL));
    CHECK(aiol_loop_run(loop, AIOL_RUN_DEFAULT));
    t = now_s() - t;
    expect_count("call_soon batch", N);
    free_loop(loop);
    return t;
}

/* The same with a handle per call, released after scheduling. */
static double b_soon_batch_handle(void) {
    aiol_loop *loop = new_loop();
    double t;
    size_t i;
    counter = 0;
    t = now_s();
    for (i = 0; i < N; i++) {
        aiol_handle *h;
        CHECK(aiol_loop_call_soon(loop, count_cb, NULL, NULL, &h));
        CHECK(aiol_handle_release(h));
    }
    CHECK(aiol_loop_run(loop, AIOL_RUN_DEFAULT));
    t = now_s() - t;
    expect_count("call_soon+handle batch", N);
    free_loop(loop);
    return t;
}

/* call_later with a handle, cancel, release; a NOWAIT iteration every 1024 timers lets
   the loop drop the cancelled ones, as it would in a running program. Delays vary over
   1..2 s as in the libuv yardstick. call_later reads the clock on every call (asyncio's
   loop.time() is never cached); the call_at variant takes its deadlines from one clock
   read, as libuv's uv_timer_start does from its cached loop time, to show what the
   scheduling itself costs. */
static double timer_sched_cancel(int fresh_clock) {
    aiol_loop *loop = new_loop();
    double t;
    size_t i;
    uint64_t base;
    struct timespec ts;
    counter = 0;
    t = now_s();
    clock_gettime(CLOCK_MONOTONIC, &ts);
    base = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    for (i = 0; i < N; i++) {
        aiol_handle *h;
        uint64_t delay = 1000000000ull + (i % 1000) * 1000000ull;
        if (fresh_clock) CHECK(aiol_loop_call_later(loop, delay, count_cb, NULL, NULL, &h));
        else CHECK(aiol_loop_call_at(loop, base + delay, count_cb, NULL, NULL, &h));
        if (aiol_handle_cancel(h) != 1) die("aiol_handle_cancel", -1);
        CHECK(aiol_handle_release(h));
        if ((i & 1023) == 1023) CHECK(aiol_loop_run(loop, AIOL_RUN_NOWAIT));
    }
    CHECK(aiol_loop_run(loop, AIOL_RUN_NOWAIT));
    t = now_s() - t;
    expect_count("timer schedule+cancel", 0);
    free_loop(loop);
    return t;
}

static double b_timer_sched_cancel(void) { return timer_sched_cancel(1); }
static double b_timer_at_cancel(void) { return timer_sched_cancel(0); }

/* N timers with distinct deadlines scheduled, then all cancelled, then one iteration. */
static aiol_handle **handles;

static double b_timer_batch_cancel(void) {
    aiol_loop *loop = new_loop();
    double t;
    size_t i;
    counter = 0;
    t = now_s();
    for (i = 0; i < N; i++)
        CHECK(aiol_loop_call_later(loop, 1000000000ull + (i * 7919) % 1000003, count_cb, NULL,
                                   NULL, &handles[i]));
    for (i = 0; i < N; i++) {
        if (aiol_handle_cancel(handles[i]) != 1) die("aiol_handle_cancel", -1);
        CHECK(aiol_handle_release(handles[i]));
    }
    CHECK(aiol_loop_run(loop, AIOL_RUN_NOWAIT));
    t = now_s() - t;
    expect_count("timer batch cancel", 0);
    free_loop(loop);
    return t;
}

/* N timers (no handle) with deadlines spread over ~1 ms in shuffled order, run until all
   fired. */
static double b_timer_fire(void) {
    aiol_loop *loop = new_loop();
    double t;
    size_t i;
    counter = 0;
    t = now_s();
    for (i = 0; i < N; i++)
        CHECK(aiol_loop_call_later(loop, (i * 7919) % 1000003, count_cb, NULL, NULL, NULL));
    CHECK(aiol_loop_run(loop, AIOL_RUN_DEFAULT));
    t = now_s() - t;
    expect_count("call_later fired", N);
    free_loop(loop);
    return t;
}

/* call_soon_threadsafe from another thread while the loop runs. The main thread takes a
   hold for the run; the N-th callback (on the loop thread) gives it back, so the run ends
   without depending on a cross-thread wake-up. The loop is freed only after the producer
   is joined. A 10 ms watchdog timer counts the ticks at which the producer was done but
   the loop had made no progress since the previous tick: a lost wake-up (the loop asleep
   while callbacks are queued), which without the watchdog would hang the run. */
static volatile int producer_done;
static size_t lost_wakeups, wd_last, ts_target;
static int producers = 1;  /* threads posting; N is split between them */
static aiol_handle *wd_handle;

static void ts_cb(aiol_loop *loop, void *ud) {
    (void)ud;
    if (++counter == ts_target) {
        aiol_handle_cancel(wd_handle);
        CHECK(aiol_handle_release(wd_handle));
        wd_handle = NULL;
        CHECK(aiol_loop_unhold(loop));
    }
}

static void watchdog_cb(aiol_loop *loop, void *ud) {
    if (__atomic_load_n(&producer_done, __ATOMIC_ACQUIRE) == producers && counter == wd_last)
        lost_wakeups++;
    wd_last = counter;
    CHECK(aiol_handle_release(wd_handle));
    CHECK(aiol_loop_call_later(loop, 10000000, watchdog_cb, ud, NULL, &wd_handle));
}

static void *producer(void *arg) {
    aiol_loop *loop = arg;
    size_t i;
    for (i = 0; i < N / (size_t)producers; i++)
        CHECK(aiol_loop_call_soon_threadsafe(loop, ts_cb, NULL, NULL));
    __atomic_add_fetch(&producer_done, 1, __ATOMIC_ACQ_REL);
    return NULL;
}

static double run_threadsafe(int nthreads) {
    aiol_loop *loop = new_loop();
    pthread_t th[4];
    double t;
    int k;
    size_t want = N / (size_t)nthreads * (size_t)nthreads;
    counter = wd_last = 0;
    producer_done = 0;
    producers = nthreads;
    ts_target = want;
    CHECK(aiol_loop_hold(loop));
    CHECK(aiol_loop_call_later(loop, 10000000, watchdog_cb, NULL, NULL, &wd_handle));
    t = now_s();
    for (k = 0; k < nthreads; k++)
        if (pthread_create(&th[k], NULL, producer, loop) != 0) die("pthread_create", -1);
    CHECK(aiol_loop_run(loop, AIOL_RUN_DEFAULT));
    t = now_s() - t;
    for (k = 0; k < nthreads; k++) pthread_join(th[k], NULL);
    expect_count("call_soon_threadsafe", want);
    free_loop(loop);
    return t;
}

static double b_threadsafe(void) { return run_threadsafe(1); }
static double b_threadsafe4(void) { return run_threadsafe(4); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench(const char *filter, const char *name, const char *unit, double (*fn)(void)) {
    double rate[64];
    int r;
    if (filter && !strstr(name, filter)) return;
    for (r = 0; r < REPS; r++) rate[r] = (double)N / fn();
    qsort(rate, (size_t)REPS, sizeof rate[0], cmp_double);
    printf("%s: %.2f M %s/s  (median of %d x %zu; min %.2f, max %.2f)\n", name,
           rate[REPS / 2] / 1e6, unit, REPS, N, rate[0] / 1e6, rate[REPS - 1] / 1e6);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *filter = NULL;
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) N = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) REPS = atoi(argv[++i]);
        else if (argv[i][0] != '-') filter = argv[i];
        else {
            fprintf(stderr, "usage: %s [-n N] [-r REPS] [filter]\n", argv[0]);
            return 2;
        }
    }
    if (N < 1) N = 1;
    if (REPS < 1) REPS = 1;
    if (REPS > 64) REPS = 64;
    handles = malloc(N * sizeof *handles);
    if (!handles) die("malloc", AIOL_ENOMEM);

    printf("# aioloop %s, poller %s, %zu operations, median of %d runs\n", aiol_version_string(),
           aiol_has_feature("epoll") ? "epoll" : "poll", N, REPS);
    bench(filter, "call_soon chain (self-rescheduling, 1 per iteration)", "callbacks",
          b_soon_chain);
    bench(filter, "call_soon batch (N queued, one run)", "callbacks", b_soon_batch);
    bench(filter, "call_soon+handle batch (handle released)", "callbacks", b_soon_batch_handle);
    bench(filter, "timer schedule+cancel+release", "timers", b_timer_sched_cancel);
    bench(filter, "timer call_at+cancel+release (deadline from one clock read)", "timers",
          b_timer_at_cancel);
    bench(filter, "timer batch: schedule N, cancel all", "timers", b_timer_batch_cancel);
    bench(filter, "call_later fired (N timers over 1 ms)", "timers", b_timer_fire);
    bench(filter, "call_soon_threadsafe from another thread", "callbacks", b_threadsafe);
    bench(filter, "call_soon_threadsafe from 4 threads", "callbacks", b_threadsafe4);
    if (lost_wakeups)
        printf("WARNING: call_soon_threadsafe: %zu lost wake-up(s): the loop slept with "
               "callbacks queued until a 10 ms watchdog timer woke it\n", lost_wakeups);
    free(handles);
    if (shared_loop) {
        CHECK(aiol_loop_close(shared_loop));
        CHECK(aiol_loop_free(shared_loop));
    }
    return 0;
}
