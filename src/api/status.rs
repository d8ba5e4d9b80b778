//! `GET /v1/status` and the data of `GET /ui`: the status rows, the CA chain, agents and events.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ca::CaError;
use crate::ca::local::LocalCa;
use crate::core::renew::BACKDATE;
use crate::store::inventory::Entry;
use crate::store::requester::Requester;
use crate::store::status::{self, StatusEntry};

/// How many events the page and the JSON carry, newest first.
const EVENTS: usize = 50;

/// Everything an admin sees. `certificates` is exactly what `certdock status --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub generated_at: String,
    pub certificates: Vec<StatusEntry>,
    pub ca: Vec<CaView>,
    pub agents: Vec<AgentView>,
    pub events: Vec<EventView>,
    /// The start of each listed certificate's validity (by serial), for the page's time bars.
    #[serde(skip)]
    pub not_before: HashMap<String, i64>,
}

/// One CA certificate peers trust.
#[derive(Debug, Clone, Serialize)]
pub struct CaView {
    /// `root` (current), `previous root` (in the overlap after a root rotation), `cross` (the
    /// current root signed by the previous one), `intermediate` (signing now) or
    /// `previous intermediate` (still trusted).
    pub role: String,
    pub subject: Option<String>,
    pub serial: String,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    pub not_before: String,
    pub not_after: String,
}

/// An enrolled agent: its newest unrevoked identity.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub name: String,
    /// The names it may sign for (empty: whatever the CA policy allows).
    pub scope: Vec<String>,
    pub serial: String,
    /// When its current identity was issued (enrolment or its last renewal).
    pub last_renewal: String,
    pub not_after: String,
}

/// Something that happened to a certificate.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// RFC 3339; for a refusal, when the controller last wrote its status.
    pub at: String,
    /// `issued`, `renewed`, `revoked` or `refused`.
    pub kind: &'static str,
    pub name: String,
    pub serial: Option<String>,
    /// Who asked, or why a container was refused.
    pub detail: String,
}

fn rfc(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// When a certificate was issued: its `not_before` is backdated by [`BACKDATE`].
fn issued_at(e: &Entry) -> String {
    rfc_unix(
        e.record
            .not_before
            .saturating_add(BACKDATE.as_secs() as i64),
    )
}

fn rfc_unix(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .map(rfc)
        .unwrap_or_default()
}

/// Reads the status file, the inventory and the chain (blocking: file locks and reads).
pub fn collect(ca: &LocalCa, now: OffsetDateTime) -> Result<StatusView, CaError> {
    let dir = ca.state_dir();
    let io = |e| CaError::io(&dir.join("status.json"), e);
    let rows = status::read(dir).map_err(io)?.unwrap_or_default();
    let written = std::fs::metadata(dir.join("status.json"))
        .and_then(|m| m.modified())
        .ok()
        .map(|t: SystemTime| OffsetDateTime::from(t));
    let (certificates, not_before, agents, mut events) = ca.with_inventory(|inv| {
        let certificates = status::with_cli_issued(rows, inv, now.unix_timestamp());
        let entries: Vec<&Entry> = inv.entries().collect();
        let not_before = entries
            .iter()
            .map(|e| (e.record.serial.clone(), e.record.not_before))
            .collect();
        (certificates, not_before, agents(&entries), events(&entries))
    })?;
    let refused_at = rfc(written.unwrap_or(now));
    events.extend(
        certificates
            .iter()
            .filter(|c| c.usage.is_none())
            .map(|c| EventView {
                at: refused_at.clone(),
                kind: "refused",
                name: c.name.clone(),
                serial: None,
                detail: format!(
                    "{}: {}",
                    c.container.as_deref().unwrap_or("-"),
                    c.error.as_deref().unwrap_or("refused")
                ),
            }),
    );
    events.sort_by(|a, b| b.at.cmp(&a.at).then(a.name.cmp(&b.name)));
    events.truncate(EVENTS);
    Ok(StatusView {
        generated_at: rfc(now),
        certificates,
        ca: chain(ca)?,
        agents,
        events,
        not_before,
    })
}

fn chain(ca: &LocalCa) -> Result<Vec<CaView>, CaError> {
    Ok(ca
        .chain_facts()?
        .into_iter()
        .map(|(f, role)| CaView {
            role: role.to_string(),
            subject: f.common_name,
            serial: f.serial,
            sha256: hex::encode(f.sha256),
            not_before: rfc(f.not_before),
            not_after: rfc(f.not_after),
        })
        .collect())
}

/// Each agent's newest unrevoked identity (agents' identities carry their scope).
fn agents(entries: &[&Entry]) -> Vec<AgentView> {
    let mut newest: BTreeMap<&str, &Entry> = BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.record.agent_scope.is_some() && e.revoked_at.is_none())
    {
        let slot = newest.entry(e.record.name.as_str()).or_insert(e);
        if e.record.not_before > slot.record.not_before {
            *slot = e;
        }
    }
    newest
        .into_values()
        .map(|e| AgentView {
            name: e.record.name.clone(),
            scope: e
                .record
                .agent_scope
                .iter()
                .flatten()
                .map(ToString::to_string)
                .collect(),
            serial: e.record.serial.clone(),
            last_renewal: issued_at(e),
            not_after: rfc_unix(e.record.not_after),
        })
        .collect()
}

/// Issued, renewed (a renewal over mTLS, or a name that had a certificate before) and revoked.
fn events(entries: &[&Entry]) -> Vec<EventView> {
    let mut by_time: Vec<&&Entry> = entries.iter().collect();
    by_time.sort_by_key(|e| (e.record.not_before, e.record.serial.clone()));
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut out = Vec::new();
    for e in by_time {
        let r = &e.record;
        let renewed =
            matches!(r.requester, Requester::Renewal(_)) || seen.contains(r.name.as_str());
        seen.insert(r.name.as_str());
        out.push(EventView {
            at: issued_at(e),
            kind: if renewed { "renewed" } else { "issued" },
            name: r.name.clone(),
            serial: Some(r.serial.clone()),
            detail: format!("{} ({})", r.requester, r.usage),
        });
        if let Some(at) = e.revoked_at {
            out.push(EventView {
                at: rfc_unix(at),
                kind: "revoked",
                name: r.name.clone(),
                serial: Some(r.serial.clone()),
                detail: String::new(),
            });
        }
    }
    out
}
