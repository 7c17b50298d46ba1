//! An `f64` in an atomic, for the algorithms' lock-free state.

use std::sync::atomic::{AtomicU64, Ordering};

/// An `f64` kept as its bits in an [`AtomicU64`]: std has no atomic float, and the bits
/// round-trip exactly through `to_bits`/`from_bits`.
#[derive(Debug)]
pub(super) struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub(super) fn new(value: f64) -> Self {
        Self(AtomicU64::new(value.to_bits()))
    }

    pub(super) fn load(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Acquire))
    }

    pub(super) fn store(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Release);
    }

    /// Replaces the value with `f(current)` in one compare-and-swap loop and returns the
    /// value stored, or the current value if `f` declines with `None`. `f` may run more
    /// than once when another thread wins the race, so it must be pure; each attempt sees
    /// the latest value, so no update is ever lost.
    pub(super) fn update(&self, mut f: impl FnMut(f64) -> Option<f64>) -> f64 {
        let mut stored = 0.0;
        let result = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
                let next = f(f64::from_bits(bits))?;
                stored = next;
                Some(next.to_bits())
            });
        match result {
            Ok(_) => stored,
            Err(bits) => f64::from_bits(bits),
        }
    }
}
