//! Auto traits and error types.

use std::time::Duration;

use seawall::circuit_breaker::{
    future::ResponseFuture, CircuitBreaker, CircuitBreakerLayer, Handle, State,
};
use seawall::classify::ErrorsAsFailures;
use seawall::BoxError;
use tower::{Layer, ServiceBuilder, ServiceExt};

fn assert_send_sync_static<T: Send + Sync + 'static>() {}
fn assert_send_static<T: Send + 'static>() {}

#[test]
fn layers_services_and_handles_are_send_sync_static() {
    type Inner = tower::util::BoxCloneSyncService<u32, u32, BoxError>;
    assert_send_sync_static::<CircuitBreakerLayer>();
    assert_send_sync_static::<CircuitBreaker<Inner, ErrorsAsFailures>>();
    assert_send_sync_static::<Handle>();
    assert_send_sync_static::<seawall::error::CircuitOpen>();
    assert_send_sync_static::<seawall::error::ConfigError>();
    assert_send_static::<
        ResponseFuture<
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, BoxError>> + Send>>,
            ErrorsAsFailures,
        >,
    >();
}

#[tokio::test(start_paused = true)]
async fn works_with_box_error_inner_errors_and_in_a_service_builder() {
    let layer = CircuitBreakerLayer::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|x: u32| async move {
            if x == 0 {
                Err::<u32, BoxError>("zero".into())
            } else {
                Ok(x)
            }
        });
    assert_eq!(svc.clone().oneshot(3).await.unwrap(), 3);
    let err = svc.clone().oneshot(0).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "zero",
        "the inner error passes through unchanged"
    );
    assert!(!seawall::error::is_rejection(&*err));
    assert_eq!(handle.state(), State::Open);
    let err = svc.clone().oneshot(3).await.unwrap_err();
    assert!(seawall::error::is_rejection(&*err));
}

#[tokio::test(start_paused = true)]
async fn concrete_inner_errors_are_boxed() {
    let layer = CircuitBreakerLayer::builder().build().unwrap();
    let svc = layer.layer(tower::service_fn(|()| async {
        Err::<(), _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ))
    }));
    let err = svc.oneshot(()).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<std::io::Error>().unwrap().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}

#[test]
fn rejections_are_recognised_through_source_chains() {
    #[derive(Debug)]
    struct Wrapper(seawall::error::CircuitOpen);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "call failed")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let wrapped = Wrapper(seawall::error::CircuitOpen::new(None));
    assert!(seawall::error::is_rejection(&wrapped));
    let io = std::io::Error::other("reset");
    assert!(!seawall::error::is_rejection(&io));
}
