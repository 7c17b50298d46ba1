//! Memory stays bounded: callers that give up, and objects built and dropped in waves,
//! leave the live heap (counted by the allocator below) where it started.
//!
//! Every test here takes [`serial`] first: the live-byte counter is global to the
//! process, so two tests measuring at once would see each other's allocations.

/// `full` in an optimised build, a tenth of it in a debug one. The tests below drive a
/// million callers or objects, which takes minutes unoptimised; CI runs them with
/// `cargo test --release -p seawall-bounded-memory` at full size. At a tenth, a leak of
/// one byte per caller is still more than every bound here.
macro_rules! scaled {
    ($full:expr) => {
        if cfg!(debug_assertions) {
            $full / 10
        } else {
            $full
        }
    };
}

// `support` allows its own dead code.
#[path = "../../tests/support/mod.rs"]
mod support;

// Each area adds its module here.
mod breaker;
mod bulkhead;
mod deadline;
mod hedge;
mod policy;
mod registry;

// ===== live heap bytes =====

/// A global allocator that forwards to `System` and keeps the bytes allocated and not
/// yet freed, by every thread.
#[allow(unsafe_code)]
mod live_heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicI64, Ordering};

    static LIVE: AtomicI64 = AtomicI64::new(0);

    pub(crate) struct LiveBytes;

    #[global_allocator]
    static GLOBAL: LiveBytes = LiveBytes;

    // SAFETY: every method forwards its arguments unchanged to `System`, which upholds
    // the `GlobalAlloc` contract; the counter is one atomic and does not allocate.
    unsafe impl GlobalAlloc for LiveBytes {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same contract as the caller's.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same contract as the caller's.
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
            }
            ptr
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: same contract as the caller's.
            let new = unsafe { System.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
            }
            new
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
    }

    /// Bytes allocated and not freed, by every thread, so far.
    pub(crate) fn bytes() -> i64 {
        LIVE.load(Ordering::SeqCst)
    }
}

/// Bytes allocated and not yet freed in the whole process.
pub(crate) fn live_bytes() -> i64 {
    live_heap::bytes()
}

/// Held by each test for its whole run, so that one test's allocations never show up in
/// another's measurement.
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fails the test when the live heap grew by more than `bound` bytes since `before`.
#[track_caller]
pub(crate) fn assert_heap_within(what: &str, before: i64, bound: i64) {
    let after = live_bytes();
    let grown = after - before;
    println!("{what}: live heap {before} -> {after} bytes ({grown:+})");
    assert!(
        grown <= bound,
        "{what}: the live heap grew by {grown} bytes, more than the bound of {bound}"
    );
}
