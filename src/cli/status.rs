//! `certdock status`: what the controller manages (from `STATE/status.json`) and the
//! certificates issued on demand that are still valid (from the inventory).

use time::OffsetDateTime;

use super::CmdResult;
use super::settings::Settings;
use crate::store::inventory::Inventory;
use crate::store::status::{self, StatusEntry};

pub fn run(s: &Settings, json: bool) -> CmdResult {
    let mut entries = status::read(&s.state_dir)
        .map_err(|e| format!("{}: {e}", s.state_dir.join("status.json").display()))?
        .unwrap_or_default();
    if s.state_dir.join("inventory.log").exists() {
        let inv = Inventory::open(&s.state_dir).map_err(|e| format!("inventory: {e}"))?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        entries = status::with_cli_issued(entries, &inv, now);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    let row = |cells: Vec<String>| {
        let mut line = String::new();
        for ((_, width, _), cell) in StatusEntry::COLUMNS.iter().zip(cells) {
            if *width == 0 {
                line.push_str(&cell);
            } else {
                line.push_str(&format!("{cell:<width$} "));
            }
        }
        println!("{line}");
    };
    row(StatusEntry::COLUMNS
        .iter()
        .map(|c| c.0.to_string())
        .collect());
    for e in &entries {
        row(StatusEntry::COLUMNS.iter().map(|c| (c.2)(e)).collect());
    }
    Ok(())
}
