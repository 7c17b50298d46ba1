//! What one policy costs in memory, and that policies built and dropped, in waves or all
//! at once, leave the live heap where it started.

// Each test holds `serial()` for its whole run on purpose, awaits included: it runs on
// its own current-thread runtime, and no other test may allocate meanwhile.
#![allow(clippy::await_holding_lock)]

use std::convert::Infallible;
use std::time::Duration;

use seawall::policy::Policy;
use tower::{Layer, ServiceExt};

use crate::{assert_heap_within, live_bytes, serial};

/// The live heap bytes of one `build()`, averaged over `count` kept at once.
fn bytes_each<T>(count: usize, build: impl Fn() -> T) -> i64 {
    let mut kept = Vec::with_capacity(count);
    let before = live_bytes();
    for _ in 0..count {
        kept.push(build());
    }
    let grown = live_bytes() - before;
    drop(kept);
    grown / count as i64
}

fn default_policy() -> Policy {
    Policy::builder("payments").build().unwrap()
}

fn hedging_policy() -> Policy {
    Policy::builder("search")
        .hedge(|hedge| hedge.percentile(0.95))
        .build()
        .unwrap()
}

/// The measured figures (see the report printed by the test), with a little room: the
/// bounds catch a regression, not the last few bytes.
const DEFAULT_POLICY_BYTES: i64 = 7_680;
const HEDGE_STAGE_BYTES: i64 = 1_536;
/// A hedging policy in use, whose latencies span five powers of two: five octaves of the
/// histogram (768 bytes each) on top of the policy, plus what the runtime keeps from the
/// calls (its timer and task slabs: about 500 bytes more in a release build).
const HEDGE_IN_USE_BYTES: i64 = 5 * 768 + 1024;

#[tokio::test(start_paused = true)]
async fn bytes_per_policy_default_and_hedging() {
    let _serial = serial();
    // Once for whatever is initialised on first use (metrics and tracing callsites).
    drop((default_policy(), hedging_policy()));

    let default = bytes_each(100, default_policy);
    let hedging = bytes_each(100, hedging_policy);
    println!("bytes per policy: default {default}, with hedging {hedging}");
    assert!(
        default <= DEFAULT_POLICY_BYTES,
        "default policy: {default} bytes"
    );
    assert!(
        hedging - default <= HEDGE_STAGE_BYTES,
        "the hedge stage adds {} bytes",
        hedging - default
    );

    // In use: the histogram allocates the octaves its latencies reach, and no more. (No
    // bulkhead: the calls are all in flight at once.)
    let policy = Policy::builder("search")
        .hedge(|hedge| hedge.percentile(0.95))
        .without_bulkhead()
        .build()
        .unwrap();
    let svc = policy.layer(tower::service_fn(|ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, Infallible>(ms)
    }));
    // 1 to 15 ms: five octaves, from 512..1024 µs (1 ms) to 8192..16384 µs.
    let before = live_bytes();
    let calls = (0..1_000u64).map(|i| svc.clone().oneshot(1 + i % 15));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let in_use = live_bytes() - before;
    println!("a hedging policy after 1000 calls of 1 to 15 ms: {in_use:+} bytes");
    assert!(in_use <= HEDGE_IN_USE_BYTES, "{in_use} bytes");
}

#[tokio::test(start_paused = true)]
async fn a_million_policies_built_and_dropped_in_waves_leave_nothing() {
    let _serial = serial();
    const WAVE: usize = 10_000;
    const WAVES: usize = scaled!(100);
    let wave = || {
        let mut policies = Vec::with_capacity(WAVE);
        for i in 0..WAVE {
            policies.push(if i % 2 == 0 {
                default_policy()
            } else {
                hedging_policy()
            });
        }
        drop(policies);
    };
    wave();
    let baseline = live_bytes();
    for _ in 1..WAVES {
        wave();
        assert_heap_within("policies, after a wave", baseline, 16 << 10);
    }
    assert_heap_within("a million policies built and dropped", baseline, 16 << 10);
}

#[tokio::test(start_paused = true)]
async fn a_spike_of_policies_in_use_at_once_leaves_nothing() {
    let _serial = serial();
    const SPIKE: u64 = 10_000;
    let spike = || async {
        // Every policy makes a call, and all the calls are in flight at once.
        let calls: Vec<_> = (0..SPIKE)
            .map(|i| {
                let policy = if i % 2 == 0 {
                    default_policy()
                } else {
                    hedging_policy()
                };
                policy
                    .layer(tower::service_fn(|ms: u64| async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok::<_, Infallible>(ms)
                    }))
                    .oneshot(1 + i % 20)
            })
            .collect();
        for result in futures::future::join_all(calls).await {
            result.unwrap();
        }
    };
    spike().await;
    let baseline = live_bytes();
    for _ in 0..3 {
        spike().await;
        assert_heap_within("a spike of policies in use", baseline, 16 << 10);
    }
}
