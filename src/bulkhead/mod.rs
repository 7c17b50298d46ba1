//! Bound how many calls may be in flight to a downstream at once.
//!
//! (Being written: the layer lands in the next commits.)

pub mod adaptive;
pub mod error;
