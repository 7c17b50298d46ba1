//! Error types

use std::fmt;

/// The client throttled the call: its backend has been rejecting most requests, so this
/// one was refused locally and nothing was sent.
///
/// ```
/// use seawall::error::Throttled;
///
/// let err = Throttled::new();
/// assert_eq!(err.to_string(), "throttled: the backend is rejecting most requests");
/// assert!(seawall::error::is_rejection(&err));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttled {
    _priv: (),
}

impl Throttled {
    /// A throttled rejection.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("throttled: the backend is rejecting most requests")
    }
}

impl std::error::Error for Throttled {}
