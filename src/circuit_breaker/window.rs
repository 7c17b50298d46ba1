//! The sliding windows that the trip rules read: the last N calls (count window) or the
//! calls of the last T seconds in buckets (time window).
//!
//! Both record a call in O(1) with atomics only. On the success path of a full count
//! window, recording is one `fetch_add` (the ring position) and one load (the slot
//! already says "success", so nothing changes).
//!
//! Loom models (`window/loom_tests.rs`): the count window's packed totals equal the sum of
//! its slots after concurrent records and a reset; a time window's snapshot never reads a
//! recycled bucket's old period as its new one.

use crate::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// One call's outcome as the window stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) failure: bool,
    pub(crate) slow: bool,
}

impl Sample {
    const RECORDED: u8 = 1;
    const FAILURE: u8 = 2;
    const SLOW: u8 = 4;

    fn bits(self) -> u8 {
        Self::RECORDED
            | if self.failure { Self::FAILURE } else { 0 }
            | if self.slow { Self::SLOW } else { 0 }
    }
}

/// Counts of the calls in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// What recording a sample changed: whether the counts moved (so the trip rules need a
/// fresh look).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    Unchanged,
    Changed,
}

// One per breaker, inside its `Arc`: the padding that keeps the count window's hot
// counters on their own cache lines is worth more than a smaller enum.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    #[inline]
    pub(crate) fn record(&self, sample: Sample, now: impl FnOnce() -> u64) -> Recorded {
        match self {
            Window::Count(w) => w.record(sample),
            Window::Time(w) => w.record(sample, now()),
        }
    }

    pub(crate) fn counts(&self, now: impl FnOnce() -> u64) -> Counts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => w.counts(now()),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Window::Count(w) => w.reset(),
            Window::Time(w) => w.reset(),
        }
    }
}

// ===== count window =====

/// The largest count window: the packed totals need headroom (see [`Totals`]).
pub(crate) const MAX_COUNT_WINDOW: u32 = 1_000_000;

/// Three counters packed into one `AtomicU64` so that a snapshot is consistent: calls,
/// failures and slow calls, 21 bits each. Each field is stored with a bias of 2^19 so
/// that a transiently negative value (a slot's old outcome subtracted before a racing
/// writer added it) never borrows from its neighbour; the sum of all deltas is exact.
#[derive(Debug)]
pub(crate) struct Totals(AtomicU64);

const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const BIAS: u64 = 1 << 19;
const BIASED_ZERO: u64 = BIAS | (BIAS << FIELD_BITS) | (BIAS << (2 * FIELD_BITS));

impl Totals {
    pub(crate) fn new() -> Self {
        Self(AtomicU64::new(BIASED_ZERO))
    }

    /// The packed word of a full window of `size` calls with no failure and no slow
    /// call: a call admitted while the totals equal it, and that succeeds, changes
    /// nothing (it would overwrite a success with a success).
    pub(crate) const fn clean_word(size: u32) -> u64 {
        BIASED_ZERO + size as u64
    }

    /// The raw packed word, to compare with [`Totals::clean_word`].
    #[inline]
    pub(crate) fn raw(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Back to an empty window (only for a window no call can record into any more).
    pub(crate) fn clear(&self) {
        self.0.store(BIASED_ZERO, Ordering::Release);
    }

    /// Apply the change from a slot holding `old` bits to holding `new` bits.
    fn apply(&self, old: u8, new: u8) {
        let field = |bits: u8, flag: u8, shift: u32| -> u64 {
            if bits & flag != 0 {
                1 << shift
            } else {
                0
            }
        };
        let plus = field(new, Sample::RECORDED, 0)
            + field(new, Sample::FAILURE, FIELD_BITS)
            + field(new, Sample::SLOW, 2 * FIELD_BITS);
        let minus = field(old, Sample::RECORDED, 0)
            + field(old, Sample::FAILURE, FIELD_BITS)
            + field(old, Sample::SLOW, 2 * FIELD_BITS);
        // Wrapping arithmetic over the whole word equals per-field arithmetic because no
        // biased field ever leaves 0..2^21 (see the type docs).
        self.0.fetch_add(plus.wrapping_sub(minus), Ordering::AcqRel);
    }

    fn load(&self) -> Counts {
        let v = self.0.load(Ordering::Acquire);
        let unbias = |shift: u32| ((v >> shift) & FIELD_MASK).saturating_sub(BIAS);
        let calls = unbias(0);
        Counts {
            calls,
            failures: unbias(FIELD_BITS).min(calls),
            slow: unbias(2 * FIELD_BITS).min(calls),
        }
    }
}

/// The last `size` calls, as a ring of one-byte slots plus running totals. The totals
/// live in the breaker's lane (see `state.rs`) so that the fast path can read them
/// without a reference count.
#[derive(Debug)]
pub(crate) struct CountWindow {
    next: crate::sync::CachePadded<AtomicU64>,
    totals: crate::lane::PartRef<Totals>,
    slots: Box<[AtomicU8]>,
}

impl CountWindow {
    pub(crate) fn new(size: u32, totals: impl Into<crate::lane::PartRef<Totals>>) -> Self {
        Self {
            next: crate::sync::CachePadded::new(AtomicU64::new(0)),
            totals: totals.into(),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    #[inline]
    fn record(&self, sample: Sample) -> Recorded {
        let position = self.next.fetch_add(1, Ordering::Relaxed);
        // `slots` is never empty (the builder rejects a zero window).
        let slot = &self.slots[(position % self.slots.len() as u64) as usize];
        let new = sample.bits();
        // Steady state: the slot already holds the same outcome and nothing changes.
        if slot.load(Ordering::Relaxed) == new {
            return Recorded::Unchanged;
        }
        let old = slot.swap(new, Ordering::AcqRel);
        if old == new {
            return Recorded::Unchanged;
        }
        self.totals.apply(old, new);
        Recorded::Changed
    }

    fn counts(&self) -> Counts {
        self.totals.load()
    }

    /// Empty every slot. Each slot is emptied by a swap whose old value is subtracted, so
    /// the totals stay equal to the sum of the slots even while calls record concurrently.
    fn reset(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Ordering::AcqRel);
            if old != 0 {
                self.totals.apply(old, 0);
            }
        }
    }
}

// ===== time window =====

/// The most buckets a time window may have (a snapshot sums them all).
pub(crate) const MAX_BUCKETS: u32 = 1_000;

/// Epochs at or above this mark an empty bucket; real epochs (nanoseconds since the
/// breaker was built, divided by the bucket length) never come near it.
const EMPTY_EPOCHS: u64 = u64::MAX - MAX_BUCKETS as u64;

/// The epoch of a bucket that one thread is zeroing for a new period. Above every live
/// epoch, so snapshots skip it.
const RECYCLING: u64 = EMPTY_EPOCHS - 1;

#[derive(Debug)]
struct Bucket {
    /// Which bucket of the timeline (now / bucket length) this slot currently holds.
    epoch: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

/// The calls of the last `buckets * bucket_nanos` nanoseconds, in buckets that rotate
/// as time passes. Recording touches one bucket; a snapshot sums the live buckets.
///
/// When a bucket is recycled for a new period, a call recorded by another thread in the
/// same instant may be lost or land in the new period: at most one call per thread
/// recording at that instant. A snapshot never sees the old period's counts as the new
/// period's (the bucket is zeroed before its new epoch is published).
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    buckets: Box<[crate::sync::CachePadded<Bucket>]>,
}

impl TimeWindow {
    pub(crate) fn new(bucket_nanos: u64, buckets: u32) -> Self {
        Self {
            bucket_nanos,
            buckets: (0..buckets)
                .map(|i| {
                    crate::sync::CachePadded::new(Bucket {
                        // An epoch that no live period has, so the slot reads as empty.
                        epoch: AtomicU64::new(u64::MAX - u64::from(i)),
                        calls: AtomicU64::new(0),
                        failures: AtomicU64::new(0),
                        slow: AtomicU64::new(0),
                    })
                })
                .collect(),
        }
    }

    fn bucket_for(&self, epoch: u64) -> &Bucket {
        &self.buckets[(epoch % self.buckets.len() as u64) as usize]
    }

    #[inline]
    fn record(&self, sample: Sample, now: u64) -> Recorded {
        let epoch = now / self.bucket_nanos;
        let bucket = self.bucket_for(epoch);
        let held = bucket.epoch.load(Ordering::Acquire);
        if held != epoch && !self.recycle(bucket, held, epoch) {
            return Recorded::Unchanged;
        }
        bucket.calls.fetch_add(1, Ordering::AcqRel);
        if sample.failure {
            bucket.failures.fetch_add(1, Ordering::AcqRel);
        }
        if sample.slow {
            bucket.slow.fetch_add(1, Ordering::AcqRel);
        }
        Recorded::Changed
    }

    /// Move `bucket` from the period it `held` to `epoch`. Returns whether the bucket
    /// now holds `epoch`; if not, the sample is dropped (it belongs to a period that has
    /// been recycled already, or another thread is recycling the bucket this instant).
    ///
    /// The bucket is claimed with a sentinel epoch, zeroed, and only then published, so
    /// that a snapshot never counts the old period's calls as the new period's.
    #[cold]
    fn recycle(&self, bucket: &Bucket, held: u64, epoch: u64) -> bool {
        if held == RECYCLING || (held < EMPTY_EPOCHS && held > epoch) {
            return false;
        }
        if bucket
            .epoch
            .compare_exchange(held, RECYCLING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            bucket.calls.store(0, Ordering::Release);
            bucket.failures.store(0, Ordering::Release);
            bucket.slow.store(0, Ordering::Release);
            bucket.epoch.store(epoch, Ordering::Release);
            return true;
        }
        bucket.epoch.load(Ordering::Acquire) == epoch
    }

    fn counts(&self, now: u64) -> Counts {
        let current = now / self.bucket_nanos;
        let span = self.buckets.len() as u64;
        let mut counts = Counts::default();
        for bucket in self.buckets.iter() {
            let epoch = bucket.epoch.load(Ordering::Acquire);
            // Live: one of the last `span` periods, including the current one.
            if epoch <= current && current - epoch < span {
                let calls = bucket.calls.load(Ordering::Acquire);
                counts.calls += calls;
                counts.failures += bucket.failures.load(Ordering::Acquire).min(calls);
                counts.slow += bucket.slow.load(Ordering::Acquire).min(calls);
            }
        }
        counts
    }

    fn reset(&self) {
        for (i, bucket) in self.buckets.iter().enumerate() {
            bucket.epoch.store(u64::MAX - i as u64, Ordering::Release);
            bucket.calls.store(0, Ordering::Release);
            bucket.failures.store(0, Ordering::Release);
            bucket.slow.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Sample = Sample {
        failure: false,
        slow: false,
    };
    const FAIL: Sample = Sample {
        failure: true,
        slow: false,
    };
    const SLOW_FAIL: Sample = Sample {
        failure: true,
        slow: true,
    };

    #[test]
    fn count_window_keeps_the_last_n() {
        let w = CountWindow::new(4, Box::leak(Box::new(Totals::new())));
        for s in [FAIL, FAIL, OK, SLOW_FAIL] {
            w.record(s);
        }
        assert_eq!(
            w.counts(),
            Counts {
                calls: 4,
                failures: 3,
                slow: 1
            }
        );
        // Two successes push out the two oldest failures.
        w.record(OK);
        w.record(OK);
        assert_eq!(
            w.counts(),
            Counts {
                calls: 4,
                failures: 1,
                slow: 1
            }
        );
        w.reset();
        assert_eq!(w.counts(), Counts::default());
    }

    #[test]
    fn clean_word_is_a_full_window_of_successes() {
        let totals: &'static Totals = Box::leak(Box::new(Totals::new()));
        let w = CountWindow::new(3, totals);
        for _ in 0..3 {
            assert_ne!(totals.raw(), Totals::clean_word(3));
            w.record(OK);
        }
        assert_eq!(totals.raw(), Totals::clean_word(3));
        w.record(SLOW_FAIL);
        assert_ne!(totals.raw(), Totals::clean_word(3));
    }

    #[test]
    fn totals_survive_a_transient_negative() {
        let t = Totals::new();
        // A racing writer replaced a failure with a success (failures - 1) before the
        // thread that wrote the failure added it (calls + 1, failures + 1).
        t.apply(Sample::RECORDED | Sample::FAILURE, Sample::RECORDED);
        let transient = t.load();
        assert_eq!(
            (transient.calls, transient.failures),
            (0, 0),
            "clamped, no borrow"
        );
        t.apply(0, Sample::RECORDED | Sample::FAILURE);
        assert_eq!(
            t.load(),
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        let w = TimeWindow::new(1_000, 3);
        w.record(FAIL, 0);
        w.record(OK, 1_500);
        w.record(SLOW_FAIL, 2_999);
        assert_eq!(
            w.counts(2_999),
            Counts {
                calls: 3,
                failures: 2,
                slow: 1
            }
        );
        // At t=3000 the first bucket (0..1000) has left the window.
        assert_eq!(w.counts(3_000).calls, 2);
        w.record(OK, 3_100);
        assert_eq!(
            w.counts(3_100),
            Counts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        assert_eq!(w.counts(10_000), Counts::default());
        w.reset();
        assert_eq!(w.counts(3_100), Counts::default());
    }

    #[test]
    fn a_bucket_being_recycled_is_never_read_as_the_new_period() {
        let w = TimeWindow::new(1_000, 2);
        w.record(FAIL, 500); // epoch 0, slot 0
                             // Another thread has claimed slot 0 for epoch 2 but not zeroed it yet.
        w.buckets[0].epoch.store(RECYCLING, Ordering::Release);
        assert_eq!(
            w.counts(2_000),
            Counts::default(),
            "the old failure is not epoch 2's"
        );
        assert_eq!(
            w.record(OK, 2_100),
            Recorded::Unchanged,
            "dropped meanwhile"
        );
        // Once published, the bucket starts empty.
        w.buckets[0].calls.store(0, Ordering::Release);
        w.buckets[0].failures.store(0, Ordering::Release);
        w.buckets[0].epoch.store(2, Ordering::Release);
        w.record(OK, 2_200);
        assert_eq!(
            w.counts(2_200),
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn time_window_drops_samples_from_a_recycled_period() {
        let w = TimeWindow::new(1_000, 2);
        w.record(OK, 2_500); // epoch 2 takes slot 0
                             // A late sample of epoch 0 (also slot 0) must not reset or join epoch 2.
        assert_eq!(w.record(FAIL, 500), Recorded::Unchanged);
        assert_eq!(w.counts(2_500).calls, 1);
        assert_eq!(w.counts(2_500).failures, 0);
    }
}

#[cfg(all(test, seawall_loom))]
mod loom_tests;
