//! A retry needs a copy of the request.

use crate::classify::{ClassifyFn, ErrorsAsFailures};

/// Makes the copy of a request that a retry sends.
///
/// [`CloneRequest`] (the default) clones requests that are `Clone`. A request that
/// cannot be copied (`None`) is sent once and never retried: nothing is ever sent twice
/// beyond the attempts made.
///
/// ```
/// use seawall::retry::replay::{CloneRequest, Replay};
///
/// assert_eq!(CloneRequest.replay(&String::from("GET /")), Some(String::from("GET /")));
/// ```
pub trait Replay<Req> {
    /// A copy of `request` to send again, or `None` if it cannot be sent again.
    fn replay(&self, request: &Req) -> Option<Req>;

    /// Whether `copy`, made earlier by [`replay`](Self::replay), can be sent now and in
    /// full. A copy whose body is buffered while the first attempt streams it can stop
    /// being whole (the body outgrew its buffer) or be not yet whole (another attempt is
    /// still reading it); such a copy is not sent. Copies made by cloning always can.
    ///
    /// ```
    /// use seawall::retry::replay::{CloneRequest, Replay};
    ///
    /// let copy = CloneRequest.replay(&7_u32).unwrap();
    /// assert!(CloneRequest.can_replay(&copy));
    /// ```
    fn can_replay(&self, copy: &Req) -> bool {
        let _ = copy;
        true
    }

    /// Whether `copy` may be sent as a retry after `result`, the outcome of the attempt
    /// before it (default: [`can_replay`](Self::can_replay)). A replay that copies a
    /// request only in case a failure shows that nothing was processed (gRPC's
    /// transparent retries, see `seawall::grpc::GrpcReplay`) says here which failures
    /// those are. Hedges follow no failure: they ask [`can_replay`](Self::can_replay).
    ///
    /// ```
    /// use seawall::retry::replay::{CloneRequest, Replay};
    ///
    /// let copy = CloneRequest.replay(&7_u32).unwrap();
    /// assert!(CloneRequest.can_retry(&copy, &Err::<(), _>("connection reset")));
    /// ```
    fn can_retry<T, E: 'static>(&self, copy: &Req, result: &Result<T, E>) -> bool {
        let _ = result;
        self.can_replay(copy)
    }
}

/// The replay that goes with a classifier: what a retry or hedge stage copies when it is
/// given this classifier and no [`replay`](crate::retry::Builder::replay) of its own.
///
/// The classifier says what kind of calls it judges, so it knows what is safe to send
/// twice: [`ErrorsAsFailures`] and [`classify_fn`] closures go with [`CloneRequest`] (any
/// request that is `Clone`); `seawall::http::StatusClassifier` (and the `tower-http`
/// adapter) with `seawall::http::IdempotentReplay`, so that a POST is sent once;
/// `seawall::reqwest::ReqwestClassifier` with `seawall::reqwest::ReqwestReplay`;
/// `seawall::grpc::GrpcClassifier` with `seawall::grpc::GrpcReplay`, which follows gRPC's
/// retry rules. [`Policy::builder`](crate::policy::Policy::builder)`(name).classifier(c)`
/// takes the classifier's replay; call `replay` after `classifier` to choose another. (A
/// bare [`RetryLayer`](crate::retry::RetryLayer) keeps the replay it is given.)
///
/// A classifier of your own implements it in one line (`CloneRequest` if any `Clone`
/// request may be sent twice):
///
/// ```
/// use seawall::classify::{Classification, Classify, NoEos, Verdict};
/// use seawall::retry::replay::{CloneRequest, DefaultReplay};
///
/// #[derive(Clone)]
/// struct EvenIsOk;
/// impl<E> Classify<u32, E> for EvenIsOk {
///     type Eos = NoEos;
///     fn classify(&self, result: &Result<u32, E>) -> Verdict<NoEos> {
///         Verdict::Classified(match result {
///             Ok(n) if n % 2 == 0 => Classification::success(),
///             _ => Classification::failure(),
///         })
///     }
/// }
/// impl DefaultReplay for EvenIsOk {
///     type Replay = CloneRequest;
///     fn default_replay(&self) -> CloneRequest {
///         CloneRequest
///     }
/// }
///
/// let policy = seawall::policy::Policy::builder("even").classifier(EvenIsOk).build()?;
/// # let _ = policy;
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
///
/// [`ErrorsAsFailures`]: crate::classify::ErrorsAsFailures
/// [`classify_fn`]: crate::classify::classify_fn
pub trait DefaultReplay {
    /// The replay.
    type Replay: Clone;

    /// The replay a stage with this classifier uses unless it is given another.
    fn default_replay(&self) -> Self::Replay;
}

impl DefaultReplay for ErrorsAsFailures {
    type Replay = CloneRequest;

    fn default_replay(&self) -> CloneRequest {
        CloneRequest
    }
}

/// A closure's classifier copies any `Clone` request: for HTTP requests, set
/// `seawall::http::IdempotentReplay` after it (or use `seawall::http::StatusClassifier`).
impl<F> DefaultReplay for ClassifyFn<F> {
    type Replay = CloneRequest;

    fn default_replay(&self) -> CloneRequest {
        CloneRequest
    }
}

/// Replays requests by cloning them; see [`Replay`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneRequest;

impl<Req: Clone> Replay<Req> for CloneRequest {
    #[inline]
    fn replay(&self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}
