//! An axum server protecting itself: requests over its limit are answered at once with
//! `503 Service Unavailable` and `Retry-After`, before the handler does any work, so the
//! requests it does accept are served at full speed.
//!
//! The example starts the server on 127.0.0.1, sends it a burst of concurrent requests
//! over plain TCP, prints what came back, and exits.
//!
//! ```text
//! cargo run --example axum_server --features http
//! ```

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use seawall::bulkhead::BulkheadLayer;
use seawall::http::ShedLoadLayer;
use seawall::BoxError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The work each request does: 200 ms of a slow dependency.
async fn report() -> &'static str {
    tokio::time::sleep(Duration::from_millis(200)).await;
    "report ready\n"
}

/// One HTTP/1.1 request over a fresh connection: the status code and the `Retry-After`.
async fn get_once(addr: std::net::SocketAddr) -> Result<(u16, Option<String>, Duration), BoxError> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /report HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("malformed status line")?;
    let retry_after = response
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: ").map(str::to_owned));
    Ok((status, retry_after, started.elapsed()))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let limit = BulkheadLayer::builder()
        .name("report-server")
        .max_concurrent(4)
        .build()?;
    let shed = ShedLoadLayer::new(limit)?.retry_after(Duration::from_secs(1))?;
    let handle = shed.handle();
    let app = Router::new().route("/report", get(report)).layer(shed);

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!(
        "server on {addr}: at most {} requests at once\n",
        handle.limit()
    );

    // A burst of 20 concurrent requests.
    let burst: Vec<_> = (0..20).map(|_| tokio::spawn(get_once(addr))).collect();
    let mut served = Vec::new();
    let mut shed_latency = Vec::new();
    let mut retry_after = None;
    for request in burst {
        let (status, retry, took) = request.await??;
        match status {
            200 => served.push(took),
            503 => {
                shed_latency.push(took);
                retry_after = retry;
            }
            other => println!("unexpected status {other}"),
        }
    }
    let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    println!(
        "{} served (slowest {:?}), {} shed with 503 (slowest {:?}, retry-after: {})",
        served.len(),
        max(&served),
        shed_latency.len(),
        max(&shed_latency),
        retry_after.as_deref().unwrap_or("-"),
    );
    println!(
        "the server rejected {} requests without running the handler",
        handle.rejections()
    );

    server.abort();
    Ok(())
}
