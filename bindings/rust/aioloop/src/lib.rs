//! Safe Rust binding of **libaioloop**: asyncio's event loop, `Server`, socket transports
//! and `Protocol` / `BufferedProtocol` callbacks, implemented in C++ behind a C99 ABI
//! ([`aioloop_sys`] has the raw declarations).
//!
//! * [`EventLoop`] runs everything on one thread: [`call_soon`](EventLoop::call_soon),
//!   [`call_later`](EventLoop::call_later), fd watchers, signal handlers, servers,
//!   connections. It is `!Send`; closures and protocols need not be `Send`.
//! * [`LoopHandle`] (`Send + Sync + Clone`) posts closures from other threads and stops the
//!   loop. It holds the loop alive: a [`run`](EventLoop::run) with live handles ends with
//!   [`stop`](LoopHandle::stop) (or when the handles are dropped).
//! * A [`Protocol`] (or [`BufferedProtocol`]) receives a connection's events and talks back
//!   through the borrowed [`Transport`]; a [`TransportRef`] keeps one past the callback.
//! * TLS (asyncio's SSL transports): a [`TlsContext`] in [`ServerConfig::tls`] or
//!   [`ConnectConfig::tls`]; the same [`Protocol`] callbacks, `connection_made` once the
//!   handshake is done; [`Transport::tls_alpn`] and friends tell what was negotiated.
//! * Everything fallible returns [`Result`] with an [`Error`] wrapping the C code.
//!
//! Ownership follows the C rules: every closure and protocol is boxed, handed to C with a
//! `destroy` callback, and dropped exactly once by the loop (after its last call, on
//! cancel/remove/replace, or when the [`EventLoop`] is dropped). A panic in any callback is
//! caught at the C boundary, stops the loop (aborting the transport if it came from a
//! protocol) and is resumed by [`EventLoop::run`].
//!
//! # Example: an echo server and a client on one loop
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use aioloop::{ConnectConfig, Error, EventLoop, Protocol, ServerConfig, Transport};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
//!         t.write(data).unwrap();
//!     }
//! }
//!
//! struct Client {
//!     got: Rc<RefCell<Vec<u8>>>,
//! }
//! impl Protocol for Client {
//!     fn connection_made(&mut self, t: &mut Transport) {
//!         t.write(b"hello").unwrap();
//!     }
//!     fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
//!         self.got.borrow_mut().extend_from_slice(data);
//!         if self.got.borrow().len() == 5 {
//!             t.close().unwrap();
//!         }
//!     }
//!     fn connection_lost(&mut self, t: &mut Transport, _err: Option<Error>) {
//!         t.event_loop().stop().unwrap();
//!     }
//! }
//!
//! let lp = EventLoop::new()?;
//! let server = lp.create_server(ServerConfig::tcp("127.0.0.1", 0), || Echo)?;
//! let port = server.local_addrs()[0].as_inet().unwrap().port();
//!
//! let got = Rc::new(RefCell::new(Vec::new()));
//! let client = Client { got: got.clone() };
//! lp.connect(ConnectConfig::tcp("127.0.0.1", port), client, |r| {
//!     r.expect("connect failed");
//! })?;
//! lp.run()?;
//! assert_eq!(&*got.borrow(), b"hello");
//! # Ok::<(), aioloop::Error>(())
//! ```
#![warn(missing_docs)]
#![allow(clippy::missing_safety_doc)]

pub use aioloop_sys as sys;

mod error;
mod event_loop;
mod protocol;
mod server;
mod tls;
mod transport;

pub use error::{Error, Result};
pub use event_loop::{ErrorContext, EventLoop, Handle, LoopHandle, ObjectKind, TimerHandle};
pub use protocol::{BufferedProtocol, Protocol};
pub use server::{ConnectConfig, Server, ServerConfig};
pub use tls::TlsContext;
pub use transport::{SocketAddress, Transport, TransportRef};

/// The loaded library's version as `(major, minor, patch)` (`aiol_version`).
pub fn version() -> (u32, u32, u32) {
    // SAFETY: no arguments, no state.
    let v = unsafe { sys::aiol_version() };
    ((v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff)
}

/// The loaded library's version string (`aiol_version_string`).
pub fn version_string() -> &'static str {
    // SAFETY: static text.
    unsafe { error::static_str(sys::aiol_version_string()) }
}

/// Whether an optional feature (`"epoll"`, `"poll"`, `"tls"`, `"io_uring"`, `"debug"`) is
/// built into the loaded library.
pub fn has_feature(name: &str) -> bool {
    match std::ffi::CString::new(name) {
        // SAFETY: NUL-terminated string valid for the call.
        Ok(c) => unsafe { sys::aiol_has_feature(c.as_ptr()) == 1 },
        Err(_) => false,
    }
}
