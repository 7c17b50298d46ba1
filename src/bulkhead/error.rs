//! Error types

use std::fmt;

/// The bulkhead is full: the call was rejected locally and nothing was sent.
///
/// Returned at once when every permit is taken and the bulkhead does not wait, or when a
/// wait for a permit outlasted the bulkhead's max wait or found the waiting queue full.
///
/// ```
/// use seawall::error::BulkheadFull;
///
/// let err = BulkheadFull::new();
/// assert_eq!(err.to_string(), "bulkhead full");
/// assert!(seawall::error::is_rejection(&err));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BulkheadFull {
    _priv: (),
}

impl BulkheadFull {
    /// A bulkhead-full rejection.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bulkhead full")
    }
}

impl std::error::Error for BulkheadFull {}
