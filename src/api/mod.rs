//! The HTTPS API on `--listen` (SPEC.md "HTTPS API on :8443"), used by `serve` and `run`; an agent's forward-auth listener.

pub mod agent;
pub mod agent_feed;
pub mod conns;
pub mod error;
pub mod forward_auth;
pub mod fuzz;
pub mod handlers;
pub mod limits;
mod linger;
mod page;
pub(crate) mod served;
pub mod server;
pub mod session;
pub mod status;
pub mod tls;
mod ui;

pub use error::ApiError;
pub use handlers::{BODY_LIMIT, PeerCert};
pub use limits::Limits;
pub use server::{ApiConfig, ApiServer, ServeError, run_api};
