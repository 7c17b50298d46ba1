//! Per-call overhead of bulkheads (concurrency limits) on the success path.
//!
//! Every contender wraps the same `tower::service_fn` echo service and is
//! driven the same way on a `current_thread` runtime: wait for readiness,
//! call, await the response. All contenders sit in one criterion group,
//! `bulkhead_overhead`, so criterion prints them side by side:
//!
//! * `bare` — the `service_fn` alone (the baseline);
//! * `seawall` — seawall's `BulkheadLayer`, fail-fast (its default zero
//!   `max_wait`);
//! * `tower_concurrency_limit` — tower 0.5 `ConcurrencyLimitLayer`;
//! * `tower_global_concurrency_limit` — tower 0.5
//!   `GlobalConcurrencyLimitLayer` (the same service type as the previous
//!   one; only where its semaphore is made differs);
//! * `tower_resilience` — tower-resilience 0.13 `BulkheadLayer` with
//!   `reject_when_full` (fail-fast).
//!
//! Every limit is 1 000 calls, so no call is ever rejected or made to wait:
//! what is measured is taking and giving back one permit per call. tower's
//! limits have no fail-fast mode; on this path they never wait either.
//! Nothing is built inside the timed loops: each sample times a loop over one
//! clone of the service, taken before the clock starts.
//!
//! Before criterion runs, the allocations per call of each contender are
//! counted (100 000 calls each) and printed as a table; the table is printed
//! again, with a CSV copy, after criterion's output, together with a table of
//! criterion's point estimates (ns/call, and the overhead over `bare`).
//! Counting needs a counting `#[global_allocator]`
//! (`benches/support/alloc_counter.rs`).
//!
//! Run with `cargo bench --bench bulkhead` (about 40 s).

use std::fmt::Debug;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use criterion::Criterion;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

#[path = "support/alloc_counter.rs"]
mod alloc_counter;
// Shared with the breaker benches, whose contenders go unused here.
#[allow(dead_code)]
#[path = "support/peers.rs"]
mod peers;

use peers::{
    echo, seawall_bulkhead_service, tower_concurrency_limit_service,
    tower_global_concurrency_limit_layer, tower_resilience_bulkhead_service,
};

/// Calls made per contender to count allocations.
const ALLOC_SAMPLE_CALLS: u64 = 100_000;
/// Criterion's group name (also its directory under `target/criterion`).
const GROUP: &str = "bulkhead_overhead";

/// Allocation calls made so far on this thread.
fn alloc_calls() -> u64 {
    alloc_counter::alloc_calls_on_this_thread()
}

/// One call through a tower service: readiness, call, await.
async fn tower_call<S>(svc: &mut S, req: u64) -> u64
where
    S: Service<u64, Response = u64, Error: Debug>,
{
    svc.ready()
        .await
        .expect("ready")
        .call(req)
        .await
        .expect("call")
}

/// Allocation calls per call over `ALLOC_SAMPLE_CALLS` calls, after 1 000
/// warm-up calls.
fn tower_allocs<S>(rt: &Runtime, svc: &S) -> f64
where
    S: Service<u64, Response = u64, Error: Debug> + Clone,
{
    let mut svc = svc.clone();
    rt.block_on(async move {
        for i in 0..1_000 {
            black_box(tower_call(&mut svc, i).await);
        }
        let before = alloc_calls();
        for i in 0..ALLOC_SAMPLE_CALLS {
            black_box(tower_call(&mut svc, black_box(i)).await);
        }
        let after = alloc_calls();
        (after - before) as f64 / ALLOC_SAMPLE_CALLS as f64
    })
}

fn print_alloc_table(rows: &[(&str, f64)]) {
    println!();
    println!("allocations per call (success path, {ALLOC_SAMPLE_CALLS} calls each)");
    println!("| contender                      | allocs/call |");
    println!("|--------------------------------|-------------|");
    for (name, allocs) in rows {
        println!("| {name:<30} | {allocs:>11.2} |");
    }
    println!("csv: contender,allocs_per_call");
    for (name, allocs) in rows {
        println!("csv: {name},{allocs:.2}");
    }
    println!();
}

/// criterion's estimate of the time per iteration, in ns, as it prints it
/// (the slope of its linear sampling, else the mean), read back from
/// `<target>/criterion/<group>/<name>/new/estimates.json`; `None` when it is
/// not there or older than `since` (e.g. a filter skipped the contender).
fn criterion_estimate_ns(name: &str, since: SystemTime) -> Option<f64> {
    let dir = match std::env::var_os("CRITERION_HOME") {
        Some(home) => PathBuf::from(home),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
            .join("criterion"),
    };
    let path = dir
        .join(GROUP)
        .join(name)
        .join("new")
        .join("estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None; // left by an earlier run
    }
    let json = std::fs::read_to_string(path).ok()?;
    // Avoids a JSON dependency: each estimate reads
    // `"slope":{"confidence_interval":{...},"point_estimate":N,...}`
    // (`"slope":null` when criterion sampled flat).
    let point_estimate = |key: &str| -> Option<f64> {
        let at = &json[json.find(&format!("\"{key}\":{{"))?..];
        let field = "\"point_estimate\":";
        let rest = &at[at.find(field)? + field.len()..];
        rest[..rest.find([',', '}'])?].trim().parse().ok()
    };
    point_estimate("slope").or_else(|| point_estimate("mean"))
}

/// The ns/call table, from the estimates criterion has just written.
fn print_time_table(names: &[&str], allocs: &[(&str, f64)], since: SystemTime) {
    let times: Vec<Option<f64>> = names
        .iter()
        .map(|name| criterion_estimate_ns(name, since))
        .collect();
    if times.iter().all(Option::is_none) {
        return;
    }
    let bare = names
        .iter()
        .position(|name| *name == "bare")
        .and_then(|i| times[i]);
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    println!();
    println!("time per call (criterion's estimate), single thread, current_thread runtime");
    println!("| contender                      | ns/call | over bare (ns) | allocs/call |");
    println!("|--------------------------------|---------|----------------|-------------|");
    for ((name, time), (_, allocs)) in names.iter().zip(&times).zip(allocs) {
        let over = time.zip(bare).map(|(t, b)| t - b);
        println!(
            "| {name:<30} | {:>7} | {:>14} | {allocs:>11.2} |",
            cell(*time),
            cell(over)
        );
    }
    println!("csv: contender,ns_per_call,over_bare_ns,allocs_per_call");
    for ((name, time), (_, allocs)) in names.iter().zip(&times).zip(allocs) {
        let over = time.zip(bare).map(|(t, b)| t - b);
        let csv = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.2}"));
        println!("csv: {name},{},{},{allocs:.2}", csv(*time), csv(over));
    }
    println!();
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Times `ready().await; call(1).await` on a clone of `svc`; the clone is
/// taken once per sample, outside the timed loop.
fn bench_tower<S>(group: &mut Group<'_>, rt: &Runtime, name: &str, svc: &S)
where
    S: Service<u64, Response = u64, Error: Debug> + Clone,
{
    group.bench_function(name, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let mut svc = svc.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(tower_call(&mut svc, black_box(1)).await);
                }
                start.elapsed()
            }
        });
    });
}

fn main() {
    let started = SystemTime::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    // Everything is built here, outside the timed loops.
    let bare = echo();
    let seawall = seawall_bulkhead_service();
    let tower_limit = tower_concurrency_limit_service();
    let tower_global = tower_global_concurrency_limit_layer().layer(echo());
    let tower_resilience = tower_resilience_bulkhead_service();

    let names = [
        "bare",
        "seawall",
        "tower_concurrency_limit",
        "tower_global_concurrency_limit",
        "tower_resilience",
    ];
    let allocs = [
        (names[0], tower_allocs(&rt, &bare)),
        (names[1], tower_allocs(&rt, &seawall)),
        (names[2], tower_allocs(&rt, &tower_limit)),
        (names[3], tower_allocs(&rt, &tower_global)),
        (names[4], tower_allocs(&rt, &tower_resilience)),
    ];
    print_alloc_table(&allocs);

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group(GROUP);
        bench_tower(&mut group, &rt, names[0], &bare);
        bench_tower(&mut group, &rt, names[1], &seawall);
        bench_tower(&mut group, &rt, names[2], &tower_limit);
        bench_tower(&mut group, &rt, names[3], &tower_global);
        bench_tower(&mut group, &rt, names[4], &tower_resilience);
        group.finish();
    }
    criterion.final_summary();

    print_alloc_table(&allocs);
    // Only after a real run: under `cargo test --benches` criterion writes
    // nothing and the estimates on disk would be stale.
    if std::env::args().any(|arg| arg == "--bench") {
        print_time_table(&names, &allocs, started);
    }
}
