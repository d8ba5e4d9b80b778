use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use super::*;

/// Reference files beside the repository; a missing file fails the test rather than skipping it.
fn testdata(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/traefik")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reference file {} is missing: {e}", path.display()))
}

fn yaml_to_json(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("not valid YAML ({e}):\n{yaml}"))
}

fn model() -> TraefikModel {
    TraefikModel {
        ca_files: vec!["/certs/ca.pem".into()],
        base_options: TlsOptionsBase {
            min_version: Some("VersionTLS12".into()),
            cipher_suites: vec!["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into()],
            curve_preferences: vec!["CurveP256".into(), "X25519".into()],
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            ..Default::default()
        },
        certificates: vec![CertFiles {
            cert_file: "/certs/certs/shop/fullchain.pem".into(),
            key_file: "/certs/certs/shop/key.pem".into(),
        }],
        transport_client: Some(CertFiles {
            cert_file: "/certs/certs/traefik/fullchain.pem".into(),
            key_file: "/certs/certs/traefik/key.pem".into(),
        }),
        forward_auth: vec![ForwardAuth {
            server: "api".into(),
            address: "https://certdock:8443/v1/forward-auth/api".into(),
        }],
        revision: "0a1b2c3d".into(),
    }
}

fn rendered(m: &TraefikModel) -> Value {
    yaml_to_json(&render(m).expect("renders"))
}

#[test]
fn the_output_validates_against_the_traefik_v3_file_provider_schema() {
    let schema: Value = serde_json::from_str(&testdata("traefik-v3-file-provider.schema.json"))
        .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let minimal = TraefikModel {
        base_options: TlsOptionsBase::default(),
        certificates: vec![],
        transport_client: None,
        forward_auth: vec![],
        ..model()
    };
    for m in [model(), minimal] {
        let doc = rendered(&m);
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    }
}

#[test]
fn client_auth_type_is_one_the_tlsoption_crd_allows() {
    let crd = yaml_to_json(&testdata("traefik.io_tlsoptions.yaml"));
    let allowed = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/clientAuth/properties/clientAuthType/enum")
        .and_then(Value::as_array)
        .expect("the CRD lists the clientAuthType enum");
    let doc = rendered(&model());
    let used = &doc["tls"]["options"]["mTLS"]["clientAuth"]["clientAuthType"];
    assert!(allowed.contains(used), "{used} not in {allowed:?}");
    assert_eq!(used, CLIENT_AUTH_TYPE);
}

#[test]
fn tls_option_keys_are_ones_traefik_knows() {
    let crd = yaml_to_json(&testdata("traefik.io_tlsoptions.yaml"));
    let sample = yaml_to_json(&testdata("traefik-dynamic-sample.yaml"));
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut known = keys(&sample["tls"]["options"]["Options0"]);
    known.extend(keys(
        crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties")
            .expect("CRD spec properties"),
    ));
    let full = TraefikModel {
        base_options: TlsOptionsBase {
            max_version: Some("VersionTLS13".into()),
            prefer_server_cipher_suites: Some(true),
            disable_session_tickets: Some(true),
            sni_strict: Some(true),
            ..model().base_options
        },
        ..model()
    };
    let doc = rendered(&full);
    for name in ["mTLS", "sniStrictDisable"] {
        let used = keys(&doc["tls"]["options"][name]);
        assert!(
            used.is_subset(&known),
            "{name}: {:?} unknown",
            used.difference(&known)
        );
    }
    let transport_keys = keys(&sample["http"]["serversTransports"]["ServersTransport0"]);
    let used = keys(&doc["http"]["serversTransports"]["certdock"]);
    assert!(used.is_subset(&transport_keys), "{used:?}");
    let cert_keys = keys(&sample["tls"]["certificates"][0]);
    assert!(keys(&doc["tls"]["certificates"][0]).is_subset(&cert_keys));
}

#[test]
fn the_mtls_option_requires_client_certificates_from_the_ca() {
    let doc = rendered(&model());
    assert_eq!(
        doc["tls"]["options"]["mTLS"]["clientAuth"],
        serde_json::json!({"caFiles": ["/certs/ca.pem"], "clientAuthType": "RequireAndVerifyClientCert"})
    );
    assert!(
        doc["tls"]["options"]["sniStrictDisable"]
            .get("clientAuth")
            .is_none()
    );
}

#[test]
fn base_options_are_merged_into_both_options() {
    let doc = rendered(&model());
    for name in ["mTLS", "sniStrictDisable"] {
        let o = &doc["tls"]["options"][name];
        assert_eq!(o["minVersion"], "VersionTLS12", "{name}");
        assert_eq!(
            o["cipherSuites"],
            serde_json::json!(["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"])
        );
        assert_eq!(
            o["curvePreferences"],
            serde_json::json!(["CurveP256", "X25519"])
        );
        assert_eq!(o["alpnProtocols"], serde_json::json!(["h2", "http/1.1"]));
    }
}

#[test]
fn sni_strict_disable_says_false_even_when_the_base_sets_it() {
    let mut m = model();
    m.base_options.sni_strict = Some(true);
    let doc = rendered(&m);
    assert_eq!(
        doc["tls"]["options"]["sniStrictDisable"]["sniStrict"],
        false
    );
    assert_eq!(doc["tls"]["options"]["mTLS"]["sniStrict"], true);
}

#[test]
fn the_servers_transports_carry_the_ca_and_traefiks_client_certificate() {
    let doc = rendered(&model());
    let client = serde_json::json!([{
        "certFile": "/certs/certs/traefik/fullchain.pem",
        "keyFile": "/certs/certs/traefik/key.pem",
    }]);
    let http = &doc["http"]["serversTransports"]["certdock"];
    assert_eq!(http["rootCAs"], serde_json::json!(["/certs/ca.pem"]));
    assert_eq!(http["certificates"], client);
    let tcp = &doc["tcp"]["serversTransports"]["certdock"]["tls"];
    assert_eq!(tcp["rootCAs"], serde_json::json!(["/certs/ca.pem"]));
    assert_eq!(tcp["certificates"], client);
    assert_eq!(
        doc["tls"]["certificates"],
        serde_json::json!([{"certFile": "/certs/certs/shop/fullchain.pem", "keyFile": "/certs/certs/shop/key.pem"}])
    );
}

#[test]
fn empty_lists_are_left_out() {
    let m = TraefikModel {
        base_options: TlsOptionsBase::default(),
        certificates: vec![],
        transport_client: None,
        forward_auth: vec![],
        ..model()
    };
    let doc = rendered(&m);
    assert!(doc["tls"].get("certificates").is_none(), "{doc:#}");
    assert!(
        doc["http"]["serversTransports"]["certdock"]
            .get("certificates")
            .is_none()
    );
    assert!(
        doc["tcp"]["serversTransports"]["certdock"]["tls"]
            .get("certificates")
            .is_none()
    );
    assert!(doc["tls"]["options"]["mTLS"].get("cipherSuites").is_none());
}

#[test]
fn the_same_model_renders_the_same_bytes() {
    assert_eq!(render(&model()), render(&model().clone()));
}

#[test]
fn a_new_revision_changes_the_bytes() {
    let mut other = model();
    other.revision = "0a1b2c3e".into();
    let (a, b) = (
        render(&model()).expect("renders"),
        render(&other).expect("renders"),
    );
    assert_ne!(a, b);
    assert!(b.contains("# revision: 0a1b2c3e\n"), "{b}");
    assert_eq!(
        yaml_to_json(&a),
        yaml_to_json(&b),
        "the revision is only a comment"
    );
}

#[test]
fn the_file_starts_with_a_do_not_edit_comment() {
    let out = render(&model()).expect("renders");
    assert!(
        out.starts_with("# Generated by certdock; do not edit"),
        "{out}"
    );
}

#[test]
fn a_model_without_ca_files_is_refused() {
    let m = TraefikModel {
        ca_files: vec![],
        ..model()
    };
    assert_eq!(render(&m), Err(TraefikError::NoCaFiles));
}

#[test]
fn a_revision_that_could_break_out_of_the_comment_is_refused() {
    for rev in ["", "abc\ntls: {}", "ABC", "xyz"] {
        let m = TraefikModel {
            revision: rev.into(),
            ..model()
        };
        assert!(
            matches!(render(&m), Err(TraefikError::BadRevision(_))),
            "{rev:?}"
        );
    }
}

#[test]
fn awkward_paths_survive_the_round_trip() {
    let odd = [
        "/certs/a: b #c.pem",
        "*star",
        "- dash",
        "'quote\"s",
        "[x]",
        "{y}",
        "yes",
        "~",
        "0x10",
    ];
    let m = TraefikModel {
        ca_files: odd.iter().map(|s| s.to_string()).collect(),
        ..model()
    };
    let doc = rendered(&m);
    assert_eq!(
        doc["tls"]["options"]["mTLS"]["clientAuth"]["caFiles"],
        serde_json::json!(odd)
    );
}

#[test]
fn paths_with_control_characters_are_refused() {
    let m = TraefikModel {
        ca_files: vec!["/ca.pem\n".into()],
        ..model()
    };
    assert!(matches!(render(&m), Err(TraefikError::BadPath { .. })));
    let mut m = model();
    m.certificates[0].key_file = String::new();
    assert!(matches!(render(&m), Err(TraefikError::BadPath { .. })));
}

#[test]
fn base_options_come_from_snake_case_toml_and_reject_unknown_keys() {
    let ok: TlsOptionsBase = toml::from_str(
        "min_version = \"VersionTLS13\"\ncipher_suites = []\nalpn_protocols = [\"h2\"]",
    )
    .expect("valid table");
    assert_eq!(ok.min_version.as_deref(), Some("VersionTLS13"));
    assert!(ok.validate().is_ok());
    assert!(toml::from_str::<TlsOptionsBase>("minVersion = \"VersionTLS13\"").is_err());
    assert!(toml::from_str::<TlsOptionsBase>("client_auth_type = \"NoClientCert\"").is_err());
}

#[test]
fn invalid_base_options_are_refused() {
    let bad = [
        TlsOptionsBase {
            min_version: Some("TLS1.2".into()),
            ..Default::default()
        },
        TlsOptionsBase {
            max_version: Some("VersionTLS14".into()),
            ..Default::default()
        },
        TlsOptionsBase {
            min_version: Some("VersionTLS13".into()),
            max_version: Some("VersionTLS12".into()),
            ..Default::default()
        },
        TlsOptionsBase {
            cipher_suites: vec!["TLS-RSA; rm".into()],
            ..Default::default()
        },
        TlsOptionsBase {
            curve_preferences: vec![String::new()],
            ..Default::default()
        },
        TlsOptionsBase {
            alpn_protocols: vec!["h2\n".into()],
            ..Default::default()
        },
    ];
    for base in bad {
        let m = TraefikModel {
            base_options: base.clone(),
            ..model()
        };
        assert!(
            matches!(render(&m), Err(TraefikError::BadOption { .. })),
            "{base:?}"
        );
    }
}

#[test]
fn an_allow_list_becomes_a_chain_that_strips_then_passes_then_asks() {
    let doc = rendered(&model());
    let mw = &doc["http"]["middlewares"];
    assert_eq!(
        mw["certdock-allow-api"]["chain"]["middlewares"],
        serde_json::json!([
            "certdock-strip-client-headers",
            "certdock-pass-client-cert",
            "certdock-auth-api"
        ])
    );
    assert_eq!(allow_middleware("api"), "certdock-allow-api");
    // A client's own certificate or identity headers never reach the decider.
    let stripped = &mw["certdock-strip-client-headers"]["headers"]["customRequestHeaders"];
    for h in [
        "X-Forwarded-Tls-Client-Cert",
        "Client-Cert",
        "X-Certdock-Client",
        "X-Certdock-Groups",
    ] {
        assert_eq!(stripped[h], "", "{h} must be removed: {stripped}");
    }
    assert_eq!(
        mw["certdock-pass-client-cert"]["passTLSClientCert"]["pem"],
        true
    );
    let auth = &mw["certdock-auth-api"]["forwardAuth"];
    assert_eq!(auth["address"], "https://certdock:8443/v1/forward-auth/api");
    assert_eq!(auth["tls"]["ca"], "/certs/ca.pem");
    assert_eq!(auth["tls"]["cert"], "/certs/certs/traefik/fullchain.pem");
    assert_eq!(auth["tls"]["key"], "/certs/certs/traefik/key.pem");
    assert!(auth["tls"].get("insecureSkipVerify").is_none());
    assert_eq!(
        auth["authResponseHeaders"],
        serde_json::json!(["X-Certdock-Client", "X-Certdock-Groups"])
    );
    assert!(auth.get("trustForwardHeader").is_none());
}

#[test]
fn no_allow_list_means_no_middlewares_at_all() {
    let doc = rendered(&TraefikModel {
        forward_auth: vec![],
        ..model()
    });
    assert!(doc["http"].get("middlewares").is_none(), "{doc}");
}

#[test]
fn forward_auth_that_traefik_could_not_authenticate_refuses_to_render() {
    let e = render(&TraefikModel {
        transport_client: None,
        ..model()
    })
    .unwrap_err();
    assert_eq!(e, TraefikError::NoAuthClient("api".into()));
    for address in [
        "http://certdock:8443/v1/forward-auth/api",
        "https://x\n/y",
        "",
    ] {
        let e = render(&TraefikModel {
            forward_auth: vec![ForwardAuth {
                server: "api".into(),
                address: address.to_string(),
            }],
            ..model()
        })
        .unwrap_err();
        assert_eq!(e, TraefikError::BadAuthAddress(address.to_string()));
    }
}
