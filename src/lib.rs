//! certdock: an internal certificate authority and a Docker-label-driven mTLS controller.
#![forbid(unsafe_code)]

pub mod acme;
pub mod api;
pub mod authz;
pub mod ca;
pub mod cli;
pub mod controller;
pub mod core;
pub mod delivery;
pub mod docker;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod proxy;
pub mod store;
pub mod tls;
