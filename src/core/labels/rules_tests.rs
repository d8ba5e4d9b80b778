//! Label tests, continued: Traefik host rules, another label prefix, arbitrary labels, groups and
//! allow lists.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::tests::{ON, container, error, sans, spec};
use super::*;
use crate::core::container::ContainerState;

#[test]
fn traefik_hosts_come_from_v3_rules_of_every_router() {
    let s = spec(&[
        ON,
        ("certdock.name", "shop"),
        ("certdock.traefik.hosts", "true"),
        (
            "traefik.http.routers.a.rule",
            "Host(`shop.example.com`) || (Host(\"www.shop.example.com\") && PathPrefix(`/api`))",
        ),
        (
            "traefik.http.routers.b.rule",
            "Host(`Admin.Example.com`) && !Host(`evil.example.com`)",
        ),
        (
            "traefik.http.routers.c.rule",
            "HostRegexp(`^.+\\.example\\.com$`) || Path(`/Host(`)",
        ),
        ("traefik.tcp.routers.d.rule", "HostSNI(`tcp.example.com`)"),
    ]);
    assert_eq!(
        s.sans,
        sans(&[
            "shop",
            "shop.example.com",
            "www.shop.example.com",
            "admin.example.com"
        ])
    );
}

#[test]
fn traefik_hosts_come_from_v2_rules_with_several_arguments() {
    let s = spec(&[
        ON,
        ("certdock.name", "shop"),
        ("certdock.traefik.hosts", "true"),
        (
            "traefik.http.routers.web.rule",
            "Host(`a.example.com`, `b.example.com`) && PathPrefix(`/`)",
        ),
        (
            "traefik.http.routers.alt.rule",
            "Host( \"c.example.com\" ,\"a.example.com\" )",
        ),
    ]);
    assert_eq!(
        s.sans,
        sans(&["shop", "c.example.com", "a.example.com", "b.example.com"]),
        "routers are read in label order"
    );
}

#[test]
fn host_rules_under_a_negated_group_are_left_out() {
    let hosts = host_rule::hosts("Host(`a.b`) && !(Host(`x.b`) || Host(`y.b`)) || Host(`z.b`)");
    assert_eq!(hosts, Ok(vec!["a.b".to_string(), "z.b".to_string()]));
}

#[test]
fn malformed_host_rules_are_errors_not_panics() {
    for rule in [
        "Host(`a.b`",
        "Host(`a.b",
        "Host(a.b)",
        "Host()",
        "Host(\"a\\",
        "Host(`é.b`)",
    ] {
        let e = error(&[
            ON,
            ("certdock.traefik.hosts", "true"),
            ("traefik.http.routers.r.rule", rule),
        ]);
        assert_eq!(e.label, "traefik.http.routers.r.rule", "{rule:?}: {e}");
    }
}

#[test]
fn traefik_hosts_without_any_host_rule_is_an_error() {
    let e = error(&[
        ON,
        ("certdock.traefik.hosts", "true"),
        ("traefik.http.routers.r.rule", "PathPrefix(`/`)"),
    ]);
    assert_eq!(e.label, "certdock.traefik.hosts");
    assert!(e.rule.contains("Host()"), "{e}");
}

#[test]
fn traefik_hosts_false_ignores_router_rules() {
    let s = spec(&[ON, ("traefik.http.routers.r.rule", "Host(`x.example.com`)")]);
    assert_eq!(s.sans, sans(&["my-app-1"]));
}

#[test]
fn traefik_hosts_need_a_server_certificate() {
    let e = error(&[
        ON,
        ("certdock.usage", "client"),
        ("certdock.traefik.hosts", "true"),
        ("traefik.http.routers.r.rule", "Host(`x.example.com`)"),
    ]);
    assert_eq!(e.label, "certdock.traefik.hosts");
}

#[test]
fn another_prefix_reads_other_labels() {
    let ttls = TtlPolicy::default();
    let names = NamePolicy::default();
    let ctx = LabelContext {
        prefix: "acme.certs",
        names: &names,
        ttls: &ttls,
        proxy_network_configured: false,
        forward_auth: true,
    };
    let c = container(&[
        ("acme.certs.enable", "true"),
        ("acme.certs.ttl", "2h"),
        ("certdock.ttll", "x"),
    ]);
    let s = parse(&c, &ctx).expect("valid").expect("enabled");
    assert_eq!(s.ttl, Duration::from_secs(7200));
}

fn label_key() -> impl Strategy<Value = String> {
    let known: Vec<String> = KNOWN
        .iter()
        .map(|k| format!("certdock.{k}"))
        .chain([
            "traefik.http.routers.r.rule".to_string(),
            "com.docker.compose.service".to_string(),
        ])
        .collect();
    prop_oneof![
        3 => proptest::sample::select(known),
        1 => "certdock\\.[a-z.]{0,12}",
        1 => any::<String>(),
    ]
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        2 => "[A-Za-z0-9_.,:/`\"()|&! *-]{0,60}",
        1 => Just("true".to_string()),
        1 => "(Host|HostRegexp|!Host)\\([`\"][a-z.]{0,20}[`\"]?(, ?`[a-z.]{1,10}`)?\\)?( \\|\\| | && )?",
    ]
}

proptest! {
    #[test]
    fn arbitrary_label_maps_never_panic(
        mut labels in proptest::collection::btree_map(label_key(), label_value(), 0..12),
        enable in any::<bool>(),
        name in any::<String>(),
    ) {
        if enable {
            labels.insert("certdock.enable".into(), "true".into());
        }
        let c = ContainerInfo {
            id: String::new(),
            name,
            labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
            state: ContainerState::Created,
            networks: vec![],
        };
        let names = NamePolicy::default();
        let ttls = TtlPolicy::default();
        let ctx = LabelContext { prefix: "certdock", names: &names, ttls: &ttls, proxy_network_configured: true, forward_auth: true };
        match parse(&c, &ctx) {
            Ok(Some(spec)) => {
                prop_assert!(!spec.sans.is_empty());
                prop_assert!(spec.sans.len() <= MAX_SANS);
            }
            Ok(None) => {}
            Err(e) => prop_assert!(e.to_string().chars().count() < 800, "{}", e),
        }
    }

    #[test]
    fn host_rule_parsing_never_panics(rule in any::<String>()) {
        let _ = host_rule::hosts(&rule);
    }
}

#[test]
fn groups_and_allow_lists_are_read_and_validated() {
    let s = spec(&[
        ON,
        ("certdock.groups", "web,ops"),
        ("certdock.allow", "frontend,group:ops"),
    ]);
    let groups: Vec<&str> = s.groups.iter().map(|g| g.as_str()).collect();
    assert_eq!(groups, ["ops", "web"]);
    assert_eq!(s.allow.unwrap().to_string(), "frontend,group:ops");
    let plain = spec(&[ON]);
    assert!(plain.groups.is_empty() && plain.allow.is_none());
}

#[test]
fn bad_groups_or_allow_entries_name_their_label() {
    let e = error(&[ON, ("certdock.groups", "web,Ops")]);
    assert_eq!(e.label, "certdock.groups");
    assert!(e.rule.contains("a-z, 0-9 and '-'"), "{e}");
    let e = error(&[ON, ("certdock.allow", "group:")]);
    assert_eq!(e.label, "certdock.allow");
    let e = error(&[ON, ("certdock.allow", " , ")]);
    assert!(e.rule.contains("empty"), "{e}");
    // An allow list guards a server: on a client-only identity it means nothing, so it is refused.
    let e = error(&[
        ON,
        ("certdock.usage", "client"),
        ("certdock.allow", "frontend"),
    ]);
    assert_eq!(e.label, "certdock.allow");
    assert!(e.rule.contains("guards a server"), "{e}");
}
