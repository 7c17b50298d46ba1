//! Loom models of the breaker's windows: `RUSTFLAGS="--cfg seawall_loom"` (see
//! `crate::sync`).

use super::*;
use crate::sync::loom_model;
use loom::sync::Arc;
use loom::thread;

const OK: Sample = Sample {
    failure: false,
    slow: false,
};
const FAIL: Sample = Sample {
    failure: true,
    slow: false,
};
const SLOW_FAIL: Sample = Sample {
    failure: true,
    slow: true,
};

/// The totals word a window whose slots hold `slots` must have: the biased zero plus
/// each slot's fields, with no borrow between fields.
fn expected_totals(slots: &[AtomicU8]) -> u64 {
    slots.iter().fold(BIASED_ZERO, |word, slot| {
        let bits = slot.load(Ordering::SeqCst);
        let field = |flag: u8, shift: u32| u64::from(bits & flag != 0) << shift;
        word + field(Sample::RECORDED, 0)
            + field(Sample::FAILURE, FIELD_BITS)
            + field(Sample::SLOW, 2 * FIELD_BITS)
    })
}

/// Calls record into a count window of two while a transition empties it: once they are
/// done, the packed totals are exactly the sum of the slots (every slot's change applied
/// once, no field borrowing from its neighbour), whatever the order of the swaps and the
/// adds.
#[test]
fn count_window_totals_equal_the_slots_under_records_and_a_reset() {
    loom_model(3, || {
        let totals: &'static Totals = Box::leak(Box::new(Totals::new()));
        let window = Arc::new(CountWindow::new(2, totals));
        window.record(FAIL);
        window.record(OK);
        let threads: Vec<_> = [Some(SLOW_FAIL), Some(OK), None]
            .into_iter()
            .map(|sample| {
                let window = window.clone();
                thread::spawn(move || match sample {
                    Some(sample) => {
                        window.record(sample);
                    }
                    None => window.reset(),
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(totals.raw(), expected_totals(&window.slots));
        let counts = window.counts();
        assert!(counts.calls <= 2 && counts.failures <= counts.calls);
    });
}

/// A bucket is recycled for a new period while a snapshot reads the window: the snapshot
/// never counts the old period's failure as the new period's (the bucket is zeroed before
/// its new epoch is published), and two threads recycling the same bucket at once leave
/// it holding the new period with at most their own calls.
#[test]
fn time_window_snapshot_never_sees_the_old_period_in_a_recycled_bucket() {
    loom_model(3, || {
        let window = Arc::new(TimeWindow::new(1_000, 1));
        window.record(FAIL, 500); // period 0
        let recorders: Vec<_> = (0..2)
            .map(|_| {
                let window = window.clone();
                thread::spawn(move || window.record(OK, 1_500)) // period 1, same bucket
            })
            .collect();
        let counts = window.counts(1_500);
        assert_eq!(counts.failures, 0, "period 0's failure read as period 1's");
        assert!(counts.calls <= 2);
        let recorded = recorders
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|r| *r == Recorded::Changed)
            .count() as u64;
        let counts = window.counts(1_500);
        assert_eq!(counts.failures, 0);
        assert_eq!(
            counts.calls, recorded,
            "a call counted that was dropped, or lost"
        );
    });
}
