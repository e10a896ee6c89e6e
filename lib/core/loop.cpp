// Loop: asyncio's BaseEventLoop._run_once and friends. See loop.h for the shape.
#include "loop.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "../sys/sys.h"

namespace aiol {

namespace {

constexpr uint64_t kMaxPollTimeoutNs = 24ull * 3600 * 1000000000ull;  // MAXIMUM_SELECT_TIMEOUT
constexpr uint64_t kSlowCallbackNs = 100000000ull;                     // slow_callback_duration

// Room for n more items, so the pushes that follow cannot throw. Grows geometrically:
// reserve(size() + n) allocates exactly that much, which made removing many watchers
// (or closing a loop with many) quadratic.
template <class V> void reserve_more(V &v, size_t n) {
    if (v.capacity() - v.size() < n) v.reserve(std::max(v.size() + n, 2 * v.size()));
}

}  // namespace

// initial-exec: one %fs-relative load instead of a __tls_get_addr call per API call (the
// thread check runs on every entry point while the loop runs).
__thread char tls_thread_marker __attribute__((tls_model("initial-exec")));

uint64_t Loop::now() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// ---- the loop's own fds ---------------------------------------------------------------

// The eventfd (or pipe) that call_soon_threadsafe and stop write to.
struct WakeWatcher final : IoWatcher {
    explicit WakeWatcher(Loop *l) : IoWatcher(kInternal), loop(l) {}
    void on_io(uint32_t) override {
        uint64_t buf[16];
        // Drain, then clear the flag. Clearing first lost wake-ups: a post between the
        // clear and the read had its write drained here but left the flag set, so every
        // later post skipped its write and a sleeping loop never woke. A post that sees
        // the flag still set is taken by this iteration's take_threadsafe_calls.
        while (read(loop->wake_fd_, buf, sizeof buf) > 0 && loop->wake_fd_ != loop->wake_write_fd_) {
        }
        loop->wake_pending_.store(false, std::memory_order_seq_cst);
    }
    Loop *loop;
};

// ---- lifecycle --------------------------------------------------------------------------

Loop::Loop() { handle_pool_.reserve(kHandlePoolMax); }

int Loop::open() {
    if (int rc = poller_.open(); rc < 0) return rc;
    wake_fd_ = sys::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ >= 0) {
        wake_write_fd_ = wake_fd_;
    } else {
        int p[2];
        if (sys::pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) return -errno;
        wake_fd_ = p[0];
        wake_write_fd_ = p[1];
    }
    wake_watcher_ = new WakeWatcher(this);
    return watch(wake_fd_, wake_watcher_, kReadable);
}

Loop::~Loop() {
    poller_.close();
    if (wake_write_fd_ >= 0 && wake_write_fd_ != wake_fd_) ::close(wake_write_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
    if (sig_read_fd_ >= 0) ::close(sig_read_fd_);
    if (sig_write_fd_ >= 0) ::close(sig_write_fd_);
    delete wake_watcher_;
    delete sig_watcher_;
    for (Handle *h : handle_pool_) delete h;
}

bool Loop::alive() const {
    return live_handles_ || fd_callbacks_ || extra_alive_ ||
           deferred_.size() > deferred_head_ || ts_count_.load(std::memory_order_acquire) ||
           holds_.load(std::memory_order_acquire) > 0;
}

int Loop::hold() {
    std::lock_guard<std::mutex> lock(ts_mutex_);
    if (closed_) return AIOL_ECLOSED;
    holds_.fetch_add(1, std::memory_order_acq_rel);
    return 0;
}

int Loop::unhold() {
    // Under ts_mutex_ so that aiol_loop_free, which takes it too, cannot free the loop
    // between our decrement and our wake-up write.
    std::lock_guard<std::mutex> lock(ts_mutex_);
    int prev = holds_.load(std::memory_order_acquire);
    if (prev <= 0) return AIOL_ESTATE;
    holds_.store(prev - 1, std::memory_order_release);
    // The last hold gone may let a DEFAULT run end: wake it to re-check.
    if (prev == 1 && !running_here()) wake();
    return 0;
}

bool Loop::can_free() {
    std::lock_guard<std::mutex> lock(ts_mutex_);
    return holds_.load(std::memory_order_acquire) == 0;
}

int Loop::stop() {
    stop_.store(true, std::memory_order_release);
    if (!running_here()) wake();
    return 0;
}

void Loop::wake() {
    if (wake_pending_.exchange(true, std::memory_order_seq_cst)) return;
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(wake_write_fd_, &one, wake_write_fd_ == wake_fd_ ? 8 : 1);
    } while (n < 0 && errno == EINTR);
    // EAGAIN means the counter or pipe is full, so the loop is already woken.
}

// ---- run ----------------------------------------------------------------------------

int Loop::run(int mode) {
    if (mode != AIOL_RUN_DEFAULT && mode != AIOL_RUN_ONCE && mode != AIOL_RUN_NOWAIT)
        return AIOL_EINVAL;
    if (running()) return AIOL_ESTATE;  // only the owner gets here (check_call)
    owner_.store(self_id(), std::memory_order_relaxed);
    struct Release {
        Loop *l;
        ~Release() { l->owner_.store(0, std::memory_order_relaxed); }
    } release{this};

    if (mode == AIOL_RUN_DEFAULT && !alive() && !stop_.load(std::memory_order_acquire))
        return 0;
    for (;;) {
        run_once(mode);
        if (stop_.exchange(false, std::memory_order_acq_rel)) break;
        if (mode != AIOL_RUN_DEFAULT || !alive() || closed_) break;
    }
    return alive() ? 1 : 0;
}

int Loop::poll_timeout(int mode) const {
    if (mode == AIOL_RUN_NOWAIT || !ready_.empty() || deferred_.size() > deferred_head_ ||
        stop_.load(std::memory_order_acquire) || ts_count_.load(std::memory_order_acquire) ||
        !alive())
        return 0;
    // Skip cancelled timers at the top when deciding how long to sleep.
    uint64_t wait_ns = kMaxPollTimeoutNs;
    if (!timers_.empty()) {
        uint64_t t = now(), when = timers_.top_when();
        wait_ns = when <= t ? 0 : std::min(when - t, kMaxPollTimeoutNs);
    }
    // Round up: waking early would find nothing due and spin.
    return (int)((wait_ns + 999999) / 1000000);
}

inline void Loop::run_ready_item(ReadyItem &it) {
    switch (it.kind) {
    case ReadyItem::kHandle:
        run_handle(it.h);
        break;
    case ReadyItem::kCall:
        live_handles_--;
        invoke([&] { it.call.cb(static_cast<aiol_loop *>(this), it.call.ud); },
               (const void *)it.call.cb);
        if (it.call.destroy) {
            defer_destroy(it.call.destroy, it.call.ud);
            drain_deferred();
        }
        break;
    case ReadyItem::kIo: {
        // Dropped if the fd changed hands since the event was collected (closed, reused
        // or given to a new watcher): its old callback must never run again.
        if ((size_t)it.io.fd >= fds_.size()) break;
        FdEntry &e = fds_[it.io.fd];
        if (!e.w || e.gen != it.io.gen) break;
        uint32_t events = it.io.events & e.mask;
        if (events) e.w->on_io(events);
        drain_deferred();
        break;
    }
    }
}

void Loop::run_once(int mode) {
    // Purge or pop cancelled timers first, as _run_once does.
    auto drop = [this](Handle *h) { drop_handle_ref(h); };
    if (timers_.should_purge()) timers_.purge(drop);
    while (!timers_.empty() && timers_.top()->state == Handle::kCancelled)
        drop(timers_.pop());

    drain_deferred();  // destroys queued while the loop was not running

    int n = poller_.wait(poll_timeout(mode));
    if (n < 0) {
        report(n, "poller wait failed", AIOL_OBJ_LOOP, this);
        n = 0;
    }
    const PollEvent *ev = poller_.events();
    for (int i = 0; i < n; i++) {
        const FdEntry &e = fds_[ev[i].fd];
        if (e.w == wake_watcher_) {  // not a callback: just clear the wake-up
            wake_watcher_->on_io(ev[i].events);
            continue;
        }
        ReadyItem it{};
        it.kind = ReadyItem::kIo;
        it.io = ReadyItem::Io{ev[i].fd, ev[i].events, e.gen};
        ready_.push(it);
    }
    take_threadsafe_calls();

    // Due timers, in (deadline, scheduling order). No timers, no clock read: a
    // clock_gettime costs ~20 ns on bare metal and over 100 ns in some sandboxes.
    uint64_t t = timers_.empty() ? 0 : now();
    while (!timers_.empty() && timers_.top_when() <= t) {
        Handle *h = timers_.pop();
        if (h->state == Handle::kCancelled) {
            drop(h);
            continue;
        }
        ReadyItem it{};
        it.kind = ReadyItem::kHandle;
        it.h = h;  // the heap's reference moves to the ready queue
        ready_.push(it);
    }

    // Run exactly what is queued now; later additions wait for the next iteration.
    for (size_t todo = ready_.size(); todo > 0 && !closed_; todo--) {
        ReadyItem it = ready_.pop();
        run_ready_item(it);
        if (!garbage_.empty()) collect_garbage();
    }
}

void Loop::collect_garbage() {
    // Swapping with a member keeps both vectors' capacity: no allocation per collection.
    while (!garbage_.empty()) {
        garbage_taken_.swap(garbage_);
        for (const Garbage &x : garbage_taken_) x.fn(x.p);
        garbage_taken_.clear();
    }
}

void Loop::run_handle(Handle *h) {
    if (h->state == Handle::kPending) {
        live_handles_--;
        h->state = Handle::kRunning;
        invoke([&] { h->cb(static_cast<aiol_loop *>(this), h->ud); }, (const void *)h->cb);
        if (h->state == Handle::kRunning) h->state = Handle::kDone;
        if (h->destroy) {
            defer_destroy(h->destroy, h->ud);
            drain_deferred();
        }
    }
    drop_handle_ref(h);
}

Handle *Loop::new_handle() {
    if (handle_pool_.empty()) return new aiol_handle();
    Handle *h = handle_pool_.back();
    handle_pool_.pop_back();
    h->cb = nullptr;
    h->ud = nullptr;
    h->destroy = nullptr;
    h->when = 0;
    h->state = Handle::kPending;
    h->timer = false;
    h->cancel_hook = nullptr;
    h->owner = nullptr;
    h->refs.store(1, std::memory_order_relaxed);
    return h;
}

// The loop's reference. A handle the caller released last is freed by that release (on
// whatever thread); one the loop releases last goes back to the pool.
void Loop::drop_handle_ref(Handle *h) {
    if (h->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (handle_pool_.size() < kHandlePoolMax) handle_pool_.push_back(h);  // capacity reserved
    else delete h;
}

// ---- deferral -----------------------------------------------------------------------

void Loop::defer_item(const Deferred &d) {
    // Compact the consumed prefix so the vector never grows without bound.
    if (!draining_ && deferred_head_ > 0 && deferred_head_ == deferred_.size()) {
        deferred_.clear();
        deferred_head_ = 0;
    }
    deferred_.push_back(d);
}

void Loop::defer(void (*run)(void *, void *), void *ctx, void *arg) {
    defer_item(Deferred{run, ctx, arg, nullptr});
}

void Loop::drain_deferred_slow() {
    if (draining_) return;  // the outer drain will reach what is added now
    draining_ = true;
    while (deferred_head_ < deferred_.size()) {
        Deferred d = deferred_[deferred_head_++];
        uint64_t t0 = debug_ ? now() : 0;
        if (d.run) d.run(d.ctx, d.arg);
        else d.destroy(d.arg);
        if (debug_) check_slow(t0, d.run ? (const void *)d.run : (const void *)d.destroy);
    }
    deferred_.clear();
    deferred_head_ = 0;
    draining_ = false;
}

// ---- scheduled callbacks ------------------------------------------------------------

int Loop::call_soon(aiol_callback cb, void *ud, aiol_destroy_fn destroy, Handle **ret) {
    if (!ret) {  // nobody can cancel it: no handle needed
        if (call_soon_plain(cb, ud, destroy) != 0) throw std::bad_alloc();
        return 0;
    }
    ready_.reserve_one();
    Handle *h = new_handle();
    h->cb = cb;
    h->ud = ud;
    h->destroy = destroy;
    h->loop = this;
    h->seq = seq_++;
    h->refs.store(2, std::memory_order_relaxed);  // the loop's and the caller's
    *ret = h;
    ReadyItem &it = ready_.push_slot();  // cannot fail after reserve_one
    it.kind = ReadyItem::kHandle;
    it.h = h;
    live_handles_++;
    return 0;
}

int Loop::call_at(uint64_t when, aiol_callback cb, void *ud, aiol_destroy_fn destroy,
                  Handle **ret) {
    timers_.reserve_one();
    Handle *h = new_handle();
    h->cb = cb;
    h->ud = ud;
    h->destroy = destroy;
    h->loop = this;
    h->when = when;
    h->seq = seq_++;
    h->timer = true;
    h->refs.store(ret ? 2 : 1, std::memory_order_relaxed);
    timers_.push(h);
    live_handles_++;
    if (ret) *ret = h;
    return 0;
}

int Loop::cancel(Handle *h) {
    if (h->state != Handle::kPending) return 0;
    if (h->cancel_hook) {  // a request: it reports ECANCELED through its own callback
        h->state = Handle::kCancelled;
        h->cancel_hook(h->owner);
        return 1;
    }
    h->state = Handle::kCancelled;
    live_handles_--;
    if (h->timer) timers_.note_cancelled();
    defer_destroy(h->destroy, h->ud);  // runs after the current callback, or in the next run
    return 1;
}

int Loop::call_soon_threadsafe(aiol_callback cb, void *ud, aiol_destroy_fn destroy) {
    {
        std::lock_guard<std::mutex> lock(ts_mutex_);
        if (closed_) return AIOL_ECLOSED;
        ts_queue_.push_back(ThreadsafeCall{cb, ud, destroy});
        ts_count_.fetch_add(1, std::memory_order_release);
    }
    wake();
    return 0;
}

void Loop::take_threadsafe_calls() {
    if (ts_count_.load(std::memory_order_acquire) == 0) return;
    {
        std::lock_guard<std::mutex> lock(ts_mutex_);
        ts_taken_.swap(ts_queue_);
        ts_count_.store(0, std::memory_order_release);
    }
    for (const ThreadsafeCall &c : ts_taken_) {
        ReadyItem it{};
        it.kind = ReadyItem::kCall;
        it.call = ReadyItem::Call{c.cb, c.ud, c.destroy};
        ready_.push(it);
        live_handles_++;
    }
    ts_taken_.clear();
}

// ---- fds ----------------------------------------------------------------------------

int Loop::ensure_fd_slot(int fd) {
    if (fd < 0) return AIOL_EBADF;
    if ((size_t)fd >= fds_.size()) {
        try {  // an error code, not a throw: connect calls watch from inside the loop
            fds_.resize((size_t)fd + 1);
        } catch (const std::bad_alloc &) {
            return AIOL_ENOMEM;
        }
    }
    return 0;
}

int Loop::watch(int fd, IoWatcher *w, uint32_t mask) {
    if (int rc = ensure_fd_slot(fd); rc < 0) return rc;
    FdEntry &e = fds_[fd];
    if (!w) mask = 0;
    if (mask != e.mask) {
        if (int rc = poller_.update(fd, e.mask, mask); rc < 0) return rc;
        e.mask = mask;
    }
    if (e.w != w) e.gen++;
    e.w = w;
    return 0;
}

int Loop::set_interest(int fd, uint32_t mask) {
    FdEntry &e = fds_[fd];
    if (mask == e.mask) return 0;
    if (int rc = poller_.update(fd, e.mask, mask); rc < 0) return rc;
    e.mask = mask;
    return 0;
}

// asyncio's selector key for one fd: a reader handle and a writer handle.
struct UserFdWatcher final : IoWatcher {
    struct Slot {
        aiol_fd_callback cb = nullptr;
        void *ud = nullptr;
        aiol_destroy_fn destroy = nullptr;
    };
    UserFdWatcher(Loop *l, int f) : IoWatcher(kUser), loop(l), fd(f) {}
    uint32_t mask() const { return (reader.cb ? kReadable : 0u) | (writer.cb ? kWritable : 0u); }
    void on_io(uint32_t events) override {
        // The reader may remove the writer (or both): re-read the slots after each call.
        if ((events & kReadable) && reader.cb) {
            Slot s = reader;
            loop->invoke([&] { s.cb(static_cast<aiol_loop *>(loop), fd, s.ud); },
                         (const void *)s.cb);
        }
        if ((events & kWritable) && writer.cb) {  // still alive: freed only after dispatch
            Slot s = writer;
            loop->invoke([&] { s.cb(static_cast<aiol_loop *>(loop), fd, s.ud); },
                         (const void *)s.cb);
        }
    }
    Loop *loop;
    int fd;
    Slot reader, writer;
};

static void delete_user_watcher(void *w) { delete static_cast<UserFdWatcher *>(w); }

int Loop::add_fd_callback(int fd, bool is_writer, aiol_fd_callback cb, void *ud,
                          aiol_destroy_fn destroy) {
    if (fd < 0) return AIOL_EBADF;
    IoWatcher *cur = watcher_of(fd);
    if (cur && cur->kind != IoWatcher::kUser) return AIOL_EBUSY;  // _ensure_fd_no_transport
    if (int rc = ensure_fd_slot(fd); rc < 0) return rc;
    if ((size_t)fd >= user_fd_watchers_.size()) user_fd_watchers_.resize((size_t)fd + 1);
    reserve_more(deferred_, 1);  // defer_destroy below must not fail

    UserFdWatcher *w = user_fd_watchers_[fd];
    bool fresh = !w;
    if (fresh) w = new UserFdWatcher(this, fd);
    UserFdWatcher::Slot &slot = is_writer ? w->writer : w->reader;
    UserFdWatcher::Slot old = slot;
    slot = UserFdWatcher::Slot{cb, ud, destroy};
    int rc = watch(fd, w, w->mask());
    if (rc < 0) {  // the poller refused it (EPERM for a regular file under epoll, ...)
        slot = old;
        if (fresh) delete w;
        return rc;
    }
    user_fd_watchers_[fd] = w;
    if (old.cb) defer_destroy(old.destroy, old.ud);  // replaced: asyncio cancels the old handle
    else fd_callbacks_++;
    return 0;
}

int Loop::remove_fd_callback(int fd, bool is_writer) {
    if (fd < 0) return AIOL_EBADF;
    IoWatcher *cur = watcher_of(fd);
    if (cur && cur->kind != IoWatcher::kUser) return AIOL_EBUSY;
    if ((size_t)fd >= user_fd_watchers_.size() || !user_fd_watchers_[fd]) return 0;
    UserFdWatcher *w = user_fd_watchers_[fd];
    UserFdWatcher::Slot &slot = is_writer ? w->writer : w->reader;
    if (!slot.cb) return 0;
    reserve_more(deferred_, 2);
    reserve_more(garbage_, 1);
    UserFdWatcher::Slot old = slot;
    slot = UserFdWatcher::Slot{};
    uint32_t mask = w->mask();
    // Removing interest cannot fail in a way we can act on (the fd may be closed already,
    // which the poller treats as removed); the callback is gone either way.
    if (mask) (void)set_interest(fd, mask);
    else {
        (void)unwatch(fd);
        user_fd_watchers_[fd] = nullptr;
        free_later(delete_user_watcher, w);  // its on_io may be on the stack
    }
    fd_callbacks_--;
    defer_destroy(old.destroy, old.ud);
    return 1;
}

// ---- net objects ----------------------------------------------------------------------

void Loop::link(NetObject *o) {
    o->prev = nullptr;
    o->next = net_head_;
    if (net_head_) net_head_->prev = o;
    net_head_ = o;
}

void Loop::unlink(NetObject *o) {
    if (o->prev) o->prev->next = o->next;
    else if (net_head_ == o) net_head_ = o->next;
    if (o->next) o->next->prev = o->prev;
    o->prev = o->next = nullptr;
}

int Loop::call_soon_internal(aiol_callback cb, void *ud, aiol_destroy_fn destroy) {
    if (in_close_) {
        cb(static_cast<aiol_loop *>(this), ud);
        if (destroy) destroy(ud);
        return 0;
    }
    return call_soon(cb, ud, destroy, nullptr);
}

unsigned char *Loop::read_buffer() {
    // Page-aligned: a block from new[] starts 16 bytes into a page, and the kernel's copies
    // into and out of it cost about 75% more system time at 100 KiB per message (measured
    // with bench/run.py; the same copies into a page-aligned block beat raw epoll_echo).
    if (!read_buf_) {
        void *p = aligned_alloc(4096, kReadSize);
        if (!p) throw std::bad_alloc();
        read_buf_.reset(static_cast<unsigned char *>(p));
    }
    return read_buf_.get();
}

// ---- close --------------------------------------------------------------------------

int Loop::close() {
    if (closed_) return 0;
    if (running()) return AIOL_ESTATE;
    in_close_ = true;
    if (debug_) report_open_resources();

    // The net layer first: its teardown runs connection_lost, done and wait_closed
    // callbacks, which may still schedule or cancel things dropped below.
    for (int order = NetObject::kRequest; order <= NetObject::kServer; order++) {
        for (NetObject *o = net_head_; o;) {
            NetObject *next = o->next;
            if (o->order == order) {
                o->on_loop_close();
                next = net_head_;  // the callbacks may have unlinked anything: restart
            }
            o = next;
        }
    }

    // Signal handlers first, so no new signal work arrives.
    for (int s = 1; s < 65; s++)
        if (signals_[s]) remove_signal_handler(s);

    // Cancel everything queued, in queue order.
    while (!ready_.empty()) {
        ReadyItem it = ready_.pop();
        if (it.kind == ReadyItem::kHandle) {
            cancel(it.h);
            drop_handle_ref(it.h);
        } else if (it.kind == ReadyItem::kCall) {
            live_handles_--;
            defer_destroy(it.call.destroy, it.call.ud);
        }
    }
    timers_.clear([this](Handle *h) {
        cancel(h);
        drop_handle_ref(h);
    });
    {
        std::lock_guard<std::mutex> lock(ts_mutex_);
        closed_ = true;  // from here call_soon_threadsafe refuses
        ts_taken_.swap(ts_queue_);
        ts_count_.store(0, std::memory_order_release);
    }
    for (const ThreadsafeCall &c : ts_taken_) defer_destroy(c.destroy, c.ud);
    ts_taken_.clear();

    for (size_t fd = 0; fd < user_fd_watchers_.size(); fd++) {
        if (!user_fd_watchers_[fd]) continue;
        remove_fd_callback((int)fd, false);
        remove_fd_callback((int)fd, true);
    }
    drain_deferred();  // reports queued with call_exception_handler reach the user's handler
    if (exc_handler_ || exc_destroy_) {
        defer_destroy(exc_destroy_, exc_ud_);
        exc_handler_ = nullptr;
        exc_destroy_ = nullptr;
        exc_ud_ = nullptr;
    }
    drain_deferred();
    collect_garbage();
    in_close_ = false;
    return 0;
}

// ---- reports ------------------------------------------------------------------------

int Loop::set_exception_handler(aiol_exception_handler h, void *ud, aiol_destroy_fn destroy) {
    reserve_more(deferred_, 2);
    defer_destroy(exc_destroy_, exc_ud_);
    if (!h) {  // the default handler: user_data is accepted all the same, so it is destroyed
        defer_destroy(destroy, ud);
        ud = nullptr;
        destroy = nullptr;
    }
    exc_handler_ = h;
    exc_ud_ = ud;
    exc_destroy_ = destroy;
    return 0;
}

static void default_exception_handler(const aiol_error_context *ctx) {
    // asyncio's default_exception_handler logs one error line; so do we, to stderr.
    if (ctx->code)
        fprintf(stderr, "aioloop: %s: %s (%s)%s%s\n", ctx->message ? ctx->message : "error",
                aiol_strerror(ctx->code), aiol_err_name(ctx->code), ctx->detail ? ": " : "",
                ctx->detail ? ctx->detail : "");
    else
        fprintf(stderr, "aioloop: %s%s%s\n", ctx->message ? ctx->message : "error",
                ctx->detail ? ": " : "", ctx->detail ? ctx->detail : "");
}

void Loop::report(const aiol_error_context &ctx) {
    aiol_error_context c = ctx;
    c.size = sizeof c;
    c.loop = static_cast<aiol_loop *>(this);
    if (exc_handler_) exc_handler_(&c, exc_ud_);
    else default_exception_handler(&c);
}

void Loop::report(int code, const char *message, int kind, void *object, void *protocol_data,
                  const char *detail) {
    aiol_error_context c{};
    c.code = code;
    c.message = message;
    c.detail = detail;
    c.object_kind = kind;
    c.object = object;
    c.protocol_data = protocol_data;
    report(c);
}

namespace {
struct QueuedReport {
    aiol_error_context ctx;
    std::string message, detail;
    bool has_message, has_detail;
};
void deliver_report(void *loop, void *arg) {
    auto *r = static_cast<QueuedReport *>(arg);
    r->ctx.message = r->has_message ? r->message.c_str() : nullptr;
    r->ctx.detail = r->has_detail ? r->detail.c_str() : nullptr;
    static_cast<Loop *>(loop)->report(r->ctx);
    delete r;
}
}  // namespace

int Loop::report_later(const aiol_error_context &ctx) {  // ctx: read_sized already
    auto *r = new QueuedReport{};
    r->ctx = ctx;
    r->has_message = r->ctx.message != nullptr;
    r->has_detail = r->ctx.detail != nullptr;
    try {
        if (r->has_message) r->message = r->ctx.message;
        if (r->has_detail) r->detail = r->ctx.detail;
        defer(deliver_report, this, r);
    } catch (...) {
        delete r;
        throw;
    }
    return 0;
}

void Loop::check_slow(uint64_t t0, const void *what) {
    uint64_t took = now() - t0;
    if (took < kSlowCallbackNs) return;
    char msg[128];
    snprintf(msg, sizeof msg, "Executing callback %p took %.3f seconds", what, took / 1e9);
    bool was = debug_;
    debug_ = false;  // a slow handler must not report itself
    report(0, msg, AIOL_OBJ_LOOP, this);
    debug_ = was;
}

void Loop::report_open_resources() {
    char msg[160];
    if (live_handles_) {
        snprintf(msg, sizeof msg, "loop closed with %zu pending callback(s)", live_handles_);
        report(0, msg, AIOL_OBJ_LOOP, this);
    }
    if (fd_callbacks_) {
        snprintf(msg, sizeof msg, "loop closed with %zu fd watcher(s) registered", fd_callbacks_);
        report(0, msg, AIOL_OBJ_LOOP, this);
    }
    if (extra_alive_) {
        snprintf(msg, sizeof msg, "loop closed with %zu server(s), transport(s) or request(s) open",
                 extra_alive_);
        report(0, msg, AIOL_OBJ_LOOP, this);
    }
}

}  // namespace aiol
