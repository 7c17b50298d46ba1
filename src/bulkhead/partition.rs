//! Partitions: one bulkhead that reserves shares of its limit for classes of traffic.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::future::{Permit, ResponseFuture};
use super::handle::Handle;
use super::limiter::Shared;
use crate::error::ConfigError;
use crate::BoxError;

/// One class of traffic and its share of the limit.
#[derive(Debug, Clone)]
pub(crate) struct PartitionSpec {
    pub(crate) name: String,
    pub(crate) share: f64,
}

#[derive(Debug)]
struct Partition {
    name: Arc<str>,
    shared: Arc<Shared>,
}

/// Applies a partitioned bulkhead: each class of traffic gets its own share of the limit,
/// so that one class (say, batch jobs) can never take the permits reserved for another
/// (say, interactive requests). A selector closure names each request's class.
///
/// Built with [`Builder::partition`](super::Builder::partition) and
/// [`Builder::build_partitioned`](super::Builder::build_partitioned). Partitions shed at
/// once: the class is known only from the request, in `call`, where nothing can wait.
///
/// ```
/// use seawall::bulkhead::BulkheadLayer;
/// use tower::{Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = BulkheadLayer::builder()
///     .max_concurrent(10)
///     .partition("interactive", 0.9)
///     .partition("batch", 0.1)
///     .build_partitioned(|job: &String| {
///         if job.starts_with("batch") { "batch" } else { "interactive" }
///     })
///     .unwrap();
/// assert_eq!(layer.handle("interactive").unwrap().limit(), 9);
/// assert_eq!(layer.handle("batch").unwrap().limit(), 1);
///
/// let mut svc = layer.layer(tower::service_fn(|job: String| async move {
///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
///     Ok::<_, std::io::Error>(job.len())
/// }));
/// let first_batch = svc.ready().await.unwrap().call("batch-1".to_owned());
/// // The batch share is taken; interactive traffic still gets through.
/// assert!(svc.ready().await.unwrap().call("batch-2".to_owned()).await.is_err());
/// assert!(svc.ready().await.unwrap().call("search".to_owned()).await.is_ok());
/// assert!(first_batch.await.is_ok());
/// # }
/// ```
pub struct PartitionedBulkheadLayer<F> {
    partitions: Arc<[Partition]>,
    select: F,
}

impl<F> PartitionedBulkheadLayer<F> {
    pub(crate) fn build(
        name: &str,
        max_concurrent: u32,
        specs: &[PartitionSpec],
        select: F,
    ) -> Result<Self, ConfigError> {
        let err = |reason: String| Err(ConfigError::new("bulkhead", "partition", reason));
        let mut total = 0.0;
        let mut partitions = Vec::with_capacity(specs.len());
        for spec in specs {
            if spec.name.is_empty() {
                return err("partition names must not be empty".to_owned());
            }
            if specs.iter().filter(|s| s.name == spec.name).count() > 1 {
                return err(format!("the partition name {:?} is used twice", spec.name));
            }
            if !(spec.share > 0.0 && spec.share <= 1.0) {
                return err(format!(
                    "the share of {:?} must be within (0.0, 1.0] (got {})",
                    spec.name, spec.share
                ));
            }
            total += spec.share;
            let limit = (f64::from(max_concurrent) * spec.share).floor() as u32;
            if limit == 0 {
                return err(format!(
                    "the share {} of {:?} leaves it no permit of {max_concurrent}",
                    spec.share, spec.name
                ));
            }
            partitions.push(Partition {
                name: Arc::from(spec.name.as_str()),
                shared: Shared::new(
                    Arc::from(format!("{name}/{}", spec.name)),
                    limit,
                    // Partitions shed at once: nobody ever queues.
                    super::DEFAULT_MAX_WAITING,
                    None,
                ),
            });
        }
        // A little slack for shares written as decimals (0.7 + 0.2 + 0.1).
        if total > 1.0 + 1e-9 {
            return err(format!("the shares add up to {total}, more than 1.0"));
        }
        Ok(Self {
            partitions: partitions.into(),
            select,
        })
    }

    /// A handle to one partition's permits, by name.
    pub fn handle(&self, partition: &str) -> Option<Handle> {
        self.partitions
            .iter()
            .find(|p| &*p.name == partition)
            .map(|p| Handle::new(p.shared.clone()))
    }
}

impl<F: Clone> Clone for PartitionedBulkheadLayer<F> {
    fn clone(&self) -> Self {
        Self {
            partitions: self.partitions.clone(),
            select: self.select.clone(),
        }
    }
}

impl<F> fmt::Debug for PartitionedBulkheadLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_map();
        for p in self.partitions.iter() {
            d.entry(&p.name, &p.shared.lane.limit());
        }
        d.finish()
    }
}

impl<S, F: Clone> Layer<S> for PartitionedBulkheadLayer<F> {
    type Service = PartitionedBulkhead<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        PartitionedBulkhead {
            inner,
            partitions: self.partitions.clone(),
            select: self.select.clone(),
        }
    }
}

/// The service made by [`PartitionedBulkheadLayer`].
pub struct PartitionedBulkhead<S, F> {
    inner: S,
    partitions: Arc<[Partition]>,
    select: F,
}

impl<S: Clone, F: Clone> Clone for PartitionedBulkhead<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            partitions: self.partitions.clone(),
            select: self.select.clone(),
        }
    }
}

impl<S: fmt::Debug, F> fmt::Debug for PartitionedBulkhead<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionedBulkhead")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, F, K, Req> Service<Req> for PartitionedBulkhead<S, F>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    F: Fn(&Req) -> K,
    K: AsRef<str>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let class = (self.select)(&request);
        let class = class.as_ref();
        // An unknown class falls into the first partition declared.
        let partition = self
            .partitions
            .iter()
            .find(|p| &*p.name == class)
            .or_else(|| self.partitions.first());
        match partition {
            Some(p) if p.shared.lane.try_acquire() => {
                ResponseFuture::called(self.inner.call(request), Permit::taken(&p.shared))
            }
            Some(p) => {
                p.shared.note_rejection();
                ResponseFuture::rejected()
            }
            None => ResponseFuture::rejected(),
        }
    }
}
