//! Retries of HTTP requests follow the idempotency rules.
#![cfg(all(feature = "http", feature = "retry"))]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seawall::http::IdempotentReplay;
use seawall::retry::backoff::ConstantBackoff;
use seawall::retry::RetryLayer;
use seawall::BoxError;
use tower::{Layer, ServiceExt};

/// Sends every request to a downstream that always fails; returns how many calls it got.
async fn attempts(request: http::Request<String>, replay: IdempotentReplay) -> u32 {
    let calls = Arc::new(AtomicU32::new(0));
    let failing = {
        let calls = calls.clone();
        tower::service_fn(move |_: http::Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<http::Response<String>, BoxError>("connection reset".into()) }
        })
    };
    let layer = RetryLayer::builder()
        .backoff(ConstantBackoff::new(Duration::from_millis(1)))
        .replay(replay)
        .build()
        .unwrap();
    let _ = layer.layer(failing).oneshot(request).await;
    calls.load(Ordering::SeqCst)
}

fn request(method: http::Method, key: Option<&str>) -> http::Request<String> {
    let mut builder = http::Request::builder().method(method).uri("/orders");
    if let Some(key) = key {
        builder = builder.header("Idempotency-Key", key);
    }
    builder.body(String::from("{\"qty\":1}")).unwrap()
}

#[tokio::test(start_paused = true)]
async fn idempotent_methods_are_retried_and_others_are_sent_once() {
    use http::Method;
    for method in [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        assert_eq!(
            attempts(request(method.clone(), None), IdempotentReplay::new()).await,
            3,
            "{method}"
        );
    }
    for method in [Method::POST, Method::PATCH] {
        assert_eq!(
            attempts(request(method.clone(), None), IdempotentReplay::new()).await,
            1,
            "{method}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_idempotency_key_or_an_opt_in_allows_retrying_a_post() {
    use http::Method;
    let keyed = request(Method::POST, Some("4f1c-9e"));
    assert_eq!(attempts(keyed, IdempotentReplay::new()).await, 3);
    let opted_in = IdempotentReplay::new().allow_non_idempotent();
    assert_eq!(attempts(request(Method::PATCH, None), opted_in).await, 3);
}
