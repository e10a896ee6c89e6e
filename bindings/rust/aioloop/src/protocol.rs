//! [`Protocol`] and [`BufferedProtocol`], and the C vtable that drives them.
use std::ffi::c_void;
use std::os::raw::c_int;

use aioloop_sys as sys;

use crate::error::Error;
use crate::event_loop::{guard, Shared};
use crate::transport::Transport;

/// The callbacks of a stream connection (asyncio `Protocol`). Every method has a no-op
/// default.
///
/// Per transport they run in this order: `connection_made`; then `data_received`,
/// interleaved with `pause_writing` / `resume_writing` (strictly alternating, pause first);
/// then at most one `eof_received`; then `connection_lost` (if and only if
/// `connection_made` ran). The protocol value is dropped after `connection_lost` returns
/// (or when the loop is dropped).
///
/// A panic in any method aborts the transport, stops the loop and is resumed by
/// [`EventLoop::run`](crate::EventLoop::run).
pub trait Protocol {
    /// The connection is up; `transport` is valid until `connection_lost` returns (keep a
    /// [`TransportRef`](crate::TransportRef) to use it from elsewhere).
    fn connection_made(&mut self, transport: &mut Transport) {
        let _ = transport;
    }

    /// Bytes arrived. `data` is borrowed for the call and never empty.
    fn data_received(&mut self, transport: &mut Transport, data: &[u8]) {
        let _ = (transport, data);
    }

    /// The peer shut down its writing side. Return `true` to keep the transport open for
    /// writing (half-close; close it yourself later), `false` (the default) to close it.
    fn eof_received(&mut self, transport: &mut Transport) -> bool {
        let _ = transport;
        false
    }

    /// The connection is gone: `None` for a clean close, else the error
    /// ([`Error::CANCELED`] after [`Transport::abort`]).
    fn connection_lost(&mut self, transport: &mut Transport, error: Option<Error>) {
        let _ = (transport, error);
    }

    /// The transport's write buffer went over its high-water mark: stop producing.
    fn pause_writing(&mut self, transport: &mut Transport) {
        let _ = transport;
    }

    /// The write buffer drained to its low-water mark: produce again.
    fn resume_writing(&mut self, transport: &mut Transport) {
        let _ = transport;
    }
}

/// A protocol that receives into its own buffer (asyncio `BufferedProtocol`): the loop asks
/// for a buffer with [`get_buffer`](BufferedProtocol::get_buffer), reads into it, and
/// reports how much it filled with [`buffer_updated`](BufferedProtocol::buffer_updated).
///
/// # Safety
///
/// The library writes into the slice returned by `get_buffer` after the call has returned.
/// Implementors promise that this memory stays valid, is not moved, reallocated or
/// accessed until the next `buffer_updated`, `get_buffer` or `connection_lost` of this
/// transport (e.g. do not resize the `Vec` it points into from `pause_writing`). A buffer
/// owned by the protocol and only touched from `buffer_updated` satisfies this.
pub unsafe trait BufferedProtocol {
    /// As [`Protocol::connection_made`].
    fn connection_made(&mut self, transport: &mut Transport) {
        let _ = transport;
    }

    /// The buffer to read into; `size_hint` is 0 when there is no hint. An empty slice
    /// aborts the transport with [`Error::INVALID`].
    fn get_buffer(&mut self, transport: &mut Transport, size_hint: usize) -> &mut [u8];

    /// `nbytes` (never 0) were written at the start of the last buffer.
    fn buffer_updated(&mut self, transport: &mut Transport, nbytes: usize);

    /// As [`Protocol::eof_received`].
    fn eof_received(&mut self, transport: &mut Transport) -> bool {
        let _ = transport;
        false
    }

    /// As [`Protocol::connection_lost`].
    fn connection_lost(&mut self, transport: &mut Transport, error: Option<Error>) {
        let _ = (transport, error);
    }

    /// As [`Protocol::pause_writing`].
    fn pause_writing(&mut self, transport: &mut Transport) {
        let _ = transport;
    }

    /// As [`Protocol::resume_writing`].
    fn resume_writing(&mut self, transport: &mut Transport) {
        let _ = transport;
    }
}

/// One shape for both traits, so one set of trampolines serves both.
pub(crate) trait Adapter: 'static {
    const BUFFERED: bool;
    fn connection_made(&mut self, t: &mut Transport);
    fn data_received(&mut self, t: &mut Transport, data: &[u8]);
    fn get_buffer(&mut self, t: &mut Transport, hint: usize) -> (*mut u8, usize);
    fn buffer_updated(&mut self, t: &mut Transport, n: usize);
    fn eof_received(&mut self, t: &mut Transport) -> bool;
    fn connection_lost(&mut self, t: &mut Transport, e: Option<Error>);
    fn pause_writing(&mut self, t: &mut Transport);
    fn resume_writing(&mut self, t: &mut Transport);
}

pub(crate) struct Stream<P>(pub(crate) P);
pub(crate) struct Buffered<P>(pub(crate) P);

impl<P: Protocol + 'static> Adapter for Stream<P> {
    const BUFFERED: bool = false;
    fn connection_made(&mut self, t: &mut Transport) {
        self.0.connection_made(t)
    }
    fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
        self.0.data_received(t, data)
    }
    fn get_buffer(&mut self, _t: &mut Transport, _hint: usize) -> (*mut u8, usize) {
        (std::ptr::null_mut(), 0)
    }
    fn buffer_updated(&mut self, _t: &mut Transport, _n: usize) {}
    fn eof_received(&mut self, t: &mut Transport) -> bool {
        self.0.eof_received(t)
    }
    fn connection_lost(&mut self, t: &mut Transport, e: Option<Error>) {
        self.0.connection_lost(t, e)
    }
    fn pause_writing(&mut self, t: &mut Transport) {
        self.0.pause_writing(t)
    }
    fn resume_writing(&mut self, t: &mut Transport) {
        self.0.resume_writing(t)
    }
}

impl<P: BufferedProtocol + 'static> Adapter for Buffered<P> {
    const BUFFERED: bool = true;
    fn connection_made(&mut self, t: &mut Transport) {
        self.0.connection_made(t)
    }
    fn data_received(&mut self, _t: &mut Transport, _data: &[u8]) {}
    fn get_buffer(&mut self, t: &mut Transport, hint: usize) -> (*mut u8, usize) {
        let b = self.0.get_buffer(t, hint);
        (b.as_mut_ptr(), b.len())
    }
    fn buffer_updated(&mut self, t: &mut Transport, n: usize) {
        self.0.buffer_updated(t, n)
    }
    fn eof_received(&mut self, t: &mut Transport) -> bool {
        self.0.eof_received(t)
    }
    fn connection_lost(&mut self, t: &mut Transport, e: Option<Error>) {
        self.0.connection_lost(t, e)
    }
    fn pause_writing(&mut self, t: &mut Transport) {
        self.0.pause_writing(t)
    }
    fn resume_writing(&mut self, t: &mut Transport) {
        self.0.resume_writing(t)
    }
}

/// A protocol's `user_data`: the protocol and the loop state its panics go to.
pub(crate) struct ProtoBox<A> {
    pub(crate) shared: *const Shared,
    pub(crate) a: A,
}

impl<A: Adapter> ProtoBox<A> {
    pub(crate) fn into_raw(shared: *const Shared, a: A) -> *mut c_void {
        Box::into_raw(Box::new(ProtoBox { shared, a })) as *mut c_void
    }

    /// Frees a box the library never accepted.
    pub(crate) unsafe fn free(ud: *mut c_void) {
        drop(Box::from_raw(ud as *mut ProtoBox<A>));
    }
}

/// Runs a protocol callback: builds the borrowed [`Transport`], catches a panic (stash it,
/// abort the transport, stop the loop).
unsafe fn call<A: Adapter, R>(
    t: *mut sys::aiol_transport,
    ud: *mut c_void,
    default: R,
    f: impl FnOnce(&mut A, &mut Transport) -> R,
) -> R {
    let b = &mut *(ud as *mut ProtoBox<A>);
    let shared = b.shared;
    let a = &mut b.a;
    let r = guard(shared, None, || {
        let mut tr = Transport::borrowed(t, shared);
        Some(f(a, &mut tr))
    });
    match r {
        Some(r) => r,
        None => {
            // It panicked. The transport may be lost already (connection_lost): then this
            // is a harmless AIOL_ECLOSED.
            sys::aiol_transport_abort(t);
            default
        }
    }
}

unsafe extern "C" fn tr_connection_made<A: Adapter>(t: *mut sys::aiol_transport, ud: *mut c_void) {
    call::<A, ()>(t, ud, (), |a, tr| a.connection_made(tr))
}

unsafe extern "C" fn tr_data_received<A: Adapter>(
    t: *mut sys::aiol_transport,
    data: *const c_void,
    len: usize,
    ud: *mut c_void,
) {
    let data = if len == 0 {
        &[][..]
    } else {
        std::slice::from_raw_parts(data as *const u8, len)
    };
    call::<A, ()>(t, ud, (), |a, tr| a.data_received(tr, data))
}

unsafe extern "C" fn tr_eof_received<A: Adapter>(
    t: *mut sys::aiol_transport,
    ud: *mut c_void,
) -> c_int {
    call::<A, c_int>(t, ud, 0, |a, tr| a.eof_received(tr) as c_int)
}

unsafe extern "C" fn tr_connection_lost<A: Adapter>(
    t: *mut sys::aiol_transport,
    status: c_int,
    ud: *mut c_void,
) {
    let e = if status == 0 {
        None
    } else {
        Some(Error::from_code(status))
    };
    call::<A, ()>(t, ud, (), |a, tr| a.connection_lost(tr, e))
}

unsafe extern "C" fn tr_pause_writing<A: Adapter>(t: *mut sys::aiol_transport, ud: *mut c_void) {
    call::<A, ()>(t, ud, (), |a, tr| a.pause_writing(tr))
}

unsafe extern "C" fn tr_resume_writing<A: Adapter>(t: *mut sys::aiol_transport, ud: *mut c_void) {
    call::<A, ()>(t, ud, (), |a, tr| a.resume_writing(tr))
}

unsafe extern "C" fn tr_get_buffer<A: Adapter>(
    t: *mut sys::aiol_transport,
    hint: usize,
    len: *mut usize,
    ud: *mut c_void,
) -> *mut c_void {
    let (p, n) = call::<A, (*mut u8, usize)>(t, ud, (std::ptr::null_mut(), 0), |a, tr| {
        a.get_buffer(tr, hint)
    });
    *len = n;
    p as *mut c_void
}

unsafe extern "C" fn tr_buffer_updated<A: Adapter>(
    t: *mut sys::aiol_transport,
    n: usize,
    ud: *mut c_void,
) {
    call::<A, ()>(t, ud, (), |a, tr| a.buffer_updated(tr, n))
}

/// The protocol's destroy: drops the protocol (exactly once, after connection_lost).
unsafe extern "C" fn tr_destroy<A: Adapter>(ud: *mut c_void) {
    let b = Box::from_raw(ud as *mut ProtoBox<A>);
    let shared = b.shared;
    guard(shared, (), move || drop(b));
}

/// The C vtable for adapter `A` (the library copies it).
pub(crate) fn vtable<A: Adapter>() -> sys::aiol_protocol {
    sys::aiol_protocol {
        size: std::mem::size_of::<sys::aiol_protocol>(),
        connection_made: Some(tr_connection_made::<A>),
        data_received: if A::BUFFERED {
            None
        } else {
            Some(tr_data_received::<A>)
        },
        eof_received: Some(tr_eof_received::<A>),
        connection_lost: Some(tr_connection_lost::<A>),
        pause_writing: Some(tr_pause_writing::<A>),
        resume_writing: Some(tr_resume_writing::<A>),
        get_buffer: if A::BUFFERED {
            Some(tr_get_buffer::<A>)
        } else {
            None
        },
        buffer_updated: if A::BUFFERED {
            Some(tr_buffer_updated::<A>)
        } else {
            None
        },
        destroy: Some(tr_destroy::<A>),
    }
}
