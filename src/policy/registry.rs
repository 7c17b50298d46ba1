//! Policies by downstream and endpoint, made on first use, bounded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Policy, PolicyBuilder, PolicyHandle};
use crate::bulkhead::OnResponse;
use crate::circuit_breaker::State;
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

/// The default bound on the keys that keep the name their function gave them, and on
/// the downstreams whose name the keys beyond it take.
const DEFAULT_METRIC_NAMES: usize = 256;
/// The default time a downstream's shared budget outlives its last endpoint: several
/// windows of the default budget (10 s).
const DEFAULT_KEEP_BUDGET: Duration = Duration::from_secs(60);
/// The name of the policies of keys beyond both bounds of names.
const OVERFLOW_NAME: &str = "seawall_registry_overflow";

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
///   1024): making one more evicts the least recently used entry that may go (see
///   below). An entry not used for [`idle_timeout`](RegistryBuilder::idle_timeout)
///   (default 10 minutes) is evicted too, unless it is in use. Eviction is lazy: each
///   [`get`](Self::get) evicts the idle entries at the cold end of the recency list
///   first, so no background task is needed ([`evict_idle`](Self::evict_idle) does it
///   on demand). Idle times are read from `tokio::time::Instant`, so paused time drives
///   them.
/// - **Never evicts what is in use, nor what protects.** An entry is *in use* while a
///   [`Policy`] clone, a service it made, a [`PolicyHandle`] of it, or a call through
///   it is alive (the registry counts the references to the policy's shared state, and
///   asks its bulkhead for calls in flight): evicting it would give the next `get` of
///   the key a second breaker, bulkhead and budget beside the first. An in-use entry is
///   never evicted as idle (it counts as used now), nor to make room. An entry whose
///   breaker is not closed (open, half-open, forced open or disabled) is never evicted
///   to make room either, so that whoever chooses the keys (host names from requests)
///   cannot reset the breaker of a failing endpoint by using other keys.
/// - **Full.** When every entry is in use or has a breaker that is not closed, a new key
///   gets a [`RegistryFull`] error from [`get`](Self::get) (its policy is not made);
///   keys already kept are still served. Size `max_entries` for the endpoints you
///   expect to be in use at once.
/// - **Metric series bounded by design.** The `metrics` facade cannot remove a series,
///   so the names (the `policy` label) of the policies a registry makes are bounded,
///   whatever the keys: the first [`metric_names`](RegistryBuilder::metric_names)
///   distinct names the function gives (default 256; e.g. `"payments/10.0.0.7:443"`)
///   are kept; a policy the function gives another name is named after its downstream
///   (`"payments"`), for the first `metric_names` downstreams; the policies of any
///   other downstream share the name `seawall_registry_overflow`. A name once kept stays
///   kept, evicted or not. So there are at most `2 × metric_names + 1` names, each with
///   one policy's set of series. (A function that names every policy after its
///   downstream, or gives them all one name, never has a name changed.)
/// - **A budget per downstream**, if asked
///   ([`share_budget_per_downstream`](RegistryBuilder::share_budget_per_downstream)):
///   every endpoint of a downstream draws its retries and hedges from one
///   [`RetryBudget`], the one the downstream's first endpoint made, so that a downstream
///   with many replicas gets no more retries than one with a single replica. It lives
///   as long as any endpoint of the downstream is kept, and
///   [`keep_budget_for`](RegistryBuilder::keep_budget_for) (default 60 s) after the
///   last one goes, so that endpoints that come and go do not refill it.
/// - **Made from a builder, outside the lock.** The function returns the endpoint's
///   [`PolicyBuilder`] (not the built policy), so that the registry can give it the
///   shared budget (and its bounded name) before it builds it; its error, and
///   [`build`](PolicyBuilder::build)'s [`ConfigError`] (through `From`), come out of
///   [`get`](Self::get), and nothing is kept. The function and the build run without
///   the registry's lock, so the function may use the registry, and a slow one holds up
///   no other key. Two first uses of one key at once may both make a policy: the first
///   one kept is the one both get, and the other is dropped.
///   [`Registry::from_config`] makes the builders from a
///   [`PolicyConfig`](super::PolicyConfig) (feature `serde`).
///
/// [`get`](Self::get) takes the lock once for a key it keeps (a `HashMap` lookup and a
/// move in a linked list), twice for a new one. Call it when an endpoint's client is
/// made (on connection setup, on a change of the endpoint set), not per request, and
/// layer the client with the policy it returns: while that client lives, the registry
/// keeps its entry, and every later `get` of the key returns the same policy.
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
    keep_budget: Duration,
    entries: Mutex<Entries<Policy<C, R, H, B>>>,
}

impl Registry {
    /// A builder of a registry whose policies `make` makes: it gets the downstream and
    /// the endpoint, and returns the builder of their policy (name the policy after
    /// both, e.g. `"payments/10.0.0.7:443"`, so that each endpoint's metrics have their
    /// own `policy` label, for as many keys as
    /// [`metric_names`](RegistryBuilder::metric_names) allows).
    ///
    /// `make` is called without the registry's lock (it may use the registry), at least
    /// once per key made.
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
            metric_names: DEFAULT_METRIC_NAMES,
            keep_budget: DEFAULT_KEEP_BUDGET,
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
    E: From<ConfigError> + From<RegistryFull>,
{
    /// The policy of `endpoint` of `downstream`: the one made on the key's first use, or,
    /// if there is none (never made, or evicted), a new one, made now and kept. Evicts
    /// idle entries first, and, if the registry is full, the least recently used entry
    /// that is neither in use nor behind a breaker that is not closed; if there is none,
    /// the error is [`RegistryFull`] (through `From`).
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
        loop {
            let now = Instant::now();
            {
                let mut entries = self.lock();
                self.sweep(&mut entries, now);
                if let Some(slot) = entries.find(downstream, endpoint) {
                    if let Some(policy) = entries.touch(slot, now) {
                        return Ok(policy.clone());
                    }
                }
                // Refuse before making anything when no entry could make room.
                if entries.len >= entries.max && entries.victim().is_none() {
                    return Err(RegistryFull {
                        max_entries: entries.max,
                    }
                    .into());
                }
            }

            // Make and build without the lock: `make` may use the registry, and a slow
            // one holds up no other key.
            let builder = (self.make)(downstream, endpoint)?;
            let (naming, shared) = {
                let mut entries = self.lock();
                let naming = entries.names.naming(downstream, builder.name_ref());
                let shared = if self.share_budget {
                    entries.budget(downstream)
                } else {
                    Default::default()
                };
                (naming, shared)
            };
            let builder = match naming {
                Naming::Own => builder,
                Naming::Downstream => builder.name(downstream),
                Naming::Overflow => builder.name(OVERFLOW_NAME),
            };
            let builder = match shared.budget.clone() {
                Some(budget) => builder.budget(budget),
                None => builder,
            };
            let policy = builder.build()?;

            let mut entries = self.lock();
            // Another get of the key got there first: its policy is the one.
            if let Some(slot) = entries.find(downstream, endpoint) {
                if let Some(kept) = entries.touch(slot, now) {
                    let kept = kept.clone();
                    drop(entries);
                    return Ok(kept);
                }
            }
            let budget = if self.share_budget {
                if !entries.budget(downstream).agrees_with(&shared) {
                    // The downstream's budget is not the one this policy was built with
                    // (another endpoint of it was made meanwhile): make it again.
                    drop(entries);
                    continue;
                }
                policy.handle().budget().cloned()
            } else {
                None
            };
            if entries.len >= entries.max {
                match entries.victim() {
                    Some(slot) => entries.remove(slot, now, self.keep_budget),
                    None => {
                        let max_entries = entries.max;
                        drop(entries);
                        return Err(RegistryFull { max_entries }.into());
                    }
                }
            }
            entries.insert(downstream, endpoint, policy.clone(), budget, now);
            return Ok(policy);
        }
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

    /// The most names of the registry's function kept as they are (and the most
    /// downstreams whose names are given to the others); see
    /// [`RegistryBuilder::metric_names`].
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    ///
    /// let registry = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d))).build()?;
    /// assert_eq!(registry.metric_names(), 256);
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn metric_names(&self) -> usize {
        self.lock().names.max
    }

    /// How long a downstream's shared budget outlives its last endpoint; see
    /// [`RegistryBuilder::keep_budget_for`].
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    /// use std::time::Duration;
    ///
    /// let registry = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d))).build()?;
    /// assert_eq!(registry.keep_budget_for(), Duration::from_secs(60));
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn keep_budget_for(&self) -> Duration {
        self.keep_budget
    }

    /// Evict the policy of `endpoint` of `downstream`, if one is kept, whether or not it
    /// is in use (the next [`get`](Self::get) makes a new one). Returns whether one was.
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
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.find(downstream, endpoint) {
            Some(slot) => {
                entries.remove(slot, now, self.keep_budget);
                true
            }
            None => false,
        }
    }

    /// Evict every entry that has not been used for the idle timeout now and is not in
    /// use (which [`get`](Self::get) also does), and return how many were. An entry in
    /// use counts as used now.
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
        let now = Instant::now();
        let mut entries = self.lock();
        self.sweep(&mut entries, now)
    }

    /// Evict the idle entries and forget the budgets kept past their downstream's last
    /// endpoint for long enough; return how many entries were evicted.
    fn sweep(&self, entries: &mut Entries<Policy<C, R, H, B>>, now: Instant) -> usize {
        let evicted = match self.idle_timeout {
            Some(idle) => entries.evict_idle(now, idle, self.keep_budget),
            None => 0,
        };
        entries.forget_budgets(now, self.keep_budget);
        evicted
    }

    /// Evict every entry, and forget every shared budget (the names given stay given:
    /// their metric series exist).
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
        let names = std::mem::take(&mut entries.names);
        let max = entries.max;
        *entries = Entries::new(max, names);
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
            .field("keep_budget_for", &self.keep_budget)
            .field("metric_names", &entries.names.max)
            .finish_non_exhaustive()
    }
}

/// The error of [`Registry::get`] for a new key when the registry is full and none of
/// its entries may be evicted: each is in use (a policy, service, handle or call of it
/// is alive) or has a breaker that is not closed. Nothing was made; keys already kept
/// are still served. Raise [`max_entries`](RegistryBuilder::max_entries), or drop
/// the clients of endpoints that are gone.
///
/// ```
/// use seawall::policy::{Policy, Registry, RegistryFull};
///
/// let registry = Registry::builder(|d, e| Ok::<_, seawall::BoxError>(Policy::builder(format!("{d}/{e}"))))
///     .max_entries(1)
///     .build()?;
/// let in_use = registry.get("payments", "a")?;
/// let err = registry.get("payments", "b").unwrap_err();
/// assert_eq!(err.downcast_ref::<RegistryFull>().unwrap().max_entries(), 1);
/// drop(in_use);
/// assert_eq!(registry.get("payments", "b")?.name(), "payments/b");
/// # Ok::<(), seawall::BoxError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryFull {
    max_entries: usize,
}

impl RegistryFull {
    /// The registry's bound on its entries, all of them kept.
    ///
    /// ```
    /// # use seawall::policy::{Policy, Registry, RegistryFull};
    /// # let registry = Registry::builder(|d, _| Ok::<_, seawall::BoxError>(Policy::builder(d))).max_entries(1).build()?;
    /// # let _held = registry.get("a", "")?;
    /// let err = registry.get("b", "").unwrap_err();
    /// assert_eq!(err.downcast_ref::<RegistryFull>().unwrap().max_entries(), 1);
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }
}

impl fmt::Display for RegistryFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the registry is full: each of its {} entries is in use or has a breaker that \
             is not closed",
            self.max_entries
        )
    }
}

impl Error for RegistryFull {}

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
    metric_names: usize,
    keep_budget: Duration,
}

impl<C, R, H, B, E> RegistryBuilder<C, R, H, B, E> {
    /// The most entries kept at once (default 1024, at least 1): making one more evicts
    /// the least recently used one that is not in use and whose breaker is closed (or
    /// fails with [`RegistryFull`] if there is none).
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

    /// Evict an entry once it has not been used for `idle` and is not in use (default 10
    /// minutes: longer than a breaker's longest default open duration; zero is a
    /// [`ConfigError`]).
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
    /// the registry keeps an entry of the downstream, and
    /// [`keep_budget_for`](Self::keep_budget_for) after the last one goes.
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

    /// How long a downstream's shared budget is kept after its last endpoint goes
    /// (default 60 s; zero: forgotten with it), so that endpoints that come and go (a
    /// rolling restart, a DNS change) draw from the same budget instead of a full new
    /// one. Applies with
    /// [`share_budget_per_downstream`](Self::share_budget_per_downstream).
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    /// use std::time::Duration;
    ///
    /// let registry = Registry::builder(|d, e| Ok::<_, seawall::BoxError>(Policy::builder(format!("{d}/{e}"))))
    ///     .share_budget_per_downstream(true)
    ///     .keep_budget_for(Duration::from_secs(300))
    ///     .build()?;
    /// assert_eq!(registry.keep_budget_for(), Duration::from_secs(300));
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn keep_budget_for(mut self, keep: Duration) -> Self {
        self.keep_budget = keep;
        self
    }

    /// Bound the names of the policies the registry makes, and with them the metric
    /// series (default 256): the first `names` distinct names the function gives are
    /// kept; a policy it gives another name is named after its downstream, for the
    /// first `names` downstreams; the policies of other downstreams are named
    /// `seawall_registry_overflow`. The `metrics` facade cannot remove a series, so
    /// this bounds them whatever the keys are, evicted or not. Zero names every policy
    /// `seawall_registry_overflow`.
    ///
    /// ```
    /// use seawall::policy::{Policy, Registry};
    ///
    /// let registry = Registry::builder(|d, e| Ok::<_, seawall::BoxError>(Policy::builder(format!("{d}/{e}"))))
    ///     .metric_names(1)
    ///     .build()?;
    /// assert_eq!(registry.get("payments", "a")?.name(), "payments/a");
    /// assert_eq!(registry.get("payments", "b")?.name(), "payments");
    /// assert_eq!(registry.get("search", "c")?.name(), "seawall_registry_overflow");
    /// # Ok::<(), seawall::BoxError>(())
    /// ```
    pub fn metric_names(mut self, names: usize) -> Self {
        self.metric_names = names;
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
            keep_budget: self.keep_budget,
            entries: Mutex::new(Entries::new(
                self.max_entries,
                Names {
                    max: self.metric_names,
                    ..Names::default()
                },
            )),
        })
    }
}

impl<C, R, H, B, E> fmt::Debug for RegistryBuilder<C, R, H, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("max_entries", &self.max_entries)
            .field("idle_timeout", &self.idle_timeout)
            .field("share_budget_per_downstream", &self.share_budget)
            .field("metric_names", &self.metric_names)
            .field("keep_budget_for", &self.keep_budget)
            .finish_non_exhaustive()
    }
}

// ===== what may be evicted =====

/// What the entries need to know of a policy.
trait Kept {
    /// Whether anything but the registry holds the policy: a clone, a service it made, a
    /// handle, or a call in flight.
    fn in_use(&self) -> bool;

    /// Whether the policy may be evicted to make room: not in use, and its breaker (if
    /// any) closed.
    fn evictable(&self) -> bool;
}

impl<C, R, H, B> Kept for Policy<C, R, H, B> {
    fn in_use(&self) -> bool {
        // The registry's own copy holds one reference to the name; every clone of the
        // policy, service it made and handle holds another. A call whose service is gone
        // (`oneshot`) holds a bulkhead permit.
        Arc::strong_count(&self.handle.name) > 1
            || self
                .handle
                .bulkhead
                .as_ref()
                .is_some_and(|bulkhead| bulkhead.in_flight() > 0)
    }

    fn evictable(&self) -> bool {
        !self.in_use()
            && self
                .handle
                .circuit_breaker
                .as_ref()
                .is_none_or(|breaker| breaker.state() == State::Closed)
    }
}

/// The kind of name a key's policy gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// The name the registry's function gave it.
    Own,
    /// Its downstream's name.
    Downstream,
    /// [`OVERFLOW_NAME`].
    Overflow,
}

/// The names of `make` kept as they are and the downstreams whose names are given, each
/// at most `max`: kept for the registry's life, since the series of a name stay.
#[derive(Debug, Default)]
struct Names {
    max: usize,
    own: HashSet<Box<str>>,
    downstreams: HashSet<Box<str>>,
}

impl Names {
    /// The name of the policy `make` named `name` for a key of `downstream`.
    fn naming(&mut self, downstream: &str, name: &str) -> Naming {
        if self.own.contains(name) {
            return Naming::Own;
        }
        if self.own.len() < self.max {
            self.own.insert(Box::from(name));
            return Naming::Own;
        }
        if self.downstreams.contains(downstream) {
            return Naming::Downstream;
        }
        if self.downstreams.len() < self.max {
            self.downstreams.insert(Box::from(downstream));
            return Naming::Downstream;
        }
        Naming::Overflow
    }
}

/// What a `get` saw of its downstream's shared budget before making its policy.
#[derive(Debug, Default)]
struct SharedBudget {
    /// The downstream's record, if it had one.
    generation: Option<u64>,
    budget: Option<RetryBudget>,
}

impl SharedBudget {
    /// Whether a policy made after `seen` has the budget this (later) view says is the
    /// downstream's: the same record's budget, or none yet.
    fn agrees_with(&self, seen: &SharedBudget) -> bool {
        match self.budget {
            None => true,
            Some(_) => seen.budget.is_some() && seen.generation == self.generation,
        }
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
    /// Tells this record from an earlier one of the same downstream.
    generation: u64,
    /// When its last endpoint went, while it has none and its budget is kept.
    orphaned: Option<Instant>,
}

/// Slots in a `Vec` (freed slots reused), a doubly linked recency list through them
/// (most recent at `head`), and a map from downstream and endpoint to slot: O(1) find,
/// touch, insert and evict (to make room: O(1) unless the coldest entries may not go).
struct Entries<P> {
    slots: Vec<Option<Node<P>>>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
    len: usize,
    max: usize,
    index: HashMap<Arc<str>, Downstream>,
    /// Downstreams without endpoints whose budgets are kept, oldest first, with the
    /// generation and time they were orphaned (stale items are skipped); at most `max`.
    orphans: VecDeque<(Arc<str>, u64, Instant)>,
    generations: u64,
    names: Names,
}

impl<P: Kept> Entries<P> {
    fn new(max: usize, names: Names) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            max,
            index: HashMap::new(),
            orphans: VecDeque::new(),
            generations: 0,
            names,
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

    /// The shared budget of `downstream` as it is now.
    fn budget(&self, downstream: &str) -> SharedBudget {
        match self.index.get(downstream) {
            Some(record) => SharedBudget {
                generation: Some(record.generation),
                budget: record.budget.clone(),
            },
            None => SharedBudget::default(),
        }
    }

    /// The least recently used entry that may be evicted to make room.
    fn victim(&self) -> Option<usize> {
        let mut slot = self.tail;
        while let Some(node) = self.node(slot) {
            if node.policy.evictable() {
                return Some(slot);
            }
            slot = node.prev;
        }
        None
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

    /// Keep `policy` for the key (which has no entry; the caller made room).
    fn insert(
        &mut self,
        downstream: &str,
        endpoint: &str,
        policy: P,
        budget: Option<RetryBudget>,
        now: Instant,
    ) {
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
        let generations = &mut self.generations;
        let record = self.index.entry(key).or_insert_with(|| {
            *generations += 1;
            Downstream {
                endpoints: HashMap::new(),
                budget: None,
                generation: *generations,
                orphaned: None,
            }
        });
        record.endpoints.insert(endpoint, slot);
        record.orphaned = None;
        if record.budget.is_none() {
            record.budget = budget;
        }
        self.len += 1;
        self.link_front(slot);
    }

    /// Evict the entry in `slot` (nothing if it is empty). Its downstream's record goes
    /// with its last endpoint, unless it has a budget to keep for `keep`.
    fn remove(&mut self, slot: usize, now: Instant, keep: Duration) {
        self.unlink(slot);
        let Some(node) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.free.push(slot);
        self.len -= 1;
        let Some(record) = self.index.get_mut(&*node.downstream) else {
            return;
        };
        record.endpoints.remove(&*node.endpoint);
        if !record.endpoints.is_empty() {
            return;
        }
        if record.budget.is_none() || keep.is_zero() {
            self.index.remove(&*node.downstream);
            return;
        }
        record.orphaned = Some(now);
        let generation = record.generation;
        // At most `max` budgets kept without endpoints: the oldest goes early.
        if self.orphans.len() >= self.max {
            if let Some((downstream, generation, at)) = self.orphans.pop_front() {
                self.forget_orphan(&downstream, generation, at);
            }
        }
        self.orphans.push_back((node.downstream, generation, now));
    }

    /// Forget the record of `downstream` if it is still the orphan of `generation`
    /// orphaned `at`.
    fn forget_orphan(&mut self, downstream: &str, generation: u64, at: Instant) {
        let still = self.index.get(downstream).is_some_and(|record| {
            record.generation == generation
                && record.orphaned == Some(at)
                && record.endpoints.is_empty()
        });
        if still {
            self.index.remove(downstream);
        }
    }

    /// Forget the budgets kept `keep` past their downstream's last endpoint.
    fn forget_budgets(&mut self, now: Instant, keep: Duration) {
        while let Some((_, _, at)) = self.orphans.front() {
            if now.saturating_duration_since(*at) < keep {
                break;
            }
            if let Some((downstream, generation, at)) = self.orphans.pop_front() {
                self.forget_orphan(&downstream, generation, at);
            }
        }
    }

    /// Evict the entries not used for `idle` before `now` and not in use, from the cold
    /// end; return how many. An entry in use counts as used now (so each is looked at
    /// once per idle timeout, and a call stays O(1) amortized).
    fn evict_idle(&mut self, now: Instant, idle: Duration, keep: Duration) -> usize {
        let mut evicted = 0;
        while let Some(node) = self.node(self.tail) {
            if now.saturating_duration_since(node.last_used) < idle {
                break;
            }
            if node.policy.in_use() {
                self.touch(self.tail, now);
            } else {
                self.remove(self.tail, now, keep);
                evicted += 1;
            }
        }
        evicted
    }
}
