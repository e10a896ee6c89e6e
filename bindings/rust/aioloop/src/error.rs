//! [`Error`]: a libaioloop error code.
use std::ffi::CStr;
use std::fmt;
use std::os::raw::c_int;

use aioloop_sys as sys;

/// `std::result::Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A libaioloop error: the negative code a C call returned.
///
/// Codes in `-1..=-4095` are exactly `-errno` (so they convert losslessly into
/// [`std::io::Error`]); the library's own codes (`AIOL_ECLOSED`, `AIOL_ESTATE`, ...) live at
/// `-30000` and below and never change. [`Display`](fmt::Display) is `aiol_strerror()`,
/// [`name`](Error::name) is `aiol_err_name()`.
///
/// ```
/// use aioloop::Error;
/// let e = Error::closed();
/// assert!(e.is_closed());
/// assert_eq!(e.name(), "AIOL_ECLOSED");
/// assert_eq!(e.to_string(), "object is closed");
/// let io: std::io::Error = Error::from_code(-libc::ECONNRESET).into();
/// assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Error {
    code: c_int,
}

impl Error {
    /// `AIOL_ECLOSED`: the object (loop, server, transport) is closed.
    pub const CLOSED: Error = Error {
        code: sys::AIOL_ECLOSED,
    };
    /// `AIOL_ESTATE`: the operation is not allowed in this state (e.g. `run` from inside a
    /// callback, `write` after `write_eof`).
    pub const STATE: Error = Error {
        code: sys::AIOL_ESTATE,
    };
    /// `AIOL_ETHREAD`: called from a thread that does not own the running loop.
    pub const THREAD: Error = Error {
        code: sys::AIOL_ETHREAD,
    };
    /// `AIOL_ECANCELED`: the operation was cancelled (an aborted transport, a cancelled
    /// connect).
    pub const CANCELED: Error = Error {
        code: sys::AIOL_ECANCELED,
    };
    /// `AIOL_EINVAL`: an invalid argument.
    pub const INVALID: Error = Error {
        code: sys::AIOL_EINVAL,
    };
    /// `AIOL_EBUSY`: the resource is busy (e.g. a write during `sendfile`).
    pub const BUSY: Error = Error {
        code: sys::AIOL_EBUSY,
    };
    /// `AIOL_ETLS`: a TLS failure (a handshake or certificate verification failed, a
    /// certificate or key file could not be loaded).
    pub const TLS: Error = Error {
        code: sys::AIOL_ETLS,
    };
    /// `AIOL_ETIMEDOUT`: a timeout expired (a connect or TLS handshake).
    pub const TIMED_OUT: Error = Error {
        code: sys::AIOL_ETIMEDOUT,
    };
    /// `AIOL_ENOTSUP`: the feature is not built into the library (e.g. TLS, see
    /// [`has_feature`](crate::has_feature)) or not supported for this object.
    pub const NOT_SUPPORTED: Error = Error {
        code: sys::AIOL_ENOTSUP,
    };

    /// Wraps a C return code. A non-negative `code` is not an error; it is kept as is
    /// (its name is then `"UNKNOWN"`).
    pub const fn from_code(code: i32) -> Error {
        Error { code }
    }

    /// The error every call on a closed object gives (`AIOL_ECLOSED`).
    pub const fn closed() -> Error {
        Error::CLOSED
    }

    /// The C code: `-errno` or an `AIOL_E*` library code.
    pub const fn code(&self) -> i32 {
        self.code
    }

    /// `true` for `AIOL_ECLOSED`.
    pub const fn is_closed(&self) -> bool {
        self.code == sys::AIOL_ECLOSED
    }

    /// `true` for [`Error::TLS`].
    pub const fn is_tls(&self) -> bool {
        self.code == sys::AIOL_ETLS
    }

    /// The `errno` value for system errors (codes `-1..=-4095`), else `None`.
    pub const fn raw_os_error(&self) -> Option<i32> {
        if self.code < 0 && self.code >= -4095 {
            Some(-self.code)
        } else {
            None
        }
    }

    /// The code's name from `aiol_err_name()`: `"AIOL_ECLOSED"`, `"ECONNRESET"`, ... or
    /// `"UNKNOWN"`.
    pub fn name(&self) -> &'static str {
        // SAFETY: aiol_err_name returns static NUL-terminated text, never NULL.
        unsafe { static_str(sys::aiol_err_name(self.code)) }
    }

    /// The message from `aiol_strerror()` (also what `Display` prints).
    pub fn message(&self) -> &'static str {
        // SAFETY: aiol_strerror returns static NUL-terminated text, never NULL.
        unsafe { static_str(sys::aiol_strerror(self.code)) }
    }
}

/// # Safety
/// `p` is NULL or static NUL-terminated text.
pub(crate) unsafe fn static_str(p: *const std::os::raw::c_char) -> &'static str {
    if p.is_null() {
        return "";
    }
    CStr::from_ptr(p).to_str().unwrap_or("")
}

/// Maps a C return value: negative is an error, anything else is passed through.
pub(crate) fn check(rc: c_int) -> Result<c_int> {
    if rc < 0 {
        Err(Error::from_code(rc))
    } else {
        Ok(rc)
    }
}

/// `check` for calls that return 0 or a negative code.
pub(crate) fn check0(rc: c_int) -> Result<()> {
    check(rc).map(|_| ())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("code", &self.code)
            .field("name", &self.name())
            .field("message", &self.message())
            .finish()
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        match e.raw_os_error() {
            Some(errno) => std::io::Error::from_raw_os_error(errno),
            None => std::io::Error::other(e),
        }
    }
}

impl From<std::ffi::NulError> for Error {
    fn from(_: std::ffi::NulError) -> Error {
        Error::INVALID
    }
}
