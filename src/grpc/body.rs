//! The response body that records a gRPC call's outcome when its stream ends.

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{Code, GrpcClassifier};
use crate::classify::{Classification, RecordOutcome};

pin_project! {
    /// A gRPC response body that records its call's outcome, exactly once, when the
    /// stream ends: from the `grpc-status` of its trailers, as `UNKNOWN` when it ends
    /// without trailers, or as a failure when it fails. Dropped before its end, it
    /// records nothing (the recorder's drop counts the call as nothing).
    ///
    /// A response classified at once (the status was in its headers) carries no
    /// recorder, and its body passes every frame through untouched.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use seawall::circuit_breaker::CircuitBreakerLayer;
    /// use seawall::grpc::{GrpcBody, GrpcClassifier};
    /// use tower::{Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let breaker = CircuitBreakerLayer::builder()
    ///     .classifier(GrpcClassifier::new())
    ///     .build()
    ///     .unwrap();
    /// let handle = breaker.handle();
    /// let svc = breaker.layer(tower::service_fn(|_req: ()| async {
    ///     let mut trailers = http::HeaderMap::new();
    ///     trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    ///     let body = Full::new(Bytes::from("reply")).with_trailers(std::future::ready(Some(Ok(trailers))));
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(body))
    /// }));
    ///
    /// let response = svc.oneshot(()).await.unwrap();
    /// let mut body: GrpcBody<_, _> = response.into_body();
    /// assert!(body.is_pending(), "the status comes in the trailers");
    /// while let Some(frame) = body.frame().await {
    ///     frame.unwrap();
    /// }
    /// assert!(!body.is_pending(), "OK was recorded at the trailers");
    /// assert_eq!(handle.snapshot().failures, 0);
    /// # }
    /// ```
    pub struct GrpcBody<B, R> {
        #[pin]
        inner: B,
        // The layer's recorder and the rules to judge the trailers by; `None` once
        // recorded, or for a response classified at once.
        pending: Option<(R, GrpcClassifier)>,
    }
}

impl<B, R> GrpcBody<B, R> {
    pub(super) fn new(inner: B, pending: Option<(R, GrpcClassifier)>) -> Self {
        Self { inner, pending }
    }

    /// The wrapped body.
    ///
    /// ```
    /// use seawall::classify::{Classification, ClassifyEos, RecordOutcome};
    /// use seawall::grpc::GrpcEos;
    ///
    /// struct Ignore;
    /// impl RecordOutcome for Ignore {
    ///     fn record(self, _: Classification) {}
    /// }
    ///
    /// // A response classified from its headers: no recorder rides along.
    /// let response = <GrpcEos as ClassifyEos<http::Response<&str>>>::passthrough::<Ignore>(
    ///     http::Response::new("body"),
    /// );
    /// assert_eq!(*response.body().get_ref(), "body");
    /// assert!(!response.body().is_pending());
    /// ```
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Whether the call's outcome is still to be recorded: `false` once the stream
    /// ended, and for a response that was classified from its headers.
    ///
    /// ```
    /// use seawall::classify::{Classification, ClassifyEos, RecordOutcome};
    /// use seawall::grpc::GrpcEos;
    ///
    /// struct Ignore;
    /// impl RecordOutcome for Ignore {
    ///     fn record(self, _: Classification) {}
    /// }
    ///
    /// // A response classified from its headers: no recorder rides along.
    /// let response = <GrpcEos as ClassifyEos<http::Response<&str>>>::passthrough::<Ignore>(
    ///     http::Response::new("body"),
    /// );
    /// assert_eq!(*response.body().get_ref(), "body");
    /// assert!(!response.body().is_pending());
    /// ```
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }
}

impl<B: Body, R: RecordOutcome> Body for GrpcBody<B, R> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if this.pending.is_some() {
            let outcome = match &frame {
                Some(Ok(frame)) => frame.trailers_ref().map(Outcome::Trailers),
                Some(Err(_)) => Some(Outcome::Failed),
                None => Some(Outcome::Ended),
            };
            if let Some(outcome) = outcome {
                if let Some((recorder, classifier)) = this.pending.take() {
                    recorder.record(match outcome {
                        Outcome::Trailers(trailers) => classifier.classify_trailers(trailers),
                        // The stream ended with no status at all: a protocol error.
                        Outcome::Ended => classifier.classify_code(Code::Unknown, None),
                        // Reset, or the connection dropped, mid-stream.
                        Outcome::Failed => Classification::failure(),
                    });
                }
            }
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

/// How a watched stream ended.
enum Outcome<'a> {
    Trailers(&'a http::HeaderMap),
    Ended,
    Failed,
}

impl<B, R> fmt::Debug for GrpcBody<B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcBody")
            .field("pending", &self.is_pending())
            .finish_non_exhaustive()
    }
}
