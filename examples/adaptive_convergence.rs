//! How fast the adaptive limits find a downstream's capacity, follow it when it halves,
//! and climb back when it returns.
//!
//! This runs the simulation of `tests/bulkhead_adaptive.rs` (see its docs): a downstream
//! that serves C calls at once in 10 ms (±10 % jitter), queues past C and drops past 2C,
//! under three times the load it can serve; three phases of 40 000 completed calls each,
//! at capacity C, C/2 and C again. It prints one Markdown table per algorithm.
//!
//! ```text
//! cargo run --release --example adaptive_convergence
//! ```

#[cfg(feature = "bulkhead")]
// The test file's tests compile out here; what they alone use would warn.
#[allow(dead_code, unused_imports, unreachable_pub)]
#[path = "../tests/bulkhead_adaptive.rs"]
mod suite;

#[cfg(feature = "bulkhead")]
fn main() {
    use suite::sim;

    const CAPACITIES: [u32; 4] = [20, 50, 100, 200];
    const SEED: u64 = 1;

    println!("# Adaptive limits against a simulated saturated downstream\n");
    println!(
        "No-load latency {:?} (±{:.0} %), queueing past C, drops past 2C, offered load \
         {}× the most it can serve, {} completed calls per phase, seed {SEED}. \
         \"Settled after\" counts completed calls into the phase until the limit stays \
         within ±{:.0} % of the phase's capacity to the end of the phase (\"never\": it \
         was outside at the end). Vegas and Gradient2 re-measure the no-load latency every \
         30 rounds with a probe at 90 % of the estimated knee, which shows as the low end \
         of their ranges. Latencies are of the calls answered (not dropped).\n",
        sim::BASE_LATENCY,
        sim::JITTER * 100.0,
        sim::OFFERED_LOAD,
        sim::PHASE_COMPLETIONS,
        sim::BAND * 100.0,
    );

    table("AIMD, timeout 12 ms", &CAPACITIES, SEED, suite::aimd);
    table(
        "AIMD, defaults (drops and calls over 5 s only)",
        &CAPACITIES,
        SEED,
        suite::aimd_on_drops_alone,
    );
    table("Vegas, defaults", &CAPACITIES, SEED, suite::vegas);
    table("Gradient2, defaults", &CAPACITIES, SEED, suite::gradient2);
}

#[cfg(feature = "bulkhead")]
fn table<A: seawall::bulkhead::adaptive::LimitAlgorithm>(
    name: &str,
    capacities: &[u32],
    seed: u64,
    make: impl Fn() -> A,
) {
    use suite::sim;

    println!("## {name}\n");
    println!(
        "| C → C/2 → C | settled after (calls) | limit at end of phase | limit range, \
         second half | mean latency (ms) | p99 latency (ms) | dropped |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &capacity in capacities {
        let phases = sim::run(&make(), &[capacity, capacity / 2, capacity], seed);
        let column = |cell: &dyn Fn(&sim::Phase) -> String| {
            phases.iter().map(cell).collect::<Vec<_>>().join(" / ")
        };
        let ms = |d: std::time::Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
        println!(
            "| {} → {} → {} | {} | {} | {} | {} | {} | {} |",
            capacity,
            capacity / 2,
            capacity,
            column(&|p| p
                .settled_after
                .map_or_else(|| "never".to_owned(), |n| n.to_string())),
            column(&|p| p.end_limit.to_string()),
            column(&|p| format!("{}–{}", p.late_range.0, p.late_range.1)),
            column(&|p| ms(p.mean_latency)),
            column(&|p| ms(p.p99_latency)),
            column(&|p| p.dropped.to_string()),
        );
    }
    println!();
}

#[cfg(not(feature = "bulkhead"))]
fn main() {
    eprintln!("this example needs the `bulkhead` feature");
}
