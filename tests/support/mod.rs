//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seawall::BoxError;
use tower::{Service, ServiceExt};

/// What the fake downstream should do with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Do {
    /// Answer `Ok` at once.
    Succeed,
    /// Answer `Err` at once.
    Fail,
    /// Answer `Ok` after this long.
    SucceedAfter(Duration),
    /// Answer `Err` after this long.
    FailAfter(Duration),
    /// Never answer.
    Hang,
}

/// A downstream that does what each request says, and counts the calls it receives.
#[derive(Clone, Default)]
pub struct Downstream {
    pub calls: Arc<AtomicUsize>,
}

impl Downstream {
    pub fn received(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<Do> for Downstream {
    type Response = &'static str;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<&'static str, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, what: Do) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match what {
                Do::Succeed => Ok("ok"),
                Do::Fail => Err("downstream failed".into()),
                Do::SucceedAfter(d) => {
                    tokio::time::sleep(d).await;
                    Ok("ok")
                }
                Do::FailAfter(d) => {
                    tokio::time::sleep(d).await;
                    Err("downstream failed".into())
                }
                Do::Hang => std::future::pending().await,
            }
        })
    }
}

/// Drive one call through a clone of `svc`.
pub async fn call<S>(svc: &S, what: Do) -> Result<&'static str, BoxError>
where
    S: Service<Do, Response = &'static str, Error = BoxError> + Clone,
{
    svc.clone().oneshot(what).await
}

/// Whether `result` is a `CircuitOpen` rejection.
#[cfg(feature = "circuit-breaker")]
pub fn is_open(result: &Result<&'static str, BoxError>) -> bool {
    matches!(result, Err(e) if e.is::<seawall::error::CircuitOpen>())
}

/// A breaker builder that trips after `failures` failures in a row (no failure-rate
/// rule) and stays open for exactly `open` (no jitter).
#[cfg(feature = "circuit-breaker")]
pub fn trips_after(failures: u32, open: Duration) -> seawall::circuit_breaker::Builder {
    seawall::circuit_breaker::CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(failures)
        .open_duration(open)
        .jitter(0.0)
}

/// A small seeded generator (SplitMix64), so that every task's choices are reproducible.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
