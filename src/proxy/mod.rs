//! Configuration for the reverse proxies that enforce mTLS with certdock's CA, rendered purely.

pub mod caddy;
pub mod traefik;
