//! The shared state of one bulkhead: the permit counters (in a lane, pooled and
//! `'static` in the common case, so that a permit needs no reference count) and the FIFO
//! queue of waiters.
//!
//! # Permits
//!
//! Taking a permit is one compare-and-swap on `in_flight`, refused while
//! `in_flight >= limit` or while callers are queued (so that a newcomer does not jump the
//! queue). Giving one back is one `fetch_sub`; only when callers are queued does the
//! releaser take the queue's lock and hand permits to the front of the queue.
//!
//! A waiter enqueues and then, under the same lock, tries to grant permits to the front
//! of the queue; a releaser decrements `in_flight` and then looks at `waiting`. Both
//! sides use `SeqCst`, so at least one of them sees the other: a permit freed while a
//! caller enqueues is never left unused while that caller waits.
//!
//! Loom models (`limiter/loom_tests.rs`, see `crate::sync`) check under every interleaving
//! that permits never exceed the limit and all come back, that this handshake never
//! loses a permit (weaken the releaser's load of `waiting` to `Acquire` and the model
//! fails), that a waiter leaving as it is granted gives the permit back, that raising the
//! limit grants a caller queueing meanwhile, and that a lane goes back to the pool exactly
//! once.
//!
//! # The queue
//!
//! Waiters sit in a [`WaitQueue`]: a doubly linked list threaded through a slab, so that
//! a waiter that gives up (it timed out, or its future was dropped) leaves in O(1) by its
//! key, under the lock every releaser with callers queued takes. The queue is bounded
//! (`max_waiting`, 1024 unless configured) and gives its memory back once it is empty.
//!
//! # Lanes
//!
//! The counters live in a [`Lane`] from [`crate::lane`]: one of a bounded number of pooled
//! `'static` lanes, or, beyond that bound, one held by `Arc` and freed with its last
//! permit. A pooled lane goes back to the pool only once its bulkhead is gone *and* no
//! permit of it is outstanding, so a late permit can never give back a permit of the
//! lane's next bulkhead.

use std::sync::{Arc, Weak};
use std::task::Waker;

use super::adaptive::{LimitAlgorithm, Sample};
use super::queue::WaitQueue;
use crate::lane::{self, Pool};
use crate::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use crate::sync::{CachePadded, Mutex, MutexGuard};

// ===== lanes =====

#[derive(Debug)]
pub(crate) struct Lane {
    /// Permits out (low 32 bits), plus [`OWNED`] while the bulkhead lives. One word, so
    /// that exactly one party sees the moment it becomes "unowned and no permit out" and
    /// hands the lane back to the pool: the last permit to come back, or the bulkhead as
    /// it goes.
    in_flight: CachePadded<AtomicU64>,
    config: CachePadded<LaneConfig>,
    owner: Mutex<Weak<Shared>>,
}

/// Set in a lane's `in_flight` word while its bulkhead is alive.
const OWNED: u64 = 1 << 63;
const COUNT: u64 = u32::MAX as u64;

#[derive(Debug)]
struct LaneConfig {
    limit: AtomicU32,
    /// Callers in the FIFO queue.
    waiting: AtomicU32,
}

/// A bulkhead's lane, as its permits hold it.
pub(crate) type LaneRef = lane::LaneRef<Lane>;

/// The bulkheads' lanes not in use.
static LANES: Pool<Lane> = Pool::new(lane::POOLED_LANES);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent at every await-free step, so a
    // poisoned lock (a panic elsewhere while holding it) is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Lane {
    fn new() -> Self {
        Lane {
            in_flight: CachePadded::new(AtomicU64::new(0)),
            config: CachePadded::new(LaneConfig {
                limit: AtomicU32::new(0),
                waiting: AtomicU32::new(0),
            }),
            owner: Mutex::new(Weak::new()),
        }
    }

    fn acquire(limit: u32) -> LaneRef {
        let lane = LANES.take(Lane::new);
        lane.config.limit.store(limit, Ordering::SeqCst);
        lane.config.waiting.store(0, Ordering::SeqCst);
        // A pooled lane has no permit out and no owner: its word is exactly zero.
        lane.in_flight.store(OWNED, Ordering::SeqCst);
        lane
    }

    #[inline]
    pub(crate) fn in_flight(&self) -> u32 {
        (self.in_flight.load(Ordering::Acquire) & COUNT) as u32
    }

    #[inline]
    pub(crate) fn limit(&self) -> u32 {
        self.config.limit.load(Ordering::Acquire)
    }

    pub(crate) fn waiting(&self) -> u32 {
        self.config.waiting.load(Ordering::Acquire)
    }

    /// Take a permit if one is free and nobody is queued for one.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        if self.config.waiting.load(Ordering::SeqCst) != 0 {
            return false;
        }
        self.take_free()
    }

    /// Take a permit if one is free, whoever is queued (for granting to the queue).
    #[inline]
    fn take_free(&self) -> bool {
        let limit = u64::from(self.config.limit.load(Ordering::Acquire));
        // `SeqCst`: the enqueue/release handshake (module docs) needs this load ordered
        // after the waiter's store of `waiting`, on every architecture.
        let mut current = self.in_flight.load(Ordering::SeqCst);
        loop {
            if current & COUNT >= limit {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    #[cold]
    fn grant_queued(&self) {
        let owner = lock(&self.owner).upgrade();
        if let Some(shared) = owner {
            shared.grant_queued();
        }
    }
}

impl lane::LaneRef<Lane> {
    /// Give a permit back.
    #[inline]
    pub(crate) fn release(&self) {
        let before = self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if before == 1 {
            // The last permit of a bulkhead that is gone: nobody else can see this.
            self.retire();
        } else if self.config.waiting.load(Ordering::SeqCst) != 0 {
            self.grant_queued();
        }
    }

    /// The bulkhead is gone: pool the lane now if no permit is out, else the last permit
    /// to come back pools it (see `release`).
    fn disown(&self) {
        *lock(&self.owner) = Weak::new();
        let before = self.in_flight.fetch_and(!OWNED, Ordering::SeqCst);
        if before == OWNED {
            self.retire();
        }
    }

    /// Nobody uses the lane any more: a pooled one goes back to the pool (a counted one
    /// is freed with its last reference).
    #[cold]
    fn retire(&self) {
        if let Some(lane) = self.pooled() {
            LANES.give_back(lane);
        }
    }
}

// ===== waiters =====

/// One caller waiting in the FIFO queue for a permit.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    /// Set (with a permit taken for this waiter) when the waiter reaches the front and a
    /// permit is free.
    granted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Waiter {
    pub(crate) fn is_granted(&self) -> bool {
        self.granted.load(Ordering::Acquire)
    }

    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut slot = lock(&self.waker);
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }
}

/// A caller's place in the queue: its waiter, and the key to leave by.
#[derive(Debug)]
pub(crate) struct Queued {
    waiter: Arc<Waiter>,
    key: usize,
}

impl Queued {
    pub(crate) fn is_granted(&self) -> bool {
        self.waiter.is_granted()
    }

    pub(crate) fn set_waker(&self, waker: &Waker) {
        self.waiter.set_waker(waker);
    }
}

/// What happened to a caller that asked to wait.
#[derive(Debug)]
pub(crate) enum Enqueued {
    /// A permit was free after all (or became free at once): it is taken.
    Granted,
    /// Queued: wait for the waiter to be granted.
    Queued(Queued),
    /// The queue is at its bound.
    Full,
}

fn wake(wakers: Vec<Waker>) {
    for waker in wakers {
        waker.wake();
    }
}

// ===== shared state =====

/// An adaptive limit: the algorithm that moves it, and the clock that times calls.
#[derive(Debug)]
pub(crate) struct Adaptive {
    pub(crate) algorithm: Arc<dyn LimitAlgorithm>,
    pub(crate) clock: crate::time::Clock,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) lane: LaneRef,
    pub(crate) name: Arc<str>,
    /// `Some` when the limit is adaptive.
    pub(crate) adaptive: Option<Adaptive>,
    /// Most callers that may wait at once.
    max_waiting: u32,
    queue: Mutex<WaitQueue<Arc<Waiter>>>,
    rejections: AtomicU64,
    pub(crate) metrics: crate::metrics::BulkheadMetrics,
    #[cfg(feature = "tracing")]
    bursts: Bursts,
}

/// Rejections come in bursts; `tracing` gets one event when a burst starts (the first
/// rejection after a quiet second), carrying the size of the burst before it, rather
/// than one event per rejection.
#[cfg(feature = "tracing")]
#[derive(Debug)]
struct Bursts {
    clock: crate::time::Clock,
    /// When the last rejection happened (clock nanoseconds; 0: never).
    last: AtomicU64,
    /// Rejections in the current burst.
    count: AtomicU64,
}

#[cfg(feature = "tracing")]
impl Bursts {
    const QUIET_NANOS: u64 = 1_000_000_000;

    fn rejected(&self, policy: &str) {
        let now = self.clock.now().max(1);
        let last = self.last.swap(now, Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= Self::QUIET_NANOS {
            let previous = self.count.swap(1, Ordering::Relaxed);
            tracing::warn!(
                target: "seawall::bulkhead",
                policy,
                previous_burst = previous,
                "bulkhead full: rejecting calls"
            );
        } else {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.lane.disown();
    }
}

impl Shared {
    pub(crate) fn new(
        name: Arc<str>,
        limit: u32,
        max_waiting: u32,
        adaptive: Option<Arc<dyn LimitAlgorithm>>,
    ) -> Arc<Self> {
        let limit = adaptive.as_ref().map_or(limit, |a| a.initial_limit());
        let adaptive = adaptive.map(|algorithm| Adaptive {
            algorithm,
            clock: crate::time::Clock::new(),
        });
        let lane = Lane::acquire(limit);
        let metrics = crate::metrics::BulkheadMetrics::new(&name, limit);
        Arc::new_cyclic(|weak| {
            *lock(&lane.owner) = weak.clone();
            Shared {
                lane,
                name,
                adaptive,
                max_waiting,
                queue: Mutex::new(WaitQueue::new()),
                rejections: AtomicU64::new(0),
                metrics,
                #[cfg(feature = "tracing")]
                bursts: Bursts {
                    clock: crate::time::Clock::new(),
                    last: AtomicU64::new(0),
                    count: AtomicU64::new(0),
                },
            }
        })
    }

    pub(crate) fn rejections(&self) -> u64 {
        self.rejections.load(Ordering::Relaxed)
    }

    pub(crate) fn note_rejection(&self) {
        self.rejections.fetch_add(1, Ordering::Relaxed);
        self.metrics.rejection();
        #[cfg(feature = "tracing")]
        self.bursts.rejected(&self.name);
    }

    /// Join the queue, unless a permit can be had at once or the queue is full.
    pub(crate) fn enqueue(&self) -> Enqueued {
        let mut queue = lock(&self.queue);
        if queue.is_empty() && self.lane.take_free() {
            return Enqueued::Granted;
        }
        if queue.len() >= self.max_waiting as usize {
            return Enqueued::Full;
        }
        let waiter = Arc::new(Waiter::default());
        let key = queue.push_back(waiter.clone());
        self.lane
            .config
            .waiting
            .store(queue.len() as u32, Ordering::SeqCst);
        // A permit may have been freed between the failed fast attempt and joining the
        // queue; the releaser may not have seen us yet.
        let granted = self.grant_locked(&mut queue);
        drop(queue);
        wake(granted);
        if waiter.is_granted() {
            Enqueued::Granted
        } else {
            Enqueued::Queued(Queued { waiter, key })
        }
    }

    /// Hand free permits to the front of the queue.
    pub(crate) fn grant_queued(&self) {
        let mut queue = lock(&self.queue);
        let granted = self.grant_locked(&mut queue);
        drop(queue);
        wake(granted);
    }

    /// Grant free permits to the front of the queue; returns the wakers of the callers
    /// granted, to wake once the queue's lock is released (a waker may run code, even
    /// drop a permit, which takes this lock again).
    fn grant_locked(&self, queue: &mut WaitQueue<Arc<Waiter>>) -> Vec<Waker> {
        let mut wakers = Vec::new();
        while !queue.is_empty() && self.lane.take_free() {
            if let Some(waiter) = queue.pop_front() {
                waiter.granted.store(true, Ordering::Release);
                if let Some(waker) = lock(&waiter.waker).take() {
                    wakers.push(waker);
                }
            }
        }
        self.lane
            .config
            .waiting
            .store(queue.len() as u32, Ordering::SeqCst);
        wakers
    }

    /// A waiter gives up (timed out or dropped). Returns whether it had been granted a
    /// permit meanwhile, which the caller then owns (to use or give back).
    pub(crate) fn leave(&self, queued: &Queued) -> bool {
        let mut queue = lock(&self.queue);
        // Granted only under this lock: if not granted yet, the caller is still queued
        // under its key.
        if queued.is_granted() {
            return true;
        }
        queue.remove_if(queued.key, |w| Arc::ptr_eq(w, &queued.waiter));
        self.lane
            .config
            .waiting
            .store(queue.len() as u32, Ordering::SeqCst);
        // Leaving may unblock the queue for callers behind it.
        let granted = self.grant_locked(&mut queue);
        drop(queue);
        wake(granted);
        false
    }

    /// Teach the adaptive limit how one call went, and apply the limit it answers.
    pub(crate) fn observe(&self, started: u64, in_flight: u32, limit: u32, dropped: bool) {
        let Some(adaptive) = &self.adaptive else {
            return;
        };
        let rtt = adaptive.clock.now().saturating_sub(started);
        let sample = Sample::new(
            std::time::Duration::from_nanos(rtt),
            in_flight,
            limit,
            dropped,
        );
        let next = adaptive.algorithm.update(sample).max(1);
        if next != self.lane.limit() {
            self.set_limit(next);
        }
    }

    /// Change the limit. Raising it grants permits to queued callers at once; lowering it
    /// lets the calls in flight finish, and admits nobody until they are below it.
    pub(crate) fn set_limit(&self, limit: u32) {
        self.lane.config.limit.store(limit, Ordering::SeqCst);
        self.metrics.limit(limit);
        self.grant_queued();
    }
}

#[cfg(all(test, not(seawall_loom)))]
mod tests {
    use super::*;

    /// How many times `lane` sits in the pool.
    fn pooled(lane: &Lane) -> usize {
        LANES.count_free(lane)
    }

    // The only unit test that takes lanes from the pool.
    #[test]
    fn a_lane_goes_back_to_the_pool_exactly_once_whoever_is_last() {
        // The bulkhead goes first, with a permit out: the permit hands the lane back.
        let shared = Shared::new(Arc::from("t"), 2, 1, None);
        let lane = shared.lane.clone();
        assert!(lane.pooled().is_some(), "a pooled lane, in a test binary");
        assert!(lane.try_acquire());
        assert!(lane.try_acquire());
        drop(shared);
        assert_eq!(pooled(&lane), 0, "permits are out");
        lane.release();
        assert_eq!(pooled(&lane), 0, "one permit is still out");
        lane.release();
        assert_eq!(pooled(&lane), 1);

        // The permits go first: the bulkhead hands the lane back as it goes.
        let shared = Shared::new(Arc::from("t"), 2, 1, None);
        let lane = shared.lane.clone();
        assert_eq!(pooled(&lane), 0, "taken from the pool");
        assert!(lane.try_acquire());
        lane.release();
        assert_eq!(pooled(&lane), 0, "the bulkhead still owns it");
        drop(shared);
        assert_eq!(pooled(&lane), 1);
    }

    /// A timeout storm over a long queue: every caller leaves on its own, from the back
    /// (the worst case for a queue searched from the front). Each departure must visit a
    /// bounded number of queue slots, not the whole queue.
    #[test]
    fn a_waiter_leaving_visits_one_slot_whatever_the_queue_length() {
        const WAITERS: u32 = 10_000;
        let shared = Shared::new(Arc::from("t"), 1, WAITERS, None);
        assert!(
            shared.lane.try_acquire(),
            "the only permit is out: everyone queues"
        );
        let queued: Vec<Queued> = (0..WAITERS)
            .map(|_| match shared.enqueue() {
                Enqueued::Queued(queued) => queued,
                other => panic!("expected to queue, got {other:?}"),
            })
            .collect();
        assert_eq!(shared.lane.waiting(), WAITERS);
        let before = lock(&shared.queue).visits();
        for q in queued.iter().rev() {
            assert!(!shared.leave(q), "nobody was granted");
        }
        let visits = lock(&shared.queue).visits() - before;
        assert!(
            visits <= u64::from(WAITERS),
            "{WAITERS} departures visited {visits} queue slots"
        );
        assert_eq!(shared.lane.waiting(), 0);
        assert_eq!(lock(&shared.queue).slots(), 0, "the emptied queue is freed");
        shared.lane.release();
    }

    /// Callers who leave from the middle keep the others' order.
    #[test]
    fn leaving_from_the_middle_keeps_the_others_in_order() {
        let shared = Shared::new(Arc::from("t"), 1, 10, None);
        assert!(shared.lane.try_acquire());
        let queued: Vec<Queued> = (0..5)
            .map(|_| match shared.enqueue() {
                Enqueued::Queued(queued) => queued,
                other => panic!("expected to queue, got {other:?}"),
            })
            .collect();
        assert!(!shared.leave(&queued[1]));
        assert!(!shared.leave(&queued[3]));
        let mut served = Vec::new();
        for _ in 0..3 {
            shared.lane.release(); // hands the permit to the front of the queue
            let next = queued
                .iter()
                .position(|q| q.is_granted() && !served.contains(&q.key));
            let next = next.expect("one more is granted");
            served.push(queued[next].key);
        }
        let keys: Vec<usize> = [0, 2, 4].iter().map(|&i| queued[i].key).collect();
        assert_eq!(served, keys);
        shared.lane.release();
        assert_eq!(shared.lane.in_flight(), 0);
    }
}

#[cfg(all(test, seawall_loom))]
mod loom_tests;
