//! The conformance scenario server on the Rust binding.
//!
//!     conformance-server BEHAVIOUR ADDR [key=value ...]
//!
//! The Rust twin of server_asyncio.py (the oracle): same behaviour menu, same trace lines.
//! ADDR is a TCP port on 127.0.0.1 (0: ephemeral) or unix:PATH. tls_cert=PATH tls_key=PATH
//! (and handshake_timeout_ms=N) serve TLS; a library without TLS answers "unsupported tls"
//! and exits with 77 (the runner's protocol).
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use aioloop::{
    BufferedProtocol, Error, EventLoop, Protocol, Server, ServerConfig, SocketAddress, TlsContext,
    Transport,
};

static BEHAVIOUR: OnceLock<String> = OnceLock::new();
static PARAMS: OnceLock<HashMap<String, String>> = OnceLock::new();

thread_local! {
    static SERVER: RefCell<Option<Server>> = const { RefCell::new(None) };
    static CONNS_LEFT: Cell<i64> = const { Cell::new(1) };
    static CLOSING: Cell<bool> = const { Cell::new(false) };
}

fn beh() -> &'static str {
    BEHAVIOUR.get().unwrap()
}
fn sparam(k: &str) -> Option<&'static str> {
    PARAMS.get().unwrap().get(k).map(String::as_str)
}
fn iparam(k: &str, def: i64) -> i64 {
    sparam(k).and_then(|v| v.parse().ok()).unwrap_or(def)
}

fn gen(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            let j = i % 131072;
            (j * 131 + (j >> 9)) as u8
        })
        .collect()
}

fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{s}");
    let _ = o.flush();
}

fn close_server() {
    if CLOSING.with(|c| c.replace(true)) {
        return;
    }
    SERVER.with(|s| {
        if let Some(s) = s.borrow().as_ref() {
            let _ = s.close();
            let _ = s.wait_closed(|lp| {
                out("wait_closed");
                let _ = lp.stop();
            });
        }
    });
}

#[derive(Default)]
struct Conn {
    pending: usize,
    total: usize,
    aborted: bool,
    paused_reading: std::rc::Rc<Cell<bool>>,
    did_pause: bool,
    buf: Vec<u8>,
}

impl Conn {
    fn flush(&mut self) {
        if self.pending > 0 {
            out(&format!("data {}", self.pending));
            self.pending = 0;
        }
    }
    fn event(&mut self, s: &str) {
        self.flush();
        out(s);
    }

    fn made(&mut self, t: &mut Transport) {
        self.event("made");
        if sparam("high").is_some() {
            let high = iparam("high", 0) as usize;
            let low = iparam("low", (high / 4) as i64) as usize;
            let _ = t.set_write_buffer_limits(Some(high), Some(low));
        }
        if iparam("close_server", 0) != 0 {
            close_server();
        }
        if beh() == "write_on_connect" {
            let _ = t.write(&gen(iparam("size", 0) as usize));
            match sparam("then").unwrap_or("none") {
                "close" => {
                    let _ = t.close();
                }
                "write_eof" => {
                    let _ = t.write_eof();
                }
                "abort" => {
                    self.aborted = true;
                    let _ = t.abort();
                }
                _ => {}
            }
        }
    }

    fn on_data(&mut self, t: &mut Transport, data: &[u8]) {
        if self.paused_reading.get() {
            self.event("violation data_while_paused");
        }
        self.pending += data.len();
        self.total += data.len();
        match beh() {
            "echo"
            | "flow_echo"
            | "buffered"
            | "pause_reading"
            | "write_eof_after_eof"
            | "keep_open_write_later" => {
                let _ = t.write(data);
                if beh() == "pause_reading"
                    && !self.did_pause
                    && self.total as i64 >= iparam("after", 0)
                {
                    self.did_pause = true;
                    self.paused_reading.set(true);
                    let _ = t.pause_reading();
                    let r = t.to_ref();
                    let flag = self.paused_reading.clone();
                    let delay = Duration::from_millis(iparam("delay", 50) as u64);
                    let _ = t.event_loop().call_later(delay, move |_| {
                        flag.set(false);
                        if !r.is_closing() {
                            let _ = r.resume_reading();
                        }
                    });
                }
            }
            "close_on_data" => {
                let q = iparam("queue", 0) as usize;
                if q > 0 {
                    let _ = t.write(&gen(q));
                }
                let _ = t.close();
            }
            "abort_on_data" => {
                let q = iparam("queue", 0) as usize;
                if q > 0 {
                    let _ = t.write(&gen(q));
                }
                self.aborted = true;
                let _ = t.abort();
            }
            _ => {}
        }
    }

    fn eof(&mut self, t: &mut Transport) -> bool {
        if self.paused_reading.get() {
            self.event("violation eof_while_paused");
        }
        let b = beh();
        let keep = b == "write_eof_after_eof"
            || b == "keep_open_write_later"
            || iparam("keep_open", 0) != 0;
        self.event(if keep { "eof keep" } else { "eof close" });
        let delay = Duration::from_millis(iparam("delay", 50) as u64);
        let r = t.to_ref();
        if b == "write_eof_after_eof" {
            let _ = t.write(&gen(iparam("tail", 0) as usize));
            let _ = t.write_eof();
            let _ = t.event_loop().call_later(delay, move |_| {
                let _ = r.close();
            });
        } else if b == "keep_open_write_later" {
            let _ = t.event_loop().call_later(delay, move |_| {
                let _ = r.write(&gen(iparam("tail", 0) as usize));
                let _ = r.close();
            });
        } else if keep {
            let _ = t.event_loop().call_later(delay, move |_| {
                let _ = r.close();
            });
        }
        keep
    }

    fn pause(&mut self, t: &mut Transport) {
        self.event("pause");
        if beh() == "flow_echo" {
            let _ = t.pause_reading();
        }
    }
    fn resume(&mut self, t: &mut Transport) {
        self.event("resume");
        if beh() == "flow_echo" && !t.is_closing() {
            let _ = t.resume_reading();
        }
    }

    fn lost(&mut self, e: Option<Error>) {
        let mut cls = match e {
            None => "clean".to_string(),
            Some(e) if e.name() == "ECONNRESET" || e.name() == "EPIPE" => "reset".to_string(),
            Some(e) if e.code() == Error::CANCELED.code() && self.aborted => "aborted".to_string(),
            Some(e) => format!("error:{}", e.name()),
        };
        if self.aborted && cls == "clean" {
            cls = "aborted".to_string();
        }
        self.event(&format!("lost {cls}"));
        if CONNS_LEFT.with(|c| c.get()) <= 0 {
            close_server();
        }
    }
}

struct Plain(Conn);
impl Protocol for Plain {
    fn connection_made(&mut self, t: &mut Transport) {
        self.0.made(t)
    }
    fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
        self.0.on_data(t, data)
    }
    fn eof_received(&mut self, t: &mut Transport) -> bool {
        self.0.eof(t)
    }
    fn connection_lost(&mut self, _t: &mut Transport, e: Option<Error>) {
        self.0.lost(e)
    }
    fn pause_writing(&mut self, t: &mut Transport) {
        self.0.pause(t)
    }
    fn resume_writing(&mut self, t: &mut Transport) {
        self.0.resume(t)
    }
}

struct Buffered(Conn);
// SAFETY: the buffer is allocated once, owned by the protocol, and only touched from
// get_buffer and buffer_updated (taking the Vec out and back moves no heap memory).
unsafe impl BufferedProtocol for Buffered {
    fn connection_made(&mut self, t: &mut Transport) {
        self.0.made(t)
    }
    fn get_buffer(&mut self, _t: &mut Transport, _hint: usize) -> &mut [u8] {
        if self.0.buf.is_empty() {
            self.0.buf = vec![0; iparam("bufsize", 16) as usize];
        }
        &mut self.0.buf
    }
    fn buffer_updated(&mut self, t: &mut Transport, n: usize) {
        let data = std::mem::take(&mut self.0.buf);
        self.0.on_data(t, &data[..n]);
        self.0.buf = data;
    }
    fn eof_received(&mut self, t: &mut Transport) -> bool {
        self.0.eof(t)
    }
    fn connection_lost(&mut self, _t: &mut Transport, e: Option<Error>) {
        self.0.lost(e)
    }
    fn pause_writing(&mut self, t: &mut Transport) {
        self.0.pause(t)
    }
    fn resume_writing(&mut self, t: &mut Transport) {
        self.0.resume(t)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: conformance-server BEHAVIOUR ADDR [k=v ...]");
        return ExitCode::from(2);
    }
    BEHAVIOUR.set(args[1].clone()).unwrap();
    let mut p = HashMap::new();
    for kv in &args[3..] {
        if let Some((k, v)) = kv.split_once('=') {
            p.insert(k.to_string(), v.to_string());
        }
    }
    PARAMS.set(p).unwrap();
    CONNS_LEFT.with(|c| c.set(iparam("conns", 1)));

    let lp = EventLoop::new().expect("loop");
    let mut cfg = ServerConfig::default();
    let addr = &args[2];
    let unix = addr.starts_with("unix:");
    if unix {
        cfg.unix_path = Some(addr[5..].into());
    } else {
        cfg.host = Some("127.0.0.1".into());
        cfg.port = addr.parse().unwrap_or(0);
    }
    if let Some(cert) = sparam("tls_cert") {
        // TLS: asyncio's SSL transport; the server keeps its own reference to the context.
        if !aioloop::has_feature("tls") {
            out("unsupported tls");
            return ExitCode::from(77);
        }
        match TlsContext::server(cert, sparam("tls_key").unwrap_or("")) {
            Ok(ctx) => cfg.tls = Some(ctx),
            Err(e) => {
                eprintln!("conformance-server: {e} ({})", e.name());
                return ExitCode::from(1);
            }
        }
        if sparam("handshake_timeout_ms").is_some() {
            let ms = iparam("handshake_timeout_ms", 0) as u64;
            cfg.tls_handshake_timeout = Some(Duration::from_millis(ms));
        }
    }
    let dec = || CONNS_LEFT.with(|c| c.set(c.get() - 1));
    let server = if beh() == "buffered" {
        lp.create_buffered_server(cfg, move || {
            dec();
            Buffered(Conn::default())
        })
    } else {
        lp.create_server(cfg, move || {
            dec();
            Plain(Conn::default())
        })
    };
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conformance-server: {e} ({})", e.name());
            return ExitCode::from(1);
        }
    };
    if unix {
        out("listening unix");
    } else if let Some(SocketAddress::Inet(a)) = server.local_addrs().first() {
        out(&format!("listening {}", a.port()));
    }
    SERVER.with(|s| *s.borrow_mut() = Some(server));
    if beh() == "close_now" || CONNS_LEFT.with(|c| c.get()) <= 0 {
        close_server();
    }
    let wd = lp
        .call_later(Duration::from_secs(30), |_| {
            out("watchdog");
            std::process::exit(3);
        })
        .expect("timer");
    let rc = lp.run();
    wd.cancel();
    SERVER.with(|s| s.borrow_mut().take());
    drop(lp);
    match rc {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance-server: {e}");
            ExitCode::from(1)
        }
    }
}
