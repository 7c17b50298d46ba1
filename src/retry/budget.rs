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
//! The balance is one atomic, in thousandths of a retry. A withdrawal takes a whole retry
//! with a compare-and-swap that never lets the balance fall below zero, so however many
//! threads withdraw at once, no two of them can spend the same retry: the budget is never
//! overdrawn. Deposits and withdrawals are also counted in the bucket of their time slot;
//! when a slot leaves the window its counts are taken out of the balance (a deposit's
//! credit expires, a withdrawal's retry comes back). A bucket is recycled by one thread
//! (it claims the bucket, takes its counts out with a swap, then publishes the new time
//! slot, while others wait for the few instructions this takes), so every count expires
//! exactly once and never early. The one inexactness: a thread delayed for a whole window
//! between reading the clock and counting has its count land in a later slot, so it
//! expires later (a deposit's credit lasts longer by at most one slot per such thread).

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::sync::CachePadded;
use crate::time::{duration_to_nanos, Clock};

/// Thousandths of a retry: the unit of the balance.
const UNIT: i64 = 1_000;
/// A bucket that has never held a time slot.
const EMPTY: u64 = u64::MAX;
/// A bucket one thread is moving to a new time slot.
const RECYCLING: u64 = u64::MAX - 1;
/// The most buckets a window may have (a withdrawal looks at all of them).
pub(crate) const MAX_BUCKETS: u32 = 1_000;

#[derive(Debug)]
struct Bucket {
    slot: AtomicU64,
    deposits: AtomicU64,
    withdrawals: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    clock: Clock,
    slot_nanos: u64,
    buckets: Box<[CachePadded<Bucket>]>,
    balance: CachePadded<AtomicI64>,
    credit_per_deposit: i64,
    /// Deposits no longer in a bucket (expired, or too late for theirs): the total is
    /// these plus the buckets', so a deposit costs no extra counter.
    settled_deposits: AtomicU64,
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

/// The state of a [`RetryBudget`], from [`RetryBudget::snapshot`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BudgetSnapshot {
    /// Retries that may be taken now (fractional: deposits add `ratio` each).
    pub balance: f64,
    /// Requests deposited since the budget was built. (Summed over the buckets: a
    /// snapshot taken while a bucket rotates may miss that bucket's deposits.)
    pub deposits: u64,
    /// Retries taken since the budget was built.
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
    #[inline]
    pub fn deposit(&self) {
        let inner = &*self.inner;
        let slot = inner.slot();
        match inner.bucket(slot, false) {
            Some(bucket) => {
                bucket.deposits.fetch_add(1, Ordering::AcqRel);
                inner
                    .balance
                    .fetch_add(inner.credit_per_deposit, Ordering::AcqRel);
            }
            None => {
                inner.settled_deposits.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Take one retry if the budget allows it. A refusal is counted as a denial.
    pub fn try_withdraw(&self) -> bool {
        let inner = &*self.inner;
        let slot = inner.slot();
        inner.expire_old(slot);
        let taken = inner
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |balance| {
                (balance >= UNIT).then_some(balance - UNIT)
            })
            .is_ok();
        if !taken {
            inner.denials.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // Counted in its slot only after it is taken: if this slot expires before the
        // count lands, the count lands in a later slot and comes back later, never early.
        if let Some(bucket) = inner.bucket(slot, true) {
            bucket.withdrawals.fetch_add(1, Ordering::AcqRel);
        }
        inner.withdrawals.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The balance and the counters now.
    pub fn snapshot(&self) -> BudgetSnapshot {
        let inner = &*self.inner;
        inner.expire_old(inner.slot());
        BudgetSnapshot {
            balance: inner.balance.load(Ordering::Acquire) as f64 / UNIT as f64,
            deposits: inner.settled_deposits.load(Ordering::Acquire)
                + inner
                    .buckets
                    .iter()
                    .map(|b| b.deposits.load(Ordering::Acquire))
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

impl Inner {
    fn slot(&self) -> u64 {
        self.clock.now() / self.slot_nanos
    }

    /// The bucket of `slot`, recycled to it if it still holds an earlier slot. For a
    /// thread that read the clock so long ago that the bucket has moved past its slot:
    /// a withdrawal is counted in the later slot (it comes back later: safe), a deposit
    /// is not counted (its credit would last longer than it should).
    fn bucket(&self, slot: u64, late_is_later: bool) -> Option<&Bucket> {
        let bucket = &*self.buckets[(slot % self.buckets.len() as u64) as usize];
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
                return late_is_later.then_some(bucket);
            }
            if bucket
                .slot
                .compare_exchange(held, RECYCLING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let deposits = bucket.deposits.swap(0, Ordering::AcqRel);
                let withdrawals = bucket.withdrawals.swap(0, Ordering::AcqRel);
                self.settled_deposits.fetch_add(deposits, Ordering::AcqRel);
                if held != EMPTY {
                    self.expire(deposits, withdrawals);
                }
                bucket.slot.store(slot, Ordering::Release);
                return Some(bucket);
            }
        }
    }

    /// A slot's counts leave the window: its deposits' credit goes, its retries come back.
    fn expire(&self, deposits: u64, withdrawals: u64) {
        let credit = i64::try_from(deposits)
            .unwrap_or(i64::MAX)
            .saturating_mul(self.credit_per_deposit);
        let returned = i64::try_from(withdrawals)
            .unwrap_or(i64::MAX)
            .saturating_mul(UNIT);
        self.balance
            .fetch_add(returned.saturating_sub(credit), Ordering::AcqRel);
    }

    /// Expire every bucket whose slot has left the window, so that the balance a
    /// withdrawal sees holds only the window's counts (buckets of idle slots are not
    /// recycled by deposits, so they are swept here).
    fn expire_old(&self, slot: u64) {
        let n = self.buckets.len() as u64;
        for bucket in self.buckets.iter() {
            let held = bucket.slot.load(Ordering::Acquire);
            if held == EMPTY || held == RECYCLING || held + n > slot {
                continue;
            }
            // The latest slot this bucket serves that is not after `slot`.
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
        RetryBudget {
            inner: Arc::new(Inner {
                clock: Clock::new(),
                slot_nanos,
                buckets: (0..self.buckets)
                    .map(|_| {
                        CachePadded::new(Bucket {
                            slot: AtomicU64::new(EMPTY),
                            deposits: AtomicU64::new(0),
                            withdrawals: AtomicU64::new(0),
                        })
                    })
                    .collect(),
                balance: CachePadded::new(AtomicI64::new(reserve)),
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
