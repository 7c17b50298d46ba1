//! The four clients compared in every scenario, built over the same downstream.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use seawall::circuit_breaker::{self, CircuitBreakerLayer, Readiness};
use seawall::policy::Policy;
use seawall::retry::backoff::ExponentialBackoff;
use seawall::timeout::TimeoutLayer;
use seawall::BoxError;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::sim::{derive_seed, Endpoint, SplitMix64};

/// Attempts in all (the first included) for every contender that retries.
pub(crate) const ATTEMPTS: usize = 3;
/// tower's and seawall's timeout per attempt (about 4 times the healthy p99).
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(250);
/// seawall's deadline per call (every attempt and backoff).
pub(crate) const DEADLINE: Duration = Duration::from_secs(1);
/// seawall's breaker: open this long after a first trip...
pub(crate) const OPEN_DURATION: Duration = Duration::from_secs(1);
/// ...doubling on each trip in a row, up to this.
pub(crate) const MAX_OPEN_DURATION: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contender {
    /// The bare client: the caller's give-up timeout is all there is.
    None,
    /// 3 attempts, any error retried at once, no budget, no backoff, no timeout.
    NaiveRetry,
    /// tower's built-ins: Retry (3 attempts) → Timeout (per attempt) → ConcurrencyLimit.
    Tower,
    /// `seawall::policy::Policy` (deadline, budgeted retry, breaker, bulkhead, timeout).
    Seawall,
}

impl Contender {
    pub(crate) const ALL: [Contender; 4] = [
        Contender::None,
        Contender::NaiveRetry,
        Contender::Tower,
        Contender::Seawall,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Contender::None => "none",
            Contender::NaiveRetry => "naive-retry",
            Contender::Tower => "tower",
            Contender::Seawall => "seawall",
        }
    }
}

/// One request through a client: boxed so that every contender has one type.
pub(crate) type Call = Pin<Box<dyn Future<Output = Result<(), BoxError>>>>;
/// A client instance: request id in, outcome out.
pub(crate) type Client = Rc<dyn Fn(u64) -> Call>;

/// What a contender was built into.
pub(crate) struct Built {
    /// One per client instance.
    pub(crate) clients: Vec<Client>,
    /// Every seawall breaker (per instance, or per endpoint behind the balancer).
    pub(crate) breakers: Vec<circuit_breaker::Handle>,
}

/// Where the clients send their requests.
pub(crate) enum Topology<'a> {
    /// `instances` clients, each with its own state, over one endpoint.
    Single {
        endpoint: &'a Rc<Endpoint>,
        instances: usize,
    },
    /// One client over a p2c balancer of several endpoints.
    Balanced { endpoints: &'a [Rc<Endpoint>] },
}

/// Build `contender` over `topology`; `limit` is the concurrency limit (tower) and the
/// bulkhead (seawall) of each client instance.
pub(crate) fn build(
    contender: Contender,
    topology: Topology<'_>,
    limit: usize,
    seed: u64,
) -> Result<Built, BoxError> {
    let mut breakers = Vec::new();
    let clients = match topology {
        Topology::Single {
            endpoint,
            instances,
        } => (0..instances)
            .map(|i| {
                let seed = derive_seed(seed, 1_000 + i as u64);
                let (client, breaker) = wrap(contender, endpoint.service(), limit, seed, true)?;
                breakers.extend(breaker);
                Ok(client)
            })
            .collect::<Result<Vec<_>, BoxError>>()?,
        Topology::Balanced { endpoints } => {
            let balancer_seed = derive_seed(seed, 2_000);
            let policy_seed = derive_seed(seed, 2_001);
            let client = if contender == Contender::Seawall {
                // Per-endpoint breakers in backpressure mode under p2c (outlier ejection),
                // the policy's other stages above the balancer.
                let mut list = Vec::new();
                for (i, endpoint) in endpoints.iter().enumerate() {
                    let breaker = breaker_config(derive_seed(seed, 3_000 + i as u64))
                        .name(format!("replica-{i}"))
                        .readiness(Readiness::Backpressure)
                        .build()?;
                    breakers.push(breaker.handle());
                    list.push(
                        ServiceBuilder::new()
                            .layer(breaker)
                            .layer(TimeoutLayer::new(ATTEMPT_TIMEOUT)?)
                            .service(endpoint.service()),
                    );
                }
                let balancer = balanced(list, balancer_seed);
                wrap(contender, balancer, limit, policy_seed, false)?.0
            } else {
                let list: Vec<_> = endpoints.iter().map(|e| e.service()).collect();
                wrap(
                    contender,
                    balanced(list, balancer_seed),
                    limit,
                    policy_seed,
                    false,
                )?
                .0
            };
            vec![client]
        }
    };
    Ok(Built { clients, breakers })
}

/// The settings of every seawall breaker here (window, rate and minimum are the
/// library's defaults: last 100 calls, 50 % failures, at least 20 calls).
fn breaker_config(seed: u64) -> circuit_breaker::Builder {
    CircuitBreakerLayer::builder()
        .open_duration(OPEN_DURATION)
        .max_open_duration(MAX_OPEN_DURATION)
        .seed(seed)
}

/// Wrap one client instance around `inner`. Returns seawall's breaker handle when the
/// policy has a breaker of its own.
fn wrap<S>(
    contender: Contender,
    inner: S,
    limit: usize,
    seed: u64,
    with_breaker: bool,
) -> Result<(Client, Option<circuit_breaker::Handle>), BoxError>
where
    S: Service<u64, Response = (), Error = BoxError> + Clone + 'static,
    S::Future: 'static,
{
    Ok(match contender {
        Contender::None => (boxed(inner), None),
        Contender::NaiveRetry => (
            boxed(tower::retry::Retry::new(Attempts(ATTEMPTS), inner)),
            None,
        ),
        Contender::Tower => (
            boxed(
                ServiceBuilder::new()
                    .retry(Attempts(ATTEMPTS))
                    .timeout(ATTEMPT_TIMEOUT)
                    .concurrency_limit(limit)
                    .service(inner),
            ),
            None,
        ),
        Contender::Seawall => {
            let backoff = ExponentialBackoff::builder()
                .seed(derive_seed(seed, 1))
                .build()?;
            let builder = Policy::builder("downstream")
                .deadline(DEADLINE)
                .attempt_timeout(ATTEMPT_TIMEOUT)
                .retry(|retry| retry.max_attempts(ATTEMPTS as u32).backoff(backoff))
                .bulkhead(|bulkhead| bulkhead.max_concurrent(limit as u32));
            let policy = if with_breaker {
                builder
                    .circuit_breaker(|_| breaker_config(derive_seed(seed, 2)))
                    .build()?
            } else {
                builder.without_circuit_breaker().build()?
            };
            let breaker = policy.handle().circuit_breaker().cloned();
            (boxed(tower::Layer::layer(&policy, inner)), breaker)
        }
    })
}

fn boxed<S>(svc: S) -> Client
where
    S: Service<u64, Response = ()> + Clone + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
{
    Rc::new(move |id| {
        let svc = svc.clone();
        Box::pin(async move { svc.oneshot(id).await.map_err(Into::into) })
    })
}

/// A retry policy for `tower::retry`: `n` attempts in all, any error retried at once.
#[derive(Debug, Clone, Copy)]
struct Attempts(usize);

impl<Res, E> tower::retry::Policy<u64, Res, E> for Attempts {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 1 => {
                self.0 -= 1;
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, request: &u64) -> Option<u64> {
        Some(*request)
    }
}

/// A p2c balancer (least pending requests of two random endpoints), seeded, shared by
/// every request.
fn balanced<S>(
    endpoints: Vec<S>,
    seed: u64,
) -> Shared<Balance<PendingRequestsDiscover<ServiceList<Vec<S>>>, u64>>
where
    S: Service<u64, Response = ()> + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
{
    let discover =
        PendingRequestsDiscover::new(ServiceList::new(endpoints), CompleteOnResponse::default());
    Shared(Rc::new(tokio::sync::Mutex::new(Balance::from_rng(
        discover,
        SplitMix64::new(seed),
    ))))
}

/// A service that every request shares (tower's `Balance` is not `Clone`): each call
/// waits its turn for the balancer to be ready, dispatches, and lets go.
struct Shared<S>(Rc<tokio::sync::Mutex<S>>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S> Service<u64> for Shared<S>
where
    S: Service<u64, Error = BoxError> + 'static,
    S::Future: 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is awaited in the call, under the lock.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, id: u64) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move {
            let mut balancer = shared.lock().await;
            std::future::poll_fn(|cx| balancer.poll_ready(cx)).await?;
            let response = balancer.call(id);
            drop(balancer);
            response.await
        })
    }
}
