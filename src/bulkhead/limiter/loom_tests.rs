//! Loom models of the bulkhead's permits and queue: `RUSTFLAGS="--cfg seawall_loom"`
//! (see `crate::sync`).

use super::*;
use crate::bulkhead::future::Permit;
use crate::sync::loom_model;
use loom::sync::atomic::AtomicU32 as Counter;
use loom::thread;

fn bulkhead(limit: u32) -> Arc<Shared> {
    Shared::new(Arc::from("loom"), limit, u32::MAX, None)
}

/// Three callers take a permit (when one is free), hold it, and drop it, against a limit
/// of two: no more than two are ever out, and at the end every permit is back.
#[test]
fn permits_never_exceed_the_limit_and_all_come_back() {
    loom_model(3, || {
        let shared = bulkhead(2);
        let out = std::sync::Arc::new(Counter::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (shared, out) = (shared.clone(), out.clone());
                thread::spawn(move || {
                    if shared.lane.try_acquire() {
                        let permit = Permit::taken(&shared);
                        let n = out.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(n <= 2, "{n} permits out with a limit of two");
                        out.fetch_sub(1, Ordering::SeqCst); // before the permit: no false alarm
                        drop(permit);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(shared.lane.in_flight(), 0, "a permit never came back");
        assert!(shared.lane.try_acquire() && shared.lane.try_acquire());
        assert!(!shared.lane.try_acquire());
    });
}

/// The only permit is given back while a caller joins the queue: the caller is granted
/// the permit (at once, or by the releaser), never left waiting beside a free permit.
#[test]
fn a_permit_given_back_while_a_caller_queues_is_never_lost() {
    loom_model(3, || {
        let shared = bulkhead(1);
        assert!(shared.lane.try_acquire());
        let permit = Permit::taken(&shared);
        let releaser = thread::spawn(move || drop(permit));
        let waiter = {
            let shared = shared.clone();
            thread::spawn(move || match shared.enqueue() {
                Enqueued::Granted => true,
                Enqueued::Queued(waiter) => waiter.is_granted(),
                Enqueued::Full => unreachable!("the queue is unbounded"),
            })
        };
        releaser.join().unwrap();
        let granted_at_once = waiter.join().unwrap();
        let granted = granted_at_once || shared.queue.try_lock().unwrap().is_empty();
        assert!(granted, "a caller waits while the permit is free");
        assert_eq!(shared.lane.in_flight(), 1, "the permit is the waiter's");
        assert_eq!(shared.lane.waiting(), 0);
    });
}

/// A queued caller gives up (it timed out, or its future was dropped) just as the permit
/// it waits for is handed to it: either it left first, or it finds the permit granted and
/// gives it back. Either way the permit comes back and the queue is empty.
#[test]
fn a_waiter_leaving_as_it_is_granted_gives_the_permit_back() {
    loom_model(3, || {
        let shared = bulkhead(1);
        assert!(shared.lane.try_acquire());
        let permit = Permit::taken(&shared);
        let Enqueued::Queued(waiter) = shared.enqueue() else {
            panic!("the only permit is out: the caller must queue");
        };
        let releaser = thread::spawn(move || drop(permit));
        let leaver = {
            let shared = shared.clone();
            thread::spawn(move || {
                if shared.leave(&waiter) {
                    shared.lane.release(); // as `WaitSlot::drop` does
                }
            })
        };
        releaser.join().unwrap();
        leaver.join().unwrap();
        assert_eq!(shared.lane.in_flight(), 0, "the permit never came back");
        assert_eq!(shared.lane.waiting(), 0);
        assert!(shared.queue.try_lock().unwrap().is_empty());
    });
}

/// The bulkhead is dropped while its last permit comes back: the lane goes back to the
/// pool exactly once, whichever goes last.
#[test]
fn a_lane_goes_back_to_the_pool_exactly_once() {
    loom_model(3, || {
        let shared = bulkhead(2);
        let lane = shared.lane.clone();
        assert!(lane.try_acquire());
        let permit = Permit::taken(&shared);
        let releaser = thread::spawn(move || drop(permit));
        let owner = thread::spawn(move || drop(shared));
        releaser.join().unwrap();
        owner.join().unwrap();
        let pooled = LANES.count_free(&lane);
        LANES.forget(&lane);
        assert_eq!(pooled, 1, "the lane went back {pooled} times");
    });
}

/// The limit is raised (as an adaptive limit or `Handle::set_limit` does) while a caller
/// joins the queue behind the only permit: the caller is granted the new permit, at once
/// or by the raise, and no more permits are out than the new limit.
#[test]
fn raising_the_limit_grants_a_caller_queueing_meanwhile() {
    loom_model(3, || {
        let shared = bulkhead(1);
        assert!(shared.lane.try_acquire());
        let permit = Permit::taken(&shared);
        let raiser = {
            let shared = shared.clone();
            thread::spawn(move || shared.set_limit(2))
        };
        let waiter = {
            let shared = shared.clone();
            thread::spawn(move || match shared.enqueue() {
                Enqueued::Granted => true,
                Enqueued::Queued(waiter) => waiter.is_granted(),
                Enqueued::Full => unreachable!("the queue is unbounded"),
            })
        };
        raiser.join().unwrap();
        let granted_at_once = waiter.join().unwrap();
        let granted = granted_at_once || shared.queue.try_lock().unwrap().is_empty();
        assert!(granted, "a caller waits below the limit");
        assert_eq!(shared.lane.in_flight(), 2);
        drop(permit);
        assert_eq!(shared.lane.in_flight(), 1);
    });
}
