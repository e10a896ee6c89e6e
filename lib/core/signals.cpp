// Signal handlers: asyncio's add_signal_handler / remove_signal_handler (unix_events.py).
//
// The C handler only writes the signal number to the owning loop's self-pipe (async-signal
// safe); the loop reads the pipe and runs the callback on its own thread. One loop owns a
// signal at a time; the previous disposition is saved and restored on removal.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "loop.h"
#include "../sys/sys.h"

namespace aiol {

struct SignalHandler {
    aiol_callback cb;
    void *ud;
    aiol_destroy_fn destroy;
    struct sigaction previous;
};

namespace {

constexpr int kMaxSignal = 64;
std::mutex g_mutex;                        // guards g_owner and sigaction changes
Loop *g_owner[kMaxSignal + 1];
std::atomic<int> g_write_fd[kMaxSignal + 1];  // pipe write end + 1; 0: none

void on_signal(int signum) {
    int saved = errno;
    int fd = g_write_fd[signum].load(std::memory_order_relaxed) - 1;
    if (fd >= 0) {
        unsigned char b = (unsigned char)signum;
        ssize_t n = write(fd, &b, 1);  // a full pipe already has a wake-up in it
        (void)n;
    }
    errno = saved;
}

}  // namespace

struct SignalWatcher final : IoWatcher {
    explicit SignalWatcher(Loop *l) : IoWatcher(kInternal), loop(l) {}
    void on_io(uint32_t) override {
        unsigned char buf[64];
        ssize_t n;
        while ((n = read(loop->sig_read_fd_, buf, sizeof buf)) > 0) {
            for (ssize_t i = 0; i < n; i++) {
                int s = buf[i];
                SignalHandler *h = s <= kMaxSignal ? loop->signals_[s] : nullptr;
                if (!h) continue;  // removed after it was delivered
                aiol_callback cb = h->cb;
                void *ud = h->ud;
                loop->invoke([&] { cb(static_cast<aiol_loop *>(loop), ud); }, (const void *)cb);
            }
        }
    }
    Loop *loop;
};

int Loop::ensure_signal_pipe() {
    if (sig_read_fd_ >= 0) return 0;
    auto *w = new SignalWatcher(this);  // first: a failure here leaves no pipe open
    int p[2];
    if (sys::pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
        int err = errno;
        delete w;
        return -err;
    }
    if (int rc = watch(p[0], w, kReadable); rc < 0) {
        delete w;
        ::close(p[0]);
        ::close(p[1]);
        return rc;
    }
    sig_read_fd_ = p[0];
    sig_write_fd_ = p[1];
    sig_watcher_ = w;
    return 0;
}

int Loop::add_signal_handler(int signum, aiol_callback cb, void *ud, aiol_destroy_fn destroy) {
    if (signum < 1 || signum > kMaxSignal || signum == SIGKILL || signum == SIGSTOP)
        return AIOL_EINVAL;
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_owner[signum] && g_owner[signum] != this) return AIOL_EBUSY;
    if (int rc = ensure_signal_pipe(); rc < 0) return rc;
    deferred_.reserve(deferred_.size() + 1);  // at most 64 signals: exact growth is fine

    if (SignalHandler *h = signals_[signum]) {  // replace: keep the saved disposition
        defer_destroy(h->destroy, h->ud);
        h->cb = cb;
        h->ud = ud;
        h->destroy = destroy;
        return 0;
    }
    auto *h = new SignalHandler{cb, ud, destroy, {}};
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    g_write_fd[signum].store(sig_write_fd_ + 1, std::memory_order_relaxed);
    if (sigaction(signum, &sa, &h->previous) < 0) {
        int err = errno;
        g_write_fd[signum].store(0, std::memory_order_relaxed);
        delete h;
        return -err;
    }
    g_owner[signum] = this;
    signals_[signum] = h;
    return 0;
}

int Loop::remove_signal_handler(int signum) {
    if (signum < 1 || signum > kMaxSignal) return AIOL_EINVAL;
    std::lock_guard<std::mutex> lock(g_mutex);
    SignalHandler *h = signals_[signum];
    if (!h) return 0;
    deferred_.reserve(deferred_.size() + 1);  // at most 64 signals: exact growth is fine
    sigaction(signum, &h->previous, nullptr);
    g_write_fd[signum].store(0, std::memory_order_relaxed);
    g_owner[signum] = nullptr;
    signals_[signum] = nullptr;
    defer_destroy(h->destroy, h->ud);
    delete h;
    return 1;
}

}  // namespace aiol
