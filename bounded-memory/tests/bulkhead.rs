//! Bulkheads and breakers give their memory back: the lanes of a spike of them, alive at
//! once, once they are dropped; and the callers of a waiting bulkhead that give up.

use std::time::Duration;

use seawall::bulkhead::BulkheadLayer;
use seawall::circuit_breaker::CircuitBreakerLayer;
use tower::{Layer, ServiceExt};

use crate::support::{Do, Downstream, Rng};
use crate::{assert_heap_within, live_bytes, serial};

/// What a process keeps for good, by design, once the lanes of each kind are all pooled:
/// at most 4096 leaked lanes of 384 bytes and a free list of 4096 pointers per kind
/// (about 1.6 MiB), plus slack for the allocator's rounding and the runtime.
const POOLED_LANES: i64 = 4096 * (384 + 8);
const BOUND: i64 = POOLED_LANES + 256 * 1024;

const SPIKE: usize = scaled!(1_000_000);

/// A million breakers alive at once, about 1.5 KB each (see
/// `breaker::one_breaker_costs_little_memory`): some 1.5 GiB at the peak, 244 times the
/// pool's bound.
const BREAKER_SPIKE: usize = scaled!(1_000_000);

#[test]
fn a_million_bulkheads_alive_at_once_give_their_memory_back() {
    let _serial = serial();
    let before = live_bytes();
    let layers: Vec<BulkheadLayer> = (0..SPIKE)
        .map(|_| BulkheadLayer::builder().build().unwrap())
        .collect();
    println!(
        "{SPIKE} bulkheads alive: {} bytes each",
        (live_bytes() - before) / SPIKE as i64
    );
    drop(layers);
    assert_heap_within("a million bulkheads, dropped", before, BOUND);
}

#[test]
fn a_million_breakers_alive_at_once_give_their_memory_back() {
    let _serial = serial();
    let before = live_bytes();
    let layers: Vec<CircuitBreakerLayer> = (0..BREAKER_SPIKE)
        .map(|_| CircuitBreakerLayer::builder().build().unwrap())
        .collect();
    println!(
        "{BREAKER_SPIKE} breakers alive: {} bytes each",
        (live_bytes() - before) / BREAKER_SPIKE as i64
    );
    drop(layers);
    assert_heap_within("a spike of breakers, dropped", before, BOUND);
}

/// Waves of bulkheads and breakers built and dropped, each wave larger than the pool:
/// what the pool keeps stays within its bound however many waves pass.
#[test]
fn waves_of_bulkheads_and_breakers_built_and_dropped_leave_the_heap_where_it_was() {
    let _serial = serial();
    let before = live_bytes();
    for wave in 1..=10 {
        let bulkheads: Vec<BulkheadLayer> = (0..50_000)
            .map(|_| BulkheadLayer::builder().build().unwrap())
            .collect();
        let breakers: Vec<CircuitBreakerLayer> = (0..10_000)
            .map(|_| CircuitBreakerLayer::builder().build().unwrap())
            .collect();
        drop((bulkheads, breakers));
        assert_heap_within(&format!("wave {wave}"), before, 2 * BOUND);
    }
}

/// A million callers of a waiting bulkhead, in rounds of a thousand at once: each waits
/// for one of four permits and gives up at a random point (seeded): while queued, while
/// its call runs, or never. Once they are gone the heap is back where it was.
#[test]
fn a_million_waiting_callers_that_give_up_leave_nothing_behind() {
    const ROUNDS: u64 = 1_000;
    const CALLERS: u64 = 1_000;
    let _serial = serial();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let layer = BulkheadLayer::builder()
            .max_concurrent(4)
            .max_wait(Duration::from_millis(50))
            .build()
            .unwrap();
        let handle = layer.handle();
        let svc = layer.layer(Downstream::default());
        let mut rng = Rng(0x5ea_3a11);
        let round = |rng: &mut Rng| {
            let callers: Vec<_> = (0..CALLERS)
                .map(|_| {
                    let svc = svc.clone();
                    let work = Duration::from_millis(rng.below(20));
                    let patience = Duration::from_millis(rng.below(100));
                    tokio::spawn(async move {
                        let call = svc.oneshot(Do::SucceedAfter(work));
                        let _ = tokio::time::timeout(patience, call).await;
                    })
                })
                .collect();
            async move {
                for caller in callers {
                    caller.await.unwrap();
                }
            }
        };
        // One round first, so that the runtime's timer and task storage are grown.
        round(&mut rng).await;
        let before = live_bytes();
        for _ in 1..ROUNDS {
            round(&mut rng).await;
        }
        assert_eq!((handle.in_flight(), handle.waiting()), (0, 0));
        assert_heap_within("a million waiting callers, gone", before, 64 * 1024);
    });
}
