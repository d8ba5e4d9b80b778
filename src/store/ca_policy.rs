//! `STATE/policy.json`: the name policy the CA serving this state directory runs with
//! (`run`/`serve` write it at start), so that `certdock token create`, another process, can
//! refuse a scope the CA would never honour.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::policy::NameRule;

const FILE: &str = "policy.json";

/// The allow and deny lists of the serving CA (`--allow-domain`, `--deny-domain`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedPolicy {
    pub allow: Vec<NameRule>,
    pub deny: Vec<NameRule>,
}

pub fn write(state_dir: &Path, policy: &RecordedPolicy) -> io::Result<bool> {
    super::atomic::write_json(&state_dir.join(FILE), policy)
}

/// `None` when no CA has served this state directory yet (or one of a release before this).
pub fn read(state_dir: &Path) -> io::Result<Option<RecordedPolicy>> {
    super::atomic::read_json(&state_dir.join(FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_policy_reads_back_and_none_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let p = RecordedPolicy {
            allow: vec![NameRule::parse("a.test").unwrap()],
            deny: vec![NameRule::parse("10.0.0.0/8").unwrap()],
        };
        write(dir.path(), &p).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(p));
    }
}
