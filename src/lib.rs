//! Tower middleware that keeps one failing service from taking down the ones that call
//! it: circuit breakers, bulkheads, budgeted retries and hedges, timeouts, deadlines that
//! travel across services, and client-side throttling, composed in the order a service
//! mesh would use.
//!
//! Wrap the client of each downstream once, and a downstream that fails or hangs costs
//! its callers a fast, typed error instead of their threads, connections and latency.
//!
//! ```
//! use seawall::circuit_breaker::{CircuitBreakerLayer, State};
//! use seawall::BoxError;
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! // A downstream that is down.
//! let payments = service_fn(|amount: u64| async move {
//!     Err::<u64, BoxError>(format!("payment of {amount} failed: 503").into())
//! });
//!
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("payments")
//!     .count_window(10)
//!     .minimum_calls(5)
//!     .failure_rate(0.5)
//!     .open_duration(Duration::from_secs(5))
//!     .build()?;
//! let handle = breaker.handle();
//! let client = ServiceBuilder::new().layer(breaker).service(payments);
//!
//! for amount in 0..5 {
//!     let _ = client.clone().oneshot(amount).await; // five failures: the breaker trips
//! }
//! assert_eq!(handle.state(), State::Open);
//!
//! // Now calls fail fast, without reaching payments, and say when the next probe goes.
//! let err = client.clone().oneshot(42).await.unwrap_err();
//! let open = err.downcast_ref::<seawall::error::CircuitOpen>().unwrap();
//! assert!(open.retry_after().unwrap() <= Duration::from_secs(5));
//! # Ok(()) }
//! ```
//!
//! # Modules
//!
//! - [`bulkhead`]: a concurrency limit shared by every clone, fail-fast or with a FIFO
//!   wait, partitions for classes of traffic, and adaptive limits (AIMD, Gradient2,
//!   Vegas) that find the downstream's capacity.
//! - [`circuit_breaker`]: count and time windows, failure-rate, slow-call and
//!   consecutive-failure rules, growing open durations, exact half-open probes,
//!   fail-fast or backpressure readiness, a [`Handle`](circuit_breaker::Handle).
//! - [`chaos`] (feature `chaos`): fault injection for tests and game days (errors,
//!   latency, hangs; on servers, status codes and aborted connections), seeded, switched
//!   at run time.
//! - [`classify`]: what counts as success, failure or neither; what may be retried; any
//!   server pushback; including outcomes known only at the end of a stream.
//! - [`error`]: every rejection type, [`is_rejection`](error::is_rejection), and
//!   [`ConfigError`](error::ConfigError).
//! - `grpc` (feature `http`): gRPC status codes and a classifier that reads the status
//!   from headers or, at the end of the stream, from trailers.
//! - [`hedge`]: a copy of a slow idempotent request after a fixed delay or a latency
//!   percentile, charged to a retry budget; the first success wins.
//! - [`reqwest`] (feature `reqwest`): `ReqwestClassifier`, `ReqwestReplay`,
//!   `policy(name)` and `ClientExt::with_policy`: a `reqwest::Client` behind a policy in
//!   one line.
//! - [`retry`]: retries bounded by a budget, with jittered backoff, server pushback,
//!   request replay (streamed HTTP bodies too) and idempotency rules.
//! - [`throttle`]: client-side adaptive throttling (the Google SRE book's formula).
//! - [`timeout`]: a timeout per attempt, and one deadline per call that every layer, and
//!   the next service, sees.
//! - `http` (feature `http`): permits held until a body ends, load shedding for servers,
//!   `Retry-After` and gRPC pushback, replayable bodies, deadline headers.
//!
//! # Feature flags
//!
//! | feature | default | what |
//! |---|---|---|
//! | `circuit-breaker` | yes | [`circuit_breaker`] |
//! | `bulkhead` | yes | [`bulkhead`]: fixed and adaptive concurrency limits |
//! | `retry` | yes | [`retry`]: budgeted retries with backoff and server pushback |
//! | `hedge` | yes | [`hedge`]: budgeted hedged requests |
//! | `timeout` | yes | [`timeout`]: attempt timeouts and deadlines |
//! | `throttle` | yes | [`throttle`]: client-side adaptive throttling |
//! | `http` | no | body-long permits, load shedding, pushback, body replay, deadline headers, HTTP and gRPC classifiers ([`grpc`]) |
//! | `tower-http` | no | adapters for `tower_http::classify` classifiers |
//! | `chaos` | no | [`chaos`]: fault injection |
//! | `reqwest` | no | [`reqwest`]: a `reqwest::Client` behind a policy in one line |
//! | `metrics` | no | report through the `metrics` facade (names in [`metrics`]) |
//! | `tracing` | no | `tracing` events on state transitions |
//! | `full` | no | all of the above |
//!
//! # Conventions
//!
//! - Layers that reject calls themselves return [`BoxError`] holding one small error type
//!   per condition, as tower's middleware do; see [`error`].
//! - Bad configuration is a [`ConfigError`](error::ConfigError) from `build()`; nothing
//!   panics and nothing is clamped silently.
//! - Time comes only from `tokio::time`, so `tokio::time::pause` drives every layer in
//!   tests.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

#[cfg(feature = "chaos")]
#[cfg_attr(docsrs, doc(cfg(feature = "chaos")))]
pub mod chaos;
pub mod classify;
pub mod error;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod grpc;
#[cfg(any(feature = "metrics", docsrs))]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(not(any(feature = "metrics", docsrs)))]
mod metrics;

#[cfg(feature = "bulkhead")]
#[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
pub mod bulkhead;
#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
pub mod circuit_breaker;
#[cfg(feature = "hedge")]
#[cfg_attr(docsrs, doc(cfg(feature = "hedge")))]
pub mod hedge;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "policy")]
#[cfg_attr(docsrs, doc(cfg(feature = "policy")))]
pub mod policy;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub mod retry;
#[cfg(feature = "throttle")]
#[cfg_attr(docsrs, doc(cfg(feature = "throttle")))]
pub mod throttle;
#[cfg(feature = "timeout")]
#[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
pub mod timeout;

// Internal helpers, compiled with the layers that use them.
#[cfg(any(feature = "circuit-breaker", feature = "bulkhead"))]
mod lane;
#[cfg(any(
    feature = "circuit-breaker",
    feature = "bulkhead",
    feature = "retry",
    feature = "throttle"
))]
mod sync;
#[cfg(any(
    feature = "circuit-breaker",
    feature = "bulkhead",
    feature = "retry",
    feature = "throttle",
    feature = "timeout",
    feature = "chaos"
))]
mod time;

/// The error type of seawall's layers that reject calls on their own: tower's
/// convention. Downcast it to a type from [`error`], or ask
/// [`error::is_rejection`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
