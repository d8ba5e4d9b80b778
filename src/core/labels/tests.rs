use super::*;
use crate::core::container::ContainerState;
use crate::core::policy::NameRule;

pub(super) fn container(labels: &[(&str, &str)]) -> ContainerInfo {
    ContainerInfo {
        id: "0123456789ab".into(),
        name: "my_app-1".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        state: ContainerState::Running,
        networks: vec![],
    }
}

pub(super) fn parse_with(
    labels: &[(&str, &str)],
    names: &NamePolicy,
) -> Result<Option<CertSpec>, LabelError> {
    let ttls = TtlPolicy::default();
    let ctx = LabelContext {
        prefix: "certdock",
        names,
        ttls: &ttls,
        proxy_network_configured: true,
        forward_auth: true,
    };
    parse(&container(labels), &ctx)
}

pub(super) fn spec(labels: &[(&str, &str)]) -> CertSpec {
    match parse_with(labels, &NamePolicy::default()) {
        Ok(Some(s)) => s,
        other => panic!("expected a spec for {labels:?}, got {other:?}"),
    }
}

pub(super) fn error(labels: &[(&str, &str)]) -> LabelError {
    error_with(labels, &NamePolicy::default())
}

pub(super) fn error_with(labels: &[(&str, &str)], names: &NamePolicy) -> LabelError {
    match parse_with(labels, names) {
        Err(e) => e,
        other => panic!("expected an error for {labels:?}, got {other:?}"),
    }
}

pub(super) fn sans(names: &[&str]) -> Vec<San> {
    names
        .iter()
        .map(|n| San::parse(n).expect("test SAN"))
        .collect()
}

pub(super) const ON: (&str, &str) = ("certdock.enable", "true");

#[test]
fn containers_without_enable_or_with_enable_false_are_ignored() {
    assert_eq!(parse_with(&[], &NamePolicy::default()), Ok(None));
    assert_eq!(
        parse_with(&[("certdock.enable", "FALSE")], &NamePolicy::default()),
        Ok(None)
    );
    // Typos are reported only for containers that opted in.
    assert_eq!(
        parse_with(
            &[("certdock.enable", "false"), ("certdock.ttll", "1h")],
            &NamePolicy::default()
        ),
        Ok(None)
    );
}

#[test]
fn defaults_follow_the_spec() {
    let s = spec(&[ON]);
    assert_eq!(s.name.as_str(), "my-app-1");
    assert_eq!(s.sans, sans(&["my-app-1"]));
    assert_eq!(s.usage, Usage::BOTH);
    assert_eq!(s.ttl, Duration::from_secs(24 * 3600));
    assert_eq!(s.delivery, Delivery::Container);
    assert_eq!(s.path.as_str(), "/run/certdock");
    assert_eq!(s.owner, Owner { uid: 0, gid: 0 });
    assert_eq!(s.reload, None);
    assert!(s.network, "defaults to proxy_network_configured");
    assert!(!s.traefik_hosts);
}

#[test]
fn the_compose_service_name_wins_over_the_container_name_and_loses_its_underscores() {
    let s = spec(&[ON, ("com.docker.compose.service", "Web_Front")]);
    assert_eq!(s.name.as_str(), "web-front");
}

#[test]
fn an_explicit_name_is_never_rewritten() {
    let e = error(&[ON, ("certdock.name", "my_app")]);
    assert_eq!(e.label, "certdock.name");
    assert_eq!(e.value, "my_app");
}

#[test]
fn network_defaults_to_false_without_a_proxy_network() {
    let ttls = TtlPolicy::default();
    let names = NamePolicy::default();
    let ctx = LabelContext {
        prefix: "certdock",
        names: &names,
        ttls: &ttls,
        proxy_network_configured: false,
        forward_auth: true,
    };
    let s = parse(&container(&[ON]), &ctx)
        .expect("valid")
        .expect("enabled");
    assert!(!s.network);
}

#[test]
fn every_label_is_read_when_valid() {
    let s = spec(&[
        ("certdock.enable", " True "),
        ("certdock.name", "API.internal"),
        ("certdock.sans", "api, 10.0.0.7, [::1], api.internal,"),
        ("certdock.usage", "server"),
        ("certdock.ttl", "90m"),
        ("certdock.delivery", "Volume"),
        ("certdock.path", "/etc/ssl/certdock/"),
        ("certdock.owner", "1000:4294967295"),
        ("certdock.reload", "hup"),
        ("certdock.network", "false"),
        ("certdock.traefik.hosts", "true"),
        ("traefik.http.routers.api.rule", "Host(`api.example.com`)"),
    ]);
    assert_eq!(s.name.as_str(), "api.internal");
    assert_eq!(
        s.sans,
        sans(&["api.internal", "api", "10.0.0.7", "::1", "api.example.com"])
    );
    assert_eq!(s.usage, Usage::SERVER);
    assert_eq!(s.ttl, Duration::from_secs(90 * 60));
    assert_eq!(s.delivery, Delivery::Volume);
    assert_eq!(s.path.as_str(), "/etc/ssl/certdock");
    assert_eq!(
        s.owner,
        Owner {
            uid: 1000,
            gid: u32::MAX
        }
    );
    assert_eq!(s.reload, Some(Reload::Signal(Signal::Hup)));
    assert!(!s.network);
    assert!(s.traefik_hosts);
}

#[test]
fn each_invalid_label_is_named_in_its_error() {
    let cases: &[(&str, &str, &str)] = &[
        ("certdock.enable", "yes", "`true` or `false`"),
        ("certdock.name", "-web", "not a valid certificate name"),
        ("certdock.name", "", "not a valid certificate name"),
        ("certdock.sans", "ok.internal,bad_name", "'-' and '.'"),
        ("certdock.usage", "peer", "usage"),
        ("certdock.ttl", "banana", "not a duration"),
        ("certdock.ttl", "400d", "maximum"),
        ("certdock.ttl", "1m", "minimum"),
        ("certdock.delivery", "email", "container"),
        ("certdock.path", "run/certdock", "absolute"),
        ("certdock.path", "/", "'/' itself"),
        ("certdock.path", "/run//certdock", "empty components"),
        ("certdock.path", "/run/./certdock", "'..'"),
        ("certdock.path", "/run/my certs", "spaces"),
        ("certdock.path", "/run/\"x\"", "quotes"),
        ("certdock.path", "/proc/self", "/proc"),
        ("certdock.owner", "1000", "uid:gid"),
        ("certdock.owner", "1000:+5", "uid:gid"),
        ("certdock.owner", "-1:0", "uid:gid"),
        ("certdock.owner", "4294967296:0", "uid:gid"),
        ("certdock.owner", "nginx:nginx", "uid:gid"),
        ("certdock.reload", "SIGFOO", "SIGHUP"),
        ("certdock.reload", "1", "restart"),
        ("certdock.network", "1", "`true` or `false`"),
        ("certdock.traefik.hosts", "on", "`true` or `false`"),
        ("certdock.ttll", "1h", "unknown label"),
        ("certdock.traefik", "true", "unknown label"),
    ];
    for (label, value, rule) in cases {
        let e = error(&[ON, (label, value)]);
        assert_eq!(&e.label, label, "{value:?}: {e}");
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("label {label}=")), "{shown}");
        assert!(
            shown.contains(rule),
            "{label}={value:?}: {shown:?} lacks {rule:?}"
        );
    }
}

#[test]
fn the_message_shows_label_value_and_rule() {
    let e = error(&[ON, ("certdock.ttl", "banana")]);
    assert!(
        e.to_string().starts_with("label certdock.ttl=\"banana\": "),
        "{e}"
    );
}

#[test]
fn parent_directory_components_are_refused_in_the_path() {
    for path in [
        "/run/../etc",
        "/../etc",
        "/run/certdock/..",
        "/run/..",
        "/a/b/../../..",
    ] {
        let e = error(&[ON, ("certdock.path", path)]);
        assert_eq!(e.label, "certdock.path", "{path}");
    }
}

#[test]
fn a_long_path_is_refused() {
    let path = format!("/{}", "a".repeat(MAX_PATH_LEN));
    assert_eq!(
        error(&[ON, ("certdock.path", &path)]).label,
        "certdock.path"
    );
}

#[test]
fn a_300_character_name_is_refused_and_truncated_in_the_message() {
    let name = "a".repeat(300);
    let e = error(&[ON, ("certdock.name", &name)]);
    assert_eq!(e.label, "certdock.name");
    assert!(
        e.value.chars().count() <= MAX_SHOWN_VALUE + 1,
        "{}",
        e.value
    );
    assert!(e.to_string().len() < 1000, "{}", e.to_string().len());
}

#[test]
fn a_unicode_name_is_refused() {
    let e = error(&[ON, ("certdock.name", "bücher")]);
    assert_eq!(e.label, "certdock.name");
    let e = error(&[ON, ("certdock.sans", "bücher.de")]);
    assert_eq!(e.label, "certdock.sans");
    assert!(e.rule.contains("punycode"), "{e}");
}

#[test]
fn an_unusable_default_name_says_where_it_came_from() {
    let e = error(&[ON, ("com.docker.compose.service", "wéb")]);
    assert_eq!(e.label, "certdock.name");
    assert!(e.rule.contains("Compose service name"), "{e}");
}

#[test]
fn a_name_that_is_not_a_dns_name_is_only_the_cn() {
    let s = spec(&[
        ON,
        ("certdock.name", "web.1"),
        ("certdock.sans", "web.internal"),
    ]);
    assert_eq!(s.name.as_str(), "web.1");
    assert_eq!(s.sans, sans(&["web.internal"]));
    let e = error(&[ON, ("certdock.name", "web.1")]);
    assert_eq!(e.label, "certdock.name");
    assert!(e.rule.contains("certdock.sans"), "{e}");
}

#[test]
fn a_wildcard_needs_the_policy_switch() {
    let labels = [ON, ("certdock.sans", "*.apps.internal")];
    let e = error(&labels);
    assert_eq!(e.label, "certdock.sans");
    assert!(e.rule.contains("wildcard"), "{e}");
    let allowing = NamePolicy {
        allow_wildcards: true,
        ..Default::default()
    };
    let s = parse_with(&labels, &allowing)
        .expect("allowed")
        .expect("enabled");
    assert_eq!(s.sans, sans(&["my-app-1", "*.apps.internal"]));
}

#[test]
fn policy_refusals_blame_the_label_that_brought_the_name() {
    let policy = NamePolicy {
        allow: NameRule::parse_list("internal").expect("rule"),
        ..Default::default()
    };
    let e = error_with(&[ON, ("certdock.name", "web.example.com")], &policy);
    assert_eq!(e.label, "certdock.name");
    assert!(e.rule.contains("--allow-domain internal"), "{e}");

    let e = error_with(
        &[
            ON,
            ("certdock.name", "web.internal"),
            ("certdock.sans", "web.example.com"),
        ],
        &policy,
    );
    assert_eq!(e.label, "certdock.sans");

    let e = error_with(
        &[
            ON,
            ("certdock.name", "web.internal"),
            ("certdock.traefik.hosts", "true"),
            ("traefik.http.routers.web.rule", "Host(`web.example.com`)"),
        ],
        &policy,
    );
    assert_eq!(e.label, "traefik.http.routers.web.rule");
    assert!(e.rule.contains("web.example.com"), "{e}");
}

#[test]
fn reserved_api_names_are_refused() {
    let policy = NamePolicy {
        reserved: sans(&["ca.example.net"]),
        ..Default::default()
    };
    let e = error_with(&[ON, ("certdock.name", "ca.example.net")], &policy);
    assert_eq!(e.label, "certdock.name");
}

#[test]
fn sigkill_and_sigstop_are_refused_as_reload_signals() {
    for v in ["SIGKILL", "kill", "SigStop", "STOP"] {
        let e = error(&[ON, ("certdock.reload", v)]);
        assert_eq!(e.label, "certdock.reload");
        assert!(e.rule.contains("must not kill"), "{e}");
    }
}

#[test]
fn reload_takes_every_allowed_signal_by_either_name_and_restart() {
    for s in Signal::ALL {
        assert_eq!(Reload::parse(s.name()), Ok(Reload::Signal(s)));
        assert_eq!(
            Reload::parse(&s.name()[3..].to_lowercase()),
            Ok(Reload::Signal(s))
        );
    }
    assert_eq!(Reload::parse("Restart"), Ok(Reload::Restart));
    assert_eq!(Signal::Usr1.name(), "SIGUSR1");
}

#[test]
fn sans_are_deduplicated_in_order() {
    let s = spec(&[
        ON,
        ("certdock.name", "web"),
        ("certdock.sans", "WEB,web.internal,web.internal."),
    ]);
    assert_eq!(s.sans, sans(&["web", "web.internal"]));
}

#[test]
fn too_many_sans_are_refused_without_parsing_them_all() {
    let many = vec!["a.internal"; 10_000].join(",");
    assert_eq!(
        error(&[ON, ("certdock.sans", &many)]).label,
        "certdock.sans"
    );
}

#[test]
fn more_names_than_the_policy_allows_in_total_blames_the_sans_label() {
    let extra: Vec<String> = (0..MAX_SANS).map(|i| format!("s{i}.internal")).collect();
    let hosts: Vec<String> = (0..10).map(|i| format!("Host(`h{i}.internal`)")).collect();
    let rule = hosts.join(" || ");
    let e = error(&[
        ON,
        ("certdock.sans", &extra.join(",")),
        ("certdock.traefik.hosts", "true"),
        ("traefik.http.routers.r.rule", &rule),
    ]);
    assert_eq!(e.label, "certdock.sans");
    assert!(e.rule.contains("at most"), "{e}");
}

#[test]
fn a_huge_value_is_refused_and_truncated() {
    let huge = "x".repeat(MAX_VALUE_LEN + 1);
    let e = error(&[ON, ("certdock.usage", &huge)]);
    assert_eq!(e.label, "certdock.usage");
    assert!(e.to_string().len() < 1000);
}

#[test]
fn control_characters_in_values_are_escaped_in_the_message() {
    let e = error(&[ON, ("certdock.ttl", "1h\nlevel=error forged")]);
    assert!(!e.to_string().contains('\n'), "{e}");
}
