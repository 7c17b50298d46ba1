//! `Registry`: one policy per key, made on first use, bounded by count and idle time,
//! optionally one budget per downstream.
#![cfg(feature = "policy")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall::circuit_breaker::State;
use seawall::error::ConfigError;
use seawall::policy::{Policy, PolicyBuilder, Registry, RegistryBuilder};
use seawall::BoxError;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A registry builder whose policies are named `downstream/endpoint`, counting the
/// policies it makes.
fn counting(made: &Arc<AtomicU32>) -> RegistryBuilder {
    let made = made.clone();
    Registry::builder(move |downstream, endpoint| {
        made.fetch_add(1, Ordering::SeqCst);
        Ok::<PolicyBuilder, BoxError>(Policy::builder(format!("{downstream}/{endpoint}")))
    })
}

fn state(policy: &Policy) -> State {
    policy.handle().circuit_breaker().unwrap().state()
}

/// The keys of the registry, the most recently used first.
fn keys(registry: &Registry) -> Vec<String> {
    registry
        .handles()
        .into_iter()
        .map(|(downstream, endpoint, handle)| {
            assert_eq!(handle.name(), format!("{downstream}/{endpoint}"));
            format!("{downstream}/{endpoint}")
        })
        .collect()
}

#[test]
fn the_same_key_gets_the_same_policy() {
    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made).build().unwrap();
    let first = registry.get("payments", "10.0.0.1:443").unwrap();
    let again = registry.get("payments", "10.0.0.1:443").unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 1);
    assert_eq!(registry.len(), 1);
    assert_eq!(first.name(), "payments/10.0.0.1:443");

    // The same breaker, bulkhead and budget.
    first.handle().circuit_breaker().unwrap().force_open();
    assert_eq!(state(&again), State::ForcedOpen);
    first.handle().bulkhead().unwrap().set_limit(3).unwrap();
    assert_eq!(again.handle().bulkhead().unwrap().limit(), 3);
    assert!(first.handle().budget().unwrap().try_withdraw());
    assert_eq!(again.handle().budget().unwrap().snapshot().withdrawals, 1);
}

#[test]
fn different_endpoints_get_different_breakers() {
    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made).build().unwrap();
    let a = registry.get("payments", "a").unwrap();
    let b = registry.get("payments", "b").unwrap();
    let other = registry.get("search", "a").unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 3);
    a.handle().circuit_breaker().unwrap().force_open();
    assert_eq!(state(&b), State::Closed);
    assert_eq!(state(&other), State::Closed);
    // Without sharing, each endpoint has its own budget.
    assert!(a.handle().budget().unwrap().try_withdraw());
    assert_eq!(b.handle().budget().unwrap().snapshot().withdrawals, 0);
}

#[test]
fn a_downstream_can_share_one_budget_across_its_endpoints() {
    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made)
        .share_budget_per_downstream(true)
        .build()
        .unwrap();
    let a = registry.get("payments", "a").unwrap().handle();
    let b = registry.get("payments", "b").unwrap().handle();
    let search = registry.get("search", "a").unwrap().handle();

    assert!(a.budget().unwrap().try_withdraw());
    assert!(b.budget().unwrap().try_withdraw());
    assert_eq!(a.budget().unwrap().snapshot().withdrawals, 2);
    assert_eq!(b.budget().unwrap().snapshot().withdrawals, 2);
    assert_eq!(search.budget().unwrap().snapshot().withdrawals, 0);
    // Still one breaker per endpoint.
    a.circuit_breaker().unwrap().force_open();
    assert_eq!(b.circuit_breaker().unwrap().state(), State::Closed);

    assert!(registry.remove("payments", "a"));
    let c = registry.get("payments", "c").unwrap().handle();
    assert_eq!(
        c.budget().unwrap().snapshot().withdrawals,
        2,
        "b still holds it"
    );
}

/// The shared budget outlives the downstream's last endpoint by `keep_budget_for`
/// (default 60 s), so that endpoints that come and go (a rolling restart, a DNS change)
/// do not get a fresh budget, and a full reserve of retries, each time.
#[tokio::test(start_paused = true)]
async fn a_downstreams_budget_outlives_its_last_endpoint_for_a_while() {
    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made)
        .share_budget_per_downstream(true)
        .build()
        .unwrap();
    assert_eq!(registry.keep_budget_for(), secs(60));
    let a = registry.get("payments", "a").unwrap().handle();
    assert!(a.budget().unwrap().try_withdraw());
    drop(a);
    assert!(registry.remove("payments", "a"));
    assert!(registry.is_empty());

    tokio::time::advance(secs(59)).await;
    let b = registry.get("payments", "b").unwrap().handle();
    assert_eq!(
        b.budget().unwrap().snapshot().withdrawals,
        1,
        "the downstream's budget, kept after its last endpoint went"
    );
    drop(b);
    assert!(registry.remove("payments", "b"));

    tokio::time::advance(secs(60)).await;
    let c = registry.get("payments", "c").unwrap().handle();
    assert_eq!(
        c.budget().unwrap().snapshot().withdrawals,
        0,
        "60 s after the last endpoint went: a new budget"
    );

    // Zero keeps it no longer than the downstream's endpoints.
    let registry = counting(&made)
        .share_budget_per_downstream(true)
        .keep_budget_for(Duration::ZERO)
        .build()
        .unwrap();
    assert!(registry
        .get("payments", "a")
        .unwrap()
        .handle()
        .budget()
        .unwrap()
        .try_withdraw());
    assert!(registry.remove("payments", "a"));
    let b = registry.get("payments", "b").unwrap().handle();
    assert_eq!(b.budget().unwrap().snapshot().withdrawals, 0);
}

#[test]
fn a_budget_the_maker_sets_is_the_one_shared() {
    let registry = Registry::builder(|downstream, endpoint| {
        let budget = seawall::retry::budget::RetryBudget::builder()
            .min_per_sec(0.5)
            .build()?;
        Ok::<_, BoxError>(Policy::builder(format!("{downstream}/{endpoint}")).budget(budget))
    })
    .share_budget_per_downstream(true)
    .build()
    .unwrap();
    let a = registry.get("payments", "a").unwrap().handle();
    let b = registry.get("payments", "b").unwrap().handle();
    // 0.5 retries/s over 10 s: 5 in reserve, for both endpoints together.
    for _ in 0..5 {
        assert!(a.budget().unwrap().try_withdraw());
    }
    assert!(!b.budget().unwrap().try_withdraw());
}

#[test]
fn a_full_registry_evicts_the_least_recently_used() {
    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made).max_entries(2).build().unwrap();
    let a = registry.get("d", "a").unwrap();
    registry.get("d", "b").unwrap();
    registry.get("d", "a").unwrap(); // a is now the most recent
    assert_eq!(keys(&registry), ["d/a", "d/b"]);

    registry.get("d", "c").unwrap(); // evicts b
    assert_eq!(registry.len(), 2);
    assert_eq!(keys(&registry), ["d/c", "d/a"]);
    assert_eq!(made.load(Ordering::SeqCst), 3);

    // a is still the same policy; b is made anew.
    a.handle().circuit_breaker().unwrap().force_open();
    assert_eq!(state(&registry.get("d", "a").unwrap()), State::ForcedOpen);
    registry.get("d", "b").unwrap(); // evicts c
    assert_eq!(made.load(Ordering::SeqCst), 4);
    assert_eq!(keys(&registry), ["d/b", "d/a"]);
    assert_eq!(registry.max_entries(), 2);
}

#[test]
fn a_registry_of_one() {
    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made).max_entries(1).build().unwrap();
    for endpoint in ["a", "b", "a", "a", "c"] {
        registry.get("d", endpoint).unwrap();
        assert_eq!(keys(&registry), [format!("d/{endpoint}")]);
    }
    assert_eq!(made.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn idle_entries_are_evicted_on_access() {
    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made).idle_timeout(secs(60)).build().unwrap();
    assert_eq!(registry.idle_timeout(), Some(secs(60)));
    registry.get("d", "a").unwrap();
    tokio::time::advance(secs(30)).await;
    registry.get("d", "b").unwrap();
    tokio::time::advance(secs(29)).await;
    registry.get("d", "b").unwrap(); // a is 59 s idle: kept
    assert_eq!(registry.len(), 2);
    tokio::time::advance(secs(1)).await;
    registry.get("d", "b").unwrap(); // a is 60 s idle: evicted
    assert_eq!(keys(&registry), ["d/b"]);
    assert_eq!(made.load(Ordering::SeqCst), 2);

    // A use refreshes the idle time: b was used just now.
    tokio::time::advance(secs(59)).await;
    assert_eq!(registry.evict_idle(), 0);
    tokio::time::advance(secs(1)).await;
    assert_eq!(registry.evict_idle(), 1);
    assert!(registry.is_empty());

    // An evicted key is made anew.
    registry.get("d", "a").unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn without_idle_timeout_only_the_bound_evicts() {
    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made).without_idle_timeout().build().unwrap();
    registry.get("d", "a").unwrap();
    tokio::time::advance(secs(365 * 24 * 3600)).await;
    assert_eq!(registry.evict_idle(), 0);
    registry.get("d", "a").unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 1);
}

#[test]
fn creation_errors_propagate_and_nothing_is_kept() {
    let attempts = Arc::new(AtomicU32::new(0));
    let registry = Registry::builder({
        let attempts = attempts.clone();
        move |downstream, _endpoint| {
            if downstream == "broken" && attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err::<PolicyBuilder, BoxError>("no such downstream".into());
            }
            Ok(Policy::builder(downstream))
        }
    })
    .build()
    .unwrap();
    let err = registry.get("broken", "a").unwrap_err();
    assert_eq!(err.to_string(), "no such downstream");
    assert!(registry.is_empty());
    // The next get tries again.
    assert_eq!(registry.get("broken", "a").unwrap().name(), "broken");
    assert_eq!(registry.len(), 1);

    // A policy that does not build: its ConfigError, through `From`.
    let registry = Registry::builder(|_, _| {
        Ok::<_, BoxError>(
            Policy::builder("bad").circuit_breaker(|breaker| breaker.failure_rate(2.0)),
        )
    })
    .build()
    .unwrap();
    let err = registry.get("d", "a").unwrap_err();
    let config = err.downcast_ref::<ConfigError>().unwrap();
    assert_eq!(config.field(), "failure_rate");
    assert!(registry.is_empty());
}

#[test]
fn remove_clear_and_handles() {
    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made).build().unwrap();
    registry.get("payments", "a").unwrap();
    registry.get("search", "b").unwrap();
    registry.get("payments", "c").unwrap();
    assert_eq!(keys(&registry), ["payments/c", "search/b", "payments/a"]);
    assert!(registry.remove("search", "b"));
    assert!(!registry.remove("search", "b"));
    assert!(!registry.remove("nope", "a"));
    assert_eq!(keys(&registry), ["payments/c", "payments/a"]);
    registry.clear();
    assert!(registry.is_empty());
    assert!(keys(&registry).is_empty());
    registry.get("payments", "a").unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 4);
    assert!(format!("{registry:?}").contains("len: 1"));
}

#[test]
fn the_builder_checks_its_values() {
    let made = Arc::new(AtomicU32::new(0));
    let err = counting(&made).max_entries(0).build().unwrap_err();
    assert_eq!((err.component(), err.field()), ("registry", "max_entries"));
    let err = counting(&made)
        .idle_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!((err.component(), err.field()), ("registry", "idle_timeout"));
    let registry = counting(&made).build().unwrap();
    assert_eq!(registry.max_entries(), 1024);
    assert_eq!(registry.idle_timeout(), Some(secs(600)));
    assert_eq!(registry.metric_names(), 256);
    assert_eq!(registry.keep_budget_for(), secs(60));
}

#[test]
fn concurrent_first_uses_make_one_policy() {
    let made = Arc::new(AtomicU32::new(0));
    let registry = Arc::new(counting(&made).build().unwrap());
    let names = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let registry = registry.clone();
            let names = names.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let policy = registry.get("payments", "a").unwrap();
                    names.lock().unwrap().push(policy.handle());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // Racing first uses may each make a policy; one is kept, the others dropped.
    assert!(made.load(Ordering::SeqCst) >= 1);
    assert_eq!(registry.len(), 1);
    // Every handle is of the one breaker.
    let handles = names.lock().unwrap();
    handles[0].circuit_breaker().unwrap().force_open();
    assert!(handles
        .iter()
        .all(|h| h.circuit_breaker().unwrap().state() == State::ForcedOpen));
}

/// The registry's recency order and contents against a plain list, over a long
/// pseudo-random sequence of gets and removes.
#[tokio::test(start_paused = true)]
async fn matches_a_simple_lru_model() {
    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made)
        .max_entries(5)
        .idle_timeout(secs(10))
        .build()
        .unwrap();
    // (key, last use in seconds), most recent first.
    let mut model: Vec<(String, u64)> = Vec::new();
    let mut expected_made = 0;
    let mut now = 0u64;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..2_000 {
        let step = next(3);
        tokio::time::advance(secs(step)).await;
        now += step;
        let downstream = ["p", "q"][next(2) as usize];
        let key = format!("{downstream}/{}", next(5));
        let endpoint = key.split_once('/').unwrap().1.to_owned();
        if next(10) == 0 {
            let was = model.iter().position(|(k, _)| *k == key);
            // A remove does not evict idle entries; the model keeps them too.
            assert_eq!(registry.remove(downstream, &endpoint), was.is_some());
            if let Some(i) = was {
                model.remove(i);
            }
        } else {
            model.retain(|(_, used)| now - used < 10);
            match model.iter().position(|(k, _)| *k == key) {
                Some(i) => {
                    model.remove(i);
                }
                None => {
                    expected_made += 1;
                    model.truncate(4);
                }
            }
            model.insert(0, (key.clone(), now));
            registry.get(downstream, &endpoint).unwrap();
        }
        let expected: Vec<_> = model.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys(&registry), expected);
        assert_eq!(made.load(Ordering::SeqCst), expected_made);
    }
}

// ===== entries in use, breakers not closed, and the lock =====

/// A client that answers at once, and one that never answers.
fn ok_client(
) -> impl tower::Service<u32, Response = u32, Error = BoxError, Future = impl Send> + Clone {
    tower::service_fn(|n: u32| async move { Ok::<_, BoxError>(n) })
}

/// Run `f` on another thread; fail (instead of hanging) if it has not returned in 10 s
/// (a deadlock).
fn within_10_s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what}: still blocked after 10 s"))
}

/// The review's case: one `get` per client, as the docs advise, and a client that lives
/// longer than the idle timeout. Its entry must stay, or the next `get` of the key makes
/// a second breaker and bulkhead beside the first.
#[tokio::test(start_paused = true)]
async fn an_entry_with_a_live_service_is_never_evicted_as_idle() {
    use tower::{Layer, Service, ServiceExt};

    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made).idle_timeout(secs(60)).build().unwrap();
    let mut client = registry.get("d", "busy").unwrap().layer(ok_client());
    registry.get("d", "idle").unwrap();
    for _ in 0..20 {
        tokio::time::advance(secs(30)).await;
        assert_eq!(client.ready().await.unwrap().call(7).await.unwrap(), 7);
        registry.get("d", "other").unwrap(); // sweeps the idle entries
    }
    assert_eq!(
        keys(&registry),
        ["d/other", "d/busy"],
        "idle: evicted; busy: kept"
    );
    assert_eq!(made.load(Ordering::SeqCst), 3, "busy, idle, other");

    // The next get of the key is the client's policy: one breaker.
    let again = registry.get("d", "busy").unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 3);
    again.handle().circuit_breaker().unwrap().force_open();
    let err = client.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<seawall::error::CircuitOpen>(), "{err}");
    drop(again);

    // Once the client is gone the entry is idle like any other.
    drop(client);
    tokio::time::advance(secs(60)).await;
    assert_eq!(registry.evict_idle(), 2);
    assert!(registry.is_empty());
}

/// A call still in flight keeps its entry too, even when its service is gone (`oneshot`
/// drops the service once it has called it).
#[tokio::test(start_paused = true)]
async fn an_entry_with_a_call_in_flight_is_never_evicted_as_idle() {
    use futures::FutureExt;
    use tower::{Layer, ServiceExt};

    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made).idle_timeout(secs(60)).build().unwrap();
    let hanging = tower::service_fn(|_: u32| std::future::pending::<Result<u32, BoxError>>());
    let mut call = Box::pin(registry.get("d", "a").unwrap().layer(hanging).oneshot(1));
    assert!((&mut call).now_or_never().is_none(), "in flight");
    tokio::time::advance(secs(120)).await;
    assert_eq!(registry.evict_idle(), 0);
    assert_eq!(keys(&registry), ["d/a"]);
    // Once the call is gone, the entry is idle from the last sweep that saw it in use.
    drop(call);
    assert_eq!(registry.evict_idle(), 0);
    tokio::time::advance(secs(60)).await;
    assert_eq!(registry.evict_idle(), 1);
}

/// `make` and `build` run outside the registry's lock: a `make` that uses the registry
/// does not deadlock, and a slow one does not hold up other keys.
#[test]
fn make_runs_outside_the_lock() {
    let registry: Arc<std::sync::OnceLock<std::sync::Weak<Registry>>> = Arc::default();
    let seen = Arc::new(AtomicU32::new(0));
    let built = Arc::new(
        Registry::builder({
            let registry = registry.clone();
            let seen = seen.clone();
            move |downstream, endpoint| {
                // A maker that asks the registry (e.g. how many endpoints it has).
                if let Some(registry) = registry.get().and_then(std::sync::Weak::upgrade) {
                    seen.store(registry.len() as u32 + 1, Ordering::SeqCst);
                }
                Ok::<_, BoxError>(Policy::builder(format!("{downstream}/{endpoint}")))
            }
        })
        .build()
        .unwrap(),
    );
    registry.set(Arc::downgrade(&built)).unwrap();
    let got = within_10_s("a make that calls the registry", {
        let built = built.clone();
        move || {
            built.get("d", "a").unwrap();
            built.get("d", "b").unwrap().name().to_owned()
        }
    });
    assert_eq!(got, "d/b");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "make saw the registry with a in it"
    );
}

#[test]
fn a_slow_make_does_not_block_other_keys() {
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let release_rx = Mutex::new(release_rx);
    let registry = Arc::new(
        Registry::builder(move |downstream, endpoint| {
            if endpoint == "slow" {
                entered_tx.lock().unwrap().send(()).unwrap();
                release_rx.lock().unwrap().recv().unwrap();
            }
            Ok::<_, BoxError>(Policy::builder(format!("{downstream}/{endpoint}")))
        })
        .build()
        .unwrap(),
    );
    registry.get("d", "fast").unwrap();
    let slow = std::thread::spawn({
        let registry = registry.clone();
        move || registry.get("d", "slow").unwrap().name().to_owned()
    });
    entered_rx.recv().unwrap(); // the slow make is running
    let fast = within_10_s("a get of another key during a slow make", {
        let registry = registry.clone();
        move || {
            let known = registry.get("d", "fast").unwrap().name().to_owned();
            let new = registry.get("d", "new").unwrap().name().to_owned();
            (known, new, registry.len())
        }
    });
    assert_eq!(fast, ("d/fast".to_owned(), "d/new".to_owned(), 2));
    release_tx.send(()).unwrap();
    assert_eq!(slow.join().unwrap(), "d/slow");
    assert_eq!(registry.len(), 3);
}

/// Two gets of one new key at once both make a policy (outside the lock); the first
/// inserted is kept and returned to both, the other dropped.
#[test]
fn racing_first_uses_of_a_key_end_with_one_policy() {
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let made = Arc::new(AtomicU32::new(0));
    let registry = Arc::new(
        Registry::builder({
            let barrier = barrier.clone();
            let made = made.clone();
            move |downstream, endpoint| {
                made.fetch_add(1, Ordering::SeqCst);
                barrier.wait(); // both gets are making the policy now
                Ok::<_, BoxError>(Policy::builder(format!("{downstream}/{endpoint}")))
            }
        })
        .share_budget_per_downstream(true)
        .build()
        .unwrap(),
    );
    let handles = within_10_s("two racing first uses", {
        let registry = registry.clone();
        move || {
            let other = std::thread::spawn({
                let registry = registry.clone();
                move || registry.get("d", "a").unwrap().handle()
            });
            let mine = registry.get("d", "a").unwrap().handle();
            (mine, other.join().unwrap())
        }
    });
    assert_eq!(made.load(Ordering::SeqCst), 2);
    assert_eq!(registry.len(), 1);
    handles.0.circuit_breaker().unwrap().force_open();
    assert_eq!(
        handles.1.circuit_breaker().unwrap().state(),
        State::ForcedOpen
    );
    assert!(handles.0.budget().unwrap().try_withdraw());
    assert_eq!(handles.1.budget().unwrap().snapshot().withdrawals, 1);
}

/// The review's reproduction: with `max_entries(4)`, four other hosts used to evict a
/// forced-open host, which came back Closed. A breaker that is not closed (open, half
/// open, forced open, disabled) is never evicted to make room.
#[tokio::test(start_paused = true)]
async fn an_entry_whose_breaker_is_not_closed_is_never_evicted_to_make_room() {
    use tower::{Layer, ServiceExt};

    let made = Arc::new(AtomicU32::new(0));
    let registry = Registry::builder({
        let made = made.clone();
        move |downstream, endpoint| {
            made.fetch_add(1, Ordering::SeqCst);
            Ok::<PolicyBuilder, BoxError>(
                Policy::builder(format!("{downstream}/{endpoint}"))
                    .without_retry()
                    .circuit_breaker(|b| b.consecutive_failures(1)),
            )
        }
    })
    .max_entries(4)
    .build()
    .unwrap();
    registry
        .get("hosts", "forced")
        .unwrap()
        .handle()
        .circuit_breaker()
        .unwrap()
        .force_open();
    let failing = tower::service_fn(|_: u32| async { Err::<u32, BoxError>("down".into()) });
    let tripped = registry.get("hosts", "tripped").unwrap().layer(failing);
    assert!(tripped.oneshot(1).await.is_err());
    for host in 0..4 {
        registry.get("hosts", &format!("other-{host}")).unwrap();
    }
    assert_eq!(registry.len(), 4);
    assert_eq!(
        state(&registry.get("hosts", "forced").unwrap()),
        State::ForcedOpen
    );
    assert_eq!(
        state(&registry.get("hosts", "tripped").unwrap()),
        State::Open
    );
    assert_eq!(made.load(Ordering::SeqCst), 6, "neither was made again");
}

/// When every entry is in use or has a breaker that is not closed, a new key gets
/// [`RegistryFull`] (nothing is evicted, nothing is made); once one is free, it gets in.
#[test]
fn a_registry_full_of_pinned_entries_refuses_a_new_key() {
    use seawall::policy::RegistryFull;

    let made = Arc::new(AtomicU32::new(0));
    let registry = counting(&made).max_entries(2).build().unwrap();
    let held = registry.get("hosts", "held").unwrap();
    let open = registry.get("hosts", "open").unwrap().handle();
    open.circuit_breaker().unwrap().force_open();
    drop(open);

    let err = registry.get("hosts", "new").unwrap_err();
    let full = err.downcast_ref::<RegistryFull>().expect("a RegistryFull");
    assert_eq!(full.max_entries(), 2);
    assert!(err.to_string().contains("2 entries"), "{err}");
    assert_eq!(
        made.load(Ordering::SeqCst),
        2,
        "the new key's policy was not made"
    );
    assert_eq!(keys(&registry), ["hosts/open", "hosts/held"]);
    // A known key is still served.
    assert_eq!(registry.get("hosts", "held").unwrap().name(), "hosts/held");

    drop(held);
    assert_eq!(registry.get("hosts", "new").unwrap().name(), "hosts/new");
    assert_eq!(
        keys(&registry),
        ["hosts/new", "hosts/open"],
        "held was evicted"
    );
}

/// Metric series are bounded whatever the keys: the first `metric_names` names keep the
/// name `make` gave them; later keys are named after their downstream, for the first
/// `metric_names` downstreams; the rest share the overflow name.
#[cfg(feature = "metrics")]
#[test]
fn metric_series_stay_bounded_whatever_the_keys() {
    use metrics_util::debugging::DebuggingRecorder;
    use std::collections::BTreeSet;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let made = Arc::new(AtomicU32::new(0));
    let names = metrics::with_local_recorder(&recorder, || {
        let registry = counting(&made)
            .max_entries(4)
            .metric_names(2)
            .build()
            .unwrap();
        assert_eq!(registry.metric_names(), 2);
        let mut names = Vec::new();
        for downstream in ["payments", "search", "ledger"] {
            for host in 0..200 {
                let policy = registry.get(downstream, &format!("host-{host}")).unwrap();
                names.push(policy.name().to_owned());
                // Transitions register their series as they happen.
                let breaker = policy.handle().circuit_breaker().unwrap().clone();
                breaker.force_open();
                breaker.reset();
            }
        }
        names
    });
    assert_eq!(
        names[..3],
        ["payments/host-0", "payments/host-1", "payments"]
    );
    assert_eq!(names[200], "search");
    assert_eq!(
        names[400], "seawall_registry_overflow",
        "no room for a third downstream"
    );

    let snapshot = snapshotter.snapshot().into_vec();
    let labels: BTreeSet<String> = snapshot
        .iter()
        .filter_map(|(key, ..)| {
            key.key()
                .labels()
                .find(|label| label.key() == "policy")
                .map(|label| label.value().to_owned())
        })
        .collect();
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        [
            "payments",
            "payments/host-0",
            "payments/host-1",
            "search",
            "seawall_registry_overflow",
        ]
    );
    // 600 keys used to leave some 8 000 series; now a few per name.
    assert!(snapshot.len() < 5 * 40, "{} series", snapshot.len());
}

#[cfg(feature = "serde")]
mod from_config {
    use super::*;
    use seawall::policy::PolicyConfig;

    #[test]
    fn each_endpoint_gets_its_downstreams_settings() {
        let config = PolicyConfig::from_toml_str(
            r#"
            [defaults]
            bulkhead = { max_concurrent = 8 }
            [policies.payments]
            bulkhead = { max_concurrent = 2 }
            "#,
        )
        .unwrap();
        let registry = Registry::from_config(config)
            .share_budget_per_downstream(true)
            .build()
            .unwrap();
        let a = registry.get("payments", "a").unwrap();
        let b = registry.get("payments", "b").unwrap();
        let whole = registry.get("payments", "").unwrap();
        let other = registry.get("ledger", "x").unwrap();
        assert_eq!(a.name(), "payments/a");
        assert_eq!(whole.name(), "payments");
        assert_eq!(other.name(), "ledger/x");
        assert_eq!(a.handle().bulkhead().unwrap().limit(), 2);
        assert_eq!(
            other.handle().bulkhead().unwrap().limit(),
            8,
            "the defaults"
        );
        assert!(a.handle().budget().unwrap().try_withdraw());
        assert_eq!(b.handle().budget().unwrap().snapshot().withdrawals, 1);
        a.handle().circuit_breaker().unwrap().force_open();
        assert_eq!(state(&b), State::Closed);
    }

    #[test]
    fn a_classifier_can_be_added_to_the_configs_builders() {
        use seawall::classify::{classify_fn, Classification};

        let config =
            PolicyConfig::from_toml_str("[policies.users]\nretry = { max_attempts = 2 }\n")
                .unwrap();
        let registry = Registry::builder(move |downstream, endpoint| {
            let classifier = classify_fn(|result: &Result<u32, BoxError>| match result {
                Ok(_) => Classification::success(),
                Err(_) => Classification::failure(),
            });
            Ok::<_, seawall::policy::ConfigFileError>(
                config
                    .builder_named(downstream, format!("{downstream}/{endpoint}"))?
                    .classifier(classifier),
            )
        })
        .build()
        .unwrap();
        assert_eq!(registry.get("users", "a").unwrap().name(), "users/a");
    }
}
