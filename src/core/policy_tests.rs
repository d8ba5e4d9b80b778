use super::*;

fn sans(names: &[&str]) -> Vec<San> {
    names.iter().map(|n| San::parse(n).unwrap()).collect()
}

#[test]
fn empty_allow_list_allows_any_name() {
    assert!(
        NamePolicy::default()
            .check(&sans(&["anything.example", "10.0.0.1"]))
            .is_ok()
    );
}

#[test]
fn allow_list_refusal_names_the_name_and_the_rule() {
    let p = NamePolicy {
        allow: NameRule::parse_list("internal,10.0.0.0/8").unwrap(),
        ..Default::default()
    };
    assert!(p.check(&sans(&["web.internal", "10.1.2.3"])).is_ok());
    let err = p.check(&sans(&["web.example.com"])).unwrap_err();
    assert!(err.to_string().contains("web.example.com"));
    assert!(
        err.to_string()
            .contains("--allow-domain internal,10.0.0.0/8")
    );
    assert!(p.check(&sans(&["192.168.1.1"])).is_err());
    assert!(p.check(&sans(&["notinternal"])).is_err());
}

#[test]
fn deny_wins_over_allow() {
    let p = NamePolicy {
        allow: NameRule::parse_list("internal").unwrap(),
        deny: NameRule::parse_list("secret.internal").unwrap(),
        ..Default::default()
    };
    assert!(matches!(
        p.check(&sans(&["db.secret.internal"])),
        Err(PolicyError::Denied { .. })
    ));
}

#[test]
fn wildcards_need_the_switch() {
    let mut p = NamePolicy::default();
    assert!(matches!(
        p.check(&sans(&["*.apps.internal"])),
        Err(PolicyError::WildcardRefused { .. })
    ));
    p.allow_wildcards = true;
    assert!(p.check(&sans(&["*.apps.internal"])).is_ok());
}

#[test]
fn certdocks_internal_identity_is_refused_to_everyone_but_certdock() {
    let policy = NamePolicy {
        allow_wildcards: true,
        ..Default::default()
    };
    for name in ["traefik.certdock", "TRAEFIK.Certdock."] {
        let e = policy.check(&sans(&[name])).unwrap_err();
        assert!(matches!(e, PolicyError::Reserved { .. }), "{name}: {e}");
    }
    assert!(
        policy
            .for_ca_itself()
            .check(&sans(&["traefik.certdock"]))
            .is_ok()
    );
    assert!(
        policy
            .narrowed(&[])
            .check(&sans(&["traefik.certdock"]))
            .is_err()
    );
}

#[test]
fn api_names_are_reserved_also_against_covering_wildcards() {
    let p = NamePolicy {
        reserved: sans(&["ca.example.net"]),
        allow_wildcards: true,
        ..Default::default()
    };
    assert!(matches!(
        p.check(&sans(&["ca.example.net"])),
        Err(PolicyError::Reserved { .. })
    ));
    assert!(matches!(
        p.check(&sans(&["*.example.net"])),
        Err(PolicyError::Reserved { .. })
    ));
    assert!(p.check(&sans(&["*.other.example.net"])).is_ok());
    assert!(p.for_ca_itself().check(&sans(&["ca.example.net"])).is_ok());
}

#[test]
fn certdocks_own_names_are_exempt_from_allow_and_deny_but_not_from_the_wildcard_switch() {
    let p = NamePolicy {
        allow: NameRule::parse_list("internal").unwrap(),
        deny: NameRule::parse_list("vm").unwrap(),
        ..Default::default()
    };
    assert!(p.check(&sans(&["vm"])).is_err());
    assert!(p.for_ca_itself().check(&sans(&["vm", "10.0.0.1"])).is_ok());
    assert!(matches!(
        p.for_ca_itself().check(&sans(&["*.apps.vm"])),
        Err(PolicyError::WildcardRefused { .. })
    ));
}

#[test]
fn a_suffix_rule_is_kept_in_the_plain_form_it_prints_in() {
    for written in ["x.com", ".x.com", "*.x.com", ".*.x.com", "X.COM."] {
        let rule = NameRule::parse(written).unwrap();
        assert_eq!(rule.to_string(), "x.com", "{written}");
        assert_eq!(NameRule::parse(&rule.to_string()).unwrap(), rule);
    }
}

#[test]
fn a_wildcard_that_covers_a_denied_name_is_denied() {
    let p = NamePolicy {
        allow: NameRule::parse_list("internal").unwrap(),
        deny: NameRule::parse_list("secret.apps.internal").unwrap(),
        allow_wildcards: true,
        ..Default::default()
    };
    for name in [
        "*.apps.internal",
        "*.secret.apps.internal",
        "secret.apps.internal",
    ] {
        assert!(
            matches!(p.check(&sans(&[name])), Err(PolicyError::Denied { .. })),
            "{name}"
        );
    }
    assert!(p.check(&sans(&["*.web.internal", "web.internal"])).is_ok());
}

#[test]
fn an_ipv4_mapped_ipv6_address_is_the_same_address_to_deny_and_reserved() {
    let p = NamePolicy {
        deny: NameRule::parse_list("10.9.0.0/16,::ffff:172.16.0.0/108").unwrap(),
        reserved: sans(&["192.0.2.1"]),
        ..Default::default()
    };
    for ip in ["::ffff:10.9.0.1", "10.9.0.1", "172.16.0.1"] {
        assert!(
            matches!(p.check(&sans(&[ip])), Err(PolicyError::Denied { .. })),
            "{ip}"
        );
    }
    assert!(matches!(
        p.check(&sans(&["::ffff:192.0.2.1"])),
        Err(PolicyError::Reserved { .. })
    ));
    assert!(p.check(&sans(&["::ffff:10.8.0.1", "10.8.0.1"])).is_ok());
}

#[test]
fn a_scope_never_widens_the_policy() {
    let p = NamePolicy {
        allow: NameRule::parse_list("internal").unwrap(),
        ..Default::default()
    };
    let scoped = p.narrowed(&NameRule::parse_list("example.com").unwrap());
    assert!(scoped.check(&sans(&["web.internal"])).is_err());
    assert!(scoped.check(&sans(&["web.example.com"])).is_err());
    let scoped = p.narrowed(&NameRule::parse_list("team.internal").unwrap());
    assert!(scoped.check(&sans(&["a.team.internal"])).is_ok());
    assert!(scoped.check(&sans(&["b.other.internal"])).is_err());
}

#[test]
fn a_scope_wholly_outside_the_policy_refuses_everything_and_says_why() {
    let p = NamePolicy {
        allow: NameRule::parse_list("internal").unwrap(),
        ..Default::default()
    };
    let scope = NameRule::parse_list("example.com,team.internal,10.0.0.0/8").unwrap();
    let outside: Vec<String> = p
        .outside_allow(&scope)
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(outside, ["example.com", "10.0.0.0/8"]);
    assert!(NamePolicy::default().outside_allow(&scope).is_empty());
    let scoped = p.narrowed(&NameRule::parse_list("example.com").unwrap());
    // Even the one address the refusing allow list holds.
    for name in ["web.example.com", "255.255.255.255"] {
        let e = scoped.check(&sans(&[name])).unwrap_err();
        assert!(matches!(e, PolicyError::ScopeOutsidePolicy { .. }), "{e}");
        assert!(!e.to_string().contains("255.255.255.255/32"), "{e}");
    }
}

#[test]
fn ttl_out_of_bounds_is_refused_not_clamped() {
    let t = TtlPolicy::default();
    assert_eq!(t.resolve_str(None).unwrap(), Duration::from_secs(86400));
    assert_eq!(
        t.resolve_str(Some("90m")).unwrap(),
        Duration::from_secs(5400)
    );
    let e = t.resolve_str(Some("banana")).unwrap_err();
    assert!(e.to_string().contains("banana"), "{e}");
    assert!(matches!(
        t.resolve_str(Some("400d")),
        Err(TtlError::TooLong { .. })
    ));
    assert!(matches!(
        t.resolve_str(Some("1m")),
        Err(TtlError::TooShort { .. })
    ));
}
