//! LoopHandle: posting from other threads, holds, and the loop's lifetime.
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use aioloop::{Error, EventLoop, LoopHandle};

fn assert_send_sync<T: Send + Sync + Clone>() {}

#[test]
fn loop_handle_is_send_sync_clone() {
    assert_send_sync::<LoopHandle>();
}

#[test]
fn four_threads_post_in_order_and_run_ends_when_handles_drop() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 500;
    let lp = EventLoop::new().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let handle = lp.handle();
    let barrier = Arc::new(Barrier::new(THREADS));
    let mut joins = Vec::new();
    for t in 0..THREADS {
        let h = handle.clone();
        let ran = ran.clone();
        let barrier = barrier.clone();
        joins.push(std::thread::spawn(move || {
            barrier.wait();
            for i in 0..PER_THREAD {
                let ran = ran.clone();
                h.call_soon_threadsafe(move |_lp| {
                    ran.fetch_add(1, Ordering::SeqCst);
                    // Runs on the loop thread: record into its thread-local log.
                    SINK.with(|s| s.borrow_mut().push((t, i)));
                })
                .unwrap();
            }
            // h dropped here: the hold goes when the last clone is gone.
        }));
    }
    drop(handle);
    // run keeps going while any handle (hold) lives, and ends once all are dropped and
    // the queue drained.
    assert!(!lp.run().unwrap());
    for j in joins {
        j.join().unwrap();
    }
    assert_eq!(ran.load(Ordering::SeqCst), THREADS * PER_THREAD);
    let log: Vec<(usize, usize)> = SINK.with(|s| s.borrow_mut().drain(..).collect());
    assert_eq!(log.len(), THREADS * PER_THREAD);
    for t in 0..THREADS {
        let mine: Vec<usize> = log
            .iter()
            .filter(|(tt, _)| *tt == t)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(
            mine,
            (0..PER_THREAD).collect::<Vec<_>>(),
            "thread {t}: posting order kept"
        );
    }
}

thread_local! {
    static SINK: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

#[test]
fn a_live_handle_keeps_run_going_until_stop() {
    let lp = EventLoop::new().unwrap();
    let handle = lp.handle();
    let h2 = handle.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        h2.call_soon_threadsafe(|lp| lp.stop().unwrap()).unwrap();
    });
    // Nothing else is alive: only the hold keeps run going until the posted stop.
    assert!(lp.run().unwrap(), "still alive: the handle holds the loop");
    t.join().unwrap();
    let h3 = handle.clone();
    std::thread::spawn(move || h3.stop().unwrap())
        .join()
        .unwrap();
    assert!(lp.run().unwrap(), "a stop before run: one iteration");
    drop(handle);
    assert!(!lp.run().unwrap());
}

#[test]
fn handles_outlive_the_loop_and_the_last_one_frees_it() {
    let lp = EventLoop::new().unwrap();
    let handle = lp.handle();
    let dropped = Arc::new(AtomicUsize::new(0));
    struct D(Arc<AtomicUsize>);
    impl Drop for D {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    // Queued but never run: dropped by aiol_loop_close when the loop goes.
    let d = D(dropped.clone());
    handle
        .call_soon_threadsafe(move |_| {
            let _ = &d;
            panic!("must not run");
        })
        .unwrap();
    drop(lp);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    // The handle still works, reports the loop closed, and frees it on another thread.
    let t = std::thread::spawn(move || {
        assert_eq!(
            handle.call_soon_threadsafe(|_| {}).unwrap_err(),
            Error::CLOSED
        );
        assert_eq!(handle.stop().unwrap_err(), Error::CLOSED);
        let h2 = handle.clone();
        drop(handle);
        drop(h2); // last: unhold, then aiol_loop_free on this thread
    });
    t.join().unwrap();
}

#[test]
fn handle_dropped_concurrently_with_the_loop() {
    // Race the last unhold against the loop's drop many times; whoever is last frees.
    for _ in 0..200 {
        let lp = EventLoop::new().unwrap();
        let h = lp.handle();
        let t = std::thread::spawn(move || {
            let _ = h.call_soon_threadsafe(|_| {});
            drop(h);
        });
        drop(lp);
        t.join().unwrap();
    }
}

#[test]
fn posting_while_the_loop_runs_from_a_callback_context() {
    // The threadsafe closure receives the loop and can schedule more work on it.
    let lp = EventLoop::new().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let h = lp.handle();
    let d = done.clone();
    std::thread::spawn(move || {
        h.call_soon_threadsafe(move |lp| {
            lp.call_later(Duration::from_millis(1), move |_| {
                d.store(1, Ordering::SeqCst);
            })
            .unwrap();
        })
        .unwrap();
    })
    .join()
    .unwrap();
    assert!(!lp.run().unwrap());
    assert_eq!(done.load(Ordering::SeqCst), 1);
}
