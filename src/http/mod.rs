//! HTTP integration.
//!
//! - [`UntilBodyEnd`]: a bulkhead that keeps each call's permit until the response body
//!   has been read to its end (or dropped), so that a downstream streaming a slow body
//!   still counts against the limit.
//! - `IdempotentReplay` (with the `retry` feature): retry only the requests that are safe
//!   to send twice (idempotent methods, or an `Idempotency-Key` header).
//! - `ReplayBodyLayer` and `BodyReplay` (with the `retry` feature): buffer streamed
//!   request bodies (up to 64 KiB by default) so that a retry can send them again.
//! - [`deadline`] (with the `timeout` feature): `PropagateDeadlineLayer` writes what is
//!   left of the call's deadline into outgoing requests (`grpc-timeout`, or
//!   `x-request-timeout-ms`); `ServerDeadlineLayer` reads it on the server, capped, and
//!   makes it the deadline of the handler's own outgoing calls.
//! - [`pushback`]: parse `Retry-After` and `grpc-retry-pushback-ms`, never trusting them.
//! - [`StatusClassifier`]: what an HTTP response or error means for the breaker and
//!   the retry layer (5xx, 408, 429 and transport errors are failures; 502, 503, 504,
//!   408 and 429 are retried, after `Retry-After`; other 4xx count as nothing). For
//!   gRPC, see [`grpc`](crate::grpc).
//! - [`ShedLoadLayer`]: a server (axum, tonic, hyper) that answers requests over its
//!   limit at once with 503 and `Retry-After` (gRPC: `RESOURCE_EXHAUSTED`), before doing
//!   the work.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use seawall::bulkhead::BulkheadLayer;
//! use seawall::http::UntilBodyEnd;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let bulkhead = BulkheadLayer::builder()
//!     .max_concurrent(1)
//!     .build()
//!     .unwrap()
//!     .release_on::<UntilBodyEnd>();
//! let handle = bulkhead.handle();
//! let svc = bulkhead.layer(tower::service_fn(|_req: ()| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("hello"))))
//! }));
//!
//! let response = svc.oneshot(()).await.unwrap();
//! assert_eq!(handle.in_flight(), 1, "the body has not been read yet");
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, "hello");
//! assert_eq!(handle.in_flight(), 0, "given back at the end of the body");
//! # }
//! ```

mod classify;
#[cfg(feature = "timeout")]
pub mod deadline;
pub mod pushback;
#[cfg(feature = "retry")]
mod replay;
#[cfg(feature = "retry")]
pub mod replay_body;
mod shed;
#[cfg(feature = "tower-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-http")))]
pub mod tower_http;

pub use self::classify::StatusClassifier;
#[cfg(feature = "timeout")]
pub use self::deadline::{
    PropagateDeadline, PropagateDeadlineLayer, PropagateFuture, ServerDeadline,
    ServerDeadlineBuilder, ServerDeadlineLayer,
};
#[cfg(feature = "retry")]
pub use self::replay::{is_idempotent, IdempotentReplay, IDEMPOTENCY_KEY};
#[cfg(feature = "retry")]
pub use self::replay_body::{BodyReplay, ReplayBody, ReplayBodyLayer, ReplayBodyService};
pub use self::shed::{ShedFuture, ShedLoad, ShedLoadLayer};

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::bulkhead::{Permit, Release};

/// Keep a bulkhead permit until the response body ends; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UntilBodyEnd;

impl<B> Release<http::Response<B>> for UntilBodyEnd {
    type Response = http::Response<PermitBody<B>>;

    fn release(response: http::Response<B>, permit: Permit) -> Self::Response {
        response.map(|body| PermitBody::new(body, Some(permit)))
    }

    fn without_permit(response: http::Response<B>) -> Self::Response {
        response.map(|body| PermitBody::new(body, None))
    }
}

pin_project! {
    /// A response body that holds its call's bulkhead permit until the body ends, fails,
    /// or is dropped.
    pub struct PermitBody<B> {
        #[pin]
        inner: B,
        permit: Option<Permit>,
    }
}

impl<B> PermitBody<B> {
    fn new(inner: B, permit: Option<Permit>) -> Self {
        Self { inner, permit }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: Body> Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        // The end of the body, or an error that ends it: the call is over.
        if !matches!(frame, Some(Ok(_))) {
            drop(this.permit.take());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for PermitBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermitBody").finish_non_exhaustive()
    }
}
