//! Policies from a configuration file: one TOML document with defaults and a policy per
//! downstream, loaded, checked, and applied to two in-process downstreams.
//!
//! - `payments` is down, then recovers. Its policy (2 attempts, a breaker that trips
//!   after 3 failures in a row and stays open 200 ms) stops sending it calls after the
//!   third failure and fails the rest fast; once the outage is over, one successful
//!   probe closes the breaker again.
//! - `search` is slow on one call in four (80 ms instead of 2 ms). Its policy hedges a
//!   call that has not answered after 20 ms, so the slow calls end in about 22 ms.
//!
//! For each downstream the program prints what its callers saw, what the downstream
//! received, and what the policy's handles say (breaker transitions, budget, hedges);
//! then it shows the error of a file with a bad value. It exits by itself in well under
//! a second.
//!
//! ```text
//! cargo run --example config_file --features serde
//! ```

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seawall::error::is_rejection;
use seawall::policy::{Policy, PolicyConfig};
use seawall::BoxError;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

const CONFIG: &str = r#"
# Every downstream gets these unless its policy says otherwise.
[defaults]
deadline = "1s"
attempt_timeout = "100ms"
retry = { max_attempts = 3, backoff = { base = "5ms", max = "50ms", jitter = "full" } }
budget = { ratio = 0.2, min_per_sec = 5.0, window = "10s" }
circuit_breaker = { window = { count = 20 }, minimum_calls = 10, failure_rate = 0.5, open_duration = "200ms", jitter = 0.0 }
bulkhead = { max_concurrent = 10 }

[policies.payments]
retry = { max_attempts = 2 }                     # the backoff is still the defaults'
circuit_breaker = { consecutive_failures = 3 }   # on top of the failure rate

[policies.search]
attempt_timeout = "250ms"
hedge = { delay = "20ms", max_hedges = 1 }
"#;

/// A call that went through a policy: what the caller saw.
#[derive(Default)]
struct Tally {
    ok: u32,
    failed: u32,
    rejected: u32,
    slowest: Duration,
}

impl Tally {
    fn record(&mut self, result: &Result<String, BoxError>, took: Duration) {
        match result {
            Ok(_) => self.ok += 1,
            Err(err) if is_rejection(&**err) => self.rejected += 1,
            Err(_) => self.failed += 1,
        }
        self.slowest = self.slowest.max(took);
    }
}

/// Call `svc` `n` times, one after the other, `pause` apart.
async fn calls<S>(svc: &S, n: u32, pause: Duration) -> Tally
where
    S: Service<u32, Response = String, Error = BoxError> + Clone,
{
    let mut tally = Tally::default();
    for i in 0..n {
        let started = Instant::now();
        let result = svc.clone().oneshot(i).await;
        tally.record(&result, started.elapsed());
        tokio::time::sleep(pause).await;
    }
    tally
}

fn report(phase: &str, tally: &Tally, received: u32, policy: &Policy) {
    let handle = policy.handle();
    println!(
        "  {phase:<22} callers: {:>2} ok, {:>2} failed, {:>2} rejected (slowest {:>3} ms); downstream received {received:>2}",
        tally.ok,
        tally.failed,
        tally.rejected,
        tally.slowest.as_millis(),
    );
    if let Some(breaker) = handle.circuit_breaker() {
        let snapshot = breaker.snapshot();
        println!(
            "  {:<22} breaker {:?}, {} calls in its window, {} rejected so far",
            "", snapshot.state, snapshot.calls, snapshot.rejections
        );
    }
    if let Some(budget) = handle.budget() {
        let budget = budget.snapshot();
        println!(
            "  {:<22} budget: {} requests, {} retries and hedges taken, {} denied",
            "", budget.deposits, budget.withdrawals, budget.denials
        );
    }
    if let Some(hedge) = handle.hedge() {
        let hedge = hedge.snapshot();
        println!(
            "  {:<22} hedges: {} sent, {} won",
            "", hedge.hedges, hedge.wins
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let config = PolicyConfig::from_toml_str(CONFIG)?;
    println!(
        "loaded {} policies: {:?}",
        config.names().count(),
        config.names().collect::<Vec<_>>()
    );

    // ----- payments: down, then up -----
    let payments = config.policy("payments")?;
    let mut transitions = payments
        .handle()
        .circuit_breaker()
        .ok_or("payments has a breaker")?
        .subscribe();
    let received = Arc::new(AtomicU32::new(0));
    let down = Arc::new(AtomicBool::new(true));
    let client = payments.layer(tower::service_fn({
        let received = received.clone();
        let down = down.clone();
        move |amount: u32| {
            received.fetch_add(1, Ordering::SeqCst);
            let down = down.load(Ordering::SeqCst);
            async move {
                if down {
                    Err::<String, BoxError>("503 service unavailable".into())
                } else {
                    Ok(format!("charged {amount}"))
                }
            }
        }
    }));

    println!("\npayments (2 attempts; the breaker trips after 3 failures in a row)");
    let outage = calls(&client, 20, Duration::from_millis(2)).await;
    report(
        "during the outage",
        &outage,
        received.load(Ordering::SeqCst),
        &payments,
    );
    // The downstream recovers; wait out the open duration so a probe may go.
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before = received.load(Ordering::SeqCst);
    let after = calls(&client, 10, Duration::from_millis(2)).await;
    report(
        "after it",
        &after,
        received.load(Ordering::SeqCst) - before,
        &payments,
    );
    print!("  {:<22} transitions:", "");
    while let Some(transition) = transitions.try_recv() {
        print!(" {:?} -> {:?};", transition.from, transition.to);
    }
    println!();

    // ----- search: one call in four is slow -----
    let search = config.policy("search")?;
    let received = Arc::new(AtomicU32::new(0));
    let client = search.layer(tower::service_fn({
        let received = received.clone();
        move |query: u32| {
            let n = received.fetch_add(1, Ordering::SeqCst);
            async move {
                let took = if n % 4 == 3 { 80 } else { 2 };
                tokio::time::sleep(Duration::from_millis(took)).await;
                Ok::<_, BoxError>(format!("results for {query}"))
            }
        }
    }));
    println!("\nsearch (hedge after 20 ms)");
    let tally = calls(&client, 20, Duration::from_millis(1)).await;
    report("20 calls", &tally, received.load(Ordering::SeqCst), &search);

    // ----- a downstream the file does not name gets the defaults -----
    let ledger = config.policy("ledger")?;
    println!(
        "\nledger (not in the file): deadline {:?}, attempt timeout {:?}, bulkhead limit {:?}",
        ledger.handle().deadline(),
        ledger.handle().attempt_timeout(),
        ledger.handle().bulkhead().map(|b| b.limit()),
    );

    // ----- a file with a bad value does not load -----
    let bad = CONFIG.replace("max_attempts = 2", "max_attempts = 0");
    match PolicyConfig::from_toml_str(&bad) {
        Ok(_) => return Err("a bad file loaded".into()),
        Err(err) => println!("\na bad file: {err}"),
    }
    let typo = CONFIG.replace("consecutive_failures", "consecutive_failure");
    match PolicyConfig::from_toml_str(&typo) {
        Ok(_) => return Err("a file with a typo loaded".into()),
        Err(err) => println!("a typo:     {err}"),
    }

    // What the run must have shown.
    if outage.rejected == 0
        || after.ok != 10
        || tally.failed != 0
        || tally.slowest > Duration::from_millis(60)
    {
        return Err("the policies did not do what this example says".into());
    }
    Ok(())
}
