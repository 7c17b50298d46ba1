//! Inspect and steer a breaker at run time.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::task::Poll;

use tokio::sync::broadcast;

use super::state::Shared;
use super::{Cause, Snapshot, State, Transition};

/// A handle to one breaker: read its state and counts, force it open or closed, disable
/// it, and subscribe to its transitions. Get one from
/// [`CircuitBreakerLayer::handle`](super::CircuitBreakerLayer::handle); clones refer to
/// the same breaker.
///
/// ```
/// use seawall::circuit_breaker::{CircuitBreakerLayer, State};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = CircuitBreakerLayer::builder().name("payments").build().unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.state(), State::Closed);
///
/// let mut transitions = handle.subscribe();
/// handle.force_open();
/// assert_eq!(handle.state(), State::ForcedOpen);
/// assert_eq!(transitions.recv().await.unwrap().to, State::ForcedOpen);
///
/// handle.reset();
/// assert_eq!(handle.state(), State::Closed);
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

    /// The breaker's name (the `policy` label of its metrics).
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// The current state. A timed transition that is due (an open period that is over,
    /// a half-open period past its limit) has happened by the time this returns, dated
    /// when it was due, whether or not any call arrived.
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// A snapshot of the state and the window's counts.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Reject every call until [`reset`](Self::reset) or [`disable`](Self::disable), e.g.
    /// to take a downstream out of service by hand.
    pub fn force_open(&self) {
        self.operate(State::ForcedOpen, Cause::Forced);
    }

    /// Force the breaker closed: an empty window, the open-duration backoff back at its
    /// base, and normal operation from here. Also ends [`force_open`](Self::force_open)
    /// and [`disable`](Self::disable).
    pub fn reset(&self) {
        self.operate(State::Closed, Cause::Reset);
    }

    /// Let every call through without ever tripping, while still measuring: the window,
    /// snapshot and metrics keep counting. [`reset`](Self::reset) resumes normal
    /// operation.
    pub fn disable(&self) {
        self.operate(State::Disabled, Cause::Disabled);
    }

    fn operate(&self, to: State, cause: Cause) {
        let now = self.shared.clock.now();
        // The timed transitions due by now happened first: subscribers see them, in order.
        self.shared.catch_up(now);
        self.shared.transition(None, to, cause, now);
    }

    /// Subscribe to the breaker's state transitions from now on.
    pub fn subscribe(&self) -> Transitions {
        Transitions {
            receiver: self.shared.subscribe(),
            breaker: Arc::downgrade(&self.shared),
            missed: 0,
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}

/// A subscription to a breaker's transitions, from [`Handle::subscribe`] (which has an
/// example).
///
/// It buffers the latest 64 transitions; a subscriber that falls further behind skips the
/// oldest ones and can see how many with [`missed`](Self::missed).
///
/// Timed transitions (an open period that ends, a half-open period that reaches its
/// limit) are seen when they are due even if no call arrives: [`recv`](Self::recv) waits
/// for them on a tokio timer (it needs a tokio runtime with time enabled for that, as
/// [`Readiness::Backpressure`](super::Readiness::Backpressure) does; elsewhere it sees
/// them at the next look at the breaker), and [`try_recv`](Self::try_recv) makes those
/// due by now first.
#[derive(Debug)]
pub struct Transitions {
    receiver: broadcast::Receiver<Transition>,
    /// Weak: a subscription does not keep the breaker alive.
    breaker: Weak<Shared>,
    missed: u64,
}

impl Transitions {
    /// The next transition; `None` once the breaker (every layer, service and handle of
    /// it) is gone.
    pub async fn recv(&mut self) -> Option<Transition> {
        loop {
            // Make the timed transitions due by now, and learn when the next one is.
            let due = self.breaker.upgrade().and_then(|shared| {
                shared.catch_up(shared.clock.now());
                let at = shared.next_due()?;
                Some(shared.clock.instant(at))
            });
            match self.receiver.try_recv() {
                Ok(t) => return Some(t),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.missed += n;
                    continue;
                }
                Err(broadcast::error::TryRecvError::Closed) => return None,
                Err(broadcast::error::TryRecvError::Empty) => {}
            }
            let due = due.filter(|_| tokio::runtime::Handle::try_current().is_ok());
            let mut received = pin!(self.receiver.recv());
            let result = match due {
                None => received.await,
                Some(at) => {
                    let mut timer = pin!(tokio::time::sleep_until(at));
                    let woken = std::future::poll_fn(|cx| {
                        if let Poll::Ready(result) = received.as_mut().poll(cx) {
                            return Poll::Ready(Some(result));
                        }
                        timer.as_mut().poll(cx).map(|()| None)
                    })
                    .await;
                    match woken {
                        Some(result) => result,
                        // Due now: look again, which makes it.
                        None => continue,
                    }
                }
            };
            match result {
                Ok(t) => return Some(t),
                Err(broadcast::error::RecvError::Lagged(n)) => self.missed += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next transition if one is waiting, without waiting (after making the timed
    /// transitions due by now).
    pub fn try_recv(&mut self) -> Option<Transition> {
        if let Some(shared) = self.breaker.upgrade() {
            shared.catch_up(shared.clock.now());
        }
        loop {
            match self.receiver.try_recv() {
                Ok(t) => return Some(t),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.missed += n,
                Err(_) => return None,
            }
        }
    }

    /// How many transitions this subscriber skipped because it fell behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}
