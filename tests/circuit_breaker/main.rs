//! Behaviour of `seawall::circuit_breaker`, on tokio's paused clock.
#![cfg(feature = "circuit-breaker")]

#[path = "../support/mod.rs"]
mod support;

mod config;
mod eos;
mod handle;
mod probes;
mod readiness;
mod rules;
mod traits;
