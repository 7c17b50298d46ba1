//! Transitions are announced (state gauge, tracing event, subscribers) outside the
//! breaker's transition lock, in order: a metrics recorder or a tracing subscriber that
//! looks at the breaker from inside its callback must not deadlock.
//!
//! In its own binary: it installs a tracing subscriber, and `tracing` caches per call
//! site whether anyone listens, which other tests' threads would disturb.
#![cfg(all(feature = "circuit-breaker", feature = "metrics", feature = "tracing"))]

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use seawall::circuit_breaker::{CircuitBreakerLayer, Handle, State};
use tracing_subscriber::layer::SubscriberExt;

/// The states that snapshots taken from inside the callbacks saw, in order.
type Seen = Arc<Mutex<Vec<State>>>;

/// The breaker's handle, once it is built (the recorder is needed to build it).
type Cell = Arc<OnceLock<Handle>>;

fn look(handle: &Cell, seen: &Seen) {
    if let Some(handle) = handle.get() {
        let state = handle.snapshot().state;
        seen.lock().unwrap().push(state);
    }
}

/// A recorder whose gauges take a snapshot of the breaker when they are set.
struct SnapshotRecorder {
    handle: Cell,
    seen: Seen,
}

struct SnapshotGauge {
    handle: Cell,
    seen: Seen,
}

impl metrics::GaugeFn for SnapshotGauge {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, _: f64) {
        look(&self.handle, &self.seen);
    }
}

impl Recorder for SnapshotRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        if key.name() == "seawall_circuit_breaker_state" {
            Gauge::from_arc(Arc::new(SnapshotGauge {
                handle: self.handle.clone(),
                seen: self.seen.clone(),
            }))
        } else {
            Gauge::noop()
        }
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// A tracing layer that takes a snapshot of the breaker on every event.
struct SnapshotLayer {
    handle: Cell,
    seen: Seen,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SnapshotLayer {
    fn on_event(
        &self,
        _event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        look(&self.handle, &self.seen);
    }
}

#[test]
fn a_recorder_and_a_subscriber_that_take_snapshots_do_not_deadlock() {
    let (done, finished) = mpsc::channel();
    // On its own thread, so that a deadlock fails the test instead of hanging it.
    std::thread::spawn(move || {
        let handle = Cell::default();
        let gauge_seen = Seen::default();
        let event_seen = Seen::default();
        let recorder = SnapshotRecorder {
            handle: handle.clone(),
            seen: gauge_seen.clone(),
        };
        let layer = metrics::with_local_recorder(&recorder, || {
            CircuitBreakerLayer::builder()
                .name("reentrant")
                .build()
                .unwrap()
        });
        let _ = handle.set(layer.handle());
        let subscriber = tracing_subscriber::registry().with(SnapshotLayer {
            handle: handle.clone(),
            seen: event_seen.clone(),
        });
        let ops = tracing::subscriber::with_default(subscriber, || {
            tracing::callsite::rebuild_interest_cache();
            let handle = layer.handle();
            let mut transitions = handle.subscribe();
            handle.force_open();
            handle.disable();
            handle.reset();
            handle.force_open();
            handle.reset();
            std::iter::from_fn(|| transitions.try_recv())
                .map(|t| t.to)
                .collect::<Vec<_>>()
        });
        let gauge = gauge_seen.lock().unwrap().clone();
        let events = event_seen.lock().unwrap().clone();
        let _ = done.send((ops, gauge, events));
    });
    let (ops, gauge, events) = finished
        .recv_timeout(Duration::from_secs(30))
        .expect("a recorder or subscriber that takes a snapshot deadlocked the breaker");
    let expected = vec![
        State::ForcedOpen,
        State::Disabled,
        State::Closed,
        State::ForcedOpen,
        State::Closed,
    ];
    assert_eq!(ops, expected, "subscribers see every transition, in order");
    assert_eq!(
        gauge, expected,
        "the gauge is set in order, after each transition"
    );
    assert_eq!(events, expected, "one event per transition, in order");
}
