// Loop: asyncio's BaseEventLoop + BaseSelectorEventLoop (base_events.py, selector_events.py).
//
// One iteration is asyncio's _run_once: poll, append ready I/O, append due timers, then run
// exactly the batch that was queued when it started. Everything the loop calls back into
// user code goes through invoke(), which times it in debug mode and then drains the
// deferred queue (destroys, flow-control calls, reports), so that no callback ever runs
// inside an aiol_* call other than run and close.
#pragma once

#include <atomic>
#include <cstdlib>
#include <memory>
#include <cstdint>
#include <mutex>
#include <vector>

#include "aioloop.h"
#include "../poll/poller.h"
#include "handle.h"
#include "ring.h"
#include "timer_heap.h"

namespace aiol {

class Loop;

extern __thread char tls_thread_marker __attribute__((tls_model("initial-exec")));

// Something that owns an fd registered with the poller: a transport, a server, the
// loop's own wake-up fds, or the user's add_reader/add_writer pair.
struct IoWatcher {
    enum Kind : uint8_t { kUser, kInternal, kTransport, kServer };
    explicit IoWatcher(Kind k) : kind(k) {}
    virtual ~IoWatcher() = default;
    virtual void on_io(uint32_t events) = 0;
    const Kind kind;
};

// A callback to run after the current callback returns (asyncio has no such thing; it is
// what lets destroy, pause_writing and reports wait until no callback is on the stack).
struct Deferred {
    void (*run)(void *ctx, void *arg);  // NULL: destroy(arg)
    void *ctx;
    void *arg;
    aiol_destroy_fn destroy;
};

// What the batch runs: a handle, a bare call_soon without a handle, or an fd event.
// 32 bytes: a batch of a million call_soons is memory traffic first.
struct ReadyItem {
    enum Kind : uint8_t { kHandle, kCall, kIo };
    struct Call {
        aiol_callback cb;
        void *ud;
        aiol_destroy_fn destroy;
    };
    struct Io {
        int fd;
        uint32_t events;
        uint32_t gen;  // the fd entry's generation when the event was collected
    };
    Kind kind;
    union {
        Handle *h;  // kHandle
        Call call;  // kCall
        Io io;      // kIo
    };
};
static_assert(sizeof(ReadyItem) == 32, "keep the ready queue compact");

struct UserFdWatcher;
struct SignalHandler;

// A server, transport or request of the net layer. The loop keeps them on a list so that
// aiol_loop_close can tear them down: requests first, then transports, then servers (so a
// server sees its connections gone and runs its wait_closed callbacks), all inside close.
struct NetObject {
    enum Order : uint8_t { kRequest = 0, kTransport = 1, kServer = 2 };
    explicit NetObject(Order o) : order(o) {}
    virtual ~NetObject() = default;
    virtual void on_loop_close() = 0;  // must unlink itself
    const Order order;
    NetObject *prev = nullptr, *next = nullptr;
};

class Loop {
public:
    Loop();
    ~Loop();
    int open();  // allocates OS resources; 0 or -errno

    // ---- checks done by every entry point -------------------------------------------
    // AIOL_ETHREAD if another thread is running the loop, AIOL_ECLOSED once closed.
    int check_call() const {
        uintptr_t owner = owner_.load(std::memory_order_relaxed);
        if (owner != 0 && owner != self_id()) return AIOL_ETHREAD;
        return closed_.load(std::memory_order_relaxed) ? AIOL_ECLOSED : 0;
    }
    // The calling thread's identity: the address of a thread-local byte (one
    // %fs-relative lea; __thread, unlike thread_local, has no init wrapper to call).
    static uintptr_t self_id() { return reinterpret_cast<uintptr_t>(&tls_thread_marker); }
    bool running() const { return owner_.load(std::memory_order_relaxed) != 0; }
    bool running_here() const { return owner_.load(std::memory_order_relaxed) == self_id(); }
    bool closed() const { return closed_.load(std::memory_order_relaxed); }

    // ---- run, stop, close --------------------------------------------------------------
    int run(int mode);
    int stop();      // [any thread]
    int close();
    int hold();      // [any thread]
    int unhold();    // [any thread]
    int holds() const { return holds_.load(std::memory_order_acquire); }
    bool can_free();  // no hold left, and no unhold still touching the loop
    bool alive() const;
    static uint64_t now();

    // ---- scheduled callbacks -----------------------------------------------------------
    int call_soon(aiol_callback cb, void *ud, aiol_destroy_fn destroy, Handle **ret);
    // call_soon without a handle (nobody can cancel it): the common case, inline.
    int call_soon_plain(aiol_callback cb, void *ud, aiol_destroy_fn destroy) noexcept {
        if (!ready_.try_reserve_one()) return AIOL_ENOMEM;
        ReadyItem &it = ready_.push_slot();
        it.kind = ReadyItem::kCall;
        it.call = ReadyItem::Call{cb, ud, destroy};
        live_handles_++;
        return 0;
    }
    int call_at(uint64_t when, aiol_callback cb, void *ud, aiol_destroy_fn destroy,
                Handle **ret);
    int call_soon_threadsafe(aiol_callback cb, void *ud, aiol_destroy_fn destroy);
    int cancel(Handle *h);

    // ---- fds ---------------------------------------------------------------------------
    // The watcher for fd, or NULL. Used for asyncio's _ensure_fd_no_transport.
    IoWatcher *watcher_of(int fd) const {
        return fd >= 0 && (size_t)fd < fds_.size() ? fds_[fd].w : nullptr;
    }
    // Sets (w != NULL) or clears the watcher of fd with an interest mask; a different
    // watcher bumps the generation so events collected for the old one are dropped. Makes
    // a poller call only when the registered mask changes.
    int watch(int fd, IoWatcher *w, uint32_t mask);
    int set_interest(int fd, uint32_t mask);
    int unwatch(int fd) { return watch(fd, nullptr, 0); }

    int add_fd_callback(int fd, bool writer, aiol_fd_callback cb, void *ud,
                        aiol_destroy_fn destroy);
    int remove_fd_callback(int fd, bool writer);

    int add_signal_handler(int signum, aiol_callback cb, void *ud, aiol_destroy_fn destroy);
    int remove_signal_handler(int signum);

    // ---- reports and debug ---------------------------------------------------------------
    int set_exception_handler(aiol_exception_handler h, void *ud, aiol_destroy_fn destroy);
    // Calls the handler now (we are inside the loop's run or close).
    void report(const aiol_error_context &ctx);
    void report(int code, const char *message, int kind = AIOL_OBJ_NONE, void *object = nullptr,
                void *protocol_data = nullptr, const char *detail = nullptr);
    // Queues a copy of ctx for the handler; delivered after the current callback.
    int report_later(const aiol_error_context &ctx);
    void set_debug(bool on) { debug_ = on; }
    bool debug() const { return debug_; }

    // ---- deferral ------------------------------------------------------------------------
    void defer(void (*run)(void *, void *), void *ctx, void *arg);
    void defer_destroy(aiol_destroy_fn destroy, void *ud) {
        if (destroy) defer_item(Deferred{nullptr, nullptr, ud, destroy});
    }
    // Runs what was deferred; the common case (nothing) is one compare, inline.
    void drain_deferred() {
        if (deferred_head_ != deferred_.size()) drain_deferred_slow();
    }
    void check_slow(uint64_t t0, const void *what);
    // Runs f (a user callback) and then what it deferred.
    template <class F> void invoke(F &&f, const void *what = nullptr) {
        if (__builtin_expect(debug_, 0)) {
            uint64_t t0 = now();
            f();
            check_slow(t0, what);
        } else {
            f();
        }
        drain_deferred();
    }
    // Frees p with fn once the current event or callback has been dispatched completely
    // (an object whose method may still be on the stack, unlike defer's user callbacks).
    void free_later(void (*fn)(void *), void *p) { garbage_.push_back(Garbage{fn, p}); }
    void collect_garbage();

    // Counts objects of the net layer (servers, transports, requests) that keep it alive.
    void retain_alive() { extra_alive_++; }
    void release_alive() { extra_alive_--; }
    void link(NetObject *o);
    void unlink(NetObject *o);
    bool in_close() const { return in_close_; }
    NetObject *&resolver_slot() { return resolver_; }  // the net layer's resolver, lazily made
    // Runs cb(ud) as a loop callback: queued with call_soon, or at once inside close (where
    // the ready queue is being dropped). destroy(ud) runs if it is dropped instead.
    int call_soon_internal(aiol_callback cb, void *ud, aiol_destroy_fn destroy);

    // One 256 KiB receive buffer shared by every transport of this loop (asyncio's
    // max_size): data_received borrows it for the call, so it can be reused at once.
    static constexpr size_t kReadSize = 256 * 1024;
    unsigned char *read_buffer();

private:
    friend struct UserFdWatcher;
    friend struct WakeWatcher;
    friend struct SignalWatcher;

    struct FdEntry {
        IoWatcher *w = nullptr;
        uint32_t mask = 0;  // registered with the poller
        uint32_t gen = 0;
    };
    struct ThreadsafeCall {
        aiol_callback cb;
        void *ud;
        aiol_destroy_fn destroy;
    };

    void run_once(int mode);
    int poll_timeout(int mode) const;
    void run_ready_item(ReadyItem &it);
    void run_handle(Handle *h);
    void take_threadsafe_calls();
    void wake();
    void defer_item(const Deferred &d);
    void report_open_resources();
    void drain_deferred_slow();
    Handle *new_handle();
    void drop_handle_ref(Handle *h);
    int ensure_fd_slot(int fd);
    int ensure_signal_pipe();

    Poller poller_;
    Ring<ReadyItem> ready_;
    TimerHeap timers_;
    std::vector<FdEntry> fds_;
    // Handles whose last reference the loop dropped, for reuse (timers come and go fast;
    // glibc's per-thread cache overflows when a purge frees hundreds at once).
    static constexpr size_t kHandlePoolMax = 1024;
    std::vector<Handle *> handle_pool_;
    std::vector<Deferred> deferred_;
    struct Garbage {
        void (*fn)(void *);
        void *p;
    };
    std::vector<Garbage> garbage_, garbage_taken_;
    size_t deferred_head_ = 0;
    bool draining_ = false;

    uint64_t seq_ = 0;               // scheduling order for equal deadlines
    size_t live_handles_ = 0;        // scheduled, not yet run or cancelled
    size_t fd_callbacks_ = 0;        // user readers + writers
    size_t extra_alive_ = 0;         // net objects
    std::atomic<bool> closed_{false};  // read by [any thread] calls (stop)
    bool debug_ = false;
    bool in_close_ = false;

    std::atomic<uintptr_t> owner_{0};  // thread running the loop, 0 if none
    std::atomic<bool> stop_{false};
    std::atomic<int> holds_{0};

    // call_soon_threadsafe: a locked queue plus an eventfd, written only when the loop
    // might be asleep (wake_pending_ coalesces a burst of posts into one write).
    std::mutex ts_mutex_;
    std::vector<ThreadsafeCall> ts_queue_;
    std::vector<ThreadsafeCall> ts_taken_;
    std::atomic<size_t> ts_count_{0};
    std::atomic<bool> wake_pending_{false};
    int wake_fd_ = -1;        // eventfd, or the read end of a pipe
    int wake_write_fd_ = -1;  // same as wake_fd_ for an eventfd
    IoWatcher *wake_watcher_ = nullptr;

    std::vector<UserFdWatcher *> user_fd_watchers_;  // by fd; mirrors fds_ for kUser
    SignalHandler *signals_[65] = {};
    int sig_read_fd_ = -1, sig_write_fd_ = -1;
    IoWatcher *sig_watcher_ = nullptr;

    NetObject *net_head_ = nullptr;
    NetObject *resolver_ = nullptr;
    struct FreeDeleter {
        void operator()(unsigned char *p) const { free(p); }
    };
    std::unique_ptr<unsigned char, FreeDeleter> read_buf_;

    aiol_exception_handler exc_handler_ = nullptr;
    void *exc_ud_ = nullptr;
    aiol_destroy_fn exc_destroy_ = nullptr;
};

}  // namespace aiol

// The opaque C types are the C++ objects themselves.
struct aiol_loop final : aiol::Loop {};
