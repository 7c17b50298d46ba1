//! A circuit breaker in front of a flaky service: watch it open, reject, probe and close.
//!
//! The "inventory" service below is healthy, then fails every call for a while, then
//! recovers. A client sends it a request every 10 ms through a breaker, and this program
//! prints each state transition as it happens and a summary at the end.
//!
//! ```text
//! cargo run --example flaky_breaker
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seawall::circuit_breaker::CircuitBreakerLayer;
use seawall::BoxError;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let started = Instant::now();
    let outage = Duration::from_millis(800)..Duration::from_millis(2_000);

    // The downstream: fails every call during the outage, and counts what reaches it.
    let reached = Arc::new(AtomicU64::new(0));
    let inventory = {
        let reached = reached.clone();
        let outage = outage.clone();
        tower::service_fn(move |sku: u32| {
            reached.fetch_add(1, Ordering::Relaxed);
            let down = outage.contains(&started.elapsed());
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                if down {
                    Err::<u32, BoxError>("inventory: 503 service unavailable".into())
                } else {
                    Ok(sku)
                }
            }
        })
    };

    let breaker = CircuitBreakerLayer::builder()
        .name("inventory")
        .count_window(20)
        .minimum_calls(10)
        .failure_rate(0.5)
        .open_duration(Duration::from_millis(300))
        .max_open_duration(Duration::from_secs(2))
        .half_open_probes(2)
        .seed(7)
        .build()?;
    let handle = breaker.handle();
    let client = ServiceBuilder::new().layer(breaker).service(inventory);

    // Print every transition as it happens.
    let mut transitions = handle.subscribe();
    let printer = tokio::spawn(async move {
        while let Some(t) = transitions.recv().await {
            println!(
                "{:>6} ms  {:<9} -> {:<9} ({:?})",
                t.at.duration_since(started).as_millis(),
                t.from.as_str(),
                t.to.as_str(),
                t.cause
            );
        }
    });

    println!(
        "inventory fails every call from {} ms to {} ms; one request every 10 ms\n",
        outage.start.as_millis(),
        outage.end.as_millis()
    );
    let (mut ok, mut failed, mut rejected) = (0u64, 0u64, 0u64);
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    while started.elapsed() < Duration::from_millis(3_500) {
        ticker.tick().await;
        match client.clone().oneshot(42).await {
            Ok(_) => ok += 1,
            Err(e) if seawall::error::is_rejection(&*e) => rejected += 1,
            Err(_) => failed += 1,
        }
    }

    drop(client);
    drop(handle);
    printer.await?;
    let sent = ok + failed + rejected;
    println!(
        "\n{sent} requests: {ok} ok, {failed} failed at the downstream, {rejected} rejected by the breaker"
    );
    println!(
        "the downstream received {} calls; the breaker spared it {rejected} during the outage",
        reached.load(Ordering::Relaxed)
    );
    Ok(())
}
