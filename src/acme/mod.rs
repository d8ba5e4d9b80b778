//! The ACME server (RFC 8555): its wire formats and rules.

pub mod jws;
