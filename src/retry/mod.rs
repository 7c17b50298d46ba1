//! Retries that cannot cause a retry storm.
//!
//! This module is being built up: so far it holds [`backoff`], the delays between
//! attempts, and [`budget`], the [`RetryBudget`](budget::RetryBudget) that bounds how
//! many retries a client may send. The retry layer that uses them comes next.

pub mod backoff;
pub mod budget;
