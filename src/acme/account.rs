//! Accounts (RFC 8555 §7.3): creation, update, deactivation, the orders list, key rollover.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::Acme;
use super::jws::{Jwk, Jws, Signer};
use super::model::{Account, AccountStatus, new_id};
use super::problem::{Problem, Result};
use super::request::{
    KeyFrom, Post, Signed, blocking, json_answer, read_as_account, store_err, unix_now, verify,
};
use super::store::Batch;

/// Most contacts an account may list, and the longest one: bounds what a client can store.
const MAX_CONTACTS: usize = 8;
const MAX_CONTACT_LEN: usize = 256;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct NewAccount {
    #[serde(default)]
    contact: Option<Vec<String>>,
    #[serde(default)]
    only_return_existing: bool,
    #[serde(default)]
    #[allow(dead_code)]
    terms_of_service_agreed: Option<bool>,
    #[serde(default)]
    external_account_binding: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct UpdateAccount {
    #[serde(default)]
    contact: Option<Vec<String>>,
    #[serde(default)]
    status: Option<String>,
}

pub fn account_url(base: &str, id: &str) -> String {
    format!("{base}/acme/account/{id}")
}

fn account_json(base: &str, a: &Account) -> serde_json::Value {
    json!({
        "status": a.status,
        "contact": a.contact,
        "orders": format!("{}/orders", account_url(base, &a.id)),
    })
}

fn check_contacts(contact: &[String]) -> Result<()> {
    if contact.len() > MAX_CONTACTS {
        return Err(Problem::malformed(format!(
            "{} contacts; at most {MAX_CONTACTS}",
            contact.len()
        )));
    }
    for c in contact {
        let ok = c.len() <= MAX_CONTACT_LEN
            && c.strip_prefix("mailto:")
                .is_some_and(|m| m.contains('@') && !m.contains(',') && !m.contains('?'));
        if !ok {
            return Err(Problem::new(
                "invalidContact",
                StatusCode::BAD_REQUEST,
                format!(
                    "contact {:?}: only `mailto:` addresses of at most {MAX_CONTACT_LEN} characters",
                    c.chars().take(64).collect::<String>()
                ),
            ));
        }
    }
    Ok(())
}

pub async fn new_account(State(acme): State<Arc<Acme>>, post: Post) -> Result<Response> {
    let signed = verify(&acme, post, KeyFrom::Jwk)?;
    let req: NewAccount = signed.payload()?;
    let thumbprint = signed.key.thumbprint();
    let existing = acme
        .store
        .read(|s| s.account_by_thumbprint(&thumbprint).cloned())
        .map_err(store_err)?;
    if let Some(a) = existing {
        // RFC 8555 §7.3.1: the same key again finds its account, whatever else was sent.
        let url = account_url(&signed.base, &a.id);
        return Ok(json_answer(
            StatusCode::OK,
            &account_json(&signed.base, &a),
            Some(&url),
            &[],
        ));
    }
    if req.only_return_existing {
        return Err(Problem::new(
            "accountDoesNotExist",
            StatusCode::BAD_REQUEST,
            "no account has this key (onlyReturnExisting)",
        ));
    }
    let contact = req.contact.unwrap_or_default();
    check_contacts(&contact)?;
    let eab_kid = super::eab::check(&acme, &signed, req.external_account_binding.as_ref())?;
    let account = Account {
        id: new_id(),
        jwk: signed.key.to_raw(),
        thumbprint,
        contact,
        status: AccountStatus::Valid,
        created_at: unix_now(),
        eab_kid,
    };
    let (a2, acme2) = (account.clone(), acme.clone());
    let winner = blocking(move || {
        // Two newAccounts with one key at once: the second finds the first's account.
        acme2
            .store
            .update(|s| match s.account_by_thumbprint(&a2.thumbprint) {
                Some(a) => (None, a.clone()),
                None => (Some(Batch::default().account(a2.clone())), a2),
            })
            .map_err(store_err)
    })
    .await?;
    let created = winner.id == account.id;
    if created {
        tracing::info!(account = %winner.id, "ACME account created");
    }
    let url = account_url(&signed.base, &winner.id);
    Ok(json_answer(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &account_json(&signed.base, &winner),
        Some(&url),
        &[],
    ))
}

fn own_account<'a>(signed: &'a Signed, id: &str) -> Result<&'a Account> {
    let account = signed.account()?;
    if account.id != id {
        return Err(Problem::unauthorized(
            "an account may only read or change itself",
        ));
    }
    Ok(account)
}

/// POST-as-GET reads the account; `{"contact": …}` updates it; `{"status": "deactivated"}`
/// deactivates it for good (RFC 8555 §7.3.6).
pub async fn account(
    State(acme): State<Arc<Acme>>,
    Path(id): Path<String>,
    post: Post,
) -> Result<Response> {
    let signed = verify(&acme, post, KeyFrom::Kid)?;
    let mut account = own_account(&signed, &id)?.clone();
    if !signed.jws.payload.is_empty() {
        let req: UpdateAccount = signed.payload()?;
        match req.status.as_deref() {
            None => {}
            Some("deactivated") => account.status = AccountStatus::Deactivated,
            Some(other) => {
                return Err(Problem::malformed(format!(
                    "status {other:?}: an account can only be set to \"deactivated\""
                )));
            }
        }
        if let Some(contact) = req.contact {
            check_contacts(&contact)?;
            account.contact = contact;
        }
        let (a2, acme2) = (account.clone(), acme.clone());
        blocking(move || {
            acme2
                .store
                .write(Batch::default().account(a2))
                .map_err(store_err)
        })
        .await?;
        if account.status == AccountStatus::Deactivated {
            tracing::info!(account = %account.id, "ACME account deactivated");
        }
    }
    Ok(account_answer(&signed.base, &account))
}

/// The account's orders (RFC 8555 §7.1.2.1), as URLs.
pub async fn orders(
    State(acme): State<Arc<Acme>>,
    Path(id): Path<String>,
    post: Post,
) -> Result<Response> {
    let signed = read_as_account(&acme, post)?;
    own_account(&signed, &id)?;
    let urls: Vec<String> = acme
        .store
        .read(|s| {
            s.orders_of(&id)
                .iter()
                .map(|o| format!("{}/acme/order/{}", signed.base, o.id))
                .collect()
        })
        .map_err(store_err)?;
    Ok(json_answer(
        StatusCode::OK,
        &json!({ "orders": urls }),
        None,
        &[],
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyChangeInner {
    account: String,
    old_key: super::jws::RawJwk,
}

/// RFC 8555 §7.3.5: the outer JWS by the account's key, the inner by the new key, naming the
/// account and the old key. The new key must not belong to another account.
pub async fn key_change(State(acme): State<Arc<Acme>>, post: Post) -> Result<Response> {
    let signed = verify(&acme, post, KeyFrom::Kid)?;
    let account = signed.account()?.clone();
    let inner = Jws::parse(&signed.jws.payload)?;
    let Signer::Jwk(new_key) = &inner.signer else {
        return Err(Problem::malformed(
            "the inner JWS must carry the new key as `jwk`",
        ));
    };
    inner.verify(new_key)?;
    if inner.header.url != signed.jws.header.url {
        return Err(Problem::malformed(
            "the inner JWS's url must equal the outer's",
        ));
    }
    if inner.header.nonce.is_some() {
        return Err(Problem::malformed("the inner JWS must not carry a nonce"));
    }
    let req: KeyChangeInner = inner.payload_json()?;
    if req.account != account_url(&signed.base, &account.id) {
        return Err(Problem::unauthorized(
            "the inner JWS names another account than the one signing",
        ));
    }
    if Jwk::from_raw(&req.old_key)? != signed.key {
        return Err(Problem::unauthorized(
            "oldKey is not the account's current key",
        ));
    }
    let new_tp = new_key.thumbprint();
    let mut updated = account.clone();
    updated.jwk = new_key.to_raw();
    updated.thumbprint = new_tp.clone();
    let acme2 = acme.clone();
    let taken = blocking(move || {
        acme2
            .store
            .update(|s| match s.account_by_thumbprint(&new_tp) {
                Some(other) => (None, Some(other.id.clone())),
                None => (Some(Batch::default().account(updated)), None),
            })
            .map_err(store_err)
    })
    .await?;
    if let Some(other) = taken {
        let url = account_url(&signed.base, &other);
        let mut resp = axum::response::IntoResponse::into_response(Problem::new(
            "malformed",
            StatusCode::CONFLICT,
            "the new key already belongs to an account",
        ));
        if let Ok(v) = axum::http::HeaderValue::from_str(&url) {
            resp.headers_mut().insert(axum::http::header::LOCATION, v);
        }
        return Ok(resp);
    }
    tracing::info!(account = %account.id, "ACME account key changed");
    let account = acme
        .store
        .read(|s| s.account(&account.id).cloned())
        .map_err(store_err)?
        .unwrap_or(account);
    Ok(account_answer(&signed.base, &account))
}

/// 200 with the account object and its URL in `Location` (RFC 8555 §7.3).
fn account_answer(base: &str, account: &Account) -> Response {
    let url = account_url(base, &account.id);
    json_answer(
        StatusCode::OK,
        &account_json(base, account),
        Some(&url),
        &[],
    )
}
