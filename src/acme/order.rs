//! Orders, authorizations and challenges (RFC 8555 §7.4, §7.5): creation, reading, starting validation.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::Acme;
use super::model::{Authz, Challenge, ChallengeType, Identifier, Order, Status, new_id};
use super::problem::{Problem, Result};
use super::request::{
    KeyFrom, Post, Signed, blocking, json_answer, read_as_account, rfc3339, store_err, unix_now,
    verify,
};
use super::store::{Batch, Snapshot};
use crate::core::names::San;

/// How long a client has to validate and finalize an order.
pub const ORDER_LIFETIME: i64 = 3600;
/// How long a challenge POST waits for its validation before answering `processing`.
const INLINE_VALIDATION: Duration = Duration::from_secs(3);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrder {
    identifiers: Vec<Identifier>,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
}

/// The order's status now: while authorizing it follows its authorizations (RFC 8555 §7.1.6).
pub fn order_status(o: &Order, s: &Snapshot<'_>, now: i64) -> Status {
    if let Some(done) = o.finalized {
        return done;
    }
    let statuses: Vec<Status> = o
        .authzs
        .iter()
        .map(|id| {
            s.authz(id)
                .map_or(Status::Invalid, |z| authz_status(z, now))
        })
        .collect();
    if statuses.contains(&Status::Invalid) {
        Status::Invalid
    } else if statuses.iter().all(|st| *st == Status::Valid) {
        if o.expires < now {
            Status::Invalid
        } else {
            Status::Ready
        }
    } else if o.expires < now {
        Status::Invalid
    } else {
        Status::Pending
    }
}

/// A pending authorization past its expiry is invalid (RFC 8555 §7.1.6).
pub fn authz_status(z: &Authz, now: i64) -> Status {
    if z.status == Status::Pending && z.expires < now {
        Status::Invalid
    } else {
        z.status
    }
}

pub fn order_url(base: &str, id: &str) -> String {
    format!("{base}/acme/order/{id}")
}

pub fn order_json(base: &str, o: &Order, s: &Snapshot<'_>, now: i64) -> serde_json::Value {
    let status = order_status(o, s, now);
    let mut v = json!({
        "status": status,
        "expires": rfc3339(o.expires),
        "identifiers": o.identifiers,
        "authorizations": o.authzs.iter().map(|z| format!("{base}/acme/authz/{z}")).collect::<Vec<_>>(),
        "finalize": format!("{}/finalize", order_url(base, &o.id)),
    });
    if status == Status::Valid && o.cert.is_some() {
        v["certificate"] = format!("{base}/acme/cert/{}", o.id).into();
    }
    if let Some(e) = &o.error {
        v["error"] = json!(e);
    }
    v
}

fn challenge_json(base: &str, authz: &str, c: &Challenge) -> serde_json::Value {
    let mut v = json!({
        "type": c.kind.as_str(),
        "url": format!("{base}/acme/chall/{authz}/{}", c.kind.as_str()),
        "status": c.status,
        "token": c.token,
    });
    if let Some(t) = c.validated {
        v["validated"] = rfc3339(t).into();
    }
    if let Some(e) = &c.error {
        v["error"] = json!(e);
    }
    v
}

fn authz_json(base: &str, z: &Authz, now: i64) -> serde_json::Value {
    json!({
        "identifier": z.identifier,
        "status": authz_status(z, now),
        "expires": rfc3339(z.expires),
        "challenges": z.challenges.iter().map(|c| challenge_json(base, &z.id, c)).collect::<Vec<_>>(),
    })
}

/// The requested lifetime from `notAfter`, within the CA's bounds; none means the default.
fn requested_ttl(acme: &Acme, req: &NewOrder, now: i64) -> Result<Option<u64>> {
    if req.not_before.is_some() {
        return Err(Problem::malformed(
            "notBefore is not supported: certificates start now (backdated one minute)",
        ));
    }
    let Some(not_after) = req.not_after.as_deref() else {
        return Ok(None);
    };
    let t = time::OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
        .map_err(|e| Problem::malformed(format!("notAfter {not_after:?}: {e}")))?;
    let secs = u64::try_from(t.unix_timestamp() - now)
        .map_err(|_| Problem::malformed(format!("notAfter {not_after:?} is in the past")))?;
    acme.ca
        .policy()
        .ttls
        .resolve(Some(Duration::from_secs(secs)))
        .map_err(|e| Problem::malformed(format!("notAfter {not_after:?}: {e}")))?;
    Ok(Some(secs))
}

pub async fn new_order(State(acme): State<Arc<Acme>>, post: Post) -> Result<Response> {
    let signed = verify(&acme, post, KeyFrom::Kid)?;
    let account = signed.account()?.clone();
    let req: NewOrder = signed.payload()?;
    let now = unix_now();
    let mut sans: Vec<San> = Vec::new();
    for id in &req.identifiers {
        let san = id.to_san()?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    // The same allow/deny/reserved policy as labels and tokens, before anything is stored.
    acme.ca
        .policy()
        .names
        .check(&sans)
        .map_err(|e| Problem::new("rejectedIdentifier", StatusCode::BAD_REQUEST, e.to_string()))?;
    let ttl_secs = requested_ttl(&acme, &req, now)?;
    let expires = now + ORDER_LIFETIME;
    let authzs: Vec<Authz> = sans
        .iter()
        .map(|san| {
            // tls-alpn-01 for IP addresses needs a reverse-DNS SNI (RFC 8738 §6); certdock offers
            // http-01 only for them.
            let kinds: &[ChallengeType] = match san {
                San::Dns(_) => &[ChallengeType::Http01, ChallengeType::TlsAlpn01],
                San::Ip(_) => &[ChallengeType::Http01],
            };
            Authz {
                id: new_id(),
                account: account.id.clone(),
                identifier: Identifier::from_san(san),
                status: Status::Pending,
                expires,
                challenges: kinds
                    .iter()
                    .map(|k| Challenge {
                        kind: *k,
                        token: new_id(),
                        status: Status::Pending,
                        validated: None,
                        error: None,
                    })
                    .collect(),
            }
        })
        .collect();
    let order = Order {
        id: new_id(),
        account: account.id.clone(),
        identifiers: sans.iter().map(Identifier::from_san).collect(),
        authzs: authzs.iter().map(|z| z.id.clone()).collect(),
        expires,
        ttl_secs,
        finalized: None,
        cert: None,
        error: None,
    };
    let mut batch = Batch::default().order(order.clone());
    for z in authzs {
        batch = batch.authz(z);
    }
    let acme2 = acme.clone();
    blocking(move || acme2.store.write(batch).map_err(store_err)).await?;
    let url = order_url(&signed.base, &order.id);
    let body = acme
        .store
        .read(|s| order_json(&signed.base, &order, s, now))
        .map_err(store_err)?;
    Ok(json_answer(StatusCode::CREATED, &body, Some(&url), &[]))
}

/// An object `find` reads from the store, if it exists and the signing account owns it.
fn owned<T>(
    acme: &Acme,
    signed: &Signed,
    what: &str,
    find: impl FnOnce(&Snapshot<'_>) -> Option<T>,
    owner: impl FnOnce(&T) -> &str,
) -> Result<T> {
    let account = signed.account()?;
    let found = acme
        .store
        .read(find)
        .map_err(store_err)?
        .ok_or_else(|| Problem::not_found(what))?;
    if owner(&found) != account.id {
        return Err(Problem::unauthorized(format!(
            "this {what} belongs to another account"
        )));
    }
    Ok(found)
}

/// What an account reads of its own by POST-as-GET at `…/{id}`.
pub trait OwnResource: Sized {
    /// Its name in a `not found` or `belongs to another account` problem.
    const WHAT: &'static str;
    fn find(store: &Snapshot<'_>, id: &str) -> Option<Self>;
    fn owner(&self) -> &str;
}

impl OwnResource for Order {
    const WHAT: &'static str = "order";
    fn find(store: &Snapshot<'_>, id: &str) -> Option<Self> {
        store.order(id).cloned()
    }
    fn owner(&self) -> &str {
        &self.account
    }
}

impl OwnResource for Authz {
    const WHAT: &'static str = "authorization";
    fn find(store: &Snapshot<'_>, id: &str) -> Option<Self> {
        store.authz(id).cloned()
    }
    fn owner(&self) -> &str {
        &self.account
    }
}

/// The resource of `id` if the signing account owns it.
pub fn owned_by<T: OwnResource>(acme: &Acme, signed: &Signed, id: &str) -> Result<T> {
    owned(acme, signed, T::WHAT, |s| T::find(s, id), T::owner)
}

/// A POST-as-GET by an existing account of one of its own resources, the `{id}` of the path:
/// checked like [`read_as_account`], then found and its owner checked.
pub struct ReadOwn<T> {
    pub signed: Signed,
    pub item: T,
}

impl<T: OwnResource> FromRequest<Arc<Acme>> for ReadOwn<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, acme: &Arc<Acme>) -> Result<Self> {
        let (mut parts, body) = req.into_parts();
        let Path(id) = Path::<String>::from_request_parts(&mut parts, acme)
            .await
            .map_err(|e| Problem::malformed(e.body_text()))?;
        let Ok(post) = Post::from_request(Request::from_parts(parts, body), acme).await;
        let signed = read_as_account(acme, post)?;
        let item = owned_by(acme, &signed, &id)?;
        Ok(Self { signed, item })
    }
}

pub async fn get_order(
    State(acme): State<Arc<Acme>>,
    ReadOwn {
        signed,
        item: order,
    }: ReadOwn<Order>,
) -> Result<Response> {
    let body = acme
        .store
        .read(|s| order_json(&signed.base, &order, s, unix_now()))
        .map_err(store_err)?;
    Ok(json_answer(StatusCode::OK, &body, None, &[]))
}

/// POST-as-GET reads it; `{"status": "deactivated"}` is not offered (RFC 8555 §7.5.2 MAY).
pub async fn get_authz(ReadOwn { signed, item: z }: ReadOwn<Authz>) -> Result<Response> {
    let now = unix_now();
    let body = authz_json(&signed.base, &z, now);
    let mut resp = json_answer(StatusCode::OK, &body, None, &[]);
    if authz_status(&z, now) == Status::Pending {
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    Ok(resp)
}

/// `{}` asks the CA to validate (RFC 8555 §7.5.1); POST-as-GET reads the challenge. Validation
/// runs in the background: the answer says `processing`, the client polls the authorization.
pub async fn challenge(
    State(acme): State<Arc<Acme>>,
    Path((id, kind)): Path<(String, String)>,
    post: Post,
) -> Result<Response> {
    let signed = verify(&acme, post, KeyFrom::Kid)?;
    let kind = ChallengeType::parse(&kind).ok_or_else(|| Problem::not_found("challenge"))?;
    let mut z: Authz = owned_by(&acme, &signed, &id)?;
    let now = unix_now();
    let idx = z
        .challenges
        .iter()
        .position(|c| c.kind == kind)
        .ok_or_else(|| Problem::not_found("challenge"))?;
    let respond = !signed.jws.payload.is_empty();
    if respond {
        let _: serde_json::Value = signed.payload()?;
    }
    // A validation is a connection the CA opens for the client, so they are bounded
    // (`acme::slots`): the slot is taken before the claim, so a refusal (`rateLimited`) changes
    // nothing; it travels with the validation and comes back when that ends, or at once if
    // this POST starts none.
    let startable = |z: &Authz| {
        authz_status(z, now) == Status::Pending
            && z.challenges.iter().all(|c| c.status == Status::Pending)
    };
    let slot = if respond && startable(&z) {
        Some(acme.validations.take(&signed.account()?.id)?)
    } else {
        None
    };
    // Check and claim under the store's lock: of two POSTs at once, one starts the validation.
    // The claim is written but not fsynced: the outcome's fsync covers it, and a client is
    // told `processing` only after a sync (below).
    let started = if let Some(slot) = slot {
        acme.store
            .update_staged(|s| {
                let Some(cur) = s.authz(&z.id) else {
                    return (None, None);
                };
                if !startable(cur) {
                    return (None, None);
                }
                let mut claimed = cur.clone();
                claimed.challenges[idx].status = Status::Processing;
                (Some(Batch::default().authz(claimed.clone())), Some(claimed))
            })
            .map_err(store_err)?
            .map(|claimed| (claimed, slot))
    } else {
        None
    };
    if let Some((claimed, slot)) = started {
        z = claimed;
        let account = signed.account()?.clone();
        let mut task = super::validate::start(acme.clone(), z.id.clone(), kind, account.id, slot);
        // Most validations take milliseconds: answering with the outcome spares the client a
        // polling round (lego waits the Retry-After, 5 s by default, before its first poll).
        // A slow one goes on in the background, watched until its deadline.
        match tokio::time::timeout(INLINE_VALIDATION, &mut task).await {
            Ok(_) => {
                if let Ok(Some(done)) = acme.store.read(|s| s.authz(&z.id).cloned()) {
                    z = done;
                }
            }
            Err(_) => {
                // A second past the validation's own deadline, so that its own reason wins.
                let left = super::validate::TIMEOUT - INLINE_VALIDATION + Duration::from_secs(1);
                tokio::spawn(super::validate::watch(
                    acme.clone(),
                    z.id.clone(),
                    kind,
                    task,
                    left,
                ));
            }
        }
        if z.challenges[idx].status == Status::Processing {
            // The client is about to be told `processing`: make the claim durable first.
            let acme2 = acme.clone();
            blocking(move || acme2.store.sync().map_err(store_err)).await?;
        }
    }
    let up = format!("<{}/acme/authz/{}>;rel=\"up\"", signed.base, z.id);
    let body = challenge_json(&signed.base, &z.id, &z.challenges[idx]);
    let mut resp = json_answer(StatusCode::OK, &body, None, &[up]);
    if z.challenges[idx].status == Status::Processing {
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    Ok(resp)
}
