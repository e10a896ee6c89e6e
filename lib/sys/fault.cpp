// The fault table behind aiol::sys (sys.h) and the tests' API (fault.h). Compiled only
// into the static test library (lib/sys/meson.build); never into libaioloop.so.
#include "fault.h"

#include <pthread.h>
#include <sys/uio.h>

#include <atomic>
#include <climits>
#include <cstdlib>
#include <mutex>
#include <new>

#include "sys.h"
#if AIOL_HAVE_TLS
#include <openssl/crypto.h>
#endif

static_assert(AIOL_FAULT_INJECTION, "fault.cpp belongs to the fault-injection test library");
static_assert((int)aiol::sys::kCallCount == AIOL_FAULT_CALLS, "fault.h and sys.h disagree");

namespace aiol::sys {

namespace {

struct Rule {
    bool armed = false;
    int err = 0;          // 0: a short call of at most max_len bytes
    size_t max_len = 0;
    long after = 0;       // calls still to let through
    long count = 0;       // calls still to fault; -1: every one
    long hits = 0, seen = 0;
    pthread_t owner{};    // only calls on this thread count (the resolver's threads never)
};

std::mutex g_mutex;
Rule g_rules[kCallCount];
std::atomic<int> g_armed{0};  // any rule set: the fast path of every call is one load

void set_rule(int call, int err, size_t max_len, long after, long count) {
    if (call < 0 || call >= kCallCount) abort();  // a broken test
    std::lock_guard<std::mutex> lock(g_mutex);
    Rule &r = g_rules[call];
    r = Rule{};
    r.armed = true;
    r.err = err;
    r.max_len = max_len;
    r.after = after < 0 ? 0 : after;
    r.count = count;
    r.owner = pthread_self();
    g_armed.store(1, std::memory_order_release);
}

}  // namespace

int fault_check(Call c, size_t *len) {
    if (!g_armed.load(std::memory_order_acquire)) return 0;
    std::lock_guard<std::mutex> lock(g_mutex);
    Rule &r = g_rules[c];
    if (!r.armed || !pthread_equal(r.owner, pthread_self())) return 0;
    r.seen++;
    if (r.after > 0) {
        r.after--;
        return 0;
    }
    if (r.count == 0) return 0;
    if (r.count > 0) r.count--;
    if (r.err == 0 && !len) return 0;  // a short call of something without a length
    r.hits++;
    if (r.err) return r.err;
    if (*len > r.max_len) *len = r.max_len;
    return 0;
}

// sendmsg with at most limit bytes: the iovecs cut to that total.
ssize_t sendmsg_short(int fd, const msghdr *msg, int flags, size_t limit) {
    iovec iov[IOV_MAX < 1024 ? IOV_MAX : 1024];
    msghdr m = *msg;
    size_t n = 0;
    for (size_t i = 0; i < msg->msg_iovlen && n < sizeof iov / sizeof iov[0] && limit > 0; i++) {
        iovec v = msg->msg_iov[i];
        if (v.iov_len > limit) v.iov_len = limit;
        limit -= v.iov_len;
        iov[n++] = v;
    }
    m.msg_iov = iov;
    m.msg_iovlen = n;
    return ::sendmsg(fd, &m, flags);
}

}  // namespace aiol::sys

using namespace aiol::sys;

extern "C" {

void aiol_fault_set(int call, int err, long after, long count) {
    set_rule(call, err, 0, after, count);
}

void aiol_fault_short(int call, size_t max_len, long after, long count) {
    set_rule(call, 0, max_len, after, count);
}

void aiol_fault_clear(void) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_armed.store(0, std::memory_order_release);
    for (Rule &r : g_rules) r = Rule{};
}

static long counter(int call, long Rule::*field) {
    if (call < 0 || call >= kCallCount) return -1;
    std::lock_guard<std::mutex> lock(g_mutex);
    return g_rules[call].*field;
}

long aiol_fault_hits(int call) { return counter(call, &Rule::hits); }
long aiol_fault_seen(int call) { return counter(call, &Rule::seen); }

#if AIOL_HAVE_TLS
static void *ssl_malloc(size_t n, const char *, int) {
    return fault_check(kAlloc, nullptr) ? nullptr : std::malloc(n);
}
static void *ssl_realloc(void *p, size_t n, const char *, int) {
    return fault_check(kAlloc, nullptr) ? nullptr : std::realloc(p, n);
}
static void ssl_free(void *p, const char *, int) { free(p); }
#endif

int aiol_fault_hook_openssl(void) {
#if AIOL_HAVE_TLS
    return CRYPTO_set_mem_functions(ssl_malloc, ssl_realloc, ssl_free);
#else
    return 0;
#endif
}

}  // extern "C"

// ---- operator new ----------------------------------------------------------------------
// Replaced in every program linked with the test library: the library's allocations (and
// the standard containers' inside it) fail on demand. malloc/free underneath, and delete
// replaced with it, so AddressSanitizer still pairs every allocation with its release.

static void *alloc_or_null(size_t n) {
    if (fault_check(kAlloc, nullptr)) return nullptr;
    return std::malloc(n ? n : 1);
}

void *operator new(size_t n) {
    if (void *p = alloc_or_null(n)) return p;
    throw std::bad_alloc();
}
void *operator new[](size_t n) {
    if (void *p = alloc_or_null(n)) return p;
    throw std::bad_alloc();
}
void *operator new(size_t n, const std::nothrow_t &) noexcept { return alloc_or_null(n); }
void *operator new[](size_t n, const std::nothrow_t &) noexcept { return alloc_or_null(n); }
void operator delete(void *p) noexcept { free(p); }
void operator delete[](void *p) noexcept { free(p); }
void operator delete(void *p, size_t) noexcept { free(p); }
void operator delete[](void *p, size_t) noexcept { free(p); }
void operator delete(void *p, const std::nothrow_t &) noexcept { free(p); }
void operator delete[](void *p, const std::nothrow_t &) noexcept { free(p); }
