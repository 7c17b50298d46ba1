//! `grpc-retry-pushback-ms` (gRFC A6), read by
//! `seawall::http::pushback::grpc_retry_pushback`.
//!
//! The whole input is a header value: the decision is exactly gRFC A6's (an `i32` of 0
//! or more is a delay, anything else "do not retry"), and a delay is at most `i32::MAX`
//! ms. Then numbers derived from the input must read back exactly as written, and the
//! pushback of the trailers-only `RESOURCE_EXHAUSTED` that `ShedLoadLayer` sheds a gRPC
//! request with must read back as its wait (to the millisecond), never as "do not
//! retry"; its `grpc-message` must be valid percent-encoding.
#![no_main]

use std::time::Duration;

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use seawall::grpc::{Code, GrpcClassifier, GRPC_RETRY_PUSHBACK_MS};
use seawall::http::pushback::{grpc_retry_pushback, Pushback};
use seawall_fuzz::{percent_decode, reference_pushback, shed_response, Input};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let read = grpc_retry_pushback(&value);
        assert_eq!(read, reference_pushback(data), "{value:?}");
        if let Pushback::After(delay) = read {
            assert!(delay <= Duration::from_millis(i32::MAX as u64));
        }
    }

    let mut input = Input::new(data);
    let number = i32::from_le_bytes(input.bytes());
    let expected = match u64::try_from(number) {
        Ok(ms) => Pushback::After(Duration::from_millis(ms)),
        Err(_) => Pushback::DoNotRetry,
    };
    assert_eq!(grpc_retry_pushback(&HeaderValue::from(number)), expected);

    // What seawall's servers write: the wait in whole milliseconds (rounded either way;
    // a fraction of a millisecond cannot be said), which a gRPC client must read as a
    // delay. A wait the header cannot hold must be refused by the layer.
    let wait = input.duration();
    let Some(shed) = shed_response(wait, true) else {
        let sayable = Duration::from_millis(1)..=Duration::from_millis(i32::MAX as u64);
        assert!(!sayable.contains(&wait), "ShedLoadLayer refused {wait:?}");
        return;
    };
    let headers = shed.headers();
    let written = &headers[GRPC_RETRY_PUSHBACK_MS];
    let Pushback::After(delay) = grpc_retry_pushback(written) else {
        panic!("ShedLoadLayer::retry_after({wait:?}) wrote {written:?}: \"do not retry\"");
    };
    let floor = Duration::from_millis(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
    let ceil = floor + Duration::from_millis(u64::from(wait.subsec_nanos() % 1_000_000 > 0));
    assert!(
        floor <= delay && delay <= ceil,
        "{wait:?} written as {written:?}"
    );
    assert_eq!(Code::from_headers(headers), Some(Code::ResourceExhausted));
    let classified = GrpcClassifier::new().classify_headers(&shed).unwrap();
    assert!(classified.is_failure() && classified.is_retryable());
    assert_eq!(classified.pushback(), Some(delay));
    let message = percent_decode(headers["grpc-message"].as_bytes()).expect("percent-encoded");
    assert!(String::from_utf8(message).is_ok());
});
