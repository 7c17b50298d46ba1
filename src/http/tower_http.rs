//! Adapters for the classifiers of [`tower_http::classify`].
//!
//! [`TowerHttpClassifier`] turns a `tower_http` [`ClassifyResponse`] (such as
//! `ServerErrorsAsFailures`, `StatusInRangeAsFailures` or `GrpcErrorsAsFailures`) into
//! a seawall [`Classify`], so that a classifier already written for `tower_http`'s
//! tracing and metrics layers also drives the breaker and the retry layer. A response
//! that `tower_http` classifies only at its end (`ClassifiedResponse::RequiresEos`, a
//! gRPC status in the trailers) is recorded at the end of its stream by a
//! [`TowerHttpBody`], as [`GrpcBody`](crate::grpc::GrpcBody) does.
//!
//! What the adapter maps, and what it does not:
//!
//! - `Ok(())` is a success. A failure class is a retryable failure, unless
//!   [`map_failure`](TowerHttpClassifier::map_failure) says otherwise (ignored, not
//!   retryable, a pushback) from the failure class.
//! - Errors from the inner service are classified as
//!   [`StatusClassifier::classify_error`](crate::http::StatusClassifier::classify_error)
//!   does (local seawall rejections are ignored): `tower_http`'s `classify_error` only
//!   formats an error into its failure class, which would allocate and say nothing
//!   more.
//! - A body that fails mid-stream is a failure; a body dropped before its end records
//!   nothing.
//! - `tower_http`'s `MakeClassifier` makes a classifier from each *request*; seawall's
//!   classifiers see only the result, so pass the `ClassifyResponse` itself (the
//!   built-ins are both).
//! - `tower_http`'s classifiers do not read `Retry-After` or `grpc-retry-pushback-ms`;
//!   use [`StatusClassifier`] or
//!   [`GrpcClassifier`](crate::grpc::GrpcClassifier) for server pushback.
//!
//! ```
//! use seawall::circuit_breaker::{CircuitBreakerLayer, State};
//! use seawall::http::tower_http::TowerHttpClassifier;
//! use tower::{Layer, ServiceExt};
//! use tower_http::classify::ServerErrorsAsFailures;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let breaker = CircuitBreakerLayer::builder()
//!     .without_failure_rate()
//!     .consecutive_failures(1)
//!     .classifier(TowerHttpClassifier::new(ServerErrorsAsFailures::new()))
//!     .build()
//!     .unwrap();
//! let handle = breaker.handle();
//! let svc = breaker.layer(tower::service_fn(|_req: ()| async {
//!     let response = http::Response::builder().status(500).body(()).unwrap();
//!     Ok::<_, std::convert::Infallible>(response)
//! }));
//! let _ = svc.oneshot(()).await;
//! assert_eq!(handle.state(), State::Open);
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ::tower_http::classify::{
    ClassifiedResponse, ClassifyEos as TowerClassifyEos, ClassifyResponse,
};
use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::classify::{Classification, Classify, ClassifyEos, RecordOutcome, Verdict};
use crate::http::StatusClassifier;

/// Turns a `tower_http` failure class into a seawall [`Classification`].
///
/// Implemented by [`AllFailures`] (the default) and by every closure
/// `Fn(&FailureClass) -> Classification`.
///
/// ```
/// use seawall::classify::Classification;
/// use seawall::http::tower_http::{AllFailures, MapFailure};
///
/// assert!(AllFailures.map_failure(&"any class").is_failure());
/// let ignore = |_: &&str| Classification::ignored();
/// assert!(!ignore.map_failure(&"any class").is_failure());
/// ```
pub trait MapFailure<FailureClass> {
    /// The classification of a response (or stream) that `tower_http` calls a failure.
    fn map_failure(&self, class: &FailureClass) -> Classification;
}

/// Every `tower_http` failure is a retryable failure; see [`MapFailure`] for an example.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllFailures;

impl<FailureClass> MapFailure<FailureClass> for AllFailures {
    #[inline]
    fn map_failure(&self, _class: &FailureClass) -> Classification {
        Classification::failure()
    }
}

impl<FailureClass, F> MapFailure<FailureClass> for F
where
    F: Fn(&FailureClass) -> Classification,
{
    #[inline]
    fn map_failure(&self, class: &FailureClass) -> Classification {
        self(class)
    }
}

/// A `tower_http` [`ClassifyResponse`] as a seawall [`Classify`]; see the
/// [module docs](self).
///
/// ```
/// use seawall::classify::{Classification, Classify, Verdict};
/// use seawall::http::tower_http::TowerHttpClassifier;
/// use tower_http::classify::{GrpcErrorsAsFailures, GrpcFailureClass};
///
/// // Count gRPC errors against the downstream, but retry only UNAVAILABLE (14).
/// let classifier = TowerHttpClassifier::new(GrpcErrorsAsFailures::new())
///     .map_failure(|class: &GrpcFailureClass| match class {
///         GrpcFailureClass::Code(code) => Classification::failure().retryable(code.get() == 14),
///         GrpcFailureClass::Error(_) => Classification::failure(),
///     });
/// let internal = http::Response::builder().header("grpc-status", "13").body(()).unwrap();
/// match classifier.classify(&Ok::<_, std::io::Error>(internal)) {
///     Verdict::Classified(c) => assert!(c.is_failure() && !c.is_retryable()),
///     Verdict::AtEndOfStream(_) => unreachable!("the status was in the headers"),
/// }
/// ```
#[derive(Clone, Copy, Default)]
pub struct TowerHttpClassifier<C, F = AllFailures> {
    classifier: C,
    map: F,
}

impl<C> TowerHttpClassifier<C> {
    /// Adapt `classifier`; every failure it reports is a retryable failure.
    ///
    /// See [`TowerHttpClassifier`] for an example.
    pub fn new(classifier: C) -> Self {
        Self {
            classifier,
            map: AllFailures,
        }
    }
}

impl<C, F> TowerHttpClassifier<C, F> {
    /// Classify `tower_http`'s failures with `map` (a closure from the failure class
    /// to a [`Classification`]) instead.
    ///
    /// See [`TowerHttpClassifier`] for an example.
    pub fn map_failure<F2>(self, map: F2) -> TowerHttpClassifier<C, F2> {
        TowerHttpClassifier {
            classifier: self.classifier,
            map,
        }
    }

    /// The adapted classifier.
    ///
    /// ```
    /// use seawall::http::tower_http::TowerHttpClassifier;
    /// use tower_http::classify::ServerErrorsAsFailures;
    ///
    /// let adapted = TowerHttpClassifier::new(ServerErrorsAsFailures::new());
    /// let _: &ServerErrorsAsFailures = adapted.get_ref();
    /// ```
    pub fn get_ref(&self) -> &C {
        &self.classifier
    }
}

impl<C: fmt::Debug, F> fmt::Debug for TowerHttpClassifier<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerHttpClassifier")
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<C, F, B, E> Classify<Response<B>, E> for TowerHttpClassifier<C, F>
where
    C: ClassifyResponse + Clone,
    F: MapFailure<C::FailureClass> + Clone,
    E: 'static,
{
    type Eos = TowerHttpEos<C::ClassifyEos, F>;

    fn classify(&self, result: &Result<Response<B>, E>) -> Verdict<Self::Eos> {
        match result {
            Ok(response) => match self.classifier.clone().classify_response(response) {
                ClassifiedResponse::Ready(Ok(())) => Verdict::Classified(Classification::success()),
                ClassifiedResponse::Ready(Err(class)) => {
                    Verdict::Classified(self.map.map_failure(&class))
                }
                ClassifiedResponse::RequiresEos(eos) => Verdict::AtEndOfStream(TowerHttpEos {
                    eos,
                    map: self.map.clone(),
                }),
            },
            Err(error) => Verdict::Classified(StatusClassifier::classify_error(error)),
        }
    }
}

/// The end-of-stream half of [`TowerHttpClassifier`]: `tower_http`'s own end-of-stream
/// classifier, and the failure mapping. It wraps the response's body in a
/// [`TowerHttpBody`].
///
/// ```
/// use seawall::classify::{Classify, Verdict};
/// use seawall::http::tower_http::TowerHttpClassifier;
/// use tower_http::classify::GrpcErrorsAsFailures;
///
/// let streamed = http::Response::new(()); // no grpc-status in the headers
/// let verdict = TowerHttpClassifier::new(GrpcErrorsAsFailures::new())
///     .classify(&Ok::<_, std::io::Error>(streamed));
/// assert!(matches!(verdict, Verdict::AtEndOfStream(_)));
/// ```
#[derive(Clone, Copy)]
pub struct TowerHttpEos<E, F> {
    eos: E,
    map: F,
}

impl<E: fmt::Debug, F> fmt::Debug for TowerHttpEos<E, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerHttpEos")
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl<B, E, F> ClassifyEos<Response<B>> for TowerHttpEos<E, F>
where
    E: TowerClassifyEos,
    F: MapFailure<E::FailureClass>,
{
    type Response<R: RecordOutcome> = Response<TowerHttpBody<B, E, F, R>>;

    #[inline]
    fn defer<R: RecordOutcome>(self, response: Response<B>, recorder: R) -> Self::Response<R> {
        response.map(|inner| TowerHttpBody {
            inner,
            pending: Some((recorder, self.eos, self.map)),
        })
    }

    #[inline]
    fn passthrough<R: RecordOutcome>(response: Response<B>) -> Self::Response<R> {
        response.map(|inner| TowerHttpBody {
            inner,
            pending: None,
        })
    }
}

pin_project! {
    /// A response body that records its call's outcome, exactly once, when the stream
    /// ends, as `tower_http`'s end-of-stream classifier judges the trailers (or their
    /// absence); a body error is a failure; dropped before its end, it records nothing.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use seawall::circuit_breaker::CircuitBreakerLayer;
    /// use seawall::http::tower_http::TowerHttpClassifier;
    /// use tower::{Layer, ServiceExt};
    /// use tower_http::classify::GrpcErrorsAsFailures;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let breaker = CircuitBreakerLayer::builder()
    ///     .classifier(TowerHttpClassifier::new(GrpcErrorsAsFailures::new()))
    ///     .build()
    ///     .unwrap();
    /// let handle = breaker.handle();
    /// let svc = breaker.layer(tower::service_fn(|_req: ()| async {
    ///     let mut trailers = http::HeaderMap::new();
    ///     trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
    ///     let body = Full::new(Bytes::from("reply")).with_trailers(async { Some(Ok(trailers)) });
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(body))
    /// }));
    ///
    /// let response = svc.oneshot(()).await.unwrap();
    /// assert!(response.body().is_pending());
    /// response.into_body().collect().await.unwrap();
    /// assert_eq!(handle.snapshot().failures, 1);
    /// # }
    /// ```
    pub struct TowerHttpBody<B, E, F, R> {
        #[pin]
        inner: B,
        // `None` once recorded, or for a response classified at once.
        pending: Option<(R, E, F)>,
    }
}

impl<B, E, F, R> TowerHttpBody<B, E, F, R> {
    /// The wrapped body.
    ///
    /// ```
    /// use seawall::classify::{Classification, ClassifyEos, RecordOutcome};
    /// use seawall::http::tower_http::{AllFailures, TowerHttpEos};
    /// use tower_http::classify::GrpcEosErrorsAsFailures;
    ///
    /// struct Ignore;
    /// impl RecordOutcome for Ignore {
    ///     fn record(self, _: Classification) {}
    /// }
    ///
    /// type Eos = TowerHttpEos<GrpcEosErrorsAsFailures, AllFailures>;
    /// // A response classified from its headers: no recorder rides along.
    /// let response = <Eos as ClassifyEos<http::Response<&str>>>::passthrough::<Ignore>(
    ///     http::Response::new("body"),
    /// );
    /// assert_eq!(*response.body().get_ref(), "body");
    /// assert!(!response.body().is_pending());
    /// ```
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Whether the call's outcome is still to be recorded.
    ///
    /// ```
    /// use seawall::classify::{Classification, ClassifyEos, RecordOutcome};
    /// use seawall::http::tower_http::{AllFailures, TowerHttpEos};
    /// use tower_http::classify::GrpcEosErrorsAsFailures;
    ///
    /// struct Ignore;
    /// impl RecordOutcome for Ignore {
    ///     fn record(self, _: Classification) {}
    /// }
    ///
    /// type Eos = TowerHttpEos<GrpcEosErrorsAsFailures, AllFailures>;
    /// // A response classified from its headers: no recorder rides along.
    /// let response = <Eos as ClassifyEos<http::Response<&str>>>::passthrough::<Ignore>(
    ///     http::Response::new("body"),
    /// );
    /// assert_eq!(*response.body().get_ref(), "body");
    /// assert!(!response.body().is_pending());
    /// ```
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }
}

impl<B, E, F, R> Body for TowerHttpBody<B, E, F, R>
where
    B: Body,
    E: TowerClassifyEos,
    F: MapFailure<E::FailureClass>,
    R: RecordOutcome,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if this.pending.is_some() {
            let end = match &frame {
                Some(Ok(frame)) => frame
                    .trailers_ref()
                    .map(|trailers| End::Eos(Some(trailers))),
                Some(Err(_)) => Some(End::Failed),
                None => Some(End::Eos(None)),
            };
            if let Some(end) = end {
                if let Some((recorder, eos, map)) = this.pending.take() {
                    recorder.record(match end {
                        End::Eos(trailers) => match eos.classify_eos(trailers) {
                            Ok(()) => Classification::success(),
                            Err(class) => map.map_failure(&class),
                        },
                        End::Failed => Classification::failure(),
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
enum End<'a> {
    /// At its end, with these trailers or none.
    Eos(Option<&'a HeaderMap>),
    /// With a body error.
    Failed,
}

impl<B, E, F, R> fmt::Debug for TowerHttpBody<B, E, F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerHttpBody")
            .field("pending", &self.is_pending())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use futures::stream::{self, StreamExt};
    use http_body_util::{BodyExt, StreamBody};
    use tower_http::classify::{GrpcErrorsAsFailures, ServerErrorsAsFailures};

    use super::*;
    use crate::classify::Health;

    /// Records what it is told, or that it was dropped unrecorded.
    struct Log(Arc<Mutex<Vec<Option<Health>>>>, bool);

    impl RecordOutcome for Log {
        fn record(mut self, classification: Classification) {
            self.0.lock().unwrap().push(Some(classification.health()));
            self.1 = true;
        }
    }

    impl Drop for Log {
        fn drop(&mut self) {
            if !self.1 {
                self.0.lock().unwrap().push(None);
            }
        }
    }

    fn now<C: Classify<Response<()>, crate::BoxError>>(
        classifier: &C,
        result: Result<Response<()>, crate::BoxError>,
    ) -> Classification {
        match classifier.classify(&result) {
            Verdict::Classified(c) => c,
            Verdict::AtEndOfStream(_) => panic!("expected a verdict at once"),
        }
    }

    #[test]
    fn server_errors_and_errors() {
        let c = TowerHttpClassifier::new(ServerErrorsAsFailures::new());
        let status = |s: u16| Response::builder().status(s).body(()).unwrap();
        assert!(now(&c, Ok(status(200))).is_success());
        assert!(now(&c, Ok(status(404))).is_success(), "tower_http's rule");
        let failed = now(&c, Ok(status(503)));
        assert!(failed.is_failure() && failed.is_retryable());
        assert!(now(&c, Err("reset".into())).is_failure());
        let open: crate::BoxError = Box::new(crate::error::CircuitOpen::new(None));
        assert_eq!(now(&c, Err(open)).health(), Health::Ignored);

        let c = c.map_failure(|_: &_| Classification::failure().retryable(false));
        assert!(!now(&c, Ok(status(503))).is_retryable());
    }

    type Chunk = Result<Frame<Bytes>, std::io::Error>;
    type Streamed = StreamBody<stream::BoxStream<'static, Chunk>>;
    type Outcomes = Arc<Mutex<Vec<Option<Health>>>>;

    /// A streamed gRPC response of `frames` (then stalling, if `stall`), classified by
    /// `GrpcErrorsAsFailures`; its body, and what its recorder was told.
    fn streamed(
        frames: Vec<Chunk>,
        stall: bool,
    ) -> (
        impl http_body::Body<Data = Bytes, Error = std::io::Error> + Unpin,
        Outcomes,
    ) {
        let frames = stream::iter(frames);
        let frames = if stall {
            frames.chain(stream::pending()).boxed()
        } else {
            frames.boxed()
        };
        let response: Response<Streamed> = Response::new(StreamBody::new(frames));
        let classifier = TowerHttpClassifier::new(GrpcErrorsAsFailures::new());
        let result = Ok::<_, crate::BoxError>(response);
        let Verdict::AtEndOfStream(eos) = classifier.classify(&result) else {
            panic!("no grpc-status in the headers: decided at the end");
        };
        let outcomes = Outcomes::default();
        let Ok(response) = result else { unreachable!() };
        let response = eos.defer(response, Log(outcomes.clone(), false));
        assert!(response.body().is_pending());
        (response.into_body(), outcomes)
    }

    fn message() -> Chunk {
        Ok(Frame::data(Bytes::from_static(b"m")))
    }

    fn trailers(code: &'static str) -> Chunk {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static(code));
        Ok(Frame::trailers(trailers))
    }

    #[tokio::test]
    async fn grpc_status_in_the_trailers_is_recorded_once_at_the_end() {
        let (body, outcomes) = streamed(vec![message(), trailers("14")], false);
        body.collect().await.unwrap();
        assert_eq!(*outcomes.lock().unwrap(), [Some(Health::Failure)]);

        let (body, outcomes) = streamed(vec![message(), trailers("0")], false);
        body.collect().await.unwrap();
        assert_eq!(*outcomes.lock().unwrap(), [Some(Health::Success)]);

        // tower_http's gRPC rule: no trailers at all is not a failure.
        let (body, outcomes) = streamed(vec![message()], false);
        body.collect().await.unwrap();
        assert_eq!(*outcomes.lock().unwrap(), [Some(Health::Success)]);
    }

    #[tokio::test]
    async fn a_body_error_is_a_failure_and_a_dropped_body_records_nothing() {
        let (body, outcomes) =
            streamed(vec![message(), Err(std::io::Error::other("reset"))], false);
        assert!(body.collect().await.is_err());
        assert_eq!(*outcomes.lock().unwrap(), [Some(Health::Failure)]);

        let (mut body, outcomes) = streamed(vec![message()], true);
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!(*outcomes.lock().unwrap(), [None], "dropped unrecorded");
    }

    #[test]
    fn passthrough_carries_no_recorder() {
        let response = <TowerHttpEos<tower_http::classify::GrpcEosErrorsAsFailures, AllFailures> as ClassifyEos<Response<()>>>::passthrough::<Log>(Response::new(()));
        assert!(!response.body().is_pending());
    }
}
