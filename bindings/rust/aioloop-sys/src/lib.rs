//! Raw FFI declarations for libaioloop, hand-written from `include/aioloop.h` (the whole
//! 0.1 ABI).
//!
//! Everything here is `unsafe` and follows the C rules in the header verbatim: negative
//! return codes, `user_data` + `destroy` ownership, the loop-thread rule and the
//! `[any thread]` functions that require a hold. The safe wrapper is the `aioloop` crate.
//!
//! The declarations cannot silently drift from the header: `tests/declarations.rs` checks
//! the set of functions (and their parameter counts) against `aioloop.h` and against the
//! symbols the shared library exports, the struct layouts and every constant against a
//! small C program compiled with the system `cc`.
#![no_std]
#![warn(missing_docs)]
#![allow(non_camel_case_types)]
#![allow(clippy::upper_case_acronyms)]

use core::ffi::{c_char, c_int, c_uint, c_void};
use core::marker::{PhantomData, PhantomPinned};

pub use libc::{sockaddr, sockaddr_storage, socklen_t};

macro_rules! opaque {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[repr(C)]
        pub struct $name {
            _p: [u8; 0],
            _m: PhantomData<(*mut u8, PhantomPinned)>,
        }
    };
}

// ---- version ----------------------------------------------------------------------------

/// `AIOL_VERSION_MAJOR`.
pub const AIOL_VERSION_MAJOR: c_uint = 0;
/// `AIOL_VERSION_MINOR`.
pub const AIOL_VERSION_MINOR: c_uint = 1;
/// `AIOL_VERSION_PATCH`.
pub const AIOL_VERSION_PATCH: c_uint = 0;
/// `AIOL_VERSION_HEX`: the header version these declarations were written against.
pub const AIOL_VERSION_HEX: c_uint =
    (AIOL_VERSION_MAJOR << 16) | (AIOL_VERSION_MINOR << 8) | AIOL_VERSION_PATCH;

// ---- errors -----------------------------------------------------------------------------

/// `-EPERM`.
pub const AIOL_EPERM: c_int = -libc::EPERM;
/// `-EINTR`.
pub const AIOL_EINTR: c_int = -libc::EINTR;
/// `-EBADF`.
pub const AIOL_EBADF: c_int = -libc::EBADF;
/// `-EAGAIN`.
pub const AIOL_EAGAIN: c_int = -libc::EAGAIN;
/// `-ENOMEM`.
pub const AIOL_ENOMEM: c_int = -libc::ENOMEM;
/// `-EBUSY`.
pub const AIOL_EBUSY: c_int = -libc::EBUSY;
/// `-EINVAL`.
pub const AIOL_EINVAL: c_int = -libc::EINVAL;
/// `-EMFILE`.
pub const AIOL_EMFILE: c_int = -libc::EMFILE;
/// `-ENFILE`.
pub const AIOL_ENFILE: c_int = -libc::ENFILE;
/// `-EPIPE`.
pub const AIOL_EPIPE: c_int = -libc::EPIPE;
/// `-ERANGE`.
pub const AIOL_ERANGE: c_int = -libc::ERANGE;
/// `-EOPNOTSUPP`.
pub const AIOL_ENOTSUP: c_int = -libc::EOPNOTSUPP;
/// `-ENOTSOCK`.
pub const AIOL_ENOTSOCK: c_int = -libc::ENOTSOCK;
/// `-EADDRINUSE`.
pub const AIOL_EADDRINUSE: c_int = -libc::EADDRINUSE;
/// `-ENOBUFS`.
pub const AIOL_ENOBUFS: c_int = -libc::ENOBUFS;
/// `-ECONNRESET`.
pub const AIOL_ECONNRESET: c_int = -libc::ECONNRESET;
/// `-ECONNREFUSED`.
pub const AIOL_ECONNREFUSED: c_int = -libc::ECONNREFUSED;
/// `-ECONNABORTED`.
pub const AIOL_ECONNABORTED: c_int = -libc::ECONNABORTED;
/// `-ETIMEDOUT`.
pub const AIOL_ETIMEDOUT: c_int = -libc::ETIMEDOUT;
/// `-ECANCELED`.
pub const AIOL_ECANCELED: c_int = -libc::ECANCELED;

/// Object is closed.
pub const AIOL_ECLOSED: c_int = -30001;
/// Operation not allowed in this state.
pub const AIOL_ESTATE: c_int = -30002;
/// Called from a thread that does not own the loop.
pub const AIOL_ETHREAD: c_int = -30003;
/// TLS error.
pub const AIOL_ETLS: c_int = -30004;
/// Host name not known.
pub const AIOL_EAI_NONAME: c_int = -30101;
/// Temporary failure in name resolution.
pub const AIOL_EAI_AGAIN: c_int = -30102;
/// Non-recoverable failure in name resolution.
pub const AIOL_EAI_FAIL: c_int = -30103;

/// `void (*)(void *user_data)`.
pub type aiol_destroy_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

// ---- loop -------------------------------------------------------------------------------

opaque!(
    /// `aiol_loop`: asyncio's BaseSelectorEventLoop.
    aiol_loop
);

/// Run until `aiol_loop_stop()` or nothing is alive.
pub const AIOL_RUN_DEFAULT: c_int = 0;
/// One iteration; blocks in poll only if nothing is ready.
pub const AIOL_RUN_ONCE: c_int = 1;
/// One iteration with a zero poll timeout.
pub const AIOL_RUN_NOWAIT: c_int = 2;

/// `aiol_error_context.object_kind`: none.
pub const AIOL_OBJ_NONE: c_int = 0;
/// `aiol_error_context.object_kind`: a server.
pub const AIOL_OBJ_SERVER: c_int = 1;
/// `aiol_error_context.object_kind`: a transport.
pub const AIOL_OBJ_TRANSPORT: c_int = 2;
/// `aiol_error_context.object_kind`: a handle.
pub const AIOL_OBJ_HANDLE: c_int = 3;
/// `aiol_error_context.object_kind`: the loop.
pub const AIOL_OBJ_LOOP: c_int = 4;

/// asyncio's exception-handler context (output struct: `size` is the library's sizeof).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct aiol_error_context {
    /// `sizeof` of the struct (see "Structs that grow").
    pub size: usize,
    /// `code` (see `aioloop.h`).
    pub code: c_int,
    /// `message` (see `aioloop.h`).
    pub message: *const c_char,
    /// `detail` (see `aioloop.h`).
    pub detail: *const c_char,
    /// `loop` (see `aioloop.h`).
    pub loop_: *mut aiol_loop,
    /// `object_kind` (see `aioloop.h`).
    pub object_kind: c_int,
    /// `object` (see `aioloop.h`).
    pub object: *mut c_void,
    /// `protocol_data` (see `aioloop.h`).
    pub protocol_data: *mut c_void,
}

/// `void (*)(const aiol_error_context *ctx, void *user_data)`.
pub type aiol_exception_handler =
    Option<unsafe extern "C" fn(ctx: *const aiol_error_context, user_data: *mut c_void)>;

// ---- scheduled callbacks ----------------------------------------------------------------

opaque!(
    /// `aiol_handle`: asyncio's Handle / TimerHandle.
    aiol_handle
);

/// `void (*)(aiol_loop *loop, void *user_data)`.
pub type aiol_callback =
    Option<unsafe extern "C" fn(loop_: *mut aiol_loop, user_data: *mut c_void)>;

/// `void (*)(aiol_loop *loop, int fd, void *user_data)`.
pub type aiol_fd_callback =
    Option<unsafe extern "C" fn(loop_: *mut aiol_loop, fd: c_int, user_data: *mut c_void)>;

// ---- protocol ---------------------------------------------------------------------------

opaque!(
    /// `aiol_transport`: asyncio's _SelectorSocketTransport.
    aiol_transport
);

/// The protocol vtable (asyncio Protocol + BufferedProtocol). Copied by the library.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct aiol_protocol {
    /// `sizeof` of the struct (see "Structs that grow").
    pub size: usize,
    /// `connection_made` (see `aioloop.h`).
    pub connection_made:
        Option<unsafe extern "C" fn(t: *mut aiol_transport, user_data: *mut c_void)>,
    /// `data_received` (see `aioloop.h`).
    pub data_received: Option<
        unsafe extern "C" fn(
            t: *mut aiol_transport,
            data: *const c_void,
            len: usize,
            user_data: *mut c_void,
        ),
    >,
    /// `eof_received` (see `aioloop.h`).
    pub eof_received:
        Option<unsafe extern "C" fn(t: *mut aiol_transport, user_data: *mut c_void) -> c_int>,
    /// `connection_lost` (see `aioloop.h`).
    pub connection_lost:
        Option<unsafe extern "C" fn(t: *mut aiol_transport, status: c_int, user_data: *mut c_void)>,
    /// `pause_writing` (see `aioloop.h`).
    pub pause_writing: Option<unsafe extern "C" fn(t: *mut aiol_transport, user_data: *mut c_void)>,
    /// `resume_writing` (see `aioloop.h`).
    pub resume_writing:
        Option<unsafe extern "C" fn(t: *mut aiol_transport, user_data: *mut c_void)>,
    /// `get_buffer` (see `aioloop.h`).
    pub get_buffer: Option<
        unsafe extern "C" fn(
            t: *mut aiol_transport,
            size_hint: usize,
            len: *mut usize,
            user_data: *mut c_void,
        ) -> *mut c_void,
    >,
    /// `buffer_updated` (see `aioloop.h`).
    pub buffer_updated:
        Option<unsafe extern "C" fn(t: *mut aiol_transport, nbytes: usize, user_data: *mut c_void)>,
    /// `destroy` (see `aioloop.h`).
    pub destroy: Option<unsafe extern "C" fn(user_data: *mut c_void)>,
}

/// `int (*)(void *factory_data, const struct sockaddr *peer, socklen_t peer_len, void **user_data)`.
pub type aiol_protocol_factory = Option<
    unsafe extern "C" fn(
        factory_data: *mut c_void,
        peer: *const sockaddr,
        peer_len: socklen_t,
        user_data: *mut *mut c_void,
    ) -> c_int,
>;

// ---- server -----------------------------------------------------------------------------

opaque!(
    /// `aiol_server`: asyncio's Server.
    aiol_server
);
opaque!(
    /// `aiol_tls_context` (opaque; see the TLS functions).
    aiol_tls_context
);

/// `aiol_server_config` (input struct: set `size` to `size_of::<aiol_server_config>()`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct aiol_server_config {
    /// `sizeof` of the struct (see "Structs that grow").
    pub size: usize,
    /// `host` (see `aioloop.h`).
    pub host: *const c_char,
    /// `port` (see `aioloop.h`).
    pub port: u16,
    /// `unix_path` (see `aioloop.h`).
    pub unix_path: *const c_char,
    /// `backlog` (see `aioloop.h`).
    pub backlog: c_int,
    /// `reuse_port` (see `aioloop.h`).
    pub reuse_port: c_int,
    /// `tls` (see `aioloop.h`).
    pub tls: *mut aiol_tls_context,
    /// `tls_handshake_timeout_ns` (see `aioloop.h`).
    pub tls_handshake_timeout_ns: u64,
    /// `tls_shutdown_timeout_ns` (see `aioloop.h`).
    pub tls_shutdown_timeout_ns: u64,
}

/// `void (*)(aiol_server *s, void *ud)` for `aiol_server_wait_closed`.
pub type aiol_server_closed_fn = Option<unsafe extern "C" fn(s: *mut aiol_server, ud: *mut c_void)>;

// ---- transport --------------------------------------------------------------------------

/// One buffer of `aiol_transport_writev` (same layout as `struct iovec`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct aiol_buf {
    /// `base` (see `aioloop.h`).
    pub base: *const c_void,
    /// `len` (see `aioloop.h`).
    pub len: usize,
}

/// `AIOL_WBUF_DEFAULT` (`SIZE_MAX`): asyncio's default write-buffer limit.
pub const AIOL_WBUF_DEFAULT: usize = usize::MAX;

/// `void (*)(aiol_transport *t, int status, uint64_t sent, void *ud)` for sendfile.
pub type aiol_sendfile_done_fn =
    Option<unsafe extern "C" fn(t: *mut aiol_transport, status: c_int, sent: u64, ud: *mut c_void)>;

// ---- client -----------------------------------------------------------------------------

/// `aiol_connect_config` (input struct: set `size` to `size_of::<aiol_connect_config>()`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct aiol_connect_config {
    /// `sizeof` of the struct (see "Structs that grow").
    pub size: usize,
    /// `host` (see `aioloop.h`).
    pub host: *const c_char,
    /// `port` (see `aioloop.h`).
    pub port: u16,
    /// `unix_path` (see `aioloop.h`).
    pub unix_path: *const c_char,
    /// `tls` (see `aioloop.h`).
    pub tls: *mut aiol_tls_context,
    /// `server_hostname` (see `aioloop.h`).
    pub server_hostname: *const c_char,
    /// `timeout_ns` (see `aioloop.h`).
    pub timeout_ns: u64,
    /// `tls_handshake_timeout_ns` (see `aioloop.h`).
    pub tls_handshake_timeout_ns: u64,
    /// `tls_shutdown_timeout_ns` (see `aioloop.h`).
    pub tls_shutdown_timeout_ns: u64,
}

/// `void (*)(aiol_transport *t, int status, void *ud)` for `aiol_loop_connect`.
pub type aiol_connect_done_fn =
    Option<unsafe extern "C" fn(t: *mut aiol_transport, status: c_int, ud: *mut c_void)>;

// ---- functions --------------------------------------------------------------------------

extern "C" {
    // version, errors, features
    /// `aiol_version`: AIOL_VERSION_HEX of the library actually loaded (compare with the macro to catch a header/library mismatch).
    pub fn aiol_version() -> c_uint;
    /// `aiol_version_string`: AIOL_VERSION_HEX of the library actually loaded (compare with the macro to catch a header/library mismatch).
    pub fn aiol_version_string() -> *const c_char;
    /// `aiol_strerror`: Static text for any code, never NULL ("Unknown error" for codes it does not know).
    pub fn aiol_strerror(err: c_int) -> *const c_char;
    /// `aiol_err_name`: The code's name: "AIOL_ECLOSED", "ECONNRESET", ...; "UNKNOWN" if it has none.
    pub fn aiol_err_name(err: c_int) -> *const c_char;
    /// `aiol_has_feature`: 1 if the named optional feature ("epoll", "poll", "tls", "io_uring", "debug") is built in, else 0.
    pub fn aiol_has_feature(name: *const c_char) -> c_int;

    // loop
    /// `aiol_loop_new`: A new loop, owned by the caller until aiol_loop_free().
    pub fn aiol_loop_new(ret: *mut *mut aiol_loop) -> c_int;
    /// `aiol_loop_run`: Runs the loop (asyncio _run_once, repeated). Each iteration polls (timeout 0 if anything is ready, else until the next timer, at most 24 h), appends ready I/O callbacks, then due timers by (deadline, scheduling order), then runs exactly the callbacks queued when the batch started; a callback queued from a callback runs in the next iteration. Returns 1 if anything is still alive, 0 if not, a negative code on error. "Alive": pending (not cancelled) handles, fd watchers, holds, pending destroys, and the servers, transports and requests of later sections; signal handlers do not count. On stop, the current batch finishes and run returns; a stop before run makes the next run do exactly one iteration. AIOL_ESTATE from inside a callback of this loop.
    pub fn aiol_loop_run(loop_: *mut aiol_loop, mode: c_int) -> c_int;
    /// `aiol_loop_stop`: \[any thread] Makes the running (or the next) aiol_loop_run() return after its batch.
    pub fn aiol_loop_stop(loop_: *mut aiol_loop) -> c_int;
    /// `aiol_loop_close`: Tears everything down: cancels every handle, removes every watcher and signal handler, drops queued threadsafe callbacks, and runs the resulting destroy callbacks before returning. In debug mode, what was still open is reported first. After it, every call but aiol_loop_free (and the \[any thread] ones, which give AIOL_ECLOSED) gives AIOL_ECLOSED. Idempotent. AIOL_ESTATE while this loop's run is on the stack.
    pub fn aiol_loop_close(loop_: *mut aiol_loop) -> c_int;
    /// `aiol_loop_free`: Frees the loop. AIOL_EBUSY while anything is alive or a hold remains (nothing is freed then); AIOL_ESTATE while running. NULL is a no-op returning 0. A loop that was not closed is closed first if nothing is alive.
    pub fn aiol_loop_free(loop_: *mut aiol_loop) -> c_int;
    /// `aiol_loop_hold`: \[any thread, with a hold or on the loop thread] Keeps the loop allocated and alive (aiol_loop_run in DEFAULT mode keeps running while a hold exists, as for a libuv async handle). Use it to hand the loop to another thread: hold first, then pass the pointer.
    pub fn aiol_loop_hold(loop_: *mut aiol_loop) -> c_int;
    /// `aiol_loop_unhold`: \[any thread] Releases one hold; after it, the caller must not touch the loop.
    pub fn aiol_loop_unhold(loop_: *mut aiol_loop) -> c_int;
    /// `aiol_loop_now`: CLOCK_MONOTONIC in nanoseconds, read fresh; 0 for NULL.
    pub fn aiol_loop_now(loop_: *const aiol_loop) -> u64;
    /// `aiol_loop_set_debug`: Debug mode (asyncio's debug): callbacks slower than 100 ms are reported through the exception handler, and resources still open at aiol_loop_close are reported.
    pub fn aiol_loop_set_debug(loop_: *mut aiol_loop, enabled: c_int) -> c_int;
    /// `aiol_loop_get_debug`: Debug mode (asyncio's debug): callbacks slower than 100 ms are reported through the exception handler, and resources still open at aiol_loop_close are reported.
    pub fn aiol_loop_get_debug(loop_: *const aiol_loop) -> c_int;
    /// `aiol_loop_set_exception_handler`: Replaces the exception handler (the previous one's destroy runs after this call). NULL h restores the default, which writes one line to stderr.
    pub fn aiol_loop_set_exception_handler(
        loop_: *mut aiol_loop,
        h: aiol_exception_handler,
        user_data: *mut c_void,
        destroy: aiol_destroy_fn,
    ) -> c_int;
    /// `aiol_loop_call_exception_handler`: Calls the current handler now, with ctx->loop set to this loop (a report is data, not a callback the caller scheduled, so this is the one call that runs a callback inline).
    pub fn aiol_loop_call_exception_handler(
        loop_: *mut aiol_loop,
        ctx: *const aiol_error_context,
    ) -> c_int;

    // scheduled callbacks
    /// `aiol_loop_call_soon`: Schedules cb for the next iteration. If ret is not NULL it receives a handle the caller owns until aiol_handle_release() (also after the callback ran).
    pub fn aiol_loop_call_soon(
        loop_: *mut aiol_loop,
        cb: aiol_callback,
        user_data: *mut c_void,
        destroy: aiol_destroy_fn,
        ret: *mut *mut aiol_handle,
    ) -> c_int;
    /// `aiol_loop_call_later`: Runs cb once delay_ns have passed on the monotonic clock (never early). Deadlines that overflow are clamped to UINT64_MAX (never fires). Equal deadlines run in scheduling order.
    pub fn aiol_loop_call_later(
        loop_: *mut aiol_loop,
        delay_ns: u64,
        cb: aiol_callback,
        user_data: *mut c_void,
        destroy: aiol_destroy_fn,
        ret: *mut *mut aiol_handle,
    ) -> c_int;
    /// `aiol_loop_call_at`: As call_later with an absolute deadline in aiol_loop_now() time.
    pub fn aiol_loop_call_at(
        loop_: *mut aiol_loop,
        when_ns: u64,
        cb: aiol_callback,
        user_data: *mut c_void,
        destroy: aiol_destroy_fn,
        ret: *mut *mut aiol_handle,
    ) -> c_int;
    /// `aiol_loop_call_soon_threadsafe`: \[any thread] Schedules cb for the loop's next iteration and wakes it. Callbacks posted by one thread run in posting order. Callbacks still queued at aiol_loop_close are dropped (their destroy runs). AIOL_ECLOSED after close.
    pub fn aiol_loop_call_soon_threadsafe(
        loop_: *mut aiol_loop,
        cb: aiol_callback,
        user_data: *mut c_void,
        destroy: aiol_destroy_fn,
    ) -> c_int;
    /// `aiol_handle_cancel`: 1 if this prevented the run, 0 if it had run, was running or was cancelled already. Allowed inside the handle's own callback. Loop thread only.
    pub fn aiol_handle_cancel(h: *mut aiol_handle) -> c_int;
    /// `aiol_handle_cancelled`: 1 if the handle was cancelled (asyncio Handle.cancelled()), else 0.
    pub fn aiol_handle_cancelled(h: *const aiol_handle) -> c_int;
    /// `aiol_handle_when`: The deadline of a timer handle in aiol_loop_now() time, 0 for a call_soon handle.
    pub fn aiol_handle_when(h: *const aiol_handle) -> u64;
    /// `aiol_handle_release`: \[any thread] Gives up the caller's reference; never cancels.
    pub fn aiol_handle_release(h: *mut aiol_handle) -> c_int;

    // fd watchers and signals
    /// `aiol_loop_add_reader`: One reader and one writer per fd (asyncio _add_reader): adding replaces the existing one, whose destroy then runs, and whose callback never runs again. Level-triggered.
    pub fn aiol_loop_add_reader(
        loop_: *mut aiol_loop,
        fd: c_int,
        cb: aiol_fd_callback,
        user_data: *mut c_void,
        destroy: aiol_destroy_fn,
    ) -> c_int;
    /// `aiol_loop_remove_reader`: 1 removed, 0 none.
    pub fn aiol_loop_remove_reader(loop_: *mut aiol_loop, fd: c_int) -> c_int;
    /// `aiol_loop_add_writer`: 1 removed, 0 none.
    pub fn aiol_loop_add_writer(
        loop_: *mut aiol_loop,
        fd: c_int,
        cb: aiol_fd_callback,
        user_data: *mut c_void,
        destroy: aiol_destroy_fn,
    ) -> c_int;
    /// `aiol_loop_remove_writer`: 1 removed, 0 none.
    pub fn aiol_loop_remove_writer(loop_: *mut aiol_loop, fd: c_int) -> c_int;
    /// `aiol_loop_add_signal_handler`: asyncio add_signal_handler: replaces; AIOL_EBUSY if another loop owns signum; AIOL_EINVAL for SIGKILL, SIGSTOP and numbers out of range. Installed with sigaction (SA_ONSTACK | SA_RESTART) writing to a self-pipe; cb runs on the loop thread; the previous disposition comes back on removal. Signal handlers do not keep the loop alive.
    pub fn aiol_loop_add_signal_handler(
        loop_: *mut aiol_loop,
        signum: c_int,
        cb: aiol_callback,
        user_data: *mut c_void,
        destroy: aiol_destroy_fn,
    ) -> c_int;
    /// `aiol_loop_remove_signal_handler`: 1 removed, 0 none.
    pub fn aiol_loop_remove_signal_handler(loop_: *mut aiol_loop, signum: c_int) -> c_int;

    // server
    /// `aiol_server_start`: Binds every address, listens and starts serving (asyncio create_server with start_serving=True). If any address fails to bind, everything is closed and the error returned. On EMFILE/ENFILE/ENOBUFS/ENOMEM while accepting, the server stops accepting for 1 s and reports once through the exception handler. factory_destroy(factory_data) runs once the server is freed and gone.
    pub fn aiol_server_start(
        loop_: *mut aiol_loop,
        cfg: *const aiol_server_config,
        protocol: *const aiol_protocol,
        factory: aiol_protocol_factory,
        factory_data: *mut c_void,
        factory_destroy: aiol_destroy_fn,
        ret: *mut *mut aiol_server,
    ) -> c_int;
    /// `aiol_server_start_fd`: Adopts an inherited listening socket (systemd, a parent); fd taken on success.
    pub fn aiol_server_start_fd(
        loop_: *mut aiol_loop,
        listen_fd: c_int,
        cfg: *const aiol_server_config,
        protocol: *const aiol_protocol,
        factory: aiol_protocol_factory,
        factory_data: *mut c_void,
        factory_destroy: aiol_destroy_fn,
        ret: *mut *mut aiol_server,
    ) -> c_int;
    /// `aiol_server_close`: Stops listening and closes the listening sockets; the factory never runs after it returns; live connections go on. Idempotent.
    pub fn aiol_server_close(s: *mut aiol_server) -> c_int;
    /// `aiol_server_close_clients`: aiol_transport_close / aiol_transport_abort on each connection (asyncio 3.13).
    pub fn aiol_server_close_clients(s: *mut aiol_server) -> c_int;
    /// `aiol_server_abort_clients`: aiol_transport_close / aiol_transport_abort on each connection (asyncio 3.13).
    pub fn aiol_server_abort_clients(s: *mut aiol_server) -> c_int;
    /// `aiol_server_wait_closed`: cb runs once, after close and after the last connection has gone, never inside this call; it may call aiol_server_free(s).
    pub fn aiol_server_wait_closed(
        s: *mut aiol_server,
        cb: aiol_server_closed_fn,
        ud: *mut c_void,
    ) -> c_int;
    /// `aiol_server_is_serving`: cb runs once, after close and after the last connection has gone, never inside this call; it may call aiol_server_free(s).
    pub fn aiol_server_is_serving(s: *const aiol_server) -> c_int;
    /// `aiol_server_socket_count`: cb runs once, after close and after the last connection has gone, never inside this call; it may call aiol_server_free(s).
    pub fn aiol_server_socket_count(s: *const aiol_server) -> c_int;
    /// `aiol_server_sockname`: *len is in/out (the size of *addr on entry). AIOL_ERANGE for an index out of range.
    pub fn aiol_server_sockname(
        s: *const aiol_server,
        index: c_int,
        addr: *mut sockaddr_storage,
        len: *mut socklen_t,
    ) -> c_int;
    /// `aiol_server_loop`: *len is in/out (the size of *addr on entry). AIOL_ERANGE for an index out of range.
    pub fn aiol_server_loop(s: *const aiol_server) -> *mut aiol_loop;
    /// `aiol_server_free`: Closes the server if still open and gives up the caller's pointer; never AIOL_EBUSY. The memory goes when its last connection (and wait_closed callback) is gone.
    pub fn aiol_server_free(s: *mut aiol_server) -> c_int;

    // transport
    /// `aiol_transport_write`: 0 once the bytes are accepted (sent now, the rest copied and queued); a zero length is a no-op. AIOL_ESTATE after write_eof, AIOL_ECLOSED after close/abort or once the connection is lost (the data is dropped), AIOL_EBUSY during sendfile. Socket errors are never returned here: they close the transport and reach connection_lost.
    pub fn aiol_transport_write(t: *mut aiol_transport, data: *const c_void, len: usize) -> c_int;
    /// `aiol_transport_writev`: 0 once the bytes are accepted (sent now, the rest copied and queued); a zero length is a no-op. AIOL_ESTATE after write_eof, AIOL_ECLOSED after close/abort or once the connection is lost (the data is dropped), AIOL_EBUSY during sendfile. Socket errors are never returned here: they close the transport and reach connection_lost.
    pub fn aiol_transport_writev(t: *mut aiol_transport, bufs: *const aiol_buf, n: usize) -> c_int;
    /// `aiol_transport_write_eof`: Half close once the queue has drained (shutdown(SHUT_WR)). Idempotent.
    pub fn aiol_transport_write_eof(t: *mut aiol_transport) -> c_int;
    /// `aiol_transport_can_write_eof`: Half close once the queue has drained (shutdown(SHUT_WR)). Idempotent.
    pub fn aiol_transport_can_write_eof(t: *const aiol_transport) -> c_int;
    /// `aiol_transport_close`: Stops reading, flushes the queue, then closes; connection_lost(0). Idempotent.
    pub fn aiol_transport_close(t: *mut aiol_transport) -> c_int;
    /// `aiol_transport_abort`: Drops the queue and closes now; connection_lost(AIOL_ECANCELED).
    pub fn aiol_transport_abort(t: *mut aiol_transport) -> c_int;
    /// `aiol_transport_is_closing`: Drops the queue and closes now; connection_lost(AIOL_ECANCELED).
    pub fn aiol_transport_is_closing(t: *const aiol_transport) -> c_int;
    /// `aiol_transport_pause_reading`: Drops the queue and closes now; connection_lost(AIOL_ECANCELED).
    pub fn aiol_transport_pause_reading(t: *mut aiol_transport) -> c_int;
    /// `aiol_transport_resume_reading`: Drops the queue and closes now; connection_lost(AIOL_ECANCELED).
    pub fn aiol_transport_resume_reading(t: *mut aiol_transport) -> c_int;
    /// `aiol_transport_is_reading`: Drops the queue and closes now; connection_lost(AIOL_ECANCELED).
    pub fn aiol_transport_is_reading(t: *const aiol_transport) -> c_int;
    /// `aiol_transport_set_write_buffer_limits`: AIOL_WBUF_DEFAULT for either: asyncio's rule (high 64 KiB, or 4 x low when only low is given; low = high / 4). high < low gives AIOL_EINVAL.
    pub fn aiol_transport_set_write_buffer_limits(
        t: *mut aiol_transport,
        high: usize,
        low: usize,
    ) -> c_int;
    /// `aiol_transport_get_write_buffer_size`: AIOL_WBUF_DEFAULT for either: asyncio's rule (high 64 KiB, or 4 x low when only low is given; low = high / 4). high < low gives AIOL_EINVAL.
    pub fn aiol_transport_get_write_buffer_size(t: *const aiol_transport) -> usize;
    /// `aiol_transport_get_write_buffer_limits`: AIOL_WBUF_DEFAULT for either: asyncio's rule (high 64 KiB, or 4 x low when only low is given; low = high / 4). high < low gives AIOL_EINVAL.
    pub fn aiol_transport_get_write_buffer_limits(
        t: *const aiol_transport,
        high: *mut usize,
        low: *mut usize,
    ) -> c_int;
    /// `aiol_transport_peername`: Captured at accept/connect; readable while the memory lives. *len is in/out.
    pub fn aiol_transport_peername(
        t: *const aiol_transport,
        addr: *mut sockaddr_storage,
        len: *mut socklen_t,
    ) -> c_int;
    /// `aiol_transport_sockname`: Captured at accept/connect; readable while the memory lives. *len is in/out.
    pub fn aiol_transport_sockname(
        t: *const aiol_transport,
        addr: *mut sockaddr_storage,
        len: *mut socklen_t,
    ) -> c_int;
    /// `aiol_transport_fileno`: The socket fd, AIOL_ECLOSED once closed. Do not close it or watch it yourself.
    pub fn aiol_transport_fileno(t: *const aiol_transport) -> c_int;
    /// `aiol_transport_sendfile`: Sends count bytes of fd from offset (count 0: to the end of the file) with sendfile(2) once the write queue has drained, falling back to read + send for files sendfile refuses. The caller keeps fd open until done; the file position is not used. Reading is paused and writes are refused (AIOL_EBUSY) until done, which runs once, never inside this call, before connection_lost, with the bytes sent and 0, the error, or AIOL_ECANCELED if the transport closed first. SIGPIPE is blocked around sendfile(2) on the loop thread, so a vanished peer never kills the process.
    pub fn aiol_transport_sendfile(
        t: *mut aiol_transport,
        fd: c_int,
        offset: u64,
        count: u64,
        done: aiol_sendfile_done_fn,
        ud: *mut c_void,
    ) -> c_int;
    /// `aiol_transport_loop`: NULL once the loop is gone.
    pub fn aiol_transport_loop(t: *const aiol_transport) -> *mut aiol_loop;
    /// `aiol_transport_get_protocol_data`: NULL once the loop is gone.
    pub fn aiol_transport_get_protocol_data(t: *const aiol_transport) -> *mut c_void;
    /// `aiol_transport_set_protocol`: asyncio set_protocol: later callbacks go to p with user_data; no connection_made for it; the old user_data's destroy runs after the current callback.
    pub fn aiol_transport_set_protocol(
        t: *mut aiol_transport,
        p: *const aiol_protocol,
        user_data: *mut c_void,
    ) -> c_int;
    /// `aiol_transport_ref`: \[any thread] Keep the memory past connection_lost; the last unref frees it.
    pub fn aiol_transport_ref(t: *mut aiol_transport) -> c_int;
    /// `aiol_transport_unref`: \[any thread] Keep the memory past connection_lost; the last unref frees it.
    pub fn aiol_transport_unref(t: *mut aiol_transport) -> c_int;

    // client
    /// `aiol_loop_connect`: Only AIOL_EINVAL, AIOL_ENOMEM, AIOL_ECLOSED, AIOL_ETHREAD and AIOL_ENOTSUP come back directly (then done never runs and the caller keeps user_data). Every resolution, network and TLS error goes to done(NULL, err), never from inside this call; addresses are tried in resolver order and the status is the last one's error. On success done(t, 0) runs right after connection_made. Cancelling the handle (ret, may be NULL) gives done(NULL, AIOL_ECANCELED). The protocol's destroy(user_data) runs after connection_lost, or after done if no connection was made.
    pub fn aiol_loop_connect(
        loop_: *mut aiol_loop,
        cfg: *const aiol_connect_config,
        protocol: *const aiol_protocol,
        user_data: *mut c_void,
        done: aiol_connect_done_fn,
        ud: *mut c_void,
        ret: *mut *mut aiol_handle,
    ) -> c_int;
    /// `aiol_transport_adopt`: Wraps a connected stream socket (made non-blocking); connection_made runs in the next iteration. AIOL_ENOTSOCK for a non-socket, AIOL_EINVAL for a non-stream socket, AIOL_EBUSY for an fd the loop already watches. On failure the caller keeps fd.
    pub fn aiol_transport_adopt(
        loop_: *mut aiol_loop,
        fd: c_int,
        protocol: *const aiol_protocol,
        user_data: *mut c_void,
        ret: *mut *mut aiol_transport,
    ) -> c_int;

    // ---- TLS (AIOL_ENOTSUP / NULL when the library is built without it) ----
    /// `aiol_tls_context_new_server`: a server context from PEM files (the certificate file may hold the chain).
    pub fn aiol_tls_context_new_server(
        cert_pem_path: *const c_char,
        key_pem_path: *const c_char,
        ret: *mut *mut aiol_tls_context,
    ) -> c_int;
    /// `aiol_tls_context_new_server_pem`: the same from PEM text in memory (copied).
    pub fn aiol_tls_context_new_server_pem(
        cert: *const c_void,
        cert_len: usize,
        key: *const c_void,
        key_len: usize,
        ret: *mut *mut aiol_tls_context,
    ) -> c_int;
    /// `aiol_tls_context_new_client`: ca_pem_path NULL uses the system store; verify checks chain and host name.
    pub fn aiol_tls_context_new_client(
        ca_pem_path: *const c_char,
        verify: c_int,
        ret: *mut *mut aiol_tls_context,
    ) -> c_int;
    /// `aiol_tls_context_set_alpn`: AIOL_ESTATE once the context was used.
    pub fn aiol_tls_context_set_alpn(
        ctx: *mut aiol_tls_context,
        protocols: *const *const c_char,
        n: usize,
    ) -> c_int;
    /// `aiol_tls_context_set_min_version`: 0x0303 (TLS 1.2, default) or 0x0304 (TLS 1.3).
    pub fn aiol_tls_context_set_min_version(ctx: *mut aiol_tls_context, version: c_int) -> c_int;
    /// `aiol_tls_context_ssl_ctx`: the SSL_CTX * (borrowed).
    pub fn aiol_tls_context_ssl_ctx(ctx: *mut aiol_tls_context) -> *mut c_void;
    /// `aiol_tls_context_free`: gives up the caller's reference.
    pub fn aiol_tls_context_free(ctx: *mut aiol_tls_context) -> c_int;
    /// `aiol_transport_tls_alpn`: the negotiated ALPN protocol (not NUL-terminated).
    pub fn aiol_transport_tls_alpn(
        t: *const aiol_transport,
        proto: *mut *const c_char,
        len: *mut usize,
    ) -> c_int;
    /// `aiol_transport_tls_server_name`: the SNI name, or NULL.
    pub fn aiol_transport_tls_server_name(t: *const aiol_transport) -> *const c_char;
    /// `aiol_transport_tls_peer_cert_der`: the peer's certificate as DER.
    pub fn aiol_transport_tls_peer_cert_der(
        t: *const aiol_transport,
        der: *mut *const c_void,
        len: *mut usize,
    ) -> c_int;
    /// `aiol_transport_tls_ssl`: the SSL * (borrowed), NULL for a plain transport.
    pub fn aiol_transport_tls_ssl(t: *const aiol_transport) -> *mut c_void;
}
