//! The retry budget: arithmetic at the ratio and at the floor, the sliding window, and
//! no overdraw under concurrency.
#![cfg(feature = "retry")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seawall::retry::budget::RetryBudget;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test(start_paused = true)]
async fn deposits_fund_a_ratio_of_retries() {
    let budget = RetryBudget::builder()
        .ratio(0.2)
        .min_per_sec(0.0)
        .build()
        .unwrap();
    assert!(!budget.try_withdraw(), "nothing deposited, no floor");
    for _ in 0..10 {
        budget.deposit();
    }
    assert_eq!(budget.snapshot().balance, 2.0);
    assert!(budget.try_withdraw());
    assert!(budget.try_withdraw());
    assert!(!budget.try_withdraw());
    // Fractions accumulate: four more deposits fund 0.8 of a retry, a fifth makes one.
    for _ in 0..4 {
        budget.deposit();
    }
    assert!(!budget.try_withdraw());
    budget.deposit();
    assert!(budget.try_withdraw());
    let s = budget.snapshot();
    assert_eq!((s.deposits, s.withdrawals, s.denials), (15, 3, 3));
    assert!(s.balance.abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn the_floor_allows_min_per_sec_retries_over_the_window() {
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_sec(10.0)
        .window(secs(10))
        .build()
        .unwrap();
    let taken = (0..150).filter(|_| budget.try_withdraw()).count();
    assert_eq!(taken, 100, "10 per second over 10 s");
    // Still inside the window: nothing comes back.
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert!(!budget.try_withdraw());
    // The slot of those retries leaves the window: they come back, all at once.
    tokio::time::advance(Duration::from_millis(1)).await;
    let taken = (0..150).filter(|_| budget.try_withdraw()).count();
    assert_eq!(taken, 100);
}

#[tokio::test(start_paused = true)]
async fn credit_expires_with_its_deposits() {
    let budget = RetryBudget::builder()
        .ratio(0.5)
        .min_per_sec(0.0)
        .window(secs(10))
        .buckets(10)
        .build()
        .unwrap();
    for _ in 0..10 {
        budget.deposit(); // slot 0: 5 retries of credit
    }
    tokio::time::advance(secs(5)).await;
    for _ in 0..4 {
        budget.deposit(); // slot 5: 2 more
    }
    assert_eq!(budget.snapshot().balance, 7.0);
    assert!(budget.try_withdraw()); // 6 left; this retry counts in slot 5
    tokio::time::advance(secs(5)).await; // slot 0 leaves the window
    assert_eq!(budget.snapshot().balance, 1.0, "7 - 1 taken - 5 expired");
    tokio::time::advance(secs(5)).await; // slot 5 leaves: its 2 credit go, its retry comes back
    assert_eq!(budget.snapshot().balance, 0.0);
    // A long idle gap expires everything, however many windows pass.
    budget.deposit();
    tokio::time::advance(secs(3600)).await;
    assert_eq!(budget.snapshot().balance, 0.0);
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_budget() {
    let budget = RetryBudget::builder()
        .ratio(1.0)
        .min_per_sec(0.0)
        .build()
        .unwrap();
    let other = budget.clone();
    budget.deposit();
    assert!(other.try_withdraw());
    assert!(!budget.try_withdraw());
    assert_eq!(budget.snapshot().withdrawals, 1);
}

#[test]
fn concurrent_withdrawals_never_overdraw() {
    // A window far longer than the test, so nothing expires while it runs.
    let budget = RetryBudget::builder()
        .ratio(0.2)
        .min_per_sec(0.0)
        .window(secs(3600))
        .build()
        .unwrap();
    let threads = 8;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..10_000 {
                    budget.deposit();
                }
            });
        }
    });
    // 80 000 deposits at 0.2: exactly 16 000 retries, however the threads race for them.
    let taken = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let taken = taken.clone();
            let budget = &budget;
            scope.spawn(move || {
                for _ in 0..5_000 {
                    if budget.try_withdraw() {
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let s = budget.snapshot();
    assert_eq!(taken.load(Ordering::Relaxed), 16_000);
    assert_eq!(
        (s.deposits, s.withdrawals, s.denials),
        (80_000, 16_000, 24_000)
    );
    assert_eq!(s.balance, 0.0);
}

#[test]
fn withdrawals_racing_deposits_take_exactly_the_credit() {
    // Deposits land while withdrawals race for their credit: whatever the interleaving,
    // the retries taken during the race plus those left afterwards are exactly the credit
    // of all the deposits (nothing expires in this window).
    let budget = RetryBudget::builder()
        .ratio(0.3)
        .min_per_sec(0.0)
        .window(secs(3600))
        .build()
        .unwrap();
    let taken = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (budget, taken) = (&budget, &taken);
            scope.spawn(move || {
                for i in 0..10_000u64 {
                    if (i + t) % 2 == 0 {
                        budget.deposit();
                    } else if budget.try_withdraw() {
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let during = taken.load(Ordering::Relaxed);
    let after = std::iter::from_fn(|| budget.try_withdraw().then_some(()))
        .take(100_000)
        .count() as u64;
    let s = budget.snapshot();
    assert_eq!(s.deposits, 40_000);
    assert_eq!(during + after, 12_000, "0.3 x 40 000, during {during}");
    assert_eq!((s.withdrawals, s.balance), (12_000, 0.0));
}

#[test]
fn credit_that_left_the_window_is_never_spent_by_a_racing_withdrawal() {
    // Deposits only in the first 10 ms slot of a 20 ms window, then threads withdraw as
    // fast as they can until long after that slot has left. The credit never renews, so
    // however the withdrawals race with the slot leaving (and with each other), at most
    // the credit of those deposits is ever taken, and at the end nothing is left. No
    // assertion depends on timing.
    let budget = RetryBudget::builder()
        .ratio(0.5)
        .min_per_sec(0.0)
        .window(Duration::from_millis(20))
        .buckets(2)
        .build()
        .unwrap();
    for _ in 0..1_000 {
        budget.deposit();
    }
    let started = tokio::time::Instant::now();
    let taken = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let (budget, taken) = (&budget, &taken);
            scope.spawn(move || {
                while started.elapsed() < Duration::from_millis(60) {
                    if budget.try_withdraw() {
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let taken = taken.load(Ordering::Relaxed);
    assert!(taken <= 500, "took {taken} retries on 500 of credit");
    let s = budget.snapshot();
    assert_eq!((s.withdrawals, s.balance), (taken, 0.0), "{s:?}");
    assert!(!budget.try_withdraw());
}

#[test]
fn deposits_and_withdrawals_racing_stay_within_the_budget() {
    let budget = RetryBudget::builder()
        .ratio(0.1)
        .min_per_sec(1.0)
        .window(secs(3600))
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let budget = &budget;
            scope.spawn(move || {
                for i in 0..20_000 {
                    if (i + t) % 3 == 0 {
                        let _ = budget.try_withdraw();
                    } else {
                        budget.deposit();
                    }
                }
            });
        }
    });
    let s = budget.snapshot();
    // The ledger balances exactly: floor + credit - withdrawals.
    let expected = 3600.0 + 0.1 * s.deposits as f64 - s.withdrawals as f64;
    assert!((s.balance - expected).abs() < 1e-6, "{s:?}");
    assert!(s.balance >= 0.0);
    let attempts = (0..8u64)
        .map(|t| (0..20_000u64).filter(|i| (i + t) % 3 == 0).count() as u64)
        .sum::<u64>();
    assert_eq!(
        s.withdrawals + s.denials,
        attempts,
        "every attempt counted once"
    );
}

#[test]
fn every_bad_value_names_its_field() {
    let b = RetryBudget::builder;
    for (builder, field) in [
        (b().ratio(-0.1), "ratio"),
        (b().ratio(10.5), "ratio"),
        (b().ratio(f64::NAN), "ratio"),
        (b().ratio(0.0001), "ratio"),
        (b().min_per_sec(-1.0), "min_per_sec"),
        (b().min_per_sec(f64::INFINITY), "min_per_sec"),
        (b().min_per_sec(1e300), "min_per_sec"),
        (b().buckets(0), "buckets"),
        (b().buckets(1_001), "buckets"),
        (b().window(Duration::ZERO), "window"),
        (b().window(Duration::from_millis(5)).buckets(10), "window"),
    ] {
        let debug = format!("{builder:?}");
        let err = builder.build().unwrap_err();
        assert_eq!(
            (err.component(), err.field()),
            ("retry_budget", field),
            "{debug}"
        );
    }
    let defaults = b().build().unwrap().snapshot();
    assert_eq!(defaults.balance, 100.0, "10/s over 10 s");
}

#[test]
fn rotating_buckets_under_threads_expire_every_count_exactly_once() {
    // A 10 ms window in 1 ms buckets: the threads below race through many rotations.
    // No assertion depends on timing: once everything has expired, the ledger must hold
    // exactly the floor again, whatever the interleaving.
    let budget = RetryBudget::builder()
        .ratio(0.3)
        .min_per_sec(100.0) // a floor of 1 retry per 10 ms window
        .window(Duration::from_millis(10))
        .buckets(10)
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let budget = &budget;
            scope.spawn(move || {
                let mut i = 0u64;
                while started.elapsed() < Duration::from_millis(150) {
                    if (i + t) % 4 == 0 {
                        let _ = budget.try_withdraw();
                    } else {
                        budget.deposit();
                    }
                    i += 1;
                }
            });
        }
    });
    // Wait (without sleeping the thread) until every slot has left the window.
    let idle = tokio::time::Instant::now();
    while idle.elapsed() < Duration::from_millis(30) {
        std::hint::spin_loop();
    }
    let s = budget.snapshot();
    assert!(
        s.deposits > 1_000 && s.withdrawals > 10,
        "the test must exercise the budget: {s:?}"
    );
    assert_eq!(
        s.balance, 1.0,
        "all credit expired and every retry came back: {s:?}"
    );
}
