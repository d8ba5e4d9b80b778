//! Property tests: arbitrary labels, names, rules and CSRs never panic, and whatever is accepted
//! keeps the invariants in `certdock::fuzzing` (the same checks the fuzz targets assert).

use std::collections::BTreeMap;

use certdock::core::container::{ContainerInfo, ContainerState};
use certdock::core::names::{CertName, DnsName, San};
use certdock::core::policy::{NamePolicy, NameRule};
use certdock::fuzzing;
use proptest::prelude::*;

const KEYS: [&str; 14] = [
    "certdock.enable",
    "certdock.name",
    "certdock.sans",
    "certdock.usage",
    "certdock.ttl",
    "certdock.delivery",
    "certdock.path",
    "certdock.owner",
    "certdock.reload",
    "certdock.network",
    "certdock.traefik.hosts",
    "traefik.http.routers.web.rule",
    "traefik.http.routers.api.rule",
    "com.docker.compose.service",
];

/// Pieces that hit the rules: traversal, separators, unicode, wildcards, IPs, reserved names.
fn tricky_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "..",
            "../../etc",
            "/",
            "/run/../etc",
            "\0",
            "é",
            "bücher",
            "xn--bcher-kva",
            "*.",
            "*",
            ".",
            ",",
            ":",
            "`",
            "Host(`",
            "`)",
            " || ",
            "ca.internal",
            "secret.internal",
            "10.9.0.1",
            "::ffff:10.9.0.1",
            "[::1]",
            "true",
            "TRUE",
            "false",
            "server",
            "client",
            "server,client",
            "24h",
            "90m",
            "400d",
            "0",
            "volume",
            "container",
            "none",
            "/run/certdock",
            "1000:1000",
            "SIGHUP",
            "restart",
            "SIGKILL",
            "internal",
            "example.test",
            "web",
            "-",
            "_",
        ])
        .prop_map(str::to_string),
        "[a-z0-9.-]{1,70}",
        "\\PC{0,12}",
    ]
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(tricky_piece(), 0..6).prop_map(|v| v.concat()),
        1 => any::<String>(),
        1 => "[a-z]{250,300}",
    ]
}

fn container() -> impl Strategy<Value = ContainerInfo> {
    (
        proptest::collection::btree_map(
            proptest::sample::select(KEYS.to_vec()),
            label_value(),
            0..10,
        ),
        any::<bool>(),
        "[a-z_/]{0,20}|\\PC{0,10}",
        0..3u8,
    )
        .prop_map(|(labels, enable, name, state)| {
            let mut labels: BTreeMap<String, String> = labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            if enable {
                labels.insert("certdock.enable".into(), "true".into());
            }
            ContainerInfo {
                id: String::new(),
                name,
                labels,
                state: [
                    ContainerState::Created,
                    ContainerState::Running,
                    ContainerState::Stopped,
                ][state as usize],
                networks: Vec::new(),
            }
        })
}

fn containers() -> impl Strategy<Value = Vec<ContainerInfo>> {
    proptest::collection::vec(container(), 1..6).prop_map(|mut cs| {
        for (i, c) in cs.iter_mut().enumerate() {
            c.id = format!("{i:012x}");
        }
        cs
    })
}

/// Names and rules from a small vocabulary, so that scopes, rules and names overlap often.
fn near_name() -> impl Strategy<Value = String> {
    let labels = proptest::sample::select(vec!["a", "b", "internal", "test", "secret", "*", "x-1"]);
    prop_oneof![
        proptest::collection::vec(labels, 1..5).prop_map(|v| v.join(".")),
        proptest::sample::select(vec![
            "10.0.0.0/8",
            "10.9.0.0/16",
            "10.9.1.2",
            "::ffff:10.9.1.2",
            "fd00::/8",
            "fd00::1",
            "192.0.2.0/24",
            "0.0.0.0/0",
            "::/0",
            ".internal",
            "*.internal",
        ])
        .prop_map(str::to_string),
    ]
}

fn policy() -> impl Strategy<Value = NamePolicy> {
    let rules = || {
        proptest::collection::vec(near_name(), 0..4).prop_map(|v| {
            v.iter()
                .filter_map(|r| NameRule::parse(r).ok())
                .collect::<Vec<_>>()
        })
    };
    (
        rules(),
        rules(),
        any::<bool>(),
        proptest::collection::vec(near_name(), 0..2),
    )
        .prop_map(|(allow, deny, allow_wildcards, reserved)| NamePolicy {
            allow,
            deny,
            allow_wildcards,
            reserved: reserved.iter().filter_map(|r| San::parse(r).ok()).collect(),
            for_certdock_itself: false,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_label_maps_are_parsed_and_planned_without_panic_and_keep_every_invariant(
        cs in containers(),
        names in policy(),
    ) {
        fuzzing::check_labels_and_plan(&cs, &names);
        for fixed in &fuzzing::policies() {
            fuzzing::check_labels_and_plan(&cs, fixed);
        }
    }

    #[test]
    fn every_dns_name_that_parses_is_lower_case_ascii_bounded_and_without_empty_labels(
        input in prop_oneof![any::<String>(), "[a-zA-Z0-9.*_-]{0,300}\\.?", near_name()],
    ) {
        if let Ok(d) = DnsName::parse(&input) {
            fuzzing::check_dns_name(&d);
        }
        if let Ok(s) = San::parse(&input) {
            fuzzing::check_san(&s);
        }
        if let Ok(n) = CertName::parse(&input) {
            fuzzing::check_cert_name(&n);
        }
        if let Err(e) = NameRule::parse(&input) {
            prop_assert!(e.to_string().contains(&format!("{input:?}")), "{}", e);
        }
    }

    #[test]
    fn a_narrowed_policy_never_allows_what_the_base_refuses(
        base in policy(),
        scope in proptest::collection::vec(near_name(), 0..4),
        names in proptest::collection::vec(near_name(), 1..6),
    ) {
        let scope: Vec<NameRule> = scope.iter().filter_map(|r| NameRule::parse(r).ok()).collect();
        let sans: Vec<San> = names.iter().filter_map(|n| San::parse(n).ok()).collect();
        fuzzing::check_policy(&base, &sans, &scope);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_as_a_csr_never_panic_and_errors_name_the_csr(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        fuzzing::fuzz_csr(&bytes);
    }

    #[test]
    fn a_signed_csr_with_arbitrary_names_yields_only_valid_names_or_a_csr_error(
        cn in prop_oneof![any::<String>(), near_name(), "[a-z]{60,70}", Just("bücher.de".to_string())],
        sans in proptest::collection::vec(prop_oneof![near_name(), "[ -~]{0,20}"], 0..5),
    ) {
        let text = std::iter::once(cn).chain(sans).collect::<Vec<_>>().join("\n");
        if let Some(pem) = fuzzing::csr_with_names(&text) {
            fuzzing::check_csr_result(certdock::ca::csr::Csr::parse(&pem));
        }
    }
}
