//! Adaptive concurrency limits (being written).
