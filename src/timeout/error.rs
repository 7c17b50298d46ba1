//! Error types

use std::fmt;
use std::time::Duration;

/// An attempt took longer than its [`TimeoutLayer`](super::TimeoutLayer) allows; the
/// attempt was abandoned (its future dropped).
///
/// ```
/// use seawall::error::Elapsed;
/// use std::time::Duration;
///
/// let err = Elapsed::new(Duration::from_millis(250));
/// assert_eq!(err.timeout(), Duration::from_millis(250));
/// assert_eq!(err.to_string(), "attempt timed out after 250ms");
/// assert!(!seawall::error::is_rejection(&err), "the attempt was sent");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    timeout: Duration,
}

impl Elapsed {
    /// An attempt that ran out its `timeout`.
    pub const fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// The timeout that ran out.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt timed out after {:?}", self.timeout)
    }
}

impl std::error::Error for Elapsed {}

/// The call's deadline passed: every attempt, backoff and hedge together took longer
/// than the [`DeadlineLayer`](super::DeadlineLayer) (or the caller upstream) allows.
///
/// [`was_sent`](Self::was_sent) tells a deadline that ran out while a request was out
/// (the downstream was slow) from one that had already passed before anything was sent
/// (a local rejection: [`is_rejection`](crate::error::is_rejection) is true, and no
/// breaker or retry counts it against the downstream).
///
/// ```
/// use seawall::error::DeadlineExceeded;
///
/// let err = DeadlineExceeded::before_send();
/// assert!(!err.was_sent());
/// assert!(seawall::error::is_rejection(&err));
/// assert_eq!(err.to_string(), "deadline exceeded before the request was sent");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineExceeded {
    sent: bool,
}

impl DeadlineExceeded {
    /// The deadline passed while a request was out.
    pub const fn while_sent() -> Self {
        Self { sent: true }
    }

    /// The deadline had passed before the request was sent: nothing was sent.
    pub const fn before_send() -> Self {
        Self { sent: false }
    }

    /// Whether a request was out when the deadline passed.
    pub const fn was_sent(&self) -> bool {
        self.sent
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sent {
            f.write_str("deadline exceeded")
        } else {
            f.write_str("deadline exceeded before the request was sent")
        }
    }
}

impl std::error::Error for DeadlineExceeded {}
