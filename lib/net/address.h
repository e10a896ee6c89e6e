// Address helpers shared by the server and connect: getaddrinfo error mapping and
// socket creation with the flags every socket of ours gets.
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>

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

}  // namespace aiol
