//! Settings: precedence, defaults and the errors that name the setting.

use super::*;

#[test]
fn a_flag_beats_the_file_and_the_file_beats_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("certdock.toml");
    std::fs::write(
        &file,
        "state_dir = \"/from/file\"\nout_dir = \"/out/file\"\nallow_domain = [\"internal\", \"10.0.0.0/8\"]\n[traefik.options]\nmin_version = \"VersionTLS12\"\n",
    )
    .unwrap();
    let raw = RawSettings {
        config: Some(file),
        state_dir: Some("/from/flag".into()),
        ..Default::default()
    };
    let s = Settings::resolve(raw).unwrap();
    assert_eq!(s.state_dir, PathBuf::from("/from/flag"));
    assert_eq!(s.out_dir, PathBuf::from("/out/file"));
    assert_eq!(s.traefik_out_dir, PathBuf::from("/out/file"));
    assert_eq!(s.names.allow.len(), 2);
    assert_eq!(s.ttls, TtlPolicy::default());
    assert!(s.traefik_options.contains_key("min_version"));
}

#[test]
fn unknown_file_keys_and_bad_values_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "stat_dir = \"/x\"\n").unwrap();
    let e = Settings::resolve(RawSettings {
        config: Some(file),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("stat_dir"), "{e}");
    let e = Settings::resolve(RawSettings {
        max_ttl: Some("forever".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("max_ttl"), "{e}");
    let e = Settings::resolve(RawSettings {
        log_format: Some("xml".into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("log_format"), "{e}");
}
