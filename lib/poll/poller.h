// Poller: the readiness backend under the Loop (asyncio's selector).
//
// One backend is compiled in, chosen by the `backend` option (Redis' ae does the same with
// #include): epoll.cpp on Linux, poll.cpp as the portable fallback. No vtable: the Loop
// calls these few functions directly.
#pragma once

#include <cstdint>
#include <vector>

#include "config.h"

#if AIOL_BACKEND_POLL
#include <poll.h>
#else
#include <sys/epoll.h>
#endif

namespace aiol {

enum : uint32_t { kReadable = 1u, kWritable = 2u };

struct PollEvent {
    int fd;
    uint32_t events;  // kReadable | kWritable; errors and hang-ups report as both
};

class Poller {
public:
    static const char *name();

    int open();   // 0 or -errno
    void close();

    // Registers, modifies or drops interest in fd. old_mask is what the Loop registered
    // last (0: none); new_mask 0 removes. Called only when the interest changes.
    int update(int fd, uint32_t old_mask, uint32_t new_mask);

    // Waits up to timeout_ms (-1: forever; 0: no wait) and returns how many events were
    // stored in events() (0 on timeout or EINTR), or -errno.
    int wait(int timeout_ms);
    const PollEvent *events() const { return out_.data(); }

private:
    std::vector<PollEvent> out_;
#if AIOL_BACKEND_POLL
    std::vector<pollfd> pfds_;    // the interest set, packed
    std::vector<int> slot_of_;    // fd -> index in pfds_, -1 if none
#else
    int epfd_ = -1;
    std::vector<epoll_event> buf_;  // epoll_wait's output, grown when it fills up
#endif
};

}  // namespace aiol
