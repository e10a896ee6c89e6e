//! [`EventLoop`], [`LoopHandle`] and [`Handle`]: the loop, its cross-thread handle and
//! scheduled callbacks.
//!
//! # Ownership of the C loop
//!
//! The `aiol_loop *` is owned by one `Arc<Shared>`. The [`EventLoop`] holds a strong
//! reference, and so does every [`LoopHandle`] (through a `Hold`, which owns exactly one C
//! hold: `aiol_loop_hold` when the handle is made, `aiol_loop_unhold` when its last clone is
//! dropped), every [`Server`](crate::Server) and every [`TransportRef`](crate::TransportRef).
//!
//! * Dropping the `EventLoop` (on its own thread, where every closure was created) calls
//!   `aiol_loop_close`, which runs every pending destroy callback there: all user closures
//!   and protocol states are dropped on the thread that owns them.
//! * `Shared::drop` runs when the last reference goes, on whatever thread that is, and
//!   calls `aiol_loop_free`. By then the `EventLoop` is gone, so the loop is closed and
//!   cannot be running (`run` borrows the `EventLoop`), and every `Hold` has been dropped,
//!   so its `aiol_loop_unhold` has returned (a `Hold` owns an `Arc<Shared>` and releases it
//!   only after unholding). `aiol_loop_free` therefore finds no hold and nothing alive and
//!   frees exactly once. No thread touches the loop after its unhold except the one that
//!   ends up freeing it, which is then the only owner.
//!
//! # Panics
//!
//! Every trampoline runs user code under `catch_unwind`. A panic is stored in `Shared`
//! (the first one wins), the loop is stopped, and [`EventLoop::run`] (or the `EventLoop`'s
//! `Drop`, for a panic raised inside `aiol_loop_close`) resumes it with
//! [`std::panic::resume_unwind`] once C has returned. A panic never unwinds through C.
use std::any::Any;
use std::ffi::{c_void, CStr};
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::os::raw::c_int;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aioloop_sys as sys;

use crate::error::{check, check0, Error, Result};

type Panic = Box<dyn Any + Send + 'static>;

/// The state shared by an [`EventLoop`] and everything that must keep the C loop allocated.
pub(crate) struct Shared {
    pub(crate) raw: *mut sys::aiol_loop,
    panic: Mutex<Option<Panic>>,
}

// SAFETY: from other threads only the `[any thread]` functions are called on `raw`, and
// only while a hold is owned (LoopHandle); `panic` is behind a mutex. Everything else is
// reached through `!Send` types on the loop's thread.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// Records a panic from user code (the first one is kept) and stops the loop.
    pub(crate) fn stash_panic(&self, payload: Panic) {
        let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(payload);
        }
        drop(slot);
        // SAFETY: we are on the loop thread (inside run or close); stop is [any thread].
        unsafe { sys::aiol_loop_stop(self.raw) };
    }

    fn take_panic(&self) -> Option<Panic> {
        self.panic.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last owner is gone: the EventLoop closed the loop when it was dropped and
        // every hold was released first (see the module docs), so this frees it.
        // SAFETY: no other reference to the loop exists any more.
        let rc = unsafe { sys::aiol_loop_free(self.raw) };
        // A nonzero rc would mean the library still counts something alive after close:
        // leaking the loop is the only safe answer.
        debug_assert!(rc == 0, "aiol_loop_free: {}", Error::from_code(rc));
    }
}

/// Runs `f`, stashing a panic in `shared` and returning `default` instead.
///
/// # Safety
/// `shared` points to a live `Shared` (true inside any callback: callbacks run only inside
/// `aiol_loop_run` or `aiol_loop_close`, while an `EventLoop` owns a reference).
pub(crate) unsafe fn guard<R>(shared: *const Shared, default: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            (*shared).stash_panic(p);
            default
        }
    }
}

/// A boxed user closure handed to C as `user_data`.
pub(crate) struct CbBox<F> {
    pub(crate) shared: *const Shared,
    pub(crate) f: Option<F>,
}

impl<F> CbBox<F> {
    pub(crate) fn into_raw(shared: *const Shared, f: F) -> *mut c_void {
        Box::into_raw(Box::new(CbBox { shared, f: Some(f) })) as *mut c_void
    }
}

/// The `destroy` of every `CbBox<F>`: drops the closure (a panic in its `Drop` is stashed).
pub(crate) unsafe extern "C" fn cb_destroy<F>(ud: *mut c_void) {
    let b = Box::from_raw(ud as *mut CbBox<F>);
    let shared = b.shared;
    guard(shared, (), move || drop(b));
}

/// Frees a `CbBox<F>` that C never accepted (the call failed).
pub(crate) unsafe fn cb_free<F>(ud: *mut c_void) {
    drop(Box::from_raw(ud as *mut CbBox<F>));
}

unsafe extern "C" fn once_tramp<F: FnOnce(&EventLoop)>(_l: *mut sys::aiol_loop, ud: *mut c_void) {
    let b = &mut *(ud as *mut CbBox<F>);
    let shared = b.shared;
    if let Some(f) = b.f.take() {
        guard(shared, (), || f(&EventLoop::view(shared)));
    }
}

unsafe extern "C" fn mut_tramp<F: FnMut(&EventLoop)>(_l: *mut sys::aiol_loop, ud: *mut c_void) {
    let b = &mut *(ud as *mut CbBox<F>);
    let shared = b.shared;
    if let Some(f) = b.f.as_mut() {
        guard(shared, (), || f(&EventLoop::view(shared)));
    }
}

unsafe extern "C" fn fd_tramp<F: FnMut(&EventLoop)>(
    _l: *mut sys::aiol_loop,
    _fd: c_int,
    ud: *mut c_void,
) {
    let b = &mut *(ud as *mut CbBox<F>);
    let shared = b.shared;
    if let Some(f) = b.f.as_mut() {
        guard(shared, (), || f(&EventLoop::view(shared)));
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The event loop (asyncio's `BaseSelectorEventLoop`): timers, ready callbacks, fd
/// watchers, signals, servers and transports, all run on the thread that calls
/// [`run`](EventLoop::run).
///
/// `EventLoop` is neither `Send` nor `Sync`: the closures and protocols it owns need not be
/// `Send`. Use a [`LoopHandle`] to reach it from other threads.
///
/// Dropping the `EventLoop` closes it (`aiol_loop_close`): servers are closed, transports
/// aborted (their `connection_lost` runs with [`Error::CANCELED`]), handles cancelled,
/// watchers and signal handlers removed, queued thread-safe callbacks dropped, and every
/// closure and protocol state is dropped, on this thread, before `drop` returns. The C
/// memory itself is freed when the last [`LoopHandle`], [`Server`](crate::Server) or
/// [`TransportRef`](crate::TransportRef) that names it is gone.
///
/// Callbacks receive `&EventLoop` (a borrowed view of the same loop) so they can schedule
/// more work.
pub struct EventLoop {
    pub(crate) shared: Arc<Shared>,
    owner: bool,
    _not_send: PhantomData<*mut ()>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("raw", &self.shared.raw)
            .finish()
    }
}

impl EventLoop {
    /// A new loop (`aiol_loop_new`).
    pub fn new() -> Result<EventLoop> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: plain out-pointer call.
        check0(unsafe { sys::aiol_loop_new(&mut raw) })?;
        Ok(EventLoop {
            shared: Arc::new(Shared {
                raw,
                panic: Mutex::new(None),
            }),
            owner: true,
            _not_send: PhantomData,
        })
    }

    /// A non-owning view of the loop for a callback (its drop does not close the loop).
    ///
    /// # Safety
    /// `shared` points to a live `Shared` owned by an `Arc`.
    pub(crate) unsafe fn view(shared: *const Shared) -> EventLoop {
        Arc::increment_strong_count(shared);
        EventLoop {
            shared: Arc::from_raw(shared),
            owner: false,
            _not_send: PhantomData,
        }
    }

    /// A non-owning view sharing `self`'s state.
    pub(crate) fn view_of(shared: &Arc<Shared>) -> EventLoop {
        EventLoop {
            shared: Arc::clone(shared),
            owner: false,
            _not_send: PhantomData,
        }
    }

    pub(crate) fn shared_ptr(&self) -> *const Shared {
        Arc::as_ptr(&self.shared)
    }

    /// The underlying `aiol_loop *`, for calls into [`aioloop_sys`]. It stays owned by
    /// this crate.
    pub fn as_raw(&self) -> *mut sys::aiol_loop {
        self.shared.raw
    }

    fn run_mode(&self, mode: c_int) -> Result<bool> {
        // SAFETY: the loop is live; callbacks only reach it through views.
        let rc = unsafe { sys::aiol_loop_run(self.shared.raw, mode) };
        if let Some(p) = self.shared.take_panic() {
            resume_unwind(p);
        }
        check(rc).map(|n| n != 0)
    }

    /// Runs until [`stop`](EventLoop::stop) is called or nothing is alive
    /// (`AIOL_RUN_DEFAULT`). Returns whether anything is still alive.
    ///
    /// Alive means: pending handles, fd watchers, servers not yet closed, transports before
    /// `connection_lost`, connects in flight, pending destroys, and **holds**: every live
    /// [`LoopHandle`] keeps `run` running, so a run with live handles ends through
    /// [`stop`](EventLoop::stop) / [`LoopHandle::stop`] or when the handles are dropped.
    /// Signal handlers do not count.
    ///
    /// If a callback panicked, the loop was stopped and the panic is resumed here.
    /// [`Error::STATE`] from inside a callback of this loop.
    pub fn run(&self) -> Result<bool> {
        self.run_mode(sys::AIOL_RUN_DEFAULT)
    }

    /// One iteration; blocks in poll only if nothing is ready (`AIOL_RUN_ONCE`).
    /// Returns whether anything is still alive.
    pub fn run_once(&self) -> Result<bool> {
        self.run_mode(sys::AIOL_RUN_ONCE)
    }

    /// One iteration with a zero poll timeout (`AIOL_RUN_NOWAIT`).
    /// Returns whether anything is still alive.
    pub fn run_nowait(&self) -> Result<bool> {
        self.run_mode(sys::AIOL_RUN_NOWAIT)
    }

    /// Makes the running (or the next) `run` return after the current batch of callbacks.
    /// A stop before `run` makes the next run do exactly one iteration.
    pub fn stop(&self) -> Result<()> {
        // SAFETY: live loop.
        check0(unsafe { sys::aiol_loop_stop(self.shared.raw) })
    }

    /// The loop's clock: `CLOCK_MONOTONIC`, read fresh.
    pub fn now(&self) -> Duration {
        // SAFETY: live loop.
        Duration::from_nanos(unsafe { sys::aiol_loop_now(self.shared.raw) })
    }

    /// Turns asyncio's debug mode on or off (slow callbacks and unclosed resources are
    /// reported through the exception handler).
    pub fn set_debug(&self, enabled: bool) -> Result<()> {
        // SAFETY: live loop.
        check0(unsafe { sys::aiol_loop_set_debug(self.shared.raw, enabled as c_int) })
    }

    /// Whether debug mode is on.
    pub fn debug(&self) -> bool {
        // SAFETY: live loop.
        unsafe { sys::aiol_loop_get_debug(self.shared.raw) != 0 }
    }

    /// A `Send + Sync` handle for other threads. Each call takes one C hold on the loop,
    /// released when the last clone of the returned handle is dropped; while it lives,
    /// [`run`](EventLoop::run) keeps running (see there).
    pub fn handle(&self) -> LoopHandle {
        // SAFETY: on the loop thread (EventLoop is !Send), so hold is allowed.
        let held = unsafe { sys::aiol_loop_hold(self.shared.raw) } == 0;
        LoopHandle {
            hold: Arc::new(Hold {
                shared: Arc::clone(&self.shared),
                held,
            }),
        }
    }

    fn schedule(
        &self,
        f: impl FnOnce(&EventLoop) + 'static,
        call: impl FnOnce(
            sys::aiol_callback,
            *mut c_void,
            sys::aiol_destroy_fn,
            *mut *mut sys::aiol_handle,
        ) -> c_int,
    ) -> Result<Handle> {
        fn inner<F: FnOnce(&EventLoop) + 'static>(
            lp: &EventLoop,
            f: F,
            call: impl FnOnce(
                sys::aiol_callback,
                *mut c_void,
                sys::aiol_destroy_fn,
                *mut *mut sys::aiol_handle,
            ) -> c_int,
        ) -> Result<Handle> {
            let ud = CbBox::into_raw(lp.shared_ptr(), f);
            let mut h = std::ptr::null_mut();
            let rc = call(Some(once_tramp::<F>), ud, Some(cb_destroy::<F>), &mut h);
            if rc < 0 {
                // SAFETY: the call failed, so we still own ud.
                unsafe { cb_free::<F>(ud) };
                return Err(Error::from_code(rc));
            }
            Ok(Handle {
                raw: h,
                _not_send: PhantomData,
            })
        }
        inner(self, f, call)
    }

    /// Schedules `f` for the next iteration (asyncio `call_soon`). Callbacks run in
    /// scheduling order; one scheduled from a callback runs in the next iteration.
    ///
    /// The returned [`Handle`] can cancel it; dropping the handle does **not** cancel.
    pub fn call_soon(&self, f: impl FnOnce(&EventLoop) + 'static) -> Result<Handle> {
        let raw = self.shared.raw;
        // SAFETY: live loop; the callback/destroy pair matches the boxed type.
        self.schedule(f, |cb, ud, d, ret| unsafe {
            sys::aiol_loop_call_soon(raw, cb, ud, d, ret)
        })
    }

    /// Runs `f` once `delay` has passed on the loop's clock (never early). Equal deadlines
    /// run in scheduling order.
    ///
    /// The returned [`TimerHandle`] releases its C reference when dropped, which never
    /// cancels the timer: call [`Handle::cancel`] to cancel.
    pub fn call_later(
        &self,
        delay: Duration,
        f: impl FnOnce(&EventLoop) + 'static,
    ) -> Result<TimerHandle> {
        let raw = self.shared.raw;
        let ns = nanos(delay);
        // SAFETY: as call_soon.
        self.schedule(f, |cb, ud, d, ret| unsafe {
            sys::aiol_loop_call_later(raw, ns, cb, ud, d, ret)
        })
    }

    /// As [`call_later`](EventLoop::call_later) with an absolute deadline on the loop's
    /// clock ([`now`](EventLoop::now)).
    pub fn call_at(
        &self,
        when: Duration,
        f: impl FnOnce(&EventLoop) + 'static,
    ) -> Result<TimerHandle> {
        let raw = self.shared.raw;
        let ns = nanos(when);
        // SAFETY: as call_soon.
        self.schedule(f, |cb, ud, d, ret| unsafe {
            sys::aiol_loop_call_at(raw, ns, cb, ud, d, ret)
        })
    }

    fn add_fd<F: FnMut(&EventLoop) + 'static>(&self, fd: c_int, writer: bool, f: F) -> Result<()> {
        let ud = CbBox::into_raw(self.shared_ptr(), f);
        // SAFETY: live loop; the callback/destroy pair matches the boxed type.
        let rc = unsafe {
            let add = if writer {
                sys::aiol_loop_add_writer
            } else {
                sys::aiol_loop_add_reader
            };
            add(
                self.shared.raw,
                fd,
                Some(fd_tramp::<F>),
                ud,
                Some(cb_destroy::<F>),
            )
        };
        if rc < 0 {
            // SAFETY: refused, we own ud.
            unsafe { cb_free::<F>(ud) };
        }
        check0(rc)
    }

    /// Calls `f` whenever `source` is readable (level-triggered), replacing the fd's
    /// previous reader. Remove it before closing the fd. [`Error::BUSY`] for an fd owned by
    /// a transport or server of this loop.
    pub fn add_reader<S: AsRawFd + ?Sized>(
        &self,
        source: &S,
        f: impl FnMut(&EventLoop) + 'static,
    ) -> Result<()> {
        self.add_fd(source.as_raw_fd(), false, f)
    }

    /// Removes the reader of `source`; `true` if there was one. Its closure is dropped
    /// after the current callback and never runs again.
    pub fn remove_reader<S: AsRawFd + ?Sized>(&self, source: &S) -> Result<bool> {
        // SAFETY: live loop.
        check(unsafe { sys::aiol_loop_remove_reader(self.shared.raw, source.as_raw_fd()) })
            .map(|n| n == 1)
    }

    /// Calls `f` whenever `source` is writable (level-triggered), replacing the fd's
    /// previous writer.
    pub fn add_writer<S: AsRawFd + ?Sized>(
        &self,
        source: &S,
        f: impl FnMut(&EventLoop) + 'static,
    ) -> Result<()> {
        self.add_fd(source.as_raw_fd(), true, f)
    }

    /// Removes the writer of `source`; `true` if there was one.
    pub fn remove_writer<S: AsRawFd + ?Sized>(&self, source: &S) -> Result<bool> {
        // SAFETY: live loop.
        check(unsafe { sys::aiol_loop_remove_writer(self.shared.raw, source.as_raw_fd()) })
            .map(|n| n == 1)
    }

    /// Calls `f` on the loop thread each time `signum` arrives (asyncio
    /// `add_signal_handler`), replacing a previous handler. [`Error::BUSY`] if another loop
    /// owns the signal, [`Error::INVALID`] for `SIGKILL`, `SIGSTOP` or out-of-range numbers.
    /// Signal handlers do not keep [`run`](EventLoop::run) running.
    pub fn add_signal_handler<F: FnMut(&EventLoop) + 'static>(
        &self,
        signum: i32,
        f: F,
    ) -> Result<()> {
        let ud = CbBox::into_raw(self.shared_ptr(), f);
        // SAFETY: live loop; matching pair.
        let rc = unsafe {
            sys::aiol_loop_add_signal_handler(
                self.shared.raw,
                signum,
                Some(mut_tramp::<F>),
                ud,
                Some(cb_destroy::<F>),
            )
        };
        if rc < 0 {
            // SAFETY: refused, we own ud.
            unsafe { cb_free::<F>(ud) };
        }
        check0(rc)
    }

    /// Removes the handler of `signum` (its previous disposition comes back); `true` if
    /// there was one.
    pub fn remove_signal_handler(&self, signum: i32) -> Result<bool> {
        // SAFETY: live loop.
        check(unsafe { sys::aiol_loop_remove_signal_handler(self.shared.raw, signum) })
            .map(|n| n == 1)
    }

    /// Replaces the exception handler (asyncio `set_exception_handler`): `f` receives the
    /// library's reports (failed accepts, fatal transport errors, slow callbacks in debug
    /// mode, ...). The default handler writes one line to stderr.
    pub fn set_exception_handler<F: FnMut(&ErrorContext<'_>) + 'static>(&self, f: F) -> Result<()> {
        let ud = CbBox::into_raw(self.shared_ptr(), f);
        // SAFETY: live loop; matching pair.
        let rc = unsafe {
            sys::aiol_loop_set_exception_handler(
                self.shared.raw,
                Some(exc_tramp::<F>),
                ud,
                Some(cb_destroy::<F>),
            )
        };
        if rc < 0 {
            // SAFETY: refused, we own ud.
            unsafe { cb_free::<F>(ud) };
        }
        check0(rc)
    }

    /// Restores the default exception handler.
    pub fn clear_exception_handler(&self) -> Result<()> {
        // SAFETY: live loop.
        check0(unsafe {
            sys::aiol_loop_set_exception_handler(self.shared.raw, None, std::ptr::null_mut(), None)
        })
    }

    /// Reports `message` (with an optional error) to the exception handler, after the
    /// current callback (asyncio `call_exception_handler`).
    pub fn call_exception_handler(&self, error: Option<Error>, message: &str) -> Result<()> {
        let msg = std::ffi::CString::new(message)?;
        let ctx = sys::aiol_error_context {
            size: std::mem::size_of::<sys::aiol_error_context>(),
            code: error.map_or(0, |e| e.code()),
            message: msg.as_ptr(),
            detail: std::ptr::null(),
            loop_: self.shared.raw,
            object_kind: sys::AIOL_OBJ_NONE,
            object: std::ptr::null_mut(),
            protocol_data: std::ptr::null_mut(),
        };
        // SAFETY: live loop; ctx and its strings are copied by the library.
        check0(unsafe { sys::aiol_loop_call_exception_handler(self.shared.raw, &ctx) })
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        // SAFETY: we own the loop; it cannot be running (run borrows self). Every destroy
        // runs here, on the thread that created the closures.
        unsafe { sys::aiol_loop_close(self.shared.raw) };
        if let Some(p) = self.shared.take_panic() {
            if !std::thread::panicking() {
                resume_unwind(p);
            }
        }
    }
}

/// What the exception handler receives (asyncio's exception-handler context).
#[derive(Debug, Clone, Copy)]
pub struct ErrorContext<'a> {
    /// The error, if the report carries one.
    pub error: Option<Error>,
    /// A description of what happened.
    pub message: &'a str,
    /// Extra detail (e.g. a TLS library's reason), if any.
    pub detail: Option<&'a str>,
    /// What kind of object the report is about.
    pub object_kind: ObjectKind,
}

/// The kind of object an [`ErrorContext`] is about (`AIOL_OBJ_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// No object.
    None,
    /// A server.
    Server,
    /// A transport.
    Transport,
    /// A scheduled callback.
    Handle,
    /// The loop.
    Loop,
    /// A kind this binding does not know.
    Other(i32),
}

unsafe extern "C" fn exc_tramp<F: FnMut(&ErrorContext<'_>)>(
    ctx: *const sys::aiol_error_context,
    ud: *mut c_void,
) {
    let b = &mut *(ud as *mut CbBox<F>);
    let shared = b.shared;
    let c = &*ctx;
    let text = |p: *const std::os::raw::c_char| {
        if p.is_null() {
            None
        } else {
            Some(CStr::from_ptr(p).to_str().unwrap_or("<non-UTF-8 message>"))
        }
    };
    let ec = ErrorContext {
        error: if c.code != 0 {
            Some(Error::from_code(c.code))
        } else {
            None
        },
        message: text(c.message).unwrap_or(""),
        detail: text(c.detail),
        object_kind: match c.object_kind {
            sys::AIOL_OBJ_NONE => ObjectKind::None,
            sys::AIOL_OBJ_SERVER => ObjectKind::Server,
            sys::AIOL_OBJ_TRANSPORT => ObjectKind::Transport,
            sys::AIOL_OBJ_HANDLE => ObjectKind::Handle,
            sys::AIOL_OBJ_LOOP => ObjectKind::Loop,
            k => ObjectKind::Other(k),
        },
    };
    if let Some(f) = b.f.as_mut() {
        guard(shared, (), || f(&ec));
    }
}

/// A scheduled callback (asyncio `Handle` / `TimerHandle`), also returned by
/// [`EventLoop::connect`](crate::EventLoop::connect) to cancel the attempt.
///
/// Dropping a `Handle` only releases the C reference (`aiol_handle_release`); it **never
/// cancels**: a callback you schedule and forget still runs. Call [`cancel`](Handle::cancel)
/// to prevent the run; the closure is then dropped by the loop.
#[derive(Debug)]
pub struct Handle {
    raw: *mut sys::aiol_handle,
    _not_send: PhantomData<*mut ()>,
}

/// A timer ([`EventLoop::call_later`] / [`EventLoop::call_at`]): the same type as
/// [`Handle`].
pub type TimerHandle = Handle;

impl Handle {
    pub(crate) fn from_raw(raw: *mut sys::aiol_handle) -> Handle {
        Handle {
            raw,
            _not_send: PhantomData,
        }
    }

    /// Cancels the callback: `true` if this prevented the run, `false` if it had run, was
    /// running or was cancelled already. Allowed inside the callback itself.
    pub fn cancel(&self) -> bool {
        // SAFETY: we own a reference to the handle; we are on the loop thread (!Send).
        unsafe { sys::aiol_handle_cancel(self.raw) == 1 }
    }

    /// `true` if the handle was cancelled.
    pub fn cancelled(&self) -> bool {
        // SAFETY: we own a reference.
        unsafe { sys::aiol_handle_cancelled(self.raw) == 1 }
    }

    /// The deadline on the loop's clock ([`EventLoop::now`]); zero for a `call_soon`
    /// handle.
    pub fn when(&self) -> Duration {
        // SAFETY: we own a reference.
        Duration::from_nanos(unsafe { sys::aiol_handle_when(self.raw) })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: gives up our reference; never cancels.
        unsafe { sys::aiol_handle_release(self.raw) };
    }
}

/// Owns one C hold on the loop and a reference to its shared state (dropped after the
/// unhold, see the module docs).
struct Hold {
    shared: Arc<Shared>,
    held: bool,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.held {
            // SAFETY: releases the hold we took; `shared` is dropped after this returns.
            unsafe { sys::aiol_loop_unhold(self.shared.raw) };
        }
    }
}

/// A `Send + Sync + Clone` handle to an [`EventLoop`] for other threads.
///
/// It owns a hold on the C loop (taken by [`EventLoop::handle`], released when the last
/// clone is dropped), so no thread can post into a freed loop: after the `EventLoop` is
/// dropped, calls return [`Error::CLOSED`] and the loop's memory is freed by whichever
/// handle goes last.
///
/// **A hold keeps [`EventLoop::run`] running**: while any `LoopHandle` is alive the loop
/// counts as alive, so end such a run with [`LoopHandle::stop`] / [`EventLoop::stop`], or
/// by dropping every handle.
#[derive(Clone)]
pub struct LoopHandle {
    hold: Arc<Hold>,
}

impl std::fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopHandle")
            .field("raw", &self.hold.shared.raw)
            .finish()
    }
}

impl LoopHandle {
    fn raw(&self) -> Result<*mut sys::aiol_loop> {
        if self.hold.held {
            Ok(self.hold.shared.raw)
        } else {
            Err(Error::CLOSED)
        }
    }

    /// Schedules `f` on the loop thread for its next iteration and wakes the loop.
    /// Callbacks posted by one thread run in posting order. [`Error::CLOSED`] once the
    /// `EventLoop` is dropped; callbacks still queued then are dropped without running.
    pub fn call_soon_threadsafe<F: FnOnce(&EventLoop) + Send + 'static>(&self, f: F) -> Result<()> {
        let raw = self.raw()?;
        let ud = CbBox::into_raw(Arc::as_ptr(&self.hold.shared), f);
        // SAFETY: [any thread] with our hold; matching pair. The closure is Send, so it
        // may run and be dropped on the loop thread.
        let rc = unsafe {
            sys::aiol_loop_call_soon_threadsafe(
                raw,
                Some(once_tramp::<F>),
                ud,
                Some(cb_destroy::<F>),
            )
        };
        if rc < 0 {
            // SAFETY: refused, we own ud.
            unsafe { cb_free::<F>(ud) };
        }
        check0(rc)
    }

    /// Makes the running (or the next) [`EventLoop::run`] return after its current batch.
    pub fn stop(&self) -> Result<()> {
        let raw = self.raw()?;
        // SAFETY: [any thread] with our hold.
        check0(unsafe { sys::aiol_loop_stop(raw) })
    }
}
