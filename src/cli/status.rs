//! `certdock status`: what the controller manages (from `STATE/status.json`) and the
//! certificates issued on demand that are still valid (from the inventory).

use std::collections::HashSet;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::CmdResult;
use super::settings::Settings;
use crate::store::inventory::Inventory;
use crate::store::requester::Requester;
use crate::store::status::{self, StatusEntry};

pub fn run(s: &Settings, json: bool) -> CmdResult {
    let mut entries = status::read(&s.state_dir)
        .map_err(|e| format!("{}: {e}", s.state_dir.join("status.json").display()))?
        .unwrap_or_default();
    if s.state_dir.join("inventory.log").exists() {
        let inv = Inventory::open(&s.state_dir).map_err(|e| format!("inventory: {e}"))?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let shown: HashSet<String> = entries.iter().filter_map(|e| e.serial.clone()).collect();
        let mut extra: Vec<StatusEntry> = inv
            .entries()
            .filter(|e| {
                e.record.requester == Requester::Cli
                    && e.revoked_at.is_none()
                    && e.record.not_after > now
            })
            .filter(|e| !shown.contains(&e.record.serial))
            .map(|e| StatusEntry {
                name: e.record.name.clone(),
                container: None,
                sans: e.record.sans.iter().map(ToString::to_string).collect(),
                usage: e.record.usage.to_string(),
                serial: Some(e.record.serial.clone()),
                not_after: OffsetDateTime::from_unix_timestamp(e.record.not_after)
                    .ok()
                    .and_then(|t| t.format(&Rfc3339).ok()),
                next_renewal: None,
                error: None,
            })
            .collect();
        extra.sort_by(|a, b| (&a.name, &a.not_after).cmp(&(&b.name, &b.not_after)));
        entries.extend(extra);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<24} {:<14} {:<22} {:<22} ERROR / SANS",
        "NAME", "CONTAINER", "USAGE", "NOT AFTER", "NEXT RENEWAL"
    );
    for e in &entries {
        println!(
            "{:<24} {:<24} {:<14} {:<22} {:<22} {}",
            e.name,
            e.container.as_deref().unwrap_or("-"),
            e.usage,
            e.not_after.as_deref().unwrap_or("-"),
            e.next_renewal.as_deref().unwrap_or("-"),
            e.error.clone().unwrap_or_else(|| e.sans.join(","))
        );
    }
    Ok(())
}
