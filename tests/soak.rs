//! A bounded soak of the full policy: over a million calls, many tasks, a multi-thread
//! runtime, random faults, and callers that give up at random.
//!
//! **What is driven.** One [`Policy`] with every stage on (deadline, budgeted retry,
//! hedge, circuit breaker, bulkhead with a short FIFO wait, attempt timeout) around a
//! downstream made of a [`FaultLayer`] (errors, 1 ms latencies and hangs, from a seeded
//! generator) over a `tower::service_fn` that answers at once or after a yield. Every
//! `PHASE` calls the fault rate switches between a background rate and an outage rate, so
//! that the breaker trips, probes and closes again many times, and the bulkhead fills up.
//! `TASKS` tasks on a `WORKERS`-thread runtime make the calls; each call is, at random
//! (seeded SplitMix64), awaited to the end, raced against a short timer, polled once, or
//! dropped unpolled; a few callers ready the service and then drop it without calling. A
//! caller told `CircuitOpen` waits for the next probe (at most 2 ms), as a well-behaved
//! client would, so that most calls go through the whole stack.
//! Alongside, the callers churn a [`Registry`] (many more keys than its capacity, each
//! policy named after its key) and make a call through each policy it hands out.
//!
//! **What is checked**, after the callers finish (times are real, so nothing here is
//! asserted about how long anything took):
//!
//! - every call got exactly one result: issued = ok + err + dropped, and the policy saw
//!   exactly the calls issued (the budget's deposits equal the calls issued);
//! - in flight never passed the bulkhead's limit, as the downstream counts it (from the
//!   call into the downstream until its future is dropped) and as the bulkhead's handle
//!   says (sampled);
//! - every permit and probe slot came back: the bulkhead's in-flight and waiting counts
//!   and its in-flight gauge are 0, no probe is in flight, and once the faults stop the
//!   breaker closes again under healthy traffic;
//! - the budget balances: with a window far longer than the test (nothing leaves it),
//!   balance = floor + ratio × deposits − withdrawals, exactly (refunded retries are
//!   not in `withdrawals`);
//! - the metrics add up, against the callers' own counts, the downstream's and the
//!   handles' (see [`check_metrics`] for each identity and bound and why it holds): first
//!   attempts are bounded on both sides by the calls issued and the calls that ended
//!   without one going out; the attempts counted reach the downstream (exactly, but for
//!   the calls dropped unpolled and one rare race, also while the breaker trips and
//!   recovers one call at a time); the budget's withdrawals = retries + hedges not
//!   rejected, exactly; histograms are recorded (as sample counts, see [`Recording`])
//!   and bounded on both sides by the counters: retry delays by the retries, bulkhead
//!   waits by the bulkhead's rejections and the readiness waits possible;
//! - the registry's counters add up too (see [`check_registry_metrics`]): over every
//!   policy it named, first attempts = the callers' calls through it and breaker
//!   successes = their `Ok`s, exactly, and no retry delay nor bulkhead wait;
//! - metric series are bounded (see [`check_series`]): the registry names each policy
//!   after its key (`downstream/endpoint`), bounded by
//!   [`metric_names`](seawall::policy::RegistryBuilder::metric_names); the soak ends
//!   with the series the warm-up had (but for the soak policy's breaker transitions
//!   first seen later), and with at most `2 × METRIC_NAMES + 1` registry names;
//! - memory did not grow: the registry never held more than its capacity, and the live
//!   heap after the soak is within `MEMORY_SLACK` of the live heap after a warm-up phase
//!   of the same shape.
//!
//! **Compile time.** Every service is boxed where it is built ([`Svc`]): the downstreams
//! *below* the policies, and the policies' services, which every helper takes as that
//! one concrete type. Over concrete downstreams (`tower::service_fn`s), type-checking
//! this file (`cargo check --test soak`, which clippy and the test build both pay) took
//! about 6 minutes on 2 cores; over boxed ones, under 2 seconds.
#![cfg(all(feature = "policy", feature = "chaos", feature = "metrics"))]

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt as _;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::CompositeKey;
use seawall::chaos::{FaultLayer, InjectedFault};
use seawall::circuit_breaker::State;
use seawall::error::{BulkheadFull, CircuitOpen, DeadlineExceeded, Elapsed};
use seawall::policy::{Policy, PolicyHandle, Registry};
use seawall::retry::backoff::ExponentialBackoff;
use seawall::retry::budget::RetryBudget;
use seawall::BoxError;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

// ===== the shape of the soak =====

/// Worker threads of the runtime (CI has 2 cores; a third worker adds preemption).
const WORKERS: usize = 3;
/// Tasks making calls at once.
const TASKS: u64 = 100;
/// Calls (attempted by the callers) in the warm-up phase, before the baseline of memory.
const WARM_UP_CALLS: u64 = 100_000;
/// Calls in the soak phase proper.
const SOAK_CALLS: u64 = 1_000_000;
/// Calls per fault phase: every `OUTAGE_EVERY`th phase is an outage.
const PHASE: u64 = 2_000;
const OUTAGE_EVERY: u64 = 20;
/// The share of calls that get a fault, outside and during an outage.
const BACKGROUND_RATE: f64 = 0.05;
const OUTAGE_RATE: f64 = 0.9;
/// The bulkhead's limit.
const LIMIT: u32 = 16;
/// Half-open probes.
const PROBES: u32 = 2;
/// The registry's capacity, and its key space (downstreams × endpoints × 4 ports), far
/// larger.
const REGISTRY_CAPACITY: usize = 128;
const DOWNSTREAMS: u64 = 64;
const ENDPOINTS: u64 = 256;
/// The registry's bound on names ([`RegistryBuilder::metric_names`]): the first this
/// many keys keep their name (`downstream/endpoint`), the policies of this many
/// downstreams beyond are named after the downstream, the rest
/// `seawall_registry_overflow`. Below `DOWNSTREAMS`, so that every kind of name is made.
///
/// [`RegistryBuilder::metric_names`]: seawall::policy::RegistryBuilder::metric_names
const METRIC_NAMES: usize = 32;
/// The name of the registry's policies beyond both bounds.
const OVERFLOW_NAME: &str = "seawall_registry_overflow";
/// Breaker transitions (`from`, `to`) of the soak's policy that may be first seen after
/// the warm-up: closed→open, open→half_open, half_open→closed, half_open→open.
const LATE_TRANSITIONS: usize = 4;
/// One call in this many also takes a policy from the registry and calls through it.
const REGISTRY_EVERY: u64 = 32;
/// The budget: ratio and floor, over a window far longer than the test.
const RATIO: f64 = 0.02;
const FLOOR_PER_SEC: f64 = 0.5;
const BUDGET_WINDOW: Duration = Duration::from_secs(3600);
/// How much more live heap the soak may leave than the warm-up did; see `check_memory`.
const MEMORY_SLACK: i64 = 128 * 1024;
/// The seed of everything random here.
const SEED: u64 = 0x5EA_3A11;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ===== live heap bytes =====

/// A global allocator that forwards to `System` and keeps the bytes allocated and not
/// yet freed, for the memory check.
#[allow(unsafe_code)]
mod live_heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicI64, Ordering};

    static LIVE: AtomicI64 = AtomicI64::new(0);

    pub(crate) struct LiveBytes;

    #[global_allocator]
    static GLOBAL: LiveBytes = LiveBytes;

    fn add(bytes: usize) {
        LIVE.fetch_add(bytes as i64, Ordering::Relaxed);
    }

    fn sub(bytes: usize) {
        LIVE.fetch_sub(bytes as i64, Ordering::Relaxed);
    }

    // SAFETY: every method forwards its arguments unchanged to `System`, which upholds
    // the `GlobalAlloc` contract; the counter is one atomic and does not allocate.
    unsafe impl GlobalAlloc for LiveBytes {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same contract as the caller's.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                add(layout.size());
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same contract as the caller's.
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                add(layout.size());
            }
            ptr
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: same contract as the caller's.
            let new = unsafe { System.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                sub(layout.size());
                add(new_size);
            }
            new
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) };
            sub(layout.size());
        }
    }

    /// Bytes allocated and not freed, by every thread, so far.
    pub(crate) fn bytes() -> i64 {
        LIVE.load(Ordering::SeqCst)
    }
}

// ===== metrics =====

/// Counters and gauges go to a [`DebuggingRecorder`]; a histogram is kept as the number
/// of its samples, a counter named `<name>.samples` with the histogram's labels in the
/// same recorder ([`SampleCount`]): the debugging recorder would keep every sample until
/// it is read, which the memory check would see as growth, while a count is one series
/// of fixed size, and it is what the identities need (how many waits and delays were
/// recorded, not how long they were).
struct Recording(DebuggingRecorder);

/// A histogram that counts its samples (see [`Recording`]).
struct SampleCount(Counter);

impl HistogramFn for SampleCount {
    fn record(&self, _: f64) {
        self.0.increment(1);
    }
}

/// The name of the counter of a histogram's samples.
fn samples(histogram: &str) -> String {
    format!("{histogram}.samples")
}

impl Recorder for Recording {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_counter(key, unit, description)
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_gauge(key, unit, description)
    }
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.0.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.0.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        let count = Key::from_parts(
            samples(key.name()),
            key.labels().cloned().collect::<Vec<_>>(),
        );
        Histogram::from_arc(Arc::new(SampleCount(
            self.0.register_counter(&count, metadata),
        )))
    }
}

/// One reading of every counter and gauge (histograms as their sample counts).
struct Metrics(Vec<(CompositeKey, DebugValue)>);

/// The value of a key's label.
fn label<'a>(key: &'a CompositeKey, name: &str) -> Option<&'a str> {
    key.key()
        .labels()
        .find(|l| l.key() == name)
        .map(|l| l.value())
}

impl Metrics {
    fn read(snapshotter: &Snapshotter) -> Self {
        Self(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| (key, value))
                .collect(),
        )
    }

    /// The sum of the metrics named `name` whose labels include `labels`, over the
    /// policies whose `policy` label `policy` accepts (0 if there is none).
    fn sum_over(&self, name: &str, policy: impl Fn(&str) -> bool, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(key, _)| {
                key.key().name() == name
                    && label(key, "policy").is_some_and(&policy)
                    && labels.iter().all(|(k, v)| label(key, k) == Some(*v))
            })
            .map(|(_, value)| match value {
                DebugValue::Counter(n) => *n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => 0.0,
            })
            .sum()
    }

    /// The sum of the metrics named `name` whose labels include `labels`, as counted by
    /// the policy `policy` (0 if there is none).
    fn sum(&self, name: &str, policy: &str, labels: &[(&str, &str)]) -> f64 {
        self.sum_over(name, |p| p == policy, labels)
    }

    /// The breaker's transitions, `from->to=count`.
    fn transitions(&self) -> String {
        let mut out: Vec<String> = self
            .0
            .iter()
            .filter(|(key, _)| key.key().name() == "seawall_circuit_breaker_transitions_total")
            .filter_map(|(key, value)| match (label(key, "policy")?, value) {
                (POLICY, DebugValue::Counter(n)) => Some(format!(
                    "{}->{}={n}",
                    label(key, "from")?,
                    label(key, "to")?
                )),
                _ => None,
            })
            .collect();
        out.sort();
        out.join(" ")
    }

    /// A counter of the soak's policy, as an integer.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.sum(name, POLICY, labels) as u64
    }

    /// A counter summed over the registry's policies (every policy but the soak's), as
    /// an integer.
    fn registry_count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.sum_over(name, |p| p != POLICY, labels) as u64
    }

    /// Every series (name and labels) the recorder holds.
    fn series(&self) -> HashSet<&CompositeKey> {
        self.0.iter().map(|(key, _)| key).collect()
    }

    /// The series of each `policy` label value.
    fn policies(&self) -> BTreeMap<&str, usize> {
        let mut policies = BTreeMap::new();
        for (key, _) in &self.0 {
            if let Some(policy) = label(key, "policy") {
                *policies.entry(policy).or_default() += 1;
            }
        }
        policies
    }

    /// What the soak's policy counted of the attempts that reached the downstream, and
    /// what the downstream counted, now; see [`check_reached`].
    fn reached(&self, handle: &PolicyHandle, downstream: &Downstream) -> Reached {
        let hedge = handle.hedge().unwrap().snapshot();
        let attempts = |kind| self.count("seawall_retry_attempts_total", &[("kind", kind)]);
        Reached {
            counted: attempts("first") + attempts("retry") + attempts("hedge") - hedge.rejected,
            calls: downstream.calls.load(Ordering::SeqCst),
            lost_hedges: hedge.hedges - hedge.rejected - hedge.wins,
        }
    }
}

/// The soak's policy (its `policy` label).
const POLICY: &str = "soak";

// ===== randomness =====

/// SplitMix64: the callers' choices, reproducible from `SEED`.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ===== the downstream =====

/// What the downstream saw.
#[derive(Default)]
struct Downstream {
    /// Calls into the downstream (below the attempt timeout) whose futures are alive.
    in_flight: AtomicU64,
    /// The most that were ever alive at once.
    max_in_flight: AtomicU64,
    /// Calls that found `LIMIT` or more calls in flight already.
    over_limit: AtomicU64,
    /// Calls into the downstream.
    calls: AtomicU64,
    /// Calls the `service_fn` answered `Ok` (faults aside).
    ok: AtomicU64,
}

/// One call into the downstream, from `call` until its future ends or is dropped.
struct InFlight(Arc<Downstream>);

impl InFlight {
    fn enter(downstream: &Arc<Downstream>) -> Self {
        downstream.calls.fetch_add(1, Ordering::Relaxed);
        let now = downstream.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        downstream.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if now > u64::from(LIMIT) {
            downstream.over_limit.fetch_add(1, Ordering::SeqCst);
        }
        Self(downstream.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts the calls in flight into the service below it (the fault layer included: a
/// hanging call is in flight until its future is dropped).
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    downstream: Arc<Downstream>,
}

impl<S> Service<u64> for Tracked<S>
where
    S: Service<u64, Response = u64, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = u64;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<u64, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: u64) -> Self::Future {
        let guard = InFlight::enter(&self.downstream);
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            drop(guard);
            result
        })
    }
}

// ===== the callers =====

/// What the callers saw.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Loop iterations (each one call, unless the caller gave up before calling).
    iterations: u64,
    /// Calls made on the policy's service (`call`).
    issued: u64,
    ok: u64,
    err: u64,
    /// Calls whose future was dropped before it answered.
    dropped: u64,
    /// Callers that gave up while the service was getting ready (no call made).
    gave_up_before_call: u64,
    /// Callers that readied the service and dropped it without calling.
    readied_only: u64,
    /// `poll_ready` errors (there should be none).
    ready_errors: u64,
    // The errors by kind.
    circuit_open: u64,
    bulkhead_full: u64,
    elapsed: u64,
    deadline: u64,
    injected: u64,
    other: u64,
    // The modes.
    awaited: u64,
    raced: u64,
    polled_once: u64,
    dropped_unpolled: u64,
    // Calls through policies from the registry.
    registry_calls: u64,
    registry_ok: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.iterations += o.iterations;
        self.issued += o.issued;
        self.ok += o.ok;
        self.err += o.err;
        self.dropped += o.dropped;
        self.gave_up_before_call += o.gave_up_before_call;
        self.readied_only += o.readied_only;
        self.ready_errors += o.ready_errors;
        self.circuit_open += o.circuit_open;
        self.bulkhead_full += o.bulkhead_full;
        self.elapsed += o.elapsed;
        self.deadline += o.deadline;
        self.injected += o.injected;
        self.other += o.other;
        self.awaited += o.awaited;
        self.raced += o.raced;
        self.polled_once += o.polled_once;
        self.dropped_unpolled += o.dropped_unpolled;
        self.registry_calls += o.registry_calls;
        self.registry_ok += o.registry_ok;
    }
}

/// Whether `err`, or an error in its `source()` chain, is a `T`.
fn is<T: std::error::Error + 'static>(err: &BoxError) -> bool {
    let mut err: Option<&(dyn std::error::Error + 'static)> = Some(&**err);
    while let Some(e) = err {
        if e.is::<T>() {
            return true;
        }
        err = e.source();
    }
    false
}

impl Tally {
    /// One call's fate: `called` says whether `call` was made; `result` is `None` if the
    /// caller dropped the future before it answered. Returns how long to wait before the
    /// next call: until the next probe (at most 2 ms) after a `CircuitOpen`, else zero.
    fn record(&mut self, called: bool, result: Option<Result<u64, BoxError>>) -> Duration {
        self.iterations += 1;
        self.issued += u64::from(called);
        match (called, result) {
            (true, Some(Ok(_))) => self.ok += 1,
            (true, Some(Err(e))) => {
                self.err += 1;
                if let Some(open) = e.downcast_ref::<CircuitOpen>() {
                    self.circuit_open += 1;
                    return open.retry_after().unwrap_or(ms(1)).clamp(ms(1), ms(2));
                } else if is::<CircuitOpen>(&e) {
                    self.circuit_open += 1;
                } else if is::<BulkheadFull>(&e) {
                    self.bulkhead_full += 1;
                } else if is::<Elapsed>(&e) {
                    self.elapsed += 1;
                } else if is::<DeadlineExceeded>(&e) {
                    self.deadline += 1;
                } else if is::<InjectedFault>(&e) {
                    self.injected += 1;
                } else {
                    self.other += 1;
                }
            }
            (true, None) => self.dropped += 1,
            (false, Some(_)) => self.ready_errors += 1,
            (false, None) => self.gave_up_before_call += 1,
        }
        Duration::ZERO
    }
}

/// What every caller shares.
struct Shared {
    /// Calls started so far, by every caller: drives the fault phases.
    sequence: AtomicU64,
    /// The phase the fault rate was last set for.
    phase: Mutex<u64>,
    phase_seen: AtomicU64,
    outages: AtomicU64,
    chaos: seawall::chaos::Handle,
    registry: Registry,
    /// Policies the registry made (each first use of a key, or of an evicted one).
    registry_builds: Arc<AtomicU64>,
    /// The most entries the registry was seen to hold.
    registry_max_len: AtomicU64,
}

impl Shared {
    /// Set the fault rate for the phase that call number `n` falls in.
    fn steer(&self, n: u64) {
        let phase = n / PHASE;
        if phase == self.phase_seen.load(Ordering::Relaxed) {
            return;
        }
        let mut current = self.phase.lock().unwrap();
        if phase > *current {
            *current = phase;
            self.phase_seen.store(phase, Ordering::Relaxed);
            let outage = phase % OUTAGE_EVERY == OUTAGE_EVERY - 1;
            if outage {
                self.outages.fetch_add(1, Ordering::Relaxed);
            }
            let rate = if outage { OUTAGE_RATE } else { BACKGROUND_RATE };
            self.chaos.set_rate(rate).unwrap();
        }
    }

    /// Take a policy from the registry (a random key of a key space far larger than its
    /// capacity) and make one call through it.
    async fn churn(&self, rng: &mut SplitMix64, tally: &mut Tally) {
        let downstream = format!("d{}", rng.below(DOWNSTREAMS));
        let endpoint = format!("10.0.{}.{}:443", rng.below(ENDPOINTS), rng.below(4));
        let policy = self.registry.get(&downstream, &endpoint).unwrap();
        let len = self.registry.len();
        self.registry_max_len
            .fetch_max(len as u64, Ordering::Relaxed);
        // Boxed, over a boxed downstream: the same type as the soak's (see `Svc`).
        let echo = tower::service_fn(|n: u64| async move { Ok::<_, BoxError>(n) });
        let svc: Svc = BoxCloneService::new(policy.layer(Svc::new(echo)));
        tally.registry_calls += 1;
        if svc.oneshot(rng.next()).await.is_ok() {
            tally.registry_ok += 1;
        }
    }
}

/// Every service here, its type erased where it is built: the downstreams below the
/// policies (the soak's tracked one with its faults, the registry's echo), and the
/// policies' services over them.
///
/// Boxing the downstream *below* the policy is what keeps this file's type-checking
/// short: a one-line test that calls a default policy over a concrete
/// `tower::service_fn` takes rustc 45 to 60 s to type-check, and about one second over
/// a `BoxCloneService`. Both policies here are then one type,
/// `PolicyService<Svc>`, boxed again so that the helpers below take one concrete type
/// rather than a generic `S` instantiated with the whole stack (whose futures' `Send`
/// proofs are rust-lang/rust#102211's kind). Its future is `Send` (proved once, by
/// `BoxCloneService::new`'s bounds), so callers can be spawned with a clone each; it is
/// `Send` but not `Sync`, which nothing here needs.
type Svc = BoxCloneService<u64, u64, BoxError>;

/// Wait until `svc` is ready, then call it (and say so in `called`).
async fn ready_and_call(svc: &mut Svc, request: u64, called: &mut bool) -> Result<u64, BoxError> {
    match svc.ready().await {
        Ok(svc) => {
            *called = true;
            svc.call(request).await
        }
        Err(e) => Err(e),
    }
}

/// Make `iterations` calls through `svc`, each awaited, raced, polled once or dropped
/// at random.
async fn caller(svc: Svc, shared: Arc<Shared>, seed: u64, iterations: u64) -> Tally {
    let mut rng = SplitMix64(seed);
    let mut tally = Tally::default();
    for _ in 0..iterations {
        let n = shared.sequence.fetch_add(1, Ordering::Relaxed);
        shared.steer(n);
        if rng.below(REGISTRY_EVERY) == 0 {
            shared.churn(&mut rng, &mut tally).await;
        }
        let request = rng.next();
        let mode = rng.below(100);
        let mut svc = svc.clone();
        let mut called = false;
        let wait = match mode {
            // Awaited to the end.
            0..85 => {
                tally.awaited += 1;
                let result = ready_and_call(&mut svc, request, &mut called).await;
                tally.record(called, Some(result))
            }
            // Raced against a timer of 0 to 3 ms: the caller may give up at any point,
            // getting ready included.
            85..93 => {
                tally.raced += 1;
                let patience = Duration::from_micros(rng.below(3_000));
                let call = ready_and_call(&mut svc, request, &mut called);
                let result = tokio::select! {
                    result = call => Some(result),
                    () = tokio::time::sleep(patience) => None,
                };
                tally.record(called, result)
            }
            // Polled once, then dropped if it did not answer.
            93..97 => {
                tally.polled_once += 1;
                let result = match svc.ready().await {
                    Ok(svc) => {
                        called = true;
                        svc.call(request).now_or_never()
                    }
                    Err(e) => Some(Err(e)),
                };
                tally.record(called, result)
            }
            // Called and dropped without a poll.
            97..99 => {
                tally.dropped_unpolled += 1;
                let result = match svc.ready().await {
                    Ok(svc) => {
                        called = true;
                        drop(svc.call(request));
                        None
                    }
                    Err(e) => Some(Err(e)),
                };
                tally.record(called, result)
            }
            // Readied (a permit or probe slot reserved), then dropped without a call.
            _ => {
                tally.readied_only += 1;
                tally.iterations += 1;
                if svc.ready().await.is_err() {
                    tally.ready_errors += 1;
                }
                Duration::ZERO
            }
        };
        // A caller told the breaker is open waits for the next probe, as a well-behaved
        // client does: the calls of the soak go mostly through the whole stack, rather
        // than mostly into an open breaker.
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    tally
}

// ===== sampling while the callers run =====

/// Maxima seen by the sampler.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    samples: u64,
    bulkhead_in_flight: u32,
    bulkhead_waiting: u32,
    probes_in_flight: u32,
    /// Samples that found the breaker open, and half-open.
    open: u64,
    half_open: u64,
}

/// Sample the handles every millisecond until `stop`.
async fn sample(handle: PolicyHandle, stop: Arc<AtomicBool>) -> Seen {
    let bulkhead = handle.bulkhead().unwrap().clone();
    let breaker = handle.circuit_breaker().unwrap().clone();
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        seen.samples += 1;
        seen.bulkhead_in_flight = seen.bulkhead_in_flight.max(bulkhead.in_flight());
        seen.bulkhead_waiting = seen.bulkhead_waiting.max(bulkhead.waiting());
        let snapshot = breaker.snapshot();
        seen.probes_in_flight = seen.probes_in_flight.max(snapshot.probes_in_flight);
        seen.open += u64::from(snapshot.state == State::Open);
        seen.half_open += u64::from(snapshot.state == State::HalfOpen);
        tokio::time::sleep(ms(1)).await;
    }
    seen
}

/// Run `iterations` calls, split over `TASKS` callers, and wait for them all. A caller
/// whose call never answers stops the calls from advancing: after 60 s without a single
/// new call, that is reported as a hang.
async fn phase(
    svc: &Svc,
    shared: &Arc<Shared>,
    handle: &PolicyHandle,
    seed: u64,
    iterations: u64,
) -> (Tally, Seen) {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(handle.clone(), stop.clone()));
    let mut seeds = SplitMix64(seed);
    let callers: Vec<_> = (0..TASKS)
        .map(|_| {
            tokio::spawn(caller(
                svc.clone(),
                shared.clone(),
                seeds.next(),
                iterations / TASKS,
            ))
        })
        .collect();
    let mut tally = Tally::default();
    for mut caller in callers {
        let mut last = shared.sequence.load(Ordering::Relaxed);
        let done = loop {
            match tokio::time::timeout(Duration::from_secs(60), &mut caller).await {
                Ok(done) => break done,
                Err(_) => {
                    let now = shared.sequence.load(Ordering::Relaxed);
                    assert_ne!(now, last, "no call started in 60 s: a call never answered");
                    last = now;
                }
            }
        };
        tally += done.expect("a caller panicked");
    }
    stop.store(true, Ordering::Relaxed);
    (tally, sampler.await.unwrap())
}

// ===== the soak =====

#[test]
fn a_million_calls_through_the_full_policy_leak_nothing_and_add_up() {
    let started = tokio::time::Instant::now();
    // Before anything is built: the layers resolve their metric handles when built.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(Recording(recorder)).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .unwrap();

    let downstream = Arc::new(Downstream::default());
    let chaos = FaultLayer::builder()
        .name(POLICY)
        .rate(BACKGROUND_RATE)
        .seed(SEED)
        .error_value(InjectedFault::new())
        .weight(3)
        .latency(ms(1))
        .hang()
        .enabled(true)
        .build()
        .unwrap();
    let budget = RetryBudget::builder()
        .ratio(RATIO)
        .min_per_sec(FLOOR_PER_SEC)
        .window(BUDGET_WINDOW)
        .build()
        .unwrap();
    let backoff = ExponentialBackoff::builder()
        .base(ms(1))
        .max(ms(4))
        .seed(SEED)
        .build()
        .unwrap();
    let policy = Policy::builder(POLICY)
        // Far longer than any call takes (3 attempts of 4 ms, backoffs of at most 4 ms).
        .deadline(Duration::from_secs(10))
        .attempt_timeout(ms(4))
        .retry(|retry| retry.max_attempts(3).backoff(backoff))
        .budget(budget)
        .hedge(|hedge| hedge.delay(ms(2)))
        .circuit_breaker(|breaker| {
            breaker
                .count_window(50)
                .minimum_calls(20)
                .failure_rate(0.5)
                .open_duration(ms(5))
                .max_open_duration(ms(20))
                .half_open_probes(PROBES)
                .max_half_open_duration(ms(50))
                .seed(SEED)
        })
        .bulkhead(|bulkhead| bulkhead.max_concurrent(LIMIT).max_wait(ms(2)))
        .build()
        .unwrap();
    let handle = policy.handle();
    // The downstream boxed below the policy, and the policy's service boxed: see `Svc`.
    let below: Svc = BoxCloneService::new(Tracked {
        inner: chaos.layer({
            let downstream = downstream.clone();
            tower::service_fn(move |n: u64| {
                let downstream = downstream.clone();
                async move {
                    if n % 4 == 0 {
                        tokio::task::yield_now().await;
                    }
                    downstream.ok.fetch_add(1, Ordering::SeqCst);
                    Ok::<u64, BoxError>(n)
                }
            })
        }),
        downstream: downstream.clone(),
    });
    let svc: Svc = BoxCloneService::new(policy.layer(below));

    let registry_builds = Arc::new(AtomicU64::new(0));
    let registry = Registry::builder({
        let builds = registry_builds.clone();
        move |downstream, endpoint| {
            builds.fetch_add(1, Ordering::Relaxed);
            // Named after the key, as the registry's docs advise: the names, and with
            // them the metric series, are bounded by `metric_names` alone.
            Ok::<_, BoxError>(Policy::builder(format!("{downstream}/{endpoint}")))
        }
    })
    .max_entries(REGISTRY_CAPACITY)
    .metric_names(METRIC_NAMES)
    .share_budget_per_downstream(true)
    .build()
    .unwrap();
    let shared = Arc::new(Shared {
        sequence: AtomicU64::new(0),
        phase: Mutex::new(0),
        phase_seen: AtomicU64::new(0),
        outages: AtomicU64::new(0),
        chaos: chaos.handle(),
        registry,
        registry_builds,
        registry_max_len: AtomicU64::new(0),
    });

    // Warm-up: the same shape, so that every pool, map and recorder series reaches the
    // size it keeps.
    let (warm_up, _) =
        runtime.block_on(async { phase(&svc, &shared, &handle, SEED, WARM_UP_CALLS).await });
    runtime.block_on(async { tokio::time::sleep(ms(50)).await });
    // Read before the baseline, and kept until after the soak's reading: the live heap
    // has it both times.
    let warmed_up = Metrics::read(&snapshotter);
    let baseline = live_heap::bytes();
    let warm_up_secs = started.elapsed().as_secs_f64();

    let (soak, seen) =
        runtime.block_on(async { phase(&svc, &shared, &handle, !SEED, SOAK_CALLS).await });
    runtime.block_on(async { tokio::time::sleep(ms(50)).await });
    let after = live_heap::bytes();
    let soak_secs = started.elapsed().as_secs_f64() - warm_up_secs;

    // Every permit and probe slot is back now, whatever state the breaker is in.
    let bulkhead = handle.bulkhead().unwrap();
    let breaker = handle.circuit_breaker().unwrap();
    let at_rest = breaker.snapshot();
    assert_eq!(
        bulkhead.in_flight(),
        0,
        "a bulkhead permit was not given back"
    );
    assert_eq!(
        bulkhead.waiting(),
        0,
        "a caller is still queued at the bulkhead"
    );
    assert_eq!(
        at_rest.probes_in_flight, 0,
        "a probe slot was not given back: {at_rest:?}"
    );
    assert_eq!(downstream.in_flight.load(Ordering::SeqCst), 0);

    // One more outage trips the breaker; then the faults stop, and healthy traffic must
    // close it again through its half-open probes (no probe slot stuck). Both one call
    // at a time, each awaited to its end: see `check_reached`.
    let before_trip = Metrics::read(&snapshotter).reached(&handle, &downstream);
    let tripped = runtime.block_on(trip(&svc, breaker, &shared.chaos));
    assert_ne!(
        breaker.state(),
        State::Closed,
        "the last outage did not trip the breaker"
    );
    shared.chaos.disable();
    let mut recovery = runtime.block_on(recover(&svc, breaker));
    recovery += tripped;

    let metrics = Metrics::read(&snapshotter);
    let reached = metrics.reached(&handle, &downstream);
    let sequential = reached.since(&before_trip);
    let mut total = warm_up;
    total += soak;
    total += recovery;

    eprintln!(
        "soak: {} calls issued ({} warm-up iterations in {warm_up_secs:.1} s, {} soak \
         iterations in {soak_secs:.1} s, {} calls to trip and recover)\n  \
         callers {total:?}\n  sampled {seen:?}\n  breaker at rest {at_rest:?}\n  \
         bulkhead rejections {}, downstream calls {}, max in flight {} (over the limit \
         {} times)\n  \
         budget {:?}\n  hedge {:?}\n  chaos {:?}\n  outages {}, registry builds {}, \
         registry max len {}\n  transitions {}\n  \
         attempts counted reaching the downstream {reached:?}, while tripping and \
         recovering {sequential:?}\n  \
         histogram samples: retry delays {}, bulkhead waits {}\n  \
         series {} after warm-up, {} at the end; policy names {} ({} of the registry's)\n  \
         live heap: {baseline} B after warm-up, {after} B after the soak ({:+} B)",
        total.issued,
        warm_up.iterations,
        soak.iterations,
        recovery.iterations,
        bulkhead.rejections(),
        downstream.calls.load(Ordering::SeqCst),
        downstream.max_in_flight.load(Ordering::SeqCst),
        downstream.over_limit.load(Ordering::SeqCst),
        handle.budget().unwrap().snapshot(),
        handle.hedge().unwrap().snapshot(),
        shared.chaos.snapshot(),
        shared.outages.load(Ordering::Relaxed),
        shared.registry_builds.load(Ordering::Relaxed),
        shared.registry_max_len.load(Ordering::Relaxed),
        metrics.transitions(),
        metrics.count(&samples("seawall_retry_delay_seconds"), &[]),
        metrics.count(&samples("seawall_bulkhead_wait_seconds"), &[]),
        warmed_up.0.len(),
        metrics.0.len(),
        metrics.policies().len(),
        metrics.policies().keys().filter(|p| **p != POLICY).count(),
        after - baseline,
    );

    check_calls(&total, &warm_up, &soak);
    check_breaker(&handle, &seen, &shared);
    check_budget(&handle, &total);
    check_metrics(&metrics, &handle, &shared, &downstream, &total);
    check_reached(&reached, &sequential, &total, &recovery);
    check_registry(&shared);
    check_registry_metrics(&metrics, &total);
    check_series(&warmed_up, &metrics);
    check_memory(baseline, after);
    check_in_flight(&downstream, &seen);
}

/// Calls, one at a time, every one of them given a fault, until the breaker opens.
async fn trip(
    svc: &Svc,
    breaker: &seawall::circuit_breaker::Handle,
    chaos: &seawall::chaos::Handle,
) -> Tally {
    chaos.set_rate(1.0).unwrap();
    let mut tally = Tally::default();
    for n in 0..10_000u64 {
        if breaker.state() == State::Open {
            break;
        }
        let mut svc = svc.clone();
        let mut called = false;
        let result = ready_and_call(&mut svc, n, &mut called).await;
        tally.record(called, Some(result));
    }
    tally
}

/// Healthy calls, one at a time, until the breaker has closed and stayed closed for a
/// while: a half-open breaker with a stuck probe slot would never close.
async fn recover(svc: &Svc, breaker: &seawall::circuit_breaker::Handle) -> Tally {
    let mut tally = Tally::default();
    let mut closed_in_a_row = 0;
    for n in 0..10_000u64 {
        if closed_in_a_row >= 100 {
            break;
        }
        let mut svc = svc.clone();
        let mut called = false;
        let result = ready_and_call(&mut svc, n, &mut called).await;
        let failed = result.is_err();
        let wait = tally.record(called, Some(result));
        if failed {
            tokio::time::sleep(wait.max(ms(1))).await;
        }
        if breaker.state() == State::Closed {
            closed_in_a_row += 1;
        } else {
            closed_in_a_row = 0;
        }
    }
    tally
}

fn check_calls(total: &Tally, warm_up: &Tally, soak: &Tally) {
    assert!(
        total.issued >= 1_000_000,
        "at least a million calls: {total:?}"
    );
    assert_eq!(warm_up.iterations, WARM_UP_CALLS);
    assert_eq!(soak.iterations, SOAK_CALLS);
    // Exactly one result per call.
    assert_eq!(
        total.issued,
        total.ok + total.err + total.dropped,
        "every call got exactly one result: {total:?}"
    );
    assert_eq!(
        total.ready_errors, 0,
        "the policy is always ready: {total:?}"
    );
    assert_eq!(total.other, 0, "an error of no known kind: {total:?}");
    assert_eq!(
        total.err,
        total.circuit_open + total.bulkhead_full + total.elapsed + total.deadline + total.injected
    );
    assert_eq!(total.registry_ok, total.registry_calls, "{total:?}");
    // The soak did what it is for (these are counts, not timings).
    for (what, n) in [
        ("awaited", total.awaited),
        ("raced", total.raced),
        ("polled once", total.polled_once),
        ("dropped unpolled", total.dropped_unpolled),
        ("readied only", total.readied_only),
        ("dropped", total.dropped),
        ("gave up before calling", total.gave_up_before_call),
        ("rejected by the breaker", total.circuit_open),
        ("rejected by the bulkhead", total.bulkhead_full),
        ("timed out", total.elapsed),
        ("injected errors", total.injected),
    ] {
        assert!(n > 0, "no call {what}: {total:?}");
    }
}

/// The downstream never had more calls alive than the bulkhead's limit. A call is alive
/// from the moment the stack calls into the downstream until its future ends or is
/// dropped: a hung call that an attempt timeout gave up on is still alive (still holding
/// whatever a real client holds for it, a connection, a stream) until its future is
/// dropped, so its permit must not have gone back before that.
fn check_in_flight(downstream: &Downstream, seen: &Seen) {
    let max = downstream.max_in_flight.load(Ordering::SeqCst);
    assert!(
        max <= u64::from(LIMIT),
        "the downstream had {max} calls in flight at once, over the bulkhead's limit of {LIMIT}"
    );
    assert!(seen.bulkhead_in_flight <= LIMIT, "{seen:?}");
    assert!(seen.samples > 0);
}

fn check_breaker(handle: &PolicyHandle, seen: &Seen, shared: &Shared) {
    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!(
        breaker.state,
        State::Closed,
        "the breaker did not close again: {breaker:?}"
    );
    assert_eq!(breaker.probes_in_flight, 0, "{breaker:?}");
    assert!(seen.probes_in_flight <= PROBES, "{seen:?}");
    assert!(shared.outages.load(Ordering::Relaxed) > 0);
}

/// With a window longer than the test, nothing leaves it: the balance is the floor plus
/// the ratio of every deposit, less every withdrawal kept (refunds are not counted in
/// `withdrawals`). Compared in thousandths of a retry, the budget's own unit.
fn check_budget(handle: &PolicyHandle, total: &Tally) {
    let budget = handle.budget().unwrap().snapshot();
    assert_eq!(
        budget.deposits, total.issued,
        "one deposit per call: {budget:?}"
    );
    let floor = (FLOOR_PER_SEC * BUDGET_WINDOW.as_secs_f64() * 1000.0) as i64;
    let credit = (RATIO * 1000.0).round() as i64;
    let expected = floor + credit * budget.deposits as i64 - 1000 * budget.withdrawals as i64;
    assert_eq!(
        (budget.balance * 1000.0).round() as i64,
        expected,
        "balance = floor + ratio × deposits − withdrawals: {budget:?}"
    );
    assert!(budget.withdrawals > 0 && budget.denials > 0, "{budget:?}");
}

/// The identities and bounds the metrics must satisfy (names from `seawall::metrics`,
/// all with `policy="soak"`), and why each holds:
///
/// - first attempts, `seawall_retry_attempts_total{kind="first"}`, two-sided:
///   issued − dropped unpolled − (calls that ended `CircuitOpen`, `BulkheadFull` or
///   `DeadlineExceeded`) ≤ first ≤ issued. Each call has one first attempt, counted at
///   most once. It is counted unless a stage below rejected it (the breaker, the
///   bulkhead, a spent deadline: a rejection is at once, it is never retried, so the call
///   ends with it, and the caller counted that error) or it was dropped before its
///   first poll (only the calls dropped unpolled; a call polled once has its first
///   attempt out, and counted when dropped). The callers' own counts are used, not the
///   layers' rejection counters, which also count retries and hedges: a tighter bound;
/// - `seawall_circuit_breaker_calls_total{outcome="success"}` = calls answered `Ok` to
///   their callers = `Ok`s of the downstream `service_fn` (a success travels up to the
///   caller in the same poll, and no success is dropped on the way);
/// - attempts sent (`seawall_retry_attempts_total`, kinds `first`, `retry` and `hedge`)
///   = attempts the breaker saw answer (`seawall_circuit_breaker_calls_total`, outcomes
///   `success` and `failure`) + attempts that went out and did not answer, which
///   record nothing: cancelled by the caller dropping the call, by a hedge or first
///   attempt winning over it, or by the deadline, or a hedge rejected below; so
///   0 ≤ unanswered ≤ dropped calls + hedges + calls that ended with `DeadlineExceeded`;
/// - the budget's withdrawals = retries (`kind="retry"`) + hedges − hedges rejected
///   below, exactly: a retry takes from the budget when it is decided and gives it back
///   unless it is sent and not rejected, which is exactly when it is counted (it is
///   polled as soon as it is sent, so it is counted if cancelled later); a hedge takes
///   when it is sent (and is counted then), and gives back only when rejected below
///   (the hedge's `rejected`). Budget denials = `seawall_retry_budget_denials_total` +
///   `seawall_hedge_budget_denials_total`;
/// - `seawall_retry_delay_seconds`, two-sided: retries ≤ samples ≤ retries + dropped +
///   (calls that ended `CircuitOpen`, `BulkheadFull` or `DeadlineExceeded`). A sample is
///   recorded for each retry the budget granted; each is sent and counted, or given
///   back: when the call is dropped (or its deadline drops it) while the retry waits,
///   or when a stage below rejects it, which ends the call with that rejection; at most
///   one per call, as a given-back retry ends its call;
/// - `seawall_bulkhead_wait_seconds`, two-sided: bulkhead rejections ≤ samples ≤
///   iterations + retry delay samples + hedges + hedge budget denials. A sample is
///   recorded when a caller queued at the bulkhead gets a permit or gives up at
///   `max_wait`; the queue is never full here (1024 places, at most 2 waiting per
///   caller), so every rejection is a queued caller that gave up, after its sample
///   (every stage readies the bulkhead before calling it). And each sample ends one
///   readiness of a bulkhead clone: a caller's (one per iteration), the retry stage's
///   before a granted retry, or the hedge stage's before a hedge (which is then sent or
///   denied);
/// - handles and metrics agree: hedges, hedge wins, breaker and bulkhead rejections,
///   faults injected by kind;
/// - gauges at rest: `seawall_bulkhead_in_flight` = 0, `seawall_circuit_breaker_state`
///   = 0 (closed).
fn check_metrics(
    metrics: &Metrics,
    handle: &PolicyHandle,
    shared: &Shared,
    downstream: &Downstream,
    total: &Tally,
) {
    let first = metrics.count("seawall_retry_attempts_total", &[("kind", "first")]);
    let retries = metrics.count("seawall_retry_attempts_total", &[("kind", "retry")]);
    let hedges = metrics.count("seawall_retry_attempts_total", &[("kind", "hedge")]);
    let outcomes = |outcome| {
        metrics.count(
            "seawall_circuit_breaker_calls_total",
            &[("outcome", outcome)],
        )
    };
    let (success, failure, ignored) = (
        outcomes("success"),
        outcomes("failure"),
        outcomes("ignored"),
    );
    let breaker_rejections = metrics.count("seawall_circuit_breaker_rejections_total", &[]);
    let bulkhead_rejections = metrics.count("seawall_bulkhead_rejections_total", &[]);
    let hedge_denials = metrics.count("seawall_hedge_budget_denials_total", &[]);
    let delays = metrics.count(&samples("seawall_retry_delay_seconds"), &[]);
    let waits = metrics.count(&samples("seawall_bulkhead_wait_seconds"), &[]);
    let report = format!(
        "first {first}, retries {retries}, hedges {hedges}, success {success}, failure \
         {failure}, ignored {ignored}, breaker rejections {breaker_rejections}, bulkhead \
         rejections {bulkhead_rejections}, retry delays {delays}, bulkhead waits {waits}; \
         {total:?}"
    );

    // First attempts, two-sided. (`dropped_unpolled` counts the callers that chose to
    // drop their call unpolled; each made its call: `poll_ready` never fails, as
    // `check_calls` asserts.)
    let rejected = total.circuit_open + total.bulkhead_full + total.deadline;
    assert!(
        first <= total.issued,
        "at most one first attempt per call: {report}"
    );
    assert!(
        first + total.dropped_unpolled + rejected >= total.issued,
        "a first attempt went uncounted, neither rejected below nor dropped unpolled: \
         {report}"
    );
    assert_eq!(success, total.ok, "{report}");
    assert_eq!(success, downstream.ok.load(Ordering::SeqCst), "{report}");

    let sent = first + retries + hedges;
    let answered = success + failure;
    assert!(
        answered <= sent,
        "the breaker saw more attempts answer than were sent: {report}"
    );
    let unanswered = sent - answered;
    assert!(
        unanswered <= total.dropped + hedges + total.deadline,
        "{unanswered} attempts vanished without a drop, a hedge or a deadline to cancel them: \
         {report}"
    );

    let budget = handle.budget().unwrap().snapshot();
    let hedge = handle.hedge().unwrap().snapshot();
    assert_eq!(hedge.hedges, hedges, "{hedge:?}");
    assert_eq!(
        hedge.wins,
        metrics.count("seawall_hedge_wins_total", &[]),
        "{hedge:?}"
    );
    assert_eq!(
        budget.withdrawals,
        retries + hedge.hedges - hedge.rejected,
        "withdrawals kept = retries sent + hedges not rejected below: {budget:?} {hedge:?}: \
         {report}"
    );
    assert_eq!(
        budget.denials,
        metrics.count("seawall_retry_budget_denials_total", &[]) + hedge_denials,
        "{budget:?}"
    );

    // The histograms, as sample counts.
    assert!(
        retries <= delays && delays <= retries + total.dropped + rejected,
        "retry delays recorded: one per retry granted, sent or given back: {report}"
    );
    assert!(
        bulkhead_rejections <= waits && waits <= total.iterations + delays + hedges + hedge_denials,
        "bulkhead waits recorded: one per rejection at least, one per readiness at most: \
         {report}"
    );
    assert!(
        delays > 0 && waits > bulkhead_rejections,
        "the histograms were not recorded, or no caller waited and got a permit: {report}"
    );

    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!(breaker.rejections, breaker_rejections, "{breaker:?}");
    assert_eq!(
        metrics.sum("seawall_circuit_breaker_state", POLICY, &[]),
        0.0
    );
    assert!(
        metrics.count(
            "seawall_circuit_breaker_transitions_total",
            &[("from", "closed"), ("to", "open")]
        ) > 0
            && metrics.count(
                "seawall_circuit_breaker_transitions_total",
                &[("from", "half_open"), ("to", "closed")]
            ) > 0,
        "the breaker never tripped and recovered"
    );

    let bulkhead = handle.bulkhead().unwrap();
    assert_eq!(bulkhead.rejections(), bulkhead_rejections);
    assert_eq!(metrics.sum("seawall_bulkhead_in_flight", POLICY, &[]), 0.0);

    let chaos = shared.chaos.snapshot();
    for (fault, n) in [
        ("error", chaos.errors),
        ("latency", chaos.delays),
        ("hang", chaos.hangs),
    ] {
        assert_eq!(
            metrics.count("seawall_chaos_faults_total", &[("fault", fault)]),
            n,
            "{chaos:?}"
        );
        assert!(n > 0, "no {fault} fault: {chaos:?}");
    }
}

/// The attempts the soak's policy counted as reaching the downstream, and the calls the
/// downstream saw, at one moment (see [`check_reached`]).
#[derive(Debug, Clone, Copy)]
struct Reached {
    /// `seawall_retry_attempts_total`, kinds `first`, `retry` and `hedge`, less the
    /// hedges rejected below.
    counted: u64,
    /// Calls into the downstream (`Tracked`).
    calls: u64,
    /// Hedges that neither won nor were rejected below.
    lost_hedges: u64,
}

impl Reached {
    /// What happened between `earlier` and now.
    fn since(&self, earlier: &Reached) -> Reached {
        Reached {
            counted: self.counted - earlier.counted,
            calls: self.calls - earlier.calls,
            lost_hedges: self.lost_hedges - earlier.lost_hedges,
        }
    }
}

/// The attempts counted are the attempts that reached the downstream (`Tracked`, below
/// the attempt timeout), but for two kinds of attempt:
///
/// - an attempt reaches the downstream when it is *called* (every stage below the
///   retry calls the next one at once, within `call`), and is counted once it has been
///   polled (its result, or its cancellation after it answered `Pending`): a first
///   attempt dropped before its first poll reached the downstream uncounted. Only a
///   call dropped unpolled (or one whose deadline passed before its first poll) does
///   that: retries and hedges are polled as soon as they are sent;
/// - a hedge is counted when it is sent, and taken off again (`rejected`) when a stage
///   below rejects it; one that a stage below rejected at once, cancelled before it was
///   polled because the first attempt answered in the same poll (a race of
///   microseconds), stays counted without reaching the downstream. It is a hedge that
///   neither won nor was rejected (`lost_hedges`).
///
/// Conversely an attempt that reached the downstream was not rejected (nothing below the
/// attempt timeout rejects), and an attempt not rejected reached it. So, over the whole
/// run: counted − lost hedges ≤ calls ≤ counted + dropped unpolled + deadlines. And
/// while the breaker trips and recovers (one call at a time, each awaited to its end, no
/// drops), exactly calls = counted but for that race: calls ≤ counted ≤ calls + lost
/// hedges.
fn check_reached(reached: &Reached, sequential: &Reached, total: &Tally, recovery: &Tally) {
    assert!(
        reached.calls + reached.lost_hedges >= reached.counted
            && reached.calls <= reached.counted + total.dropped_unpolled + total.deadline,
        "attempts counted vs attempts that reached the downstream: {reached:?}; {total:?}"
    );
    assert_eq!(recovery.dropped, 0, "{recovery:?}");
    assert!(
        sequential.calls + sequential.lost_hedges >= sequential.counted
            && sequential.calls <= sequential.counted + recovery.deadline,
        "one call at a time, the attempts counted are the attempts that reached the \
         downstream: {sequential:?}; {recovery:?}"
    );
}

/// The registry's policies, each with its own name (see [`check_series`] for the names),
/// summed over every `policy` label but the soak's. Each call through one is a
/// `oneshot` of an always-`Ok` service, awaited to its end; so, exactly:
///
/// - first attempts (`seawall_retry_attempts_total{kind="first"}`) = calls through the
///   registry's policies (each sent once, answered, counted);
/// - breaker successes = the callers' `Ok`s (= those calls, as `check_calls` asserts);
///   no failure, no retry, no retry delay recorded;
/// - no bulkhead wait recorded: their bulkheads do not queue (`max_wait` zero by
///   default), and a bulkhead that does not queue records no wait.
fn check_registry_metrics(metrics: &Metrics, total: &Tally) {
    let count = |name: &str, labels: &[(&str, &str)]| metrics.registry_count(name, labels);
    let first = count("seawall_retry_attempts_total", &[("kind", "first")]);
    let success = count(
        "seawall_circuit_breaker_calls_total",
        &[("outcome", "success")],
    );
    let report = format!("first {first}, success {success}; {total:?}");
    assert!(total.registry_calls > 0, "{report}");
    assert_eq!(first, total.registry_calls, "{report}");
    assert_eq!(success, total.registry_ok, "{report}");
    for (name, labels) in [
        (
            "seawall_circuit_breaker_calls_total",
            &[("outcome", "failure")][..],
        ),
        ("seawall_retry_attempts_total", &[("kind", "retry")][..]),
        (&samples("seawall_retry_delay_seconds"), &[][..]),
        (&samples("seawall_bulkhead_wait_seconds"), &[][..]),
    ] {
        assert_eq!(count(name, labels), 0, "{name} {labels:?}: {report}");
    }
}

/// The metric series are bounded, whatever the keys: the series at the end are those
/// after the warm-up (whose registry churn already made every name the bound allows)
/// but for at most `LATE_TRANSITIONS` breaker transitions of the soak's policy first
/// seen later; and the registry's names are at most `METRIC_NAMES` keys' own names
/// (`downstream/endpoint`), at most `min(METRIC_NAMES, DOWNSTREAMS)` downstreams' and
/// `seawall_registry_overflow`. A registry that named every policy after its key
/// without a bound fails both: the soak draws thousands of keys the warm-up never did.
fn check_series(warmed_up: &Metrics, end: &Metrics) {
    let before = warmed_up.series();
    let after = end.series();
    let new: Vec<_> = after.difference(&before).collect();
    let late = |key: &CompositeKey| {
        key.key().name() == "seawall_circuit_breaker_transitions_total"
            && label(key, "policy") == Some(POLICY)
    };
    assert!(
        new.iter().all(|key| late(key)) && new.len() <= LATE_TRANSITIONS,
        "{} metric series first seen after the warm-up ({} then): {:?}",
        new.len(),
        before.len(),
        new.iter().take(10).collect::<Vec<_>>()
    );
    assert!(before.is_subset(&after));

    let policies = end.policies();
    let names: Vec<&str> = policies.keys().copied().filter(|p| *p != POLICY).collect();
    let own = names.iter().filter(|n| n.contains('/')).count();
    let overflow = names.iter().filter(|n| **n == OVERFLOW_NAME).count();
    let downstreams = names.len() - own - overflow;
    let bound = METRIC_NAMES + METRIC_NAMES.min(DOWNSTREAMS as usize) + 1;
    assert!(
        own <= METRIC_NAMES
            && downstreams <= METRIC_NAMES.min(DOWNSTREAMS as usize)
            && names.len() <= bound,
        "{} registry policy names (at most {bound}): {own} keys', {downstreams} \
         downstreams', {overflow} overflow; the first: {:?}",
        names.len(),
        names.iter().take(10).collect::<Vec<_>>()
    );
    // The churn used every kind of name: the bound was reached, not just respected.
    assert!(
        own == METRIC_NAMES && downstreams > 0 && overflow == 1,
        "the registry's names: {own} keys', {downstreams} downstreams', {overflow} overflow"
    );
}

fn check_registry(shared: &Shared) {
    let max = shared.registry_max_len.load(Ordering::Relaxed);
    assert!(
        max <= REGISTRY_CAPACITY as u64,
        "the registry held {max} entries"
    );
    assert!(shared.registry.len() <= REGISTRY_CAPACITY);
    let builds = shared.registry_builds.load(Ordering::Relaxed);
    assert!(
        builds > 10 * REGISTRY_CAPACITY as u64,
        "the key space did not churn: {builds} policies built"
    );
}

/// The live heap after the soak is within `MEMORY_SLACK` of the live heap after the
/// warm-up. The warm-up has the same shape (tasks, fault phases, outages, registry
/// churn), so every pool (the breakers' and bulkheads' lanes), map (the registry's, the
/// recorder's series) and runtime cache has reached the size it keeps; what may still
/// grow once is a pool or map reaching a new high-water mark, or a metric series first
/// seen in the soak (a breaker transition), a few KiB each. A leak of one byte per call
/// would be a megabyte, and one of a few bytes per evicted policy (tens of thousands in
/// the soak) would be over the slack too.
fn check_memory(baseline: i64, after: i64) {
    assert!(
        after - baseline <= MEMORY_SLACK,
        "the live heap grew by {} B over the soak ({baseline} B after the warm-up, {after} B \
         after the soak)",
        after - baseline
    );
}
