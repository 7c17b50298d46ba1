//! The deadline layer's readiness wait: callers that give up leave nothing behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use seawall::timeout::DeadlineLayer;
use seawall::BoxError;
use tower::{Layer, Service, ServiceExt};

use crate::support::Rng;
use crate::{assert_heap_within, live_bytes, serial};

/// A service that is not ready until its gate opens; it keeps the waker of its latest
/// waiter only (as a `tokio::sync` primitive with one waiter would).
#[derive(Clone, Default)]
struct Gate {
    open: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Service<u32> for Gate {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.open.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }

    fn call(&mut self, n: u32) -> Self::Future {
        std::future::ready(Ok(n))
    }
}

/// A million callers wait in `poll_ready` of a deadline-wrapped service that is not
/// ready, each on the shared instance or on a clone of its own, and give up at seeded
/// random points: before the wait's deadline, right at it (readiness said "ready" and
/// they never called), or long after. Once they are gone, the live heap is where it
/// was, give or take a fixed bound; and a call made afterwards is sent with its whole
/// deadline.
#[test]
fn a_million_abandoned_readiness_waits_leave_the_heap_bounded() {
    let _serial = serial();
    // The runtime is built inside the serial section, so that the guard is never held
    // across an `.await`.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(abandon_a_million_waits());
}

async fn abandon_a_million_waits() {
    const CALLERS: u32 = scaled!(1_000_000);
    const DEADLINE: Duration = Duration::from_millis(100);
    let gate = Gate::default();
    let mut shared = DeadlineLayer::new(DEADLINE).unwrap().layer(gate.clone());
    let mut rng = Rng(0x5eed_dead_11e5);

    let mut before = None;
    for caller in 0..CALLERS {
        if caller == 1_000 {
            // Measured once every kind of wait has happened: the timer wheel, the
            // runtime and the shared instance have their working sizes.
            before = Some(live_bytes());
        }
        let mut own;
        let svc = if rng.below(2) == 0 {
            &mut shared
        } else {
            own = shared.clone();
            &mut own
        };
        let polls = rng.below(4);
        let step = Duration::from_millis(rng.below(80));
        let mut wait = std::pin::pin!(ServiceExt::<u32>::ready(svc));
        for _ in 0..polls {
            if futures::poll!(&mut wait).is_ready() {
                break;
            }
            tokio::time::advance(step).await;
        }
    }
    let before = before.unwrap();
    // A fixed bound: the runtime's own tables settle about 22 KB higher in a release
    // build; a leak of one byte per caller would be a megabyte.
    assert_heap_within("a million abandoned readiness waits", before, 64 * 1024);

    // The service is still fit for use: a ready inner service is called at once, with
    // the whole deadline.
    gate.open.store(true, Ordering::Relaxed);
    let started = tokio::time::Instant::now();
    assert_eq!(shared.ready().await.unwrap().call(7).await.unwrap(), 7);
    assert_eq!(started.elapsed(), Duration::ZERO);
}
