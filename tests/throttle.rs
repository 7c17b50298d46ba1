//! Client-side throttling: the rejection rate against the SRE book's formula, recovery as
//! the window slides, what counts, and the configuration. Deterministic: paused tokio
//! time and seeded coins.
#![cfg(feature = "throttle")]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use seawall::classify::{classify_fn, Classification};
use seawall::error::Throttled;
use seawall::throttle::{Builder, Handle, Throttle, ThrottleLayer};
use seawall::BoxError;
use tokio::time::{advance, Instant};
use tower::{Layer, Service, ServiceExt};

// ===== helpers =====

type Accept = dyn Fn(u64, Instant) -> bool + Send + Sync;

/// A backend that accepts or fails each request it receives as `accept(index, now)` says
/// (`index` counts the requests it received, from 0), and counts them.
#[derive(Clone)]
struct Backend {
    accept: Arc<Accept>,
    received: Arc<AtomicU64>,
}

impl Backend {
    fn new(accept: impl Fn(u64, Instant) -> bool + Send + Sync + 'static) -> Self {
        Self {
            accept: Arc::new(accept),
            received: Arc::new(AtomicU64::new(0)),
        }
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("received", &self.received())
            .finish()
    }
}

impl Service<()> for Backend {
    type Response = ();
    type Error = BoxError;
    type Future = std::future::Ready<Result<(), BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        let index = self.received.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if (self.accept)(index, Instant::now()) {
            Ok(())
        } else {
            Err("503 unavailable".into())
        })
    }
}

/// What became of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Accepted,
    Failed,
    Throttled,
}

async fn send<S>(svc: &S) -> Seen
where
    S: Service<(), Response = (), Error = BoxError> + Clone,
{
    match svc.clone().oneshot(()).await {
        Ok(()) => Seen::Accepted,
        Err(e) if e.is::<Throttled>() => {
            assert!(seawall::error::is_rejection(&*e));
            Seen::Throttled
        }
        Err(_) => Seen::Failed,
    }
}

/// The SRE book's formula, computed here from the handle's counts.
fn formula(requests: u64, accepts: u64, k: f64) -> f64 {
    ((requests as f64 - k * accepts as f64) / (requests as f64 + 1.0)).max(0.0)
}

/// Observed refusals against the formula: each call is refused with the probability the
/// formula gives for the window it found, so the number refused is a sum of independent
/// Bernoulli trials (its mean is the sum of those probabilities, its variance the sum of
/// `p (1 - p)`).
#[derive(Debug, Default)]
struct Tally {
    /// The throttle's `minimum_calls`: no refusal while fewer were sent.
    minimum: u64,
    calls: u64,
    throttled: u64,
    sent: u64,
    accepted: u64,
    expected: f64,
    variance: f64,
}

impl Tally {
    /// Check the handle against the formula, then make one call and count it.
    async fn call<S>(&mut self, svc: &S, handle: &Handle, k: f64) -> Seen
    where
        S: Service<(), Response = (), Error = BoxError> + Clone,
    {
        let snap = handle.snapshot();
        let p = if snap.sent < self.minimum {
            0.0
        } else {
            formula(snap.requests, snap.accepts, k)
        };
        assert_eq!(snap.probability, p, "{snap:?}");
        assert_eq!(handle.probability(), p);
        self.expected += p;
        self.variance += p * (1.0 - p);
        self.calls += 1;
        let seen = send(svc).await;
        match seen {
            Seen::Throttled => self.throttled += 1,
            Seen::Accepted => {
                self.sent += 1;
                self.accepted += 1;
            }
            Seen::Failed => self.sent += 1,
        }
        seen
    }

    /// The refusals are within four standard deviations (plus one call) of the formula's
    /// expectation. The seed is fixed, so this is deterministic; the bound says how far a
    /// fair coin would stray, and a biased coin or a wrong probability would not fit.
    fn assert_matches_formula(&self, what: &str) {
        let sd = self.variance.sqrt();
        let off = (self.throttled as f64 - self.expected).abs();
        eprintln!(
            "{what}: {} calls, {} throttled ({:.4} observed rate), formula expects {:.1} \
             ({:.4}), sd {:.2}, off by {:.2} sd",
            self.calls,
            self.throttled,
            self.throttled as f64 / self.calls as f64,
            self.expected,
            self.expected / self.calls as f64,
            sd,
            off / sd.max(f64::MIN_POSITIVE),
        );
        assert!(
            off <= 4.0 * sd + 1.0,
            "{what}: {} throttled, formula expects {:.1} ± {:.1}",
            self.throttled,
            self.expected,
            sd
        );
    }
}

/// A throttle that applies the SRE book's formula from the first answer
/// (`minimum_calls(0)`): most tests here check the formula itself.
fn layer(k: f64, window: Duration, buckets: u32, seed: u64) -> ThrottleLayer {
    ThrottleLayer::builder()
        .name("backend")
        .k(k)
        .minimum_calls(0)
        .window(window)
        .buckets(buckets)
        .seed(seed)
        .build()
        .unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ===== the formula =====

#[tokio::test(start_paused = true)]
async fn a_backend_that_accepts_everything_is_never_throttled() {
    let layer = layer(2.0, secs(10), 10, 1);
    let handle = layer.handle();
    let backend = Backend::new(|_, _| true);
    let svc = layer.layer(backend.clone());
    let mut tally = Tally::default();
    for i in 0..5_000 {
        if i > 0 {
            advance(ms(10)).await;
        }
        assert_eq!(tally.call(&svc, &handle, 2.0).await, Seen::Accepted);
        assert_eq!(handle.probability(), 0.0, "exactly zero");
    }
    assert_eq!(backend.received(), 5_000);
    let snap = handle.snapshot();
    assert_eq!(snap.requests, snap.accepts);
    assert_eq!(snap.requests, 1_000, "the last 10 s at 100 calls/s");
    assert_eq!((snap.probability, snap.rejections), (0.0, 0));
    assert_eq!(tally.expected, 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_rejects_everything_is_throttled_as_the_formula_says() {
    // 20 calls per second over a window of 1 s: the window holds about 20 requests and
    // no accepts, so about 20/21 of the calls are refused and a trickle of 1 in 21 goes
    // through, for as long as the outage lasts.
    let layer = layer(2.0, secs(1), 10, 42);
    let handle = layer.handle();
    let backend = Backend::new(|_, _| false);
    let svc = layer.layer(backend.clone());
    let mut tally = Tally::default();
    let mut sent_per_10s = Vec::new();
    for second in 0..200u64 {
        if second % 10 == 0 {
            sent_per_10s.push(0);
        }
        for _ in 0..20 {
            if tally.call(&svc, &handle, 2.0).await == Seen::Failed {
                *sent_per_10s.last_mut().unwrap() += 1;
            }
            advance(ms(50)).await;
        }
    }
    tally.assert_matches_formula("full outage");
    assert_eq!(tally.accepted, 0);
    assert_eq!(tally.sent, backend.received());
    assert_eq!(handle.snapshot().rejections, tally.throttled);
    let rate = tally.throttled as f64 / tally.calls as f64;
    assert!((0.93..0.97).contains(&rate), "{rate}");
    // The trickle never stops: every 10 s some calls still reach the backend.
    assert!(sent_per_10s.iter().all(|&n| n >= 1), "{sent_per_10s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_burst_against_a_dead_backend_sends_a_logarithmic_trickle() {
    // All at one instant with the defaults: the first 20 calls (`minimum_calls`) reach
    // the backend, then the i-th call is refused with probability i / (i + 1), so about
    // 20 + ln(n / 20) calls of n reach the backend.
    let layer = ThrottleLayer::builder().seed(9).build().unwrap();
    let handle = layer.handle();
    let backend = Backend::new(|_, _| false);
    let svc = layer.layer(backend.clone());
    let mut tally = Tally {
        minimum: 20,
        ..Tally::default()
    };
    for _ in 0..10_000 {
        tally.call(&svc, &handle, 2.0).await;
    }
    tally.assert_matches_formula("burst");
    let sent = backend.received();
    assert!(
        (22..=45).contains(&sent),
        "{sent} sent (expected ~20 + ln(10000 / 20) = 26.2)"
    );
    assert_eq!(handle.snapshot().requests, 10_000);
}

#[tokio::test(start_paused = true)]
async fn partial_acceptance_is_throttled_as_the_formula_says() {
    // The backend accepts one request in four of those it receives. With k = 3 the
    // throttle settles where requests = 3 * accepts + (some), well inside (0, 1).
    let k = 3.0;
    let layer = layer(k, secs(10), 10, 7);
    let handle = layer.handle();
    let backend = Backend::new(|i, _| i % 4 == 0);
    let svc = layer.layer(backend.clone());
    let mut tally = Tally::default();
    for _ in 0..6_000 {
        tally.call(&svc, &handle, k).await;
        advance(ms(10)).await;
    }
    tally.assert_matches_formula("25 % accepted, k = 3");
    let rate = tally.throttled as f64 / tally.calls as f64;
    assert!((0.5..0.95).contains(&rate), "{rate}");
    assert!(tally.accepted > 0 && tally.sent > tally.accepted);
    // The same with k = 2.
    let k = 2.0;
    let layer = layer_with(k, 8);
    let handle = layer.handle();
    let svc = layer.layer(Backend::new(|i, _| i % 4 == 0));
    let mut tally = Tally::default();
    for _ in 0..6_000 {
        tally.call(&svc, &handle, k).await;
        advance(ms(10)).await;
    }
    tally.assert_matches_formula("25 % accepted, k = 2");
}

fn layer_with(k: f64, seed: u64) -> ThrottleLayer {
    layer(k, secs(10), 10, seed)
}

#[tokio::test(start_paused = true)]
async fn against_a_backend_of_limited_capacity_the_client_sends_k_times_what_it_accepts() {
    // 100 calls per second against a backend that accepts 10 per second: the throttle
    // settles at p = (100 - 2 * 10) / 100 = 0.8, sending 20 per second, k times the
    // accepts, whatever the demand.
    let k = 2.0;
    let layer = layer(k, secs(10), 10, 3);
    let handle = layer.handle();
    let capacity = Arc::new(Mutex::new((0u64, 0u32)));
    let start = Instant::now();
    let backend = Backend::new(move |_, now| {
        let second = (now - start).as_secs();
        let mut c = capacity.lock().unwrap();
        if c.0 != second {
            *c = (second, 0);
        }
        c.1 += 1;
        c.1 <= 10
    });
    let svc = layer.layer(backend.clone());
    let mut warm_up = Tally::default();
    for _ in 0..3_000 {
        warm_up.call(&svc, &handle, k).await;
        advance(ms(10)).await;
    }
    let mut tally = Tally::default();
    for _ in 0..6_000 {
        tally.call(&svc, &handle, k).await;
        advance(ms(10)).await;
    }
    tally.assert_matches_formula("capacity 10/s, demand 100/s");
    let ratio = tally.sent as f64 / tally.accepted as f64;
    let rate = tally.throttled as f64 / tally.calls as f64;
    eprintln!(
        "steady state: {:.1} sent/s, {:.1} accepted/s, sent/accepted {ratio:.3}, refused {rate:.3}",
        tally.sent as f64 / 60.0,
        tally.accepted as f64 / 60.0
    );
    assert!((1.8..=2.2).contains(&ratio), "{ratio}");
    assert!((0.78..=0.82).contains(&rate), "{rate}");
}

// ===== the window =====

#[tokio::test(start_paused = true)]
async fn throttling_fades_as_the_window_slides_after_recovery() {
    // 100 calls per second; the backend fails for 20 s, then recovers.
    let layer = layer(2.0, secs(10), 10, 11);
    let handle = layer.handle();
    let start = Instant::now();
    let backend = Backend::new(move |_, now| now - start >= secs(20));
    let svc = layer.layer(backend.clone());
    for _ in 0..2_000 {
        send(&svc).await;
        advance(ms(10)).await;
    }
    let at_recovery = handle.probability();
    assert!(at_recovery > 0.99, "{at_recovery}");

    // Each window, the calls that get through succeed, and there are more of them: the
    // probability falls, and then reaches zero.
    let mut per_window = Vec::new();
    let mut cleared_after = None;
    for window in 1..=20 {
        let mut throttled = 0;
        for _ in 0..1_000 {
            if send(&svc).await == Seen::Throttled {
                throttled += 1;
            }
            advance(ms(10)).await;
        }
        per_window.push((throttled, handle.probability()));
        if handle.probability() == 0.0 && throttled == 0 {
            cleared_after = Some(window);
            break;
        }
    }
    eprintln!("recovery, per 10 s window (refused calls, probability at its end): {per_window:?}");
    let cleared_after = cleared_after.expect("throttling never stopped");
    assert!(cleared_after <= 12, "{per_window:?}");
    // Refusals fall window by window once the first successes are in.
    let refused: Vec<_> = per_window.iter().map(|w| w.0).collect();
    assert!(refused.windows(2).all(|w| w[1] <= w[0]), "{refused:?}");
    // And from then on every call goes through.
    for _ in 0..1_000 {
        assert_eq!(send(&svc).await, Seen::Accepted);
        advance(ms(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_window_forgets_old_counts_bucket_by_bucket() {
    // 10 s in 10 buckets of 1 s. The backend accepts its first four requests only.
    let layer = layer(2.0, secs(10), 10, 5);
    let handle = layer.handle();
    let svc = layer.layer(Backend::new(|i, _| i < 4));
    // At 0 s: four accepted, two failed (6 <= 2 * 4: nothing is refused).
    for expected in [Seen::Accepted; 4].into_iter().chain([Seen::Failed; 2]) {
        assert_eq!(send(&svc).await, expected);
    }
    // At 5 s: two more failures (8 <= 2 * 4: still nothing refused).
    advance(ms(5_000)).await;
    for _ in 0..2 {
        assert_eq!(send(&svc).await, Seen::Failed);
    }
    let snap = handle.snapshot();
    assert_eq!((snap.requests, snap.accepts, snap.probability), (8, 4, 0.0));

    advance(ms(4_999)).await;
    assert_eq!(
        handle.snapshot().requests,
        8,
        "the first second is still in the window"
    );
    advance(ms(1)).await;
    let snap = handle.snapshot();
    assert_eq!(
        (snap.requests, snap.accepts, snap.probability),
        (2, 0, 2.0 / 3.0),
        "the first second left, with its accepts"
    );
    advance(ms(5_000)).await;
    let snap = handle.snapshot();
    assert_eq!((snap.requests, snap.accepts, snap.probability), (0, 0, 0.0));
    assert_eq!(snap.rejections, 0);
}

#[tokio::test(start_paused = true)]
async fn a_long_outage_is_forgotten_one_window_after_it_ends() {
    let layer = layer(2.0, secs(120), 12, 5);
    let handle = layer.handle();
    let svc = layer.layer(Backend::new(|_, _| false));
    for _ in 0..500 {
        send(&svc).await;
        advance(ms(100)).await;
    }
    assert!(handle.probability() > 0.99);
    // No calls at all for a whole window: nothing is left, and the next call goes out.
    advance(secs(120)).await;
    assert_eq!(handle.snapshot().requests, 0);
    assert_eq!(handle.probability(), 0.0);
    assert_eq!(send(&svc).await, Seen::Failed);
}

#[tokio::test(start_paused = true)]
async fn one_transient_error_on_a_quiet_dependency_refuses_no_healthy_call_after_it() {
    // The default throttle (two minutes, K = 2) in front of a dependency called once every
    // 5 s: one call fails, and the next 23 (the rest of the window) succeed. A single error
    // is not overload: none of those healthy calls is refused, whatever the seed.
    let mut refused = 0;
    for seed in 0..100 {
        let layer = ThrottleLayer::builder()
            .name("quiet")
            .seed(seed)
            .build()
            .unwrap();
        let svc = layer.layer(Backend::new(|i, _| i != 0));
        assert_eq!(send(&svc).await, Seen::Failed);
        for _ in 0..23 {
            advance(secs(5)).await;
            if send(&svc).await == Seen::Throttled {
                refused += 1;
            }
        }
    }
    assert_eq!(
        refused, 0,
        "healthy calls refused after one error, over 100 seeds of 23 calls each"
    );
}

#[tokio::test(start_paused = true)]
async fn reset_forgets_the_window() {
    let layer = layer(2.0, secs(120), 12, 5);
    let handle = layer.handle();
    let svc = layer.layer(Backend::new(|_, _| false));
    for _ in 0..100 {
        send(&svc).await;
    }
    let before = handle.snapshot();
    assert!(before.probability > 0.9 && before.rejections > 0);
    handle.reset();
    let after = handle.snapshot();
    assert_eq!(
        (after.requests, after.accepts, after.probability),
        (0, 0, 0.0)
    );
    assert_eq!(after.rejections, before.rejections, "the total is kept");
    assert_eq!(send(&svc).await, Seen::Failed, "the next call is sent");
}

// ===== what counts =====

#[cfg(feature = "bulkhead")]
#[tokio::test(start_paused = true)]
async fn rejections_by_a_bulkhead_below_are_not_the_backends() {
    use seawall::bulkhead::BulkheadLayer;
    use seawall::error::BulkheadFull;

    let throttle = layer(2.0, secs(10), 10, 1);
    let handle = throttle.handle();
    let bulkhead = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(throttle)
        .layer(bulkhead)
        .service(tower::service_fn(|hang: bool| async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Ok::<_, BoxError>(())
        }));
    // One call holds the only permit.
    let mut holder = svc.clone();
    let held = holder.ready().await.unwrap().call(true);
    for _ in 0..1_000 {
        let err = svc.clone().oneshot(false).await.unwrap_err();
        assert!(err.is::<BulkheadFull>(), "{err}");
    }
    let snap = handle.snapshot();
    assert_eq!((snap.requests, snap.accepts, snap.probability), (0, 0, 0.0));
    // The call in flight counts only when it ends: dropped, it counts as nothing.
    drop(held);
    assert_eq!(handle.snapshot().requests, 0);
    assert_eq!(svc.clone().oneshot(false).await.unwrap(), ());
    assert_eq!(handle.snapshot().accepts, 1);
}

#[cfg(feature = "circuit-breaker")]
#[tokio::test(start_paused = true)]
async fn rejections_by_an_open_breaker_below_are_not_the_backends() {
    use seawall::circuit_breaker::CircuitBreakerLayer;
    use seawall::error::CircuitOpen;

    let throttle = layer(2.0, secs(10), 10, 1);
    let handle = throttle.handle();
    let breaker = CircuitBreakerLayer::builder().build().unwrap();
    breaker.handle().force_open();
    let svc = throttle.layer(breaker.layer(Backend::new(|_, _| true)));
    for _ in 0..100 {
        let err = svc.clone().oneshot(()).await.unwrap_err();
        assert!(err.is::<CircuitOpen>());
    }
    assert_eq!(handle.snapshot().requests, 0);
}

#[tokio::test(start_paused = true)]
async fn the_classifier_decides_what_is_accepted_and_what_counts_as_nothing() {
    // Status codes: 2xx and 404 were processed (accepted); 503 was not; 499 (the client
    // went away) counts as nothing.
    let layer = ThrottleLayer::builder()
        .seed(1)
        .classifier(classify_fn(|r: &Result<u16, BoxError>| match r {
            Ok(499) => Classification::ignored(),
            Ok(503) | Err(_) => Classification::failure(),
            Ok(_) => Classification::success(),
        }))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(tower::service_fn(|status: u16| async move {
        Ok::<_, BoxError>(status)
    }));
    for status in [200, 404, 499, 499, 503] {
        assert_eq!(svc.clone().oneshot(status).await.unwrap(), status);
    }
    let snap = handle.snapshot();
    assert_eq!((snap.requests, snap.accepts), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn a_refused_call_touches_nothing_below() {
    /// Counts `poll_ready` and `call` of the service below, and fails every call.
    #[derive(Clone, Default)]
    struct Below {
        polls: Arc<AtomicU64>,
        calls: Arc<AtomicU64>,
    }
    impl Service<()> for Below {
        type Response = ();
        type Error = BoxError;
        type Future = std::future::Ready<Result<(), BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, (): ()) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err("down".into()))
        }
    }
    let layer = layer(2.0, secs(10), 10, 2);
    let handle = layer.handle();
    let below = Below::default();
    let svc = layer.layer(below.clone());
    let mut throttled = 0;
    for _ in 0..200 {
        if send(&svc).await == Seen::Throttled {
            throttled += 1;
        }
    }
    assert!(throttled > 150);
    let sent = 200 - throttled;
    assert_eq!(below.polls.load(Ordering::SeqCst), sent);
    assert_eq!(below.calls.load(Ordering::SeqCst), sent);
    assert_eq!(handle.snapshot().requests, 200);

    // Ready but never called: nothing is counted.
    let before = handle.snapshot();
    for _ in 0..50 {
        let mut svc = svc.clone();
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    }
    assert_eq!(handle.snapshot(), before);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_counts_as_nothing() {
    let layer = layer(2.0, secs(10), 10, 2);
    let handle = layer.handle();
    let svc = layer.layer(tower::service_fn(|()| async {
        std::future::pending::<Result<(), BoxError>>().await
    }));
    for _ in 0..10 {
        let mut svc = svc.clone();
        let call = svc.ready().await.unwrap().call(());
        let timed_out = tokio::time::timeout(secs(1), call).await;
        assert!(timed_out.is_err());
    }
    assert_eq!(handle.snapshot().requests, 0);
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_refuses_the_same_calls() {
    async fn pattern(seed: u64) -> Vec<Seen> {
        let svc = layer(2.0, secs(10), 10, seed).layer(Backend::new(|i, _| i % 5 == 0));
        let mut seen = Vec::new();
        for _ in 0..500 {
            seen.push(send(&svc).await);
            advance(ms(10)).await;
        }
        seen
    }
    let a = pattern(1234).await;
    assert_eq!(a, pattern(1234).await);
    assert_ne!(a, pattern(4321).await);
    assert!(a.contains(&Seen::Throttled));
}

#[tokio::test(start_paused = true)]
async fn outcomes_known_at_the_end_of_a_stream_count_then() {
    use seawall::classify::{Classify, ClassifyEos, RecordOutcome, Verdict};
    use tokio::sync::oneshot;

    /// A response whose status (0 = OK) arrives after its body.
    struct Stream {
        status: oneshot::Receiver<u8>,
    }
    struct Tracked<R> {
        stream: Stream,
        recorder: Option<R>,
    }
    impl<R: RecordOutcome> Tracked<R> {
        async fn finish(self) -> u8 {
            let status = self.stream.status.await.unwrap_or(2);
            if let Some(recorder) = self.recorder {
                recorder.record(if status == 0 {
                    Classification::success()
                } else {
                    Classification::failure()
                });
            }
            status
        }
    }
    #[derive(Clone)]
    struct AtEndClassifier;
    struct AtEnd;
    impl Classify<Stream, BoxError> for AtEndClassifier {
        type Eos = AtEnd;
        fn classify(&self, _: &Result<Stream, BoxError>) -> Verdict<AtEnd> {
            Verdict::AtEndOfStream(AtEnd)
        }
    }
    impl ClassifyEos<Stream> for AtEnd {
        type Response<R: RecordOutcome> = Tracked<R>;
        fn defer<R: RecordOutcome>(self, stream: Stream, recorder: R) -> Tracked<R> {
            Tracked {
                stream,
                recorder: Some(recorder),
            }
        }
        fn passthrough<R: RecordOutcome>(stream: Stream) -> Tracked<R> {
            Tracked {
                stream,
                recorder: None,
            }
        }
    }

    let layer = ThrottleLayer::builder()
        .seed(1)
        .classifier(AtEndClassifier)
        .build()
        .unwrap();
    let handle = layer.handle();
    let senders = Arc::new(Mutex::new(Vec::new()));
    let svc = layer.layer(tower::service_fn({
        let senders = senders.clone();
        move |()| {
            let (tx, rx) = oneshot::channel();
            senders.lock().unwrap().push(tx);
            async move { Ok::<_, BoxError>(Stream { status: rx }) }
        }
    }));
    let ok = svc.clone().oneshot(()).await.unwrap();
    let failed = svc.clone().oneshot(()).await.unwrap();
    let abandoned = svc.clone().oneshot(()).await.unwrap();
    assert_eq!(handle.snapshot().requests, 0, "nothing known yet");
    let mut senders = std::mem::take(&mut *senders.lock().unwrap());
    senders.remove(0).send(0).unwrap();
    senders.remove(0).send(14).unwrap();
    assert_eq!(ok.finish().await, 0);
    assert_eq!(failed.finish().await, 14);
    drop(abandoned); // the body dropped half-way: counts as nothing
    let snap = handle.snapshot();
    assert_eq!((snap.requests, snap.accepts), (2, 1));
}

// ===== configuration and types =====

#[test]
fn every_bad_value_is_a_config_error_naming_its_field() {
    let cases: Vec<(&str, Builder)> = vec![
        ("name", ThrottleLayer::builder().name("")),
        ("k", ThrottleLayer::builder().k(0.99)),
        ("k", ThrottleLayer::builder().k(0.0)),
        ("k", ThrottleLayer::builder().k(-2.0)),
        ("k", ThrottleLayer::builder().k(f64::NAN)),
        ("k", ThrottleLayer::builder().k(f64::INFINITY)),
        ("window", ThrottleLayer::builder().window(Duration::ZERO)),
        ("buckets", ThrottleLayer::builder().buckets(0)),
        ("buckets", ThrottleLayer::builder().buckets(101)),
        (
            "window",
            ThrottleLayer::builder().window(ms(50)).buckets(100),
        ),
    ];
    for (field, builder) in cases {
        let err = builder.clone().build().unwrap_err();
        assert_eq!(err.component(), "throttle");
        assert_eq!(err.field(), field, "{builder:?}: {err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    // The edges that are fine.
    for builder in [
        ThrottleLayer::builder().k(1.0),
        ThrottleLayer::builder().k(1e9),
        ThrottleLayer::builder().buckets(1),
        ThrottleLayer::builder().buckets(100),
        ThrottleLayer::builder().window(ms(100)).buckets(100),
    ] {
        builder.build().unwrap();
    }
    let err = ThrottleLayer::builder().k(0.5).build().unwrap_err();
    assert!(err.reason().contains("0.5"), "{err}");
}

#[test]
fn layers_services_futures_and_handles_are_send_sync_static() {
    fn assert_send_sync_static<T: Send + Sync + 'static>() {}
    fn assert_send_static<T: Send + 'static>() {}
    type Inner = tower::util::BoxCloneSyncService<u32, u32, BoxError>;
    type BoxFuture = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;
    assert_send_sync_static::<ThrottleLayer>();
    assert_send_sync_static::<Throttle<Inner>>();
    assert_send_sync_static::<Throttle<Backend>>();
    assert_send_sync_static::<Handle>();
    assert_send_sync_static::<seawall::throttle::Snapshot>();
    assert_send_sync_static::<seawall::throttle::future::OutcomeRecorder>();
    assert_send_sync_static::<Throttled>();
    assert_send_static::<
        seawall::throttle::future::ResponseFuture<BoxFuture, seawall::classify::ErrorsAsFailures>,
    >();
    assert_send_sync_static::<
        seawall::throttle::future::ResponseFuture<
            std::future::Ready<Result<u32, BoxError>>,
            seawall::classify::ErrorsAsFailures,
        >,
    >();
}

#[tokio::test(start_paused = true)]
async fn works_in_a_service_builder_and_with_clones_sharing_one_window() {
    let layer = layer(2.0, secs(10), 10, 1);
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .service(Backend::new(|_, _| true));
    let other = layer.layer(Backend::new(|_, _| true));
    assert_eq!(send(&svc).await, Seen::Accepted);
    assert_eq!(send(&other).await, Seen::Accepted);
    assert_eq!(svc.handle().snapshot().requests, 2);
    assert_eq!(handle.name(), "backend");
    assert!(format!("{handle:?}").contains("backend"));
    assert!(format!("{svc:?}").contains("Throttle"));
    assert!(format!("{layer:?}").contains("ThrottleLayer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_from_many_threads_are_counted_exactly() {
    // Real time, but far inside one window: every outcome must be in the counts.
    let layer = ThrottleLayer::builder().seed(3).build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Backend::new(|i, _| i % 2 == 0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut seen = [0u64; 3];
                for _ in 0..2_000 {
                    seen[send(&svc).await as usize] += 1;
                }
                seen
            })
        })
        .collect();
    let mut seen = [0u64; 3];
    for task in tasks {
        for (total, n) in seen.iter_mut().zip(task.await.unwrap()) {
            *total += n;
        }
    }
    let [accepted, failed, throttled] = seen;
    let snap = handle.snapshot();
    assert_eq!(accepted + failed + throttled, 16_000);
    assert_eq!(snap.requests, 16_000);
    assert_eq!(snap.accepts, accepted);
    assert_eq!(snap.rejections, throttled);
    // Half of what is sent is accepted: at k = 2 that is the edge, so little is refused.
    // How little depends on how the threads interleave (a run of failures raises the
    // probability for a while), so the bound is loose: the exact counts above are the
    // point of this test. (A tighter 10 % bound failed once under a loaded machine.)
    assert!(throttled < 4_000, "{seen:?}");
}

#[cfg(feature = "metrics")]
#[test]
fn rejections_and_the_probability_are_reported_as_metrics() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let value = |name: &str| {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(key, _, _, v)| {
                let key = key.key();
                let ours = key.name() == name
                    && key
                        .labels()
                        .any(|l| l.key() == "policy" && l.value() == "search");
                ours.then(|| match v {
                    DebugValue::Counter(c) => c as f64,
                    DebugValue::Gauge(g) => g.into_inner(),
                    DebugValue::Histogram(_) => f64::NAN,
                })
            })
    };
    let (rejections, last_probability) = metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let layer = ThrottleLayer::builder()
                .name("search")
                .seed(1)
                .build()
                .unwrap();
            let handle = layer.handle();
            let svc = layer.layer(Backend::new(|_, _| false));
            let mut last_probability = 0.0;
            for _ in 0..200 {
                last_probability = handle.probability();
                send(&svc).await;
            }
            let rejections = handle.snapshot().rejections;
            assert_eq!(
                value("seawall_throttle_rejections_total"),
                Some(rejections as f64)
            );
            assert_eq!(
                value("seawall_throttle_probability"),
                Some(last_probability),
                "the probability of the last decision"
            );
            handle.reset();
            (rejections, last_probability)
        })
    });
    assert!(rejections > 150 && last_probability > 0.99);
    assert_eq!(value("seawall_throttle_probability"), Some(0.0), "reset");
}
