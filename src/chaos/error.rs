//! Error types

use std::fmt;

/// A ready-made error for an error fault, and the error of an
/// [aborted](super::http::Builder::abort) response body.
///
/// It stands for a failure of the *remote* service, so it is not a local rejection:
/// [`is_rejection`](crate::error::is_rejection) says `false`, and breakers, throttles and
/// retry layers above the fault layer treat it as they would treat the real failure.
///
/// ```
/// use seawall::chaos::InjectedFault;
///
/// let err = InjectedFault::new();
/// assert_eq!(err.to_string(), "fault injected by seawall::chaos");
/// assert!(!seawall::error::is_rejection(&err));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InjectedFault {
    _priv: (),
}

impl InjectedFault {
    /// An injected fault.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fault injected by seawall::chaos")
    }
}

impl std::error::Error for InjectedFault {}
