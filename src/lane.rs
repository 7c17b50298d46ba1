//! Lanes: the few hot words of a breaker or a bulkhead that a call on the success path
//! reads and writes, reachable from a response future without a reference count.
//!
//! The crate forbids `unsafe`, so a lane that a future may hold by plain reference must
//! be `'static`, and a leaked `'static` can never be freed. [`Pool`] therefore leaks at
//! most a fixed number of lanes of each kind ([`POOLED_LANES`]), reused from a free list
//! by one owner after another; a lane asked for while every pooled lane is in use is an
//! `Arc` instead, freed when its last holder goes. [`LaneRef`] is either: the common
//! case (fewer owners alive at once than the bound) costs no reference count, and a
//! spike of owners costs memory only while it lasts.
//!
//! What a reused lane must not carry over from its last owner (late permits, late
//! outcomes) is the owner's business: see the bulkhead's limiter and the breaker's state.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The most lanes of one kind that are ever leaked, and so stay allocated for the life of
/// the process (a breaker's or a bulkhead's lane is 384 bytes: 1.5 MiB each at most).
/// Beyond it, lanes are reference counted and freed.
pub(crate) const POOLED_LANES: usize = 4096;

/// A lane, held either by `'static` reference (a pooled lane) or by `Arc` (a lane made
/// while every pooled lane was in use).
pub(crate) enum LaneRef<L: 'static> {
    /// One of the pool's lanes: never freed, reused by the next owner.
    Pooled(&'static L),
    /// Beyond the pool's bound: freed with its last reference.
    Counted(Arc<L>),
}

impl<L> LaneRef<L> {
    /// The lane, if it is one of the pool's (and so goes back to it).
    #[inline]
    pub(crate) fn pooled(&self) -> Option<&'static L> {
        match self {
            LaneRef::Pooled(lane) => Some(lane),
            LaneRef::Counted(_) => None,
        }
    }

    /// Whether both refer to the same lane.
    #[cfg(test)]
    pub(crate) fn ptr_eq(&self, other: &Self) -> bool {
        std::ptr::eq::<L>(&**self, &**other)
    }

    /// A part of the lane (say, the window totals inside a breaker's lane), held the way
    /// the lane is.
    // Only the breaker's lanes have parts.
    #[cfg_attr(not(feature = "circuit-breaker"), allow(dead_code))]
    pub(crate) fn part<T: 'static>(&self) -> PartRef<T>
    where
        L: AsRef<T> + Send + Sync,
    {
        match self {
            LaneRef::Pooled(lane) => PartRef::Pooled((*lane).as_ref()),
            LaneRef::Counted(lane) => PartRef::Counted(lane.clone()),
        }
    }
}

impl<L> Clone for LaneRef<L> {
    #[inline]
    fn clone(&self) -> Self {
        match self {
            LaneRef::Pooled(lane) => LaneRef::Pooled(lane),
            LaneRef::Counted(lane) => LaneRef::Counted(lane.clone()),
        }
    }
}

impl<L> Deref for LaneRef<L> {
    type Target = L;

    #[inline]
    fn deref(&self) -> &L {
        match self {
            LaneRef::Pooled(lane) => lane,
            LaneRef::Counted(lane) => lane,
        }
    }
}

impl<L: fmt::Debug> fmt::Debug for LaneRef<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaneRef::Pooled(lane) => f.debug_tuple("Pooled").field(lane).finish(),
            LaneRef::Counted(lane) => f.debug_tuple("Counted").field(lane).finish(),
        }
    }
}

/// A part of a lane, held the way its lane is (see [`LaneRef::part`]).
#[cfg_attr(not(feature = "circuit-breaker"), allow(dead_code))]
pub(crate) enum PartRef<T: 'static> {
    Pooled(&'static T),
    Counted(Arc<dyn AsRef<T> + Send + Sync>),
}

impl<T> From<&'static T> for PartRef<T> {
    fn from(part: &'static T) -> Self {
        PartRef::Pooled(part)
    }
}

impl<T> From<&'static mut T> for PartRef<T> {
    fn from(part: &'static mut T) -> Self {
        PartRef::Pooled(part)
    }
}

impl<T> Deref for PartRef<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match self {
            PartRef::Pooled(part) => part,
            PartRef::Counted(lane) => (**lane).as_ref(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for PartRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// The pool of one kind of lane: at most `bound` leaked lanes, and a free list of those
/// not in use.
pub(crate) struct Pool<L: 'static> {
    bound: usize,
    state: std::sync::Mutex<Free<L>>,
}

struct Free<L: 'static> {
    /// Pooled lanes not in use (at most `leaked`).
    lanes: Vec<&'static L>,
    /// Lanes leaked so far (at most the bound).
    leaked: usize,
}

impl<L> Pool<L> {
    /// An empty pool that leaks at most `bound` lanes.
    pub(crate) const fn new(bound: usize) -> Self {
        Self {
            bound,
            state: std::sync::Mutex::new(Free {
                lanes: Vec::new(),
                leaked: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Free<L>> {
        // Every step under this lock leaves the list consistent, so a poisoned lock (a
        // panic elsewhere while holding it) is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A lane for a new owner: a free pooled lane as its last owner left it, else a new
    /// one from `make` (leaked while the pool is under its bound, counted beyond it).
    pub(crate) fn take(&self, make: impl FnOnce() -> L) -> LaneRef<L> {
        // In the loom models every lane is new: a pooled one holds the objects of an
        // earlier loom execution. (They are leaked, as pooled lanes are, without a bound.)
        if cfg!(all(test, seawall_loom)) {
            return LaneRef::Pooled(Box::leak(Box::new(make())));
        }
        let mut free = self.lock();
        if let Some(lane) = free.lanes.pop() {
            return LaneRef::Pooled(lane);
        }
        if free.leaked < self.bound {
            free.leaked += 1;
            drop(free);
            return LaneRef::Pooled(Box::leak(Box::new(make())));
        }
        drop(free);
        LaneRef::Counted(Arc::new(make()))
    }

    /// Put a pooled lane back, for the next owner. Each lane must be given back once per
    /// [`take`](Self::take).
    pub(crate) fn give_back(&self, lane: &'static L) {
        self.lock().lanes.push(lane);
    }

    /// How many times `lane` sits in the free list (tests).
    #[cfg(test)]
    pub(crate) fn count_free(&self, lane: &L) -> usize {
        self.lock()
            .lanes
            .iter()
            .filter(|l| std::ptr::eq(**l, lane))
            .count()
    }

    /// Take `lane` out of the free list, wherever it is (the loom models, which never
    /// reuse lanes, keep the list short this way).
    #[cfg(all(test, seawall_loom))]
    pub(crate) fn forget(&self, lane: &L) {
        self.lock().lanes.retain(|l| !std::ptr::eq(*l, lane));
    }
}

impl<L> fmt::Debug for Pool<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let free = self.lock();
        f.debug_struct("Pool")
            .field("bound", &self.bound)
            .field("leaked", &free.leaked)
            .field("free", &free.lanes.len())
            .finish()
    }
}

#[cfg(all(test, not(seawall_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, Default)]
    struct Word(AtomicU64);

    #[test]
    fn the_pool_leaks_at_most_its_bound_and_counts_the_rest() {
        let pool: &'static Pool<Word> = Box::leak(Box::new(Pool::new(2)));
        let lanes: Vec<_> = (0..5).map(|_| pool.take(Word::default)).collect();
        let pooled = lanes.iter().filter(|l| l.pooled().is_some()).count();
        assert_eq!(pooled, 2, "two leaked lanes, three counted ones");
        // A counted lane is freed with its last reference.
        let counted = match &lanes[4] {
            LaneRef::Counted(arc) => Arc::downgrade(arc),
            LaneRef::Pooled(_) => unreachable!("the bound is reached"),
        };
        let copy = lanes[4].clone();
        assert!(copy.ptr_eq(&lanes[4]));
        drop(lanes);
        assert!(counted.upgrade().is_some(), "a copy is still held");
        drop(copy);
        assert!(counted.upgrade().is_none(), "freed with its last reference");
    }

    #[test]
    fn a_pooled_lane_given_back_is_reused_before_anything_is_made() {
        let pool: &'static Pool<Word> = Box::leak(Box::new(Pool::new(1)));
        let first = pool.take(Word::default);
        first.0.store(7, Ordering::Relaxed);
        let lane = first.pooled().unwrap();
        pool.give_back(lane);
        assert_eq!(pool.count_free(lane), 1);
        let again = pool.take(|| unreachable!("a free lane is reused"));
        assert!(again.ptr_eq(&first));
        assert_eq!(
            again.0.load(Ordering::Relaxed),
            7,
            "as its last owner left it"
        );
        // Taken again: the pool is at its bound, so the next one is counted.
        assert!(pool.take(Word::default).pooled().is_none());
    }
}
