//! Loom models of the breaker's state machine: `RUSTFLAGS="--cfg seawall_loom"` (see
//! `crate::sync`). Each model is a few threads making a call or two against one breaker;
//! loom runs every interleaving of their atomic operations and locks (up to a preemption
//! bound) and the assertions must hold in all of them.
//!
//! Time stands still in the models (see [`crate::sync::loom_model`]); an open duration of
//! zero makes an open breaker's next call its first probe, so that a model reaches the
//! half-open state without waiting.

use super::*;
use crate::circuit_breaker::future::OutcomeRecorder;
use crate::classify::{Classification, RecordOutcome};
use crate::sync::loom_model;
use loom::sync::atomic::AtomicUsize;
use loom::thread;

fn config(consecutive_failures: Option<u32>, failure_rate: Option<f64>, probes: u32) -> Config {
    Config {
        name: Arc::from("loom"),
        failure_rate,
        slow_calls: None,
        consecutive_failures,
        minimum_calls: 2,
        open: OpenBackoff {
            base: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 1.0,
            jitter: 0.0,
            reset_after: Duration::from_secs(3600),
        },
        half_open_probes: probes,
        max_half_open: Duration::from_secs(3600),
    }
}

/// One call through the breaker, as the service makes it: admission, then the outcome
/// recorded (`Some`) or the response future dropped unrecorded (`None`). Returns the
/// ticket, if admitted.
fn call(shared: &Arc<Shared>, outcome: Option<Classification>) -> Option<Ticket> {
    assert_eq!(
        shared.clock.now(),
        0,
        "time moved: the paused clock is not this thread's"
    );
    let ticket = shared.try_acquire().ok()?;
    let recorder = OutcomeRecorder::new(shared, ticket);
    match outcome {
        Some(classification) => recorder.record(classification),
        None => drop(recorder),
    }
    Some(ticket)
}

fn transitions(events: &mut broadcast::Receiver<Transition>) -> Vec<(State, State)> {
    std::iter::from_fn(|| events.try_recv().ok())
        .map(|t| (t.from, t.to))
        .collect()
}

/// The transitions form one chain from `start`, in the order subscribers see them, and
/// end at the breaker's state.
fn assert_chain(start: State, seen: &[(State, State)], shared: &Shared) {
    let mut state = start;
    for &(from, to) in seen {
        assert_eq!(from, state, "transitions out of order: {seen:?}");
        state = to;
    }
    assert_eq!(
        state,
        shared.word().state(),
        "the last transition seen is not the state: {seen:?}"
    );
}

/// Two failures at once, each enough with the other to trip the breaker by two rules (two
/// failures in a row, and a failure rate of 50 % over two calls): both may find the rule
/// broken, both may try the transition, and it happens exactly once.
#[test]
fn concurrent_failures_trip_the_breaker_exactly_once() {
    loom_model(3, || {
        let shared = Shared::new(
            config(Some(2), Some(0.5), 1),
            WindowKind::Count { size: 2 },
            1,
        );
        let mut events = shared.subscribe();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let shared = shared.clone();
                thread::spawn(move || call(&shared, Some(Classification::failure())))
            })
            .collect();
        for t in threads {
            assert!(
                t.join().unwrap().is_some(),
                "a closed breaker admits both calls"
            );
        }
        assert_eq!(transitions(&mut events), [(State::Closed, State::Open)]);
        // The raw word: `state()` would end the (zero-length) open period.
        assert_eq!(shared.word().state(), State::Open);
        assert_eq!(shared.lock().trips, 1);
    });
}

/// A half-open breaker with two probe slots and three callers: one drops its call, two
/// succeed. At no moment are more than two probes out; at the end the breaker is not
/// stuck half-open (every slot came back: the next caller is admitted as a probe), and it
/// closed exactly when two probes of the same half-open period succeeded.
#[test]
fn half_open_admits_at_most_its_probes_and_a_dropped_probe_frees_its_slot() {
    // Three threads: 12 s at two preemptions, minutes at three.
    loom_model(2, || {
        let shared = Shared::new(config(Some(1), None, 2), WindowKind::Count { size: 2 }, 1);
        call(&shared, Some(Classification::failure()));
        assert_eq!(shared.word().state(), State::Open);
        let live = Arc::new(AtomicUsize::new(0));
        let succeeded = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|i| {
                let (shared, live, succeeded) = (shared.clone(), live.clone(), succeeded.clone());
                thread::spawn(move || {
                    let Ok(ticket) = shared.try_acquire() else {
                        return;
                    };
                    let probe = matches!(ticket, Ticket::Probe { .. });
                    if probe {
                        let out = live.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(out <= 2, "{out} probes out with two slots");
                        // Counted back before its slot is: never a false alarm.
                        live.fetch_sub(1, Ordering::SeqCst);
                    }
                    let recorder = OutcomeRecorder::new(&shared, ticket);
                    if i == 0 {
                        drop(recorder);
                    } else {
                        recorder.record(Classification::success());
                        if probe {
                            succeeded.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let word = shared.word();
        match word.state() {
            State::Closed => assert_eq!(succeeded.load(Ordering::SeqCst), 2),
            State::HalfOpen => {
                assert_eq!(word.in_flight(), 0, "a probe slot was never given back");
                assert!(
                    matches!(shared.try_acquire(), Ok(Ticket::Probe { .. })),
                    "stuck half-open"
                );
            }
            other => panic!("{other:?}"),
        }
    });
}

/// A probe that hangs (here: one slot, and a half-open period bounded at zero) loses its
/// slot to the next caller, which re-opens the breaker and probes anew, while the hung
/// probe's failure arrives at last. Whatever the order, the late failure decides nothing
/// that the new probe's success does not overrule (a failure of the period it belongs to
/// re-opens the breaker, and the next call probes again; a failure of an earlier period
/// counts for nothing), so the breaker ends closed; and subscribers see every transition,
/// in order, each from the state the one before left.
#[test]
fn concurrent_transitions_agree_and_a_late_probe_decides_nothing() {
    loom_model(3, || {
        let shared = Shared::new(
            Config {
                max_half_open: Duration::ZERO,
                ..config(Some(1), None, 1)
            },
            WindowKind::Count { size: 2 },
            1,
        );
        call(&shared, Some(Classification::failure()));
        let mut events = shared.subscribe();
        let hung = shared.try_acquire().unwrap();
        assert!(matches!(hung, Ticket::Probe { .. }));
        let late = {
            let shared = shared.clone();
            thread::spawn(move || {
                OutcomeRecorder::new(&shared, hung).record(Classification::failure())
            })
        };
        let next = {
            let shared = shared.clone();
            thread::spawn(move || call(&shared, Some(Classification::success())))
        };
        late.join().unwrap();
        assert!(
            next.join().unwrap().is_some(),
            "the next call is never turned away"
        );
        let seen = transitions(&mut events);
        assert_chain(State::HalfOpen, &seen[1..], &shared);
        assert_eq!(seen[0], (State::Open, State::HalfOpen));
        // With a zero half-open limit, any look at the breaker times out a probe that is
        // out, the new one included: it ends closed, or half-open with no probe out (not
        // stuck: the next call probes).
        match shared.state() {
            State::Closed => {}
            State::HalfOpen => {
                assert_eq!(shared.word().in_flight(), 0, "{seen:?}");
                assert!(matches!(shared.try_acquire(), Ok(Ticket::Probe { .. })));
            }
            other => panic!("{other:?}: {seen:?}"),
        }
    });
}

/// The fast path against a failure streak: a failure and a success race on a clean
/// window of one call, in every order of their window write and streak update. Whatever
/// the result, the next success clears any stale streak, so that one failure after it is
/// one failure in a row, not two.
#[test]
fn the_fast_path_never_keeps_a_stale_failure_streak() {
    loom_model(3, || {
        let shared = Shared::new(config(Some(2), None, 1), WindowKind::Count { size: 1 }, 1);
        call(&shared, Some(Classification::success())); // the window is clean
        let threads: Vec<_> = [Classification::failure(), Classification::success()]
            .into_iter()
            .map(|outcome| {
                let shared = shared.clone();
                thread::spawn(move || call(&shared, Some(outcome)))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(shared.state(), State::Closed);
        call(&shared, Some(Classification::success()));
        assert_eq!(
            shared.lane.consecutive_failures().load(Ordering::SeqCst),
            0,
            "a success left a failure streak"
        );
        call(&shared, Some(Classification::failure()));
        assert_eq!(
            shared.state(),
            State::Closed,
            "one failure tripped a streak of two"
        );
    });
}

/// Wakes by setting a flag.
struct Flag(loom::sync::atomic::AtomicBool);

impl std::task::Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Backpressure: a caller finds every probe slot taken and waits (queues its waker,
/// then looks once more, as `poll_ready` does) while the probe is dropped and gives its
/// slot back (which wakes one waiter). Either the caller's second look is admitted or its waker is woken: a
/// waiting caller never sleeps through the slot coming back.
#[test]
fn a_caller_waiting_for_a_probe_slot_is_never_left_asleep() {
    loom_model(3, || {
        let shared = Shared::new(config(Some(1), None, 1), WindowKind::Count { size: 2 }, 1);
        call(&shared, Some(Classification::failure()));
        let probe = OutcomeRecorder::new(&shared, shared.try_acquire().unwrap());
        let dropper = thread::spawn(move || drop(probe));
        let flag = Arc::new(Flag(loom::sync::atomic::AtomicBool::new(false)));
        let waiter = {
            let (shared, flag) = (shared.clone(), flag.clone());
            thread::spawn(move || {
                if shared.observe().is_ok() {
                    return true;
                }
                let _ = shared.waiters.register(None, &std::task::Waker::from(flag));
                shared.observe().is_ok()
            })
        };
        dropper.join().unwrap();
        let admitted = waiter.join().unwrap();
        assert!(
            admitted || flag.0.load(Ordering::SeqCst),
            "the caller sleeps while a probe slot is free"
        );
    });
}
