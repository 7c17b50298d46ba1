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

// ===== the primitives the lock-free parts use =====
//
// The breaker's state machine and window, the retry budget and the bulkhead's permit
// counters take their atomics, locks and spin hints from here: `std`'s in every normal
// build, `loom`'s in the loom models (`RUSTFLAGS="--cfg seawall_loom"`, test builds only),
// so that loom sees, and permutes, every access. Only the paths differ: a normal build
// compiles to the same code as with `std::sync` named directly.
//
// The cfg is `seawall_loom`, not the customary `loom`: tokio removes `tokio::net` under
// `--cfg loom`, and hyper-util (a dev-dependency) then fails to compile.

/// `std::sync::atomic`, or `loom`'s in the loom models.
#[allow(unused_imports)]
pub(crate) mod atomic {
    #[cfg(all(test, seawall_loom))]
    pub(crate) use loom::sync::atomic::{
        fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering,
    };
    #[cfg(not(all(test, seawall_loom)))]
    pub(crate) use std::sync::atomic::{
        fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering,
    };
}

/// `std::sync::Mutex`, or `loom`'s in the loom models. (A `static` lock stays `std`'s:
/// loom's cannot be built in a const context, and a lock that outlives one loom execution
/// must not be one of its objects.)
#[allow(unused_imports)]
#[cfg(all(test, seawall_loom))]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[allow(unused_imports)]
#[cfg(not(all(test, seawall_loom)))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// `std::hint::spin_loop`, or in the loom models a yield to loom's scheduler (a spinning
/// thread must let loom run the thread it waits for).
#[allow(unused_imports)]
#[cfg(all(test, seawall_loom))]
pub(crate) use loom::hint::spin_loop;
#[allow(unused_imports)]
#[cfg(not(all(test, seawall_loom)))]
pub(crate) use std::hint::spin_loop;

/// `std::thread::yield_now`, or loom's in the loom models.
#[allow(unused_imports)]
#[cfg(all(test, seawall_loom))]
pub(crate) use loom::thread::yield_now;
#[allow(unused_imports)]
#[cfg(not(all(test, seawall_loom)))]
pub(crate) use std::thread::yield_now;

/// The loom models' driver: `loom::model` with a bound of `preemptions` (unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise), under a paused tokio clock. Loom's docs find
/// two or three enough to catch most bugs; the models use three, and two where three
/// threads at three would take minutes.
///
/// Time: the layers read `tokio::time::Instant`. Loom runs every thread of a model as a
/// coroutine on the calling OS thread, so a paused current-thread runtime entered here is
/// the clock of every model thread too: time stands still (the [`Clock`] of anything
/// built in a model reads 0 throughout) and every execution is deterministic. A model that
/// needs time to pass passes it explicitly, through the `*_at` entry points.
///
/// [`Clock`]: crate::time::Clock
#[cfg(all(test, seawall_loom))]
pub(crate) fn loom_model(preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let _paused = runtime.enter();
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = executions.clone();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        model();
    });
    // Shown with `--nocapture`: how much each model explores.
    println!(
        "loom: {} executions",
        executions.load(std::sync::atomic::Ordering::Relaxed)
    );
}
