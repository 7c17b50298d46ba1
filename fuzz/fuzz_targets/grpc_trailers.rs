//! A gRPC call's status as the client reads it: `grpc-status`, `grpc-retry-pushback-ms`
//! and `grpc-message` in trailers (or the headers of a trailers-only response), the
//! HTTP status and `Retry-After` of a response from an HTTP intermediary, classified by
//! `seawall::grpc::GrpcClassifier`.
//!
//! The input is up to five lines: `grpc-status`, `grpc-retry-pushback-ms`,
//! `grpc-message`, the HTTP status, `Retry-After` (a missing line is a missing header).
//! Properties: the code is exactly the protocol's reading (`UNKNOWN` for anything that is
//! not one of the 17 codes), and the classification follows the documented default rules
//! from the code and the pushback alone; `grpc-message` (which seawall never reads)
//! changes nothing; the headers of a response classify as its trailers when they carry a
//! `grpc-status`, as "at the end of the stream" on a 200 without one, and by the HTTP
//! status otherwise.
#![no_main]

use http::{HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use seawall::classify::{Classification, Classify, Verdict};
use seawall::grpc::{Code, GrpcClassifier, GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS};
use seawall::http::pushback::{retry_after, Pushback};
use seawall_fuzz::{default_failure, fields, reference_code, reference_pushback};

/// The default rules (see `seawall::grpc`'s module docs), from a code and a pushback.
fn check(c: &Classification, code: Code, pushback: Option<Pushback>) {
    let delay = match pushback {
        Some(Pushback::After(delay)) => Some(delay),
        _ => None,
    };
    if code == Code::Ok {
        assert!(
            c.is_success() && !c.is_retryable() && c.pushback().is_none(),
            "{c:?}"
        );
        return;
    }
    assert_eq!(c.is_failure(), default_failure(code), "{code}: {c:?}");
    assert!(!c.is_success());
    let retryable = match code {
        Code::Unavailable => pushback != Some(Pushback::DoNotRetry),
        Code::ResourceExhausted => delay.is_some(),
        _ => false,
    };
    assert_eq!(
        c.is_retryable(),
        retryable,
        "{code} with {pushback:?}: {c:?}"
    );
    assert_eq!(
        c.pushback(),
        delay.filter(|_| retryable),
        "{code} with {pushback:?}: {c:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let [status, pushback, message, http_status, retry] = fields::<5>(data);
    let value = |field: Option<&[u8]>| field.and_then(|bytes| HeaderValue::from_bytes(bytes).ok());
    let mut trailers = HeaderMap::new();
    for (name, field) in [
        (GRPC_STATUS, status),
        (GRPC_RETRY_PUSHBACK_MS, pushback),
        ("grpc-message", message),
        ("retry-after", retry),
    ] {
        if let Some(value) = value(field) {
            trailers.insert(name, value);
        }
    }
    let status = trailers
        .get(GRPC_STATUS)
        .map(|v| reference_code(v.as_bytes()));
    let pushback = trailers
        .get(GRPC_RETRY_PUSHBACK_MS)
        .map(|v| reference_pushback(v.as_bytes()));
    assert_eq!(Code::from_headers(&trailers), status);

    let classifier = GrpcClassifier::new();
    let c = classifier.classify_trailers(&trailers);
    check(&c, status.unwrap_or(Code::Unknown), pushback);
    let mut without_message = trailers.clone();
    without_message.remove("grpc-message");
    assert_eq!(
        classifier.classify_trailers(&without_message),
        c,
        "grpc-message"
    );

    let http_status = http_status
        .and_then(|text| StatusCode::from_bytes(text).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = http::Response::new(());
    *response.status_mut() = http_status;
    *response.headers_mut() = trailers;
    let before = std::time::SystemTime::now();
    let headers = classifier.classify_headers(&response);
    let after = std::time::SystemTime::now();
    let verdict = classifier.classify(&Ok::<_, std::io::Error>(response));
    match (&verdict, headers) {
        (Verdict::Classified(v), Some(h)) => assert_eq!(*v, h),
        (Verdict::AtEndOfStream(_), None) => {}
        _ => panic!("classify and classify_headers disagree: {verdict:?}"),
    }
    match (status, headers) {
        (Some(_), headers) => assert_eq!(headers, Some(c), "grpc-status in the headers"),
        (None, None) => assert_eq!(http_status, StatusCode::OK),
        (None, Some(h)) => {
            assert_ne!(http_status, StatusCode::OK);
            // An intermediary's `Retry-After`, when there is no gRPC pushback; an
            // HTTP-date is read at the time of the call, between `before` and `after`.
            let code = Code::from_http_status(http_status);
            let retry =
                value(retry).and_then(|v| retry_after(&v, after).zip(retry_after(&v, before)));
            match (pushback, retry) {
                (Some(pushback), _) => check(&h, code, Some(pushback)),
                (None, None) => check(&h, code, None),
                (None, Some((least, most))) => {
                    let delay = h.pushback().unwrap_or(most);
                    assert!(least <= delay && delay <= most, "{delay:?}");
                    check(&h, code, Some(Pushback::After(delay)));
                }
            }
        }
    }
});
