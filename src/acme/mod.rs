//! The ACME server (RFC 8555) on the API's port: directory, accounts, orders, challenges, finalize.

pub mod account;
pub mod directory;
pub mod eab;
pub mod finalize;
pub mod fuzz;
pub mod http01;
pub mod issue;
pub mod jws;
pub mod model;
pub mod nonce;
pub mod order;
pub mod problem;
pub mod request;
pub mod revoke;
pub mod slots;
pub mod store;
pub mod validate;

use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodRouter, get, post};

use crate::ca::local::LocalCa;
use crate::metrics::Metrics;

pub use directory::endpoint_label;

/// What the ACME server needs from the settings.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// Port the CA connects to for http-01 (`--acme-http-port`).
    pub http_port: u16,
    /// Port the CA connects to for tls-alpn-01 (`--acme-tls-port`).
    pub tls_port: u16,
    /// `--acme-eab`: new accounts need an External Account Binding.
    pub eab: bool,
    /// `host:port` for URLs when a request has no usable Host header: the first `--api-name`
    /// and the listen port.
    pub fallback_authority: String,
}

/// The ACME server's state, shared by every request and the validation tasks.
pub struct Acme {
    pub ca: Arc<LocalCa>,
    pub metrics: Arc<Metrics>,
    pub store: store::Store,
    pub nonces: nonce::Nonces,
    pub config: AcmeConfig,
    /// The validations running now, bounded per account and in all.
    pub validations: Arc<slots::ValidationSlots>,
}

impl Acme {
    /// Opens `STATE/acme/` and settles orders a crash left half-finalized.
    pub fn open(
        ca: Arc<LocalCa>,
        metrics: Arc<Metrics>,
        config: AcmeConfig,
    ) -> std::io::Result<Arc<Self>> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let store = store::Store::open(ca.state_dir(), now)?;
        let acme = Arc::new(Self {
            ca,
            metrics,
            store,
            nonces: nonce::Nonces::default(),
            config,
            validations: Arc::default(),
        });
        issue::recover(&acme)?;
        Ok(acme)
    }
}

/// A resource read and changed only by signed POSTs (RFC 8555 §6.3: no GET, POST-as-GET);
/// another method gets a problem document too.
fn signed<H, T>(handler: H) -> MethodRouter<Arc<Acme>>
where
    H: Handler<T, Arc<Acme>>,
    T: 'static,
{
    post(handler).fallback(directory::method_not_allowed)
}

/// Every ACME route, with the headers every answer carries; merged into the API's router.
pub fn router<S: Clone + Send + Sync + 'static>(acme: Arc<Acme>) -> Router<S> {
    Router::new()
        .route(
            "/acme/directory",
            get(directory::directory).fallback(directory::method_not_allowed),
        )
        .route(
            "/acme/new-nonce",
            get(directory::new_nonce_get)
                .head(directory::new_nonce_head)
                .fallback(directory::method_not_allowed),
        )
        .route("/acme/new-account", signed(account::new_account))
        .route("/acme/account/{id}", signed(account::account))
        .route("/acme/account/{id}/orders", signed(account::orders))
        .route("/acme/key-change", signed(account::key_change))
        .route("/acme/new-order", signed(order::new_order))
        .route("/acme/order/{id}", signed(order::get_order))
        .route("/acme/order/{id}/finalize", signed(finalize::finalize))
        .route("/acme/authz/{id}", signed(order::get_authz))
        .route("/acme/chall/{id}/{kind}", signed(order::challenge))
        .route("/acme/cert/{id}", signed(finalize::certificate))
        .route("/acme/revoke-cert", signed(revoke::revoke_cert))
        .route(
            "/acme/renewal-info/{id}",
            get(revoke::renewal_info).fallback(directory::method_not_allowed),
        )
        .route(
            "/acme/{*rest}",
            get(directory::unknown).post(directory::unknown),
        )
        .layer(axum::middleware::from_fn_with_state(
            acme.clone(),
            directory::common_headers,
        ))
        .with_state(acme)
}

#[cfg(test)]
mod tests;
