//! [`Transport`], [`TransportRef`] and [`SocketAddress`].
use std::ffi::c_void;
use std::io::IoSlice;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Deref;
use std::os::fd::{AsRawFd, RawFd};
use std::os::raw::c_int;
use std::path::PathBuf;

use aioloop_sys as sys;

use crate::error::{check, check0, Error, Result};
use crate::event_loop::{guard, EventLoop, Shared};
use crate::protocol::{vtable, Adapter, Buffered, BufferedProtocol, ProtoBox, Protocol, Stream};

/// The address of a socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SocketAddress {
    /// An IPv4 or IPv6 address.
    Inet(SocketAddr),
    /// A Unix-domain socket path; empty for an unnamed socket (the client side of a
    /// connection, usually).
    Unix(PathBuf),
}

impl SocketAddress {
    /// The IP address, if this is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            SocketAddress::Inet(a) => Some(*a),
            SocketAddress::Unix(_) => None,
        }
    }

    /// Decodes a `sockaddr_storage` of `len` bytes.
    ///
    /// # Safety
    /// `ss` holds an address the kernel or library wrote, valid for `len` bytes.
    pub(crate) unsafe fn from_storage(
        ss: &sys::sockaddr_storage,
        len: sys::socklen_t,
    ) -> Option<SocketAddress> {
        match ss.ss_family as c_int {
            libc::AF_INET => {
                let a = &*(ss as *const _ as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddress::Inet(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                ))))
            }
            libc::AF_INET6 => {
                let a = &*(ss as *const _ as *const libc::sockaddr_in6);
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddress::Inet(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                ))))
            }
            libc::AF_UNIX => {
                use std::os::unix::ffi::OsStrExt;
                let a = &*(ss as *const _ as *const libc::sockaddr_un);
                let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
                let n = (len as usize).saturating_sub(base).min(a.sun_path.len());
                let bytes: Vec<u8> = a.sun_path[..n].iter().map(|&c| c as u8).collect();
                let end = if bytes.first() == Some(&0) {
                    n // abstract namespace: keep the leading NUL
                } else {
                    bytes.iter().position(|&c| c == 0).unwrap_or(n)
                };
                Some(SocketAddress::Unix(PathBuf::from(
                    std::ffi::OsStr::from_bytes(&bytes[..end]),
                )))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketAddress::Inet(a) => write!(f, "{a}"),
            SocketAddress::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

pub(crate) fn read_addr(
    call: impl FnOnce(*mut sys::sockaddr_storage, *mut sys::socklen_t) -> c_int,
) -> Result<SocketAddress> {
    // SAFETY: sockaddr_storage is plain data; zero is a valid value.
    let mut ss: sys::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<sys::sockaddr_storage>() as sys::socklen_t;
    check0(call(&mut ss, &mut len))?;
    // SAFETY: the library filled `len` bytes.
    unsafe { SocketAddress::from_storage(&ss, len) }.ok_or(Error::from_code(sys::AIOL_ENOTSUP))
}

/// A connection (asyncio `_SelectorSocketTransport`), borrowed for the duration of a
/// [`Protocol`] callback, or reached through a [`TransportRef`].
///
/// Every call is a thin wrapper over `aiol_transport_*`; once the connection is lost, all
/// of them except the address getters return [`Error::CLOSED`]. Nothing here runs a
/// callback inline: e.g. a `pause_writing` triggered by [`write`](Transport::write) runs
/// right after the current callback returns.
pub struct Transport {
    raw: *mut sys::aiol_transport,
    lp: EventLoop,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("raw", &self.raw).finish()
    }
}

impl Transport {
    /// # Safety
    /// `raw` is a live transport of the loop `shared` belongs to; `shared` is live.
    pub(crate) unsafe fn borrowed(
        raw: *mut sys::aiol_transport,
        shared: *const Shared,
    ) -> Transport {
        Transport {
            raw,
            lp: EventLoop::view(shared),
        }
    }

    /// The underlying `aiol_transport *`, for calls into [`aioloop_sys`].
    pub fn as_raw(&self) -> *mut sys::aiol_transport {
        self.raw
    }

    /// The loop this transport belongs to.
    pub fn event_loop(&self) -> &EventLoop {
        &self.lp
    }

    /// A counted reference that outlives the callback (`aiol_transport_ref`).
    pub fn to_ref(&self) -> TransportRef {
        // SAFETY: the transport memory is live while we can name it.
        unsafe { sys::aiol_transport_ref(self.raw) };
        TransportRef {
            t: Transport {
                raw: self.raw,
                lp: EventLoop::view_of(&self.lp.shared),
            },
        }
    }

    /// Writes `data`: sent now if possible, the rest copied and queued. Socket errors are
    /// not returned here; they close the transport and reach `connection_lost`.
    /// [`Error::STATE`] after [`write_eof`](Transport::write_eof), [`Error::CLOSED`] after
    /// close/abort or once lost, [`Error::BUSY`] during [`sendfile`](Transport::sendfile).
    pub fn write(&self, data: &[u8]) -> Result<()> {
        // SAFETY: live transport memory; data is copied or sent before returning.
        check0(unsafe {
            sys::aiol_transport_write(self.raw, data.as_ptr() as *const c_void, data.len())
        })
    }

    /// Writes several buffers in order, as one `write` (`aiol_transport_writev`).
    pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> Result<()> {
        // SAFETY: IoSlice is ABI-compatible with `struct iovec`, which has the layout of
        // aiol_buf { const void *base; size_t len; }.
        check0(unsafe {
            sys::aiol_transport_writev(self.raw, bufs.as_ptr() as *const sys::aiol_buf, bufs.len())
        })
    }

    /// Half-closes once the queue has drained (`shutdown(SHUT_WR)`). Idempotent.
    pub fn write_eof(&self) -> Result<()> {
        // SAFETY: live transport memory.
        check0(unsafe { sys::aiol_transport_write_eof(self.raw) })
    }

    /// Whether [`write_eof`](Transport::write_eof) is supported.
    pub fn can_write_eof(&self) -> bool {
        // SAFETY: live transport memory.
        unsafe { sys::aiol_transport_can_write_eof(self.raw) == 1 }
    }

    /// Stops reading, flushes the queue, then closes; `connection_lost(None)` follows.
    /// Idempotent.
    pub fn close(&self) -> Result<()> {
        // SAFETY: live transport memory.
        check0(unsafe { sys::aiol_transport_close(self.raw) })
    }

    /// Drops the queue and closes now; `connection_lost(Some(Error::CANCELED))` follows.
    pub fn abort(&self) -> Result<()> {
        // SAFETY: live transport memory.
        check0(unsafe { sys::aiol_transport_abort(self.raw) })
    }

    /// `true` once closing, aborted or lost.
    pub fn is_closing(&self) -> bool {
        // SAFETY: live transport memory.
        unsafe { sys::aiol_transport_is_closing(self.raw) == 1 }
    }

    /// Stops delivering data until [`resume_reading`](Transport::resume_reading).
    pub fn pause_reading(&self) -> Result<()> {
        // SAFETY: live transport memory.
        check0(unsafe { sys::aiol_transport_pause_reading(self.raw) })
    }

    /// Resumes delivering data.
    pub fn resume_reading(&self) -> Result<()> {
        // SAFETY: live transport memory.
        check0(unsafe { sys::aiol_transport_resume_reading(self.raw) })
    }

    /// Whether data is being delivered (not paused, not closing).
    pub fn is_reading(&self) -> bool {
        // SAFETY: live transport memory.
        unsafe { sys::aiol_transport_is_reading(self.raw) == 1 }
    }

    /// Sets the flow-control marks driving `pause_writing` / `resume_writing`. `None` for
    /// either picks asyncio's rule (high 64 KiB, or 4 × low when only low is given; low =
    /// high / 4). [`Error::INVALID`] if high < low.
    pub fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let high = high.unwrap_or(sys::AIOL_WBUF_DEFAULT);
        let low = low.unwrap_or(sys::AIOL_WBUF_DEFAULT);
        // SAFETY: live transport memory.
        check0(unsafe { sys::aiol_transport_set_write_buffer_limits(self.raw, high, low) })
    }

    /// The current `(high, low)` flow-control marks.
    pub fn write_buffer_limits(&self) -> Result<(usize, usize)> {
        let (mut high, mut low) = (0, 0);
        // SAFETY: live transport memory; out-pointers.
        check0(unsafe {
            sys::aiol_transport_get_write_buffer_limits(self.raw, &mut high, &mut low)
        })?;
        Ok((high, low))
    }

    /// Bytes queued and not yet sent.
    pub fn write_buffer_size(&self) -> usize {
        // SAFETY: live transport memory.
        unsafe { sys::aiol_transport_get_write_buffer_size(self.raw) }
    }

    /// The peer's address (captured at accept/connect; readable after close).
    pub fn peer_addr(&self) -> Result<SocketAddress> {
        // SAFETY: live transport memory; out-pointers.
        read_addr(|a, l| unsafe { sys::aiol_transport_peername(self.raw, a, l) })
    }

    /// The local address (captured at accept/connect; readable after close).
    pub fn local_addr(&self) -> Result<SocketAddress> {
        // SAFETY: live transport memory; out-pointers.
        read_addr(|a, l| unsafe { sys::aiol_transport_sockname(self.raw, a, l) })
    }

    /// The socket fd; [`Error::CLOSED`] once closed. Do not close it or watch it yourself.
    pub fn fileno(&self) -> Result<RawFd> {
        // SAFETY: live transport memory.
        check(unsafe { sys::aiol_transport_fileno(self.raw) })
    }

    /// Sends `count` bytes of `file` from `offset` (`count` 0: to the end) once the write
    /// queue has drained, with `sendfile(2)` (read + send for files it refuses). The file
    /// is kept open until `done` has run, then dropped; its position is not used. Reading
    /// is paused and writes return [`Error::BUSY`] until then.
    ///
    /// `done` runs once, never inside this call, before `connection_lost`, with the bytes
    /// sent or the error ([`Error::CANCELED`] if the transport closed first).
    pub fn sendfile<F, D>(&self, file: F, offset: u64, count: u64, done: D) -> Result<()>
    where
        F: AsRawFd + 'static,
        D: FnOnce(&mut Transport, Result<u64>) + 'static,
    {
        let fd = file.as_raw_fd();
        let ud = Box::into_raw(Box::new(SendfileBox {
            shared: self.lp.shared_ptr(),
            file,
            done: Some(done),
        })) as *mut c_void;
        // SAFETY: live transport; on success done runs exactly once and frees ud.
        let rc = unsafe {
            sys::aiol_transport_sendfile(
                self.raw,
                fd,
                offset,
                count,
                Some(sendfile_done::<F, D>),
                ud,
            )
        };
        if rc < 0 {
            // SAFETY: refused, we own ud.
            drop(unsafe { Box::from_raw(ud as *mut SendfileBox<F, D>) });
        }
        check0(rc)
    }

    /// The ALPN protocol negotiated over TLS; `None` if there was none or the transport is
    /// plain.
    pub fn tls_alpn(&self) -> Option<&[u8]> {
        let (mut p, mut len) = (std::ptr::null(), 0);
        // SAFETY: live transport memory; the bytes stay valid while it lives, which our
        // borrow of `self` guarantees.
        let rc = unsafe { sys::aiol_transport_tls_alpn(self.raw, &mut p, &mut len) };
        // SAFETY: (p, len) is the library's buffer described above.
        (rc == 0 && !p.is_null()).then(|| unsafe { slice(p as *const u8, len) })
    }

    /// The TLS server name (SNI) the client sent (server side) or asked for (client side);
    /// `None` if there was none or the transport is plain.
    pub fn tls_server_name(&self) -> Option<&str> {
        // SAFETY: live transport memory; NULL or NUL-terminated text living as long as it.
        let p = unsafe { sys::aiol_transport_tls_server_name(self.raw) };
        if p.is_null() {
            return None;
        }
        // SAFETY: see above.
        unsafe { std::ffi::CStr::from_ptr(p) }.to_str().ok()
    }

    /// The peer's TLS certificate, DER-encoded; `None` if it sent none or the transport is
    /// plain. A client always sees the server's; a server sees one only when its context
    /// asks for client certificates (through [`TlsContext::ssl_ctx`](crate::TlsContext::ssl_ctx)).
    pub fn tls_peer_cert_der(&self) -> Option<&[u8]> {
        let (mut p, mut len) = (std::ptr::null(), 0);
        // SAFETY: as for tls_alpn.
        let rc = unsafe { sys::aiol_transport_tls_peer_cert_der(self.raw, &mut p, &mut len) };
        // SAFETY: (p, len) is the library's buffer.
        (rc == 0 && !p.is_null()).then(|| unsafe { slice(p as *const u8, len) })
    }

    /// Whether this transport speaks TLS.
    pub fn is_tls(&self) -> bool {
        !self.tls_ssl().is_null()
    }

    /// The OpenSSL `SSL *` (borrowed) of a TLS transport, NULL for a plain one.
    pub fn tls_ssl(&self) -> *mut c_void {
        // SAFETY: live transport memory.
        unsafe { sys::aiol_transport_tls_ssl(self.raw) }
    }

    fn set_adapter<A: Adapter>(&self, a: A) -> Result<()> {
        let ud = ProtoBox::into_raw(self.lp.shared_ptr(), a);
        let vt = vtable::<A>();
        // SAFETY: live transport; the vtable matches the box type.
        let rc = unsafe { sys::aiol_transport_set_protocol(self.raw, &vt, ud) };
        if rc < 0 {
            // SAFETY: refused, we own ud.
            unsafe { ProtoBox::<A>::free(ud) };
        }
        check0(rc)
    }

    /// Switches the transport to `protocol` (asyncio `set_protocol`): later callbacks go
    /// to it (no `connection_made`); the old protocol is dropped after the current
    /// callback returns.
    pub fn set_protocol<P: Protocol + 'static>(&self, protocol: P) -> Result<()> {
        self.set_adapter(Stream(protocol))
    }

    /// As [`set_protocol`](Transport::set_protocol) with a [`BufferedProtocol`].
    pub fn set_buffered_protocol<P: BufferedProtocol + 'static>(&self, protocol: P) -> Result<()> {
        self.set_adapter(Buffered(protocol))
    }
}

/// # Safety
/// `p` is valid for `len` bytes for the returned lifetime.
unsafe fn slice<'a>(p: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(p, len)
    }
}

struct SendfileBox<F, D> {
    shared: *const Shared,
    file: F,
    done: Option<D>,
}

unsafe extern "C" fn sendfile_done<F, D>(
    t: *mut sys::aiol_transport,
    status: c_int,
    sent: u64,
    ud: *mut c_void,
) where
    D: FnOnce(&mut Transport, Result<u64>),
{
    let mut b = Box::from_raw(ud as *mut SendfileBox<F, D>);
    let shared = b.shared;
    let done = b.done.take();
    guard(shared, (), move || {
        if let Some(done) = done {
            let mut tr = Transport::borrowed(t, shared);
            done(
                &mut tr,
                if status == 0 {
                    Ok(sent)
                } else {
                    Err(Error::from_code(status))
                },
            );
        }
        let _keep_open_until_now = &b.file;
        drop(b);
    });
}

/// An owned, counted reference to a transport (`aiol_transport_ref` /
/// `aiol_transport_unref`), usable outside protocol callbacks on the loop's thread.
///
/// It keeps the transport's memory (not the connection) alive: once the connection is
/// gone, every call returns [`Error::CLOSED`] (the address getters keep working). It also
/// keeps the C loop allocated, never running: after the [`EventLoop`] is dropped, calls
/// return [`Error::CLOSED`]. Dereferences to [`Transport`].
pub struct TransportRef {
    t: Transport,
}

impl std::fmt::Debug for TransportRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportRef")
            .field("raw", &self.t.raw)
            .finish()
    }
}

impl TransportRef {
    /// Takes a new reference to `raw`.
    ///
    /// # Safety
    /// `raw` is a live transport of the loop of `shared`.
    pub(crate) unsafe fn new(raw: *mut sys::aiol_transport, shared: *const Shared) -> TransportRef {
        sys::aiol_transport_ref(raw);
        TransportRef {
            t: Transport::borrowed(raw, shared),
        }
    }

    /// `true` while the connection is up (not closing and not lost).
    pub fn is_open(&self) -> bool {
        !self.t.is_closing()
    }
}

impl Deref for TransportRef {
    type Target = Transport;
    fn deref(&self) -> &Transport {
        &self.t
    }
}

impl Clone for TransportRef {
    fn clone(&self) -> TransportRef {
        self.t.to_ref()
    }
}

impl Drop for TransportRef {
    fn drop(&mut self) {
        // SAFETY: gives up the reference we took.
        unsafe { sys::aiol_transport_unref(self.t.raw) };
    }
}
