//! Client-side adaptive throttling (work in progress).

pub mod error;
