//! `x-request-timeout-ms` (whole milliseconds, 1 to 19 digits), read by
//! `seawall::http::deadline::parse_millis` (the header `ServerDeadlineLayer` reads on
//! requests that are not gRPC).
//!
//! The whole input is a header value: it reads exactly as documented, or as nothing.
//! Then every number of milliseconds of at most 19 digits derived from the input,
//! written as decimal digits, must read back exactly. (What `PropagateDeadlineLayer` writes is checked end to end
//! by the `deadline_headers` target.)
#![no_main]

use std::time::Duration;

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use seawall::http::deadline::parse_millis;
use seawall_fuzz::{reference_millis, Input};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        assert_eq!(parse_millis(&value), reference_millis(data), "{value:?}");
    }

    let millis = Input::new(data).duration().as_secs() % 10_000_000_000_000_000_000;
    let written = HeaderValue::from(millis);
    assert_eq!(parse_millis(&written), Some(Duration::from_millis(millis)));
});
