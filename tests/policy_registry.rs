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

    // Once no entry of the downstream is left, its budget goes with them.
    assert!(registry.remove("payments", "a"));
    let c = registry.get("payments", "c").unwrap().handle();
    assert_eq!(
        c.budget().unwrap().snapshot().withdrawals,
        2,
        "b still holds it"
    );
    assert!(registry.remove("payments", "b"));
    assert!(registry.remove("payments", "c"));
    let d = registry.get("payments", "d").unwrap().handle();
    assert_eq!(
        d.budget().unwrap().snapshot().withdrawals,
        0,
        "a new budget"
    );
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
    assert_eq!(made.load(Ordering::SeqCst), 1);
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
