//! The circuit breaker: callers that give up waiting in backpressure mode leave nothing
//! behind, one breaker costs little, and breakers built and dropped in waves give their
//! memory back.

use std::time::Duration;

use seawall::circuit_breaker::{CircuitBreakerLayer, Readiness, State};
use tower::{Layer, ServiceExt};

use crate::support::{call, trips_after, Do, Downstream, Rng};
use crate::{assert_heap_within, live_bytes, serial};

/// A million callers wait for an open breaker in backpressure mode, each giving up after
/// a random time (seeded), in waves. Once they are gone, the live heap is back within a
/// fixed bound of where it started, and it never grows with the waves.
#[test]
fn backpressure_callers_that_give_up_leave_nothing_behind() {
    let _serial = serial();
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(backpressure_callers());
}

async fn backpressure_callers() {
    const WAVES: usize = scaled!(100);
    const CALLERS: usize = 10_000;
    const BOUND: i64 = 64 * 1024;
    let layer = trips_after(1, Duration::from_secs(300))
        .readiness(Readiness::Backpressure)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(Downstream::default());
    let _ = call(&svc, Do::Fail).await;
    assert_eq!(handle.state(), State::Open);

    let mut rng = Rng(7);
    let wave = |rng: &mut Rng| {
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| {
                let mut svc = svc.clone();
                let patience = Duration::from_micros(rng.below(2_000));
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(patience, ServiceExt::<Do>::ready(&mut svc)).await;
                })
            })
            .collect();
        async move {
            for task in tasks {
                task.await.unwrap();
            }
        }
    };
    // One wave first, so that the runtime's own tables have grown to their size.
    wave(&mut rng).await;
    let before = live_bytes();
    for _ in 0..WAVES - 1 {
        wave(&mut rng).await;
        if live_bytes() - before > BOUND {
            break; // Fails below, before a leak can eat the machine.
        }
    }
    assert_eq!(handle.state(), State::Open, "nobody was admitted");
    assert_heap_within("a million backpressure callers gone", before, BOUND);
}

/// What one breaker (a layer, with its handle) costs while it is alive.
#[test]
fn one_breaker_costs_little_memory() {
    let _serial = serial();
    const BREAKERS: usize = 1_000;
    // Bytes per breaker measured with the default configuration (a count window of 100
    // calls): 4372 bytes with the eager 64-slot broadcast channel, 1547 with it lazy.
    const BOUND_PER_BREAKER: i64 = 2_048;
    let before = live_bytes();
    let breakers: Vec<_> = (0..BREAKERS)
        .map(|_| CircuitBreakerLayer::builder().build().unwrap())
        .collect();
    let per_breaker = (live_bytes() - before) / BREAKERS as i64;
    println!("one breaker: {per_breaker} bytes (default configuration)");
    drop(breakers);
    assert!(
        per_breaker <= BOUND_PER_BREAKER,
        "one breaker costs {per_breaker} bytes, more than {BOUND_PER_BREAKER}"
    );
    // A subscriber pays for the channel.
    let layer = CircuitBreakerLayer::builder().build().unwrap();
    let before = live_bytes();
    let transitions = layer.handle().subscribe();
    println!("its first subscriber: {} bytes", live_bytes() - before);
    drop(transitions);
}

/// A million breakers built and dropped in waves of ten thousand: after the first wave
/// (which fills the lane pool to the most breakers alive at once, a bounded number), the
/// live heap stays where it was.
#[test]
fn a_million_breakers_built_and_dropped_in_waves_give_their_memory_back() {
    let _serial = serial();
    const WAVES: usize = scaled!(100);
    const PER_WAVE: usize = 10_000;
    const BOUND: i64 = 64 * 1024;
    let wave = || {
        let wave: Vec<_> = (0..PER_WAVE)
            .map(|_| CircuitBreakerLayer::builder().build().unwrap())
            .collect();
        drop(wave);
    };
    wave();
    let before = live_bytes();
    for _ in 1..WAVES {
        wave();
    }
    assert_heap_within("a million breakers built and dropped", before, BOUND);
}
