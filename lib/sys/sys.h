// aiol::sys: the system calls whose failures the library must survive (accept4, recv,
// read/pread, send, sendmsg, sendfile, epoll_ctl, eventfd, pipe2; and the write buffer's
// malloc), called through one
// seam so tests can make them fail on demand (CPython gets the same determinism from mock
// sockets; see tests/faults).
//
// In libaioloop.so each wrapper is the plain call, inlined: the release build's machine
// code is what it was without this header. Only the fault-injection test library
// (lib/sys/meson.build, built with -Dfault_injection=true) compiles the library again
// with AIOL_FAULT_INJECTION=1; there each call first asks fault_check() whether to fail
// (it returns the errno to fail with) or to cut its length (short reads and writes).
#pragma once

#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>

#include "config.h"
#if !AIOL_BACKEND_POLL
#include <sys/epoll.h>
#endif

#ifndef AIOL_FAULT_INJECTION
#define AIOL_FAULT_INJECTION 0
#endif

namespace aiol::sys {

#if AIOL_FAULT_INJECTION
// The same numbering as enum aiol_fault_call in fault.h (the tests' side).
enum Call { kAccept, kRecv, kRead, kSend, kSendmsg, kSendfile, kEpollCtl, kEventfd, kPipe2,
            kAlloc, kCallCount };

// 0: make the call (with *len possibly cut, when len is given); else the errno to fail
// with. Defined in fault.cpp.
int fault_check(Call c, size_t *len);
ssize_t sendmsg_short(int fd, const msghdr *msg, int flags, size_t limit);

#define AIOL_SYS_FAULT(call, lenp, fail_value)               \
    do {                                                     \
        if (int fault_err_ = fault_check(call, lenp)) {      \
            errno = fault_err_;                              \
            return fail_value;                               \
        }                                                    \
    } while (0)
#else
#define AIOL_SYS_FAULT(call, lenp, fail_value) \
    do {                                       \
    } while (0)
#endif

inline int accept4(int fd, sockaddr *addr, socklen_t *len, int flags) {
    AIOL_SYS_FAULT(kAccept, nullptr, -1);
    return ::accept4(fd, addr, len, flags);
}

inline ssize_t recv(int fd, void *buf, size_t len, int flags) {
    AIOL_SYS_FAULT(kRecv, &len, -1);
    return ::recv(fd, buf, len, flags);
}

inline ssize_t read(int fd, void *buf, size_t len) {
    AIOL_SYS_FAULT(kRead, &len, -1);
    return ::read(fd, buf, len);
}

inline ssize_t pread(int fd, void *buf, size_t len, off_t offset) {
    AIOL_SYS_FAULT(kRead, &len, -1);
    return ::pread(fd, buf, len, offset);
}

inline ssize_t send(int fd, const void *buf, size_t len, int flags) {
    AIOL_SYS_FAULT(kSend, &len, -1);
    return ::send(fd, buf, len, flags);
}

inline ssize_t sendmsg(int fd, const msghdr *msg, int flags) {
#if AIOL_FAULT_INJECTION
    size_t limit = ~(size_t)0;
    AIOL_SYS_FAULT(kSendmsg, &limit, -1);
    if (limit != ~(size_t)0) return sendmsg_short(fd, msg, flags, limit);
#endif
    return ::sendmsg(fd, msg, flags);
}

inline ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count) {
    AIOL_SYS_FAULT(kSendfile, &count, -1);
    return ::sendfile(out_fd, in_fd, offset, count);
}

#if !AIOL_BACKEND_POLL
inline int epoll_ctl(int epfd, int op, int fd, epoll_event *ev) {
    AIOL_SYS_FAULT(kEpollCtl, nullptr, -1);
    return ::epoll_ctl(epfd, op, fd, ev);
}
#endif

inline int eventfd(unsigned initval, int flags) {
    AIOL_SYS_FAULT(kEventfd, nullptr, -1);
    return ::eventfd(initval, flags);
}

// Not a system call, but the write buffer's allocation (operator new is replaced
// wholesale in the test library; malloc cannot be).
inline void *malloc(size_t n) {
    AIOL_SYS_FAULT(kAlloc, nullptr, nullptr);
    return std::malloc(n);
}

inline int pipe2(int fds[2], int flags) {
    AIOL_SYS_FAULT(kPipe2, nullptr, -1);
    return ::pipe2(fds, flags);
}

#undef AIOL_SYS_FAULT

}  // namespace aiol::sys
