//! Outcomes decided at the end of a stream (a gRPC-style status in trailers).

use std::time::Duration;

use crate::support::trips_after;
use seawall::circuit_breaker::{CircuitBreakerLayer, State};
use seawall::classify::{Classification, Classify, ClassifyEos, RecordOutcome, Verdict};
use tokio::sync::oneshot;
use tower::{Layer, ServiceExt};

/// A streamed response: the status arrives after the "body", like gRPC trailers.
struct Streamed {
    status_in_headers: Option<u8>,
    trailers: oneshot::Receiver<u8>,
}

/// Status 0 is OK; anything else is a failure. Decided from the headers when present,
/// else at the end of the stream.
#[derive(Clone)]
struct StatusClassifier;

struct AtEnd;

impl Classify<Streamed, std::convert::Infallible> for StatusClassifier {
    type Eos = AtEnd;
    fn classify(&self, result: &Result<Streamed, std::convert::Infallible>) -> Verdict<AtEnd> {
        match result {
            Ok(Streamed {
                status_in_headers: Some(s),
                ..
            }) => Verdict::Classified(judge(*s)),
            Ok(_) => Verdict::AtEndOfStream(AtEnd),
            Err(never) => match *never {},
        }
    }
}

fn judge(status: u8) -> Classification {
    if status == 0 {
        Classification::success()
    } else {
        Classification::failure()
    }
}

/// The response the breaker hands back: the stream, with the breaker's recorder riding
/// along until the trailers arrive.
struct Tracked<R> {
    stream: Streamed,
    recorder: Option<R>,
}

impl<R: RecordOutcome> Tracked<R> {
    /// Read the stream to its end; the status is recorded then.
    async fn finish(mut self) -> u8 {
        let status = match self.stream.status_in_headers {
            Some(s) => s,
            None => (&mut self.stream.trailers).await.unwrap_or(2),
        };
        if let Some(recorder) = self.recorder.take() {
            recorder.record(judge(status));
        }
        status
    }
}

impl ClassifyEos<Streamed> for AtEnd {
    type Response<R: RecordOutcome> = Tracked<R>;
    fn defer<R: RecordOutcome>(self, stream: Streamed, recorder: R) -> Tracked<R> {
        Tracked {
            stream,
            recorder: Some(recorder),
        }
    }
    fn passthrough<R: RecordOutcome>(stream: Streamed) -> Tracked<R> {
        Tracked {
            stream,
            recorder: None,
        }
    }
}

fn layer() -> CircuitBreakerLayer<StatusClassifier> {
    trips_after(2, Duration::from_secs(1))
        .classifier(StatusClassifier)
        .build()
        .unwrap()
}

/// A service whose response status comes in the trailers, sent through `tx`.
fn streaming(
    rx: std::sync::Arc<std::sync::Mutex<Vec<oneshot::Receiver<u8>>>>,
) -> impl tower::Service<(), Response = Streamed, Error = std::convert::Infallible, Future = impl Send>
       + Clone {
    tower::service_fn(move |()| {
        let trailers = rx
            .lock()
            .unwrap()
            .pop()
            .expect("a trailer channel per call");
        async move {
            Ok(Streamed {
                status_in_headers: None,
                trailers,
            })
        }
    })
}

#[tokio::test(start_paused = true)]
async fn failures_in_trailers_trip_the_breaker_when_the_stream_ends() {
    let layer = layer();
    let handle = layer.handle();
    let channels = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let svc = layer.layer(streaming(channels.clone()));

    let mut senders = Vec::new();
    let mut responses = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = oneshot::channel();
        channels.lock().unwrap().push(rx);
        senders.push(tx);
        responses.push(svc.clone().oneshot(()).await.unwrap());
    }
    // Headers arrived for both, but the outcome is not known yet.
    assert_eq!(handle.snapshot().consecutive_failures, 0);
    for tx in senders {
        tx.send(14).unwrap(); // UNAVAILABLE in the trailers
    }
    for r in responses {
        assert_eq!(r.finish().await, 14);
    }
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_status_in_the_headers_is_recorded_at_once() {
    let layer = layer();
    let handle = layer.handle();
    let svc = layer.layer(tower::service_fn(|()| async {
        let (_tx, trailers) = oneshot::channel();
        Ok::<_, std::convert::Infallible>(Streamed {
            status_in_headers: Some(14),
            trailers,
        })
    }));
    for _ in 0..2 {
        let r = svc.clone().oneshot(()).await.unwrap();
        assert!(r.recorder.is_none());
    }
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_probe_stream_dropped_before_its_end_frees_the_slot() {
    let layer = layer();
    let handle = layer.handle();
    let channels = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let svc = layer.layer(streaming(channels.clone()));
    handle.force_open();
    handle.reset();
    // Trip with two trailer failures.
    for _ in 0..2 {
        let (tx, rx) = oneshot::channel();
        channels.lock().unwrap().push(rx);
        let r = svc.clone().oneshot(()).await.unwrap();
        tx.send(13).unwrap();
        r.finish().await;
    }
    assert_eq!(handle.state(), State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;

    // The probe's headers arrive; the caller drops the body half-way.
    let (_tx, rx) = oneshot::channel();
    channels.lock().unwrap().push(rx);
    let probe = svc.clone().oneshot(()).await.unwrap();
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    drop(probe);
    assert_eq!(handle.snapshot().probes_in_flight, 0);
    assert_eq!(handle.state(), State::HalfOpen);

    // The next probe reads its stream to an OK end and closes the breaker.
    let (tx, rx) = oneshot::channel();
    channels.lock().unwrap().push(rx);
    let probe = svc.clone().oneshot(()).await.unwrap();
    tx.send(0).unwrap();
    assert_eq!(probe.finish().await, 0);
    assert_eq!(handle.state(), State::Closed);
}
