//! Timeouts and deadlines (work in progress).

pub mod error;
