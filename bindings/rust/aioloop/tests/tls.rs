//! TLS servers and connections over real sockets, with throwaway certificates made by the
//! `openssl` command at test time (a fresh temporary directory per test, removed after).
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aioloop::{
    ConnectConfig, Error, EventLoop, Protocol, Server, ServerConfig, TlsContext, Transport,
};

fn tls() -> bool {
    aioloop::has_feature("tls")
}

/// Every test but the feature check needs TLS in the library; the plain and ASan builds
/// have it (scripts/test.sh), the `notls` one does not and is covered by
/// `contexts_without_tls_are_not_supported`.
macro_rules! require_tls {
    () => {
        if !tls() {
            eprintln!("libaioloop built without TLS: nothing to test here");
            return;
        }
    };
}

fn watchdog(lp: &EventLoop) -> aioloop::TimerHandle {
    lp.call_later(Duration::from_secs(20), |_| {
        panic!("watchdog: test timed out")
    })
    .unwrap()
}

fn tcp_port(server: &Server) -> u16 {
    server.local_addrs()[0].as_inet().unwrap().port()
}

/// A test CA, a server certificate it signed for `localhost` and 127.0.0.1, a client
/// certificate it signed, and an unrelated CA; all EC P-256 keys, valid for two days.
struct Certs {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .env_remove("LD_PRELOAD") // a tool, not under test in an ASan run (README)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    fn new() -> Certs {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aioloop-rs-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let (key, pem, subj) = (
                format!("{ca}.key"),
                format!("{ca}.pem"),
                format!("/CN={ca}"),
            );
            let mut a = vec!["req", "-x509", "-days", "2", "-subj", &subj];
            a.extend(ec);
            a.extend(["-keyout", &key, "-out", &pem]);
            a.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            a.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            openssl(&dir, &a);
        }
        for (name, ext) in [
            (
                "server",
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            let (key, csr, pem, der, cnf) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.der"),
                format!("{name}.cnf"),
            );
            std::fs::write(dir.join(&cnf), ext).unwrap();
            let mut a = vec![
                "req",
                "-subj",
                "/CN=localhost",
                "-keyout",
                &key,
                "-out",
                &csr,
            ];
            a.extend(ec);
            openssl(&dir, &a);
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-set_serial",
                    "2",
                    "-days",
                    "2",
                    "-extfile",
                    &cnf,
                    "-out",
                    &pem,
                ],
            );
            openssl(
                &dir,
                &["x509", "-in", &pem, "-outform", "DER", "-out", &der],
            );
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn server_ctx(&self) -> TlsContext {
        TlsContext::server(self.path("server.pem"), self.path("server.key")).unwrap()
    }

    fn client_ctx(&self) -> TlsContext {
        TlsContext::client(Some(&self.path("ca.pem")), true).unwrap()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one end of a connection saw; `lost` is shared by both ends of a test, which
/// stops the loop once both are gone.
#[derive(Default, Debug)]
struct Seen {
    made: u32,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    peer_cert: Option<Vec<u8>>,
    is_tls: bool,
    lost: Vec<Option<Error>>,
}

type Shared = Rc<RefCell<Seen>>;

fn record_made(seen: &Shared, t: &Transport) {
    let mut s = seen.borrow_mut();
    s.made += 1;
    s.sni = t.tls_server_name().map(str::to_owned);
    s.alpn = t.tls_alpn().map(<[u8]>::to_vec);
    s.peer_cert = t.tls_peer_cert_der().map(<[u8]>::to_vec);
    s.is_tls = t.is_tls();
}

fn record_lost(seen: &Shared, lost: &Rc<RefCell<u32>>, t: &Transport, err: Option<Error>) {
    seen.borrow_mut().lost.push(err);
    *lost.borrow_mut() += 1;
    if *lost.borrow() == 2 {
        t.event_loop().stop().unwrap();
    }
}

/// The server side: echoes.
struct TlsEcho {
    seen: Shared,
    lost: Rc<RefCell<u32>>,
}
impl Protocol for TlsEcho {
    fn connection_made(&mut self, t: &mut Transport) {
        record_made(&self.seen, t);
    }
    fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
        t.write(data).unwrap();
    }
    fn connection_lost(&mut self, t: &mut Transport, err: Option<Error>) {
        record_lost(&self.seen, &self.lost, t, err);
    }
}

/// The client side: sends `msg`, closes once it has it all back.
struct TlsClient {
    msg: Vec<u8>,
    got: Vec<u8>,
    seen: Shared,
    lost: Rc<RefCell<u32>>,
}
impl Protocol for TlsClient {
    fn connection_made(&mut self, t: &mut Transport) {
        record_made(&self.seen, t);
        t.write(&self.msg).unwrap();
    }
    fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
        self.got.extend_from_slice(data);
        if self.got.len() == self.msg.len() {
            assert!(self.got == self.msg, "echoed bytes differ");
            t.close().unwrap();
        }
    }
    fn connection_lost(&mut self, t: &mut Transport, err: Option<Error>) {
        record_lost(&self.seen, &self.lost, t, err);
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 131 + (i >> 9)) as u8).collect()
}

/// One connection from a client configured by `client_cfg(port)` to a TLS echo server
/// with `server_ctx`: returns what the server side and the client side saw, and the
/// connect result. A failed connect stops the loop at once (the server side then never
/// has a connection_made).
fn roundtrip(
    server_ctx: TlsContext,
    client_cfg: impl FnOnce(u16) -> ConnectConfig,
    msg: &[u8],
) -> (Seen, Seen, aioloop::Result<()>) {
    let lp = EventLoop::new().unwrap();
    let wd = watchdog(&lp);
    let (server_seen, client_seen) = (Shared::default(), Shared::default());
    let lost = Rc::new(RefCell::new(0));
    let (ss, l) = (server_seen.clone(), lost.clone());
    let server = lp
        .create_server(
            ServerConfig::tcp("127.0.0.1", 0).with_tls(server_ctx),
            move || TlsEcho {
                seen: ss.clone(),
                lost: l.clone(),
            },
        )
        .unwrap();
    let result = Rc::new(RefCell::new(None));
    let (r, h) = (result.clone(), lp.handle());
    let client = TlsClient {
        msg: msg.to_vec(),
        got: Vec::new(),
        seen: client_seen.clone(),
        lost,
    };
    lp.connect(client_cfg(tcp_port(&server)), client, move |res| {
        if res.is_err() {
            h.stop().unwrap();
        }
        *r.borrow_mut() = Some(res.map(|_| ()));
    })
    .unwrap();
    lp.run().unwrap();
    wd.cancel();
    drop(server);
    drop(lp);
    let res = result.borrow_mut().take().expect("done ran");
    let s = server_seen.take();
    let c = client_seen.take();
    (s, c, res)
}

#[test]
fn contexts_without_tls_are_not_supported() {
    if tls() {
        return; // the TLS build: the other tests cover it
    }
    let e = TlsContext::client(None, true).unwrap_err();
    assert_eq!(e, Error::NOT_SUPPORTED);
    let e = TlsContext::server("cert.pem", "key.pem").unwrap_err();
    assert_eq!(e, Error::NOT_SUPPORTED);
    let e = TlsContext::server_from_pem(b"x", b"y").unwrap_err();
    assert_eq!(e, Error::NOT_SUPPORTED);
}

#[test]
fn context_errors() {
    require_tls!();
    let certs = Certs::new();
    // A key that does not match the certificate, a missing file, PEM that is not PEM.
    let e = TlsContext::server(certs.path("server.pem"), certs.path("client.key")).unwrap_err();
    assert!(e.is_tls(), "{e:?}");
    assert_eq!(e.name(), "AIOL_ETLS");
    let e = TlsContext::server(certs.path("missing.pem"), certs.path("server.key")).unwrap_err();
    assert!(e.is_tls(), "{e:?}");
    assert!(TlsContext::server_from_pem(b"not pem", b"nor this")
        .unwrap_err()
        .is_tls());
    assert!(TlsContext::client(Some(&certs.path("missing.pem")), true)
        .unwrap_err()
        .is_tls());

    fn send_sync<T: Send + Sync>(_: &T) {}
    let mut ctx = certs.client_ctx();
    send_sync(&ctx); // contexts may be built on one thread and used on another
    assert!(!ctx.ssl_ctx().is_null());
    assert_eq!(ctx.set_min_version(0x0301), Err(Error::INVALID));
    assert_eq!(ctx.set_min_version(0x0304), Ok(()));
    assert_eq!(ctx.set_alpn(&[""]), Err(Error::INVALID));
    assert_eq!(ctx.set_alpn(&["x".repeat(256)]), Err(Error::INVALID));
    assert_eq!(ctx.set_alpn(&["h2"]), Ok(()));
    // Shared handles are read-only: another clone may be in use on another thread.
    let other = ctx.clone();
    assert_eq!(other, ctx);
    assert_eq!(ctx.set_alpn(&["h2"]), Err(Error::STATE));
    drop(other);
    assert_eq!(ctx.set_alpn(&["h2"]), Ok(()));

    // A context of the wrong side is refused up front; a used one is frozen.
    let lp = EventLoop::new().unwrap();
    let e = lp
        .create_server(
            ServerConfig::tcp("127.0.0.1", 0).with_tls(ctx.clone()),
            || TlsEcho {
                seen: Shared::default(),
                lost: Rc::default(),
            },
        )
        .unwrap_err();
    assert_eq!(e, Error::INVALID);
    let mut server_ctx = certs.server_ctx();
    let e = lp
        .connect(
            ConnectConfig::tcp("127.0.0.1", 1).with_tls(server_ctx.clone()),
            TlsEcho {
                seen: Shared::default(),
                lost: Rc::default(),
            },
            |_| panic!("done must not run for a refused connect"),
        )
        .unwrap_err();
    assert_eq!(e, Error::INVALID);
    let server = lp
        .create_server(
            ServerConfig::tcp("127.0.0.1", 0).with_tls(server_ctx.clone()),
            || TlsEcho {
                seen: Shared::default(),
                lost: Rc::default(),
            },
        )
        .unwrap();
    drop(server);
    assert_eq!(server_ctx.set_alpn(&["h2"]), Err(Error::STATE));
}

#[test]
fn echo_over_tls_with_sni_and_the_server_certificate() {
    require_tls!();
    let certs = Certs::new();
    let msg = pattern(300 * 1024); // many TLS records, more than one socket buffer
    let (server, client, res) = roundtrip(
        certs.server_ctx(),
        |port| {
            ConnectConfig::tcp("127.0.0.1", port)
                .with_tls(certs.client_ctx())
                .with_server_hostname("localhost")
        },
        &msg,
    );
    res.unwrap();
    assert_eq!((server.made, client.made), (1, 1));
    assert!(server.is_tls && client.is_tls);
    assert_eq!(server.sni.as_deref(), Some("localhost"));
    assert_eq!(client.sni.as_deref(), Some("localhost"));
    let der = std::fs::read(certs.path("server.der")).unwrap();
    assert_eq!(client.peer_cert.as_deref(), Some(&der[..]));
    assert_eq!(
        server.peer_cert, None,
        "no client certificate was asked for"
    );
    assert_eq!((server.alpn.as_ref(), client.alpn.as_ref()), (None, None));
    // The client closed cleanly (close_notify); the server saw a clean end too.
    assert_eq!(client.lost, vec![None]);
    assert_eq!(server.lost, vec![None]);
}

#[test]
fn server_from_pem_bytes_verified_by_ip_address() {
    require_tls!();
    let certs = Certs::new();
    let cert = std::fs::read(certs.path("server.pem")).unwrap();
    let key = std::fs::read(certs.path("server.key")).unwrap();
    let ctx = TlsContext::server_from_pem(&cert, &key).unwrap();
    // No server_hostname: the host, an IP literal, is verified against the IP SAN.
    let (server, client, res) = roundtrip(
        ctx,
        |port| ConnectConfig::tcp("127.0.0.1", port).with_tls(certs.client_ctx()),
        b"hello",
    );
    res.unwrap();
    assert_eq!((server.made, client.made), (1, 1));
    assert_eq!(server.sni, None, "no SNI for an IP address");
    assert_eq!(client.lost, vec![None]);
}

#[test]
fn verification_failures_are_tls_errors() {
    require_tls!();
    let certs = Certs::new();
    // A CA that did not sign the server certificate.
    let wrong_ca = TlsContext::client(Some(&certs.path("other-ca.pem")), true).unwrap();
    let (server, client, res) = roundtrip(
        certs.server_ctx(),
        |port| {
            ConnectConfig::tcp("127.0.0.1", port)
                .with_tls(wrong_ca)
                .with_server_hostname("localhost")
        },
        b"never sent",
    );
    let e = res.unwrap_err();
    assert!(e.is_tls(), "{e:?}");
    assert_eq!(e, Error::TLS);
    assert_eq!((server.made, client.made), (0, 0));

    // The right CA, the wrong name.
    let (_, client, res) = roundtrip(
        certs.server_ctx(),
        |port| {
            ConnectConfig::tcp("127.0.0.1", port)
                .with_tls(certs.client_ctx())
                .with_server_hostname("example.com")
        },
        b"never sent",
    );
    assert_eq!(res, Err(Error::TLS));
    assert_eq!(client.made, 0);

    // verify off: the same untrusted server is accepted.
    let (_, client, res) = roundtrip(
        certs.server_ctx(),
        |port| {
            ConnectConfig::tcp("127.0.0.1", port)
                .with_tls(TlsContext::client(Some(&certs.path("other-ca.pem")), false).unwrap())
                .with_server_hostname("example.com")
        },
        b"accepted anyway",
    );
    res.unwrap();
    assert_eq!(client.made, 1);
}

#[test]
fn alpn_is_negotiated() {
    require_tls!();
    let certs = Certs::new();
    let server_ctx = || {
        let mut c = certs.server_ctx();
        c.set_alpn(&["h2", "http/1.1"]).unwrap();
        c
    };
    let client_ctx = |protos: &[&str]| {
        let mut c = certs.client_ctx();
        c.set_alpn(protos).unwrap();
        c
    };
    let (server, client, res) = roundtrip(
        server_ctx(),
        |port| {
            ConnectConfig::tcp("127.0.0.1", port)
                .with_tls(client_ctx(&["spdy/3", "http/1.1"]))
                .with_server_hostname("localhost")
        },
        b"GET /",
    );
    res.unwrap();
    assert_eq!(server.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(client.alpn.as_deref(), Some(&b"http/1.1"[..]));

    // No protocol in common: the server goes on without ALPN.
    let (server, client, res) = roundtrip(
        server_ctx(),
        |port| {
            ConnectConfig::tcp("127.0.0.1", port)
                .with_tls(client_ctx(&["imap"]))
                .with_server_hostname("localhost")
        },
        b"x",
    );
    res.unwrap();
    assert_eq!((server.alpn, client.alpn), (None, None));
}

#[test]
fn client_handshake_timeout_on_a_silent_peer() {
    require_tls!();
    let certs = Certs::new();
    // The kernel completes the TCP handshake from the backlog; nobody ever answers the
    // ClientHello.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let lp = EventLoop::new().unwrap();
    let wd = watchdog(&lp);
    let result = Rc::new(RefCell::new(None));
    let (r, h) = (result.clone(), lp.handle());
    let seen = Shared::default();
    let cfg = ConnectConfig {
        tls_handshake_timeout: Some(Duration::from_millis(200)),
        ..ConnectConfig::tcp("127.0.0.1", port)
            .with_tls(certs.client_ctx())
            .with_server_hostname("localhost")
    };
    let start = Instant::now();
    lp.connect(
        cfg,
        TlsEcho {
            seen: seen.clone(),
            lost: Rc::default(),
        },
        move |res| {
            *r.borrow_mut() = Some((res.map(|_| ()), start.elapsed()));
            h.stop().unwrap();
        },
    )
    .unwrap();
    lp.run().unwrap();
    wd.cancel();
    let (res, took) = result.borrow_mut().take().expect("done ran");
    assert_eq!(res, Err(Error::TIMED_OUT));
    assert!(took >= Duration::from_millis(150), "gave up after {took:?}");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
    assert_eq!(seen.borrow().made, 0);
}

#[test]
fn server_handshake_timeout_closes_a_silent_client() {
    require_tls!();
    let certs = Certs::new();
    let lp = EventLoop::new().unwrap();
    let wd = watchdog(&lp);
    let seen = Shared::default();
    let s = seen.clone();
    let cfg = ServerConfig {
        tls_handshake_timeout: Some(Duration::from_millis(200)),
        tls_shutdown_timeout: Some(Duration::from_millis(200)),
        ..ServerConfig::tcp("127.0.0.1", 0).with_tls(certs.server_ctx())
    };
    let server = lp
        .create_server(cfg, move || TlsEcho {
            seen: s.clone(),
            lost: Rc::default(),
        })
        .unwrap();
    let port = tcp_port(&server);
    // A plain TCP client that connects and says nothing, on its own thread; it stops
    // the loop once the server has hung up on it.
    let h = lp.handle();
    let peer = std::thread::spawn(move || {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 64];
        let n = sock.read(&mut buf);
        let took = start.elapsed();
        h.stop().unwrap();
        (n.map_err(|e| e.kind()), took)
    });
    lp.run().unwrap();
    let (n, took) = peer.join().unwrap();
    wd.cancel();
    assert_eq!(n, Ok(0), "the server closed the socket");
    assert!(took >= Duration::from_millis(150), "closed after {took:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert_eq!(
        seen.borrow().made,
        0,
        "connection_made waits for the handshake"
    );
}

// ---- mutual TLS through the raw SSL_CTX --------------------------------------------------

/// OpenSSL functions, looked up in the process (libaioloop brought libssl in), so the test
/// does not link OpenSSL itself.
fn ssl_fn<T: Copy>(name: &str) -> T {
    assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
    let c = CString::new(name).unwrap();
    // SAFETY: dlsym on the global namespace with a NUL-terminated name.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) };
    assert!(!p.is_null(), "{name} not found");
    // SAFETY: T is the function pointer type of `name` (the caller says so).
    unsafe { std::mem::transmute_copy(&p) }
}

const SSL_VERIFY_PEER: c_int = 0x01;
const SSL_VERIFY_FAIL_IF_NO_PEER_CERT: c_int = 0x02;
const SSL_FILETYPE_PEM: c_int = 1;

fn cpath(p: PathBuf) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

#[test]
fn mutual_tls_through_ssl_ctx_shows_the_client_certificate() {
    require_tls!();
    type SetVerify = unsafe extern "C" fn(*mut c_void, c_int, *const c_void);
    type LoadVerify = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> c_int;
    type UseFile = unsafe extern "C" fn(*mut c_void, *const c_char, c_int) -> c_int;
    let set_verify: SetVerify = ssl_fn("SSL_CTX_set_verify");
    let load_verify: LoadVerify = ssl_fn("SSL_CTX_load_verify_locations");
    let use_cert: UseFile = ssl_fn("SSL_CTX_use_certificate_file");
    let use_key: UseFile = ssl_fn("SSL_CTX_use_PrivateKey_file");

    let certs = Certs::new();
    let server_ctx = certs.server_ctx();
    let client_ctx = certs.client_ctx();
    let ca = cpath(certs.path("ca.pem"));
    let (cert, key) = (
        cpath(certs.path("client.pem")),
        cpath(certs.path("client.key")),
    );
    // SAFETY: live SSL_CTX pointers, configured before first use; NUL-terminated paths.
    unsafe {
        set_verify(
            server_ctx.ssl_ctx(),
            SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
            std::ptr::null(),
        );
        assert_eq!(
            load_verify(server_ctx.ssl_ctx(), ca.as_ptr(), std::ptr::null()),
            1
        );
        assert_eq!(
            use_cert(client_ctx.ssl_ctx(), cert.as_ptr(), SSL_FILETYPE_PEM),
            1
        );
        assert_eq!(
            use_key(client_ctx.ssl_ctx(), key.as_ptr(), SSL_FILETYPE_PEM),
            1
        );
    }
    let (server, client, res) = roundtrip(
        server_ctx,
        |port| {
            ConnectConfig::tcp("127.0.0.1", port)
                .with_tls(client_ctx)
                .with_server_hostname("localhost")
        },
        b"who are you",
    );
    res.unwrap();
    let client_der = std::fs::read(certs.path("client.der")).unwrap();
    let server_der = std::fs::read(certs.path("server.der")).unwrap();
    assert_eq!(server.peer_cert.as_deref(), Some(&client_der[..]));
    assert_eq!(client.peer_cert.as_deref(), Some(&server_der[..]));
}

#[test]
fn plain_transports_have_no_tls_state() {
    let lp = EventLoop::new().unwrap();
    let wd = watchdog(&lp);
    let (server_seen, client_seen) = (Shared::default(), Shared::default());
    let lost = Rc::new(RefCell::new(0));
    let (ss, l) = (server_seen.clone(), lost.clone());
    let server = lp
        .create_server(ServerConfig::tcp("127.0.0.1", 0), move || TlsEcho {
            seen: ss.clone(),
            lost: l.clone(),
        })
        .unwrap();
    let client = TlsClient {
        msg: b"plain".to_vec(),
        got: Vec::new(),
        seen: client_seen.clone(),
        lost,
    };
    lp.connect(
        ConnectConfig::tcp("127.0.0.1", tcp_port(&server)),
        client,
        |r| {
            r.unwrap();
        },
    )
    .unwrap();
    lp.run().unwrap();
    wd.cancel();
    for s in [server_seen.take(), client_seen.take()] {
        assert_eq!(s.made, 1);
        assert!(!s.is_tls);
        assert_eq!((s.sni, s.alpn, s.peer_cert), (None, None, None));
    }
}

/// Never reads: what the client writes piles up in its own queue.
struct Deaf;
impl Protocol for Deaf {
    fn connection_made(&mut self, t: &mut Transport) {
        t.pause_reading().unwrap();
    }
}

/// How a connection ended and how long after close().
type Ending = Rc<RefCell<Option<(Option<Error>, Duration)>>>;

/// Writes `size` bytes and closes at once; records how long the close took.
struct WriteThenClose {
    size: usize,
    closed_at: Option<Instant>,
    out: Ending,
}
impl Protocol for WriteThenClose {
    fn connection_made(&mut self, t: &mut Transport) {
        t.write(&pattern(self.size)).unwrap();
        t.close().unwrap();
        self.closed_at = Some(Instant::now());
    }
    fn connection_lost(&mut self, t: &mut Transport, err: Option<Error>) {
        *self.out.borrow_mut() = Some((err, self.closed_at.unwrap().elapsed()));
        t.event_loop().stop().unwrap();
    }
}

#[test]
fn shutdown_timeout_gives_up_on_a_peer_that_does_not_read() {
    require_tls!();
    let certs = Certs::new();
    let lp = EventLoop::new().unwrap();
    let wd = watchdog(&lp);
    let server = lp
        .create_server(
            ServerConfig::tcp("127.0.0.1", 0).with_tls(certs.server_ctx()),
            || Deaf,
        )
        .unwrap();
    let out = Ending::default();
    let cfg = ConnectConfig {
        tls_shutdown_timeout: Some(Duration::from_millis(300)),
        ..ConnectConfig::tcp("127.0.0.1", tcp_port(&server))
            .with_tls(certs.client_ctx())
            .with_server_hostname("localhost")
    };
    // More than the loopback socket buffers of both ends can hold, so close() cannot
    // flush the queue and its close_notify.
    let client = WriteThenClose {
        size: 32 << 20,
        closed_at: None,
        out: out.clone(),
    };
    lp.connect(cfg, client, |r| {
        r.unwrap();
    })
    .unwrap();
    lp.run().unwrap();
    wd.cancel();
    let (err, took) = out.borrow_mut().take().expect("connection_lost ran");
    assert_eq!(
        err,
        Some(Error::TIMED_OUT),
        "asyncio: SSL shutdown timed out"
    );
    assert!(took >= Duration::from_millis(250), "gave up after {took:?}");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
}
