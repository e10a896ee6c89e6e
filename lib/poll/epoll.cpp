// epoll backend (Linux). Level-triggered, as asyncio's selectors are: a callback that
// leaves data unread is called again next iteration.
#include <cerrno>
#include <unistd.h>

#include "poller.h"
#include "../sys/sys.h"

namespace aiol {

const char *Poller::name() { return "epoll"; }

int Poller::open() {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) return -errno;
    buf_.resize(64);
    out_.resize(64);
    return 0;
}

void Poller::close() {
    if (epfd_ >= 0) ::close(epfd_);
    epfd_ = -1;
}

int Poller::update(int fd, uint32_t old_mask, uint32_t new_mask) {
    epoll_event ev{};
    ev.data.fd = fd;
    ev.events = ((new_mask & kReadable) ? EPOLLIN : 0u) | ((new_mask & kWritable) ? EPOLLOUT : 0u);
    int op = new_mask == 0 ? EPOLL_CTL_DEL : old_mask == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (sys::epoll_ctl(epfd_, op, fd, &ev) == 0) return 0;
    int err = errno;
    // The kernel drops a registration when the file is closed; a reused fd number then
    // needs ADD where we thought MOD, and the reverse after a dup'ed fd survives.
    if (op == EPOLL_CTL_MOD && err == ENOENT) op = EPOLL_CTL_ADD;
    else if (op == EPOLL_CTL_ADD && err == EEXIST) op = EPOLL_CTL_MOD;
    else if (op == EPOLL_CTL_DEL && (err == ENOENT || err == EBADF)) return 0;
    else return -err;
    return sys::epoll_ctl(epfd_, op, fd, &ev) == 0 ? 0 : -errno;
}

int Poller::wait(int timeout_ms) {
    int n = epoll_wait(epfd_, buf_.data(), (int)buf_.size(), timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = buf_[i].events, m = 0;
        if (e & (EPOLLIN | EPOLLPRI)) m |= kReadable;
        if (e & EPOLLOUT) m |= kWritable;
        if (e & (EPOLLERR | EPOLLHUP)) m |= kReadable | kWritable;  // let the owner see it
        out_[i] = PollEvent{buf_[i].data.fd, m};
    }
    if (n == (int)buf_.size() && buf_.size() < 4096) {  // busy: take more per call
        buf_.resize(buf_.size() * 2);
        out_.resize(buf_.size());
    }
    return n;
}

}  // namespace aiol
