//! The simulated downstream: endpoints with a fixed number of workers and a FIFO queue,
//! a log-normal service time, and a script of faults over (virtual) time.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use seawall::BoxError;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::Service;

/// Median service time of a healthy request.
pub(crate) const SERVICE_MEDIAN: Duration = Duration::from_millis(20);
/// Log-normal shape: p99 is about 3.2 times the median.
const SERVICE_SIGMA: f64 = 0.5;
/// How long a downstream that "fails fast" takes to say so (a 503 from its proxy).
const FAST_ERROR: Duration = Duration::from_millis(2);
/// Requests an endpoint queues before it answers "overloaded" at once (its backlog).
pub(crate) const QUEUE_LIMIT: usize = 1024;

/// Mean of the log-normal service time, for sizing the downstream.
pub(crate) fn mean_service_secs() -> f64 {
    SERVICE_MEDIAN.as_secs_f64() * (SERVICE_SIGMA * SERVICE_SIGMA / 2.0).exp()
}

// ===== randomness =====

/// SplitMix64: small, fast, and enough for a simulation; every draw comes from a
/// generator seeded from `--seed`, so a run is reproducible.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponential with the given mean.
    pub(crate) fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// Standard normal (Box-Muller; one of the pair is thrown away).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

// tower's p2c balancer takes any `Rng`: seed it too.
impl tower::util::rng::Rng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.next()
    }
}

/// A seed for one purpose (`salt`) derived from the run's seed.
pub(crate) fn derive_seed(seed: u64, salt: u64) -> u64 {
    SplitMix64::new(seed ^ salt.wrapping_mul(0xA24B_AED4_963E_E407)).next()
}

// ===== the fault script =====

/// What an endpoint does with a request at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Healthy,
    /// Accepts the connection and never answers (the caller must give up).
    Hang,
    /// Answers an error at once, without doing any work (a 503 from its proxy).
    FastErrors,
    /// Does the work and fails it: errors after the usual service time, using a worker
    /// (a database behind it is down). Retries cost it capacity.
    Outage,
    /// Half of its workers are gone: requests queue.
    HalfCapacity,
}

/// Faults over time: `(from, until, fault)` intervals from the start of the run;
/// healthy outside them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Script {
    segments: Vec<(Duration, Duration, Fault)>,
}

impl Script {
    pub(crate) fn healthy() -> Self {
        Self::default()
    }

    pub(crate) fn with(mut self, from: Duration, until: Duration, fault: Fault) -> Self {
        self.segments.push((from, until, fault));
        self
    }

    pub(crate) fn at(&self, t: Duration) -> Fault {
        self.segments
            .iter()
            .find(|(from, until, _)| (*from..*until).contains(&t))
            .map_or(Fault::Healthy, |s| s.2)
    }

    fn boundaries(&self) -> Vec<Duration> {
        let mut b: Vec<Duration> = self.segments.iter().flat_map(|s| [s.0, s.1]).collect();
        b.sort();
        b.dedup();
        b
    }
}

// ===== load accounting =====

/// What reached the downstream, all endpoints together.
#[derive(Debug)]
pub(crate) struct Load {
    attempts: Cell<u64>,
    in_flight: Cell<u64>,
    peak: Cell<u64>,
    /// Attempts per request id: zero means the client never sent it.
    per_request: RefCell<Vec<u32>>,
    /// Attempts per second of the run.
    per_second: RefCell<Vec<u64>>,
    start: Instant,
}

impl Load {
    pub(crate) fn new(start: Instant, requests: usize) -> Rc<Self> {
        Rc::new(Self {
            attempts: Cell::new(0),
            in_flight: Cell::new(0),
            peak: Cell::new(0),
            per_request: RefCell::new(vec![0; requests]),
            per_second: RefCell::new(Vec::new()),
            start,
        })
    }

    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.get()
    }

    pub(crate) fn peak_in_flight(&self) -> u64 {
        self.peak.get()
    }

    pub(crate) fn sent(&self, id: u64) -> u32 {
        self.per_request.borrow()[id as usize]
    }

    /// Attempts that arrived in each second of the run.
    pub(crate) fn per_second(&self) -> Vec<u64> {
        self.per_second.borrow().clone()
    }

    fn arrive(&self, id: u64) {
        self.attempts.set(self.attempts.get() + 1);
        self.per_request.borrow_mut()[id as usize] += 1;
        let second = self.start.elapsed().as_secs() as usize;
        let mut per_second = self.per_second.borrow_mut();
        if per_second.len() <= second {
            per_second.resize(second + 1, 0);
        }
        per_second[second] += 1;
    }
}

/// One request open at the downstream (queued, in service, or hanging) while it lives.
struct Open(Rc<Load>);

impl Open {
    fn new(load: &Rc<Load>) -> Self {
        let n = load.in_flight.get() + 1;
        load.in_flight.set(n);
        load.peak.set(load.peak.get().max(n));
        Self(load.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
    }
}

/// The downstream's error (a 503, as the caller sees it).
#[derive(Debug)]
pub(crate) struct Unavailable(&'static str);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "503 service unavailable: {}", self.0)
    }
}

impl std::error::Error for Unavailable {}

// ===== one endpoint =====

/// One replica of the downstream: `workers` requests in service at once, the rest in a
/// FIFO queue of up to [`QUEUE_LIMIT`]. Work that a client gave up on is still done
/// (the server cannot know), as with a plain HTTP server.
pub(crate) struct Endpoint {
    start: Instant,
    script: Script,
    workers: usize,
    busy: Cell<usize>,
    queue: RefCell<VecDeque<oneshot::Sender<()>>>,
    rng: RefCell<SplitMix64>,
    load: Rc<Load>,
}

impl Endpoint {
    /// Must be called inside a `LocalSet`: it spawns the task that applies the script's
    /// capacity changes.
    pub(crate) fn new(
        start: Instant,
        script: Script,
        workers: usize,
        seed: u64,
        load: Rc<Load>,
    ) -> Rc<Self> {
        let endpoint = Rc::new(Self {
            start,
            script,
            workers,
            busy: Cell::new(0),
            queue: RefCell::new(VecDeque::new()),
            rng: RefCell::new(SplitMix64::new(seed)),
            load,
        });
        // When capacity comes back, queued requests must start without waiting for a
        // completion to pull them.
        let weak = Rc::downgrade(&endpoint);
        let boundaries = endpoint.script.boundaries();
        tokio::task::spawn_local(async move {
            for at in boundaries {
                tokio::time::sleep_until(start + at).await;
                match weak.upgrade() {
                    Some(endpoint) => endpoint.dispatch(),
                    None => return,
                }
            }
        });
        endpoint
    }

    fn fault(&self) -> Fault {
        self.script.at(self.start.elapsed())
    }

    fn capacity(&self) -> usize {
        match self.fault() {
            Fault::HalfCapacity => (self.workers / 2).max(1),
            _ => self.workers,
        }
    }

    /// Start queued requests while workers are free.
    fn dispatch(&self) {
        while self.busy.get() < self.capacity() {
            let Some(next) = self.queue.borrow_mut().pop_front() else {
                return;
            };
            if next.send(()).is_ok() {
                self.busy.set(self.busy.get() + 1);
            }
        }
    }

    fn service_time(&self) -> Duration {
        let z = self.rng.borrow_mut().normal();
        SERVICE_MEDIAN.mul_f64((SERVICE_SIGMA * z).exp())
    }

    /// The endpoint as a tower service of request ids.
    pub(crate) fn service(
        self: &Rc<Self>,
    ) -> impl Service<u64, Response = (), Error = BoxError> + Clone + 'static {
        let this = self.clone();
        tower::service_fn(move |id: u64| this.clone().attempt(id))
    }

    async fn attempt(self: Rc<Self>, id: u64) -> Result<(), BoxError> {
        self.load.arrive(id);
        match self.fault() {
            Fault::Hang => {
                // Open until the client drops the connection.
                let _open = Open::new(&self.load);
                std::future::pending().await
            }
            Fault::FastErrors => {
                let _open = Open::new(&self.load);
                tokio::time::sleep(FAST_ERROR).await;
                Err(Unavailable("down").into())
            }
            Fault::Healthy | Fault::Outage | Fault::HalfCapacity => {
                if self.queue.borrow().len() >= QUEUE_LIMIT {
                    return Err(Unavailable("queue full").into());
                }
                // The server's work runs on its own: a client that gives up does not
                // take it back.
                let (tx, rx) = oneshot::channel();
                tokio::task::spawn_local(self.clone().serve(tx));
                rx.await.unwrap_or(Err(Unavailable("server gone")))?;
                Ok(())
            }
        }
    }

    async fn serve(self: Rc<Self>, answer: oneshot::Sender<Result<(), Unavailable>>) {
        let _open = Open::new(&self.load);
        if self.busy.get() < self.capacity() && self.queue.borrow().is_empty() {
            self.busy.set(self.busy.get() + 1);
        } else {
            let (tx, rx) = oneshot::channel();
            self.queue.borrow_mut().push_back(tx);
            // `dispatch` counted us busy when it sent.
            let _ = rx.await;
        }
        let outage = self.fault() == Fault::Outage;
        tokio::time::sleep(self.service_time()).await;
        self.busy.set(self.busy.get() - 1);
        self.dispatch();
        let _ = answer.send(if outage {
            Err(Unavailable("dependency down"))
        } else {
            Ok(())
        });
    }
}
