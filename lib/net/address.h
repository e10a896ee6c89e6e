// Address helpers shared by the server and connect: getaddrinfo error mapping and
// socket creation with the flags every socket of ours gets.
#pragma once

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "aioloop.h"

namespace aiol {

inline int gai_error(int rc, int saved_errno) {
    switch (rc) {
    case 0: return 0;
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
    case EAI_SERVICE: return AIOL_EAI_NONAME;
    case EAI_AGAIN: return AIOL_EAI_AGAIN;
    case EAI_MEMORY: return AIOL_ENOMEM;
    case EAI_FAMILY:
    case EAI_SOCKTYPE:
    case EAI_BADFLAGS: return AIOL_EINVAL;
    case EAI_SYSTEM: return saved_errno ? -saved_errno : AIOL_EAI_FAIL;
    default: return AIOL_EAI_FAIL;
    }
}

inline int new_socket(int family) {
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

// A socket address kept for the life of a transport (asyncio's extra 'peername' and
// 'sockname'): IPv4 and IPv6 inline, anything longer (a Unix path) on the heap. Two
// sockaddr_storage would be 256 of a transport's bytes; this is 40 each.
class StoredAddress {
public:
    StoredAddress() = default;
    StoredAddress(const StoredAddress &) = delete;
    StoredAddress &operator=(const StoredAddress &) = delete;
    ~StoredAddress() { ::operator delete(big_); }

    // Throws std::bad_alloc for a long address that cannot be copied.
    void set(const sockaddr *sa, socklen_t len) {
        if (len > sizeof(sockaddr_storage)) len = sizeof(sockaddr_storage);
        if (len > sizeof inline_ && !big_) big_ = ::operator new(sizeof(sockaddr_storage));
        std::memcpy(len > sizeof inline_ ? big_ : static_cast<void *>(&inline_), sa, len);
        len_ = len;
    }
    // From getpeername/getsockname; empty if the call fails.
    template <class Fn> void fetch(Fn name_call, int fd) {
        sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (name_call(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0) set(reinterpret_cast<sockaddr *>(&ss), len);
    }
    socklen_t size() const { return len_; }
    const void *data() const { return len_ > sizeof inline_ ? big_ : &inline_; }
    int family() const {
        return len_ >= sizeof(sa_family_t) ? static_cast<const sockaddr *>(data())->sa_family : AF_UNSPEC;
    }

private:
    sockaddr_in6 inline_{};  // also holds a sockaddr_in
    socklen_t len_ = 0;
    void *big_ = nullptr;
};

}  // namespace aiol
