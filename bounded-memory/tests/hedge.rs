//! The hedge's waiting mode: callers that give up while a call waits for the hedge delay,
//! or while the first attempt and its hedge are both in flight, leave nothing behind.

// Each test holds `serial()` for its whole run on purpose, awaits included: it runs on
// its own current-thread runtime, and no other test may allocate meanwhile.
#![allow(clippy::await_holding_lock)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use seawall::hedge::HedgeLayer;
use seawall::retry::budget::RetryBudget;
use seawall::BoxError;
use tower::{Layer, Service, ServiceExt};

use crate::support::Rng;
use crate::{assert_heap_within, live_bytes, serial};

/// A downstream whose attempt `n` answers after the latency `latency(n)` says, counting
/// the attempts it was sent and those dropped before they answered.
#[derive(Clone)]
struct Slow {
    seed: u64,
    sent: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

struct Attempt {
    sleep: Pin<Box<tokio::time::Sleep>>,
    answered: bool,
    dropped: Arc<AtomicU64>,
}

impl Future for Attempt {
    type Output = Result<u64, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.answered = true;
        Poll::Ready(Ok(7))
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.answered {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Service<u64> for Slow {
    type Response = u64;
    type Error = BoxError;
    type Future = Attempt;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u64) -> Attempt {
        let n = self.sent.fetch_add(1, Ordering::Relaxed);
        // 1 to 40 ms, the same for a given attempt number and seed.
        let latency = 1 + Rng(self.seed ^ n.wrapping_mul(0x9E37_79B9)).below(40);
        Attempt {
            sleep: Box::pin(tokio::time::sleep(Duration::from_millis(latency))),
            answered: false,
            dropped: self.dropped.clone(),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_million_hedged_calls_given_up_at_random_points_leave_the_heap_bounded() {
    let _serial = serial();
    const CALLS: u64 = scaled!(1_000_000);
    const BATCH: u64 = 10_000;
    // Each request funds one hedge: the budget never runs dry, so calls hedge as often as
    // their latency says.
    let budget = RetryBudget::builder()
        .ratio(1.0)
        .min_per_sec(0.0)
        .build()
        .unwrap();
    let layer = HedgeLayer::builder()
        .delay(Duration::from_millis(10))
        .budget(budget)
        .build()
        .unwrap();
    let handle = layer.handle();
    let slow = Slow {
        seed: 0x5eed,
        sent: Arc::default(),
        dropped: Arc::default(),
    };
    let svc = layer.layer(slow.clone());
    let mut rng = Rng(42);

    // One batch: every caller gives up after 0 to 59 ms (seeded), or gets its answer
    // first: before the delay (no hedge), after it with both attempts in flight, or once
    // one of them answered.
    let batch = |rng: &mut Rng| {
        let calls: Vec<_> = (0..BATCH)
            .map(|i| {
                let patience = Duration::from_millis(rng.below(60));
                let call = svc.clone().oneshot(i);
                async move {
                    let _ = tokio::time::timeout(patience, call).await;
                }
            })
            .collect();
        futures::future::join_all(calls)
    };

    // A first batch grows what is kept for good (the runtime's timer slabs): the baseline
    // is taken after it.
    batch(&mut rng).await;
    let baseline = live_bytes();
    let mut done = BATCH;
    while done < CALLS {
        batch(&mut rng).await;
        done += BATCH;
        // Attempts that lost, or whose caller left, are dropped at once: nothing waits.
        assert_heap_within(
            "hedge, after a batch of callers giving up",
            baseline,
            64 << 10,
        );
    }
    let snap = handle.snapshot();
    let sent = slow.sent.load(Ordering::Relaxed);
    let dropped = slow.dropped.load(Ordering::Relaxed);
    println!(
        "{CALLS} calls: {sent} attempts ({} hedges, {} won), {dropped} dropped before they answered",
        snap.hedges, snap.wins
    );
    // The seeded patience and latencies reach every waiting mode many times over.
    assert!(
        snap.hedges > CALLS / 10 && snap.wins > CALLS / 20,
        "{snap:?}"
    );
    assert!(dropped > CALLS / 5, "{dropped}");
    drop(svc);
    assert_heap_within(
        "hedge, a million calls given up at random",
        baseline,
        16 << 10,
    );
}
