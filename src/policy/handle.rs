//! One view of every stage of a policy.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::retry::budget::RetryBudget;
use crate::{bulkhead, circuit_breaker, hedge};

/// The handles of one policy's stages, from [`Policy::handle`](super::Policy::handle):
/// what an operator needs to observe (and steer) the policy of one downstream. Each
/// stage that is off has no handle (`None`). Clones refer to the same stages, shared by
/// every service the policy built.
///
/// ```
/// use seawall::circuit_breaker::State;
/// use seawall::policy::Policy;
/// use std::time::Duration;
///
/// let policy = Policy::builder("payments").without_bulkhead().build()?;
/// let handle = policy.handle();
/// assert_eq!(handle.name(), "payments");
/// assert_eq!(handle.circuit_breaker().unwrap().state(), State::Closed);
/// assert!(handle.bulkhead().is_none(), "switched off");
/// assert_eq!(handle.budget().unwrap().snapshot().deposits, 0);
/// assert!(handle.hedge().is_none(), "hedging is off by default");
/// assert_eq!(handle.deadline(), Some(Duration::from_secs(15)));
/// assert_eq!(handle.attempt_timeout(), Some(Duration::from_secs(5)));
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct PolicyHandle {
    pub(crate) name: Arc<str>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) retries: bool,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) hedge: Option<hedge::Handle>,
    pub(crate) circuit_breaker: Option<circuit_breaker::Handle>,
    pub(crate) bulkhead: Option<bulkhead::Handle>,
    pub(crate) attempt_timeout: Option<Duration>,
}

impl PolicyHandle {
    /// The policy's name: the name (and `policy` metrics label) of each of its stages.
    ///
    /// ```
    /// let policy = seawall::policy::Policy::builder("inventory").build()?;
    /// assert_eq!(policy.handle().name(), "inventory");
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The overall deadline of each call, if that stage is on.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let policy = seawall::policy::Policy::builder("inventory")
    ///     .deadline(Duration::from_secs(2))
    ///     .build()?;
    /// assert_eq!(policy.handle().deadline(), Some(Duration::from_secs(2)));
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// Whether the retry stage is on.
    ///
    /// ```
    /// let policy = seawall::policy::Policy::builder("inventory").without_retry().build()?;
    /// assert!(!policy.handle().retries());
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn retries(&self) -> bool {
        self.retries
    }

    /// The one budget that retries and hedges are drawn from (`None` when both stages are
    /// off). Each call deposits into it once.
    ///
    /// ```
    /// let policy = seawall::policy::Policy::builder("inventory").build()?;
    /// let budget = policy.handle().budget().unwrap().snapshot();
    /// assert_eq!((budget.deposits, budget.withdrawals), (0, 0));
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// The hedge stage's delay and counts, if hedging is on.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let policy = seawall::policy::Policy::builder("search")
    ///     .hedge(|hedge| hedge.delay(Duration::from_millis(40)))
    ///     .build()?;
    /// let hedge = policy.handle().hedge().unwrap().snapshot();
    /// assert_eq!((hedge.delay, hedge.hedges), (Some(Duration::from_millis(40)), 0));
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn hedge(&self) -> Option<&hedge::Handle> {
        self.hedge.as_ref()
    }

    /// The circuit breaker (state, snapshot, force open, reset, transitions), if on.
    ///
    /// ```
    /// use seawall::circuit_breaker::State;
    ///
    /// let policy = seawall::policy::Policy::builder("inventory").build()?;
    /// let breaker = policy.handle().circuit_breaker().unwrap().clone();
    /// breaker.force_open(); // an operator takes the downstream out
    /// assert_eq!(breaker.state(), State::ForcedOpen);
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn circuit_breaker(&self) -> Option<&circuit_breaker::Handle> {
        self.circuit_breaker.as_ref()
    }

    /// The bulkhead (calls in flight, limit, rejections, resize), if on.
    ///
    /// ```
    /// let policy = seawall::policy::Policy::builder("inventory").build()?;
    /// let bulkhead = policy.handle().bulkhead().unwrap().clone();
    /// assert_eq!((bulkhead.in_flight(), bulkhead.limit()), (0, 25));
    /// bulkhead.set_limit(10)?;
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn bulkhead(&self) -> Option<&bulkhead::Handle> {
        self.bulkhead.as_ref()
    }

    /// The timeout of each attempt, if that stage is on (each attempt gets the lesser of
    /// it and what is left of the deadline).
    ///
    /// ```
    /// let policy = seawall::policy::Policy::builder("inventory")
    ///     .without_attempt_timeout()
    ///     .build()?;
    /// assert_eq!(policy.handle().attempt_timeout(), None);
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }
}

impl fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyHandle")
            .field("name", &self.name)
            .field("deadline", &self.deadline)
            .field("retries", &self.retries)
            .field("budget", &self.budget)
            .field("hedge", &self.hedge)
            .field("circuit_breaker", &self.circuit_breaker)
            .field("bulkhead", &self.bulkhead)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish()
    }
}
