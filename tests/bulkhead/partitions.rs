//! Partitions: shares of one limit reserved for classes of traffic.

use std::time::Duration;

use seawall::bulkhead::BulkheadLayer;
use seawall::error::BulkheadFull;
use tower::{Layer, ServiceExt};

use crate::support::{Do, Downstream};

/// Requests are (class, what to do).
type Job = (&'static str, Do);
type Layer8020 = seawall::bulkhead::PartitionedBulkheadLayer<fn(&Job) -> &'static str>;

fn partitioned() -> (Layer8020, Downstream) {
    fn class(job: &Job) -> &'static str {
        job.0
    }
    let layer = BulkheadLayer::builder()
        .max_concurrent(10)
        .partition("interactive", 0.8)
        .partition("batch", 0.2)
        .build_partitioned(class as fn(&Job) -> &'static str)
        .unwrap();
    (layer, Downstream::default())
}

#[tokio::test(start_paused = true)]
async fn one_class_cannot_take_the_permits_of_another() {
    let (layer, downstream) = partitioned();
    let interactive = layer.handle("interactive").unwrap();
    let batch = layer.handle("batch").unwrap();
    assert_eq!((interactive.limit(), batch.limit()), (8, 2));
    let inner = tower::service_fn(move |job: Job| {
        let mut downstream = downstream.clone();
        async move { tower::Service::call(&mut downstream, job.1).await }
    });
    let svc = layer.layer(inner);

    // A flood of batch work takes the batch share and no more.
    let flood: Vec<_> = (0..20)
        .map(|_| tokio::spawn(svc.clone().oneshot(("batch", Do::Hang))))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!((batch.in_flight(), batch.rejections()), (2, 18));
    // Interactive traffic still has all of its permits.
    let held: Vec<_> = (0..8)
        .map(|_| tokio::spawn(svc.clone().oneshot(("interactive", Do::Hang))))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(interactive.in_flight(), 8);
    let err = svc
        .clone()
        .oneshot(("interactive", Do::Succeed))
        .await
        .unwrap_err();
    assert!(err.is::<BulkheadFull>());
    for task in flood.into_iter().chain(held) {
        task.abort();
        let _ = task.await;
    }
    assert_eq!((interactive.in_flight(), batch.in_flight()), (0, 0));
    // An unknown class falls into the first partition.
    assert!(svc
        .clone()
        .oneshot(("unknown", Do::SucceedAfter(Duration::from_millis(1))))
        .await
        .is_ok());
    assert!(layer.handle("unknown").is_none());
}

#[test]
fn every_bad_partition_is_a_config_error() {
    let b = BulkheadLayer::builder;
    let select = |_: &()| "a";
    let cases = [
        (b().partition("a", 0.0), "partition"),
        (b().partition("a", 1.5), "partition"),
        (b().partition("a", f64::NAN), "partition"),
        (b().partition("a", 0.6).partition("b", 0.6), "partition"),
        (b().partition("a", 0.5).partition("a", 0.5), "partition"),
        (b().partition("", 0.5), "partition"),
        (
            b().max_concurrent(4)
                .partition("a", 0.9)
                .partition("b", 0.1),
            "partition",
        ),
        (b(), "partition"),
        (
            b().partition("a", 1.0).max_wait(Duration::from_millis(5)),
            "max_wait",
        ),
        (b().partition("a", 1.0).max_concurrent(0), "max_concurrent"),
        (b().partition("a", 1.0).name(""), "name"),
    ];
    for (builder, field) in cases {
        let debug = format!("{builder:?}");
        let err = builder.build_partitioned(select).unwrap_err();
        assert_eq!(
            (err.component(), err.field()),
            ("bulkhead", field),
            "{debug}: {err}"
        );
    }
    // Declared partitions must be built with build_partitioned.
    assert_eq!(
        b().partition("a", 1.0).build().unwrap_err().field(),
        "partition"
    );
    // Shares written as decimals may add up to a hair over 1.0.
    assert!(b()
        .partition("a", 0.7)
        .partition("b", 0.2)
        .partition("c", 0.1)
        .build_partitioned(select)
        .is_ok());
}
