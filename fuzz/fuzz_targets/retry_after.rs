//! `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date, read by
//! `seawall::http::pushback::retry_after` (and through it by `StatusClassifier` and the
//! gRPC classifier's HTTP fallback).
//!
//! The whole input is a header value, read at several instants: no panic; delta-seconds
//! exact (saturating); anything else is `None` or an HTTP-date's distance, never more
//! than the distance to the last second of the year 9999. Then a duration derived from
//! the input, written the ways seawall writes it (`ShedLoadLayer`'s 503, the chaos
//! layer's status fault, in whole seconds rounded up) and as an HTTP-date, must read
//! back exactly.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use seawall::http::pushback::retry_after;
use seawall_fuzz::{chaos_headers, shed_response, Input};

/// The last second an HTTP-date can name: 9999-12-31T23:59:59Z.
const LAST_DATE: u64 = 253_402_300_799;

fn instants() -> [SystemTime; 5] {
    [
        UNIX_EPOCH,
        UNIX_EPOCH - Duration::from_secs(1),
        UNIX_EPOCH + Duration::from_secs(1_445_412_480),
        UNIX_EPOCH + Duration::new(1_796_000_000, 123_456_789),
        UNIX_EPOCH + Duration::from_secs(LAST_DATE),
    ]
}

fn read(value: &HeaderValue, now: SystemTime) {
    let read = retry_after(value, now);
    let Ok(text) = value.to_str() else {
        assert_eq!(read, None, "not visible ASCII: {value:?}");
        return;
    };
    let text = text.trim_matches([' ', '\t']);
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        assert_eq!(
            read,
            Some(Duration::from_secs(secs)),
            "delta-seconds {text:?}"
        );
        return;
    }
    if let Some(delay) = read {
        let latest = UNIX_EPOCH + Duration::from_secs(LAST_DATE);
        let bound = latest.duration_since(now).unwrap_or(Duration::ZERO);
        assert!(
            delay <= bound,
            "{text:?} at {now:?}: {delay:?} is past the year 9999"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        for now in instants() {
            read(&value, now);
        }
    }

    let mut input = Input::new(data);
    let wait = input.duration();
    let now = instants()[usize::from(input.byte()) % 5];

    // Delta-seconds as `HeaderValue::from` writes them.
    let secs = wait.as_secs();
    let written = HeaderValue::from(secs);
    assert_eq!(retry_after(&written, now), Some(Duration::from_secs(secs)));

    // An HTTP-date (whole seconds, up to the year 9999).
    let date = UNIX_EPOCH + Duration::from_secs(secs % (LAST_DATE + 1));
    let written = HeaderValue::from_str(&httpdate::fmt_http_date(date)).unwrap();
    let expected = date.duration_since(now).unwrap_or(Duration::ZERO);
    assert_eq!(
        retry_after(&written, now),
        Some(expected),
        "{written:?} at {now:?}"
    );

    // What seawall's servers write: whole seconds, rounded up.
    let rounded_up = Duration::from_secs(secs.saturating_add(u64::from(wait.subsec_nanos() > 0)));
    if let Some(shed) = shed_response(wait, false) {
        assert_eq!(shed.status(), 503);
        let written = &shed.headers()[http::header::RETRY_AFTER];
        assert_eq!(
            retry_after(written, now),
            Some(rounded_up),
            "ShedLoadLayer wrote {written:?}"
        );
        let classified = seawall::http::StatusClassifier::new().classify_response(&shed);
        assert!(classified.is_retryable());
        assert_eq!(classified.pushback(), Some(rounded_up));
    }

    let chaos = chaos_headers(wait);
    let written = &chaos[http::header::RETRY_AFTER];
    assert_eq!(
        retry_after(written, now),
        Some(rounded_up),
        "HttpFaultLayer wrote {written:?}"
    );
});
