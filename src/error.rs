//! Every error that seawall produces on its own, in one place.
//!
//! Layers that reject a call locally (nothing was sent downstream) return one small
//! error type per condition, boxed as [`BoxError`](crate::BoxError), as tower's own
//! middleware do. Match on them with `downcast_ref`, or ask [`is_rejection`] whether an
//! error was a local fast-fail rather than a failure of the remote service.
//!
//! | condition | type | layer |
//! |---|---|---|
//! | the circuit is open | [`CircuitOpen`] | [`circuit_breaker`](crate::circuit_breaker) |
//! | the bulkhead is full (or the wait for a permit timed out) | [`BulkheadFull`] | [`bulkhead`](crate::bulkhead) |
//!
//! Bad configuration is a [`ConfigError`] returned by a builder's `build()`, naming the
//! field that is wrong. Seawall never panics on configuration and never clamps a value
//! silently.

use std::error::Error;
use std::fmt;

#[cfg(feature = "bulkhead")]
#[cfg_attr(docsrs, doc(cfg(feature = "bulkhead")))]
pub use crate::bulkhead::error::BulkheadFull;
#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
pub use crate::circuit_breaker::error::CircuitOpen;
#[cfg(all(feature = "http", feature = "retry"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "http", feature = "retry"))))]
pub use crate::http::replay_body::ReplayBodyError;
#[cfg(feature = "throttle")]
#[cfg_attr(docsrs, doc(cfg(feature = "throttle")))]
pub use crate::throttle::error::Throttled;
#[cfg(feature = "timeout")]
#[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
pub use crate::timeout::error::{DeadlineExceeded, Elapsed};

/// Whether `err`, or any error in its [`source`](Error::source) chain, is a local
/// rejection by a seawall layer: the call was refused before anything was sent.
///
/// Retry layers use this to never retry (and never spend budget on) a rejection of their
/// own stack; dashboards use it to tell "we shed this" from "the downstream failed".
///
/// ```
/// # #[cfg(feature = "circuit-breaker")] {
/// use seawall::error::{is_rejection, CircuitOpen};
/// use seawall::BoxError;
///
/// let open: BoxError = Box::new(CircuitOpen::new(None));
/// assert!(is_rejection(&*open));
///
/// let remote: BoxError = "connection reset".into();
/// assert!(!is_rejection(&*remote));
/// # }
/// ```
pub fn is_rejection(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if is_rejection_type(err) {
            return true;
        }
        next = err.source();
    }
    false
}

/// One error value (not its chain) is one of seawall's rejection types.
fn is_rejection_type(err: &(dyn Error + 'static)) -> bool {
    #[cfg(feature = "circuit-breaker")]
    if err.is::<CircuitOpen>() {
        return true;
    }
    #[cfg(feature = "bulkhead")]
    if err.is::<BulkheadFull>() {
        return true;
    }
    #[cfg(feature = "throttle")]
    if err.is::<Throttled>() {
        return true;
    }
    #[cfg(feature = "timeout")]
    if let Some(exceeded) = err.downcast_ref::<DeadlineExceeded>() {
        return !exceeded.was_sent();
    }
    let _ = err;
    false
}

/// Like [`is_rejection`], for an error of any `'static` type: a [`BoxError`](crate::BoxError)
/// is walked, one of seawall's rejection types is recognised, anything else is not a
/// rejection. Classifiers use this because they see the inner service's raw error type.
pub(crate) fn is_rejection_any<E: 'static>(err: &E) -> bool {
    let any = err as &dyn std::any::Any;
    if let Some(boxed) = any.downcast_ref::<crate::BoxError>() {
        return is_rejection(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send + 'static>>() {
        return is_rejection(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + 'static>>() {
        return is_rejection(&**boxed);
    }
    #[cfg(feature = "circuit-breaker")]
    if any.is::<CircuitOpen>() {
        return true;
    }
    #[cfg(feature = "bulkhead")]
    if any.is::<BulkheadFull>() {
        return true;
    }
    #[cfg(feature = "throttle")]
    if any.is::<Throttled>() {
        return true;
    }
    #[cfg(feature = "timeout")]
    if let Some(exceeded) = any.downcast_ref::<DeadlineExceeded>() {
        return !exceeded.was_sent();
    }
    false
}

/// An invalid configuration value, returned by a builder's `build()`.
///
/// It names the component and the field, and says what was wrong:
///
/// ```
/// # #[cfg(feature = "circuit-breaker")] {
/// use seawall::circuit_breaker::CircuitBreakerLayer;
///
/// let err = CircuitBreakerLayer::builder().failure_rate(1.5).build().unwrap_err();
/// assert_eq!(err.component(), "circuit_breaker");
/// assert_eq!(err.field(), "failure_rate");
/// assert!(err.to_string().contains("1.5"));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    component: &'static str,
    field: &'static str,
    reason: String,
}

impl ConfigError {
    #[cfg_attr(
        not(any(feature = "circuit-breaker", feature = "bulkhead", feature = "retry")),
        allow(dead_code)
    )]
    pub(crate) fn new(component: &'static str, field: &'static str, reason: String) -> Self {
        Self {
            component,
            field,
            reason,
        }
    }

    /// `Ok` if `ok`, else the error for `component`'s `field`, with the reason built
    /// only when needed. Shared by every builder's checks.
    #[cfg_attr(
        not(any(feature = "circuit-breaker", feature = "bulkhead")),
        allow(dead_code)
    )]
    pub(crate) fn check(
        component: &'static str,
        ok: bool,
        field: &'static str,
        reason: impl FnOnce() -> String,
    ) -> Result<(), ConfigError> {
        if ok {
            Ok(())
        } else {
            Err(ConfigError::new(component, field, reason()))
        }
    }

    /// The layer whose configuration is wrong, e.g. `"circuit_breaker"`.
    pub fn component(&self) -> &'static str {
        self.component
    }

    /// The builder field that holds the bad value, e.g. `"failure_rate"`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with the value, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} config: `{}` {}",
            self.component, self.field, self.reason
        )
    }
}

impl Error for ConfigError {}
