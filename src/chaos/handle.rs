//! Switch fault injection on and off, and change its rate, at run time.

use std::fmt;
use std::sync::Arc;

use super::state::Shared;
use super::Snapshot;
use crate::error::ConfigError;

/// A handle to one fault layer, from [`FaultLayer::handle`](super::FaultLayer::handle),
/// [`FaultInjection::handle`](super::FaultInjection::handle) or, for HTTP servers,
/// `HttpFaultLayer::handle`: switch injection on and off, change the rate, read the
/// counts. Clones refer to the same layer; every method is a few atomic operations and
/// may be called from any thread (an admin endpoint, a test, a game-day script).
///
/// ```
/// use seawall::chaos::{FaultLayer, InjectedFault};
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = FaultLayer::builder()
///     .rate(1.0)
///     .error_value(InjectedFault::new())
///     .enabled(false)
///     .build()
///     .unwrap();
/// let handle = layer.handle();
/// let svc = layer.layer(tower::service_fn(|x: u32| async move {
///     Ok::<_, std::io::Error>(x)
/// }));
///
/// assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1); // disabled: untouched
/// handle.enable();
/// assert!(svc.clone().oneshot(2).await.is_err()); // every call fails
/// handle.set_rate(0.0).unwrap();
/// assert_eq!(svc.clone().oneshot(3).await.unwrap(), 3); // none does
///
/// let snap = handle.snapshot();
/// assert_eq!((snap.calls, snap.errors), (2, 1)); // only calls decided while enabled
/// # }
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The layer's name (the `policy` label of its metrics).
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().name("db").rate(0.1).hang().build().unwrap();
    /// assert_eq!(layer.handle().name(), "db");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Start injecting faults (at the current [`rate`](Self::rate)). Calls already
    /// decided keep their decision.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().rate(0.1).hang().build().unwrap();
    /// layer.handle().enable();
    /// assert!(layer.handle().is_enabled());
    /// ```
    pub fn enable(&self) {
        self.shared.set_enabled(true);
    }

    /// Stop injecting faults: from now on every call goes through untouched, for the cost
    /// of one atomic load. Faults already injected (a hang, a pending delay) go on.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().rate(0.1).hang().enabled(true).build().unwrap();
    /// layer.handle().disable();
    /// assert!(!layer.handle().is_enabled());
    /// ```
    pub fn disable(&self) {
        self.shared.set_enabled(false);
    }

    /// Whether the layer injects faults now.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().rate(0.1).hang().build().unwrap();
    /// assert!(!layer.handle().is_enabled()); // disabled unless built otherwise
    /// ```
    pub fn is_enabled(&self) -> bool {
        self.shared.is_enabled()
    }

    /// The probability that a call gets a fault while enabled, as last set.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().rate(0.25).hang().build().unwrap();
    /// assert_eq!(layer.handle().rate(), 0.25);
    /// ```
    pub fn rate(&self) -> f64 {
        self.shared.rate()
    }

    /// Change the probability that a call gets a fault, from 0.0 to 1.0; anything else
    /// (NaN included) is a [`ConfigError`] and changes nothing. The faults' weights are
    /// kept, and enabling or disabling is separate.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let handle = FaultLayer::builder().rate(0.01).hang().build().unwrap().handle();
    /// handle.set_rate(0.2).unwrap();
    /// assert_eq!(handle.rate(), 0.2);
    /// assert_eq!(handle.set_rate(f64::NAN).unwrap_err().field(), "rate");
    /// assert_eq!(handle.rate(), 0.2);
    /// ```
    pub fn set_rate(&self, rate: f64) -> Result<(), ConfigError> {
        self.shared.set_rate(rate)
    }

    /// The switch, the rate, the calls decided while enabled, and the faults injected by
    /// kind.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().rate(0.1).hang().build().unwrap();
    /// let snap = layer.handle().snapshot();
    /// assert_eq!((snap.calls, snap.injected()), (0, 0));
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.name())
            .field("snapshot", &self.snapshot())
            .finish()
    }
}
