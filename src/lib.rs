//! certdock: an internal certificate authority and a Docker-label-driven mTLS controller.
#![forbid(unsafe_code)]

pub mod core;
pub mod docker;
pub mod store;
