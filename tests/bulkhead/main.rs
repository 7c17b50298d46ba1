//! Behaviour of `seawall::bulkhead`.
#![cfg(feature = "bulkhead")]

#[path = "../support/mod.rs"]
mod support;

mod adaptive;
mod basics;
mod config;
mod drops;
mod limit;
mod partitions;
mod waiting;
