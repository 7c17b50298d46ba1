//! Parsing server pushback from hostile input: every form, garbage, extremes.
#![cfg(feature = "http")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use proptest::prelude::*;
use seawall::http::pushback::{grpc_retry_pushback, retry_after, Pushback};

/// Wed, 21 Oct 2015 07:28:00 GMT.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_445_412_480)
}

fn header(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap()
}

#[test]
fn retry_after_delta_seconds() {
    assert_eq!(retry_after(&header("0"), now()), Some(Duration::ZERO));
    assert_eq!(
        retry_after(&header("120"), now()),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        retry_after(&header(" 7 "), now()),
        Some(Duration::from_secs(7))
    );
    // Ten years and beyond: parsed, not trusted; the retry layer caps it.
    assert_eq!(
        retry_after(&header("315360000"), now()),
        Some(Duration::from_secs(315_360_000))
    );
    assert_eq!(
        retry_after(&header("99999999999999999999999999"), now()),
        Some(Duration::from_secs(u64::MAX)),
        "saturates instead of overflowing"
    );
}

#[test]
fn retry_after_http_dates_in_all_three_forms() {
    let in_90_s = Some(Duration::from_secs(90));
    assert_eq!(
        retry_after(&header("Wed, 21 Oct 2015 07:29:30 GMT"), now()),
        in_90_s
    );
    assert_eq!(
        retry_after(&header("Wednesday, 21-Oct-15 07:29:30 GMT"), now()),
        in_90_s
    );
    assert_eq!(
        retry_after(&header("Wed Oct 21 07:29:30 2015"), now()),
        in_90_s
    );
    // A date in the past: retry now.
    assert_eq!(
        retry_after(&header("Tue, 20 Oct 2015 07:28:00 GMT"), now()),
        Some(Duration::ZERO)
    );
}

/// The day name of an HTTP-date is redundant: a server that gets it wrong still asked
/// for a wait until the date it wrote, and browsers and curl read the date alone.
#[test]
fn retry_after_a_date_with_a_wrong_day_name_is_read_from_the_date() {
    // Wed, 21 Oct 2015 07:29:30 GMT, 90 s after now, with another day's name.
    let in_90_s = Some(Duration::from_secs(90));
    for text in [
        "Thu, 21 Oct 2015 07:29:30 GMT",
        "Mon, 21 Oct 2015 07:29:30 GMT",
        "Sunday, 21-Oct-15 07:29:30 GMT",
        "Fri Oct 21 07:29:30 2015",
    ] {
        assert_eq!(retry_after(&header(text), now()), in_90_s, "{text:?}");
    }
    // A date in the past with a wrong name is still a zero delay.
    assert_eq!(
        retry_after(&header("Sat, 20 Oct 2015 07:28:00 GMT"), now()),
        Some(Duration::ZERO)
    );
    // What is not a day name, or a date that does not exist, is still nothing.
    for text in [
        "Xyz, 21 Oct 2015 07:29:30 GMT",
        "wed, 21 Oct 2015 07:29:30 GMT",
        "Thu, 31 Feb 2015 07:29:30 GMT",
        "Thursday, 21 Oct 2015 07:29:30 GMT",
        ", 21 Oct 2015 07:29:30 GMT",
    ] {
        assert_eq!(retry_after(&header(text), now()), None, "{text:?}");
    }
}

#[test]
fn retry_after_garbage_is_ignored() {
    for text in [
        "",
        "  ",
        "-5",
        "1.5",
        "+3",
        "soon",
        "12s",
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "0x10",
    ] {
        assert_eq!(retry_after(&header(text), now()), None, "{text:?}");
    }
    let bytes = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
    assert_eq!(retry_after(&bytes, now()), None, "not text");
}

#[test]
fn grpc_pushback_follows_the_grpc_retry_design() {
    assert_eq!(
        grpc_retry_pushback(&header("0")),
        Pushback::After(Duration::ZERO)
    );
    assert_eq!(
        grpc_retry_pushback(&header("250")),
        Pushback::After(Duration::from_millis(250))
    );
    assert_eq!(
        grpc_retry_pushback(&header("2147483647")),
        Pushback::After(Duration::from_millis(i32::MAX as u64))
    );
    // Negative or unparseable: do not retry at all.
    for text in [
        "-1",
        "-2147483648",
        "2147483648",
        "",
        "1.5",
        "soon",
        " 250",
        "+5",
        "--1",
    ] {
        assert_eq!(
            grpc_retry_pushback(&header(text)),
            Pushback::DoNotRetry,
            "{text:?}"
        );
    }
}

proptest! {
    #[test]
    fn arbitrary_header_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let _ = retry_after(&value, now());
            let _ = grpc_retry_pushback(&value);
        }
    }

    #[test]
    fn any_delta_seconds_round_trips(secs in any::<u64>()) {
        let value = HeaderValue::from(secs);
        prop_assert_eq!(retry_after(&value, now()), Some(Duration::from_secs(secs)));
    }

    #[test]
    fn any_i32_is_a_pushback_or_a_refusal(ms in any::<i32>()) {
        let expected = if ms >= 0 {
            Pushback::After(Duration::from_millis(ms as u64))
        } else {
            Pushback::DoNotRetry
        };
        prop_assert_eq!(grpc_retry_pushback(&HeaderValue::from(ms)), expected);
    }
}
