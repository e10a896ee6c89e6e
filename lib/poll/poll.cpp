// poll(2) backend: the portable fallback. The interest set is a packed pollfd array with
// an fd -> slot index, so updates are O(1) and a wait is O(registered fds).
#include <cerrno>
#include <cstddef>

#include "poller.h"

namespace aiol {

const char *Poller::name() { return "poll"; }

int Poller::open() { return 0; }

void Poller::close() {
    pfds_.clear();
    slot_of_.clear();
    out_.clear();
}

// A slot whose fd was found closed holds ~fd, which poll(2) ignores (negative).
static int real_fd(int fd) { return fd < 0 ? ~fd : fd; }

static short to_poll(uint32_t mask) {
    return (short)(((mask & kReadable) ? POLLIN : 0) | ((mask & kWritable) ? POLLOUT : 0));
}

int Poller::update(int fd, uint32_t old_mask, uint32_t new_mask) {
    (void)old_mask;
    if (fd < 0) return -EBADF;
    if ((size_t)fd >= slot_of_.size()) slot_of_.resize((size_t)fd + 1, -1);
    int slot = slot_of_[fd];
    if (new_mask == 0) {
        if (slot < 0) return 0;
        pfds_[slot] = pfds_.back();  // move the last one into the hole
        slot_of_[real_fd(pfds_[slot].fd)] = slot;
        pfds_.pop_back();
        slot_of_[fd] = -1;
        return 0;
    }
    if (slot < 0) {
        pfds_.push_back(pollfd{fd, 0, 0});
        slot = (int)pfds_.size() - 1;
        slot_of_[fd] = slot;
    }
    pfds_[slot].fd = fd;  // watched again (after a POLLNVAL, see wait)
    pfds_[slot].events = to_poll(new_mask);
    return 0;
}

int Poller::wait(int timeout_ms) {
    int n = ::poll(pfds_.data(), pfds_.size(), timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    out_.clear();
    int seen = 0;
    for (pollfd &p : pfds_) {
        if (!p.revents) continue;
        seen++;
        if (p.revents & POLLNVAL) {
            // Closed behind our back: epoll would have dropped it silently, so do the same
            // (stop polling it; the slot stays until it is updated or removed).
            p.fd = ~p.fd;
            p.revents = 0;
        } else {
            uint32_t m = 0;
            if (p.revents & (POLLIN | POLLPRI)) m |= kReadable;
            if (p.revents & POLLOUT) m |= kWritable;
            if (p.revents & (POLLERR | POLLHUP)) m |= kReadable | kWritable;
            out_.push_back(PollEvent{p.fd, m});
        }
        if (seen == n) break;
    }
    return (int)out_.size();
}

}  // namespace aiol
