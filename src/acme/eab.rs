//! External Account Binding (RFC 8555 §7.3.4) with single-use `acme` tokens.

use axum::http::StatusCode;

use super::Acme;
use super::jws::{Jwk, Jws, Signer};
use super::problem::{Problem, Result};
use super::request::{Signed, unix_now};
use crate::store::tokens::RedeemError;

/// Checks the binding of a newAccount, when present or required; returns its key id.
pub fn check(
    acme: &Acme,
    signed: &Signed,
    binding: Option<&serde_json::Value>,
) -> Result<Option<String>> {
    let Some(binding) = binding else {
        if acme.config.eab {
            return Err(Problem::new(
                "externalAccountRequired",
                StatusCode::UNAUTHORIZED,
                "this CA requires externalAccountBinding: a key id and HMAC key from `certdock token create --kind acme`",
            ));
        }
        return Ok(None);
    };
    let bytes = serde_json::to_vec(binding)
        .map_err(|e| Problem::malformed(format!("externalAccountBinding: {e}")))?;
    let inner = Jws::parse(&bytes)?;
    let Signer::Kid(key_id) = &inner.signer else {
        return Err(Problem::malformed(
            "externalAccountBinding must name its key with `kid`",
        ));
    };
    if inner.header.url != signed.jws.header.url {
        return Err(Problem::malformed(
            "externalAccountBinding's url must be the newAccount URL",
        ));
    }
    if inner.header.nonce.is_some() {
        return Err(Problem::malformed(
            "externalAccountBinding must not carry a nonce",
        ));
    }
    let bound: super::jws::RawJwk = inner.payload_json()?;
    if Jwk::from_raw(&bound)? != signed.key {
        return Err(Problem::malformed(
            "externalAccountBinding's payload must be the account's own key",
        ));
    }
    let redeemed = acme
        .ca
        .with_tokens(|t| t.redeem_eab(key_id, |mac| inner.verify_hmac(mac).is_ok(), unix_now()))
        .map_err(Problem::from)?;
    match redeemed {
        Ok(grant) => {
            tracing::info!(token = %grant.id, "ACME external account binding redeemed");
            Ok(Some(grant.id))
        }
        Err(RedeemError::Token(e)) => Err(Problem::unauthorized(format!(
            "externalAccountBinding with key id {:?}: {e}",
            key_id.chars().take(64).collect::<String>()
        ))),
        Err(RedeemError::Io(e)) => Err(Problem::server(format!("token store: {e}"))),
    }
}
