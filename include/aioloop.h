/*
 * aioloop.h — the C ABI of libaioloop.
 *
 * libaioloop is asyncio's event loop (BaseSelectorEventLoop), Server and socket transports
 * with the Protocol / BufferedProtocol callbacks, as a C++ core behind this C99 header.
 * This file is the contract: anything not declared here is not part of the API.
 *
 * Rules every function follows (the long form is API.md "Rules"):
 *
 *  - Errors. Functions return int: 0 (or a count where stated) on success, a negative code
 *    on failure. Codes in -1..-4095 are exactly -errno (AIOL_EINVAL == -EINVAL, ...);
 *    library codes live at -30000 and below and never change. A NULL object gives
 *    AIOL_EINVAL, a closed one AIOL_ECLOSED. Pure getters (is_*, sizes, now) return the
 *    value, or 0 / NULL for a NULL object. aiol_strerror() names every code.
 *  - If a call that takes a callback fails, that callback never runs and its destroy
 *    never runs: the caller keeps ownership of user_data.
 *  - When such a call returns 0, destroy(user_data) (if not NULL) runs exactly once, on
 *    the loop thread, after the last call of the callback has returned (after a one-shot
 *    callback ran, or on cancel, replace, remove or loop close), never while that callback
 *    is on the stack.
 *  - No callback (destroy included) ever runs inside an aiol_* call other than
 *    aiol_loop_run() and aiol_loop_close().
 *  - Threads. While aiol_loop_run() is active the loop belongs to the running thread; a
 *    call from another thread returns AIOL_ETHREAD, except the functions marked
 *    [any thread], which another thread may call only while it owns a hold
 *    (aiol_loop_hold). When the loop is not running, one thread at a time may use it.
 *  - Structs that grow start with `size` (the caller's sizeof). It must be at least the
 *    0.1 size; the library reads min(size, its own sizeof) bytes, treats missing fields as
 *    zero, and returns AIOL_ENOTSUP if bytes past its own struct are nonzero.
 *  - Callbacks must return normally: no C++ exception, longjmp, Rust unwind or Go panic
 *    may cross the library.
 */
#ifndef AIOLOOP_H
#define AIOLOOP_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(AIOL_BUILDING_LIBRARY) && defined(__GNUC__)
#define AIOL_EXPORT __attribute__((visibility("default")))
#else
#define AIOL_EXPORT
#endif

/* ---- version ------------------------------------------------------------------------ */

#define AIOL_VERSION_MAJOR 0
#define AIOL_VERSION_MINOR 1
#define AIOL_VERSION_PATCH 0
#define AIOL_VERSION_HEX \
    ((AIOL_VERSION_MAJOR << 16) | (AIOL_VERSION_MINOR << 8) | AIOL_VERSION_PATCH)

/* AIOL_VERSION_HEX of the library actually loaded (compare with the macro to catch a
   header/library mismatch). */
AIOL_EXPORT unsigned aiol_version(void);
AIOL_EXPORT const char *aiol_version_string(void);

/* ---- errors ------------------------------------------------------------------------- */

/* System errors are -errno. These names are the ones the library itself returns. */
#define AIOL_EPERM        (-EPERM)
#define AIOL_EINTR        (-EINTR)
#define AIOL_EBADF        (-EBADF)
#define AIOL_EAGAIN       (-EAGAIN)
#define AIOL_ENOMEM       (-ENOMEM)
#define AIOL_EBUSY        (-EBUSY)
#define AIOL_EINVAL       (-EINVAL)
#define AIOL_EMFILE       (-EMFILE)
#define AIOL_ENFILE       (-ENFILE)
#define AIOL_EPIPE        (-EPIPE)
#define AIOL_ERANGE       (-ERANGE)
#define AIOL_ENOTSUP      (-EOPNOTSUPP)
#define AIOL_ENOTSOCK     (-ENOTSOCK)
#define AIOL_EADDRINUSE   (-EADDRINUSE)
#define AIOL_ENOBUFS      (-ENOBUFS)
#define AIOL_ECONNRESET   (-ECONNRESET)
#define AIOL_ECONNREFUSED (-ECONNREFUSED)
#define AIOL_ECONNABORTED (-ECONNABORTED)
#define AIOL_ETIMEDOUT    (-ETIMEDOUT)
#define AIOL_ECANCELED    (-ECANCELED)

/* Library codes: fixed forever. XX(name, value, message) */
#define AIOL_LIBRARY_ERROR_MAP(XX)                                                   \
    XX(ECLOSED,     -30001, "object is closed")                                      \
    XX(ESTATE,      -30002, "operation not allowed in this state")                   \
    XX(ETHREAD,     -30003, "called from a thread that does not own the loop")       \
    XX(ETLS,        -30004, "TLS error")                                             \
    XX(EAI_NONAME,  -30101, "host name not known")                                   \
    XX(EAI_AGAIN,   -30102, "temporary failure in name resolution")                  \
    XX(EAI_FAIL,    -30103, "non-recoverable failure in name resolution")

#define AIOL__ERROR_ENUM(name, value, msg) AIOL_##name = (value),
enum { AIOL_LIBRARY_ERROR_MAP(AIOL__ERROR_ENUM) AIOL__ERROR_ENUM_END = 0 };
#undef AIOL__ERROR_ENUM

/* Static text for any code, never NULL ("Unknown error" for codes it does not know). */
AIOL_EXPORT const char *aiol_strerror(int err);
/* The code's name: "AIOL_ECLOSED", "ECONNRESET", ...; "UNKNOWN" if it has none. */
AIOL_EXPORT const char *aiol_err_name(int err);
/* 1 if the named optional feature ("epoll", "poll", "tls", "io_uring", "debug") is built
   in, else 0. */
AIOL_EXPORT int aiol_has_feature(const char *name);

typedef void (*aiol_destroy_fn)(void *user_data);

/* ---- loop (asyncio BaseSelectorEventLoop) ------------------------------------------ */

typedef struct aiol_loop aiol_loop;

enum {
    AIOL_RUN_DEFAULT = 0, /* until aiol_loop_stop() or nothing is alive */
    AIOL_RUN_ONCE = 1,    /* one iteration; blocks in poll only if nothing is ready */
    AIOL_RUN_NOWAIT = 2   /* one iteration with a zero poll timeout */
};

/* A new loop, owned by the caller until aiol_loop_free(). */
AIOL_EXPORT int aiol_loop_new(aiol_loop **ret);

/* Runs the loop (asyncio _run_once, repeated). Each iteration polls (timeout 0 if anything
   is ready, else until the next timer, at most 24 h), appends ready I/O callbacks, then
   due timers by (deadline, scheduling order), then runs exactly the callbacks queued when
   the batch started; a callback queued from a callback runs in the next iteration.
   Returns 1 if anything is still alive, 0 if not, a negative code on error.
   "Alive": pending (not cancelled) handles, fd watchers, holds, pending destroys, and the
   servers, transports and requests of later sections; signal handlers do not count.
   On stop, the current batch finishes and run returns; a stop before run makes the next
   run do exactly one iteration. AIOL_ESTATE from inside a callback of this loop. */
AIOL_EXPORT int aiol_loop_run(aiol_loop *loop, int mode);

/* [any thread] Makes the running (or the next) aiol_loop_run() return after its batch. */
AIOL_EXPORT int aiol_loop_stop(aiol_loop *loop);

/* Tears everything down: cancels every handle, removes every watcher and signal handler,
   drops queued threadsafe callbacks, and runs the resulting destroy callbacks before
   returning. In debug mode, what was still open is reported first. After it, every call
   but aiol_loop_free (and the [any thread] ones, which give AIOL_ECLOSED) gives
   AIOL_ECLOSED. Idempotent. AIOL_ESTATE while this loop's run is on the stack. */
AIOL_EXPORT int aiol_loop_close(aiol_loop *loop);

/* Frees the loop. AIOL_EBUSY while anything is alive or a hold remains (nothing is
   freed then); AIOL_ESTATE while running. NULL is a no-op returning 0. A loop that was
   not closed is closed first if nothing is alive. */
AIOL_EXPORT int aiol_loop_free(aiol_loop *loop);

/* [any thread, with a hold or on the loop thread] Keeps the loop allocated and alive
   (aiol_loop_run in DEFAULT mode keeps running while a hold exists, as for a libuv async
   handle). Use it to hand the loop to another thread: hold first, then pass the pointer. */
AIOL_EXPORT int aiol_loop_hold(aiol_loop *loop);
/* [any thread] Releases one hold; after it, the caller must not touch the loop. */
AIOL_EXPORT int aiol_loop_unhold(aiol_loop *loop);

/* CLOCK_MONOTONIC in nanoseconds, read fresh; 0 for NULL. */
AIOL_EXPORT uint64_t aiol_loop_now(const aiol_loop *loop);

/* Debug mode (asyncio's debug): callbacks slower than 100 ms are reported through the
   exception handler, and resources still open at aiol_loop_close are reported. */
AIOL_EXPORT int aiol_loop_set_debug(aiol_loop *loop, int enabled);
AIOL_EXPORT int aiol_loop_get_debug(const aiol_loop *loop);

enum {
    AIOL_OBJ_NONE = 0,
    AIOL_OBJ_SERVER = 1,
    AIOL_OBJ_TRANSPORT = 2,
    AIOL_OBJ_HANDLE = 3,
    AIOL_OBJ_LOOP = 4
};

/* asyncio's exception-handler context. Output struct: `size` is the library's sizeof;
   check it before reading a field appended later. */
typedef struct aiol_error_context {
    size_t size;
    int code;              /* an AIOL_E* / -errno, 0 if none */
    const char *message;   /* valid for the call */
    const char *detail;    /* e.g. OpenSSL's reason; NULL if none */
    aiol_loop *loop;
    int object_kind;       /* AIOL_OBJ_* */
    void *object;
    void *protocol_data;   /* the transport's user_data, or NULL */
} aiol_error_context;

typedef void (*aiol_exception_handler)(const aiol_error_context *ctx, void *user_data);

/* Replaces the exception handler (the previous one's destroy runs after this call).
   NULL h restores the default, which writes one line to stderr. */
AIOL_EXPORT int aiol_loop_set_exception_handler(aiol_loop *loop, aiol_exception_handler h,
                                                void *user_data, aiol_destroy_fn destroy);
/* Calls the current handler now, with ctx->loop set to this loop (a report is data, not a
   callback the caller scheduled, so this is the one call that runs a callback inline). */
AIOL_EXPORT int aiol_loop_call_exception_handler(aiol_loop *loop,
                                                 const aiol_error_context *ctx);

/* ---- scheduled callbacks (asyncio Handle / TimerHandle) ---------------------------- */

typedef struct aiol_handle aiol_handle;
typedef void (*aiol_callback)(aiol_loop *loop, void *user_data);

/* Schedules cb for the next iteration. If ret is not NULL it receives a handle the caller
   owns until aiol_handle_release() (also after the callback ran). */
AIOL_EXPORT int aiol_loop_call_soon(aiol_loop *loop, aiol_callback cb, void *user_data,
                                    aiol_destroy_fn destroy, aiol_handle **ret);
/* Runs cb once delay_ns have passed on the monotonic clock (never early). Deadlines that
   overflow are clamped to UINT64_MAX (never fires). Equal deadlines run in scheduling
   order. */
AIOL_EXPORT int aiol_loop_call_later(aiol_loop *loop, uint64_t delay_ns, aiol_callback cb,
                                     void *user_data, aiol_destroy_fn destroy,
                                     aiol_handle **ret);
/* As call_later with an absolute deadline in aiol_loop_now() time. */
AIOL_EXPORT int aiol_loop_call_at(aiol_loop *loop, uint64_t when_ns, aiol_callback cb,
                                  void *user_data, aiol_destroy_fn destroy,
                                  aiol_handle **ret);
/* [any thread] Schedules cb for the loop's next iteration and wakes it. Callbacks posted
   by one thread run in posting order. Callbacks still queued at aiol_loop_close are
   dropped (their destroy runs). AIOL_ECLOSED after close. */
AIOL_EXPORT int aiol_loop_call_soon_threadsafe(aiol_loop *loop, aiol_callback cb,
                                               void *user_data, aiol_destroy_fn destroy);
/* 1 if this prevented the run, 0 if it had run, was running or was cancelled already.
   Allowed inside the handle's own callback. Loop thread only. */
AIOL_EXPORT int aiol_handle_cancel(aiol_handle *h);
/* 1 if the handle was cancelled (asyncio Handle.cancelled()), else 0. */
AIOL_EXPORT int aiol_handle_cancelled(const aiol_handle *h);
/* The deadline of a timer handle in aiol_loop_now() time, 0 for a call_soon handle. */
AIOL_EXPORT uint64_t aiol_handle_when(const aiol_handle *h);
/* [any thread] Gives up the caller's reference; never cancels. */
AIOL_EXPORT int aiol_handle_release(aiol_handle *h);

/* ---- fd watchers and signals -------------------------------------------------------- */

typedef void (*aiol_fd_callback)(aiol_loop *loop, int fd, void *user_data);

/* One reader and one writer per fd (asyncio _add_reader): adding replaces the existing
   one, whose destroy then runs, and whose callback never runs again. Level-triggered. */
AIOL_EXPORT int aiol_loop_add_reader(aiol_loop *loop, int fd, aiol_fd_callback cb,
                                     void *user_data, aiol_destroy_fn destroy);
/* 1 removed, 0 none. */
AIOL_EXPORT int aiol_loop_remove_reader(aiol_loop *loop, int fd);
AIOL_EXPORT int aiol_loop_add_writer(aiol_loop *loop, int fd, aiol_fd_callback cb,
                                     void *user_data, aiol_destroy_fn destroy);
AIOL_EXPORT int aiol_loop_remove_writer(aiol_loop *loop, int fd);

/* asyncio add_signal_handler: replaces; AIOL_EBUSY if another loop owns signum;
   AIOL_EINVAL for SIGKILL, SIGSTOP and numbers out of range. Installed with sigaction
   (SA_ONSTACK | SA_RESTART) writing to a self-pipe; cb runs on the loop thread; the
   previous disposition comes back on removal. Signal handlers do not keep the loop
   alive. */
AIOL_EXPORT int aiol_loop_add_signal_handler(aiol_loop *loop, int signum, aiol_callback cb,
                                             void *user_data, aiol_destroy_fn destroy);
/* 1 removed, 0 none. */
AIOL_EXPORT int aiol_loop_remove_signal_handler(aiol_loop *loop, int signum);

#ifdef __cplusplus
}
#endif

#endif /* AIOLOOP_H */
