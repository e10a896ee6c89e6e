/* The yardsticks for tests/bench/bench_loop: what the same work costs without libaioloop.
 *
 *   reference [-n N] [-r REPS]
 *
 * - a plain ring of function pointers (the least a call_soon queue can cost), run as a
 *   self-rescheduling chain and as a batch;
 * - libuv timers: uv_timer_start + uv_timer_stop (schedule + cancel), and N started then
 *   all stopped (built only when libuv is there: -DHAVE_UV -luv).
 * Output lines have the same shape as bench_loop's, so the runner can pair them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef HAVE_UV
#include <uv.h>
#endif

static size_t N = 1000000;
static int REPS = 5;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name, const char *unit, double (*run)(void)) {
    double r[64];
    for (int i = 0; i < REPS; i++) r[i] = (double)N / run();
    qsort(r, (size_t)REPS, sizeof r[0], cmp);
    printf("%s: %.2f M %s/s  (median of %d x %zu; min %.2f, max %.2f)\n", name, r[REPS / 2] / 1e6,
           unit, REPS, N, r[0] / 1e6, r[REPS - 1] / 1e6);
}

/* ---- a plain ring of function pointers ---- */
typedef struct { void (*fn)(void *); void *arg; } item;
static item *ring;
static size_t cap, head, tail, count;

static void push(void (*fn)(void *), void *arg) {
    if (tail - head == cap) {  /* grow, as a real queue must */
        item *n = malloc(2 * cap * sizeof *n);
        for (size_t i = 0; i < cap; i++) n[i] = ring[(head + i) & (cap - 1)];
        free(ring);
        ring = n, tail -= head, head = 0, cap *= 2;
    }
    ring[tail++ & (cap - 1)] = (item){fn, arg};
}

static void chain_cb(void *arg) {
    (void)arg;
    if (++count < N) push(chain_cb, NULL);
}

static void count_cb(void *arg) { (void)arg, count++; }

static double ring_chain(void) {
    count = 0;
    double t0 = now_s();
    push(chain_cb, NULL);
    while (head != tail) { item it = ring[head++ & (cap - 1)]; it.fn(it.arg); }
    return now_s() - t0;
}

static double ring_batch(void) {
    count = 0;
    double t0 = now_s();
    for (size_t i = 0; i < N; i++) push(count_cb, NULL);
    while (head != tail) { item it = ring[head++ & (cap - 1)]; it.fn(it.arg); }
    return now_s() - t0;
}

#ifdef HAVE_UV
static uv_loop_t *loop;
static uv_timer_t *timers;
static void timer_cb(uv_timer_t *t) { (void)t; }

static double uv_start_stop(void) {
    uv_timer_t t;
    uv_timer_init(loop, &t);
    double t0 = now_s();
    for (size_t i = 0; i < N; i++) {
        uv_timer_start(&t, timer_cb, 1000 + i % 1000, 0);
        uv_timer_stop(&t);
    }
    double dt = now_s() - t0;
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    return dt;
}

static double uv_batch(void) {
    double t0 = now_s();
    for (size_t i = 0; i < N; i++) {
        uv_timer_init(loop, &timers[i]);
        uv_timer_start(&timers[i], timer_cb, 1000 + i % 1000, 0);
    }
    for (size_t i = 0; i < N; i++) uv_timer_stop(&timers[i]);
    double dt = now_s() - t0;
    for (size_t i = 0; i < N; i++) uv_close((uv_handle_t *)&timers[i], NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    return dt;
}
#endif

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-n")) N = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) REPS = atoi(argv[i + 1]);
    }
    if (REPS < 1 || REPS > 64 || N < 1) return 2;
    cap = 64;
    ring = malloc(cap * sizeof *ring);
    report("plain ring chain (self-rescheduling)", "callbacks", ring_chain);
    report("plain ring batch (N queued, one run)", "callbacks", ring_batch);
#ifdef HAVE_UV
    loop = uv_default_loop();
    timers = malloc(N * sizeof *timers);
    report("libuv timer start+stop", "timers", uv_start_stop);
    report("libuv timer batch: start N, stop all", "timers", uv_batch);
#endif
    return 0;
}
