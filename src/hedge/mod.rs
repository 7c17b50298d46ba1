//! Hedged requests (work in progress).
