//! Backoff schedules: exact values without jitter, bounds and seeded sequences with it.
#![cfg(feature = "retry")]

use std::time::Duration;

use seawall::retry::backoff::{Backoff, ExponentialBackoff, Jitter, Retrying};

const FAILED: Result<(), ()> = Err(());

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn backoff(jitter: Jitter, seed: u64) -> ExponentialBackoff {
    ExponentialBackoff::builder()
        .base(ms(10))
        .max(ms(1_000))
        .jitter(jitter)
        .seed(seed)
        .build()
        .unwrap()
}

fn delay(b: &ExponentialBackoff, retry: u32, previous: Duration) -> Duration {
    b.delay(Retrying::new(retry, previous, &FAILED))
}

#[test]
fn without_jitter_the_delays_grow_exponentially_to_the_cap() {
    let b = backoff(Jitter::None, 1);
    let delays: Vec<_> = (1..=9).map(|n| delay(&b, n, Duration::ZERO)).collect();
    assert_eq!(
        delays,
        [10, 20, 40, 80, 160, 320, 640, 1_000, 1_000].map(ms),
        "doubling from 10 ms, capped at 1 s"
    );
    // Far past the cap, and at the end of the range: still the cap, no overflow.
    assert_eq!(delay(&b, 1_000, Duration::ZERO), ms(1_000));
    assert_eq!(delay(&b, u32::MAX, Duration::ZERO), ms(1_000));
    assert_eq!(b.nominal(0), ms(10), "retry 0 is treated as the first");
}

#[test]
fn other_multipliers() {
    let b = ExponentialBackoff::builder()
        .base(ms(100))
        .max(ms(10_000))
        .multiplier(1.5)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    assert_eq!(b.nominal(3), ms(225));
    let flat = ExponentialBackoff::builder()
        .base(ms(100))
        .multiplier(1.0)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    assert!((1..50).all(|n| flat.nominal(n) == ms(100)));
}

#[test]
fn full_jitter_stays_within_zero_and_the_exponential_delay() {
    let b = backoff(Jitter::Full, 7);
    for retry in 1..=12 {
        let exp = b.nominal(retry);
        let draws: Vec<_> = (0..2_000)
            .map(|_| delay(&b, retry, Duration::ZERO))
            .collect();
        assert!(draws.iter().all(|d| *d <= exp), "retry {retry}");
        // The draws spread over the whole range: mean near half, low and high values seen.
        let mean = draws.iter().sum::<Duration>() / draws.len() as u32;
        assert!(
            mean > exp * 2 / 5 && mean < exp * 3 / 5,
            "retry {retry}: mean {mean:?}"
        );
        assert!(draws.iter().any(|d| *d < exp / 10) && draws.iter().any(|d| *d > exp * 9 / 10));
    }
}

#[test]
fn equal_jitter_stays_within_half_and_all_of_the_exponential_delay() {
    let b = backoff(Jitter::Equal, 7);
    for retry in 1..=12 {
        let exp = b.nominal(retry);
        for _ in 0..1_000 {
            let d = delay(&b, retry, Duration::ZERO);
            assert!(d >= exp / 2 && d <= exp, "retry {retry}: {d:?}");
        }
    }
}

#[test]
fn decorrelated_jitter_stays_within_the_base_and_three_times_the_previous_delay() {
    let b = backoff(Jitter::Decorrelated, 7);
    let mut previous = Duration::ZERO;
    for retry in 1..=200 {
        let d = delay(&b, retry, previous);
        let high = previous.max(ms(10)).saturating_mul(3).min(ms(1_000));
        assert!(
            d >= ms(10) && d <= high,
            "retry {retry}: {d:?} after {previous:?}"
        );
        previous = d;
    }
}

#[test]
fn the_same_seed_gives_the_same_delays_and_another_seed_others() {
    for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let run = |seed| {
            let b = backoff(jitter, seed);
            let mut previous = Duration::ZERO;
            (1..=20)
                .map(|n| {
                    previous = delay(&b, n, previous);
                    previous
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42), "{jitter:?}");
        assert_ne!(run(42), run(43), "{jitter:?}");
    }
}

#[test]
fn extreme_durations_never_panic() {
    for jitter in [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
    ] {
        let b = ExponentialBackoff::builder()
            .base(Duration::MAX)
            .max(Duration::MAX)
            .multiplier(f64::MAX)
            .jitter(jitter)
            .seed(1)
            .build()
            .unwrap();
        for retry in [1, 2, u32::MAX] {
            let _ = delay(&b, retry, Duration::MAX);
        }
        let tiny = ExponentialBackoff::builder()
            .base(Duration::from_nanos(1))
            .max(Duration::from_nanos(1))
            .jitter(jitter)
            .build()
            .unwrap();
        assert!(delay(&tiny, 5, Duration::ZERO) <= Duration::from_nanos(1));
    }
}

#[test]
fn every_bad_value_names_its_field() {
    let b = ExponentialBackoff::builder;
    for (builder, field) in [
        (b().base(Duration::ZERO), "base"),
        (b().base(ms(10)).max(ms(5)), "max"),
        (b().multiplier(0.99), "multiplier"),
        (b().multiplier(f64::NAN), "multiplier"),
        (b().multiplier(f64::INFINITY), "multiplier"),
    ] {
        let debug = format!("{builder:?}");
        let err = builder.build().unwrap_err();
        assert_eq!(
            (err.component(), err.field()),
            ("backoff", field),
            "{debug}"
        );
    }
    let defaults = b().jitter(Jitter::None).build().unwrap();
    assert_eq!(
        (defaults.nominal(1), defaults.nominal(10)),
        (ms(25), ms(250))
    );
}
