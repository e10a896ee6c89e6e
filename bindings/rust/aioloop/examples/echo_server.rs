//! echo_server: a flow-controlled TCP (or Unix socket) echo server on libaioloop, the Rust
//! twin of `examples/echo_server.c`.
//!
//! ```text
//! echo_server [--host H] [--port P] [--unix PATH]
//! ```
//!
//! Prints "listening on HOST:PORT" per listening socket (the real port when P is 0).
//! Echo with back-pressure: when the transport asks us to pause writing, we pause reading,
//! and resume when it drains (asyncio's flow-control pattern). On EOF we close, which
//! flushes what we still owe the peer. SIGINT/SIGTERM close the server and its clients and
//! exit 0 once wait_closed fires (clients still there after 5 s are aborted).
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use aioloop::{EventLoop, Protocol, ServerConfig, SocketAddress, Transport};

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, t: &mut Transport, data: &[u8]) {
        let _ = t.write(data);
    }
    fn pause_writing(&mut self, t: &mut Transport) {
        let _ = t.pause_reading();
    }
    fn resume_writing(&mut self, t: &mut Transport) {
        let _ = t.resume_reading();
    }
}

fn usage(argv0: &str) -> ExitCode {
    eprintln!("usage: {argv0} [--host H] [--port P] [--unix PATH]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().map_or("echo_server", String::as_str);
    let mut cfg = ServerConfig::default();
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        let next = args.get(i + 1);
        match (a, next) {
            ("--host", Some(h)) => cfg.host = Some(h.clone()),
            ("--port", Some(p)) => cfg.port = p.parse().unwrap_or(0),
            ("--unix", Some(p)) => cfg.unix_path = Some(p.into()),
            _ if i == args.len() - 1 && !a.starts_with('-') => {
                cfg.port = a.parse().unwrap_or(0);
                i += 1;
                continue;
            }
            _ => return usage(argv0),
        }
        i += 2;
    }

    let lp = match EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("echo_server: {e} ({})", e.name());
            return ExitCode::from(1);
        }
    };
    let server = match lp.create_server(cfg, || Echo) {
        Ok(s) => Rc::new(s),
        Err(e) => {
            eprintln!("echo_server: {e} ({})", e.name());
            return ExitCode::from(1);
        }
    };
    for addr in server.local_addrs() {
        match addr {
            SocketAddress::Inet(a) => println!("listening on {a}"),
            SocketAddress::Unix(p) => println!("listening on {}", p.display()),
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();

    for sig in [libc::SIGINT, libc::SIGTERM] {
        let server = server.clone();
        let installed = lp.add_signal_handler(sig, move |lp| {
            let _ = lp.remove_signal_handler(libc::SIGINT);
            let _ = lp.remove_signal_handler(libc::SIGTERM);
            let _ = server.close();
            let _ = server.close_clients();
            let _ = server.wait_closed(|lp| {
                let _ = lp.stop();
            });
            let s = server.clone();
            let _ = lp.call_later(Duration::from_secs(5), move |_| {
                let _ = s.abort_clients();
            });
        });
        if let Err(e) = installed {
            eprintln!("echo_server: signal handler: {e}");
            return ExitCode::from(1);
        }
    }

    let rc = lp.run();
    drop(server);
    drop(lp);
    match rc {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_server: {e} ({})", e.name());
            ExitCode::from(1)
        }
    }
}
