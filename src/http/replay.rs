//! Which HTTP requests a retry may send again.

use http::{Method, Request};

use super::StatusClassifier;
use crate::retry::replay::{CloneRequest, DefaultReplay, Replay};

/// Whether `method` is idempotent (RFC 9110 §9.2.2): sending it twice has the same
/// effect as sending it once. GET, HEAD, OPTIONS, TRACE, PUT and DELETE are; POST,
/// PATCH and CONNECT are not.
///
/// ```
/// use http::Method;
/// use seawall::http::is_idempotent;
///
/// assert!(is_idempotent(&Method::PUT));
/// assert!(!is_idempotent(&Method::POST));
/// ```
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The header that makes a non-idempotent request safe to retry: the server
/// deduplicates requests that carry the same key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Replays an HTTP request only if sending it twice is safe: an idempotent method, or a
/// request carrying an `Idempotency-Key` header, unless the user opts in with
/// [`allow_non_idempotent`](Self::allow_non_idempotent). Otherwise the request is sent
/// once and never retried. Copies are made by `R` (default [`CloneRequest`], for bodies
/// that are `Clone`).
///
/// ```
/// use seawall::http::IdempotentReplay;
/// use seawall::retry::replay::Replay;
///
/// let replay = IdempotentReplay::new();
/// let get = http::Request::get("/orders/7").body(String::new()).unwrap();
/// let post = http::Request::post("/orders").body(String::from("{}")).unwrap();
/// let keyed = http::Request::post("/orders")
///     .header("idempotency-key", "4f1c")
///     .body(String::from("{}"))
///     .unwrap();
/// assert!(replay.replay(&get).is_some());
/// assert!(replay.replay(&post).is_none(), "a POST is sent once");
/// assert!(replay.replay(&keyed).is_some(), "unless it carries an idempotency key");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct IdempotentReplay<R = CloneRequest> {
    inner: R,
    allow_non_idempotent: bool,
}

impl IdempotentReplay {
    /// Replay idempotent requests by cloning them.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<R> IdempotentReplay<R> {
    /// Replay idempotent requests with `inner`.
    pub fn with(inner: R) -> Self {
        Self {
            inner,
            allow_non_idempotent: false,
        }
    }

    /// Replay every request, idempotent or not: only when the server tolerates
    /// duplicates.
    pub fn allow_non_idempotent(mut self) -> Self {
        self.allow_non_idempotent = true;
        self
    }
}

impl<B, R: Replay<Request<B>>> Replay<Request<B>> for IdempotentReplay<R> {
    fn replay(&self, request: &Request<B>) -> Option<Request<B>> {
        let safe = self.allow_non_idempotent
            || is_idempotent(request.method())
            || request.headers().contains_key(IDEMPOTENCY_KEY);
        if safe {
            self.inner.replay(request)
        } else {
            None
        }
    }

    fn can_replay(&self, copy: &Request<B>) -> bool {
        self.inner.can_replay(copy)
    }
}

/// HTTP's classifier goes with the idempotent replay: a POST or PATCH without an
/// `Idempotency-Key` is sent once.
impl DefaultReplay for StatusClassifier {
    type Replay = IdempotentReplay;

    fn default_replay(&self) -> IdempotentReplay {
        IdempotentReplay::new()
    }
}

/// A `tower-http` classifier judges HTTP calls: it goes with the idempotent replay.
#[cfg(feature = "tower-http")]
impl<C, F> DefaultReplay for super::tower_http::TowerHttpClassifier<C, F> {
    type Replay = IdempotentReplay;

    fn default_replay(&self) -> IdempotentReplay {
        IdempotentReplay::new()
    }
}
