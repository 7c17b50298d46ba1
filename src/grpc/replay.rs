//! Which gRPC calls a retry or a hedge may send again.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use http::Request;

use super::GrpcClassifier;
use crate::http::BodyReplay;
use crate::retry::replay::{DefaultReplay, Replay};

/// How HTTP/2 says that a server refused a stream before its application saw it (the
/// description of `REFUSED_STREAM`, RFC 9113 §7, as the `h2` crate writes it).
const REFUSED_STREAM: &str = "refused stream before processing any application logic";

/// Sends a gRPC call again only when gRPC's rules (gRFC A6) say it is safe; the replay
/// that goes with [`GrpcClassifier`].
///
/// Every gRPC call is a `POST`, so HTTP's idempotency rules say nothing; gRPC's do:
///
/// - **A call whose method is idempotent** (listed with
///   [`idempotent_methods`](Self::idempotent_methods), as a service owner lists the
///   methods of a gRPC retry policy) is retried after a failure the classifier retries
///   (by default `UNAVAILABLE`), and hedged, as long as the call is not *committed*: the
///   retry stage only ever sees a status in the response headers (a Trailers-Only
///   response, how a server fails a call before sending anything) or a transport error.
///   Once response headers have arrived, the status comes in the trailers, after the
///   response went back to the caller, and nothing is retried (gRFC A6: "the RPC is
///   committed once the client receives response headers").
/// - **Any other call** is sent once, never hedged, and retried only after a failure
///   that shows the server never processed it (gRFC A6's transparent retry): the
///   connection was refused (an [`std::io::ErrorKind::ConnectionRefused`] in the error's
///   `source()` chain), or the server refused the stream with HTTP/2 `REFUSED_STREAM`. A
///   reset, a broken connection or a timeout in the middle of the call is not retried:
///   the server may have done the work.
/// - [`allow_non_idempotent`](Self::allow_non_idempotent) treats every method as
///   idempotent: only for servers that tolerate duplicates.
///
/// Copies are made by `R` (default [`BodyReplay`], for the bodies that
/// [`GrpcClientLayer`](super::GrpcClientLayer) buffers), so a call whose body outgrew
/// the buffer is sent once whatever its method.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use seawall::grpc::GrpcReplay;
/// use seawall::http::ReplayBody;
/// use seawall::retry::replay::Replay;
///
/// let call = |path: &str| {
///     http::Request::post(path)
///         .body(ReplayBody::new(Full::new(Bytes::from("order 7")), 1024))
///         .unwrap()
/// };
/// let replay = GrpcReplay::new().idempotent_methods(["/orders.Orders/Get"]);
/// let get = replay.replay(&call("/orders.Orders/Get")).unwrap();
/// let pay = replay.replay(&call("/orders.Orders/Pay")).unwrap();
/// let unavailable = Err::<(), seawall::BoxError>("unavailable".into());
/// assert!(replay.can_retry(&get, &unavailable));
/// assert!(!replay.can_retry(&pay, &unavailable), "Pay may have been processed");
/// assert!(!replay.can_replay(&pay), "and it is never hedged");
///
/// let refused: seawall::BoxError =
///     std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
/// assert!(replay.can_retry(&pay, &Err::<(), _>(refused)), "nothing was sent");
/// ```
#[derive(Clone, Default)]
pub struct GrpcReplay<R = BodyReplay> {
    inner: R,
    methods: Methods,
}

#[derive(Clone, Default)]
enum Methods {
    /// No method is idempotent.
    #[default]
    None,
    /// Every method is.
    All,
    /// These paths (`/package.Service/Method`), or every method of a service
    /// (`/package.Service/`).
    Listed(Arc<[Box<str>]>),
}

impl GrpcReplay {
    /// No method idempotent: calls are retried only when nothing was processed.
    ///
    /// ```
    /// let replay = seawall::grpc::GrpcReplay::new();
    /// assert!(!replay.is_idempotent("/orders.Orders/Get"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<R> GrpcReplay<R> {
    /// Copy calls with `inner` (for bodies of your own).
    pub fn with(inner: R) -> Self {
        Self {
            inner,
            methods: Methods::None,
        }
    }

    /// The methods that are idempotent, by their path: `/package.Service/Method`, or
    /// `/package.Service/` for every method of a service. They replace any listed
    /// before.
    ///
    /// ```
    /// use seawall::grpc::GrpcReplay;
    ///
    /// let replay = GrpcReplay::new().idempotent_methods(["/orders.Orders/Get", "/catalog.Catalog/"]);
    /// assert!(replay.is_idempotent("/orders.Orders/Get"));
    /// assert!(replay.is_idempotent("/catalog.Catalog/List"));
    /// assert!(!replay.is_idempotent("/orders.Orders/Pay"));
    /// ```
    #[must_use]
    pub fn idempotent_methods<I>(mut self, methods: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.methods = Methods::Listed(
            methods
                .into_iter()
                .map(|method| Box::from(method.as_ref()))
                .collect(),
        );
        self
    }

    /// Treat every method as idempotent: retry any call the classifier retries, and
    /// hedge any call. Only for servers that tolerate duplicates.
    ///
    /// ```
    /// let replay = seawall::grpc::GrpcReplay::new().allow_non_idempotent();
    /// assert!(replay.is_idempotent("/payments.Payments/Charge"));
    /// ```
    #[must_use]
    pub fn allow_non_idempotent(mut self) -> Self {
        self.methods = Methods::All;
        self
    }

    /// Whether the method at `path` may be sent twice.
    pub fn is_idempotent(&self, path: &str) -> bool {
        match &self.methods {
            Methods::None => false,
            Methods::All => true,
            Methods::Listed(methods) => methods.iter().any(|method| {
                if method.ends_with('/') {
                    path.starts_with(&**method)
                } else {
                    path == &**method
                }
            }),
        }
    }
}

impl<B, R: Replay<Request<B>>> Replay<Request<B>> for GrpcReplay<R> {
    /// A copy of every call, idempotent or not: one that is not may still be retried
    /// after a failure that shows nothing was processed.
    fn replay(&self, request: &Request<B>) -> Option<Request<B>> {
        self.inner.replay(request)
    }

    /// Whether `copy` may be sent while the first attempt may still be processed (a
    /// hedge): only for an idempotent method.
    fn can_replay(&self, copy: &Request<B>) -> bool {
        self.is_idempotent(copy.uri().path()) && self.inner.can_replay(copy)
    }

    fn can_retry<T, E: 'static>(&self, copy: &Request<B>, result: &Result<T, E>) -> bool {
        let safe = self.is_idempotent(copy.uri().path())
            || matches!(result, Err(error) if nothing_processed(error));
        safe && self.inner.can_replay(copy)
    }
}

/// Whether `error` shows that the server never processed the call: the connection was
/// refused, or the server refused the stream.
fn nothing_processed<E: 'static>(error: &E) -> bool {
    let any = error as &dyn std::any::Any;
    let error: &(dyn Error + 'static) = if let Some(boxed) = any.downcast_ref::<crate::BoxError>() {
        &**boxed
    } else if let Some(io) = any.downcast_ref::<std::io::Error>() {
        io
    } else {
        return false;
    };
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        if error.to_string().contains(REFUSED_STREAM) {
            return true;
        }
        next = error.source();
    }
    false
}

/// gRPC's classifier goes with gRPC's replay rules.
impl DefaultReplay for GrpcClassifier {
    type Replay = GrpcReplay;

    fn default_replay(&self) -> GrpcReplay {
        GrpcReplay::new()
    }
}

impl<R: fmt::Debug> fmt::Debug for GrpcReplay<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let methods: &dyn fmt::Debug = match &self.methods {
            Methods::None => &"none",
            Methods::All => &"all",
            Methods::Listed(methods) => methods,
        };
        f.debug_struct("GrpcReplay")
            .field("inner", &self.inner)
            .field("idempotent_methods", methods)
            .finish()
    }
}
