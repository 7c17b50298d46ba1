//! The helpers the overhead benches share (`benches/bulkhead.rs`,
//! `benches/circuit_breaker.rs`, `benches/policy.rs`, `benches/retry.rs`,
//! `benches/timeout.rs`): driving a tower service one call at a time on a
//! `current_thread` runtime, timing it under criterion, counting its
//! allocations per call with the counting allocator of
//! `benches/support/alloc_counter.rs` (installed by this module), and [`run`],
//! the whole bench: allocation table, one criterion group, time table. A bench's
//! `main` builds its contenders and hands them to [`run`]. `benches/peers.rs`
//! uses the driving and the counting only (it times in interleaved rounds of
//! its own).

use std::fmt::Debug;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use criterion::Criterion;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

#[path = "alloc_counter.rs"]
mod alloc_counter;

/// Calls made per contender to count allocations.
pub(crate) const ALLOC_SAMPLE_CALLS: u64 = 100_000;

/// A criterion benchmark group measuring wall time.
pub(crate) type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// The `current_thread` runtime every contender runs on.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Times one contender in a criterion group, under the name it is given.
type Timer<'a> = Box<dyn Fn(&mut Group<'_>, &Runtime, &str) + 'a>;

/// One contender of an overhead bench: its name, how to count its allocations
/// per call, and how to time it in a criterion group (under the name it is
/// given).
pub(crate) struct Contender<'a> {
    name: &'static str,
    allocs: Box<dyn Fn(&Runtime) -> f64 + 'a>,
    bench: Timer<'a>,
}

impl<'a> Contender<'a> {
    /// A contender counted by `allocs` and timed by `bench`.
    #[allow(dead_code)] // only the breaker bench has a contender that is not a tower service
    pub(crate) fn new(
        name: &'static str,
        allocs: impl Fn(&Runtime) -> f64 + 'a,
        bench: impl Fn(&mut Group<'_>, &Runtime, &str) + 'a,
    ) -> Self {
        Self {
            name,
            allocs: Box::new(allocs),
            bench: Box::new(bench),
        }
    }
}

/// A tower service as a contender: counted by [`tower_allocs`], timed by
/// [`bench_tower`].
pub(crate) fn tower_contender<'a, S>(name: &'static str, svc: S) -> Contender<'a>
where
    S: Service<u64, Response = u64, Error: Debug> + Clone + 'a,
{
    let svc = Rc::new(svc);
    let timed = Rc::clone(&svc);
    Contender {
        name,
        allocs: Box::new(move |rt| tower_allocs(rt, &*svc)),
        bench: Box::new(move |group, rt, name| bench_tower(group, rt, name, &*timed)),
    }
}

/// The whole overhead bench: counts the allocations per call of every
/// contender and prints them (before criterion's output, and again after it),
/// times every contender in the criterion group `group`, lets `more` add
/// groups of its own to the same criterion run, and, after a real run, prints
/// the time table ([`print_time_table`]).
///
/// Returns when the run started, after a real run only (`--bench` on the
/// command line): under `cargo test --benches` criterion writes nothing and
/// the estimates on disk would be stale.
pub(crate) fn run(
    rt: &Runtime,
    group: &str,
    contenders: &[Contender<'_>],
    more: impl FnOnce(&mut Criterion),
) -> Option<SystemTime> {
    let started = SystemTime::now();
    let allocs: Vec<(&str, f64)> = contenders
        .iter()
        .map(|contender| (contender.name, (contender.allocs)(rt)))
        .collect();
    print_alloc_table(&allocs);

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut timed = criterion.benchmark_group(group);
        for contender in contenders {
            (contender.bench)(&mut timed, rt, contender.name);
        }
        timed.finish();
    }
    more(&mut criterion);
    criterion.final_summary();

    print_alloc_table(&allocs);
    if !std::env::args().any(|arg| arg == "--bench") {
        return None;
    }
    let names: Vec<&str> = contenders.iter().map(|contender| contender.name).collect();
    print_time_table(group, &names, &allocs, started);
    Some(started)
}

/// Allocation calls made so far on this thread.
pub(crate) fn alloc_calls() -> u64 {
    alloc_counter::alloc_calls_on_this_thread()
}

/// One call through a tower service: readiness, call, await.
pub(crate) async fn tower_call<S>(svc: &mut S, req: u64) -> u64
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
pub(crate) fn tower_allocs<S>(rt: &Runtime, svc: &S) -> f64
where
    S: Service<u64, Response = u64, Error: Debug> + Clone,
{
    tower_allocs_over(rt, svc, ALLOC_SAMPLE_CALLS)
}

/// Allocation calls per call over `calls` calls on a clone of `svc`, after
/// 1 000 warm-up calls.
pub(crate) fn tower_allocs_over<S>(rt: &Runtime, svc: &S, calls: u64) -> f64
where
    S: Service<u64, Response = u64, Error: Debug> + Clone,
{
    let mut svc = svc.clone();
    rt.block_on(async move {
        for i in 0..1_000 {
            black_box(tower_call(&mut svc, i).await);
        }
        let before = alloc_calls();
        for i in 0..calls {
            black_box(tower_call(&mut svc, black_box(i)).await);
        }
        let after = alloc_calls();
        (after - before) as f64 / calls as f64
    })
}

/// Prints the allocations per call of each contender, as a table and as
/// CSV; the name column is 20 wide, or as wide as the longest name.
pub(crate) fn print_alloc_table(rows: &[(&str, f64)]) {
    let width = rows.iter().map(|(name, _)| name.len()).fold(20, usize::max);
    println!();
    println!("allocations per call (success path, {ALLOC_SAMPLE_CALLS} calls each)");
    println!("| {:<width$} | allocs/call |", "contender");
    println!("|{}|-------------|", "-".repeat(width + 2));
    for (name, allocs) in rows {
        println!("| {name:<width$} | {allocs:>11.2} |");
    }
    println!("csv: contender,allocs_per_call");
    for (name, allocs) in rows {
        println!("csv: {name},{allocs:.2}");
    }
    println!();
}

/// Times `ready().await; call(1).await` on a clone of `svc`; the clone is
/// taken once per sample, outside the timed loop.
pub(crate) fn bench_tower<S>(group: &mut Group<'_>, rt: &Runtime, name: &str, svc: &S)
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

/// criterion's estimate of the time per iteration of `name` in `group`, in ns, as it
/// prints it (the slope of its linear sampling, else the mean), read back from
/// `<target>/criterion/<group>/<name>/new/estimates.json`; `None` when it is not there or
/// older than `since` (e.g. a filter skipped the contender).
pub(crate) fn criterion_estimate_ns(group: &str, name: &str, since: SystemTime) -> Option<f64> {
    use std::path::PathBuf;
    let dir = match std::env::var_os("CRITERION_HOME") {
        Some(home) => PathBuf::from(home),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
            .join("criterion"),
    };
    let path = dir
        .join(group)
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

/// Prints, as a table and as CSV, criterion's estimates of ns/call for `names` in
/// `group` (just written, i.e. not older than `since`), their overhead over the contender
/// named `bare`, and the allocations per call in `allocs` (in the order of `names`).
/// Prints nothing when criterion wrote no estimate.
pub(crate) fn print_time_table(
    group: &str,
    names: &[&str],
    allocs: &[(&str, f64)],
    since: SystemTime,
) {
    let times: Vec<Option<f64>> = names
        .iter()
        .map(|name| criterion_estimate_ns(group, name, since))
        .collect();
    if times.iter().all(Option::is_none) {
        return;
    }
    let bare = names
        .iter()
        .position(|name| *name == "bare")
        .and_then(|i| times[i]);
    let width = names.iter().map(|name| name.len()).fold(30, usize::max);
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    println!();
    println!("time per call (criterion's estimate), single thread, current_thread runtime");
    println!(
        "| {:<width$} | ns/call | over bare (ns) | allocs/call |",
        "contender"
    );
    println!(
        "|{}|---------|----------------|-------------|",
        "-".repeat(width + 2)
    );
    for ((name, time), (_, allocs)) in names.iter().zip(&times).zip(allocs) {
        let over = time.zip(bare).map(|(t, b)| t - b);
        println!(
            "| {name:<width$} | {:>7} | {:>14} | {allocs:>11.2} |",
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
