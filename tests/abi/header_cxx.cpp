// The public header alone, as C++11 (-std=c++11 -pedantic-errors -Werror): extern "C",
// no C-only constructs, usable from C++ without a wrapper.
#include <aioloop.h>

#include <cstdio>
#include <type_traits>

static_assert(AIOL_VERSION_HEX ==
                  ((AIOL_VERSION_MAJOR << 16) | (AIOL_VERSION_MINOR << 8) | AIOL_VERSION_PATCH),
              "version macros");
static_assert(AIOL_ECLOSED == -30001, "library codes are fixed");
static_assert(std::is_standard_layout<aiol_error_context>::value, "C layout");
static_assert(offsetof(aiol_error_context, size) == 0, "size comes first");

namespace {
void on_timer(aiol_loop *, void *) {}
}  // namespace

int main() {
    aiol_callback cb = on_timer;
    aiol_fd_callback fcb = nullptr;
    aiol_error_context ctx = aiol_error_context();
    ctx.size = sizeof ctx;
    (void)cb;
    (void)fcb;
    // Function types must be C linkage and callable from C++.
    int (*call_later)(aiol_loop *, uint64_t, aiol_callback, void *, aiol_destroy_fn,
                      aiol_handle **) = aiol_loop_call_later;
    (void)call_later;
    if (aiol_version() != AIOL_VERSION_HEX) {
        std::printf("header says %06x, library says %06x\n", unsigned(AIOL_VERSION_HEX),
                    aiol_version());
        return 1;
    }
    std::printf("C++11: aioloop %s, %s\n", aiol_version_string(), aiol_strerror(AIOL_ECLOSED));
    return 0;
}
