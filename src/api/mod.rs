//! The HTTPS API on `--listen` (SPEC.md "HTTPS API on :8443"), used by `serve` and `run`.

pub mod error;
pub mod handlers;
pub mod serve;
pub mod server;
pub mod tls;
pub mod wire;

pub use error::ApiError;
pub use handlers::{BODY_LIMIT, PeerCert};
pub use serve::{maintain_periodically, shutdown_signal};
pub use server::{ApiServer, ServeError, run_api};
