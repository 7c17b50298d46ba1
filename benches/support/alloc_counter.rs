//! A counting global allocator for the benchmark binaries.
//!
//! Every `alloc`, `alloc_zeroed` and `realloc` call made on a thread bumps a
//! counter private to that thread; the benchmarks run their calls on one
//! thread (a `current_thread` runtime), read the counter before and after N
//! calls and divide by N. A thread-local `Cell` keeps the counting cost to a
//! plain increment, so it does not skew the timings of the contenders that
//! allocate more than the others.

// Implementing `GlobalAlloc` needs `unsafe`; this is the only unsafe code in
// the benchmark binaries and it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // `const` initialisation and a type without `Drop`: reading it never
    // allocates and never registers a destructor, so it is safe to touch from
    // inside the allocator.
    static ALLOC_CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Forwards to [`System`], counting allocation calls per thread.
#[derive(Debug)]
pub(crate) struct CountingAlloc;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[inline]
fn bump() {
    // `try_with` fails only while the thread is being torn down; an
    // allocation made then is simply not counted.
    let _ = ALLOC_CALLS.try_with(|calls| calls.set(calls.get() + 1));
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the counter does not allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocation calls (`alloc` + `alloc_zeroed` + `realloc`) made so far by
/// the current thread.
pub(crate) fn alloc_calls_on_this_thread() -> u64 {
    ALLOC_CALLS.with(Cell::get)
}
