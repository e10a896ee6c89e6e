//! Servers, connections, transports and protocols.
use std::cell::{Cell, RefCell};
use std::io::{IoSlice, Read, Write};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use aioloop::{
    BufferedProtocol, ConnectConfig, Error, EventLoop, Protocol, Server, ServerConfig,
    SocketAddress, Transport, TransportRef,
};

/// A test must not hang: a timer that stops the loop and fails.
fn watchdog(lp: &EventLoop) -> aioloop::TimerHandle {
    lp.call_later(Duration::from_secs(20), |_| {
        panic!("watchdog: test timed out")
    })
    .unwrap()
}

fn tcp_port(server: &Server) -> u16 {
    server.local_addrs()[0]
        .as_inet()
        .expect("an inet address")
        .port()
}

fn unix_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("aioloop-rs-{}-{name}.sock", std::process::id()))
}

struct Echo;
impl Protocol for Echo {
    fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
        t.write(data).unwrap();
    }
    fn pause_writing(&mut self, t: &mut Transport) {
        t.pause_reading().unwrap();
    }
    fn resume_writing(&mut self, t: &mut Transport) {
        t.resume_reading().unwrap();
    }
}

#[derive(Default)]
struct ClientLog {
    made: u32,
    data: Vec<u8>,
    eof: u32,
    lost: Vec<Option<Error>>,
}

/// Sends `msg` in two pieces, closes once it has it all back, stops the loop when lost.
struct EchoClient {
    msg: Vec<u8>,
    log: Rc<RefCell<ClientLog>>,
}
impl Protocol for EchoClient {
    fn connection_made(&mut self, t: &mut Transport) {
        self.log.borrow_mut().made += 1;
        let (a, b) = self.msg.split_at(self.msg.len() / 2);
        t.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
            .unwrap();
    }
    fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
        let mut log = self.log.borrow_mut();
        log.data.extend_from_slice(data);
        if log.data.len() == self.msg.len() {
            t.close().unwrap();
        }
    }
    fn eof_received(&mut self, _t: &mut Transport) -> bool {
        self.log.borrow_mut().eof += 1;
        false
    }
    fn connection_lost(&mut self, t: &mut Transport, err: Option<Error>) {
        self.log.borrow_mut().lost.push(err);
        t.event_loop().stop().unwrap();
    }
}

fn echo_roundtrip(lp: &EventLoop, cfg: ConnectConfig) -> Rc<RefCell<ClientLog>> {
    let msg: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let log = Rc::new(RefCell::new(ClientLog::default()));
    let done = Rc::new(Cell::new(0));
    let d = done.clone();
    let client = EchoClient {
        msg: msg.clone(),
        log: log.clone(),
    };
    lp.connect(cfg, client, move |r| {
        let t = r.expect("connect");
        assert!(t.is_open());
        d.set(d.get() + 1);
    })
    .unwrap();
    let w = watchdog(lp);
    lp.run().unwrap();
    w.cancel();
    assert_eq!(done.get(), 1);
    let l = log.borrow();
    assert_eq!(l.made, 1);
    assert_eq!(l.data, msg);
    assert_eq!(l.lost, vec![None]);
    drop(l);
    log
}

#[test]
fn echo_over_tcp() {
    let lp = EventLoop::new().unwrap();
    let server = lp
        .create_server(ServerConfig::tcp("127.0.0.1", 0), || Echo)
        .unwrap();
    assert!(server.is_serving());
    let addrs = server.local_addrs();
    assert_eq!(addrs.len(), 1);
    let port = tcp_port(&server);
    assert_ne!(port, 0);
    assert_eq!(addrs[0].to_string(), format!("127.0.0.1:{port}"));
    echo_roundtrip(
        &lp,
        ConnectConfig::tcp("127.0.0.1", port).with_timeout(Duration::from_secs(10)),
    );
    server.close().unwrap();
    assert!(!server.is_serving());
    assert!(server.local_addrs().is_empty());
}

#[test]
fn echo_over_unix_socket() {
    let path = unix_path("echo");
    let lp = EventLoop::new().unwrap();
    let server = lp
        .create_server(ServerConfig::unix(&path), || Echo)
        .unwrap();
    assert_eq!(
        server.local_addrs(),
        vec![SocketAddress::Unix(path.clone())]
    );
    assert!(path.exists());
    echo_roundtrip(&lp, ConnectConfig::unix(&path));
    drop(server);
    lp.run().unwrap();
    assert!(!path.exists(), "the path is unlinked on close");
}

#[test]
fn buffered_protocol_echo() {
    struct BufEcho {
        buf: Box<[u8; 1024]>,
        updates: Rc<Cell<u32>>,
    }
    // SAFETY: the buffer is a Box owned by the protocol, touched only in buffer_updated.
    unsafe impl BufferedProtocol for BufEcho {
        fn get_buffer(&mut self, _t: &mut Transport, _hint: usize) -> &mut [u8] {
            &mut self.buf[..]
        }
        fn buffer_updated(&mut self, t: &mut Transport, n: usize) {
            self.updates.set(self.updates.get() + 1);
            t.write(&self.buf[..n]).unwrap();
        }
    }
    let updates = Rc::new(Cell::new(0));
    let lp = EventLoop::new().unwrap();
    let u = updates.clone();
    let server = lp
        .create_buffered_server(ServerConfig::tcp("127.0.0.1", 0), move || BufEcho {
            buf: Box::new([0; 1024]),
            updates: u.clone(),
        })
        .unwrap();
    echo_roundtrip(&lp, ConnectConfig::tcp("127.0.0.1", tcp_port(&server)));
    assert!(
        updates.get() >= 200_000 / 1024,
        "read through the 1 KiB buffer"
    );
}

#[test]
fn buffered_protocol_returning_an_empty_buffer_aborts() {
    struct Empty(Rc<RefCell<Vec<Option<Error>>>>);
    unsafe impl BufferedProtocol for Empty {
        fn get_buffer(&mut self, _t: &mut Transport, _hint: usize) -> &mut [u8] {
            &mut []
        }
        fn buffer_updated(&mut self, _t: &mut Transport, _n: usize) {
            unreachable!()
        }
        fn connection_lost(&mut self, t: &mut Transport, e: Option<Error>) {
            self.0.borrow_mut().push(e);
            t.event_loop().stop().unwrap();
        }
    }
    let lp = EventLoop::new().unwrap();
    lp.set_exception_handler(|_| {}).unwrap(); // keep stderr quiet
    let lost = Rc::new(RefCell::new(Vec::new()));
    let (a, mut b) = UnixStream::pair().unwrap();
    let _t = lp.adopt_buffered(a, Empty(lost.clone())).unwrap();
    b.write_all(b"x").unwrap();
    let w = watchdog(&lp);
    lp.run().unwrap();
    w.cancel();
    assert_eq!(*lost.borrow(), vec![Some(Error::INVALID)]);
}

#[test]
fn half_close_keeps_the_write_side_open() {
    // Server: on EOF keep the transport open, send a reply, then close.
    struct Half(Rc<RefCell<Vec<u8>>>);
    impl Protocol for Half {
        fn data_received(&mut self, _t: &mut Transport, data: &[u8]) {
            self.0.borrow_mut().extend_from_slice(data);
        }
        fn eof_received(&mut self, t: &mut Transport) -> bool {
            let n = self.0.borrow().len();
            t.write(format!("got {n} bytes").as_bytes()).unwrap();
            t.close().unwrap();
            true
        }
    }
    // Client: send, write_eof, read the reply until EOF.
    struct Client {
        reply: Rc<RefCell<Vec<u8>>>,
        eof: Rc<Cell<bool>>,
    }
    impl Protocol for Client {
        fn connection_made(&mut self, t: &mut Transport) {
            assert!(t.can_write_eof());
            t.write(b"0123456789").unwrap();
            t.write_eof().unwrap();
            assert_eq!(
                t.write(b"late").unwrap_err(),
                Error::STATE,
                "no write after write_eof"
            );
        }
        fn data_received(&mut self, _t: &mut Transport, data: &[u8]) {
            self.reply.borrow_mut().extend_from_slice(data);
        }
        fn eof_received(&mut self, _t: &mut Transport) -> bool {
            self.eof.set(true);
            false
        }
        fn connection_lost(&mut self, t: &mut Transport, err: Option<Error>) {
            assert_eq!(err, None);
            t.event_loop().stop().unwrap();
        }
    }
    let lp = EventLoop::new().unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let server = lp
        .create_server(ServerConfig::tcp("127.0.0.1", 0), move || Half(g.clone()))
        .unwrap();
    let reply = Rc::new(RefCell::new(Vec::new()));
    let eof = Rc::new(Cell::new(false));
    let client = Client {
        reply: reply.clone(),
        eof: eof.clone(),
    };
    lp.connect(
        ConnectConfig::tcp("127.0.0.1", tcp_port(&server)),
        client,
        |r| {
            r.unwrap();
        },
    )
    .unwrap();
    let w = watchdog(&lp);
    lp.run().unwrap();
    w.cancel();
    assert_eq!(&*got.borrow(), b"0123456789");
    assert_eq!(&*reply.borrow(), b"got 10 bytes");
    assert!(eof.get());
}

#[test]
fn flow_control_with_a_slow_reader() {
    const TOTAL: usize = 16 << 20;
    const CHUNK: usize = 64 << 10;
    #[derive(Default)]
    struct Counts {
        pauses: u32,
        resumes: u32,
        sent: usize,
        max_buffered: usize,
    }
    struct Producer(Rc<RefCell<Counts>>, bool);
    impl Producer {
        fn pump(&mut self, t: &mut Transport) {
            let chunk = vec![7u8; CHUNK];
            let mut c = self.0.borrow_mut();
            // pause_writing runs after this callback returns, so watch the buffer here.
            while c.sent < TOTAL && t.write_buffer_size() <= t.write_buffer_limits().unwrap().0 {
                t.write(&chunk).unwrap();
                c.sent += CHUNK;
                c.max_buffered = c.max_buffered.max(t.write_buffer_size());
            }
            if c.sent == TOTAL {
                t.close().unwrap();
            }
        }
    }
    impl Protocol for Producer {
        fn connection_made(&mut self, t: &mut Transport) {
            t.set_write_buffer_limits(Some(128 << 10), None).unwrap();
            assert_eq!(t.write_buffer_limits().unwrap(), (128 << 10, 32 << 10));
            self.pump(t);
        }
        fn pause_writing(&mut self, _t: &mut Transport) {
            assert!(!self.1, "pause and resume strictly alternate");
            self.1 = true;
            self.0.borrow_mut().pauses += 1;
        }
        fn resume_writing(&mut self, t: &mut Transport) {
            assert!(self.1);
            self.1 = false;
            self.0.borrow_mut().resumes += 1;
            self.pump(t);
        }
    }
    // The reader pauses after every chunk and resumes 1 ms later.
    struct SlowReader {
        got: Rc<Cell<usize>>,
        me: Option<TransportRef>,
    }
    impl Protocol for SlowReader {
        fn connection_made(&mut self, t: &mut Transport) {
            self.me = Some(t.to_ref());
        }
        fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
            self.got.set(self.got.get() + data.len());
            t.pause_reading().unwrap();
            assert!(!t.is_reading());
            let me = self.me.clone().unwrap();
            t.event_loop()
                .call_later(Duration::from_millis(1), move |_| {
                    let _ = me.resume_reading();
                })
                .unwrap();
        }
        fn connection_lost(&mut self, t: &mut Transport, err: Option<Error>) {
            assert_eq!(err, None);
            self.me = None;
            t.event_loop().stop().unwrap();
        }
    }
    let lp = EventLoop::new().unwrap();
    let counts = Rc::new(RefCell::new(Counts::default()));
    let c = counts.clone();
    let server = lp
        .create_server(ServerConfig::tcp("127.0.0.1", 0), move || {
            Producer(c.clone(), false)
        })
        .unwrap();
    let got = Rc::new(Cell::new(0));
    let reader = SlowReader {
        got: got.clone(),
        me: None,
    };
    lp.connect(
        ConnectConfig::tcp("127.0.0.1", tcp_port(&server)),
        reader,
        |r| {
            r.unwrap();
        },
    )
    .unwrap();
    let w = watchdog(&lp);
    lp.run().unwrap();
    w.cancel();
    let c = counts.borrow();
    assert_eq!(got.get(), TOTAL);
    assert_eq!(c.sent, TOTAL);
    assert!(
        c.pauses >= 1,
        "the slow reader must have made the writer pause"
    );
    assert!(
        c.resumes == c.pauses || c.resumes + 1 == c.pauses,
        "{} pauses, {} resumes",
        c.pauses,
        c.resumes
    );
    assert!(c.max_buffered <= (128 << 10) + CHUNK);
}

/// Records every callback of a connection.
struct Recorder {
    log: Rc<RefCell<Vec<String>>>,
    on_made: fn(&mut Transport),
    on_data: fn(&mut Transport),
}
impl Protocol for Recorder {
    fn connection_made(&mut self, t: &mut Transport) {
        self.log.borrow_mut().push("made".into());
        (self.on_made)(t);
    }
    fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
        self.log.borrow_mut().push(format!("data {}", data.len()));
        (self.on_data)(t);
    }
    fn eof_received(&mut self, _t: &mut Transport) -> bool {
        self.log.borrow_mut().push("eof".into());
        false
    }
    fn connection_lost(&mut self, _t: &mut Transport, err: Option<Error>) {
        self.log
            .borrow_mut()
            .push(format!("lost {:?}", err.map(|e| e.name())));
    }
}
impl Drop for Recorder {
    fn drop(&mut self) {
        self.log.borrow_mut().push("drop".into());
    }
}

fn adopt_pair(lp: &EventLoop, rec: Recorder) -> (TransportRef, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    (lp.adopt(a, rec).unwrap(), b)
}

#[test]
fn close_from_inside_data_received() {
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let rec = Recorder {
        log: log.clone(),
        on_made: |_| {},
        on_data: |t| {
            t.write(b"bye").unwrap();
            t.close().unwrap();
            assert!(t.is_closing());
            assert_eq!(t.write(b"more").unwrap_err(), Error::CLOSED);
            t.close().unwrap(); // idempotent
        },
    };
    let (t, mut peer) = adopt_pair(&lp, rec);
    peer.write_all(b"hi").unwrap();
    lp.run().unwrap();
    assert_eq!(*log.borrow(), ["made", "data 2", "lost None", "drop"]);
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"bye", "close flushed the queue");
    assert!(t.is_closing());
}

#[test]
fn abort_from_inside_connection_made() {
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let rec = Recorder {
        log: log.clone(),
        on_made: |t| t.abort().unwrap(),
        on_data: |_| unreachable!(),
    };
    let (_t, mut peer) = adopt_pair(&lp, rec);
    peer.write_all(b"ignored").unwrap();
    lp.run().unwrap();
    assert_eq!(*log.borrow(), ["made", "lost Some(\"ECANCELED\")", "drop"]);
}

#[test]
fn transport_ref_after_close_returns_closed() {
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let rec = Recorder {
        log: log.clone(),
        on_made: |_| {},
        on_data: |_| {},
    };
    let (t, peer) = adopt_pair(&lp, rec);
    let local = t.local_addr().unwrap();
    assert!(matches!(local, SocketAddress::Unix(_)));
    assert!(t.is_open());
    assert!(t.fileno().unwrap() >= 0);
    drop(peer); // EOF from the peer: the transport closes
    lp.run().unwrap();
    assert_eq!(*log.borrow(), ["made", "eof", "lost None", "drop"]);
    assert!(!t.is_open());
    assert_eq!(t.write(b"y").unwrap_err(), Error::CLOSED);
    assert_eq!(t.close().unwrap_err(), Error::closed());
    assert_eq!(t.abort().unwrap_err(), Error::CLOSED);
    assert_eq!(t.pause_reading().unwrap_err(), Error::CLOSED);
    assert_eq!(t.resume_reading().unwrap_err(), Error::CLOSED);
    assert_eq!(t.write_eof().unwrap_err(), Error::CLOSED);
    assert_eq!(t.fileno().unwrap_err(), Error::CLOSED);
    assert_eq!(
        t.set_write_buffer_limits(None, None).unwrap_err(),
        Error::CLOSED
    );
    assert!(!t.is_reading());
    assert_eq!(t.write_buffer_size(), 0);
    // Addresses stay readable while the memory lives.
    assert_eq!(t.local_addr().unwrap(), local);
    // The ref survives the loop, too.
    let t2 = t.clone();
    drop(lp);
    assert_eq!(t2.write(b"z").unwrap_err(), Error::CLOSED);
    drop(t);
    drop(t2);
}

#[test]
fn panic_in_data_received_surfaces_from_run_and_aborts_the_transport() {
    struct Bomb(Rc<RefCell<Vec<Option<Error>>>>);
    impl Protocol for Bomb {
        fn data_received(&mut self, _t: &mut Transport, _data: &[u8]) {
            panic!("bomb in data_received");
        }
        fn connection_lost(&mut self, _t: &mut Transport, err: Option<Error>) {
            self.0.borrow_mut().push(err);
        }
    }
    let lp = EventLoop::new().unwrap();
    let lost = Rc::new(RefCell::new(Vec::new()));
    let l = lost.clone();
    let server = lp
        .create_server(ServerConfig::tcp("127.0.0.1", 0), move || Bomb(l.clone()))
        .unwrap();
    let mut client = std::net::TcpStream::connect(("127.0.0.1", tcp_port(&server))).unwrap();
    client.write_all(b"trigger").unwrap();
    let w = watchdog(&lp);
    let err = catch_unwind(AssertUnwindSafe(|| lp.run())).expect_err("run must resume the panic");
    assert_eq!(err.downcast_ref::<&str>(), Some(&"bomb in data_received"));
    // The transport was aborted; its connection_lost runs on the next run.
    lp.run_once().unwrap();
    assert_eq!(*lost.borrow(), vec![Some(Error::CANCELED)]);
    let mut buf = [0u8; 8];
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = client.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the peer sees the connection end");
    w.cancel();
}

#[test]
fn panic_in_the_factory_refuses_and_surfaces() {
    let lp = EventLoop::new().unwrap();
    let server = lp
        .create_server(ServerConfig::tcp("127.0.0.1", 0), || -> Echo {
            panic!("factory panic")
        })
        .unwrap();
    let _c = std::net::TcpStream::connect(("127.0.0.1", tcp_port(&server))).unwrap();
    let w = watchdog(&lp);
    let err = catch_unwind(AssertUnwindSafe(|| lp.run())).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"factory panic"));
    w.cancel();
}

#[test]
fn connect_errors_reach_done() {
    let lp = EventLoop::new().unwrap();
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    lp.connect(ConnectConfig::tcp("127.0.0.1", port), Echo, move |r| {
        *g.borrow_mut() = Some(r.map(|_| ()));
    })
    .unwrap();
    lp.run().unwrap();
    assert_eq!(
        got.borrow().unwrap().unwrap_err().raw_os_error(),
        Some(libc::ECONNREFUSED)
    );

    // Cancelling the handle gives ECANCELED.
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    let h = lp
        .connect(ConnectConfig::tcp("localhost", port), Echo, move |r| {
            *g.borrow_mut() = Some(r.map(|_| ()));
        })
        .unwrap();
    h.cancel();
    lp.run().unwrap();
    assert_eq!(got.borrow().unwrap().unwrap_err(), Error::CANCELED);

    // Argument errors come back directly; done never runs and the protocol is dropped.
    let bad = ConnectConfig {
        host: Some("h".into()),
        unix_path: Some("/p".into()),
        ..Default::default()
    };
    let err = lp
        .connect(bad, Echo, |_| panic!("must not run"))
        .unwrap_err();
    assert_eq!(err, Error::INVALID);
    let err = lp
        .connect(ConnectConfig::tcp("a\0b", 1), Echo, |_| {
            panic!("must not run")
        })
        .unwrap_err();
    assert_eq!(err, Error::INVALID);
}

#[test]
fn server_close_clients_and_wait_closed() {
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let server = Rc::new(
        lp.create_server(ServerConfig::tcp("127.0.0.1", 0), move || Recorder {
            log: l.clone(),
            on_made: |_| {},
            on_data: |_| {},
        })
        .unwrap(),
    );
    let port = tcp_port(&server);
    let _c1 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _c2 = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let closed = Rc::new(Cell::new(false));
    let (s, c) = (server.clone(), closed.clone());
    let log2 = log.clone();
    lp.call_later(Duration::from_millis(50), move |_| {
        assert_eq!(log2.borrow().iter().filter(|e| *e == "made").count(), 2);
        s.close().unwrap();
        s.close_clients().unwrap();
        s.wait_closed(move |lp| {
            c.set(true);
            lp.stop().unwrap();
        })
        .unwrap();
    })
    .unwrap();
    let w = watchdog(&lp);
    lp.run().unwrap();
    w.cancel();
    assert!(closed.get());
    let log = log.borrow();
    assert_eq!(log.iter().filter(|e| *e == "lost None").count(), 2);
    assert_eq!(log.iter().filter(|e| *e == "drop").count(), 2);
}

#[test]
fn server_abort_clients() {
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let server = lp
        .create_server(ServerConfig::tcp("127.0.0.1", 0), move || Recorder {
            log: l.clone(),
            on_made: |_| {},
            on_data: |t| t.event_loop().stop().unwrap(),
        })
        .unwrap();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", tcp_port(&server))).unwrap();
    c.write_all(b"x").unwrap();
    let w = watchdog(&lp);
    lp.run().unwrap();
    server.abort_clients().unwrap();
    lp.run_once().unwrap();
    w.cancel();
    assert_eq!(
        *log.borrow(),
        ["made", "data 1", "lost Some(\"ECANCELED\")", "drop"]
    );
}

#[test]
fn server_bind_errors_are_returned() {
    let lp = EventLoop::new().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = lp
        .create_server(ServerConfig::tcp("127.0.0.1", port), || Echo)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));
    let both = ServerConfig {
        host: Some("127.0.0.1".into()),
        unix_path: Some("/tmp/x".into()),
        ..Default::default()
    };
    assert_eq!(lp.create_server(both, || Echo).unwrap_err(), Error::INVALID);
}

#[test]
fn server_from_an_inherited_listener() {
    let lp = EventLoop::new().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = lp
        .create_server_from_listener(listener, ServerConfig::default(), || Echo)
        .unwrap();
    assert_eq!(tcp_port(&server), port);
    echo_roundtrip(&lp, ConnectConfig::tcp("127.0.0.1", port));
}

#[test]
fn peer_and_local_addresses() {
    struct Addrs(Rc<RefCell<Vec<(SocketAddress, SocketAddress)>>>);
    impl Protocol for Addrs {
        fn connection_made(&mut self, t: &mut Transport) {
            self.0
                .borrow_mut()
                .push((t.local_addr().unwrap(), t.peer_addr().unwrap()));
            t.close().unwrap();
        }
        fn connection_lost(&mut self, t: &mut Transport, _e: Option<Error>) {
            if self.0.borrow().len() == 2 {
                t.event_loop().stop().unwrap();
            }
        }
    }
    let lp = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let server = lp
        .create_server(ServerConfig::tcp("127.0.0.1", 0), move || Addrs(s.clone()))
        .unwrap();
    let port = tcp_port(&server);
    lp.connect(
        ConnectConfig::tcp("127.0.0.1", port),
        Addrs(seen.clone()),
        |r| {
            r.unwrap();
        },
    )
    .unwrap();
    let w = watchdog(&lp);
    lp.run().unwrap();
    w.cancel();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2);
    // One side's local address is the other's peer address.
    let (a, b) = (&seen[0], &seen[1]);
    assert_eq!(a.0, b.1);
    assert_eq!(a.1, b.0);
    assert!(seen
        .iter()
        .any(|(l, _)| l.as_inet().unwrap().port() == port));
}

#[test]
fn sendfile_sends_a_file() {
    struct Sender {
        path: PathBuf,
        result: Rc<RefCell<Option<aioloop::Result<u64>>>>,
    }
    impl Protocol for Sender {
        fn connection_made(&mut self, t: &mut Transport) {
            t.write(b"<").unwrap();
            let f = std::fs::File::open(&self.path).unwrap();
            let r = self.result.clone();
            t.sendfile(f, 10, 0, move |t, res| {
                *r.borrow_mut() = Some(res);
                t.write(b">").unwrap();
                t.close().unwrap();
            })
            .unwrap();
            assert_eq!(t.write(b"x").unwrap_err(), Error::BUSY);
        }
        fn connection_lost(&mut self, t: &mut Transport, err: Option<Error>) {
            assert_eq!(err, None);
            t.event_loop().stop().unwrap();
        }
    }
    let path = std::env::temp_dir().join(format!("aioloop-rs-{}-sendfile", std::process::id()));
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let lp = EventLoop::new().unwrap();
    let result = Rc::new(RefCell::new(None));
    let (a, mut peer) = UnixStream::pair().unwrap();
    let _t = lp
        .adopt(
            a,
            Sender {
                path: path.clone(),
                result: result.clone(),
            },
        )
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        peer.read_to_end(&mut v).unwrap();
        v
    });
    let w = watchdog(&lp);
    lp.run().unwrap();
    w.cancel();
    let got = reader.join().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        result.borrow().unwrap().unwrap(),
        (content.len() - 10) as u64
    );
    assert_eq!(got.len(), content.len() - 10 + 2);
    assert_eq!(&got[1..got.len() - 1], &content[10..]);
}

#[test]
fn set_protocol_switches_callbacks() {
    struct Second(Rc<RefCell<Vec<String>>>);
    impl Protocol for Second {
        fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
            self.0
                .borrow_mut()
                .push(format!("second {}", String::from_utf8_lossy(data)));
            t.close().unwrap();
        }
    }
    impl Drop for Second {
        fn drop(&mut self) {
            self.0.borrow_mut().push("drop second".into());
        }
    }
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let rec = Recorder {
        log: log.clone(),
        on_made: |_| {},
        on_data: |_| {},
    };
    let (t, mut peer) = adopt_pair(&lp, rec);
    peer.write_all(b"one").unwrap();
    lp.run_once().unwrap(); // connection_made
    lp.run_once().unwrap(); // data
    t.set_protocol(Second(log.clone())).unwrap();
    peer.write_all(b"two").unwrap();
    let w = watchdog(&lp);
    while log.borrow().last().map(String::as_str) != Some("drop second") {
        lp.run_once().unwrap();
    }
    w.cancel();
    assert_eq!(
        *log.borrow(),
        ["made", "data 3", "drop", "second two", "drop second"]
    );
}

#[test]
fn dropping_the_loop_with_live_servers_and_connections_runs_every_destroy() {
    struct Counted(Rc<Cell<u32>>, Rc<Cell<u32>>);
    impl Protocol for Counted {
        fn connection_lost(&mut self, _t: &mut Transport, err: Option<Error>) {
            assert_eq!(err, Some(Error::CANCELED));
            self.1.set(self.1.get() + 1);
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    struct FactoryToken(Rc<Cell<u32>>);
    impl Drop for FactoryToken {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let protos = Rc::new(Cell::new(0));
    let lost = Rc::new(Cell::new(0));
    let factories = Rc::new(Cell::new(0));
    let waited = Rc::new(Cell::new(0));
    let timers = Rc::new(Cell::new(0));
    let server_kept;
    let clients;
    {
        let lp = EventLoop::new().unwrap();
        let (p, l, tok) = (
            protos.clone(),
            lost.clone(),
            FactoryToken(factories.clone()),
        );
        let server = lp
            .create_server(ServerConfig::tcp("127.0.0.1", 0), move || {
                let _ = &tok;
                Counted(p.clone(), l.clone())
            })
            .unwrap();
        let port = tcp_port(&server);
        let tok2 = FactoryToken(factories.clone());
        let (p, l) = (protos.clone(), lost.clone());
        let server2 = lp
            .create_server(ServerConfig::tcp("127.0.0.1", 0), move || {
                let _ = &tok2;
                Counted(p.clone(), l.clone())
            })
            .unwrap();
        let w = waited.clone();
        server2.wait_closed(move |_| w.set(w.get() + 1)).unwrap();
        clients = [
            std::net::TcpStream::connect(("127.0.0.1", port)).unwrap(),
            std::net::TcpStream::connect(("127.0.0.1", port)).unwrap(),
        ];
        // A client connection of our own, too.
        lp.connect(
            ConnectConfig::tcp("127.0.0.1", port),
            Counted(protos.clone(), lost.clone()),
            |r| {
                r.unwrap();
            },
        )
        .unwrap();
        // Accept and connect everything.
        let tm = timers.clone();
        lp.call_later(Duration::from_millis(100), |lp| lp.stop().unwrap())
            .unwrap();
        let w = watchdog(&lp);
        lp.run().unwrap();
        w.cancel();
        for i in 0..3 {
            let t = FactoryToken(tm.clone());
            lp.call_later(Duration::from_secs(60 + i), move |_| {
                let _ = &t;
            })
            .unwrap();
        }
        assert_eq!(protos.get(), 0);
        // Keep one server past the loop: dropping it later must be fine.
        server_kept = server2;
        drop(server);
        drop(lp);
    }
    assert_eq!(lost.get(), 4, "3 server-side + 1 client connection aborted");
    assert_eq!(protos.get(), 4, "every protocol dropped");
    assert_eq!(factories.get(), 2, "both factories dropped");
    assert_eq!(waited.get(), 1, "wait_closed ran at loop close");
    assert_eq!(timers.get(), 3, "every timer closure dropped");
    assert!(!server_kept.is_serving());
    assert_eq!(server_kept.close(), Ok(()));
    assert_eq!(server_kept.close_clients().unwrap_err(), Error::CLOSED);
    drop(server_kept);
    drop(clients);
}
