//! Retries of HTTP requests follow the idempotency rules.
#![cfg(all(feature = "http", feature = "policy"))]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use seawall::http::{IdempotentReplay, StatusClassifier};
use seawall::policy::Policy;
use seawall::retry::backoff::ConstantBackoff;
use seawall::retry::RetryLayer;
use seawall::BoxError;
use tower::{Layer, ServiceExt};

/// A downstream that answers every request with a 503; counts its calls.
fn unavailable(
    calls: &Arc<AtomicU32>,
) -> impl tower::Service<
    http::Request<String>,
    Response = http::Response<String>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    let calls = calls.clone();
    tower::service_fn(move |_: http::Request<String>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async {
            Ok::<_, BoxError>(
                http::Response::builder()
                    .status(503)
                    .body(String::new())
                    .unwrap(),
            )
        }
    })
}

/// Sends `request` through a retry layer with the HTTP classifier and `replay` (default
/// `IdempotentReplay::new()`) to a downstream that always answers 503; returns how many
/// calls it got.
async fn attempts(request: http::Request<String>, replay: Option<IdempotentReplay>) -> u32 {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = RetryLayer::builder()
        .backoff(ConstantBackoff::new(Duration::from_millis(1)))
        .classifier(StatusClassifier::new())
        .replay(replay.unwrap_or_default())
        .build()
        .unwrap();
    let _ = layer.layer(unavailable(&calls)).oneshot(request).await;
    calls.load(Ordering::SeqCst)
}

/// The same through a policy built with nothing but the HTTP classifier.
async fn policy_attempts(request: http::Request<String>) -> u32 {
    let calls = Arc::new(AtomicU32::new(0));
    let policy = Policy::builder("orders")
        .classifier(StatusClassifier::new())
        .build()
        .unwrap();
    let response = policy
        .layer(unavailable(&calls))
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
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
            attempts(request(method.clone(), None), None).await,
            3,
            "{method}"
        );
        assert_eq!(
            policy_attempts(request(method.clone(), None)).await,
            3,
            "{method}"
        );
    }
    for method in [Method::POST, Method::PATCH] {
        assert_eq!(
            attempts(request(method.clone(), None), None).await,
            1,
            "{method}"
        );
        assert_eq!(
            policy_attempts(request(method.clone(), None)).await,
            1,
            "{method}"
        );
    }
}

/// The review's case: a policy built with nothing but the HTTP classifier sends a POST
/// that gets a 503 once, not three times.
#[tokio::test(start_paused = true)]
async fn a_policy_with_the_http_classifier_sends_a_post_once_by_default() {
    let post = request(http::Method::POST, None);
    assert_eq!(policy_attempts(post).await, 1);
}

/// Nor does such a policy hedge a POST.
#[tokio::test(start_paused = true)]
async fn a_policy_with_the_http_classifier_never_hedges_a_post_by_default() {
    use http::Method;
    for (method, hedged) in [(Method::POST, false), (Method::GET, true)] {
        let calls = Arc::new(AtomicU32::new(0));
        let slow = {
            let calls = calls.clone();
            tower::service_fn(move |_: http::Request<String>| {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok::<_, BoxError>(http::Response::new(String::new()))
                }
            })
        };
        let policy = Policy::builder("orders")
            .classifier(StatusClassifier::new())
            .hedge(|hedge| hedge.delay(Duration::from_millis(50)))
            .build()
            .unwrap();
        let response = policy
            .layer(slow)
            .oneshot(request(method.clone(), None))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let sent = calls.load(Ordering::SeqCst);
        assert_eq!(sent, if hedged { 2 } else { 1 }, "{method}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_idempotency_key_or_an_opt_in_allows_retrying_a_post() {
    use http::Method;
    let keyed = request(Method::POST, Some("4f1c-9e"));
    assert_eq!(attempts(keyed, None).await, 3);
    let keyed = request(Method::POST, Some("4f1c-9e"));
    assert_eq!(policy_attempts(keyed).await, 3);
    let opted_in = IdempotentReplay::new().allow_non_idempotent();
    assert_eq!(
        attempts(request(Method::PATCH, None), Some(opted_in)).await,
        3
    );
}
