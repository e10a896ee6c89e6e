// The one guard every exported function runs its body through: no C++ exception crosses
// the C ABI. std::bad_alloc becomes AIOL_ENOMEM, a std::system_error its -errno, anything
// else -EIO (an internal error that a caller can report but not act on).
#pragma once

#include <new>
#include <system_error>

#include "aioloop.h"

namespace aiol {

template <class F> inline auto guard(F &&body) noexcept -> decltype(body()) {
    try {
        return body();
    } catch (const std::bad_alloc &) {
        return AIOL_ENOMEM;
    } catch (const std::system_error &e) {
        return e.code().value() > 0 ? -e.code().value() : -EIO;
    } catch (...) {
        return -EIO;
    }
}

// Reads a caller's growing struct (API.md "Structs that grow"): `size` must be at least
// min_size; bytes past our sizeof must be zero; missing fields read as zero.
template <class T> inline int read_sized(const T *in, size_t min_size, T *out) {
    size_t size = in->size;
    if (size < min_size) return AIOL_EINVAL;
    const unsigned char *p = reinterpret_cast<const unsigned char *>(in);
    for (size_t i = sizeof(T); i < size; i++)
        if (p[i]) return AIOL_ENOTSUP;
    *out = T{};
    __builtin_memcpy(out, in, size < sizeof(T) ? size : sizeof(T));
    out->size = sizeof(T);
    return 0;
}

}  // namespace aiol

// Entry-point checks: a NULL object is AIOL_EINVAL; a call from a thread that does not
// own the running loop is AIOL_ETHREAD; a closed loop is AIOL_ECLOSED.
#define AIOL_CHECK_LOOP(loop)                                   \
    do {                                                        \
        if (!(loop)) return AIOL_EINVAL;                        \
        if (int check_rc_ = (loop)->check_call()) return check_rc_; \
    } while (0)
