//! Request bodies that a retry (or a hedge) can send again.
//!
//! A streamed body can be read only once. [`ReplayBody`] keeps what the first attempt
//! reads, up to a limit (default [`DEFAULT_LIMIT`], 64 KiB), so that a later attempt can
//! send the same bytes again, then read on from the source if the first attempt stopped
//! early. A body that outgrows the limit is sent once, in full, and never again: the
//! buffer is dropped at that moment and every copy reports that it cannot be replayed
//! ([`Replay::can_replay`] is false), so the retry returns the failure it has instead of
//! sending half a body.

use std::error::Error;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, Bytes};
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

use crate::retry::replay::Replay;
use crate::BoxError;

/// The default limit of the replay buffer: 64 KiB per request.
pub const DEFAULT_LIMIT: usize = 64 * 1024;

/// A request body that is buffered as it is read, so that copies of it can be sent
/// again; see the [module docs](self).
///
/// Every copy shares the buffer. One copy at a time reads the source; a copy that
/// reaches the end of the buffer takes the source over from a copy that was dropped
/// before the end, or, while another copy is still reading it (a hedge and the attempt
/// it hedges), waits for that copy to read more.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use seawall::http::ReplayBody;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let first = ReplayBody::new(Full::new(Bytes::from("order #7")), 1024);
/// let second = first.try_clone().expect("nothing read yet");
/// assert_eq!(first.collect().await.unwrap().to_bytes(), "order #7");
/// assert!(second.can_replay(), "the whole body is in the buffer");
/// assert_eq!(second.collect().await.unwrap().to_bytes(), "order #7");
/// # }
/// ```
pub struct ReplayBody<B> {
    shared: Arc<Shared<B>>,
    /// The source, while this copy is the one reading it.
    source: Option<B>,
    /// Buffered chunks this copy has sent.
    replayed: usize,
    /// Bytes this copy has sent, for its size hint.
    sent: u64,
    trailers_sent: bool,
}

struct Shared<B> {
    state: Mutex<State<B>>,
    limit: usize,
    /// The source's size hint when it was wrapped.
    hint: SizeHint,
}

struct State<B> {
    chunks: Vec<Bytes>,
    buffered: usize,
    trailers: Option<HeaderMap>,
    /// The source when no copy is reading it (`None`: a copy holds it, or it ended).
    source: Option<B>,
    /// The source has been read to its end: the buffer holds all of it.
    ended: bool,
    /// The buffer no longer holds the beginning of the body (it outgrew the limit or
    /// the source failed): no copy can be sent in full any more.
    spoiled: bool,
    /// Copies that caught up with the buffer while another copy reads the source.
    waiting: Vec<Waker>,
}

impl<B> Shared<B> {
    fn lock(&self) -> MutexGuard<'_, State<B>> {
        // Nothing under this lock can panic halfway through an update; a poisoned lock
        // still holds a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<B: Body> ReplayBody<B> {
    /// Wrap `body`, keeping up to `limit` bytes of it for copies.
    pub fn new(body: B, limit: usize) -> Self {
        let hint = body.size_hint();
        let ended = body.is_end_stream();
        let state = State {
            chunks: Vec::new(),
            buffered: 0,
            trailers: None,
            source: if ended { None } else { Some(body) },
            ended,
            spoiled: false,
            waiting: Vec::new(),
        };
        Self::from_shared(Arc::new(Shared {
            state: Mutex::new(state),
            limit,
            hint,
        }))
    }
}

impl<B> ReplayBody<B> {
    fn from_shared(shared: Arc<Shared<B>>) -> Self {
        Self {
            shared,
            source: None,
            replayed: 0,
            sent: 0,
            trailers_sent: false,
        }
    }

    /// Another copy of the body, from its first byte, or `None` if the body has
    /// outgrown its buffer (or its source failed) and can no longer be sent in full.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use seawall::http::ReplayBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let body = ReplayBody::new(Full::new(Bytes::from(vec![0_u8; 100])), 10);
    /// let copy = body.try_clone().unwrap();
    /// body.collect().await.unwrap(); // 100 bytes: more than the 10 kept
    /// assert!(copy.try_clone().is_none());
    /// # }
    /// ```
    pub fn try_clone(&self) -> Option<Self> {
        if self.shared.lock().spoiled {
            None
        } else {
            Some(Self::from_shared(Arc::clone(&self.shared)))
        }
    }

    /// Whether this copy can be sent now, in full: the body has not outgrown its
    /// buffer, and either it has been read to its end or no other copy is reading it.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use seawall::http::ReplayBody;
    ///
    /// let body = ReplayBody::new(Full::new(Bytes::from("hi")), 1024);
    /// assert!(body.try_clone().unwrap().can_replay());
    /// ```
    pub fn can_replay(&self) -> bool {
        if self.source.is_some() || self.sent > 0 || self.trailers_sent {
            // Already (partly) sent: this copy is not a fresh one.
            return false;
        }
        let state = self.shared.lock();
        !state.spoiled && (state.ended || state.source.is_some())
    }

    /// The buffer's limit, in bytes.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let source = match this.source.as_mut() {
            Some(source) => source,
            None => {
                if this.trailers_sent {
                    // This copy has sent the whole body.
                    return Poll::Ready(None);
                }
                let mut state = this.shared.lock();
                if state.spoiled {
                    return Poll::Ready(Some(Err(ReplayBodyError::Spoiled.into())));
                }
                // Send again what an earlier copy read.
                if let Some(chunk) = state.chunks.get(this.replayed) {
                    let chunk = chunk.clone();
                    this.replayed += 1;
                    this.sent += chunk.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                if state.ended {
                    this.trailers_sent = true;
                    return Poll::Ready(state.trailers.clone().map(|t| Ok(Frame::trailers(t))));
                }
                // Caught up with the buffer: read on from the source, or, while another
                // copy is reading it (a hedge and the attempt it hedges), wait for that
                // copy to add to the buffer, end, or hand the source back.
                match state.source.take() {
                    Some(source) => this.source.insert(source),
                    None => {
                        if !state.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                            state.waiting.push(cx.waker().clone());
                        }
                        return Poll::Pending;
                    }
                }
            }
        };
        let frame = ready!(Pin::new(&mut *source).poll_frame(cx));
        let at_end = source.is_end_stream();
        let mut state = this.shared.lock();
        // Whatever happens next (a chunk, the end, a failure), copies waiting on this one
        // have something new to see.
        let waiting = std::mem::take(&mut state.waiting);
        let frame = match frame {
            None => {
                state.ended = true;
                this.source = None;
                this.trailers_sent = true;
                drop(state);
                waiting.into_iter().for_each(Waker::wake);
                return Poll::Ready(None);
            }
            Some(Err(error)) => {
                // A source that failed cannot be read again: no copy can be whole.
                spoil(&mut state);
                drop(state);
                waiting.into_iter().for_each(Waker::wake);
                return Poll::Ready(Some(Err(error.into())));
            }
            Some(Ok(frame)) => frame.map_data(|mut data| data.copy_to_bytes(data.remaining())),
        };
        if let Some(chunk) = frame.data_ref() {
            this.sent += chunk.len() as u64;
            if !state.spoiled {
                match state.buffered.checked_add(chunk.len()) {
                    Some(total) if total <= this.shared.limit => {
                        state.buffered = total;
                        state.chunks.push(chunk.clone());
                        this.replayed = state.chunks.len();
                    }
                    // Too big to keep: this attempt sends it, nobody sends it again.
                    _ => spoil(&mut state),
                }
            }
            if at_end {
                state.ended = true;
                this.source = None;
                this.trailers_sent = true;
            }
        } else if let Some(trailers) = frame.trailers_ref() {
            // Trailers end the body.
            if !state.spoiled {
                state.trailers = Some(trailers.clone());
            }
            state.ended = true;
            this.source = None;
            this.trailers_sent = true;
        } else {
            // A kind of frame this buffer does not know how to keep.
            spoil(&mut state);
        }
        drop(state);
        waiting.into_iter().for_each(Waker::wake);
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        if let Some(source) = &self.source {
            return source.is_end_stream();
        }
        if self.trailers_sent {
            return true;
        }
        let state = self.shared.lock();
        state.ended
            && !state.spoiled
            && self.replayed >= state.chunks.len()
            && state.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let hint = &self.shared.hint;
        let lower = hint.lower().saturating_sub(self.sent);
        match hint.upper() {
            Some(upper) => {
                let upper = upper.saturating_sub(self.sent).max(lower);
                let mut remaining = SizeHint::new();
                remaining.set_upper(upper);
                remaining.set_lower(lower);
                remaining
            }
            None => {
                let mut remaining = SizeHint::new();
                remaining.set_lower(lower);
                remaining
            }
        }
    }
}

fn spoil<B>(state: &mut State<B>) {
    state.spoiled = true;
    state.chunks = Vec::new();
    state.buffered = 0;
    state.trailers = None;
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        // Hand an unfinished source back, for the next copy to read on.
        if let Some(source) = self.source.take() {
            let waiting = {
                let mut state = self.shared.lock();
                state.source = Some(source);
                std::mem::take(&mut state.waiting)
            };
            waiting.into_iter().for_each(Waker::wake);
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("ReplayBody")
            .field("limit", &self.shared.limit)
            .field("buffered", &state.buffered)
            .field("ended", &state.ended)
            .field("spoiled", &state.spoiled)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

/// Why a copy of a [`ReplayBody`] failed while it was being sent: the body outgrew its
/// buffer (or its source failed), so its beginning is gone.
///
/// The retry layer never sends such a copy (it checks [`ReplayBody::can_replay`] first).
/// It can happen to a hedge or to the attempt it hedges: two copies sent before either
/// read the body share it as it streams, and if the one reading the source finds the
/// body larger than the buffer, the other cannot be completed.
///
/// ```
/// use seawall::error::ReplayBodyError;
///
/// assert_eq!(
///     ReplayBodyError::Spoiled.to_string(),
///     "request body cannot be replayed: it outgrew its replay buffer"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayBodyError {
    /// The body outgrew its buffer (or its source failed), so its beginning is gone.
    Spoiled,
}

impl fmt::Display for ReplayBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Spoiled => "request body cannot be replayed: it outgrew its replay buffer",
        })
    }
}

impl Error for ReplayBodyError {}

/// Makes retry (and hedge) copies of `http::Request<ReplayBody<B>>`: the method, URI,
/// version, headers and extensions are cloned, and the body is a
/// [`ReplayBody::try_clone`]. A copy is refused once the body has outgrown its buffer.
///
/// Combine it with [`IdempotentReplay`](super::IdempotentReplay) to also refuse requests
/// that are not safe to send twice.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use seawall::http::{BodyReplay, ReplayBody};
/// use seawall::retry::replay::Replay;
///
/// let request = http::Request::put("/orders/7")
///     .header("content-type", "application/json")
///     .body(ReplayBody::new(Full::new(Bytes::from("{}")), 1024))
///     .unwrap();
/// let copy = BodyReplay.replay(&request).unwrap();
/// assert_eq!(copy.method(), http::Method::PUT);
/// assert_eq!(copy.headers()["content-type"], "application/json");
/// assert!(BodyReplay.can_replay(&copy));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyReplay;

impl<B> Replay<Request<ReplayBody<B>>> for BodyReplay {
    fn replay(&self, request: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        let body = request.body().try_clone()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }

    fn can_replay(&self, copy: &Request<ReplayBody<B>>) -> bool {
        copy.body().can_replay()
    }
}

/// Wraps each request body in a [`ReplayBody`], so that a retry or hedge layer inside
/// it (configured with [`BodyReplay`]) can send it again.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use seawall::http::{BodyReplay, IdempotentReplay, ReplayBody, ReplayBodyLayer};
/// use seawall::retry::RetryLayer;
/// use std::convert::Infallible;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), seawall::BoxError> {
/// let calls = Arc::new(AtomicU32::new(0));
/// let seen = calls.clone();
/// let client = ServiceBuilder::new()
///     .layer(ReplayBodyLayer::default())
///     .layer(RetryLayer::builder().replay(IdempotentReplay::with(BodyReplay)).build()?)
///     .service_fn(move |request: http::Request<ReplayBody<Full<Bytes>>>| {
///         let seen = seen.clone();
///         async move {
///             let body = request.into_body().collect().await?.to_bytes();
///             assert_eq!(body, "{\"qty\":1}", "every attempt gets the whole body");
///             match seen.fetch_add(1, Ordering::SeqCst) {
///                 0 => Err::<&str, seawall::BoxError>("connection reset".into()),
///                 _ => Ok("created"),
///             }
///         }
///     });
///
/// let request = http::Request::put("/orders/7").body(Full::new(Bytes::from("{\"qty\":1}")))?;
/// assert_eq!(client.oneshot(request).await?, "created");
/// assert_eq!(calls.load(Ordering::SeqCst), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayBodyLayer {
    limit: usize,
}

impl ReplayBodyLayer {
    /// Keep up to `limit` bytes of each request body. Larger bodies are sent once. Every
    /// limit is valid: zero keeps nothing, so that only requests with an empty body (a
    /// `GET`, a `DELETE`) can be sent again, without buffering anything.
    ///
    /// ```
    /// let layer = seawall::http::ReplayBodyLayer::new(1024 * 1024);
    /// assert_eq!(layer.limit(), 1024 * 1024);
    /// ```
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }

    /// The most bytes of a body kept for copies.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Default for ReplayBodyLayer {
    /// A limit of [`DEFAULT_LIMIT`] (64 KiB).
    fn default() -> Self {
        Self::new(DEFAULT_LIMIT)
    }
}

impl<S> Layer<S> for ReplayBodyLayer {
    type Service = ReplayBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReplayBodyService {
            inner,
            limit: self.limit,
        }
    }
}

/// The service made by [`ReplayBodyLayer`]: passes each request on with its body
/// wrapped in a [`ReplayBody`].
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use seawall::http::{ReplayBody, ReplayBodyLayer};
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = ReplayBodyLayer::default().layer(tower::service_fn(
///     |request: http::Request<ReplayBody<Full<Bytes>>>| async move {
///         Ok::<_, std::convert::Infallible>(request.body().limit())
///     },
/// ));
/// let limit = svc.oneshot(http::Request::new(Full::new(Bytes::new()))).await.unwrap();
/// assert_eq!(limit, 64 * 1024);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ReplayBodyService<S> {
    inner: S,
    limit: usize,
}

impl<S, B> Service<Request<B>> for ReplayBodyService<S>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let limit = self.limit;
        self.inner
            .call(request.map(|body| ReplayBody::new(body, limit)))
    }
}
