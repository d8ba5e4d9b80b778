//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the functions the fuzz
//! targets call, so every seed and every past crash is rerun on stable Rust in the normal suite.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("labels", certdock::fuzzing::fuzz_labels),
    ("csr", certdock::fuzzing::fuzz_csr),
    ("names", certdock::fuzzing::fuzz_names),
    ("api_body", certdock::fuzzing::fuzz_api_body),
    ("acme_jws", certdock::acme::fuzz::fuzz_jws),
    ("http_request", certdock::api::fuzz::fuzz_request_head),
];

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read corpus file");
            (p.file_name().unwrap().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_of_every_target_replays_without_a_finding() {
    for (target, run) in TARGETS {
        let files = corpus(target);
        assert!(
            files.len() >= 10,
            "fuzz/corpus/{target} holds {} seeds; keep at least a dozen",
            files.len()
        );
        for (name, bytes) in files {
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "fuzz/corpus/{target}/{name} fails");
        }
    }
}

#[test]
fn the_csr_seeds_include_a_real_openssl_csr_that_parses() {
    let parsed = corpus("csr")
        .into_iter()
        .filter_map(|(_, bytes)| String::from_utf8(bytes).ok())
        .filter_map(|pem| certdock::ca::csr::Csr::parse(&pem).ok())
        .count();
    assert!(parsed >= 2, "only {parsed} seeds are CSRs that parse");
}
