//! A retry budget: retries may be at most a share of recent requests, plus a small floor.
//!
//! Three attempts per request turn a failing downstream into one with three times its
//! load, which keeps it down. A budget bounds the damage instead: over a sliding window
//! (default 10 s), retries may be at most `ratio` of the requests (default 20 %) plus a
//! floor of `min_per_sec` retries per second (default 10/s) so that a client with little
//! traffic can still retry. Finagle's and Linkerd's budgets work this way. During a full
//! outage the load on the downstream is then at most `1 + ratio` times the requests (plus
//! the floor), instead of `max_attempts` times.
//!
//! ```
//! use seawall::retry::budget::RetryBudget;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), seawall::error::ConfigError> {
//! let budget = RetryBudget::builder().ratio(0.2).min_per_sec(0.0).build()?;
//! for _ in 0..10 {
//!     budget.deposit(); // ten requests...
//! }
//! assert!(budget.try_withdraw()); // ...fund two retries
//! assert!(budget.try_withdraw());
//! assert!(!budget.try_withdraw());
//! let snapshot = budget.snapshot();
//! assert_eq!((snapshot.deposits, snapshot.withdrawals, snapshot.denials), (10, 2, 1));
//! # Ok(()) }
//! ```
//!
//! # Exactness
//!
//! The window is kept in `buckets` time slots (default 10 of 1 s): the window at a
//! given slot is that slot and the `buckets - 1` before it. Each slot counts its requests
//! and its retries, and leaves the window whole, once a clock read shows the window has
//! moved past it.
//!
//! **The guarantee.** A retry is taken only if, counting it, the retries taken in the
//! window are at most the floor (`min_per_sec` × window) plus `ratio` × the requests
//! deposited in the window. The check and the take are one compare-and-swap, so however
//! many threads withdraw at once, no two of them can spend the same retry: the budget is
//! never overdrawn. (As with a balance, credit that leaves the window can leave it with
//! more retries than the remaining requests fund; then nothing more is taken until the
//! window has room again.)
//!
//! **How.** A request (a deposit) costs one clock read and one compare-and-swap on its
//! slot's count: its credit is added to no balance. A withdrawal, which is rare (only a
//! failed attempt asks for one), does the arithmetic. It takes out of the window every
//! slot that has left it, sums the request counts of the window's slots, and takes the
//! retry with a compare-and-swap on one word, the ledger, that holds the number of retries
//! the window's slots count and a generation. A slot leaving the window takes its retries
//! out of the ledger and bumps the generation, so a withdrawal that summed the requests of
//! a slot that has left since then fails its compare-and-swap and looks again. It decides
//! at the latest slot any thread has reached (its own clock read, or a later one), so the
//! requests it sums and the retries it subtracts belong to the same window. A retry is
//! counted in the ledger before its slot, and a slot's counts leave the window exactly
//! once: the ledger never counts fewer retries than the slots hold.
//!
//! **Counts land in their own slot.** A slot's count shares one atomic word with the slot
//! number's low 32 bits, and is added only while the word still belongs to that slot. A
//! count whose slot has gone (its thread stalled for a whole window between reading the
//! clock and counting) funds nothing: a late request is only counted in the
//! [`deposits`](BudgetSnapshot::deposits) total; a late retry is counted in the later slot
//! that holds its bucket by then, so it comes back later, never early. A request's credit
//! therefore lasts exactly as long as its slot is in the window, and a retry is counted
//! until its slot (or a later one) leaves it.
//!
//! Where the budget is not exact, it errs on the safe side, refusing a retry it could
//! have allowed: a withdrawal may miss requests counted while it sums, or the slot that
//! another thread is moving at that instant. A slot counts at most 2^31 requests (more
//! fund nothing) and 2^31 retries (more are never given back), and the window at most
//! 2^40 − 1 retries. The scheme assumes that no thread stalls in the middle of a
//! withdrawal while 2^24 slots leave the window, or for 2^32 slots between reading the
//! clock and counting (49 days at the shortest slot, 1 ms).
//!
//! **Refunds.** The retry layer takes a retry when it decides to retry. If that retry is
//! never sent (the service fails to become ready, or the caller drops the response while
//! the retry waits), it is given back: it leaves its slot's count and the ledger, and the
//! [`withdrawals`](BudgetSnapshot::withdrawals) counter counts only the retries actually
//! taken. A retry refunded after its slot has left the window has come back already; the
//! refund then corrects only the counter.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ConfigError;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::CachePadded;
use crate::time::{duration_to_nanos, Clock};

/// Thousandths of a retry: the unit of credit.
const UNIT: i64 = 1_000;
/// A bucket that has never held a time slot.
const EMPTY: u64 = u64::MAX;
/// A bucket one thread is moving to a new time slot.
const RECYCLING: u64 = u64::MAX - 1;
/// The most buckets a window may have (a withdrawal looks at all of them).
pub(crate) const MAX_BUCKETS: u32 = 1_000;

/// A bucket's counts are words of the low 32 bits of their slot (the tag, high half) and
/// the count (low half), so that a count is added only to its own slot's.
const TAG_SHIFT: u32 = 32;
const COUNT_MASK: u64 = (1 << TAG_SHIFT) - 1;
/// A count this large is full: more is not counted (far below the 2^32 that would carry
/// into the tag, whatever the number of threads adding at once).
const COUNT_FULL: u64 = 1 << 31;

/// The ledger: the retries counted in the window (low 40 bits) and a generation (high 24
/// bits), bumped whenever counts leave the window.
const SPENT_MASK: u64 = (1 << 40) - 1;
const GENERATION: u64 = 1 << 40;

/// `current`: the latest slot a bucket was moved to (high bits), and its bucket (low bits).
const INDEX_BITS: u32 = 10;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
const _: () = assert!(MAX_BUCKETS as u64 <= INDEX_MASK + 1);

/// A count word of `slot` holding `count`.
#[inline]
fn word(slot: u64, count: u64) -> u64 {
    (slot << TAG_SHIFT) | count
}

/// Whether count word `w` belongs to `slot`.
#[inline]
fn is_of(w: u64, slot: u64) -> bool {
    (w >> TAG_SHIFT) == (slot & COUNT_MASK)
}

#[derive(Debug)]
struct Bucket {
    /// The time slot this bucket holds, [`EMPTY`] or [`RECYCLING`].
    slot: AtomicU64,
    /// Requests counted in the slot: a [`word`].
    deposits: AtomicU64,
    /// Retries counted in the slot: a [`word`].
    withdrawals: AtomicU64,
}

impl Bucket {
    fn new(slot: u64) -> Self {
        Self {
            slot: AtomicU64::new(slot),
            deposits: AtomicU64::new(word(slot, 0)),
            withdrawals: AtomicU64::new(word(slot, 0)),
        }
    }
}

/// Adds one to count word `counts` if it still belongs to `slot` and is not full.
#[inline]
fn count_in(counts: &AtomicU64, slot: u64) -> bool {
    let mut seen = counts.load(Ordering::Relaxed);
    while is_of(seen, slot) && seen & COUNT_MASK < COUNT_FULL {
        match counts.compare_exchange_weak(seen, seen + 1, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => seen = now,
        }
    }
    false
}

#[derive(Debug)]
struct Inner {
    clock: Clock,
    slot_nanos: u64,
    /// The latest slot a bucket was moved to, and that bucket's index: a request in that
    /// slot finds its bucket without dividing.
    current: AtomicU64,
    buckets: Box<[CachePadded<Bucket>]>,
    /// Retries counted in the window, and a generation; see the module docs.
    ledger: CachePadded<AtomicU64>,
    /// The floor: `min_per_sec` × window, in [`UNIT`]s.
    reserve: i64,
    credit_per_deposit: i64,
    /// Deposits no longer in a bucket (expired, or too late for theirs): the total is
    /// these plus the buckets', so a deposit costs no extra counter.
    settled_deposits: AtomicU64,
    /// Retries taken and not refunded.
    withdrawals: AtomicU64,
    denials: AtomicU64,
    config: BudgetConfig,
}

#[derive(Debug, Clone, Copy)]
struct BudgetConfig {
    ratio: f64,
    min_per_sec: f64,
    window: Duration,
}

/// A retry budget, shareable by clone across layers, services and clients; see the
/// [module docs](self).
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

/// A retry taken by [`RetryBudget::withdraw`]: give it to [`RetryBudget::refund`] if the
/// retry is not sent after all, or drop it once it is.
#[derive(Debug)]
pub(crate) struct Withdrawal {
    /// The slot the retry is counted in (`None`: in no slot, only in the ledger).
    slot: Option<u64>,
}

/// The bounds of the time slot a caller deposited in last, and its bucket, for
/// [`RetryBudget::deposit_cached`]: a deposit in the same slot needs neither the
/// arithmetic of the clock read nor a shared load to find its bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotCache {
    start: Instant,
    end: Instant,
    slot: u64,
    index: usize,
}

impl SlotCache {
    /// A cache that holds no slot yet.
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Self {
            start: now,
            end: now,
            slot: 0,
            index: 0,
        }
    }
}

/// The state of a [`RetryBudget`], from [`RetryBudget::snapshot`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BudgetSnapshot {
    /// Retries that may be taken now (fractional: deposits add `ratio` each).
    pub balance: f64,
    /// Requests deposited since the budget was built. (Summed over the buckets: a
    /// snapshot taken while a bucket rotates may miss that bucket's deposits.)
    pub deposits: u64,
    /// Retries taken since the budget was built. A retry that the retry layer took but
    /// then did not send (the service failed to become ready, or the caller dropped the
    /// response first) is refunded and not counted.
    pub withdrawals: u64,
    /// Retries refused since the budget was built.
    pub denials: u64,
}

impl RetryBudget {
    /// A builder with the defaults: 20 % of requests plus 10 retries per second, over
    /// 10 s in 10 buckets (Finagle's and Linkerd's).
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder::default()
    }

    /// The defaults (20 % plus 10/s over 10 s), which are valid by construction.
    pub(crate) fn defaults() -> Self {
        let defaults = RetryBudgetBuilder::default();
        let slot_nanos = duration_to_nanos(defaults.window) / u64::from(defaults.buckets);
        let reserve = (defaults.min_per_sec * defaults.window.as_secs_f64() * UNIT as f64) as i64;
        let credit = (defaults.ratio * UNIT as f64).round() as i64;
        defaults.assemble(slot_nanos, reserve, credit)
    }

    /// Count one request (a first attempt): it funds `ratio` of a retry for a window.
    ///
    /// One clock read and one atomic add (a compare-and-swap) to the count of the
    /// request's time slot.
    #[inline]
    pub fn deposit(&self) {
        let inner = &*self.inner;
        inner.deposit_at(inner.clock.now());
    }

    /// [`deposit`](Self::deposit) for a caller that keeps a [`SlotCache`] (one per
    /// service: `&mut`): a clock read compared with the cached bounds of the slot, and
    /// the one atomic add.
    #[inline]
    pub(crate) fn deposit_cached(&self, cache: &mut SlotCache) {
        // Called from the retry layer's `call`: an outer deadline layer's clock read is
        // reused if there is one.
        #[cfg(feature = "timeout")]
        let now = crate::timeout::now_for_call();
        #[cfg(not(feature = "timeout"))]
        let now = Instant::now();
        if now >= cache.start && now < cache.end {
            if let Some(bucket) = self.inner.buckets.get(cache.index) {
                if count_in(&bucket.deposits, cache.slot) {
                    return;
                }
            }
        }
        self.inner.deposit_refresh(now, cache);
    }

    /// Take one retry if the budget allows it. A refusal is counted as a denial.
    pub fn try_withdraw(&self) -> bool {
        self.inner.withdraw().is_some()
    }

    /// Take one retry if the budget allows it (a refusal is counted as a denial); give it
    /// back with [`refund`](Self::refund) if it is not sent.
    pub(crate) fn withdraw(&self) -> Option<Withdrawal> {
        self.inner.withdraw().map(|slot| Withdrawal { slot })
    }

    /// Give back a retry taken by [`withdraw`](Self::withdraw) of this budget that was not
    /// sent: it no longer counts in its slot (if the slot is still in the window) nor in
    /// the [`withdrawals`](BudgetSnapshot::withdrawals) counter.
    pub(crate) fn refund(&self, withdrawal: Withdrawal) {
        self.inner.refund(withdrawal.slot);
    }

    /// The balance and the counters now.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let inner = &*self.inner;
        let (_, slot, spent) = inner.settled_ledger(inner.slot_now());
        let credit = inner.credit(slot);
        BudgetSnapshot {
            balance: credit.saturating_sub(spent_units(spent)) as f64 / UNIT as f64,
            deposits: inner.settled_deposits.load(Ordering::Acquire)
                + inner
                    .buckets
                    .iter()
                    .map(|b| b.deposits.load(Ordering::Acquire) & COUNT_MASK)
                    .sum::<u64>(),
            withdrawals: inner.withdrawals.load(Ordering::Relaxed),
            denials: inner.denials.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &self.inner.config.ratio)
            .field("min_per_sec", &self.inner.config.min_per_sec)
            .field("window", &self.inner.config.window)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// `spent` retries in [`UNIT`]s.
fn spent_units(spent: u64) -> i64 {
    i64::try_from(spent)
        .unwrap_or(i64::MAX)
        .saturating_mul(UNIT)
}

impl Inner {
    fn slot_now(&self) -> u64 {
        self.clock.now() / self.slot_nanos
    }

    /// The latest slot a bucket was moved to.
    fn current_slot(&self) -> u64 {
        self.current.load(Ordering::Acquire) >> INDEX_BITS
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    /// [`RetryBudget::deposit`] at clock nanoseconds `now`.
    #[inline]
    fn deposit_at(&self, now: u64) {
        let current = self.current.load(Ordering::Acquire);
        let slot = current >> INDEX_BITS;
        // In the latest slot (the usual case): its bucket is known, no division needed.
        if now.wrapping_sub(slot.wrapping_mul(self.slot_nanos)) < self.slot_nanos {
            if let Some(bucket) = self.buckets.get((current & INDEX_MASK) as usize) {
                if count_in(&bucket.deposits, slot) {
                    return;
                }
            }
        }
        self.deposit_slow(now);
    }

    /// A deposit outside the latest slot: the first of a new slot (which moves a bucket
    /// to it), or one from a thread whose clock read is older than the latest slot.
    #[cold]
    #[inline(never)]
    fn deposit_slow(&self, now: u64) {
        let slot = now / self.slot_nanos;
        if let Some((bucket, held)) = self.bucket(slot, false) {
            if held == slot && count_in(&bucket.deposits, slot) {
                return;
            }
        }
        // Too late for its slot (or its slot is full): counted, but funds nothing.
        self.settled_deposits.fetch_add(1, Ordering::AcqRel);
    }

    /// A deposit at `now` outside the slot `cache` holds: caches the slot of `now`.
    #[cold]
    #[inline(never)]
    fn deposit_refresh(&self, now: Instant, cache: &mut SlotCache) {
        let nanos = self.clock.since_base(now);
        let slot = nanos / self.slot_nanos;
        // The slot's bounds as instants: `now` less its offset into the slot (the same
        // instants as the base plus whole slots).
        let start = now.checked_sub(Duration::from_nanos(nanos % self.slot_nanos));
        let bounds = start.and_then(|start| {
            Some((
                start,
                start.checked_add(Duration::from_nanos(self.slot_nanos))?,
            ))
        });
        match bounds {
            Some((start, end)) => {
                *cache = SlotCache {
                    start,
                    end,
                    slot,
                    index: (slot % self.len()) as usize,
                }
            }
            // Never in practice (centuries from now): no cache, always this path.
            None => cache.end = cache.start,
        }
        self.deposit_slow(nanos);
    }

    /// Takes a retry at this thread's clock (or a later slot that another thread has
    /// seen); returns the slot it is counted in (`None`: only in the ledger). A refusal
    /// is counted as a denial.
    fn withdraw(&self) -> Option<Option<u64>> {
        self.withdraw_at(self.slot_now())
    }

    /// [`withdraw`](Self::withdraw) with the clock read at `slot`.
    fn withdraw_at(&self, mut slot: u64) -> Option<Option<u64>> {
        loop {
            let (ledger, at, spent) = self.settled_ledger(slot);
            slot = at;
            let available = self
                .credit(slot)
                .saturating_sub(spent_units(spent))
                .saturating_sub(UNIT);
            if available < 0 || spent >= SPENT_MASK {
                self.denials.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            // Fails if a retry was taken or refunded, or a slot left the window, since the
            // ledger was read: then look again.
            if self
                .ledger
                .compare_exchange(ledger, ledger + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break;
            }
        }
        self.withdrawals.fetch_add(1, Ordering::Relaxed);
        // Counted in its slot only after the ledger: if the slot leaves the window before
        // the count lands, it lands in a later slot and comes back later, never early.
        Some(self.count_withdrawal(slot))
    }

    /// Counts a retry taken at `slot` in the bucket of `slot`, or of the later slot that
    /// bucket holds by now. `None` if that slot is full of retries: it then stays in the
    /// ledger for good (safe: it never comes back).
    fn count_withdrawal(&self, slot: u64) -> Option<u64> {
        loop {
            let (bucket, held) = self.bucket(slot, true)?;
            let mut seen = bucket.withdrawals.load(Ordering::Acquire);
            while is_of(seen, held) {
                if seen & COUNT_MASK >= COUNT_FULL {
                    return None;
                }
                match bucket.withdrawals.compare_exchange_weak(
                    seen,
                    seen + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Some(held),
                    Err(now) => seen = now,
                }
            }
            // The bucket moved on meanwhile: count in the slot it holds now.
        }
    }

    fn refund(&self, slot: Option<u64>) {
        let _ = self
            .withdrawals
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if let Some(slot) = slot {
            let Some(bucket) = self.buckets.get((slot % self.len()) as usize) else {
                return;
            };
            if bucket.slot.load(Ordering::Acquire) != slot {
                // The slot has left the window (or is leaving it): the retry is back.
                return;
            }
            let mut seen = bucket.withdrawals.load(Ordering::Acquire);
            loop {
                if !is_of(seen, slot) || seen & COUNT_MASK == 0 {
                    return; // the slot left the window meanwhile: the retry is back
                }
                match bucket.withdrawals.compare_exchange_weak(
                    seen,
                    seen - 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(now) => seen = now,
                }
            }
        }
        // Out of its slot first, then out of the ledger: the ledger never counts fewer
        // retries than the slots.
        let _ = self
            .ledger
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |ledger| {
                (ledger & SPENT_MASK > 0).then(|| ledger - 1)
            });
    }

    /// Takes every slot that has left the window at `slot` out, and reads the ledger
    /// consistently with the buckets: returns the ledger word, the slot to decide at
    /// (`slot`, or a later one another thread has seen), and the retries in the window.
    fn settled_ledger(&self, mut slot: u64) -> (u64, u64, u64) {
        loop {
            slot = slot.max(self.current_slot());
            self.expire_old(slot);
            let ledger = self.ledger.load(Ordering::Acquire);
            // A slot is taken out of the window only after `current` has reached the slot
            // that pushes it out; so if no later slot is seen here, every slot taken out of
            // the ledger read above was out of the window at `slot` too.
            let seen = self.current_slot();
            if seen <= slot {
                return (ledger, slot, ledger & SPENT_MASK);
            }
            slot = seen;
        }
    }

    /// The credit of the window at `slot`, in [`UNIT`]s: the floor, plus `ratio` of each
    /// request counted in the window's slots.
    fn credit(&self, slot: u64) -> i64 {
        let n = self.len();
        let mut deposits = 0u64;
        for bucket in self.buckets.iter() {
            let held = bucket.slot.load(Ordering::Acquire);
            if held == EMPTY || held == RECYCLING || held > slot || held.saturating_add(n) <= slot {
                continue;
            }
            let counts = bucket.deposits.load(Ordering::Acquire);
            // Another tag: the bucket is being moved to another slot; skip it (safe).
            if is_of(counts, held) {
                deposits += counts & COUNT_MASK;
            }
        }
        let credit = i64::try_from(deposits)
            .unwrap_or(i64::MAX)
            .saturating_mul(self.credit_per_deposit);
        self.reserve.saturating_add(credit)
    }

    /// The bucket of `slot` and the slot it holds: `slot`, after moving the bucket to it
    /// if it held an earlier slot. If the bucket holds a later slot already (this thread
    /// read the clock a whole window ago): that bucket and slot if `late_is_later`, else
    /// `None`.
    fn bucket(&self, slot: u64, late_is_later: bool) -> Option<(&Bucket, u64)> {
        let index = slot % self.len();
        let bucket = &**self.buckets.get(index as usize)?;
        let mut spins = 0u32;
        loop {
            let held = bucket.slot.load(Ordering::Acquire);
            if held == slot {
                return Some((bucket, slot));
            }
            if held == RECYCLING {
                // Another thread is moving this bucket: a handful of instructions.
                spins += 1;
                if spins < 64 {
                    crate::sync::spin_loop();
                } else {
                    crate::sync::yield_now();
                }
                continue;
            }
            if held != EMPTY && held > slot {
                return late_is_later.then_some((bucket, held));
            }
            if bucket
                .slot
                .compare_exchange(held, RECYCLING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let deposits = bucket.deposits.swap(word(slot, 0), Ordering::AcqRel) & COUNT_MASK;
                let withdrawals =
                    bucket.withdrawals.swap(word(slot, 0), Ordering::AcqRel) & COUNT_MASK;
                // `current` reaches `slot` before the ledger shows the old slot gone (see
                // `settled_ledger`), and only once the bucket's counts belong to `slot`
                // (so that a deposit that finds its bucket through `current` finds it
                // ready).
                self.current
                    .fetch_max((slot << INDEX_BITS) | index, Ordering::AcqRel);
                self.settled_deposits.fetch_add(deposits, Ordering::AcqRel);
                if held != EMPTY && (deposits > 0 || withdrawals > 0) {
                    // Its retries come back; a new generation makes any withdrawal that
                    // summed this slot's requests look again.
                    let _ =
                        self.ledger
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |ledger| {
                                let spent = (ledger & SPENT_MASK).saturating_sub(withdrawals);
                                Some((ledger & !SPENT_MASK).wrapping_add(GENERATION) | spent)
                            });
                }
                bucket.slot.store(slot, Ordering::Release);
                return Some((bucket, slot));
            }
        }
    }

    /// Moves every bucket whose slot has left the window at `slot` to the latest slot it
    /// serves that is not after `slot`, so that the ledger holds only the window's
    /// retries (buckets of idle slots are not moved by deposits, so they are swept here).
    fn expire_old(&self, slot: u64) {
        let n = self.len();
        for bucket in self.buckets.iter() {
            let held = bucket.slot.load(Ordering::Acquire);
            if held == EMPTY || held == RECYCLING || held.saturating_add(n) > slot {
                continue;
            }
            let latest = slot - (slot - held) % n;
            let _ = self.bucket(latest, true);
        }
    }
}

/// Configures a [`RetryBudget`]; [`build`](Self::build) checks every value.
#[derive(Debug, Clone)]
pub struct RetryBudgetBuilder {
    ratio: f64,
    min_per_sec: f64,
    window: Duration,
    buckets: u32,
}

impl Default for RetryBudgetBuilder {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 10.0,
            window: Duration::from_secs(10),
            buckets: 10,
        }
    }
}

impl RetryBudgetBuilder {
    /// Retries per request deposited, 0.0 to 10.0 in steps of 0.001 (default 0.2).
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Retries per second allowed whatever the traffic, at least 0.0 (default 10.0).
    pub fn min_per_sec(mut self, retries: f64) -> Self {
        self.min_per_sec = retries;
        self
    }

    /// How long deposits and withdrawals count (default 10 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How many time slots the window is kept in (default 10).
    pub fn buckets(mut self, buckets: u32) -> Self {
        self.buckets = buckets;
        self
    }

    /// Check every value and build the budget.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        let err = |field, reason: String| Err(ConfigError::new("retry_budget", field, reason));
        if !(0.0..=10.0).contains(&self.ratio) {
            return err(
                "ratio",
                format!("must be within 0.0..=10.0 (got {})", self.ratio),
            );
        }
        let credit = self.ratio * UNIT as f64;
        if (credit - credit.round()).abs() > 1e-6 {
            return err(
                "ratio",
                format!("must be a multiple of 0.001 (got {})", self.ratio),
            );
        }
        if !(self.min_per_sec.is_finite() && self.min_per_sec >= 0.0) {
            return err(
                "min_per_sec",
                format!("must be a finite number >= 0.0 (got {})", self.min_per_sec),
            );
        }
        if !(1..=MAX_BUCKETS).contains(&self.buckets) {
            return err(
                "buckets",
                format!("must be between 1 and {MAX_BUCKETS} (got {})", self.buckets),
            );
        }
        let slot_nanos = duration_to_nanos(self.window) / u64::from(self.buckets);
        if slot_nanos < 1_000_000 {
            return err(
                "window",
                format!(
                    "its buckets must be at least 1ms long (got {:?} in {} buckets)",
                    self.window, self.buckets
                ),
            );
        }
        let reserve = self.min_per_sec * self.window.as_secs_f64() * UNIT as f64;
        if reserve >= i64::MAX as f64 / 2.0 {
            return err(
                "min_per_sec",
                format!(
                    "{} retries per second over {:?} is more than the budget can count",
                    self.min_per_sec, self.window
                ),
            );
        }
        Ok(self.assemble(slot_nanos, reserve.floor() as i64, credit.round() as i64))
    }

    /// Build from checked values.
    fn assemble(self, slot_nanos: u64, reserve: i64, credit_per_deposit: i64) -> RetryBudget {
        let clock = Clock::new();
        // The bucket of the slot the budget is built in holds it from the start, so that
        // the first deposits find it through `current`.
        let first = clock.now() / slot_nanos;
        let index = first % u64::from(self.buckets);
        RetryBudget {
            inner: Arc::new(Inner {
                clock,
                slot_nanos,
                current: AtomicU64::new((first << INDEX_BITS) | index),
                buckets: (0..u64::from(self.buckets))
                    .map(|i| CachePadded::new(Bucket::new(if i == index { first } else { EMPTY })))
                    .collect(),
                ledger: CachePadded::new(AtomicU64::new(0)),
                reserve,
                credit_per_deposit,
                settled_deposits: AtomicU64::new(0),
                withdrawals: AtomicU64::new(0),
                denials: AtomicU64::new(0),
                config: BudgetConfig {
                    ratio: self.ratio,
                    min_per_sec: self.min_per_sec,
                    window: self.window,
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor_only(retries_per_sec: f64) -> RetryBudget {
        RetryBudget::builder()
            .ratio(0.0)
            .min_per_sec(retries_per_sec)
            .window(Duration::from_secs(10))
            .buckets(10)
            .build()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_refund_in_the_same_slot_gives_the_retry_back() {
        let budget = floor_only(0.1); // one retry per window
        let taken = budget.withdraw().unwrap();
        assert!(budget.withdraw().is_none());
        assert_eq!(budget.snapshot().withdrawals, 1);
        budget.refund(taken);
        let s = budget.snapshot();
        assert_eq!((s.balance, s.withdrawals, s.denials), (1.0, 0, 1));
        assert!(
            budget.try_withdraw(),
            "the refunded retry can be taken again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refund_from_an_earlier_slot_of_the_window_gives_the_retry_back() {
        let budget = floor_only(0.1);
        let taken = budget.withdraw().unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(budget.snapshot().balance, 0.0);
        budget.refund(taken);
        assert_eq!(budget.snapshot().balance, 1.0);
        // The refunded retry does not come back a second time when its slot leaves.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(budget.snapshot().balance, 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refund_after_its_slot_left_the_window_adds_nothing() {
        let budget = floor_only(0.1);
        let taken = budget.withdraw().unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(budget.snapshot().balance, 1.0, "the retry came back");
        budget.refund(taken);
        let s = budget.snapshot();
        assert_eq!((s.balance, s.withdrawals), (1.0, 0), "not twice");
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refund_while_newer_retries_are_counted_takes_only_its_own_back() {
        let budget = floor_only(0.3); // three retries per window
        let first = budget.withdraw().unwrap();
        tokio::time::advance(Duration::from_secs(3)).await;
        let _second = budget.withdraw().unwrap();
        budget.refund(first);
        assert_eq!(budget.snapshot().balance, 2.0);
        // The second retry's slot leaves at 13 s; the first one's (refunded) at 10 s.
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(budget.snapshot().balance, 2.0);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(budget.snapshot().balance, 3.0);
    }

    #[test]
    fn withdrawals_and_refunds_racing_keep_the_ledger_exact() {
        // A window far longer than the test: nothing expires while it runs, so the ledger
        // must balance exactly: floor + credit - retries kept.
        let budget = RetryBudget::builder()
            .ratio(0.5)
            .min_per_sec(0.0)
            .window(Duration::from_secs(3600))
            .build()
            .unwrap();
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let budget = &budget;
                scope.spawn(move || {
                    for i in 0..20_000u64 {
                        budget.deposit();
                        if let Some(taken) = budget.withdraw() {
                            if (i + t) % 2 == 0 {
                                budget.refund(taken);
                            }
                        }
                    }
                });
            }
        });
        let s = budget.snapshot();
        assert_eq!(s.deposits, 80_000);
        assert!(s.withdrawals > 1_000, "{s:?}");
        assert_eq!(s.balance, 0.5 * 80_000.0 - s.withdrawals as f64, "{s:?}");
        assert!(s.balance >= 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_deposit_lands_in_the_slot_of_its_clock_read() {
        let budget = RetryBudget::builder()
            .ratio(1.0)
            .min_per_sec(0.0)
            .window(Duration::from_secs(10))
            .buckets(10)
            .build()
            .unwrap();
        let mut cache = SlotCache::new();
        budget.deposit_cached(&mut cache); // slot 0
        tokio::time::advance(Duration::from_millis(999)).await;
        budget.deposit_cached(&mut cache); // still slot 0, from the cache
        tokio::time::advance(Duration::from_millis(1)).await;
        budget.deposit_cached(&mut cache); // slot 1
        assert_eq!(budget.snapshot().balance, 3.0);
        tokio::time::advance(Duration::from_secs(9)).await; // slot 0 leaves
        assert_eq!(budget.snapshot().balance, 1.0);
        budget.deposit_cached(&mut cache); // slot 10, in the bucket slot 0 had
        tokio::time::advance(Duration::from_secs(1)).await; // slot 1 leaves
        let s = budget.snapshot();
        assert_eq!((s.balance, s.deposits), (1.0, 4));
    }
}

// Loom models of the ledger: one slot's withdrawals, refunds and deposits never overdraw
// and balance exactly; a slot leaving the window during a withdrawal, or racing a refund,
// keeps the ledger equal to the buckets. `RUSTFLAGS="--cfg seawall_loom"`: see
// `crate::sync`.
#[cfg(all(test, seawall_loom))]
mod loom_tests;
