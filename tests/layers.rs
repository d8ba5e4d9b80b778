//! The layers of ARCHITECTURE.md hold: every module imports only from layers below it (or from
//! itself). `core` is pure: no tokio, no file system, no Docker, no rcgen.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Layer of each top-level module, lowest first. A module may use `crate::X` only for an `X`
/// of a lower layer, or itself.
const LAYERS: &[(&str, u8)] = &[
    ("core", 0),
    ("store", 1),
    ("docker", 1),
    ("proxy", 1),
    ("metrics", 1),
    ("tls", 1),
    ("ca", 2),
    ("delivery", 2),
    ("authz", 2),
    ("acme", 3),
    ("api", 4),
    ("controller", 4),
    ("cli", 5),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Lines of `path` outside `#[cfg(test)]` modules: test code may reach across layers.
fn non_test_source(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy();
    if name == "tests.rs" || name.ends_with("_tests.rs") || name == "testing.rs" {
        return String::new();
    }
    let text = std::fs::read_to_string(path).expect("read source");
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[test]
fn every_module_imports_only_from_lower_layers() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        // The crate root and the feature-gated fuzzing entry points wire everything together.
        let Some(own) = layer(&top) else { continue };
        let text = non_test_source(f);
        for (i, _) in text.match_indices("crate::") {
            let used: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let Some(theirs) = layer(&used) else { continue };
            if used != top && theirs >= own {
                violations.insert(format!("{} uses crate::{used}", rel.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that go up or sideways:\n{}",
        violations.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn core_is_pure() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for f in files {
        let text = non_test_source(&f);
        for banned in [
            "tokio",
            "std::fs",
            "bollard",
            "rcgen",
            "std::net::Tcp",
            "SystemTime::now",
        ] {
            assert!(
                !text.contains(banned),
                "{} uses {banned}: core takes time and data as arguments and does no I/O",
                f.display()
            );
        }
    }
}
