//! Retries that cannot cause a retry storm.
//!
//! This module is being built up: so far it holds [`backoff`], the delays between
//! attempts. The retry layer, its budget and server pushback come next.

pub mod backoff;
