//! `certdock status`: what the controller manages (from `STATE/status.json`) and the
//! certificates issued on demand that are still valid (from the inventory).

use time::OffsetDateTime;

use super::CmdResult;
use super::settings::Settings;
use crate::ca::authority::{self, Authority};
use crate::ca::facts::CertFacts;
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
    print_ca(s);
    Ok(())
}

/// The CA's own certificates with their role and expiry, when this state directory holds a CA.
fn print_ca(s: &Settings) {
    if !authority::exists(&s.state_dir) {
        return;
    }
    let now = OffsetDateTime::now_utc();
    match Authority::load(&s.state_dir, s.lifetimes(), now) {
        Ok(ca) => {
            println!("\nCA certificates (generation {}):", ca.generation());
            for (c, role) in ca.bundle_certs() {
                let subject = CertFacts::from_der("CA certificate", &c.der)
                    .ok()
                    .and_then(|f| f.common_name)
                    .unwrap_or_default();
                println!("{role:<22} {subject:<40} not after {}", c.not_after);
            }
            if ca.root_in_last_tenth(now) {
                println!("the root is in the last tenth of its life: `certdock ca rotate --root`");
            }
        }
        Err(e) => println!("\nCA: {e}"),
    }
}
