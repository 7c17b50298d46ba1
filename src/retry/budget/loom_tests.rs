//! Loom models of the retry budget: `RUSTFLAGS="--cfg seawall_loom"` (see `crate::sync`).
//!
//! Time stands still in the models (see [`crate::sync::loom_model`]); a model moves a
//! thread's clock by calling the `*_at` entry points with a slot of its choosing, as a
//! thread that read the clock at that time would.

use super::*;
use crate::sync::loom_model;
use loom::sync::atomic::AtomicU64 as Counter;
use loom::thread;

/// One slot per hour: nothing in a model moves to another slot unless it says so.
const SLOT: Duration = Duration::from_secs(3600);

fn budget(ratio: f64, buckets: u32) -> RetryBudget {
    RetryBudget::builder()
        .ratio(ratio)
        .min_per_sec(0.0)
        .window(SLOT * buckets)
        .buckets(buckets)
        .build()
        .unwrap()
}

fn nanos(slot: u64) -> u64 {
    slot * duration_to_nanos(SLOT)
}

/// The retries the ledger counts in the window.
fn spent(inner: &Inner) -> u64 {
    inner.ledger.load(Ordering::SeqCst) & SPENT_MASK
}

/// The retries the buckets in the window at `slot` count.
fn counted(inner: &Inner, slot: u64) -> u64 {
    inner
        .buckets
        .iter()
        .filter_map(|bucket| {
            let held = bucket.slot.load(Ordering::SeqCst);
            let live = held != EMPTY && held <= slot && held + inner.len() > slot;
            let counts = bucket.withdrawals.load(Ordering::SeqCst);
            (live && is_of(counts, held)).then_some(counts & COUNT_MASK)
        })
        .sum()
}

/// Three threads in one slot: one takes a retry and gives it back, one takes a retry and
/// keeps it, one deposits twice. With two requests deposited before (a ratio of 0.5: one
/// retry) no retry is ever taken that the requests deposited so far do not fund, and at
/// the end the ledger, the buckets and the counters agree exactly: balance = credit −
/// retries kept.
#[test]
fn withdrawals_refunds_and_deposits_in_one_slot_never_overdraw_and_balance_exactly() {
    loom_model(2, || {
        let budget = budget(0.5, 1);
        budget.inner.deposit_at(0);
        budget.inner.deposit_at(0);
        let deposited = std::sync::Arc::new(Counter::new(2));
        let held = std::sync::Arc::new(Counter::new(0));
        let take = |budget: &RetryBudget, deposited: &Counter, held: &Counter| {
            let slot = budget.inner.withdraw_at(0)?;
            let out = held.fetch_add(1, Ordering::SeqCst) + 1;
            // Deposits count in `deposited` before they land: this bound is loose, never
            // a false alarm.
            let funded = deposited.load(Ordering::SeqCst) / 2;
            assert!(out <= funded, "{out} retries out, {funded} funded");
            Some(slot)
        };
        let refunder = {
            let (budget, deposited, held) = (budget.clone(), deposited.clone(), held.clone());
            thread::spawn(move || {
                if let Some(slot) = take(&budget, &deposited, &held) {
                    held.fetch_sub(1, Ordering::SeqCst); // before the refund: never a false alarm
                    budget.refund(Withdrawal { slot });
                }
            })
        };
        let keeper = {
            let (budget, deposited, held) = (budget.clone(), deposited.clone(), held.clone());
            thread::spawn(move || take(&budget, &deposited, &held).is_some())
        };
        let depositor = {
            let (budget, deposited) = (budget.clone(), deposited.clone());
            thread::spawn(move || {
                for _ in 0..2 {
                    deposited.fetch_add(1, Ordering::SeqCst);
                    budget.inner.deposit_at(0);
                }
            })
        };
        refunder.join().unwrap();
        let kept = u64::from(keeper.join().unwrap());
        depositor.join().unwrap();
        let inner = &*budget.inner;
        assert_eq!(spent(inner), kept, "the ledger");
        assert_eq!(counted(inner, 0), kept, "the buckets");
        let s = budget.snapshot();
        assert_eq!((s.deposits, s.withdrawals), (4, kept));
        assert_eq!(s.balance, 2.0 - kept as f64);
    });
}

/// A window of one slot moves on while a thread that read the clock in the old slot
/// withdraws, and a thread in the new slot deposits and withdraws: however the bucket's
/// move, the ledger's generation and the two withdrawals interleave, no retry is lost or
/// counted twice (the ledger equals the buckets of the window), the new slot's retry is
/// taken only if the window has credit for it, and the deposits are all counted.
#[test]
fn a_slot_leaving_the_window_during_a_withdrawal_keeps_the_ledger_exact() {
    loom_model(3, || {
        let budget = budget(1.0, 1);
        budget.inner.deposit_at(0); // one retry, in slot 0
        let stale = {
            let budget = budget.clone();
            thread::spawn(move || budget.inner.withdraw_at(0))
        };
        let fresh = {
            let budget = budget.clone();
            thread::spawn(move || {
                budget.inner.deposit_at(nanos(1)); // moves the bucket to slot 1
                budget.inner.withdraw_at(1)
            })
        };
        let stale = stale.join().unwrap();
        let fresh = fresh.join().unwrap();
        let inner = &*budget.inner;
        assert_eq!(
            spent(inner),
            counted(inner, 1),
            "the ledger and the buckets differ"
        );
        // Slot 1 funds one retry: two in it means one was taken without credit. (The old
        // slot's retry may be counted in slot 1 if its count landed after the move: it
        // comes back later, never early.)
        if let Some(slot) = fresh {
            assert_eq!(slot, Some(1));
            assert!(
                stale != Some(Some(1)),
                "slot 1 counts two retries: {stale:?}"
            );
        }
        if let Some(slot) = stale {
            assert!(slot.is_some());
        }
        assert_eq!(budget.snapshot().deposits, 2);
    });
}

/// A refund races the refunded retry's slot leaving the window: the retry comes back
/// exactly once (by the refund, or by the slot leaving), and a later slot's retry stays
/// counted.
#[test]
fn a_refund_racing_its_slot_leaving_the_window_gives_the_retry_back_once() {
    loom_model(3, || {
        let budget = budget(1.0, 2);
        budget.inner.deposit_at(0);
        let first = Withdrawal {
            slot: budget.inner.withdraw_at(0).unwrap(),
        };
        assert_eq!(first.slot, Some(0));
        budget.inner.deposit_at(nanos(1));
        assert_eq!(budget.inner.withdraw_at(1).unwrap(), Some(1));
        let refund = {
            let budget = budget.clone();
            thread::spawn(move || budget.refund(first))
        };
        let mover = {
            let budget = budget.clone();
            thread::spawn(move || budget.inner.deposit_at(nanos(2))) // slot 0 leaves
        };
        refund.join().unwrap();
        mover.join().unwrap();
        let inner = &*budget.inner;
        assert_eq!(spent(inner), 1, "only slot 1's retry is left in the window");
        assert_eq!(counted(inner, 2), 1);
        assert_eq!(budget.snapshot().withdrawals, 1);
    });
}
