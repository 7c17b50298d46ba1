//! Deadlines that travel in request headers, end to end: a client's
//! `PropagateDeadlineLayer` writes what is left of the call's deadline (`grpc-timeout`
//! on gRPC requests, whole milliseconds in `x-request-timeout-ms` or a header of the
//! user's choice on others) and a server's `ServerDeadlineLayer` reads it, capped.
//!
//! The input gives the request kind, the client's deadline (or none), a value the caller
//! set by hand in the header (any bytes), and the server's cap and default. Properties:
//! the client never tells the next hop more time than is left, keeps a tighter value
//! the caller set, and what it writes parses back (the round trip); less than 1 ms left
//! is a local rejection, nothing sent; the server's handler gets exactly the header's
//! value (hostile or not, read as the protocol says), capped, or the default when it
//! does not parse, in its `Deadline::current()` and in the request's extensions; the
//! server's builder refuses exactly the bad caps and defaults.
#![no_main]

use std::time::Duration;

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use libfuzzer_sys::fuzz_target;
use seawall::http::deadline::{format_grpc_timeout, DEFAULT_HEADER, GRPC_TIMEOUT};
use seawall::http::{PropagateDeadlineLayer, ServerDeadlineLayer};
use seawall::timeout::Deadline;
use seawall_fuzz::{block_on, grpc_timeout_floor, reference_grpc_timeout, reference_millis, Input};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

/// The most `x-request-timeout-ms` holds: 19 digits.
const MAX_MILLIS: u128 = 9_999_999_999_999_999_999;

/// seawall's "never" for a deadline too far to add to `Instant::now()`: 30 years.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// What is left of a deadline set `timeout` from now.
fn remaining_after(timeout: Duration) -> Duration {
    match Instant::now().checked_add(timeout) {
        Some(_) => timeout,
        None => FAR_FUTURE,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let (grpc, has_deadline, has_default, preset, custom) = (
        flags & 1 != 0,
        flags & 2 != 0,
        flags & 4 != 0,
        flags & 8 != 0,
        flags & 16 != 0,
    );
    let timeout = input.duration();
    let max = input.duration();
    let default = input.duration();
    let preset = preset
        .then(|| HeaderValue::from_bytes(input.rest()).ok())
        .flatten();

    let header = HeaderName::from_static(if custom {
        "x-deadline-ms"
    } else {
        DEFAULT_HEADER
    });
    let carrier = if grpc {
        HeaderName::from_static(GRPC_TIMEOUT)
    } else {
        header.clone()
    };
    let read = |value: &HeaderValue| {
        if grpc {
            reference_grpc_timeout(value.as_bytes())
        } else {
            reference_millis(value.as_bytes())
        }
    };

    let mut request = http::Request::new(());
    if grpc {
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    }
    if let Some(preset) = &preset {
        request
            .headers_mut()
            .insert(carrier.clone(), preset.clone());
    }

    block_on(async {
        // The client.
        let client = PropagateDeadlineLayer::new()
            .header(header.clone())
            .unwrap()
            .layer(tower::service_fn(|request: http::Request<()>| async move {
                Ok::<_, seawall::BoxError>(request)
            }));
        let sent = if has_deadline {
            Deadline::after(timeout)
                .scope(client.oneshot(request))
                .await
        } else {
            client.oneshot(request).await
        };
        let left = remaining_after(timeout);
        let request = match sent {
            Err(error) => {
                assert!(has_deadline && left < Duration::from_millis(1), "{error}");
                assert!(seawall::error::is_rejection(&*error));
                return;
            }
            Ok(request) => request,
        };
        let written = request.headers().get(&carrier);
        if has_deadline {
            assert!(left >= Duration::from_millis(1), "sent with {left:?} left");
            let written = written.expect("a deadline header");
            let kept = preset
                .as_ref()
                .and_then(read)
                .is_some_and(|set| set <= left);
            if kept {
                assert_eq!(Some(written), preset.as_ref(), "the caller's tighter value");
            } else if grpc {
                assert_eq!(written, format_grpc_timeout(left));
                assert_eq!(read(written), Some(grpc_timeout_floor(left)));
            } else {
                // Whole milliseconds, rounded down, at most the 19 digits a server reads.
                let millis = left.as_millis().min(MAX_MILLIS);
                assert_eq!(written.as_bytes(), millis.to_string().as_bytes());
                let ms = Duration::from_millis(millis as u64);
                assert_eq!(
                    read(written),
                    Some(ms),
                    "wrote {written:?} for {left:?} left"
                );
            }
            let sent = read(written).expect("what the client writes parses");
            assert!(sent <= left, "{written:?} is more than the {left:?} left");
        } else {
            assert_eq!(written, preset.as_ref(), "no deadline: sent unchanged");
        }

        // The server.
        let mut builder = ServerDeadlineLayer::builder().header(header).max(max);
        if has_default {
            builder = builder.default_timeout(default);
        }
        let valid = !max.is_zero() && (!has_default || (!default.is_zero() && default <= max));
        let server = match builder.build() {
            Ok(server) => server,
            Err(error) => {
                assert!(!valid, "{error}");
                return;
            }
        };
        assert!(
            valid,
            "built with max {max:?}, default {default:?} ({has_default})"
        );
        let server = server.layer(tower::service_fn(|request: http::Request<()>| async move {
            let current = Deadline::current().map(|deadline| deadline.remaining());
            let extension = request
                .extensions()
                .get::<Deadline>()
                .map(Deadline::remaining);
            Ok::<_, seawall::BoxError>((current, extension))
        }));
        let asked = request.headers().get(&carrier).and_then(read);
        let expected = asked
            .or(has_default.then_some(default))
            .map(|t| remaining_after(t.min(max)));
        let (current, extension) = server.oneshot(request).await.unwrap();
        assert_eq!(
            current, expected,
            "the handler's deadline (asked {asked:?}, cap {max:?})"
        );
        assert_eq!(extension, expected, "the request's Deadline extension");
    });
});
