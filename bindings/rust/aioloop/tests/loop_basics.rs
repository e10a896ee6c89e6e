//! The loop: ordering, timers, handles, fd watchers, signals, panics, teardown.
use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use aioloop::{Error, EventLoop};

/// Counts drops: put one in a closure to see its destroy run.
struct DropCount(Rc<Cell<u32>>);
impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn call_soon_runs_in_order_and_next_iteration() {
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    for i in 0..5 {
        let log = log.clone();
        lp.call_soon(move |lp| {
            log.borrow_mut().push(i);
            if i == 0 {
                // Scheduled from a callback: runs in the next iteration, after 1..4.
                let log = log.clone();
                lp.call_soon(move |_| log.borrow_mut().push(100)).unwrap();
            }
        })
        .unwrap();
    }
    assert!(
        lp.run_once().unwrap(),
        "the nested call_soon is still pending"
    );
    assert_eq!(*log.borrow(), vec![0, 1, 2, 3, 4]);
    assert!(!lp.run().unwrap());
    assert_eq!(*log.borrow(), vec![0, 1, 2, 3, 4, 100]);
}

#[test]
fn timers_fire_by_deadline_then_scheduling_order_and_never_early() {
    let lp = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let start = lp.now();
    for (name, ms) in [("c", 30u64), ("a", 10), ("b", 20), ("a2", 10), ("zero", 0)] {
        let log = log.clone();
        let h = lp
            .call_later(Duration::from_millis(ms), move |lp| {
                log.borrow_mut().push((name, lp.now() - start));
            })
            .unwrap();
        assert!(h.when() >= start + Duration::from_millis(ms));
    }
    let t0 = Instant::now();
    assert!(!lp.run().unwrap());
    let log = log.borrow();
    let names: Vec<_> = log.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["zero", "a", "a2", "b", "c"]);
    for ((_, at), ms) in log.iter().zip([0u64, 10, 10, 20, 30]) {
        assert!(
            *at >= Duration::from_millis(ms),
            "fired early: {at:?} < {ms} ms"
        );
    }
    assert!(t0.elapsed() >= Duration::from_millis(30));
}

#[test]
fn call_at_uses_the_loop_clock() {
    let lp = EventLoop::new().unwrap();
    let fired = Rc::new(Cell::new(None));
    let f = fired.clone();
    let when = lp.now() + Duration::from_millis(5);
    let h = lp.call_at(when, move |lp| f.set(Some(lp.now()))).unwrap();
    assert_eq!(h.when(), when);
    lp.run().unwrap();
    assert!(fired.get().unwrap() >= when);
}

#[test]
fn timer_handle_cancel_prevents_the_run_and_drops_the_closure() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let drops = Rc::new(Cell::new(0));
    let (r, d) = (ran.clone(), DropCount(drops.clone()));
    let h = lp
        .call_later(Duration::from_millis(5), move |_| {
            let _d = &d;
            r.set(true);
        })
        .unwrap();
    assert!(!h.cancelled());
    assert!(h.cancel());
    assert!(h.cancelled());
    assert!(!h.cancel(), "second cancel reports nothing prevented");
    assert_eq!(
        drops.get(),
        0,
        "destroy never runs inside an aiol_* call other than run/close"
    );
    assert!(!lp.run().unwrap());
    assert!(!ran.get());
    assert_eq!(
        drops.get(),
        1,
        "the cancelled closure was dropped exactly once"
    );
    drop(h);
    assert_eq!(drops.get(), 1);
}

#[test]
fn dropping_a_timer_handle_releases_without_cancelling() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(0));
    let drops = Rc::new(Cell::new(0));
    let (r, d) = (ran.clone(), DropCount(drops.clone()));
    let h = lp
        .call_later(Duration::from_millis(2), move |_| {
            let _d = &d;
            r.set(r.get() + 1);
        })
        .unwrap();
    drop(h);
    assert!(lp.run().is_ok());
    assert_eq!(ran.get(), 1, "dropping the handle must not cancel");
    assert_eq!(drops.get(), 1);
}

#[test]
fn handle_outlives_its_run_and_cancel_inside_own_callback() {
    let lp = EventLoop::new().unwrap();
    let slot: Rc<RefCell<Option<aioloop::Handle>>> = Rc::new(RefCell::new(None));
    let s = slot.clone();
    let result = Rc::new(Cell::new(None));
    let r = result.clone();
    let h = lp
        .call_soon(move |_| {
            // Cancelling while running: allowed, reports nothing prevented.
            r.set(Some(s.borrow().as_ref().unwrap().cancel()));
        })
        .unwrap();
    *slot.borrow_mut() = Some(h);
    lp.run().unwrap();
    assert_eq!(result.get(), Some(false));
    // After it ran, the handle is still valid until dropped.
    let h = slot.borrow_mut().take().unwrap();
    assert!(!h.cancel());
    assert!(!h.cancelled());
    assert_eq!(h.when(), Duration::ZERO);
}

#[test]
fn run_modes_report_alive_and_stop_ends_run() {
    let lp = EventLoop::new().unwrap();
    assert!(!lp.run_nowait().unwrap(), "nothing alive");
    let t = lp.call_later(Duration::from_secs(3600), |_| {}).unwrap();
    assert!(lp.run_nowait().unwrap(), "a pending timer is alive");
    lp.call_soon(|lp| lp.stop().unwrap()).unwrap();
    let t0 = Instant::now();
    assert!(lp.run().unwrap(), "stopped with the timer still pending");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(t.cancel());
    assert!(!lp.run().unwrap());
    // A stop before run makes the next run do exactly one iteration.
    lp.call_later(Duration::from_secs(3600), |_| {}).unwrap();
    lp.stop().unwrap();
    assert!(lp.run().unwrap());
}

#[test]
fn run_inside_a_callback_is_a_state_error() {
    let lp = EventLoop::new().unwrap();
    let got = Rc::new(Cell::new(None));
    let g = got.clone();
    lp.call_soon(move |lp| g.set(Some(lp.run()))).unwrap();
    lp.run().unwrap();
    assert_eq!(got.get().unwrap().unwrap_err(), Error::STATE);
}

#[test]
fn now_is_monotonic() {
    let lp = EventLoop::new().unwrap();
    let a = lp.now();
    std::thread::sleep(Duration::from_millis(2));
    assert!(lp.now() >= a + Duration::from_millis(2));
}

#[test]
fn reader_and_writer_watchers() {
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let b = Rc::new(b);
    let got = Rc::new(RefCell::new(Vec::new()));
    let drops = Rc::new(Cell::new(0));
    {
        let (b2, got, d) = (b.clone(), got.clone(), DropCount(drops.clone()));
        lp.add_reader(&*b, move |lp| {
            let _d = &d;
            let mut buf = [0u8; 64];
            let n = (&*b2).read(&mut buf).unwrap();
            got.borrow_mut().extend_from_slice(&buf[..n]);
            if got.borrow().len() >= 5 {
                assert!(lp.remove_reader(&*b2).unwrap());
            }
        })
        .unwrap();
    }
    a.write_all(b"hello").unwrap();
    assert!(!lp.run().unwrap());
    assert_eq!(&*got.borrow(), b"hello");
    assert_eq!(drops.get(), 1, "the removed reader's closure was dropped");
    assert!(!lp.remove_reader(&*b).unwrap(), "no reader left");

    let writable = Rc::new(Cell::new(0));
    let w = writable.clone();
    let b2 = b.clone();
    lp.add_writer(&*b, move |lp| {
        w.set(w.get() + 1);
        lp.remove_writer(&*b2).unwrap();
    })
    .unwrap();
    lp.run().unwrap();
    assert_eq!(writable.get(), 1);
}

#[test]
fn replacing_a_reader_drops_the_old_closure() {
    let lp = EventLoop::new().unwrap();
    let (_a, b) = UnixStream::pair().unwrap();
    let drops = Rc::new(Cell::new(0));
    let d1 = DropCount(drops.clone());
    lp.add_reader(&b, move |_| {
        let _ = &d1;
    })
    .unwrap();
    lp.add_reader(&b, |_| {}).unwrap();
    lp.run_nowait().unwrap();
    assert_eq!(drops.get(), 1);
    assert!(lp.remove_reader(&b).unwrap());
}

#[test]
fn signal_handler_runs_on_the_loop() {
    let lp = EventLoop::new().unwrap();
    let hits = Rc::new(Cell::new(0));
    let h = hits.clone();
    lp.add_signal_handler(libc::SIGUSR2, move |lp| {
        h.set(h.get() + 1);
        lp.stop().unwrap();
    })
    .unwrap();
    // Signal handlers do not keep the loop alive: keep it running with a timer.
    let t = lp.call_later(Duration::from_secs(10), |_| {}).unwrap();
    lp.call_soon(|_| unsafe {
        libc::kill(libc::getpid(), libc::SIGUSR2);
    })
    .unwrap();
    lp.run().unwrap();
    assert_eq!(hits.get(), 1);
    assert!(t.cancel());
    assert!(lp.remove_signal_handler(libc::SIGUSR2).unwrap());
    assert!(!lp.remove_signal_handler(libc::SIGUSR2).unwrap());
    assert_eq!(
        lp.add_signal_handler(libc::SIGKILL, |_| {}).unwrap_err(),
        Error::INVALID
    );
}

#[test]
fn panic_in_a_callback_stops_the_loop_and_surfaces_from_run() {
    let lp = EventLoop::new().unwrap();
    let after = Rc::new(Cell::new(false));
    lp.call_soon(|_| panic!("boom from call_soon")).unwrap();
    let a = after.clone();
    lp.call_later(Duration::from_millis(50), move |_| a.set(true))
        .unwrap();
    let err = catch_unwind(AssertUnwindSafe(|| lp.run())).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"boom from call_soon"));
    assert!(!after.get(), "the loop stopped right after the panic");
    // The loop is still usable afterwards.
    assert!(!lp.run().unwrap());
    assert!(after.get());
}

#[test]
fn panic_in_a_closure_drop_is_caught_too() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("drop panic");
        }
    }
    let lp = EventLoop::new().unwrap();
    let p = PanicOnDrop;
    lp.call_soon(move |_| {
        let _ = &p;
    })
    .unwrap();
    let err = catch_unwind(AssertUnwindSafe(|| lp.run())).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"drop panic"));
}

#[test]
fn exception_handler_receives_reports() {
    let lp = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.set_exception_handler(move |ctx| {
        s.borrow_mut()
            .push((ctx.error, ctx.message.to_string(), ctx.object_kind));
    })
    .unwrap();
    lp.call_soon(|lp| {
        lp.call_exception_handler(Some(Error::BUSY), "custom report")
            .unwrap()
    })
    .unwrap();
    lp.run().unwrap();
    assert_eq!(
        *seen.borrow(),
        vec![(
            Some(Error::BUSY),
            "custom report".to_string(),
            aioloop::ObjectKind::None
        )]
    );
    lp.clear_exception_handler().unwrap();
}

#[test]
fn dropping_the_loop_runs_every_destroy() {
    let drops = Rc::new(Cell::new(0));
    let ran = Rc::new(Cell::new(0));
    let (_a, b) = UnixStream::pair().unwrap();
    {
        let lp = EventLoop::new().unwrap();
        for i in 0..3 {
            let (d, r) = (DropCount(drops.clone()), ran.clone());
            lp.call_later(Duration::from_secs(100 + i), move |_| {
                let _ = &d;
                r.set(r.get() + 1);
            })
            .unwrap();
        }
        let (d, r) = (DropCount(drops.clone()), ran.clone());
        lp.call_soon(move |_| {
            let _ = &d;
            r.set(r.get() + 1);
        })
        .unwrap();
        let d = DropCount(drops.clone());
        lp.add_reader(&b, move |_| {
            let _ = &d;
        })
        .unwrap();
        let d = DropCount(drops.clone());
        lp.add_signal_handler(libc::SIGWINCH, move |_| {
            let _ = &d;
        })
        .unwrap();
        let d = DropCount(drops.clone());
        lp.set_exception_handler(move |_| {
            let _ = &d;
        })
        .unwrap();
        // A handle kept past the loop stays valid to drop.
        let keep = lp.call_later(Duration::from_secs(1000), |_| {}).unwrap();
        assert_eq!(drops.get(), 0);
        drop(lp);
        assert_eq!(drops.get(), 7, "every closure dropped by aiol_loop_close");
        assert!(keep.cancelled());
        assert!(!keep.cancel());
    }
    assert_eq!(ran.get(), 0, "nothing ran");
}

#[test]
fn version_and_features() {
    let (major, minor, _) = aioloop::version();
    assert_eq!((major, minor), (0, 1));
    assert!(aioloop::version_string().starts_with("0.1"));
    assert!(aioloop::has_feature("epoll") || aioloop::has_feature("poll"));
    assert!(!aioloop::has_feature("no-such-feature"));
}

#[test]
fn error_conversions() {
    let e = Error::from_code(-libc::ECONNREFUSED);
    assert_eq!(e.name(), "ECONNREFUSED");
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    let io: std::io::Error = Error::CLOSED.into();
    assert_eq!(io.kind(), std::io::ErrorKind::Other);
    assert_eq!(io.to_string(), "object is closed");
    assert_eq!(Error::THREAD.name(), "AIOL_ETHREAD");
    assert!(format!("{:?}", Error::CANCELED).contains("ECANCELED"));
    let boxed: Box<dyn std::error::Error> = Box::new(Error::STATE);
    assert!(!boxed.to_string().is_empty());
}
