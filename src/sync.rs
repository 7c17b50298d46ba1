//! Small concurrency helpers shared by the layers.

use std::ops::Deref;

/// Pads and aligns a value to its own cache line pair (128 bytes, the prefetch unit of
/// current x86 and the line size of Apple's ARM cores), so that a counter every core
/// writes does not share a line with data every core reads.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(T);

impl<T> CachePadded<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(value)
    }
}

impl<T> Deref for CachePadded<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
