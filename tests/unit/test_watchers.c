/* fd watchers (asyncio add_reader / add_writer) on pipes and socketpairs: level
   triggering, replace, remove, events already collected, reader/writer independence. */
#include <sys/socket.h>

#include "common.h"

typedef struct fdpair {
    int r, w; /* pipe: read end, write end; socketpair: the two ends */
} fdpair;

static fdpair make_pipe(void) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    return (fdpair){p[0], p[1]};
}

static fdpair make_socketpair(void) {
    int p[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p), 0);
    return (fdpair){p[0], p[1]};
}

static void close_pair(fdpair p) {
    close(p.r);
    close(p.w);
}

/* A reader that leaves the data unread is called again each iteration (level-triggered);
   remove_reader returns 1, then 0. */
static void reader_is_level_triggered(void **state) {
    aiol_loop *loop = LOOP(state);
    fdpair p = make_pipe();
    counter c;
    counter_init(&c);
    assert_int_equal(API(aiol_loop_add_reader(loop, p.r, count_fd_call, &c, count_destroy)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_NOWAIT), 1);
    assert_int_equal(c.calls, 0);  /* nothing written yet */
    assert_int_equal(write(p.w, "x", 1), 1);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
        assert_int_equal(c.calls, i);
    }
    assert_int_equal(API(aiol_loop_remove_reader(loop, p.r)), 1);
    assert_int_equal(API(aiol_loop_remove_reader(loop, p.r)), 0);
    assert_int_equal(c.destroys, 0);  /* not inside the remove call */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(c.calls, 3);
    assert_destroyed(&c, 1);
    close_pair(p);
}

/* add_reader / add_writer twice: the new callback replaces the old, whose destroy runs
   once (later, not inside the add) and which never runs again. */
static void check_replace(aiol_loop *loop, fdpair p) {
    counter r_old, r_new, w_old, w_new;
    counter_init(&r_old);
    counter_init(&r_new);
    counter_init(&w_old);
    counter_init(&w_new);
    assert_int_equal(write(p.w, "x", 1), 1);
    assert_int_equal(API(aiol_loop_add_reader(loop, p.r, count_fd_call, &r_old, count_destroy)), 0);
    assert_int_equal(API(aiol_loop_add_writer(loop, p.w, count_fd_call, &w_old, count_destroy)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(r_old.calls, 1);
    assert_int_equal(w_old.calls, 1);

    assert_int_equal(API(aiol_loop_add_reader(loop, p.r, count_fd_call, &r_new, count_destroy)), 0);
    assert_int_equal(API(aiol_loop_add_writer(loop, p.w, count_fd_call, &w_new, count_destroy)), 0);
    assert_int_equal(r_old.destroys, 0);
    assert_int_equal(w_old.destroys, 0);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
        assert_int_equal(r_new.calls, i);
        assert_int_equal(w_new.calls, i);
    }
    assert_int_equal(r_old.calls, 1);
    assert_int_equal(w_old.calls, 1);
    assert_destroyed(&r_old, 1);
    assert_destroyed(&w_old, 1);

    assert_int_equal(API(aiol_loop_remove_reader(loop, p.r)), 1);
    assert_int_equal(API(aiol_loop_remove_writer(loop, p.w)), 1);
    assert_int_equal(API(aiol_loop_remove_reader(loop, p.r)), 0);
    assert_int_equal(API(aiol_loop_remove_writer(loop, p.w)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_destroyed(&r_new, 1);
    assert_destroyed(&w_new, 1);
}

static void replace_on_pipe(void **state) {
    fdpair p = make_pipe();
    check_replace(LOOP(state), p);
    close_pair(p);
}

static void replace_on_socketpair(void **state) {
    fdpair p = make_socketpair();
    check_replace(LOOP(state), p);
    close_pair(p);
}

/* Two fds readable in one iteration: whichever callback runs first removes (or replaces)
   the other's reader, so the other's old callback must not run although its event was
   already collected. */
typedef struct peer {
    counter c;
    int fd;
    struct peer *other;
    int replace; /* replace the other's reader instead of removing it */
} peer;

static counter g_replacement;
static int g_acted;

static void peer_cb(aiol_loop *loop, int fd, void *ud) {
    peer *me = (peer *)ud;
    count_fd_call(loop, fd, &me->c);
    if (!g_acted) {
        g_acted = 1;
        if (me->replace)
            CHECK(API(aiol_loop_add_reader(loop, me->other->fd, count_fd_call, &g_replacement,
                                           count_destroy)) == 0);
        else
            CHECK(API(aiol_loop_remove_reader(loop, me->other->fd)) == 1);
        CHECK(me->other->c.destroys == 0);  /* not inside that call */
    }
}

static void check_collected_event(aiol_loop *loop, fdpair a, fdpair b, int replace) {
    peer pa = {.fd = a.r, .replace = replace}, pb = {.fd = b.r, .replace = replace};
    counter_init(&pa.c);
    counter_init(&pb.c);
    counter_init(&g_replacement);
    g_acted = 0;
    pa.other = &pb;
    pb.other = &pa;
    assert_int_equal(write(a.w, "x", 1), 1);
    assert_int_equal(write(b.w, "x", 1), 1);
    assert_int_equal(API(aiol_loop_add_reader(loop, a.r, peer_cb, &pa, count_destroy)), 0);
    assert_int_equal(API(aiol_loop_add_reader(loop, b.r, peer_cb, &pb, count_destroy)), 0);

    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(pa.c.calls + pb.c.calls, 1);  /* exactly one of the old callbacks */
    peer *first = pa.c.calls ? &pa : &pb, *second = first->other;
    assert_destroyed(&second->c, 1);  /* destroy gets the peer; c is its first member */
    assert_int_equal(first->c.destroys, 0);

    /* the next iterations: the first keeps running; the second fd has the replacement
       (or nothing) */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(first->c.calls, 2);
    assert_int_equal(second->c.calls, 0);
    assert_int_equal(API(aiol_loop_remove_reader(loop, first->fd)), 1);
    assert_int_equal(API(aiol_loop_remove_reader(loop, second->fd)), replace ? 1 : 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_destroyed(&first->c, 1);
    assert_destroyed(&second->c, 1);
    assert_destroyed(&g_replacement, replace ? 1 : 0);
}

static void removed_reader_skips_collected_event(void **state) {
    fdpair a = make_pipe(), b = make_socketpair();
    check_collected_event(LOOP(state), a, b, 0);
    close_pair(a);
    close_pair(b);
}

static void replaced_reader_skips_collected_event(void **state) {
    fdpair a = make_socketpair(), b = make_pipe();
    check_collected_event(LOOP(state), a, b, 1);
    close_pair(a);
    close_pair(b);
}

/* Reader and writer on the same fd are independent: removing one leaves the other. */
static void reader_and_writer_independent(void **state) {
    aiol_loop *loop = LOOP(state);
    fdpair s = make_socketpair();
    counter r, w;
    counter_init(&r);
    counter_init(&w);
    assert_int_equal(write(s.w, "x", 1), 1);  /* s.r readable and writable */
    assert_int_equal(API(aiol_loop_add_reader(loop, s.r, count_fd_call, &r, count_destroy)), 0);
    assert_int_equal(API(aiol_loop_add_writer(loop, s.r, count_fd_call, &w, count_destroy)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(r.calls, 1);
    assert_int_equal(w.calls, 1);

    assert_int_equal(API(aiol_loop_remove_writer(loop, s.r)), 1);
    assert_int_equal(API(aiol_loop_remove_writer(loop, s.r)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(r.calls, 2);
    assert_int_equal(w.calls, 1);
    assert_destroyed(&w, 1);
    assert_int_equal(r.destroys, 0);

    assert_int_equal(API(aiol_loop_add_writer(loop, s.r, count_fd_call, &w, NULL)), 0);
    assert_int_equal(API(aiol_loop_remove_reader(loop, s.r)), 1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(r.calls, 2);
    assert_int_equal(w.calls, 2);
    assert_destroyed(&r, 1);
    assert_int_equal(API(aiol_loop_remove_reader(loop, s.r)), 0);
    assert_int_equal(API(aiol_loop_remove_writer(loop, s.r)), 1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    close_pair(s);
}

/* Both ready on one fd: the reader removes the writer and itself; the writer's callback
   must not run, although its event was collected with the reader's. */
static counter g_rw_reader, g_rw_writer;
static void remove_both(aiol_loop *loop, int fd, void *ud) {
    count_fd_call(loop, fd, ud);
    CHECK(API(aiol_loop_remove_writer(loop, fd)) == 1);
    CHECK(API(aiol_loop_remove_reader(loop, fd)) == 1);
}

static void reader_removes_writer_of_same_fd(void **state) {
    aiol_loop *loop = LOOP(state);
    fdpair s = make_socketpair();
    counter_init(&g_rw_reader);
    counter_init(&g_rw_writer);
    assert_int_equal(write(s.w, "x", 1), 1);
    assert_int_equal(API(aiol_loop_add_reader(loop, s.r, remove_both, &g_rw_reader, count_destroy)), 0);
    assert_int_equal(API(aiol_loop_add_writer(loop, s.r, count_fd_call, &g_rw_writer, count_destroy)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 0);
    assert_int_equal(g_rw_reader.calls, 1);
    assert_int_equal(g_rw_writer.calls, 0);
    assert_destroyed(&g_rw_reader, 1);
    assert_destroyed(&g_rw_writer, 1);
    close_pair(s);
}

/* A reader that replaces itself: its own destroy runs after it returned, the new one
   runs from the next iteration. */
static int g_self_in_cb, g_self_destroy_in_cb;
static counter g_self_old, g_self_new;
static void self_destroy(void *ud) {
    if (g_self_in_cb) g_self_destroy_in_cb++;
    count_destroy(ud);
}
static void replace_self(aiol_loop *loop, int fd, void *ud) {
    g_self_in_cb = 1;
    count_fd_call(loop, fd, ud);
    CHECK(API(aiol_loop_add_reader(loop, fd, count_fd_call, &g_self_new, self_destroy)) == 0);
    g_self_in_cb = 0;
}

static void reader_replaces_itself(void **state) {
    aiol_loop *loop = LOOP(state);
    fdpair p = make_pipe();
    counter_init(&g_self_old);
    counter_init(&g_self_new);
    g_self_in_cb = g_self_destroy_in_cb = 0;
    assert_int_equal(write(p.w, "x", 1), 1);
    assert_int_equal(API(aiol_loop_add_reader(loop, p.r, replace_self, &g_self_old, self_destroy)), 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(g_self_old.calls, 1);
    assert_int_equal(g_self_new.calls, 0);
    assert_destroyed(&g_self_old, 1);
    assert_int_equal(g_self_destroy_in_cb, 0);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(g_self_old.calls, 1);
    assert_int_equal(g_self_new.calls, 1);
    assert_int_equal(API(aiol_loop_remove_reader(loop, p.r)), 1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_destroyed(&g_self_new, 1);
    close_pair(p);
}

/* A peer that hangs up makes the reader fire (EOF), as a selector reports it. */
static void reader_sees_hangup(void **state) {
    aiol_loop *loop = LOOP(state);
    fdpair s = make_socketpair();
    counter c;
    counter_init(&c);
    assert_int_equal(API(aiol_loop_add_reader(loop, s.r, count_fd_call, &c, count_destroy)), 0);
    close(s.w);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_ONCE), 1);
    assert_int_equal(c.calls, 1);
    assert_int_equal(API(aiol_loop_remove_reader(loop, s.r)), 1);
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_destroyed(&c, 1);
    close(s.r);
}

/* A bad fd is refused (-EBADF) and the refused callback's destroy never runs. */
static void bad_fd_refused(void **state) {
    aiol_loop *loop = LOOP(state);
    counter c;
    counter_init(&c);
    assert_int_equal(API(aiol_loop_add_reader(loop, -1, count_fd_call, &c, count_destroy)), AIOL_EBADF);
    assert_int_equal(API(aiol_loop_add_writer(loop, -1, count_fd_call, &c, count_destroy)), AIOL_EBADF);
    assert_int_equal(API(aiol_loop_remove_reader(loop, -1)), AIOL_EBADF);
    assert_int_equal(API(aiol_loop_remove_writer(loop, 12345)), 0);  /* valid number, none */
    assert_int_equal(aiol_loop_run(loop, AIOL_RUN_DEFAULT), 0);
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(c.destroys, 0);
    assert_int_equal(c.calls, 0);
}

static const struct CMUnitTest tests[] = {
    CASE(reader_is_level_triggered),
    CASE(replace_on_pipe),
    CASE(replace_on_socketpair),
    CASE(removed_reader_skips_collected_event),
    CASE(replaced_reader_skips_collected_event),
    CASE(reader_and_writer_independent),
    CASE(reader_removes_writer_of_same_fd),
    CASE(reader_replaces_itself),
    CASE(reader_sees_hangup),
    CASE(bad_fd_refused),
};

TEST_MAIN("watchers", tests)
