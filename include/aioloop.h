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
#include <sys/socket.h>

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
   returning. In debug mode, what was still open is reported first. Anything those
   callbacks schedule is accepted and then cancelled by the same close (its destroy runs).
   After it, every call
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
   NULL h restores the default, which writes one line to stderr (destroy(user_data), if
   given, then runs too: the call returned 0). */
AIOL_EXPORT int aiol_loop_set_exception_handler(aiol_loop *loop, aiol_exception_handler h,
                                                void *user_data, aiol_destroy_fn destroy);
/* Queues a copy of ctx (strings included) for the current handler, with ctx->loop set to
   this loop. Like every callback it never runs inside this call: right after the current
   callback returns, else in the next aiol_loop_run, at the latest inside aiol_loop_close.
   ctx->size must be at least sizeof(aiol_error_context) of 0.1 (growing-struct rules). */
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


/* ---- protocol (asyncio Protocol + BufferedProtocol) -------------------------------- */

typedef struct aiol_transport aiol_transport;

/* Callbacks per transport, in this order: connection_made; then data_received or
   buffer_updated, interleaved with pause_writing / resume_writing (strictly alternating,
   pause first); then at most one eof_received; then connection_lost (if and only if
   connection_made ran); then destroy. After pause_reading, close or abort returns, no
   data_received, buffer_updated or eof_received runs until resume_reading. Any callback
   may be NULL (a NULL eof_received counts as returning 0). The struct is copied. */
typedef struct aiol_protocol {
    size_t size; /* sizeof(aiol_protocol) */
    void (*connection_made)(aiol_transport *t, void *user_data);
    /* data is borrowed for the call; len is never 0 */
    void (*data_received)(aiol_transport *t, const void *data, size_t len, void *user_data);
    /* nonzero keeps the transport open for writing (half-close); 0 closes it */
    int (*eof_received)(aiol_transport *t, void *user_data);
    /* status 0 for a clean close, else the error (AIOL_ECANCELED after abort) */
    void (*connection_lost)(aiol_transport *t, int status, void *user_data);
    void (*pause_writing)(aiol_transport *t, void *user_data);
    void (*resume_writing)(aiol_transport *t, void *user_data);
    /* BufferedProtocol: both set or both NULL (else AIOL_EINVAL); when set, data_received
       is never called. The buffer must stay valid and untouched until the next
       buffer_updated, get_buffer or connection_lost of this transport; NULL or *len == 0
       aborts the transport with AIOL_EINVAL and a report. size_hint 0 means no hint.
       get_buffer, the recv into the buffer and buffer_updated run back to back: anything
       get_buffer causes (a pause_writing, a destroy) runs after buffer_updated. */
    void *(*get_buffer)(aiol_transport *t, size_t size_hint, size_t *len, void *user_data);
    void (*buffer_updated)(aiol_transport *t, size_t nbytes, void *user_data);
    /* runs exactly once per accepted user_data, after connection_lost (or once the
       attempt is abandoned if connection_made never ran) */
    void (*destroy)(void *user_data);
} aiol_protocol;

/* Makes each accepted connection's user_data; nonzero refuses it (the socket is closed,
   *user_data ignored). Runs on the loop thread. */
typedef int (*aiol_protocol_factory)(void *factory_data, const struct sockaddr *peer,
                                     socklen_t peer_len, void **user_data);

/* ---- server (asyncio Server) -------------------------------------------------------- */

typedef struct aiol_server aiol_server;
typedef struct aiol_tls_context aiol_tls_context;

typedef struct aiol_server_config {
    size_t size;                 /* sizeof(aiol_server_config) */
    const char *host;            /* NULL: all interfaces, every family (one socket each);
                                    resolved synchronously */
    uint16_t port;               /* 0: ephemeral (per socket; read it with sockname) */
    const char *unix_path;       /* set: AF_UNIX; a stale socket file is replaced, the path
                                    unlinked on close */
    int backlog;                 /* 0: 100; also the accept batch per readiness event */
    int reuse_port;              /* SO_REUSEPORT */
    aiol_tls_context *tls;       /* NULL: plain; else TLS (AIOL_ENOTSUP if not built in) */
    uint64_t tls_handshake_timeout_ns; /* 0: 60 s */
    uint64_t tls_shutdown_timeout_ns;  /* 0: 30 s */
} aiol_server_config;

/* Binds every address, listens and starts serving (asyncio create_server with
   start_serving=True). If any address fails to bind, everything is closed and the error
   returned. On EMFILE/ENFILE/ENOBUFS/ENOMEM while accepting, the server stops accepting
   for 1 s and reports once through the exception handler. factory_destroy(factory_data)
   runs once the server is freed and gone. */
AIOL_EXPORT int aiol_server_start(aiol_loop *loop, const aiol_server_config *cfg,
                                  const aiol_protocol *protocol, aiol_protocol_factory factory,
                                  void *factory_data, aiol_destroy_fn factory_destroy,
                                  aiol_server **ret);
/* Adopts an inherited listening socket (systemd, a parent); fd taken on success. */
AIOL_EXPORT int aiol_server_start_fd(aiol_loop *loop, int listen_fd,
                                     const aiol_server_config *cfg,
                                     const aiol_protocol *protocol,
                                     aiol_protocol_factory factory, void *factory_data,
                                     aiol_destroy_fn factory_destroy, aiol_server **ret);
/* Stops listening and closes the listening sockets; the factory never runs after it
   returns; live connections go on. Idempotent. */
AIOL_EXPORT int aiol_server_close(aiol_server *s);
/* aiol_transport_close / aiol_transport_abort on each connection (asyncio 3.13). */
AIOL_EXPORT int aiol_server_close_clients(aiol_server *s);
AIOL_EXPORT int aiol_server_abort_clients(aiol_server *s);
/* cb runs exactly once (ud has no destroy: cb is where to release it), after close and
   after the last connection has gone, never inside this call — at the latest inside
   aiol_loop_close; it may call aiol_server_free(s). */
AIOL_EXPORT int aiol_server_wait_closed(aiol_server *s, void (*cb)(aiol_server *s, void *ud),
                                        void *ud);
AIOL_EXPORT int aiol_server_is_serving(const aiol_server *s);
AIOL_EXPORT int aiol_server_socket_count(const aiol_server *s);
/* *len is in/out (the size of *addr on entry). AIOL_ERANGE for an index out of range. */
AIOL_EXPORT int aiol_server_sockname(const aiol_server *s, int index,
                                     struct sockaddr_storage *addr, socklen_t *len);
AIOL_EXPORT aiol_loop *aiol_server_loop(const aiol_server *s);
/* Closes the server if still open and gives up the caller's pointer; never AIOL_EBUSY.
   The memory goes when its last connection (and wait_closed callback) is gone. */
AIOL_EXPORT int aiol_server_free(aiol_server *s);

/* ---- transport (asyncio _SelectorSocketTransport) ---------------------------------- */

typedef struct aiol_buf {
    const void *base;
    size_t len;
} aiol_buf;

#define AIOL_WBUF_DEFAULT SIZE_MAX

/* 0 once the bytes are accepted (sent now, the rest copied and queued); a zero length is
   a no-op. AIOL_ESTATE after write_eof, AIOL_ECLOSED after close/abort or once the
   connection is lost (the data is dropped), AIOL_EBUSY during sendfile. Socket errors
   are never returned here: they close the transport and reach connection_lost. */
AIOL_EXPORT int aiol_transport_write(aiol_transport *t, const void *data, size_t len);
AIOL_EXPORT int aiol_transport_writev(aiol_transport *t, const aiol_buf *bufs, size_t n);
/* Half close once the queue has drained (shutdown(SHUT_WR)). Idempotent. */
AIOL_EXPORT int aiol_transport_write_eof(aiol_transport *t);
AIOL_EXPORT int aiol_transport_can_write_eof(const aiol_transport *t);
/* Stops reading, flushes the queue, then closes; connection_lost(0). A second call returns
   0 until connection_lost has run, then AIOL_ECLOSED like every call. */
AIOL_EXPORT int aiol_transport_close(aiol_transport *t);
/* Drops the queue and closes now; connection_lost(AIOL_ECANCELED). */
AIOL_EXPORT int aiol_transport_abort(aiol_transport *t);
AIOL_EXPORT int aiol_transport_is_closing(const aiol_transport *t);
AIOL_EXPORT int aiol_transport_pause_reading(aiol_transport *t);
AIOL_EXPORT int aiol_transport_resume_reading(aiol_transport *t);
AIOL_EXPORT int aiol_transport_is_reading(const aiol_transport *t);
/* AIOL_WBUF_DEFAULT for either: asyncio's rule (high 64 KiB, or 4 x low when only low is
   given; low = high / 4). high < low gives AIOL_EINVAL. */
AIOL_EXPORT int aiol_transport_set_write_buffer_limits(aiol_transport *t, size_t high,
                                                       size_t low);
AIOL_EXPORT size_t aiol_transport_get_write_buffer_size(const aiol_transport *t);
AIOL_EXPORT int aiol_transport_get_write_buffer_limits(const aiol_transport *t, size_t *high,
                                                       size_t *low);
/* Captured at accept/connect; readable while the memory lives. *len is in/out. */
AIOL_EXPORT int aiol_transport_peername(const aiol_transport *t, struct sockaddr_storage *addr,
                                        socklen_t *len);
AIOL_EXPORT int aiol_transport_sockname(const aiol_transport *t, struct sockaddr_storage *addr,
                                        socklen_t *len);
/* The socket fd, AIOL_ECLOSED once closed. Do not close it or watch it yourself. */
AIOL_EXPORT int aiol_transport_fileno(const aiol_transport *t);
/* Sends count bytes of fd from offset (count 0: to the end of the file) with
   sendfile(2) once the write queue has drained, falling back to read + send for files
   sendfile refuses. The caller keeps fd open until done; the file position is not used.
   Reading is paused and writes are refused (AIOL_EBUSY) until done, which runs exactly
   once (at the latest inside aiol_loop_close; release ud there),
   never inside this call, before connection_lost, with the bytes sent and 0, the error,
   or AIOL_ECANCELED if the transport closed first. SIGPIPE is blocked around sendfile(2)
   on the loop thread, so a vanished peer never kills the process. */
AIOL_EXPORT int aiol_transport_sendfile(aiol_transport *t, int fd, uint64_t offset,
                                        uint64_t count,
                                        void (*done)(aiol_transport *t, int status,
                                                     uint64_t sent, void *ud),
                                        void *ud);
/* NULL once connection_lost has run (the transport may outlive the loop from then on). */
AIOL_EXPORT aiol_loop *aiol_transport_loop(const aiol_transport *t);
/* The protocol's user_data; NULL once connection_lost has run (it is destroyed then). */
AIOL_EXPORT void *aiol_transport_get_protocol_data(const aiol_transport *t);
/* asyncio set_protocol: later callbacks go to p with user_data; no connection_made for
   it; the old user_data's destroy runs after the current callback — unless p->destroy and
   user_data are the ones already set, when nothing is destroyed (switching the vtable of
   the same user_data, e.g. between plain and buffered reads). */
AIOL_EXPORT int aiol_transport_set_protocol(aiol_transport *t, const aiol_protocol *p,
                                            void *user_data);
/* [any thread] Keep the memory past connection_lost; the last unref frees it. */
AIOL_EXPORT int aiol_transport_ref(aiol_transport *t);
AIOL_EXPORT int aiol_transport_unref(aiol_transport *t);

/* ---- client ----------------------------------------------------------------------- */

typedef struct aiol_connect_config {
    size_t size;                 /* sizeof(aiol_connect_config) */
    const char *host;            /* name or address; resolved off the loop thread */
    uint16_t port;
    const char *unix_path;       /* set: AF_UNIX instead */
    aiol_tls_context *tls;       /* NULL: plain; else TLS (AIOL_ENOTSUP if not built in) */
    const char *server_hostname; /* SNI and verification name; NULL: host */
    uint64_t timeout_ns;         /* 0: none; covers resolution, connect and TLS */
    uint64_t tls_handshake_timeout_ns; /* 0: 60 s */
    uint64_t tls_shutdown_timeout_ns;  /* 0: 30 s */
} aiol_connect_config;

/* Only AIOL_EINVAL, AIOL_ENOMEM, AIOL_ECLOSED, AIOL_ETHREAD and AIOL_ENOTSUP come back
   directly (then done never runs and the caller keeps user_data). Every resolution,
   network and TLS error goes to done(NULL, err), never from inside this call; addresses
   are tried in resolver order and the status is the last one's error. On success
   done(t, 0) runs right after connection_made. done runs exactly once after a 0 return
   (at the latest inside aiol_loop_close). Cancelling the handle (ret, may be NULL)
   gives done(NULL, AIOL_ECANCELED). The protocol's destroy(user_data) runs after
   connection_lost, or after done if no connection was made. */
AIOL_EXPORT int aiol_loop_connect(aiol_loop *loop, const aiol_connect_config *cfg,
                                  const aiol_protocol *protocol, void *user_data,
                                  void (*done)(aiol_transport *t, int status, void *ud),
                                  void *ud, aiol_handle **ret);
/* Wraps a connected stream socket (made non-blocking); connection_made runs in the next
   iteration. AIOL_ENOTSOCK for a non-socket, AIOL_EINVAL for a non-stream socket,
   AIOL_EBUSY for an fd the loop already watches. On failure the caller keeps fd and
   user_data. *ret (may be NULL) is borrowed like the transport in callbacks: take
   aiol_transport_ref to keep it past connection_lost. */
AIOL_EXPORT int aiol_transport_adopt(aiol_loop *loop, int fd, const aiol_protocol *protocol,
                                     void *user_data, aiol_transport **ret);

/* ---- TLS (asyncio's SSL transports over OpenSSL) ------------------------------------- */

/* Every function below exists in every build; without TLS built in (aiol_has_feature("tls")
   is 0) each returns AIOL_ENOTSUP (the pointer getters NULL).

   A context is shared, immutable once used, and reference-counted (atomically): every
   server, connect request and transport using it holds a reference, so the caller may
   free its own at any time. Contexts default to TLS 1.2 as the minimum version.

   Over TLS the protocol callbacks are the same as over TCP, with asyncio's rules:
   connection_made runs once the handshake has completed (a connection still in its
   handshake counts as the server's for wait_closed); a handshake that does not complete
   within tls_handshake_timeout_ns (default 60 s) closes the socket; server handshake
   failures reach the exception handler only in debug mode; for aiol_loop_connect a
   handshake failure (verification included) is done(NULL, AIOL_ETLS), a timeout
   done(NULL, AIOL_ETIMEDOUT). eof_received's return value is ignored (the transport
   closes after EOF), can_write_eof is 0 and write_eof returns AIOL_ESTATE. close() queues
   close_notify and waits at most tls_shutdown_timeout_ns (default 30 s) for the queue to
   drain. pause_reading also holds back plaintext already decrypted. Watermarks count the
   encrypted bytes queued. sendfile over TLS reads the file and writes it through TLS. */

/* A server context from PEM files; the certificate file may hold the chain after the
   leaf. AIOL_ETLS if a file cannot be loaded or the key does not match. */
AIOL_EXPORT int aiol_tls_context_new_server(const char *cert_pem_path, const char *key_pem_path,
                                            aiol_tls_context **ret);
/* The same from PEM text in memory (copied). */
AIOL_EXPORT int aiol_tls_context_new_server_pem(const void *cert, size_t cert_len,
                                                const void *key, size_t key_len,
                                                aiol_tls_context **ret);
/* A client context. ca_pem_path NULL: the system store. verify nonzero checks the chain
   and the host name (server_hostname, else host) and fails the handshake otherwise. */
AIOL_EXPORT int aiol_tls_context_new_client(const char *ca_pem_path, int verify,
                                            aiol_tls_context **ret);
/* ALPN protocols in preference order (copied); AIOL_ESTATE once a server or connect has
   used the context. A server with no overlap goes on without ALPN. */
AIOL_EXPORT int aiol_tls_context_set_alpn(aiol_tls_context *ctx, const char *const *protocols,
                                          size_t n);
/* Minimum protocol version: 0x0303 (TLS 1.2, the default; 0 means that too) or 0x0304
   (TLS 1.3). AIOL_EINVAL for anything else. */
AIOL_EXPORT int aiol_tls_context_set_min_version(aiol_tls_context *ctx, int version);
/* The SSL_CTX * (borrowed) for settings this API does not cover: mTLS, ciphers, ... */
AIOL_EXPORT void *aiol_tls_context_ssl_ctx(aiol_tls_context *ctx);
/* Gives up the caller's reference. NULL is a no-op returning 0. */
AIOL_EXPORT int aiol_tls_context_free(aiol_tls_context *ctx);

/* The negotiated ALPN protocol (not NUL-terminated; *proto NULL and *len 0 if none).
   AIOL_EINVAL for a plain transport. Valid while the transport's memory lives. */
AIOL_EXPORT int aiol_transport_tls_alpn(const aiol_transport *t, const char **proto,
                                        size_t *len);
/* The SNI name the client sent (server side) or asked for (client side); NULL if none or
   plain. */
AIOL_EXPORT const char *aiol_transport_tls_server_name(const aiol_transport *t);
/* The peer's certificate, DER (*der NULL and *len 0 if it sent none). AIOL_EINVAL for a
   plain transport. Valid while the transport's memory lives. */
AIOL_EXPORT int aiol_transport_tls_peer_cert_der(const aiol_transport *t, const void **der,
                                                 size_t *len);
/* The SSL * (borrowed), NULL for a plain transport. */
AIOL_EXPORT void *aiol_transport_tls_ssl(const aiol_transport *t);

#ifdef __cplusplus
}
#endif

#endif /* AIOLOOP_H */
