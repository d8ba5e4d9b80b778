//! The archive's order, confinement and validation.

use super::*;

fn files() -> Vec<UploadFile> {
    vec![
        ("cert.pem".into(), b"CERT".to_vec(), 0o644),
        ("key.pem".into(), b"KEY".to_vec(), 0o600),
    ]
}

/// (path, type, mode, uid, link target or content)
fn entries(archive: &[u8]) -> Vec<(String, EntryType, u32, u64, String)> {
    let mut archive = tar::Archive::new(archive);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let detail = match entry.link_name().unwrap() {
            Some(target) => target.to_string_lossy().into_owned(),
            None => {
                let mut s = String::new();
                io::Read::read_to_string(&mut entry, &mut s).unwrap();
                s
            }
        };
        let kind = header.entry_type();
        out.push((
            path,
            kind,
            header.mode().unwrap(),
            header.uid().unwrap(),
            detail,
        ));
    }
    out
}

#[test]
fn the_archive_writes_the_slot_before_swapping_data() {
    let owner = Owner {
        uid: 1000,
        gid: 1000,
        mtime: 1,
    };
    let steps = swap_steps(&["cert.pem", "key.pem"], Some(0), |n| n != "cert.pem");
    let archive = build_archive("/run/certdock", &steps, &files(), owner, "v2").unwrap();
    let got = entries(&archive);
    let paths: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "run/certdock/..certdock-b",
            "run/certdock/..certdock-b",
            "run/certdock/..certdock-b/cert.pem",
            "run/certdock/..certdock-b/key.pem",
            "run/certdock/..certdock-b/.version",
            "run/certdock/..data",
            "run/certdock/cert.pem",
        ]
    );
    assert_eq!(got[0].1, EntryType::Regular);
    assert_eq!((got[1].1, got[1].2), (EntryType::Directory, 0o755));
    assert_eq!(
        (got[3].2, got[3].3, got[3].4.as_str()),
        (0o600, 1000, "KEY")
    );
    assert_eq!(got[4].4, "v2\n");
    assert_eq!(
        (got[5].1, got[5].4.as_str()),
        (EntryType::Symlink, "..certdock-b")
    );
    assert_eq!(got[6].4, "..data/cert.pem");
}

#[test]
fn directories_must_be_absolute_and_normalised() {
    for dir in [
        "run/certdock",
        "/",
        "//",
        "/run/../etc",
        "/run/./x",
        "/run//x",
        "",
    ] {
        assert!(validate(dir, &files(), "v1").is_err(), "{dir:?}");
    }
    assert_eq!(
        validate("/run/certdock/", &files(), "v1").unwrap(),
        "/run/certdock"
    );
}

/// Every entry of `archive` lies inside `dir` (relative to `/`, where Docker extracts it),
/// and every symlink points inside `dir` too: no absolute target, no `..` component.
fn assert_confined(archive: &[u8], dir: &str) {
    use std::path::{Component, Path};
    let base = Path::new(dir.trim_start_matches('/'));
    let inside = |p: &Path| {
        p.components().all(|c| matches!(c, Component::Normal(_)))
            && p.starts_with(base)
            && p != base
    };
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        assert!(inside(&path), "{} escapes {dir}", path.display());
        if let Some(target) = entry.link_name().unwrap() {
            let parent = path.parent().unwrap();
            assert!(
                target
                    .components()
                    .all(|c| matches!(c, Component::Normal(_))),
                "{} -> {}",
                path.display(),
                target.display()
            );
            assert!(inside(&parent.join(&target)), "{}", target.display());
        }
    }
}

#[test]
fn hostile_directories_are_refused_or_stay_inside_themselves() {
    let owner = Owner {
        uid: 0,
        gid: 0,
        mtime: 0,
    };
    for dir in [
        "/run/../etc",
        "/../etc",
        "/run/certdock/..",
        "/./x",
        "/a\0b",
        "relative/dir",
        "",
        "/",
        "///",
    ] {
        assert!(validate(dir, &files(), "v1").is_err(), "{dir:?} accepted");
    }
    let long = format!("/{}", "a".repeat(300));
    for dir in [
        "/run/certdock/",
        "/run/...",
        "/run/..data",
        "/é/ü",
        long.as_str(),
    ] {
        let dir = validate(dir, &files(), "v1").unwrap();
        let steps = swap_steps(&["cert.pem", "key.pem"], None, |_| false);
        let archive = build_archive(&dir, &steps, &files(), owner, "v1").unwrap();
        assert_confined(&archive, &dir);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn every_archive_that_validates_writes_and_links_only_inside_its_directory(
        dir in "(/[a-z.]{0,4}){0,5}/?|\\PC{0,20}",
        name in "[a-z.]{1,8}|\\PC{0,8}",
        version in "\\PC{0,20}",
    ) {
        let files = vec![(name.clone(), b"x".to_vec(), 0o600)];
        if let Ok(dir) = validate(&dir, &files, &version) {
            let owner = Owner { uid: 1, gid: 1, mtime: 1 };
            let steps = swap_steps(&[name.as_str()], Some(0), |_| false);
            match build_archive(&dir, &steps, &files, owner, &version) {
                Ok(archive) => assert_confined(&archive, &dir),
                // The tar crate refuses what it cannot encode; nothing is sent then.
                Err(e) => proptest::prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}

#[test]
fn file_names_must_be_plain_and_not_reserved() {
    for name in ["", ".", "..", "a/b", "..data", "..certdock-a", ".version"] {
        let files = vec![(name.to_owned(), Vec::new(), 0o600)];
        assert!(validate("/run/certdock", &files, "v1").is_err(), "{name:?}");
    }
    let bad_mode = vec![("cert.pem".to_owned(), Vec::new(), 0o10000)];
    assert!(validate("/run/certdock", &bad_mode, "v1").is_err());
    assert!(validate("/run/certdock", &files(), "").is_err());
    assert!(validate("/run/certdock", &files(), "v1\nx").is_err());
    assert!(validate("/run/certdock", &[], "v1").is_err());
}
