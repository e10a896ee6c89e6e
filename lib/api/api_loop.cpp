// extern "C" shims for the loop, scheduled callbacks, fd watchers and signals: check the
// arguments, run the body through guard(), nothing else.
#include <fcntl.h>

#include <cerrno>

#include "aioloop.h"
#include "guard.h"
#include "../core/loop.h"

#define AIOL_API extern "C" AIOL_EXPORT

using aiol::guard;

AIOL_API int aiol_loop_new(aiol_loop **ret) {
    if (!ret) return AIOL_EINVAL;
    return guard([&] {
        auto *loop = new aiol_loop();
        int rc;
        try {
            rc = loop->open();  // may throw std::bad_alloc with the epoll fd open
        } catch (...) {
            delete loop;
            throw;
        }
        if (rc < 0) {
            delete loop;
            return rc;
        }
        *ret = loop;
        return 0;
    });
}

AIOL_API int aiol_loop_run(aiol_loop *loop, int mode) {
    AIOL_CHECK_LOOP(loop);
    return guard([&] { return loop->run(mode); });
}

AIOL_API int aiol_loop_stop(aiol_loop *loop) {
    if (!loop) return AIOL_EINVAL;
    if (loop->closed()) return AIOL_ECLOSED;
    return guard([&] { return loop->stop(); });
}

// close and free on the loop's own thread while it runs are AIOL_ESTATE (not ETHREAD).
static int check_not_running(const aiol_loop *loop) {
    if (loop->running_here()) return AIOL_ESTATE;
    if (loop->running()) return AIOL_ETHREAD;
    return 0;
}

AIOL_API int aiol_loop_close(aiol_loop *loop) {
    if (!loop) return AIOL_EINVAL;
    if (int rc = check_not_running(loop)) return rc;
    return guard([&] { return loop->close(); });
}

AIOL_API int aiol_loop_free(aiol_loop *loop) {
    if (!loop) return 0;
    if (int rc = check_not_running(loop)) return rc;
    return guard([&] {
        if (!loop->closed()) {
            if (loop->alive()) return AIOL_EBUSY;
        }
        if (!loop->can_free()) return AIOL_EBUSY;
        if (int rc = loop->close(); rc < 0) return rc;
        delete loop;
        return 0;
    });
}

AIOL_API int aiol_loop_hold(aiol_loop *loop) {
    if (!loop) return AIOL_EINVAL;
    return guard([&] { return loop->hold(); });
}

AIOL_API int aiol_loop_unhold(aiol_loop *loop) {
    if (!loop) return AIOL_EINVAL;
    return guard([&] { return loop->unhold(); });
}

AIOL_API uint64_t aiol_loop_now(const aiol_loop *loop) { return loop ? aiol::Loop::now() : 0; }

AIOL_API int aiol_loop_set_debug(aiol_loop *loop, int enabled) {
    AIOL_CHECK_LOOP(loop);
    loop->set_debug(enabled != 0);
    return 0;
}

AIOL_API int aiol_loop_get_debug(const aiol_loop *loop) { return loop && loop->debug() ? 1 : 0; }

AIOL_API int aiol_loop_set_exception_handler(aiol_loop *loop, aiol_exception_handler h,
                                             void *user_data, aiol_destroy_fn destroy) {
    AIOL_CHECK_LOOP(loop);
    return guard([&] { return loop->set_exception_handler(h, user_data, destroy); });
}

AIOL_API int aiol_loop_call_exception_handler(aiol_loop *loop, const aiol_error_context *ctx) {
    AIOL_CHECK_LOOP(loop);
    if (!ctx) return AIOL_EINVAL;
    aiol_error_context c;  // a growing struct: at least the 0.1 size, nothing unknown set
    if (int rc = aiol::read_sized(ctx, sizeof(aiol_error_context), &c)) return rc;
    return guard([&] { return loop->report_later(c); });
}

// ---- scheduled callbacks --------------------------------------------------------------

AIOL_API int aiol_loop_call_soon(aiol_loop *loop, aiol_callback cb, void *user_data,
                                 aiol_destroy_fn destroy, aiol_handle **ret) {
    AIOL_CHECK_LOOP(loop);
    if (!cb) return AIOL_EINVAL;
    if (!ret) return loop->call_soon_plain(cb, user_data, destroy);
    return guard([&] {
        aiol::Handle *h = nullptr;
        int rc = loop->call_soon(cb, user_data, destroy, &h);
        if (rc == 0 && ret) *ret = static_cast<aiol_handle *>(h);
        return rc;
    });
}

static int schedule_at(aiol_loop *loop, uint64_t when, aiol_callback cb, void *user_data,
                       aiol_destroy_fn destroy, aiol_handle **ret) {
    return guard([&] {
        aiol::Handle *h = nullptr;
        int rc = loop->call_at(when, cb, user_data, destroy, ret ? &h : nullptr);
        if (rc == 0 && ret) *ret = static_cast<aiol_handle *>(h);
        return rc;
    });
}

AIOL_API int aiol_loop_call_later(aiol_loop *loop, uint64_t delay_ns, aiol_callback cb,
                                  void *user_data, aiol_destroy_fn destroy, aiol_handle **ret) {
    AIOL_CHECK_LOOP(loop);
    if (!cb) return AIOL_EINVAL;
    uint64_t now = aiol::Loop::now();
    uint64_t when = delay_ns > UINT64_MAX - now ? UINT64_MAX : now + delay_ns;  // saturate
    return schedule_at(loop, when, cb, user_data, destroy, ret);
}

AIOL_API int aiol_loop_call_at(aiol_loop *loop, uint64_t when_ns, aiol_callback cb,
                               void *user_data, aiol_destroy_fn destroy, aiol_handle **ret) {
    AIOL_CHECK_LOOP(loop);
    if (!cb) return AIOL_EINVAL;
    return schedule_at(loop, when_ns, cb, user_data, destroy, ret);
}

AIOL_API int aiol_loop_call_soon_threadsafe(aiol_loop *loop, aiol_callback cb, void *user_data,
                                            aiol_destroy_fn destroy) {
    if (!loop || !cb) return AIOL_EINVAL;
    return guard([&] { return loop->call_soon_threadsafe(cb, user_data, destroy); });
}

AIOL_API int aiol_handle_cancel(aiol_handle *h) {
    if (!h) return AIOL_EINVAL;
    // A finished handle does not touch its loop, which may be gone already.
    if (h->state != aiol::Handle::kPending) return 0;
    if (int rc = h->loop->check_call(); rc == AIOL_ETHREAD) return rc;
    return guard([&] { return h->loop->cancel(h); });
}

AIOL_API int aiol_handle_cancelled(const aiol_handle *h) {
    return h && h->state == aiol::Handle::kCancelled ? 1 : 0;
}

AIOL_API uint64_t aiol_handle_when(const aiol_handle *h) { return h ? h->when : 0; }

AIOL_API int aiol_handle_release(aiol_handle *h) {
    if (!h) return AIOL_EINVAL;
    h->unref();
    return 0;
}

// ---- fd watchers and signals ------------------------------------------------------------

// The loop's fd table is indexed by fd: refuse an fd that is not open before it grows the
// table (add_reader(1 << 28) would otherwise allocate gigabytes, then fail with EBADF).
static int check_fd_open(int fd) {
    if (fd < 0) return AIOL_EBADF;
    return fcntl(fd, F_GETFD) < 0 ? -errno : 0;
}

AIOL_API int aiol_loop_add_reader(aiol_loop *loop, int fd, aiol_fd_callback cb, void *user_data,
                                  aiol_destroy_fn destroy) {
    AIOL_CHECK_LOOP(loop);
    if (!cb) return AIOL_EINVAL;
    if (int rc = check_fd_open(fd)) return rc;
    return guard([&] { return loop->add_fd_callback(fd, false, cb, user_data, destroy); });
}

AIOL_API int aiol_loop_remove_reader(aiol_loop *loop, int fd) {
    AIOL_CHECK_LOOP(loop);
    return guard([&] { return loop->remove_fd_callback(fd, false); });
}

AIOL_API int aiol_loop_add_writer(aiol_loop *loop, int fd, aiol_fd_callback cb, void *user_data,
                                  aiol_destroy_fn destroy) {
    AIOL_CHECK_LOOP(loop);
    if (!cb) return AIOL_EINVAL;
    if (int rc = check_fd_open(fd)) return rc;
    return guard([&] { return loop->add_fd_callback(fd, true, cb, user_data, destroy); });
}

AIOL_API int aiol_loop_remove_writer(aiol_loop *loop, int fd) {
    AIOL_CHECK_LOOP(loop);
    return guard([&] { return loop->remove_fd_callback(fd, true); });
}

AIOL_API int aiol_loop_add_signal_handler(aiol_loop *loop, int signum, aiol_callback cb,
                                          void *user_data, aiol_destroy_fn destroy) {
    AIOL_CHECK_LOOP(loop);
    if (!cb) return AIOL_EINVAL;
    return guard([&] { return loop->add_signal_handler(signum, cb, user_data, destroy); });
}

AIOL_API int aiol_loop_remove_signal_handler(aiol_loop *loop, int signum) {
    AIOL_CHECK_LOOP(loop);
    return guard([&] { return loop->remove_signal_handler(signum); });
}
