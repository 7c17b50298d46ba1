//! The services waiting for a breaker to admit calls again (backpressure mode).
//!
//! A waiter is one service instance whose `poll_ready` found the breaker rejecting: it
//! owns one entry here, keyed by its index in a slab, and linked into a FIFO list. The
//! entry is the service's, not the task's: polling again updates it in place, and
//! dropping the service removes it, so callers that give up leave nothing behind, and
//! every operation is O(1) whatever the number of waiters.
//!
//! Waking takes entries off the front of the list: as many as can proceed (the free
//! probe slots when the breaker goes half-open or a slot is given back, everyone when it
//! closes). A woken entry stays the service's until the service polls again (and proceeds,
//! or queues again at the back) or is dropped; a service dropped before it used its wake
//! passes the wake on to the next waiter.
//!
//! Time: an open breaker goes half-open at a known instant, and a waiter has to be
//! polled then to notice (transitions are evaluated lazily, see `state.rs`). One waiter
//! only, the *timer keeper*, sleeps until that instant; the others wait for a wake, so
//! that the end of an open period does not wake every waiter at once. A woken keeper
//! keeps the role if it queues again; when it leaves (proceeds or is dropped), the next
//! waiter is woken to take the timer over.

use std::task::Waker;

use crate::sync::atomic::{fence, AtomicBool, Ordering};
use crate::sync::{Mutex, MutexGuard};

const NIL: usize = usize::MAX;

/// How many wakers are taken off the list per lock, to be woken after it.
const BATCH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Not in use; `next` links the free entries.
    Free,
    /// In the list, waiting.
    Queued,
    /// Woken and out of the list, still owned by its service.
    Woken,
}

#[derive(Debug)]
struct Entry {
    waker: Option<Waker>,
    prev: usize,
    next: usize,
    mark: Mark,
}

#[derive(Debug)]
struct List {
    entries: Vec<Entry>,
    /// The first free entry.
    free: usize,
    head: usize,
    tail: usize,
    /// Entries owned by a service (queued or woken).
    owned: usize,
    /// The waiter that keeps the timer, `NIL` if none.
    keeper: usize,
}

impl List {
    fn unlink(&mut self, key: usize) {
        let (prev, next) = (self.entries[key].prev, self.entries[key].next);
        match prev {
            NIL => self.head = next,
            p => self.entries[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.entries[n].prev = prev,
        }
    }

    fn push_back(&mut self, key: usize) {
        let tail = self.tail;
        let entry = &mut self.entries[key];
        entry.prev = tail;
        entry.next = NIL;
        entry.mark = Mark::Queued;
        match tail {
            NIL => self.head = key,
            t => self.entries[t].next = key,
        }
        self.tail = key;
    }

    /// Take `key` out of the list as woken; returns its waker.
    fn wake_entry(&mut self, key: usize) -> Option<Waker> {
        self.unlink(key);
        if self.keeper == key {
            self.keeper = NIL;
        }
        let entry = &mut self.entries[key];
        entry.mark = Mark::Woken;
        entry.waker.take()
    }

    fn release(&mut self, key: usize) {
        let entry = &mut self.entries[key];
        entry.mark = Mark::Free;
        entry.waker = None;
        entry.next = self.free;
        self.free = key;
        self.owned -= 1;
        if self.owned == 0 {
            // Nobody waits: give the memory of the last crowd back.
            self.entries = Vec::new();
            self.free = NIL;
        }
    }
}

/// Wakers taken off the list, woken once the lock is released: up to `BATCH`, and one
/// more for a new timer keeper.
struct Batch {
    wakers: [Option<Waker>; BATCH + 1],
    len: usize,
}

impl Batch {
    fn new() -> Self {
        Self {
            wakers: Default::default(),
            len: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.len >= BATCH
    }

    fn push(&mut self, waker: Option<Waker>) {
        if let Some(waker) = waker {
            self.wakers[self.len] = Some(waker);
            self.len += 1;
        }
    }

    fn wake(self) {
        for waker in self.wakers.into_iter().flatten() {
            waker.wake();
        }
    }
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct WaitList {
    list: Mutex<List>,
    /// Whether anyone is queued: a wake skips the lock when nobody is.
    queued: AtomicBool,
}

impl WaitList {
    pub(crate) fn new() -> Self {
        Self {
            list: Mutex::new(List {
                entries: Vec::new(),
                free: NIL,
                head: NIL,
                tail: NIL,
                owned: 0,
                keeper: NIL,
            }),
            queued: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, List> {
        // Every update keeps the list consistent before anything that could panic (there
        // is nothing that could), so a poisoned lock is still usable.
        self.list
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queue the waiter `key` (a new one if `None`) with `waker`, or update its waker if
    /// it is queued already. Returns its key and whether it keeps the timer.
    ///
    /// The caller must look at the breaker again afterwards: a change published before
    /// the waiter was queued woke nobody.
    pub(crate) fn register(&self, key: Option<usize>, waker: &Waker) -> (usize, bool) {
        let mut list = self.lock();
        let key = match key {
            Some(key) => {
                let entry = &mut list.entries[key];
                match &mut entry.waker {
                    Some(old) if old.will_wake(waker) => {}
                    slot => *slot = Some(waker.clone()),
                }
                if entry.mark == Mark::Woken {
                    list.push_back(key);
                }
                key
            }
            None => {
                let entry = Entry {
                    waker: Some(waker.clone()),
                    prev: NIL,
                    next: NIL,
                    mark: Mark::Queued,
                };
                let key = match list.free {
                    NIL => {
                        list.entries.push(entry);
                        list.entries.len() - 1
                    }
                    free => {
                        list.free = list.entries[free].next;
                        list.entries[free] = entry;
                        free
                    }
                };
                list.owned += 1;
                list.push_back(key);
                key
            }
        };
        if list.keeper == NIL {
            list.keeper = key;
        }
        let keeper = list.keeper == key;
        self.queued.store(true, Ordering::SeqCst);
        drop(list);
        // Pairs with the fence in `wake`: either the waiter's next look at the breaker
        // sees the change, or the waker sees `queued` (store-load ordering).
        fence(Ordering::SeqCst);
        (key, keeper)
    }

    /// The waiter `key` stops waiting: it proceeds (`passed_on = false`), or its service
    /// is dropped (`passed_on = true`: a wake it was given and never used goes to the
    /// next waiter; if it kept the timer, the next waiter is woken to keep it).
    pub(crate) fn remove(&self, key: usize, pass_on: bool) {
        let mut batch = Batch::new();
        {
            let mut list = self.lock();
            match list.entries[key].mark {
                Mark::Queued => {
                    list.unlink(key);
                    if list.keeper == key {
                        list.keeper = NIL;
                    }
                }
                // A wake it never used goes to the next waiter.
                Mark::Woken if pass_on => {
                    self.take(&mut list, 1, &mut batch);
                }
                Mark::Woken => {}
                Mark::Free => return,
            }
            list.release(key);
            self.settle(&mut list, &mut batch, true);
        }
        batch.wake();
    }

    /// Wake up to `n` waiters, oldest first (`usize::MAX`: everyone queued now).
    pub(crate) fn wake(&self, n: usize) {
        fence(Ordering::SeqCst);
        if n == 0 || !self.queued.load(Ordering::SeqCst) {
            return;
        }
        let mut left = n;
        // Everyone: only those queued now, not those that queue again meanwhile.
        let mut rounds = if n == usize::MAX {
            self.lock().owned.div_ceil(BATCH).max(1)
        } else {
            usize::MAX
        };
        while left > 0 && rounds > 0 {
            rounds -= 1;
            let mut batch = Batch::new();
            let more = {
                let mut list = self.lock();
                let taken = self.take(&mut list, left.min(BATCH), &mut batch);
                left -= taken;
                self.settle(&mut list, &mut batch, false);
                taken == BATCH && list.head != NIL
            };
            batch.wake();
            if !more {
                break;
            }
        }
    }

    /// Wake the timer keeper (when the instant it sleeps until has changed).
    pub(crate) fn wake_keeper(&self) {
        fence(Ordering::SeqCst);
        if !self.queued.load(Ordering::SeqCst) {
            return;
        }
        let mut batch = Batch::new();
        {
            let mut list = self.lock();
            let keeper = list.keeper;
            if keeper != NIL {
                let waker = list.wake_entry(keeper);
                batch.push(waker);
            }
            self.settle(&mut list, &mut batch, false);
        }
        batch.wake();
    }

    /// Take up to `n` waiters off the front; returns how many.
    fn take(&self, list: &mut List, n: usize, batch: &mut Batch) -> usize {
        let mut taken = 0;
        while taken < n && !batch.is_full() && list.head != NIL {
            let head = list.head;
            let waker = list.wake_entry(head);
            batch.push(waker);
            taken += 1;
        }
        taken
    }

    /// After waiters left: keep `queued` true to the list, and with `hand_over`, if no
    /// one keeps the timer, wake the next waiter to keep it.
    fn settle(&self, list: &mut List, batch: &mut Batch, hand_over: bool) {
        if hand_over && list.keeper == NIL && list.head != NIL {
            let head = list.head;
            let waker = list.wake_entry(head);
            batch.push(waker);
        }
        self.queued.store(list.head != NIL, Ordering::SeqCst);
    }
}
