//! Policies by downstream and endpoint, made on first use, bounded.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Policy, PolicyBuilder, PolicyHandle};
use crate::bulkhead::OnResponse;
use crate::classify::ErrorsAsFailures;
use crate::error::ConfigError;
use crate::retry::backoff::ExponentialBackoff;
use crate::retry::budget::RetryBudget;
use crate::retry::replay::CloneRequest;
use crate::BoxError;

/// The default bound on the entries of a registry.
const DEFAULT_MAX_ENTRIES: usize = 1024;
/// The default idle time after which an entry is evicted: longer than a breaker's
/// longest default open duration (300 s), so that an endpoint is not forgotten while
/// its breaker could still be keeping it out.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// No slot: the end of the recency list.
const NIL: usize = usize::MAX;

/// What makes the policy of an endpoint: the builder of `(downstream, endpoint)`.
type Make<C, R, H, B, E> =
    Box<dyn Fn(&str, &str) -> Result<PolicyBuilder<C, R, H, B>, E> + Send + Sync>;

/// Policies keyed by downstream and endpoint (a host, an address, a shard): each made
/// on first use by a function of the key, then the same one (the same breaker,
/// bulkhead, budget and hedge window) for every later use of that key, until it is
/// evicted.
///
/// Per-endpoint policies give per-endpoint breakers: one bad replica trips its own
/// breaker, not its downstream's (outlier ejection, as Envoy and Linkerd do).
///
/// - **Bounded.** At most [`max_entries`](RegistryBuilder::max_entries) entries (default
///   1024): making one more evicts the least recently used. An entry not used for
///   [`idle_timeout`](RegistryBuilder::idle_timeout) (default 10 minutes) is evicted
///   too. Eviction is lazy: each [`get`](Self::get) evicts the idle entries at the cold
///   end of the recency list first, each one once, so a call costs O(1) amortized, and
///   no background task is needed ([`evict_idle`](Self::evict_idle) does it on demand).
///   Idle times are read from `tokio::time::Instant`, so paused time drives them.
/// - **A budget per downstream**, if asked
///   ([`share_budget_per_downstream`](RegistryBuilder::share_budget_per_downstream)):
///   every endpoint of a downstream draws its retries and hedges from one
///   [`RetryBudget`], the one the downstream's first endpoint made, so that a downstream
///   with many replicas gets no more retries than one with a single replica.
/// - **Made from a builder.** The function returns the endpoint's [`PolicyBuilder`]
///   (not the built policy), so that the registry can give it the shared budget before
///   it builds it; its error, and [`build`](PolicyBuilder::build)'s
///   [`ConfigError`] (through `From`), come out of [`get`](Self::get), and nothing is
///   kept. [`Registry::from_config`] makes the builders from a
///   [`PolicyConfig`](super::PolicyConfig) (feature `serde`).
///
/// [`get`](Self::get) takes one lock (a `HashMap` lookup and a move in a linked list;
/// the first use of a key also builds its policy under it). Call it when an endpoint's
/// client is made (on connection setup, on a change of the endpoint set), not per
/// request, and layer the client with the policy it returns: a service keeps its
/// policy's stages even after the registry evicts that policy, and the next `get` of
/// the key makes a new one. Keep the idle timeout longer than your clients live idle.
///
/// ```
/// use seawall::policy::{Policy, Registry};
/// use seawall::BoxError;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
/// let registry = Registry::builder(|downstream, endpoint| {
///     Ok::<_, BoxError>(
///         Policy::builder(format!("{downstream}/{endpoint}"))
///             .circuit_breaker(|breaker| breaker.consecutive_failures(5)),
///     )
/// })
/// .max_entries(10_000)
/// .share_budget_per_downstream(true)
/// .build()?;
///
/// let a = registry.get("payments", "10.0.0.1:443")?;
/// let b = registry.get("payments", "10.0.0.2:443")?;
/// // One breaker per endpoint, one budget per downstream.
/// assert_eq!(a.name(), "payments/10.0.0.1:443");
/// assert_eq!(registry.len(), 2);
///
/// let client = a.layer(tower::service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
/// assert_eq!(client.oneshot(7).await?, 7);
/// let budget = b.handle().budget().unwrap().snapshot();
/// assert_eq!(budget.deposits, 1, "a's call deposited in the downstream's budget");
/// # Ok(()) }
/// ```
pub struct Registry<
    C = ErrorsAsFailures,
    R = CloneRequest,
    H = OnResponse,
    B = ExponentialBackoff,
    E = BoxError,
> {
    make: Make<C, R, H, B, E>,
    share_budget: bool,
    idle_timeout: Option<Duration>,
    entries: Mutex<Entries<Policy<C, R, H, B>>>,
}

impl Registry {
    /// A builder of a registry whose policies `make` makes: it gets the downstream and
    /// the endpoint, and returns the builder of their policy (name the policy after
    /// both, e.g. `"payments/10.0.0.7:443"`, so that each endpoint's metrics have their
    /// own `policy` label).
    ///
    /// `make` is called under the registry's lock: it must not call the registry.
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    /// use std::time::Duration;
    ///
    /// let registry = Registry::builder(|downstream, endpoint| {
    ///     let policy = Policy::builder(format!("{downstream}/{endpoint}"));
    ///     Ok::<_, seawall::BoxError>(match downstream {
    ///         "search" => policy.attempt_timeout(Duration::from_millis(100)),
    ///         _ => policy,
    ///     })
    /// })
    /// .build()?;
    /// let search = registry.get("search", "10.0.0.3:80")?;
    /// assert_eq!(search.handle().attempt_timeout(), Some(Duration::from_millis(100)));
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn builder<C, R, H, B, E, F>(make: F) -> RegistryBuilder<C, R, H, B, E>
    where
        F: Fn(&str, &str) -> Result<PolicyBuilder<C, R, H, B>, E> + Send + Sync + 'static,
    {
        RegistryBuilder {
            make: Box::new(make),
            max_entries: DEFAULT_MAX_ENTRIES,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            share_budget: false,
        }
    }
}

#[cfg(feature = "serde")]
impl Registry {
    /// A builder of a registry whose policies come from `config`: the policy of
    /// `(downstream, endpoint)` has the settings of the policy `downstream` (the
    /// defaults, for a downstream the file does not name), and is named
    /// `"{downstream}/{endpoint}"` (`"{downstream}"` for an empty endpoint). Its
    /// classifier and replay are the defaults; to set them, use [`Registry::builder`]
    /// with [`PolicyConfig::builder_named`](super::PolicyConfig::builder_named).
    ///
    /// ```
    /// use seawall::policy::{PolicyConfig, Registry};
    ///
    /// let config = PolicyConfig::from_toml_str("[policies.payments]\nbulkhead = { max_concurrent = 4 }\n")?;
    /// let registry = Registry::from_config(config).share_budget_per_downstream(true).build()?;
    /// let policy = registry.get("payments", "10.0.0.1:443")?;
    /// assert_eq!(policy.name(), "payments/10.0.0.1:443");
    /// assert_eq!(policy.handle().bulkhead().unwrap().limit(), 4);
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn from_config(
        config: super::PolicyConfig,
    ) -> RegistryBuilder<
        ErrorsAsFailures,
        CloneRequest,
        OnResponse,
        ExponentialBackoff,
        super::ConfigFileError,
    > {
        Registry::builder(move |downstream, endpoint| {
            let name = if endpoint.is_empty() {
                downstream.to_owned()
            } else {
                format!("{downstream}/{endpoint}")
            };
            config.builder_named(downstream, name)
        })
    }
}

impl<C, R, H, B, E> Registry<C, R, H, B, E>
where
    C: Clone,
    R: Clone,
    E: From<ConfigError>,
{
    /// The policy of `endpoint` of `downstream`: the one made on the key's first use, or,
    /// if there is none (never made, or evicted), a new one, made now and kept. Evicts
    /// idle entries first, and the least recently used one if the registry is full.
    ///
    /// An error of the registry's function, or of the policy's build, is returned, and
    /// nothing is kept: the next `get` of the key tries again.
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    ///
    /// let registry = Registry::builder(|d, e| Ok::<_, seawall::BoxError>(Policy::builder(format!("{d}/{e}"))))
    ///     .build()?;
    /// let first = registry.get("payments", "a")?;
    /// let again = registry.get("payments", "a")?;
    /// first.handle().circuit_breaker().unwrap().force_open();
    /// assert_eq!(
    ///     again.handle().circuit_breaker().unwrap().state(),
    ///     seawall::circuit_breaker::State::ForcedOpen,
    ///     "the same breaker",
    /// );
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn get(&self, downstream: &str, endpoint: &str) -> Result<Policy<C, R, H, B>, E> {
        let now = Instant::now();
        let mut entries = self.lock();
        if let Some(idle) = self.idle_timeout {
            entries.evict_idle(now, idle);
        }
        if let Some(slot) = entries.find(downstream, endpoint) {
            if let Some(policy) = entries.touch(slot, now) {
                return Ok(policy.clone());
            }
        }

        let shared = if self.share_budget {
            entries.budget(downstream)
        } else {
            None
        };
        let builder = (self.make)(downstream, endpoint)?;
        let builder = match shared {
            Some(budget) => builder.budget(budget),
            None => builder,
        };
        let policy = builder.build()?;
        let budget = if self.share_budget {
            policy.handle().budget().cloned()
        } else {
            None
        };
        entries.insert(downstream, endpoint, policy.clone(), budget, now);
        Ok(policy)
    }
}

impl<C, R, H, B, E> Registry<C, R, H, B, E> {
    /// The entries kept now (at most [`max_entries`](Self::max_entries)).
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    ///
    /// let registry = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d))).build()?;
    /// assert_eq!(registry.len(), 0);
    /// registry.get("payments", "a")?;
    /// registry.get("payments", "a")?;
    /// assert_eq!(registry.len(), 1);
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Whether no entry is kept.
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    ///
    /// let registry = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d))).build()?;
    /// assert!(registry.is_empty());
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries the registry keeps.
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    ///
    /// let registry = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d)))
    ///     .max_entries(64)
    ///     .build()?;
    /// assert_eq!(registry.max_entries(), 64);
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn max_entries(&self) -> usize {
        self.lock().max
    }

    /// How long an entry may go unused before it is evicted (`None`: never for that).
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    /// use std::time::Duration;
    ///
    /// let registry = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d))).build()?;
    /// assert_eq!(registry.idle_timeout(), Some(Duration::from_secs(600)));
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Evict the policy of `endpoint` of `downstream`, if one is kept (the next
    /// [`get`](Self::get) makes a new one). Returns whether one was.
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    ///
    /// let registry = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d))).build()?;
    /// registry.get("payments", "a")?;
    /// assert!(registry.remove("payments", "a"));
    /// assert!(!registry.remove("payments", "a"));
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn remove(&self, downstream: &str, endpoint: &str) -> bool {
        let mut entries = self.lock();
        match entries.find(downstream, endpoint) {
            Some(slot) => {
                entries.remove(slot);
                true
            }
            None => false,
        }
    }

    /// Evict every entry that has not been used for the idle timeout now (which
    /// [`get`](Self::get) also does), and return how many were.
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), seawall::BoxError> {
    /// let registry = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d)))
    ///     .idle_timeout(Duration::from_secs(60))
    ///     .build()?;
    /// registry.get("payments", "a")?;
    /// tokio::time::sleep(Duration::from_secs(61)).await;
    /// assert_eq!(registry.evict_idle(), 1);
    /// assert!(registry.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn evict_idle(&self) -> usize {
        let Some(idle) = self.idle_timeout else {
            return 0;
        };
        let now = Instant::now();
        self.lock().evict_idle(now, idle)
    }

    /// Evict every entry.
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    ///
    /// let registry = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d))).build()?;
    /// registry.get("payments", "a")?;
    /// registry.clear();
    /// assert!(registry.is_empty());
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn clear(&self) {
        let mut entries = self.lock();
        let max = entries.max;
        *entries = Entries::new(max);
    }

    /// The downstream, endpoint and [`PolicyHandle`] of every entry, the most recently
    /// used first: for dashboards and operators (e.g. which endpoints' breakers are
    /// open). Does not count as a use.
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    ///
    /// let registry = Registry::builder(|d, e| Ok::<_, seawall::BoxError>(Policy::builder(format!("{d}/{e}"))))
    ///     .build()?;
    /// registry.get("payments", "a")?;
    /// registry.get("search", "b")?;
    /// let names: Vec<_> = registry.handles().into_iter().map(|(d, e, h)| (d, e, h.name().to_owned())).collect();
    /// assert_eq!(names, [
    ///     ("search".to_owned(), "b".to_owned(), "search/b".to_owned()),
    ///     ("payments".to_owned(), "a".to_owned(), "payments/a".to_owned()),
    /// ]);
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn handles(&self) -> Vec<(String, String, PolicyHandle)> {
        let entries = self.lock();
        let mut out = Vec::with_capacity(entries.len);
        let mut slot = entries.head;
        while let Some(node) = entries.node(slot) {
            out.push((
                node.downstream.to_string(),
                node.endpoint.to_string(),
                node.policy.handle(),
            ));
            slot = node.next;
        }
        out
    }

    /// The entries, whatever a panic elsewhere did while holding the lock (each change
    /// to them is complete before anything that could panic).
    fn lock(&self) -> MutexGuard<'_, Entries<Policy<C, R, H, B>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<C, R, H, B, E> fmt::Debug for Registry<C, R, H, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.lock();
        f.debug_struct("Registry")
            .field("len", &entries.len)
            .field("max_entries", &entries.max)
            .field("idle_timeout", &self.idle_timeout)
            .field("share_budget_per_downstream", &self.share_budget)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Registry`]; [`build`](Self::build) checks the values.
///
/// ```
/// use seawall::policy::{Policy, Registry};
/// use std::time::Duration;
///
/// let registry = Registry::builder(|d, e| Ok::<_, seawall::BoxError>(Policy::builder(format!("{d}/{e}"))))
///     .max_entries(500)
///     .idle_timeout(Duration::from_secs(300))
///     .share_budget_per_downstream(true)
///     .build()?;
/// # let _ = registry;
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
pub struct RegistryBuilder<
    C = ErrorsAsFailures,
    R = CloneRequest,
    H = OnResponse,
    B = ExponentialBackoff,
    E = BoxError,
> {
    make: Make<C, R, H, B, E>,
    max_entries: usize,
    idle_timeout: Option<Duration>,
    share_budget: bool,
}

impl<C, R, H, B, E> RegistryBuilder<C, R, H, B, E> {
    /// The most entries kept at once (default 1024, at least 1): making one more evicts
    /// the least recently used.
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    ///
    /// let err = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d)))
    ///     .max_entries(0)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!((err.component(), err.field()), ("registry", "max_entries"));
    /// ```
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries;
        self
    }

    /// Evict an entry once it has not been used for `idle` (default 10 minutes: longer
    /// than a breaker's longest default open duration; zero is a [`ConfigError`]).
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    /// use std::time::Duration;
    ///
    /// let registry = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d)))
    ///     .idle_timeout(Duration::from_secs(30))
    ///     .build()?;
    /// assert_eq!(registry.idle_timeout(), Some(Duration::from_secs(30)));
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Never evict an entry for being idle (only [`max_entries`](Self::max_entries)
    /// bounds the registry).
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    ///
    /// let registry = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d)))
    ///     .without_idle_timeout()
    ///     .build()?;
    /// assert_eq!(registry.idle_timeout(), None);
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn without_idle_timeout(mut self) -> Self {
        self.idle_timeout = None;
        self
    }

    /// Give every endpoint of a downstream one retry budget (default `false`: a budget
    /// per endpoint): the budget of the first policy made for the downstream, passed to
    /// the builder of each later one ([`PolicyBuilder::budget`]). It lasts as long as
    /// the registry keeps an entry of the downstream.
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    ///
    /// let registry = Registry::builder(|d, e| Ok::<_, seawall::BoxError>(Policy::builder(format!("{d}/{e}"))))
    ///     .share_budget_per_downstream(true)
    ///     .build()?;
    /// let a = registry.get("payments", "a")?.handle();
    /// let b = registry.get("payments", "b")?.handle();
    /// assert!(a.budget().unwrap().try_withdraw());
    /// assert_eq!(b.budget().unwrap().snapshot().withdrawals, 1, "one budget");
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn share_budget_per_downstream(mut self, share: bool) -> Self {
        self.share_budget = share;
        self
    }

    /// Check the values and build the (empty) registry.
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    /// use std::time::Duration;
    ///
    /// let err = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d)))
    ///     .idle_timeout(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "idle_timeout");
    /// ```
    pub fn build(self) -> Result<Registry<C, R, H, B, E>, ConfigError> {
        ConfigError::check("registry", self.max_entries >= 1, "max_entries", || {
            "must be at least 1 (got 0)".to_owned()
        })?;
        ConfigError::check(
            "registry",
            self.idle_timeout.is_none_or(|idle| !idle.is_zero()),
            "idle_timeout",
            || {
                "must be longer than zero (use without_idle_timeout to never evict for idleness)"
                    .to_owned()
            },
        )?;
        Ok(Registry {
            make: self.make,
            share_budget: self.share_budget,
            idle_timeout: self.idle_timeout,
            entries: Mutex::new(Entries::new(self.max_entries)),
        })
    }
}

impl<C, R, H, B, E> fmt::Debug for RegistryBuilder<C, R, H, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("max_entries", &self.max_entries)
            .field("idle_timeout", &self.idle_timeout)
            .field("share_budget_per_downstream", &self.share_budget)
            .finish_non_exhaustive()
    }
}

// ===== the entries: a map to slots, and a recency list through the slots =====

/// One kept policy, a node of the recency list.
struct Node<P> {
    downstream: Arc<str>,
    endpoint: Arc<str>,
    policy: P,
    last_used: Instant,
    /// The next more recently used slot.
    prev: usize,
    /// The next less recently used slot.
    next: usize,
}

/// The endpoints of one downstream, and its shared budget.
struct Downstream {
    endpoints: HashMap<Arc<str>, usize>,
    budget: Option<RetryBudget>,
}

/// Slots in a `Vec` (freed slots reused), a doubly linked recency list through them
/// (most recent at `head`), and a map from downstream and endpoint to slot: O(1) find,
/// touch, insert and evict.
struct Entries<P> {
    slots: Vec<Option<Node<P>>>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
    len: usize,
    max: usize,
    index: HashMap<Arc<str>, Downstream>,
}

impl<P> Entries<P> {
    fn new(max: usize) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            max,
            index: HashMap::new(),
        }
    }

    fn node(&self, slot: usize) -> Option<&Node<P>> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    fn node_mut(&mut self, slot: usize) -> Option<&mut Node<P>> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    fn find(&self, downstream: &str, endpoint: &str) -> Option<usize> {
        self.index.get(downstream)?.endpoints.get(endpoint).copied()
    }

    /// The shared budget of `downstream`, if one of its entries made one.
    fn budget(&self, downstream: &str) -> Option<RetryBudget> {
        self.index.get(downstream)?.budget.clone()
    }

    /// Take `slot` out of the recency list.
    fn unlink(&mut self, slot: usize) {
        let Some((prev, next)) = self.node(slot).map(|node| (node.prev, node.next)) else {
            return;
        };
        match self.node_mut(prev) {
            Some(node) => node.next = next,
            None => self.head = next,
        }
        match self.node_mut(next) {
            Some(node) => node.prev = prev,
            None => self.tail = prev,
        }
    }

    /// Put `slot` at the head of the recency list.
    fn link_front(&mut self, slot: usize) {
        let head = self.head;
        if let Some(node) = self.node_mut(slot) {
            node.prev = NIL;
            node.next = head;
        }
        match self.node_mut(head) {
            Some(node) => node.prev = slot,
            None => self.tail = slot,
        }
        self.head = slot;
    }

    /// Mark `slot` used now and return its policy.
    fn touch(&mut self, slot: usize, now: Instant) -> Option<&P> {
        self.unlink(slot);
        self.link_front(slot);
        let node = self.node_mut(slot)?;
        node.last_used = now;
        Some(&node.policy)
    }

    fn insert(
        &mut self,
        downstream: &str,
        endpoint: &str,
        policy: P,
        budget: Option<RetryBudget>,
        now: Instant,
    ) {
        if self.len >= self.max {
            self.remove(self.tail);
        }
        let key = match self.index.get_key_value(downstream) {
            Some((key, _)) => key.clone(),
            None => Arc::from(downstream),
        };
        let endpoint: Arc<str> = Arc::from(endpoint);
        let node = Node {
            downstream: key.clone(),
            endpoint: endpoint.clone(),
            policy,
            last_used: now,
            prev: NIL,
            next: NIL,
        };
        let slot = match self.free.pop() {
            Some(slot) => match self.slots.get_mut(slot) {
                Some(free) => {
                    *free = Some(node);
                    slot
                }
                // Not reached: freed slots are in `slots`.
                None => {
                    self.slots.push(Some(node));
                    self.slots.len() - 1
                }
            },
            None => {
                self.slots.push(Some(node));
                self.slots.len() - 1
            }
        };
        let entry = self.index.entry(key).or_insert_with(|| Downstream {
            endpoints: HashMap::new(),
            budget: None,
        });
        entry.endpoints.insert(endpoint, slot);
        if entry.budget.is_none() {
            entry.budget = budget;
        }
        self.len += 1;
        self.link_front(slot);
    }

    /// Evict the entry in `slot` (nothing if it is empty).
    fn remove(&mut self, slot: usize) {
        self.unlink(slot);
        let Some(node) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.free.push(slot);
        self.len -= 1;
        if let Some(entry) = self.index.get_mut(&*node.downstream) {
            entry.endpoints.remove(&*node.endpoint);
            if entry.endpoints.is_empty() {
                self.index.remove(&*node.downstream);
            }
        }
    }

    /// Evict the entries not used for `idle` before `now`, from the cold end; return
    /// how many.
    fn evict_idle(&mut self, now: Instant, idle: Duration) -> usize {
        let mut evicted = 0;
        while let Some(node) = self.node(self.tail) {
            if now.saturating_duration_since(node.last_used) < idle {
                break;
            }
            self.remove(self.tail);
            evicted += 1;
        }
        evicted
    }
}
