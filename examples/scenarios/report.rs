//! The metrics of one (scenario, contender) run, as a table row or a JSON line.

use std::fmt::Write as _;
use std::time::Duration;

use crate::scenarios::{Record, Run};

/// Width of a recovery bucket.
const BUCKET: Duration = Duration::from_millis(100);
/// A bucket has recovered when at least this share of its requests succeeded.
const RECOVERED: f64 = 0.99;

#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) scenario: &'static str,
    pub(crate) policy: &'static str,
    pub(crate) requests: u64,
    pub(crate) success_rate: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) amplification: f64,
    pub(crate) fault_amplification: f64,
    pub(crate) peak_amplification: Option<f64>,
    pub(crate) peak_in_flight: u64,
    pub(crate) detect_ms: Option<f64>,
    pub(crate) recover_ms: Option<f64>,
    pub(crate) breaker_transitions: Option<u64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// From the fault's end until every 100 ms bucket of arrivals from then on has at least
/// 99 % successes; `None` if the run ends before that.
fn recovery(records: &[Record], fault_end: Duration) -> Option<Duration> {
    let index = |d: Duration| (d.as_nanos() / BUCKET.as_nanos()) as usize;
    let last = records.iter().map(|r| index(r.arrival)).max()?;
    let first = index(fault_end);
    if first > last {
        return None;
    }
    let mut buckets = vec![(0u64, 0u64); last - first + 1];
    for r in records.iter().filter(|r| index(r.arrival) >= first) {
        let b = &mut buckets[index(r.arrival) - first];
        b.0 += u64::from(r.ok);
        b.1 += 1;
    }
    let healthy = |&(ok, all): &(u64, u64)| all == 0 || ok as f64 >= RECOVERED * all as f64;
    // The first bucket after the last unhealthy one.
    let from = match buckets.iter().rposition(|b| !healthy(b)) {
        None => 0,
        Some(i) if i + 1 == buckets.len() => return None,
        Some(i) => i + 1,
    };
    let start = BUCKET * (first + from) as u32;
    Some(start.saturating_sub(fault_end))
}

impl Metrics {
    pub(crate) fn new(
        scenario: &'static str,
        policy: &'static str,
        run: &Run,
        fault: (Duration, Duration),
    ) -> Self {
        let requests = run.records.len() as u64;
        let mut latencies: Vec<Duration> = run.records.iter().map(|r| r.latency).collect();
        latencies.sort();
        let ok = run.records.iter().filter(|r| r.ok).count() as u64;
        // The first local fast-fail after the onset (or, behind a balancer, the first
        // ejection of an endpoint).
        let rejected = run
            .records
            .iter()
            .filter(|r| r.rejected)
            .map(|r| r.arrival + r.latency)
            .filter(|&at| at >= fault.0)
            .min();
        let during: Vec<&Record> = run
            .records
            .iter()
            .filter(|r| (fault.0..fault.1).contains(&r.arrival))
            .collect();
        let fault_attempts: u64 = during.iter().map(|r| u64::from(r.attempts)).sum();
        // The worst whole second within the fault: attempts sent in it / requests that
        // arrived in it.
        let seconds = fault.0.as_millis().div_ceil(1000) as usize..fault.1.as_secs() as usize;
        let mut arrived = vec![0u64; seconds.end];
        for r in &run.records {
            if let Some(n) = arrived.get_mut(r.arrival.as_secs() as usize) {
                *n += 1;
            }
        }
        let peak_amplification = seconds
            .filter(|&s| arrived[s] > 0)
            .map(|s| {
                let sent = run.attempts_per_second.get(s).copied().unwrap_or(0);
                sent as f64 / arrived[s] as f64
            })
            .reduce(f64::max);
        let ejected = run.first_ejection.filter(|&at| at >= fault.0);
        let detect = match (rejected, ejected) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            scenario,
            policy,
            requests,
            success_rate: ok as f64 / requests.max(1) as f64,
            p50_ms: ms(percentile(&latencies, 0.50)),
            p99_ms: ms(percentile(&latencies, 0.99)),
            max_ms: ms(latencies.last().copied().unwrap_or_default()),
            amplification: run.attempts as f64 / requests.max(1) as f64,
            fault_amplification: fault_attempts as f64 / during.len().max(1) as f64,
            peak_amplification,
            peak_in_flight: run.peak_in_flight,
            detect_ms: detect.map(|at| ms(at - fault.0)),
            recover_ms: recovery(&run.records, fault.1).map(ms),
            breaker_transitions: run.transitions,
        }
    }

    /// One JSON object, written by hand (the crate has no JSON dependency): names and
    /// policies are plain ASCII, absent values are `null`.
    pub(crate) fn json(&self) -> String {
        let num = |v: f64, digits: usize| format!("{v:.digits$}");
        let opt =
            |v: Option<f64>, digits: usize| v.map_or_else(|| "null".to_owned(), |v| num(v, digits));
        let fields = [
            ("scenario", format!("\"{}\"", self.scenario)),
            ("policy", format!("\"{}\"", self.policy)),
            ("requests", self.requests.to_string()),
            ("success_rate", num(self.success_rate, 4)),
            ("p50_ms", num(self.p50_ms, 1)),
            ("p99_ms", num(self.p99_ms, 1)),
            ("max_ms", num(self.max_ms, 1)),
            ("amplification", num(self.amplification, 3)),
            ("fault_amplification", num(self.fault_amplification, 3)),
            ("peak_amplification", opt(self.peak_amplification, 3)),
            ("peak_in_flight", self.peak_in_flight.to_string()),
            ("detect_ms", opt(self.detect_ms, 1)),
            ("recover_ms", opt(self.recover_ms, 1)),
            (
                "breaker_transitions",
                self.breaker_transitions
                    .map_or_else(|| "null".to_owned(), |n| n.to_string()),
            ),
        ];
        let mut out = String::from("{");
        for (i, (name, value)) in fields.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(out, "{comma}\"{name}\":{value}");
        }
        out.push('}');
        out
    }
}

/// The table of one scenario, contenders side by side (one row each).
pub(crate) fn table(rows: &[Metrics]) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {:<11} | {:>8} | {:>8} | {:>7} | {:>7} | {:>7} | {:>6} | {:>11} | {:>10} | {:>9} | {:>9} | {:>10} | {:>11} |",
        "policy",
        "requests",
        "success",
        "p50 ms",
        "p99 ms",
        "max ms",
        "ampl.",
        "ampl. fault",
        "ampl. peak",
        "peak open",
        "detect ms",
        "recover ms",
        "transitions"
    );
    let _ = writeln!(
        out,
        "|{:-<13}|{:->10}|{:->10}|{:->9}|{:->9}|{:->9}|{:->8}|{:->13}|{:->12}|{:->11}|{:->11}|{:->12}|{:->13}|",
        ":", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":", ":"
    );
    for m in rows {
        let _ = writeln!(
            out,
            "| {:<11} | {:>8} | {:>7.2}% | {:>7.1} | {:>7.1} | {:>7.1} | {:>5.2}x | {:>10.2}x | {:>10} | {:>9} | {:>9} | {:>10} | {:>11} |",
            m.policy,
            m.requests,
            100.0 * m.success_rate,
            m.p50_ms,
            m.p99_ms,
            m.max_ms,
            m.amplification,
            m.fault_amplification,
            m.peak_amplification
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x")),
            m.peak_in_flight,
            opt(m.detect_ms),
            opt(m.recover_ms),
            m.breaker_transitions
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        );
    }
    out
}
