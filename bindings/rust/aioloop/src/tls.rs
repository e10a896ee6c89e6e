//! [`TlsContext`]: asyncio's `ssl.SSLContext` as far as the loop needs it (`aiol_tls_context`).
use std::ffi::{c_void, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use aioloop_sys as sys;

use crate::error::{check0, Error, Result};

/// One C reference to a context; the last Rust clone gives it up.
struct RawContext(NonNull<sys::aiol_tls_context>);

// SAFETY: the C context is reference-counted atomically and immutable once shared (the
// setters below need the only Rust handle, and the C side refuses them once a server or
// connect has used the context).
unsafe impl Send for RawContext {}
unsafe impl Sync for RawContext {}

impl Drop for RawContext {
    fn drop(&mut self) {
        // SAFETY: gives up the reference `new_*` handed us; servers, connects and
        // transports using the context hold their own.
        unsafe { sys::aiol_tls_context_free(self.0.as_ptr()) };
    }
}

/// A TLS configuration shared by servers and connections (asyncio's `ssl.SSLContext`):
/// OpenSSL underneath, TLS 1.2 as the minimum version by default.
///
/// Cloning is cheap (one more handle to the same context); the context lives as long as
/// any clone, server, pending connect or transport uses it, so it may be dropped right
/// after [`ServerConfig::with_tls`](crate::ServerConfig::with_tls) or
/// [`ConnectConfig::with_tls`](crate::ConnectConfig::with_tls). It is `Send + Sync`.
///
/// Without TLS built into the library ([`has_feature("tls")`](crate::has_feature) is
/// `false`) every constructor returns [`Error::NOT_SUPPORTED`].
///
/// ```no_run
/// use aioloop::{ConnectConfig, ServerConfig, TlsContext};
/// let mut server_ctx = TlsContext::server("cert.pem", "key.pem")?;
/// server_ctx.set_alpn(&["h2", "http/1.1"])?;
/// let cfg = ServerConfig::tcp("127.0.0.1", 8443).with_tls(server_ctx);
///
/// let client_ctx = TlsContext::client(Some("ca.pem".as_ref()), true)?;
/// let conn = ConnectConfig::tcp("127.0.0.1", 8443)
///     .with_tls(client_ctx)
///     .with_server_hostname("localhost");
/// # let _ = (cfg, conn);
/// # Ok::<(), aioloop::Error>(())
/// ```
#[derive(Clone)]
pub struct TlsContext {
    raw: Arc<RawContext>,
}

fn path_cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(Error::from)
}

fn wrap(rc: i32, raw: *mut sys::aiol_tls_context) -> Result<TlsContext> {
    check0(rc)?;
    let raw = NonNull::new(raw).ok_or(Error::INVALID)?;
    Ok(TlsContext {
        raw: Arc::new(RawContext(raw)),
    })
}

impl TlsContext {
    /// A server context from a PEM certificate file (the chain may follow the leaf) and a
    /// PEM private key file. [`Error::TLS`] if a file cannot be loaded or the key does not
    /// match the certificate.
    pub fn server(cert_pem: impl AsRef<Path>, key_pem: impl AsRef<Path>) -> Result<TlsContext> {
        let cert = path_cstr(cert_pem.as_ref())?;
        let key = path_cstr(key_pem.as_ref())?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: NUL-terminated paths valid for the call; out-pointer.
        let rc = unsafe { sys::aiol_tls_context_new_server(cert.as_ptr(), key.as_ptr(), &mut raw) };
        wrap(rc, raw)
    }

    /// As [`server`](TlsContext::server) from PEM text in memory (copied).
    pub fn server_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsContext> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: both buffers are valid for their lengths during the call (the C side
        // copies them); out-pointer.
        let rc = unsafe {
            sys::aiol_tls_context_new_server_pem(
                cert_pem.as_ptr() as *const c_void,
                cert_pem.len(),
                key_pem.as_ptr() as *const c_void,
                key_pem.len(),
                &mut raw,
            )
        };
        wrap(rc, raw)
    }

    /// A client context trusting the CA certificates in `ca_pem` (`None`: the system
    /// store). With `verify` the handshake checks the chain and the host name
    /// ([`ConnectConfig::server_hostname`](crate::ConnectConfig::server_hostname), else
    /// the host) and fails with [`Error::TLS`] otherwise; without it anything is accepted.
    pub fn client(ca_pem: Option<&Path>, verify: bool) -> Result<TlsContext> {
        let ca = ca_pem.map(path_cstr).transpose()?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: NULL or a NUL-terminated path valid for the call; out-pointer.
        let rc = unsafe {
            sys::aiol_tls_context_new_client(
                ca.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                verify as i32,
                &mut raw,
            )
        };
        wrap(rc, raw)
    }

    /// The only handle to the context, for the setters: a shared context may already be
    /// in use on another thread.
    fn unique(&mut self) -> Result<*mut sys::aiol_tls_context> {
        Arc::get_mut(&mut self.raw)
            .map(|r| r.0.as_ptr())
            .ok_or(Error::STATE)
    }

    /// Sets the ALPN protocols, in preference order (asyncio `set_alpn_protocols`). A
    /// server with no protocol in common with its client goes on without ALPN.
    /// [`Error::STATE`] once a server or connect has used the context, or while it is
    /// cloned; [`Error::INVALID`] for an empty or over-long (> 255 bytes) name.
    pub fn set_alpn<S: AsRef<str>>(&mut self, protocols: &[S]) -> Result<()> {
        let raw = self.unique()?;
        let names = protocols
            .iter()
            .map(|p| CString::new(p.as_ref()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let ptrs: Vec<_> = names.iter().map(|c| c.as_ptr()).collect();
        // SAFETY: we hold the only handle; the strings outlive the call (copied).
        check0(unsafe { sys::aiol_tls_context_set_alpn(raw, ptrs.as_ptr(), ptrs.len()) })
    }

    /// Sets the minimum protocol version: `0x0303` (TLS 1.2, the default) or `0x0304`
    /// (TLS 1.3); [`Error::INVALID`] for anything else. [`Error::STATE`] as for
    /// [`set_alpn`](TlsContext::set_alpn).
    pub fn set_min_version(&mut self, version: u16) -> Result<()> {
        let raw = self.unique()?;
        // SAFETY: we hold the only handle.
        check0(unsafe { sys::aiol_tls_context_set_min_version(raw, version.into()) })
    }

    /// The underlying OpenSSL `SSL_CTX *` (borrowed; NULL without TLS support), for
    /// settings this API does not cover: client certificates (mTLS), ciphers, ... Change
    /// it only before the context is first used.
    pub fn ssl_ctx(&self) -> *mut c_void {
        // SAFETY: live context.
        unsafe { sys::aiol_tls_context_ssl_ctx(self.as_raw()) }
    }

    /// The underlying `aiol_tls_context *` (borrowed), for calls into [`aioloop_sys`].
    pub fn as_raw(&self) -> *mut sys::aiol_tls_context {
        self.raw.0.as_ptr()
    }
}

impl PartialEq for TlsContext {
    /// Two handles to the same context.
    fn eq(&self, other: &TlsContext) -> bool {
        self.as_raw() == other.as_raw()
    }
}

impl Eq for TlsContext {}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("raw", &self.as_raw())
            .finish()
    }
}
