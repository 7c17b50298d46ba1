//! The sliding window of requests and accepts that the rejection probability is computed
//! from: `n` buckets of one time slot each, rotating as time passes.
//!
//! A bucket holds three counters: requests the backend accepted, requests it failed, and
//! requests this throttle refused. A request is one `fetch_add` on one of them; the window's totals are the sum of the live buckets (those
//! whose slot is one of the last `n`), so nothing has to expire actively and a bucket of
//! an idle period simply stops counting.
//!
//! # Exactness
//!
//! A bucket moves to a new slot the way the retry budget's do: one thread claims it with
//! the `RECYCLING` sentinel, zeroes its counters, then publishes the new slot; a thread
//! that arrives in those few instructions waits for them (spinning, then yielding), so no
//! count is lost or lands in the wrong slot at a rotation. The bounds:
//!
//! - a request is counted in the slot it was decided in (read once, at admission); a call
//!   that outlives the whole window may find its bucket moved on, and is then not counted
//!   (its slot has left the window), or, if it races with that move, is counted in the
//!   later slot;
//! - the totals are summed bucket by bucket without a lock, so a sum taken while other
//!   threads count may miss the counts that land during it, and a bucket that rotates
//!   during the sum (its slot just left the window) may be read as empty.
//!
//! # Why it has no loom model
//!
//! The counts feed only the rejection probability: nothing is held or given back, and no
//! invariant ties one counter to another, so a race can make a sum slightly stale (the
//! bounds above), which moves the probability a little; the formula keeps it in `0..1`
//! for any counts, so no interleaving makes the throttle refuse every call. The rotation
//! is the retry budget's scheme (claim with `RECYCLING`, zero, publish), whose exactness
//! under every interleaving the budget's loom models check (`retry/budget.rs`); here it
//! has no ledger to keep in step with it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::CachePadded;

/// A bucket that holds no slot (never used, or reset).
const EMPTY: u64 = u64::MAX;
/// A bucket one thread is moving to a new slot.
const RECYCLING: u64 = u64::MAX - 1;

/// The most buckets a window may have: every admission sums them all.
pub(crate) const MAX_BUCKETS: u32 = 100;

/// What became of one request, as the window counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The backend accepted (processed) it.
    Accepted,
    /// The backend failed it.
    Failed,
    /// This throttle refused it: it was never sent.
    Refused,
}

/// Requests and accepts in the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Every request: sent (accepted or failed) or refused.
    pub(crate) requests: u64,
    pub(crate) accepts: u64,
    /// The requests that were sent and answered (accepted or failed).
    pub(crate) sent: u64,
}

impl Counts {
    /// The SRE book's client-side rejection probability,
    /// `max(0, (requests - k * accepts) / (requests + 1))`, or zero while fewer than
    /// `minimum` requests were sent: too few answers to tell overload from a blip.
    #[inline]
    pub(crate) fn probability(self, k: f64, minimum: u64) -> f64 {
        if self.sent < minimum {
            return 0.0;
        }
        let requests = self.requests as f64;
        let excess = requests - k * self.accepts as f64;
        if excess > 0.0 {
            // Below 1 whenever k >= 0, since excess <= requests < requests + 1.
            excess / (requests + 1.0)
        } else {
            0.0
        }
    }
}

#[derive(Debug)]
struct Bucket {
    /// The time slot (clock nanoseconds / slot length) the counters belong to.
    slot: AtomicU64,
    accepted: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
}

/// The requests and accepts of the last `buckets.len()` time slots.
#[derive(Debug)]
pub(crate) struct Window {
    buckets: Box<[CachePadded<Bucket>]>,
}

impl Window {
    /// A window of `buckets` slots (at least one; the builder checks it).
    pub(crate) fn new(buckets: u32) -> Self {
        Self {
            buckets: (0..buckets.max(1))
                .map(|_| {
                    CachePadded::new(Bucket {
                        slot: AtomicU64::new(EMPTY),
                        accepted: AtomicU64::new(0),
                        failed: AtomicU64::new(0),
                        refused: AtomicU64::new(0),
                    })
                })
                .collect(),
        }
    }

    /// Count one request decided in `slot`.
    #[inline]
    pub(crate) fn record(&self, slot: u64, outcome: Outcome) {
        if let Some(bucket) = self.bucket(slot) {
            let counter = match outcome {
                Outcome::Accepted => &bucket.accepted,
                Outcome::Failed => &bucket.failed,
                Outcome::Refused => &bucket.refused,
            };
            counter.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The bucket of `slot`, moved to it if it still holds an earlier slot; `None` if it
    /// has moved past `slot` already (the request outlived the window).
    #[inline]
    fn bucket(&self, slot: u64) -> Option<&Bucket> {
        // `buckets` is never empty (see `new`).
        let bucket = &*self.buckets[(slot % self.buckets.len() as u64) as usize];
        let held = bucket.slot.load(Ordering::Acquire);
        if held == slot {
            return Some(bucket);
        }
        self.move_bucket(bucket, slot)
    }

    /// The rare path of [`bucket`](Self::bucket): once per bucket per slot, or a thread
    /// that arrives while another moves the bucket.
    #[cold]
    fn move_bucket<'a>(&self, bucket: &'a Bucket, slot: u64) -> Option<&'a Bucket> {
        let mut spins = 0u32;
        loop {
            let held = bucket.slot.load(Ordering::Acquire);
            if held == slot {
                return Some(bucket);
            }
            if held == RECYCLING {
                // Another thread is moving this bucket: a handful of instructions.
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            if held != EMPTY && held > slot {
                return None;
            }
            if bucket
                .slot
                .compare_exchange(held, RECYCLING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                bucket.accepted.store(0, Ordering::Release);
                bucket.failed.store(0, Ordering::Release);
                bucket.refused.store(0, Ordering::Release);
                bucket.slot.store(slot, Ordering::Release);
                return Some(bucket);
            }
        }
    }

    /// The requests and accepts of the slots `now - len + 1 ..= now`.
    #[inline]
    pub(crate) fn counts(&self, now: u64) -> Counts {
        let span = self.buckets.len() as u64;
        let mut counts = Counts::default();
        for bucket in self.buckets.iter() {
            let slot = bucket.slot.load(Ordering::Acquire);
            // Live: one of the last `span` slots. (EMPTY and RECYCLING are above any
            // slot a clock reaches, so they fail the first test.)
            if slot <= now && now - slot < span {
                let accepted = bucket.accepted.load(Ordering::Acquire);
                let sent = accepted.saturating_add(bucket.failed.load(Ordering::Acquire));
                let refused = bucket.refused.load(Ordering::Acquire);
                counts.accepts = counts.accepts.saturating_add(accepted);
                counts.sent = counts.sent.saturating_add(sent);
                counts.requests = counts.requests.saturating_add(sent).saturating_add(refused);
            }
        }
        counts
    }

    /// Forget every count. A request counted concurrently may survive the reset.
    pub(crate) fn reset(&self) {
        for bucket in self.buckets.iter() {
            loop {
                let held = bucket.slot.load(Ordering::Acquire);
                if held == EMPTY {
                    break;
                }
                if held == RECYCLING {
                    std::thread::yield_now();
                    continue;
                }
                if bucket
                    .slot
                    .compare_exchange(held, RECYCLING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    bucket.accepted.store(0, Ordering::Release);
                    bucket.failed.store(0, Ordering::Release);
                    bucket.refused.store(0, Ordering::Release);
                    bucket.slot.store(EMPTY, Ordering::Release);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Counts of calls that were all sent.
    fn counts(requests: u64, accepts: u64) -> Counts {
        Counts {
            requests,
            accepts,
            sent: requests,
        }
    }

    #[test]
    fn the_formula() {
        // Nothing yet, or everything accepted: no throttling, exactly.
        assert_eq!(counts(0, 0).probability(2.0, 0), 0.0);
        assert_eq!(counts(1_000, 1_000).probability(2.0, 0), 0.0);
        // Up to k requests per accept pass freely.
        assert_eq!(counts(200, 100).probability(2.0, 0), 0.0);
        // Beyond it: (requests - k * accepts) / (requests + 1).
        assert_eq!(counts(300, 100).probability(2.0, 0), 100.0 / 301.0);
        assert_eq!(counts(99, 0).probability(2.0, 0), 0.99);
        assert_eq!(counts(3, 1).probability(1.0, 0), 0.5);
        // Never 1: a trickle always goes through.
        assert!(counts(u64::MAX, 0).probability(2.0, 0) <= 1.0);
    }

    #[test]
    fn nothing_is_refused_until_minimum_requests_were_sent() {
        // One failure in an empty window: the formula says 1/2, the minimum says 0.
        assert_eq!(counts(1, 0).probability(2.0, 20), 0.0);
        assert_eq!(counts(19, 0).probability(2.0, 20), 0.0);
        assert_eq!(counts(20, 0).probability(2.0, 20), 20.0 / 21.0);
        // Refused calls are requests, but were not sent: they do not reach the minimum.
        let refused = Counts {
            requests: 50,
            accepts: 0,
            sent: 19,
        };
        assert_eq!(refused.probability(2.0, 20), 0.0);
        assert_eq!(refused.probability(2.0, 19), 50.0 / 51.0);
        let w = Window::new(2);
        w.record(1, Outcome::Accepted);
        w.record(1, Outcome::Failed);
        w.record(1, Outcome::Refused);
        assert_eq!(
            w.counts(1),
            Counts {
                requests: 3,
                accepts: 1,
                sent: 2
            }
        );
    }

    #[test]
    fn counts_the_live_slots_only() {
        let w = Window::new(3);
        w.record(10, Outcome::Accepted);
        w.record(10, Outcome::Failed);
        w.record(11, Outcome::Failed);
        w.record(12, Outcome::Accepted);
        assert_eq!(w.counts(12), counts(4, 2));
        // Slot 10 leaves the window at 13; its bucket is not even touched.
        assert_eq!(w.counts(13), counts(2, 1));
        assert_eq!(w.counts(14), counts(1, 1));
        assert_eq!(w.counts(15), counts(0, 0));
        // Not yet live: a reader whose clock is behind the writers' sees the past only.
        assert_eq!(w.counts(11), counts(3, 1));
    }

    #[test]
    fn a_bucket_is_recycled_for_a_new_slot() {
        let w = Window::new(2);
        for _ in 0..5 {
            w.record(4, Outcome::Failed);
        }
        // Slot 6 shares slot 4's bucket: its old counts go.
        w.record(6, Outcome::Accepted);
        assert_eq!(w.counts(6), counts(1, 1));
        // A request of slot 4 that completes now is late by a whole window: not counted.
        w.record(4, Outcome::Accepted);
        assert_eq!(w.counts(6), counts(1, 1));
        assert_eq!(w.counts(5), counts(0, 0));
    }

    #[test]
    fn reset_forgets_everything() {
        let w = Window::new(4);
        for slot in 0..4 {
            w.record(slot, Outcome::Failed);
        }
        assert_eq!(w.counts(3), counts(4, 0));
        w.reset();
        assert_eq!(w.counts(3), counts(0, 0));
        w.record(3, Outcome::Accepted);
        assert_eq!(w.counts(3), counts(1, 1));
    }

    #[test]
    fn concurrent_counts_are_exact_across_rotations() {
        // Threads count into the same slot at once, and all move to the next slot
        // together, so that they race to rotate its bucket: after each slot the window
        // must hold exactly what was counted (nothing lost or moved at a rotation).
        const THREADS: u64 = 4;
        const SLOTS: u64 = 100;
        const PER_SLOT: u64 = 200;
        const SPAN: u64 = 4;
        let w = Arc::new(Window::new(SPAN as u32));
        let barrier = Arc::new(std::sync::Barrier::new(THREADS as usize));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let w = w.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    for slot in 0..SLOTS {
                        for i in 0..PER_SLOT {
                            let outcome = if (i + t) % 2 == 0 {
                                Outcome::Accepted
                            } else {
                                Outcome::Failed
                            };
                            w.record(slot, outcome);
                        }
                        barrier.wait();
                        if t == 0 {
                            let live = (slot + 1).min(SPAN);
                            let expected = live * THREADS * PER_SLOT;
                            assert_eq!(w.counts(slot), counts(expected, expected / 2));
                        }
                        barrier.wait();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
