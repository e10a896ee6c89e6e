//! [`Server`], [`ServerConfig`], [`ConnectConfig`] and the loop's server/client calls.
use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::os::raw::c_int;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aioloop_sys as sys;

use crate::error::{check0, Error, Result};
use crate::event_loop::{guard, EventLoop, Handle, Shared};
use crate::protocol::{vtable, Adapter, Buffered, BufferedProtocol, ProtoBox, Protocol, Stream};
use crate::tls::TlsContext;
use crate::transport::{read_addr, SocketAddress, TransportRef};

/// Where and how a [`Server`] listens (`aiol_server_config`).
///
/// ```
/// use aioloop::ServerConfig;
/// let tcp = ServerConfig::tcp("127.0.0.1", 0);
/// let unix = ServerConfig::unix("/tmp/echo.sock");
/// let custom = ServerConfig { port: 8080, backlog: 512, reuse_port: true, ..Default::default() };
/// # let _ = (tcp, unix, custom);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerConfig {
    /// Host name or address, resolved synchronously; `None`: all interfaces, every family
    /// (one listening socket each).
    pub host: Option<String>,
    /// Port; 0 picks an ephemeral port per socket (read it back with
    /// [`Server::local_addrs`]).
    pub port: u16,
    /// Listen on this Unix-domain socket path instead (a stale socket file is replaced, the
    /// path unlinked on close). Exclusive with `host`.
    pub unix_path: Option<PathBuf>,
    /// The listen backlog, also the accept batch per readiness event; 0: 100.
    pub backlog: u32,
    /// Set `SO_REUSEPORT`.
    pub reuse_port: bool,
    /// Serve TLS with this server context (asyncio `create_server(ssl=...)`); `None`:
    /// plain TCP. The server keeps its own reference. A client context is
    /// [`Error::INVALID`].
    pub tls: Option<TlsContext>,
    /// Closes a connection whose TLS handshake has not completed in time
    /// (`ssl_handshake_timeout`); `None`: 60 s.
    pub tls_handshake_timeout: Option<Duration>,
    /// How long `close` waits for the write queue and `close_notify` to drain before
    /// aborting with [`Error::TIMED_OUT`] (`ssl_shutdown_timeout`); `None`: 30 s.
    pub tls_shutdown_timeout: Option<Duration>,
}

impl ServerConfig {
    /// TCP on `host:port`.
    pub fn tcp(host: impl Into<String>, port: u16) -> ServerConfig {
        ServerConfig {
            host: Some(host.into()),
            port,
            ..Default::default()
        }
    }

    /// A Unix-domain socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            unix_path: Some(path.into()),
            ..Default::default()
        }
    }

    /// Sets [`tls`](ServerConfig::tls).
    pub fn with_tls(mut self, ctx: TlsContext) -> ServerConfig {
        self.tls = Some(ctx);
        self
    }
}

/// Where to connect (`aiol_connect_config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectConfig {
    /// Host name or address (resolved off the loop thread).
    pub host: Option<String>,
    /// Port.
    pub port: u16,
    /// Connect to this Unix-domain socket instead. Exactly one of `host` and `unix_path`.
    pub unix_path: Option<PathBuf>,
    /// Gives up after this long (resolution, connect and TLS handshake); `None`: no
    /// timeout.
    pub timeout: Option<Duration>,
    /// Speak TLS with this client context (asyncio `create_connection(ssl=...)`); `None`:
    /// plain. The connection keeps its own reference. A server context is
    /// [`Error::INVALID`].
    pub tls: Option<TlsContext>,
    /// The name sent as SNI and verified against the certificate; `None`: `host`.
    pub server_hostname: Option<String>,
    /// Fails the connect with [`Error::TIMED_OUT`] if the handshake has not completed in
    /// time; `None`: 60 s.
    pub tls_handshake_timeout: Option<Duration>,
    /// How long `close` waits for the write queue and `close_notify` to drain before
    /// aborting with [`Error::TIMED_OUT`]; `None`: 30 s.
    pub tls_shutdown_timeout: Option<Duration>,
}

impl ConnectConfig {
    /// TCP to `host:port`.
    pub fn tcp(host: impl Into<String>, port: u16) -> ConnectConfig {
        ConnectConfig {
            host: Some(host.into()),
            port,
            ..Default::default()
        }
    }

    /// A Unix-domain socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> ConnectConfig {
        ConnectConfig {
            unix_path: Some(path.into()),
            ..Default::default()
        }
    }

    /// Sets [`timeout`](ConnectConfig::timeout).
    pub fn with_timeout(mut self, timeout: Duration) -> ConnectConfig {
        self.timeout = Some(timeout);
        self
    }

    /// Sets [`tls`](ConnectConfig::tls).
    pub fn with_tls(mut self, ctx: TlsContext) -> ConnectConfig {
        self.tls = Some(ctx);
        self
    }

    /// Sets [`server_hostname`](ConnectConfig::server_hostname).
    pub fn with_server_hostname(mut self, name: impl Into<String>) -> ConnectConfig {
        self.server_hostname = Some(name.into());
        self
    }
}

/// A C timeout in ns: 0 means "the default", so a set but tiny duration stays nonzero.
fn ns(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
    })
}

fn tls_ptr(t: &Option<TlsContext>) -> *mut sys::aiol_tls_context {
    t.as_ref().map_or(std::ptr::null_mut(), TlsContext::as_raw)
}

fn cstr(s: Option<&str>) -> Result<Option<CString>> {
    s.map(CString::new).transpose().map_err(Error::from)
}

fn cpath(p: Option<&Path>) -> Result<Option<CString>> {
    p.map(|p| CString::new(p.as_os_str().as_bytes()))
        .transpose()
        .map_err(Error::from)
}

fn ptr(c: &Option<CString>) -> *const std::os::raw::c_char {
    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

/// A listening server (asyncio `Server`, started serving).
///
/// Dropping it calls `aiol_server_free`: the server is closed if still open (live
/// connections go on), and the factory is dropped once the server is gone.
pub struct Server {
    raw: *mut sys::aiol_server,
    shared: Arc<Shared>,
    _not_send: PhantomData<*mut ()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("raw", &self.raw).finish()
    }
}

struct FactoryBox<F> {
    shared: *const Shared,
    f: F,
}

unsafe extern "C" fn factory_tramp<F: FnMut() -> A, A: Adapter>(
    fd: *mut c_void,
    _peer: *const sys::sockaddr,
    _len: sys::socklen_t,
    ud: *mut *mut c_void,
) -> c_int {
    let b = &mut *(fd as *mut FactoryBox<F>);
    let shared = b.shared;
    match guard(shared, None, || Some((b.f)())) {
        Some(a) => {
            *ud = ProtoBox::into_raw(shared, a);
            0
        }
        None => -1, // it panicked: refuse the connection (the loop is stopping)
    }
}

unsafe extern "C" fn factory_destroy<F>(fd: *mut c_void) {
    let b = Box::from_raw(fd as *mut FactoryBox<F>);
    let shared = b.shared;
    guard(shared, (), move || drop(b));
}

unsafe extern "C" fn wait_closed_tramp<F: FnOnce(&EventLoop)>(
    _s: *mut sys::aiol_server,
    ud: *mut c_void,
) {
    // Runs exactly once (after close and the last connection, or at loop close): free.
    let b = Box::from_raw(ud as *mut (*const Shared, F));
    let (shared, f) = *b;
    guard(shared, (), move || f(&EventLoop::view(shared)));
}

impl Server {
    /// Stops listening and closes the listening sockets; the factory never runs after this
    /// returns; live connections go on. Idempotent.
    pub fn close(&self) -> Result<()> {
        // SAFETY: we own the server pointer.
        check0(unsafe { sys::aiol_server_close(self.raw) })
    }

    /// Closes every connection of this server (flushing what it still owes).
    pub fn close_clients(&self) -> Result<()> {
        // SAFETY: we own the server pointer.
        check0(unsafe { sys::aiol_server_close_clients(self.raw) })
    }

    /// Aborts every connection of this server.
    pub fn abort_clients(&self) -> Result<()> {
        // SAFETY: we own the server pointer.
        check0(unsafe { sys::aiol_server_abort_clients(self.raw) })
    }

    /// Runs `f` once, after the server is closed and its last connection has gone (or when
    /// the loop is dropped), never inside this call.
    pub fn wait_closed<F: FnOnce(&EventLoop) + 'static>(&self, f: F) -> Result<()> {
        let ud = Box::into_raw(Box::new((Arc::as_ptr(&self.shared), f))) as *mut c_void;
        // SAFETY: we own the server pointer; on success the callback runs exactly once and
        // frees ud.
        let rc =
            unsafe { sys::aiol_server_wait_closed(self.raw, Some(wait_closed_tramp::<F>), ud) };
        if rc < 0 {
            // SAFETY: refused, we own ud.
            drop(unsafe { Box::from_raw(ud as *mut (*const Shared, F)) });
        }
        check0(rc)
    }

    /// Whether the server is listening.
    pub fn is_serving(&self) -> bool {
        // SAFETY: we own the server pointer.
        unsafe { sys::aiol_server_is_serving(self.raw) == 1 }
    }

    /// The addresses of the listening sockets (empty once closed).
    pub fn local_addrs(&self) -> Vec<SocketAddress> {
        // SAFETY: we own the server pointer.
        let n = unsafe { sys::aiol_server_socket_count(self.raw) };
        (0..n)
            .filter_map(|i| {
                read_addr(|a, l| unsafe { sys::aiol_server_sockname(self.raw, i, a, l) }).ok()
            })
            .collect()
    }

    /// The underlying `aiol_server *`, for calls into [`aioloop_sys`].
    pub fn as_raw(&self) -> *mut sys::aiol_server {
        self.raw
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: gives up our pointer; never fails with EBUSY. A failure (ETHREAD) is
        // impossible: Server is !Send and lives on the loop thread.
        unsafe { sys::aiol_server_free(self.raw) };
    }
}

struct DoneBox<D> {
    shared: *const Shared,
    done: D,
}

unsafe extern "C" fn connect_done<D: FnOnce(Result<TransportRef>)>(
    t: *mut sys::aiol_transport,
    status: c_int,
    ud: *mut c_void,
) {
    // done runs exactly once for an accepted connect: free.
    let b = Box::from_raw(ud as *mut DoneBox<D>);
    let DoneBox { shared, done } = *b;
    guard(shared, (), move || {
        let r = if status == 0 && !t.is_null() {
            Ok(TransportRef::new(t, shared))
        } else {
            Err(Error::from_code(if status == 0 {
                sys::AIOL_EINVAL
            } else {
                status
            }))
        };
        done(r)
    });
}

impl EventLoop {
    fn start_server<A: Adapter, F: FnMut() -> A + 'static>(
        &self,
        listen_fd: Option<OwnedFd>,
        cfg: &ServerConfig,
        factory: F,
    ) -> Result<Server> {
        let host = cstr(cfg.host.as_deref())?;
        let path = cpath(cfg.unix_path.as_deref())?;
        let c = sys::aiol_server_config {
            size: std::mem::size_of::<sys::aiol_server_config>(),
            host: ptr(&host),
            port: cfg.port,
            unix_path: ptr(&path),
            backlog: c_int::try_from(cfg.backlog).map_err(|_| Error::INVALID)?,
            reuse_port: cfg.reuse_port as c_int,
            tls: tls_ptr(&cfg.tls),
            tls_handshake_timeout_ns: ns(cfg.tls_handshake_timeout),
            tls_shutdown_timeout_ns: ns(cfg.tls_shutdown_timeout),
        };
        let vt = vtable::<A>();
        let fdata = Box::into_raw(Box::new(FactoryBox {
            shared: self.shared_ptr(),
            f: factory,
        })) as *mut c_void;
        let mut raw = std::ptr::null_mut();
        // SAFETY: live loop; config, strings and vtable are copied; the factory pair
        // matches the boxed type.
        let rc = unsafe {
            match &listen_fd {
                None => sys::aiol_server_start(
                    self.as_raw(),
                    &c,
                    &vt,
                    Some(factory_tramp::<F, A>),
                    fdata,
                    Some(factory_destroy::<F>),
                    &mut raw,
                ),
                Some(fd) => sys::aiol_server_start_fd(
                    self.as_raw(),
                    std::os::fd::AsRawFd::as_raw_fd(fd),
                    &c,
                    &vt,
                    Some(factory_tramp::<F, A>),
                    fdata,
                    Some(factory_destroy::<F>),
                    &mut raw,
                ),
            }
        };
        if rc < 0 {
            // SAFETY: refused, we own the factory (and the fd, closed by its drop).
            drop(unsafe { Box::from_raw(fdata as *mut FactoryBox<F>) });
            return Err(Error::from_code(rc));
        }
        if let Some(fd) = listen_fd {
            let _ = fd.into_raw_fd(); // the server owns it now
        }
        Ok(Server {
            raw,
            shared: Arc::clone(&self.shared),
            _not_send: PhantomData,
        })
    }

    /// Binds, listens and starts serving (asyncio `create_server`): each accepted
    /// connection gets a protocol from `factory`. If any address fails to bind, nothing is
    /// left open and the error is returned.
    ///
    /// ```
    /// use aioloop::{EventLoop, Protocol, ServerConfig, Transport};
    /// struct Echo;
    /// impl Protocol for Echo {
    ///     fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
    ///         let _ = t.write(data);
    ///     }
    /// }
    /// let lp = EventLoop::new()?;
    /// let server = lp.create_server(ServerConfig::tcp("127.0.0.1", 0), || Echo)?;
    /// assert!(server.is_serving());
    /// # Ok::<(), aioloop::Error>(())
    /// ```
    pub fn create_server<P, F>(&self, cfg: ServerConfig, mut factory: F) -> Result<Server>
    where
        P: Protocol + 'static,
        F: FnMut() -> P + 'static,
    {
        self.start_server(None, &cfg, move || Stream(factory()))
    }

    /// As [`create_server`](EventLoop::create_server) with [`BufferedProtocol`]s.
    pub fn create_buffered_server<P, F>(&self, cfg: ServerConfig, mut factory: F) -> Result<Server>
    where
        P: BufferedProtocol + 'static,
        F: FnMut() -> P + 'static,
    {
        self.start_server(None, &cfg, move || Buffered(factory()))
    }

    /// Serves an inherited listening socket (systemd, a parent, a
    /// `std::net::TcpListener`); `cfg` supplies the backlog. The socket is the server's on
    /// success and closed on failure.
    pub fn create_server_from_listener<P, F>(
        &self,
        listener: impl Into<OwnedFd>,
        cfg: ServerConfig,
        mut factory: F,
    ) -> Result<Server>
    where
        P: Protocol + 'static,
        F: FnMut() -> P + 'static,
    {
        self.start_server(Some(listener.into()), &cfg, move || Stream(factory()))
    }

    fn connect_adapter<A: Adapter, D: FnOnce(Result<TransportRef>) + 'static>(
        &self,
        cfg: &ConnectConfig,
        a: A,
        done: D,
    ) -> Result<Handle> {
        let host = cstr(cfg.host.as_deref())?;
        let path = cpath(cfg.unix_path.as_deref())?;
        let sni = cstr(cfg.server_hostname.as_deref())?;
        let c = sys::aiol_connect_config {
            size: std::mem::size_of::<sys::aiol_connect_config>(),
            host: ptr(&host),
            port: cfg.port,
            unix_path: ptr(&path),
            tls: tls_ptr(&cfg.tls),
            server_hostname: ptr(&sni),
            timeout_ns: ns(cfg.timeout),
            tls_handshake_timeout_ns: ns(cfg.tls_handshake_timeout),
            tls_shutdown_timeout_ns: ns(cfg.tls_shutdown_timeout),
        };
        let vt = vtable::<A>();
        let ud = ProtoBox::into_raw(self.shared_ptr(), a);
        let dd = Box::into_raw(Box::new(DoneBox {
            shared: self.shared_ptr(),
            done,
        })) as *mut c_void;
        let mut h = std::ptr::null_mut();
        // SAFETY: live loop; config copied; the vtable matches ud's type, done matches dd.
        let rc = unsafe {
            sys::aiol_loop_connect(
                self.as_raw(),
                &c,
                &vt,
                ud,
                Some(connect_done::<D>),
                dd,
                &mut h,
            )
        };
        if rc < 0 {
            // SAFETY: refused: done never runs and we keep both boxes.
            unsafe {
                ProtoBox::<A>::free(ud);
                drop(Box::from_raw(dd as *mut DoneBox<D>));
            }
            return Err(Error::from_code(rc));
        }
        Ok(Handle::from_raw(h))
    }

    /// Opens a connection (asyncio `create_connection`) driven by `protocol`. `done` runs
    /// once, never inside this call: with a [`TransportRef`] right after
    /// `connection_made` (over TLS: once the handshake has completed), or with the error
    /// (resolution, network, [`Error::TIMED_OUT`], [`Error::TLS`] for a failed handshake or
    /// verification, or [`Error::CANCELED`] if the returned [`Handle`] is cancelled or the
    /// loop dropped).
    /// Only argument and state errors come back directly, and then `done` never runs.
    ///
    /// Dropping the returned handle does not cancel the attempt.
    pub fn connect<P, D>(&self, cfg: ConnectConfig, protocol: P, done: D) -> Result<Handle>
    where
        P: Protocol + 'static,
        D: FnOnce(Result<TransportRef>) + 'static,
    {
        self.connect_adapter(&cfg, Stream(protocol), done)
    }

    /// As [`connect`](EventLoop::connect) with a [`BufferedProtocol`].
    pub fn connect_buffered<P, D>(&self, cfg: ConnectConfig, protocol: P, done: D) -> Result<Handle>
    where
        P: BufferedProtocol + 'static,
        D: FnOnce(Result<TransportRef>) + 'static,
    {
        self.connect_adapter(&cfg, Buffered(protocol), done)
    }

    fn adopt_adapter<A: Adapter>(&self, sock: OwnedFd, a: A) -> Result<TransportRef> {
        let vt = vtable::<A>();
        let ud = ProtoBox::into_raw(self.shared_ptr(), a);
        let mut t = std::ptr::null_mut();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
        // SAFETY: live loop; the vtable matches ud's type.
        let rc = unsafe { sys::aiol_transport_adopt(self.as_raw(), fd, &vt, ud, &mut t) };
        if rc < 0 {
            // SAFETY: refused: we keep ud (and the socket, closed when dropped).
            unsafe { ProtoBox::<A>::free(ud) };
            return Err(Error::from_code(rc));
        }
        let _ = sock.into_raw_fd(); // the transport owns it now
                                    // SAFETY: the transport is live (connection_made runs in the next iteration).
        Ok(unsafe { TransportRef::new(t, self.shared_ptr()) })
    }

    /// Wraps a connected stream socket (e.g. a `UnixStream` or `TcpStream`, made
    /// non-blocking) in a transport driven by `protocol`; `connection_made` runs in the
    /// next iteration. The socket belongs to the transport on success and is closed on
    /// failure.
    pub fn adopt<P: Protocol + 'static>(
        &self,
        sock: impl Into<OwnedFd>,
        protocol: P,
    ) -> Result<TransportRef> {
        self.adopt_adapter(sock.into(), Stream(protocol))
    }

    /// As [`adopt`](EventLoop::adopt) with a [`BufferedProtocol`].
    pub fn adopt_buffered<P: BufferedProtocol + 'static>(
        &self,
        sock: impl Into<OwnedFd>,
        protocol: P,
    ) -> Result<TransportRef> {
        self.adopt_adapter(sock.into(), Buffered(protocol))
    }
}
