//! The FIFO queue of callers waiting for a permit: a doubly linked list threaded through
//! a slab. Joining, leaving from the front and leaving from anywhere by key are O(1), so
//! a storm of callers giving up costs the lock every releaser takes no more than it costs
//! them to join.

/// No slot.
const NIL: usize = usize::MAX;

/// An emptied queue keeps at most this many slots; beyond it, the slab is freed, so that
/// a spike of waiters does not pin its memory for the life of the bulkhead.
const KEEP_SLOTS: usize = 64;

#[derive(Debug)]
struct Slot<T> {
    /// `None`: vacant, chained through `next` to the next vacant slot.
    value: Option<T>,
    prev: usize,
    next: usize,
}

/// A FIFO queue whose entries can also leave from anywhere, in O(1), by the key
/// [`push_back`](Self::push_back) gave them.
#[derive(Debug)]
pub(crate) struct WaitQueue<T> {
    slots: Vec<Slot<T>>,
    head: usize,
    tail: usize,
    /// The first vacant slot.
    vacant: usize,
    len: usize,
    /// Slots visited by `remove_if` and `pop_front`, to check that leaving is O(1).
    #[cfg(test)]
    visits: u64,
}

impl<T> Default for WaitQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> WaitQueue<T> {
    pub(crate) const fn new() -> Self {
        Self {
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            vacant: NIL,
            len: 0,
            #[cfg(test)]
            visits: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Join at the back; the key lets the entry leave from wherever it is.
    pub(crate) fn push_back(&mut self, value: T) -> usize {
        let slot = Slot {
            value: Some(value),
            prev: self.tail,
            next: NIL,
        };
        let key = if self.vacant == NIL {
            self.slots.push(slot);
            self.slots.len() - 1
        } else {
            let key = self.vacant;
            self.vacant = self.slots[key].next;
            self.slots[key] = slot;
            key
        };
        match self.tail {
            NIL => self.head = key,
            tail => self.slots[tail].next = key,
        }
        self.tail = key;
        self.len += 1;
        key
    }

    /// The entry at the front, if any (tests).
    #[cfg(test)]
    pub(crate) fn front(&self) -> Option<&T> {
        self.slots.get(self.head)?.value.as_ref()
    }

    /// Take the entry at the front.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        match self.head {
            NIL => None,
            head => self.unlink(head),
        }
    }

    /// Take the entry under `key`, if it is still there and `is_it` agrees that it is the
    /// one the key was given to (a key is reused once its entry has left).
    pub(crate) fn remove_if(&mut self, key: usize, is_it: impl FnOnce(&T) -> bool) -> Option<T> {
        match self.slots.get(key)?.value.as_ref() {
            Some(value) if is_it(value) => self.unlink(key),
            _ => None,
        }
    }

    fn unlink(&mut self, key: usize) -> Option<T> {
        #[cfg(test)]
        {
            self.visits += 1;
        }
        let slot = &mut self.slots[key];
        let value = slot.value.take()?;
        let (prev, next) = (slot.prev, slot.next);
        slot.next = self.vacant;
        self.vacant = key;
        match prev {
            NIL => self.head = next,
            prev => self.slots[prev].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.slots[next].prev = prev,
        }
        self.len -= 1;
        if self.len == 0 {
            // Every key has left: start afresh, and let a spike's slab go.
            if self.slots.capacity() > KEEP_SLOTS {
                self.slots = Vec::new();
            } else {
                self.slots.clear();
            }
            self.vacant = NIL;
        }
        Some(value)
    }

    /// Slots visited by departures so far (tests).
    #[cfg(test)]
    pub(crate) fn visits(&self) -> u64 {
        self.visits
    }

    /// Slots held, in use or vacant (tests).
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.slots.capacity()
    }
}

#[cfg(all(test, not(seawall_loom)))]
mod tests {
    use super::*;

    fn drain(queue: &mut WaitQueue<u32>) -> Vec<u32> {
        std::iter::from_fn(|| queue.pop_front()).collect()
    }

    #[test]
    fn entries_leave_in_arrival_order_whoever_leaves_from_the_middle() {
        let mut queue = WaitQueue::new();
        let keys: Vec<usize> = (0..6).map(|i| queue.push_back(i)).collect();
        assert_eq!(queue.remove_if(keys[0], |&v| v == 0), Some(0)); // the front
        assert_eq!(queue.remove_if(keys[3], |&v| v == 3), Some(3)); // the middle
        assert_eq!(queue.remove_if(keys[5], |&v| v == 5), Some(5)); // the back
        assert_eq!(queue.remove_if(keys[3], |_| true), None, "already gone");
        assert_eq!(queue.len(), 3);
        // Vacant slots are reused, and the order is still arrival order.
        let seven = queue.push_back(7);
        assert!(keys.contains(&seven), "a vacant slot is reused");
        assert_eq!(
            queue.remove_if(seven, |&v| v == 6),
            None,
            "not the one asked for"
        );
        assert_eq!(queue.front(), Some(&1));
        assert_eq!(drain(&mut queue), vec![1, 2, 4, 7]);
        assert!(queue.is_empty());
    }

    #[test]
    fn an_emptied_queue_gives_its_memory_back() {
        let mut queue = WaitQueue::new();
        let keys: Vec<usize> = (0..10_000).map(|i| queue.push_back(i)).collect();
        assert!(queue.slots() >= 10_000);
        for (i, key) in keys.into_iter().enumerate().rev() {
            assert_eq!(queue.remove_if(key, |&v| v as usize == i), Some(i as u32));
        }
        assert_eq!(queue.slots(), 0);
    }
}
