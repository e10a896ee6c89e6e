/* No heap allocation per read or per write in the steady state: malloc, calloc, realloc
   (and the aligned variants) are interposed in this executable and counted while the
   echo runs. Under AddressSanitizer (which owns malloc) the case is skipped. */
#include <malloc.h>

#include "tr_common.h"

#if defined(__SANITIZE_ADDRESS__)
#define TR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TR_ASAN 1
#endif
#endif
#ifndef TR_ASAN
#define TR_ASAN 0
#endif

static volatile int g_counting;
static volatile long g_allocs;

#if !TR_ASAN
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static inline void note_alloc(void) {
    if (g_counting) __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED);
}
void *malloc(size_t n) {
    note_alloc();
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    note_alloc();
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    note_alloc();
    return __libc_realloc(p, n);
}
void free(void *p) { __libc_free(p); }
void *memalign(size_t al, size_t n) {
    note_alloc();
    return __libc_memalign(al, n);
}
void *aligned_alloc(size_t al, size_t n) {
    note_alloc();
    return __libc_memalign(al, n);
}
int posix_memalign(void **out, size_t al, size_t n) {
    note_alloc();
    void *p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
#endif

#define MSG 1024
#define MESSAGES 10000
#define WARMUP 100

/* The peer: sends a 1 KiB message, waits for its echo, sends the next. */
typedef struct echo_peer {
    aiol_loop *loop;
    int fd;
    int sent, echoed;
    size_t got;      /* bytes of the current echo */
    uint64_t bad;
    int done;
    long allocs_at_warmup;
} echo_peer;

static void echo_send(echo_peer *e) {
    unsigned char msg[MSG];
    fill_pattern(msg, (uint64_t)e->sent * MSG, MSG);
    ssize_t n = send(e->fd, msg, MSG, MSG_NOSIGNAL);
    CHECK(n == MSG); /* an empty socket always takes 1 KiB */
    e->sent++;
}

static void echo_peer_read(aiol_loop *loop, int fd, void *ud) {
    UNUSED(loop);
    echo_peer *e = ud;
    unsigned char buf[MSG];
    ssize_t n = recv(fd, buf, MSG - e->got, 0);
    if (n <= 0) {
        CHECK(n < 0 && errno == EAGAIN);
        return;
    }
    if (!is_pattern(buf, (uint64_t)e->echoed * MSG + e->got, (size_t)n)) e->bad++;
    e->got += (size_t)n;
    if (e->got < MSG) return;
    e->got = 0;
    e->echoed++;
    if (e->echoed == WARMUP) g_counting = 1; /* steady state from here */
    if (e->echoed == MESSAGES) {
        g_counting = 0;
        e->done = 1;
        aiol_loop_remove_reader(e->loop, fd);
        return;
    }
    echo_send(e);
}

static void echo_data(conn *c, const void *data, size_t len) {
    CHECK(API(aiol_transport_write(c->t, data, len)) == 0);
}

static void steady_state_echo_allocates_nothing(void **state) {
    if (TR_ASAN) {
        print_message("skipped: AddressSanitizer owns malloc, so it cannot be interposed\n");
        skip();
    }
    aiol_loop *loop = LOOP(state);
    int sv[2];
    unix_pair(sv);
    conn c;
    conn_init(&c);
    c.on_data = echo_data;
    adopt(loop, sv[0], &c);
    echo_peer e;
    memset(&e, 0, sizeof e);
    e.loop = loop;
    e.fd = sv[1];
    set_nonblock(sv[1]);
    assert_int_equal(aiol_loop_add_reader(loop, sv[1], echo_peer_read, &e, NULL), 0);
    RUN_UNTIL(loop, c.made);
    echo_send(&e);
    g_allocs = 0;
    RUN_UNTIL(loop, e.done);
    long allocs = g_allocs;
    assert_int_equal(e.echoed, MESSAGES);
    assert_int_equal(e.bad, 0);
    assert_int_equal(c.rx_len, (uint64_t)MESSAGES * MSG);
    assert_int_equal(conn_close(&c), 0);
    run_to_end(loop);
    close(sv[1]);
    /* the interposition works at all: the library's own allocations are seen */
#if !TR_ASAN
    g_counting = 1;
    aiol_loop *l2 = NULL;
    assert_int_equal(aiol_loop_new(&l2), 0);
    g_counting = 0;
    assert_true(g_allocs > allocs);
    assert_int_equal(aiol_loop_free(l2), 0);
#endif
    if (allocs != 0) fail_msg("%ld allocations in %d echoed messages", allocs, MESSAGES - WARMUP);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        CASE(steady_state_echo_allocates_nothing),
    };
    return TEST_MAIN("test_transport_alloc", tests);
}
