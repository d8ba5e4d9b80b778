//! `STATE/status.json`: the controller's view of every managed certificate, published for
//! `certdock status` (which runs as another process).

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::inventory::Inventory;
use super::requester::Requester;
use crate::core::names::{San, Usage};

/// One managed certificate (or one container whose labels were refused). The JSON field names
/// and formats are the `certdock status --json` contract.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StatusEntry {
    pub name: String,
    /// Container name, or null for certificates not tied to a container.
    pub container: Option<String>,
    pub sans: Vec<San>,
    /// `""` in JSON for a refused container (no certificate, so no usage).
    #[serde(with = "usage_or_empty")]
    pub usage: Option<Usage>,
    pub serial: Option<String>,
    /// RFC 3339, whole seconds.
    #[serde(with = "rfc3339_seconds")]
    pub not_after: Option<OffsetDateTime>,
    /// RFC 3339, whole seconds.
    #[serde(with = "rfc3339_seconds")]
    pub next_renewal: Option<OffsetDateTime>,
    /// The last error for this certificate or container, null when none.
    pub error: Option<String>,
    /// `certdock.groups` bound to the certificate (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// `certdock.allow`, as written (absent when the identity has no allow list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<String>,
    /// The Traefik middleware that enforces `allow`, as routers name it (`…@file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middleware: Option<String>,
    /// RFC 3339: when this certificate was revoked (by its serial, a certificate it was
    /// renewed from, or its identity); absent while it is not.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_seconds"
    )]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A text-table column: header, width, cell.
pub type Column = (&'static str, usize, fn(&StatusEntry) -> String);

impl StatusEntry {
    /// The columns of `certdock status` (the last one unpadded): a new column goes here.
    pub const COLUMNS: [Column; 7] = [
        ("NAME", 24, |e| e.name.clone()),
        ("CONTAINER", 24, |e| {
            e.container.clone().unwrap_or("-".into())
        }),
        ("USAGE", 14, |e| {
            e.usage.map(|u| u.to_string()).unwrap_or_default()
        }),
        ("NOT AFTER", 22, |e| show_time(e.not_after)),
        ("NEXT RENEWAL", 22, |e| show_time(e.next_renewal)),
        ("MIDDLEWARE", 26, |e| {
            e.middleware.clone().unwrap_or_else(|| "-".into())
        }),
        ("ERROR / SANS", 0, |e| {
            let revoked = e
                .revoked_at
                .map(|t| format!("REVOKED at {}", show_time(Some(t))));
            e.error.clone().or(revoked).unwrap_or_else(|| {
                let sans: Vec<String> = e.sans.iter().map(ToString::to_string).collect();
                sans.join(",")
            })
        }),
    ];
}

fn show_time(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| rfc3339_seconds::format(t).ok())
        .unwrap_or_else(|| "-".into())
}

const FILE: &str = "status.json";

pub fn write(state_dir: &Path, entries: &[StatusEntry]) -> io::Result<bool> {
    super::atomic::write_json(&state_dir.join(FILE), entries)
}

/// `None` when no controller has ever written a status.
pub fn read(state_dir: &Path) -> io::Result<Option<Vec<StatusEntry>>> {
    super::atomic::read_json(&state_dir.join(FILE))
}

/// What `certdock status --json` prints (and `GET /v1/status` carries): the controller's
/// entries, then the unexpired certificates `certdock issue` made that no entry shows, by
/// name and expiry; each with `revoked_at` when the inventory lists it as revoked.
pub fn with_cli_issued(
    mut entries: Vec<StatusEntry>,
    inv: &Inventory,
    now: i64,
) -> Vec<StatusEntry> {
    let shown: std::collections::HashSet<String> =
        entries.iter().filter_map(|e| e.serial.clone()).collect();
    let mut extra: Vec<StatusEntry> = inv
        .entries()
        // Revoked ones too, until they expire: their `revoked_at` says so.
        .filter(|e| e.record.requester == Requester::Cli && e.record.not_after > now)
        .filter(|e| !shown.contains(&e.record.serial))
        .map(|e| StatusEntry {
            name: e.record.name.clone(),
            container: None,
            sans: e.record.sans.clone(),
            usage: Some(e.record.usage),
            serial: Some(e.record.serial.clone()),
            not_after: OffsetDateTime::from_unix_timestamp(e.record.not_after).ok(),
            next_renewal: None,
            error: None,
            groups: e.record.groups.iter().map(ToString::to_string).collect(),
            allow: None,
            middleware: None,
            revoked_at: None,
        })
        .collect();
    extra.sort_by(|a, b| (&a.name, &a.not_after).cmp(&(&b.name, &b.not_after)));
    entries.extend(extra);
    // A revocation shows on the controller's row until the controller replaces the certificate.
    for e in &mut entries {
        e.revoked_at = e
            .serial
            .as_deref()
            .and_then(|s| inv.get(s))
            .and_then(|i| i.revoked_at)
            .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok());
    }
    entries
}

mod usage_or_empty {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::core::names::Usage;

    pub fn serialize<S: Serializer>(u: &Option<Usage>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&u.map(|u| u.to_string()).unwrap_or_default())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Usage>, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "" => Ok(None),
            "none" => Ok(Some(Usage {
                server: false,
                client: false,
            })),
            other => Usage::parse(other)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

mod rfc3339_seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    /// Whole seconds: sub-second digits would only make the file churn.
    pub fn format(t: OffsetDateTime) -> Result<String, time::error::Format> {
        t.replace_nanosecond(0).unwrap_or(t).format(&Rfc3339)
    }

    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t.map(format).transpose() {
            Ok(Some(text)) => s.serialize_some(&text),
            Ok(None) => s.serialize_none(),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status.json as the previous release wrote it (all strings).
    const OLD: &str = r#"[
  {
    "name": "web",
    "container": "web-1",
    "sans": [
      "web",
      "10.0.0.7"
    ],
    "usage": "server,client",
    "serial": "4f2a",
    "not_after": "2026-11-30T19:00:00Z",
    "next_renewal": "2026-11-30T11:00:00Z",
    "error": null
  },
  {
    "name": "bad",
    "container": "bad-1",
    "sans": [],
    "usage": "",
    "serial": null,
    "not_after": null,
    "next_renewal": null,
    "error": "label certdock.ttl: 1x is not a duration"
  }
]"#;

    #[test]
    fn a_status_of_the_previous_release_reads_and_writes_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), OLD).unwrap();
        let entries = read(dir.path()).unwrap().unwrap();
        assert_eq!(entries[0].usage, Some(Usage::BOTH));
        assert_eq!(
            entries[0].not_after.map(OffsetDateTime::unix_timestamp),
            Some(1_796_065_200)
        );
        assert_eq!(entries[0].sans[1], San::parse("10.0.0.7").unwrap());
        assert_eq!(entries[1].usage, None);
        assert_eq!(serde_json::to_string_pretty(&entries).unwrap(), OLD);
    }

    #[test]
    fn times_are_written_in_whole_seconds() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_796_065_200_123_456_789).unwrap();
        let e = StatusEntry {
            name: "web".into(),
            usage: Some(Usage::CLIENT),
            not_after: Some(t),
            ..Default::default()
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["not_after"], "2026-11-30T19:00:00Z");
        assert_eq!(json["next_renewal"], serde_json::Value::Null);
        assert_eq!(json["usage"], "client");
        let cells: Vec<String> = StatusEntry::COLUMNS.iter().map(|c| (c.2)(&e)).collect();
        assert_eq!(
            cells,
            ["web", "-", "client", "2026-11-30T19:00:00Z", "-", "-", ""]
        );
    }
}
