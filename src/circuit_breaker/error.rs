//! Error types

use std::fmt;
use std::time::Duration;

/// The circuit is open: the call was rejected locally and nothing was sent.
///
/// It carries the time until the breaker lets the next probe through, when one is
/// scheduled: `None` while the breaker is forced open by an operator, or while it is
/// half-open with every probe slot taken (the in-flight probes decide what happens next).
///
/// ```
/// use seawall::error::CircuitOpen;
/// use std::time::Duration;
///
/// let err = CircuitOpen::new(Some(Duration::from_millis(1500)));
/// assert_eq!(err.retry_after(), Some(Duration::from_millis(1500)));
/// assert_eq!(err.to_string(), "circuit open; next probe in 1.5s");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitOpen {
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    /// A rejection whose next probe is due in `retry_after`, if one is scheduled.
    pub const fn new(retry_after: Option<Duration>) -> Self {
        Self { retry_after }
    }

    /// The time until the next probe, if one is scheduled.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(after) => write!(f, "circuit open; next probe in {after:?}"),
            None => f.write_str("circuit open"),
        }
    }
}

impl std::error::Error for CircuitOpen {}
