//! `grpc-timeout` (the gRPC HTTP/2 protocol: 1 to 8 digits and a unit), read by
//! `seawall::http::deadline::parse_grpc_timeout` and written by `format_grpc_timeout`.
//!
//! The whole input is a header value: it reads exactly as the protocol says, or as
//! nothing. Then a duration derived from the input, written by seawall, must be valid,
//! read back as the duration rounded down to the finest unit that fits in 8 digits (so
//! never more than was left), or as 99999999 hours when none does.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use seawall::http::deadline::{format_grpc_timeout, parse_grpc_timeout};
use seawall_fuzz::{grpc_timeout_floor, reference_grpc_timeout, Input};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        assert_eq!(
            parse_grpc_timeout(&value),
            reference_grpc_timeout(data),
            "{value:?}"
        );
    }

    let timeout = Input::new(data).duration();
    let written = format_grpc_timeout(timeout);
    assert!(written.len() <= 9, "{written:?}: more than 8 digits");
    let read = parse_grpc_timeout(&written);
    assert_eq!(read, reference_grpc_timeout(written.as_bytes()));
    assert_eq!(
        read,
        Some(grpc_timeout_floor(timeout)),
        "{timeout:?} as {written:?}"
    );
});
