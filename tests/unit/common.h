/*
 * common.h — shared harness for the libaioloop unit tests (cmocka).
 *
 * Every case gets a fresh loop from setup() and a baseline count of open fds; teardown()
 * asserts aiol_loop_free() == 0, that no fd leaked, and that no check made inside a
 * callback failed. Callbacks record failures with CHECK() instead of cmocka asserts, so a
 * failure never longjmps through library frames.
 *
 * main() takes an optional case name (Meson registers each case as its own test),
 * `--list` prints the cases, and `--registered a b ...` fails if that list (the one in
 * meson.build) differs from the cases compiled in.
 */
#ifndef AIOL_TEST_COMMON_H
#define AIOL_TEST_COMMON_H

#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "aioloop.h"

#define UNUSED(x) (void)(x)
#define MS 1000000ull /* ns */

/* ---- open fds ---------------------------------------------------------------------- */

static inline int count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

/* ---- failures inside callbacks ---------------------------------------------------- */

static int g_check_failures;
static const char *g_check_first_file __attribute__((unused));
static int g_check_first_line __attribute__((unused));
static const char *g_check_first_expr __attribute__((unused));

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            if (g_check_failures++ == 0) {                                            \
                g_check_first_file = __FILE__;                                        \
                g_check_first_line = __LINE__;                                        \
                g_check_first_expr = #cond;                                           \
            }                                                                         \
        }                                                                             \
    } while (0)

static inline void assert_no_check_failures(void) {
    if (g_check_failures)
        fail_msg("%d CHECK(s) failed in callbacks; first at %s:%d: %s", g_check_failures,
                 g_check_first_file ? g_check_first_file : "?", g_check_first_line,
                 g_check_first_expr ? g_check_first_expr : "?");
}

/* ---- "inside an aiol_* call" ----------------------------------------------------------
 * API(expr) marks the calling thread as inside an aiol_* call while expr runs; destroys
 * and callbacks record it if they ever see the mark (they may only run inside
 * aiol_loop_run and aiol_loop_close, which are never wrapped). */

static __thread int g_in_api;
static __thread int g_api_rc __attribute__((unused));
#define API(expr) (g_in_api = 1, g_api_rc = (int)(expr), g_in_api = 0, g_api_rc)

/* ---- destroy counters -------------------------------------------------------------- */

/* user_data for the counting destroy: how often it ran, and whether it ever ran inside
   an aiol_* call or off the thread that owns the counter. */
typedef struct counter {
    int calls;     /* the callback */
    int destroys;  /* the destroy */
    int destroy_in_api;
    int destroy_off_thread;
    pthread_t thread;
} counter;

static inline void counter_init(counter *c) {
    memset(c, 0, sizeof *c);
    c->thread = pthread_self();
}

static inline void count_destroy(void *ud) {
    counter *c = (counter *)ud;
    c->destroys++;
    if (g_in_api) c->destroy_in_api++;
    if (!pthread_equal(c->thread, pthread_self())) c->destroy_off_thread++;
}

/* A callback that just counts (and records a callback seen inside an API call). */
static inline void count_call(aiol_loop *loop, void *ud) {
    UNUSED(loop);
    counter *c = (counter *)ud;
    c->calls++;
    CHECK(!g_in_api);
}

static inline void count_fd_call(aiol_loop *loop, int fd, void *ud) {
    UNUSED(fd);
    count_call(loop, ud);
}

/* destroy ran exactly `n` times, never inside an API call, always on the owner thread */
#define assert_destroyed(c, n)                     \
    do {                                           \
        assert_int_equal((c)->destroys, (n));      \
        assert_int_equal((c)->destroy_in_api, 0);  \
        assert_int_equal((c)->destroy_off_thread, 0); \
    } while (0)

/* ---- per-test fixture -------------------------------------------------------------- */

typedef struct fixture {
    aiol_loop *loop;
    int fd_baseline;
} fixture;

static inline int setup(void **state) {
    static fixture f;
    memset(&f, 0, sizeof f);
    g_check_failures = 0;
    f.fd_baseline = count_open_fds();
    assert_true(f.fd_baseline > 0);
    assert_int_equal(aiol_loop_new(&f.loop), 0);
    assert_non_null(f.loop);
    *state = &f;
    return 0;
}

/* Frees the loop (must succeed), then checks fds and callback checks. A test that freed
   the loop itself sets f->loop = NULL. */
static inline int teardown(void **state) {
    fixture *f = (fixture *)*state;
    if (f->loop) assert_int_equal(aiol_loop_free(f->loop), 0);
    f->loop = NULL;
    assert_int_equal(count_open_fds(), f->fd_baseline);
    assert_no_check_failures();
    return 0;
}

#define LOOP(state) (((fixture *)*(state))->loop)

#define CASE(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* ---- helpers ------------------------------------------------------------------------- */

static inline uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ---- main ------------------------------------------------------------------------- */

static inline int test_main(const char *group, const struct CMUnitTest *tests, size_t n,
                            int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--registered") == 0) {
        /* every compiled case registered, every registered name a case */
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            int found = 0;
            for (int a = 2; a < argc; a++) found |= strcmp(tests[i].name, argv[a]) == 0;
            if (!found) {
                fprintf(stderr, "%s: case %s is not registered in meson.build\n", group,
                        tests[i].name);
                bad = 1;
            }
        }
        for (int a = 2; a < argc; a++) {
            int found = 0;
            for (size_t i = 0; i < n; i++) found |= strcmp(tests[i].name, argv[a]) == 0;
            if (!found) {
                fprintf(stderr, "%s: %s is registered but is not a case\n", group, argv[a]);
                bad = 1;
            }
        }
        return bad;
    }
    if (argc > 1) {
        size_t i = 0;
        while (i < n && strcmp(tests[i].name, argv[1]) != 0) i++;
        if (i == n) {
            fprintf(stderr, "%s: no case named %s\n", group, argv[1]);
            return 1;
        }
        cmocka_set_test_filter(argv[1]);
    }
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}

#define TEST_MAIN(group, tests) \
    int main(int argc, char **argv) { \
        return test_main(group, tests, sizeof(tests) / sizeof((tests)[0]), argc, argv); \
    }

#endif /* AIOL_TEST_COMMON_H */
