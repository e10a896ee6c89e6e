// Version, error names and feature probes.
#include <string.h>

#include "aioloop.h"
#include "config.h"
#include "../poll/poller.h"

#define AIOL_API extern "C" AIOL_EXPORT

AIOL_API unsigned aiol_version(void) { return AIOL_VERSION_HEX; }

AIOL_API const char *aiol_version_string(void) { return AIOL_VERSION_STRING; }

AIOL_API const char *aiol_strerror(int err) {
    switch (err) {
    case 0: return "Success";
#define AIOL__STRERROR(name, value, msg) case (value): return msg;
        AIOL_LIBRARY_ERROR_MAP(AIOL__STRERROR)
#undef AIOL__STRERROR
    default: break;
    }
    if (err < 0 && err > -4096) {
        const char *s = strerrordesc_np(-err);  // glibc: static text, NULL if unknown
        if (s) return s;
    }
    return "Unknown error";
}

AIOL_API const char *aiol_err_name(int err) {
    switch (err) {
    case 0: return "OK";
#define AIOL__ERRNAME(name, value, msg) case (value): return "AIOL_" #name;
        AIOL_LIBRARY_ERROR_MAP(AIOL__ERRNAME)
#undef AIOL__ERRNAME
    default: break;
    }
    if (err < 0 && err > -4096) {
        const char *s = strerrorname_np(-err);
        if (s) return s;
    }
    return "UNKNOWN";
}

AIOL_API int aiol_has_feature(const char *name) {
    if (!name) return 0;
    static const char *const features[] = {
        aiol::Poller::name(),  // "epoll" or "poll": the backend compiled in
        "debug",
        "signals",
#if AIOL_HAVE_TLS
        "tls",
#endif
    };
    for (const char *f : features)
        if (strcmp(f, name) == 0) return 1;
    return 0;
}
