//! `Registry`: a million distinct keys, made in waves, leave the live heap and the
//! metric series where the first wave left them. Every key is new (as host names from
//! untrusted input are), so every `get` makes a policy and evicts another.

use std::time::Duration;

use seawall::policy::{Policy, Registry};
use seawall::BoxError;

use crate::{assert_heap_within, live_bytes, serial};

const WAVES: u64 = 10;
const KEYS_PER_WAVE: u64 = scaled!(100_000);
/// Room for some drift (a hash map's growth rounding, the test's own `String`s): far
/// less than what one wave would leave if entries, names or budgets leaked.
const SLACK: i64 = 64 * 1024;

/// One wave: `KEYS_PER_WAVE` keys never seen before, over a few downstreams (so that
/// budgets are shared and handed on), each policy used and dropped at once.
fn wave(registry: &Registry, wave: u64) {
    for n in 0..KEYS_PER_WAVE {
        let downstream = ["payments", "search", "ledger"][(n % 3) as usize];
        let endpoint = format!("10.{wave}.{}.{}:443", n / 256, n % 256);
        let policy = registry.get(downstream, &endpoint).unwrap();
        let _ = policy.handle().budget().unwrap().try_withdraw();
    }
}

fn registry() -> Registry {
    Registry::builder(|downstream, endpoint| {
        Ok::<_, BoxError>(Policy::builder(format!("{downstream}/{endpoint}")))
    })
    .max_entries(1_000)
    .metric_names(16)
    .share_budget_per_downstream(true)
    .keep_budget_for(Duration::from_secs(60))
    .build()
    .unwrap()
}

/// Runs the waves and checks the heap after each; returns the series count after the
/// first wave and after the last (both 0 without the `metrics` feature).
fn waves(registry: &Registry, series: impl Fn() -> usize) -> (usize, usize) {
    wave(registry, 0);
    let baseline = live_bytes();
    let first = series();
    for n in 1..WAVES {
        wave(registry, n);
        assert_heap_within(&format!("registry, wave {n}"), baseline, SLACK);
    }
    assert_eq!(registry.len(), 1_000);
    (first, series())
}

#[test]
fn a_million_keys_leave_the_heap_and_the_metric_series_at_baseline() {
    use metrics_util::debugging::DebuggingRecorder;

    let _serial = serial();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (first, last) = metrics::with_local_recorder(&recorder, || {
        let registry = registry();
        waves(&registry, || snapshotter.snapshot().into_vec().len())
    });
    println!("metric series: {first} after the first wave, {last} after the last");
    assert!(first > 0);
    assert_eq!(
        last, first,
        "every series of the last waves was there after the first"
    );
}
