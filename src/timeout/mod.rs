//! Timeouts per attempt, and one deadline per call that travels with it.
//!
//! - [`TimeoutLayer`] bounds each attempt ([`Elapsed`](crate::error::Elapsed)).
//! - [`DeadlineLayer`] bounds the whole call: every attempt, backoff and hedge
//!   ([`DeadlineExceeded`](crate::error::DeadlineExceeded)).
//! - [`Deadline`] is the deadline of the call in progress. Every layer polled on the same
//!   task sees it ([`Deadline::current`]): the attempt timeout is the lesser of its own
//!   and what is left of the deadline; the retry layer starts no backoff that would end
//!   past it (it returns the failure it has instead); a call whose deadline has passed
//!   fails at once, unsent. Below an attempt timeout, the attempt's end (the lesser of its
//!   timeout and the deadline) is the current deadline, so the downstream learns how long
//!   the attempt will wait for it, and drops the work when the attempt is abandoned. With
//!   the `http` feature, `seawall::http::PropagateDeadlineLayer` writes what is left into
//!   the outgoing request (`grpc-timeout`, or a header such as `x-request-timeout-ms`) and
//!   `seawall::http::ServerDeadlineLayer` reads it on the server, capped, and makes it the
//!   deadline of the handler's own outgoing calls, so a chain of services shares one
//!   budget of time.
//!
//! The success path is cheap: a timer is armed only if the inner future is not ready at
//! once, and each layer reads the clock at most once per call.
//!
//! ```
//! use seawall::timeout::{DeadlineLayer, TimeoutLayer};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), seawall::BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(2))?) // the whole call
//!     .layer(TimeoutLayer::new(Duration::from_millis(300))?) // each attempt
//!     .service_fn(|name: &'static str| async move { Ok::<_, seawall::BoxError>(name.len()) });
//! assert_eq!(svc.oneshot("orders").await?, 6);
//! # Ok(()) }
//! ```

mod deadline;
pub mod error;
pub mod future;
mod layer;

pub use self::deadline::{Deadline, Scoped};
pub use self::layer::{DeadlineLayer, DeadlineService, Timeout, TimeoutLayer};

#[cfg(feature = "retry")]
pub(crate) use self::deadline::now_for_call;
#[cfg_attr(not(feature = "http"), allow(unused_imports))]
pub(crate) use self::deadline::{after, current_instant, in_scope};
