//! Server pushback: how long a server asked the client to wait before trying again.
//!
//! Both headers come from the network, so neither is trusted. A `Retry-After` that does
//! not parse is ignored (`None`), and one too large for a [`Duration`] saturates instead
//! of overflowing. An HTTP-date whose day name does not match its date (`Thu, 21 Oct
//! 2015 …`, a Wednesday) is read from the date alone, as browsers and curl read it: the
//! day name is redundant, and the server did ask for a wait until that date. A
//! `grpc-retry-pushback-ms` that does not parse means "do not retry",
//! as the gRPC retry design says. The retry layer then caps any delay (30 s by default)
//! and never waits past the caller's deadline.
//!
//! ```
//! use seawall::http::pushback::{grpc_retry_pushback, retry_after, Pushback};
//! use http::HeaderValue;
//! use std::time::{Duration, SystemTime};
//!
//! let now = SystemTime::now();
//! assert_eq!(retry_after(&HeaderValue::from_static("120"), now), Some(Duration::from_secs(120)));
//! assert_eq!(retry_after(&HeaderValue::from_static("soon"), now), None);
//!
//! let push = grpc_retry_pushback(&HeaderValue::from_static("1500"));
//! assert_eq!(push, Pushback::After(Duration::from_millis(1500)));
//! assert_eq!(grpc_retry_pushback(&HeaderValue::from_static("-1")), Pushback::DoNotRetry);
//! ```

use std::time::{Duration, SystemTime};

use http::HeaderValue;

/// What a gRPC server said with `grpc-retry-pushback-ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// Retry after this long.
    After(Duration),
    /// Do not retry (a negative value, per the gRPC retry design).
    DoNotRetry,
}

/// The delay in an HTTP `Retry-After` header (RFC 9110 §10.2.3): delta-seconds
/// (`120`) or an HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`, or the obsolete RFC 850
/// and asctime forms), measured from `now`. A date in the past is a zero delay. A date
/// whose day name is wrong (a real day name, of the length its form uses, but not the
/// date's day) is read from the date alone. Anything else (garbage, a negative or
/// fractional number, a date that does not exist, an empty value) is `None`, and the
/// retry layer waits its own backoff.
///
/// ```
/// use seawall::http::pushback::retry_after;
/// use http::HeaderValue;
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
/// let date = HeaderValue::from_static("Wed, 21 Oct 2015 07:29:30 GMT");
/// assert_eq!(retry_after(&date, now), Some(Duration::from_secs(90)));
/// ```
pub fn retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(parse_saturating(text)));
    }
    let date = match httpdate::parse_http_date(text) {
        Ok(date) => date,
        Err(_) => with_right_day_name(text)?,
    };
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

const SHORT_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The date of `text` if only its day name is wrong: the text with each other day name
/// of the same length in its place (`Sun,` in IMF-fixdate, `Sunday,` in RFC 850, `Sun `
/// in asctime), parsed again. A date has one right day, so at most one parses. Only for
/// headers that failed to parse, so the common path pays nothing.
fn with_right_day_name(text: &str) -> Option<SystemTime> {
    let end = text.find([',', ' '])?;
    let (day, rest) = text.split_at(end);
    let names = if SHORT_DAYS.contains(&day) {
        &SHORT_DAYS
    } else if LONG_DAYS.contains(&day) {
        &LONG_DAYS
    } else {
        return None;
    };
    let mut candidate = String::with_capacity(text.len() + 3);
    names.iter().filter(|name| **name != day).find_map(|name| {
        candidate.clear();
        candidate.push_str(name);
        candidate.push_str(rest);
        httpdate::parse_http_date(&candidate).ok()
    })
}

/// The pushback in a gRPC `grpc-retry-pushback-ms` header. The gRPC retry design (A6)
/// makes it an ASCII signed 32-bit integer of milliseconds, and says that a value that
/// is negative *or does not parse* asks the client not to retry at all; so this cannot
/// fail: a present header is always a decision.
///
/// ```
/// use seawall::http::pushback::{grpc_retry_pushback, Pushback};
/// use http::HeaderValue;
///
/// assert_eq!(grpc_retry_pushback(&HeaderValue::from_static("garbage")), Pushback::DoNotRetry);
/// assert_eq!(grpc_retry_pushback(&HeaderValue::from_static("99999999999")), Pushback::DoNotRetry);
/// ```
pub fn grpc_retry_pushback(value: &HeaderValue) -> Pushback {
    let millis = value
        .to_str()
        .ok()
        .filter(|text| text.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
        .and_then(|text| text.parse::<i32>().ok());
    match millis {
        Some(ms) if ms >= 0 => Pushback::After(Duration::from_millis(ms as u64)),
        _ => Pushback::DoNotRetry,
    }
}

/// Parse ASCII digits (at least one), saturating at `u64::MAX` instead of failing on
/// overflow.
fn parse_saturating(digits: &str) -> u64 {
    digits.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    })
}
