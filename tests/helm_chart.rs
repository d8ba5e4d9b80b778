//! The Helm chart `charts/certdock`, checked with the real helm (v4, installed by
//! `scripts/install-helm.sh`): `helm lint --strict`, `helm template` with default and custom values,
//! the rendered manifests parsed and inspected, and bad values refused by `values.schema.json`.
//!
//! These tests fail (never skip) when helm cannot be installed. The TLSOption's `clientAuthType` is
//! checked against the enum of Traefik's own CRD (`../shared/testdata/traefik/traefik.io_tlsoptions.yaml`),
//! not against a copy of it here.

#[path = "common/helm.rs"]
mod helm;

use std::fs;
use std::path::Path;

use base64::Engine as _;
use helm::*;
use serde_json::Value;

#[test]
fn helm_lint_strict_passes() {
    let chart = chart();
    let out = helm(&["lint", "--strict", chart.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "helm lint --strict failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Also with the Traefik CA bundle set, the values most installs end up with.
    let dir = tempfile::tempdir().unwrap();
    let pem = pem_file(dir.path());
    let set_file = format!("traefik.clientCA={}", pem.display());
    let out = helm(&[
        "lint",
        "--strict",
        chart.to_str().unwrap(),
        "--set-file",
        &set_file,
    ]);
    assert!(
        out.status.success(),
        "helm lint --strict with traefik.clientCA failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn default_render_runs_serve_with_persistent_state_behind_passthrough() {
    let docs = render(&[]);

    // The workload: one StatefulSet pod running `certdock serve`, state on a claim template.
    let sts = one(&docs, "StatefulSet");
    assert_eq!(sts["spec"]["replicas"], 1, "a CA is a single writer");
    let pod = &sts["spec"]["template"]["spec"];
    let server = container(pod, "containers", "certdock");
    let args: Vec<&str> = arr(&server["args"], "args")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    assert_eq!(args.first(), Some(&"serve"), "args: {args:?}");
    assert_eq!(
        env_value(server, "CERTDOCK_STATE_DIR").as_deref(),
        Some(STATE_DIR)
    );
    let mount = state_mount(server);
    let claims = arr(&sts["spec"]["volumeClaimTemplates"], "volumeClaimTemplates");
    assert!(
        claims
            .iter()
            .any(|c| c["metadata"]["name"] == mount["name"]),
        "the state mount {} comes from a volumeClaimTemplate",
        mount["name"]
    );
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Retain"
    );
    assert!(kinds(&docs, "Deployment").is_empty());

    // Hardening: non-root 65532, read-only root, no capabilities, RuntimeDefault seccomp.
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 65532);
    assert_eq!(psc["fsGroup"], 65532);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let csc = &server["securityContext"];
    assert_eq!(csc["readOnlyRootFilesystem"], true);
    assert_eq!(csc["allowPrivilegeEscalation"], false);
    assert_eq!(csc["capabilities"]["drop"][0], "ALL");
    assert!(!server["resources"]["requests"].is_null());

    // Probes on /health over HTTPS (the API has no plain HTTP).
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &server[probe]["httpGet"];
        assert_eq!(get["path"], "/health", "{probe}");
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
    }
    let port = arr(&server["ports"], "ports")
        .iter()
        .find(|p| p["containerPort"] == 8443)
        .expect("container port 8443");
    assert_eq!(port["name"], "https");

    // The Service on 8443.
    let svc = named(&docs, "Service", "x-certdock");
    let sport = &svc["spec"]["ports"][0];
    assert_eq!(sport["port"], 8443);
    assert_eq!(sport["targetPort"], "https");

    // Traefik is on by default, for ca.example.net; the API certificate carries that name.
    let route = one(&docs, "IngressRouteTCP");
    assert_eq!(route["spec"]["tls"]["passthrough"], true);
    assert_eq!(
        route["spec"]["routes"][0]["match"],
        "HostSNI(`ca.example.net`)"
    );
    let api_names = env_value(server, "CERTDOCK_API_NAME").unwrap();
    let api_names: Vec<&str> = api_names.split(',').collect();
    assert!(api_names.contains(&"ca.example.net"), "{api_names:?}");
    assert!(api_names.contains(&"x-certdock.certs.svc"), "{api_names:?}");

    // Fail closed: without a CA bundle there is no TLSOption requiring client certificates, only
    // the passthrough router's non-strict-SNI option.
    for opt in kinds(&docs, "TLSOption") {
        assert!(
            opt["spec"]["clientAuth"].is_null(),
            "a client-auth TLSOption was rendered without a CA source: {opt}"
        );
    }
    assert!(kinds(&docs, "Secret").is_empty());
}

#[test]
fn traefik_values_render_passthrough_route_and_mtls_option() {
    let dir = tempfile::tempdir().unwrap();
    let pem = pem_file(dir.path());
    let set_file = format!("traefik.clientCA={}", pem.display());
    let docs = render(&[
        "--set",
        "traefik.enabled=true",
        "--set",
        "traefik.host=ca.test",
        "--set-file",
        &set_file,
    ]);
    let svc = named(&docs, "Service", "x-certdock");

    // IngressRouteTCP: apiVersion, SNI match, passthrough, the Service's port.
    let route = one(&docs, "IngressRouteTCP");
    assert_eq!(route["apiVersion"], "traefik.io/v1alpha1");
    let routes = arr(&route["spec"]["routes"], "routes");
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["match"], "HostSNI(`ca.test`)");
    let backend = &routes[0]["services"][0];
    assert_eq!(backend["name"], svc["metadata"]["name"]);
    assert_eq!(backend["port"], 8443);
    assert_eq!(route["spec"]["tls"]["passthrough"], true);
    assert!(!arr(&route["spec"]["entryPoints"], "entryPoints").is_empty());

    // Its tls.options is the guide's sniStrict=false option, rendered in the same namespace.
    let crd = tlsoption_crd_spec();
    let opt_ref = &route["spec"]["tls"]["options"];
    assert_eq!(opt_ref["namespace"], NAMESPACE);
    let sni = named(&docs, "TLSOption", str_of(&opt_ref["name"], "options name"));
    assert_eq!(sni["apiVersion"], "traefik.io/v1alpha1");
    assert_eq!(sni["spec"]["sniStrict"], false);
    assert_fields_in_crd(&sni["spec"], &crd, "spec");

    // The mTLS TLSOption: a clientAuthType from the CRD's enum that requires and verifies.
    let allowed = client_auth_types(&crd);
    let mtls: Vec<&Value> = kinds(&docs, "TLSOption")
        .into_iter()
        .filter(|o| !o["spec"]["clientAuth"].is_null())
        .collect();
    assert_eq!(mtls.len(), 1, "one mTLS TLSOption");
    let mtls = mtls[0];
    assert_eq!(mtls["apiVersion"], "traefik.io/v1alpha1");
    assert_fields_in_crd(&mtls["spec"], &crd, "spec");
    let auth_type = str_of(
        &mtls["spec"]["clientAuth"]["clientAuthType"],
        "clientAuthType",
    );
    assert!(
        allowed.iter().any(|a| a == auth_type),
        "clientAuthType {auth_type} is not in the CRD's enum {allowed:?}"
    );
    assert_eq!(auth_type, "RequireAndVerifyClientCert");

    // secretNames: non-empty, each a rendered Secret whose ca.crt is exactly the given bundle.
    let secrets = arr(&mtls["spec"]["clientAuth"]["secretNames"], "secretNames");
    assert!(!secrets.is_empty(), "secretNames is empty");
    for name in secrets {
        let secret = named(&docs, "Secret", str_of(name, "secret name"));
        let b64 = str_of(&secret["data"]["ca.crt"], "ca.crt");
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("ca.crt is base64");
        assert_eq!(String::from_utf8(pem).unwrap(), TEST_ROOTS_PEM);
    }

    // The API certificate names the Traefik host.
    let server = container(
        &one(&docs, "StatefulSet")["spec"]["template"]["spec"],
        "containers",
        "certdock",
    );
    let names = env_value(server, "CERTDOCK_API_NAME").unwrap();
    assert_eq!(names.split(',').next(), Some("ca.test"), "{names}");
}

#[test]
fn custom_values_render_import_policy_and_resources() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    fs::write(
        &values,
        r#"
image:
  repository: registry.example.net/certdock
  tag: "1.2.3"
  pullPolicy: Always
apiNames: [ca.internal, 10.0.0.10]
allowDomains: [.example.net, 10.0.0.0/8]
denyDomains: [secret.example.net]
ttl: {default: 12h, min: 10m, max: 7d}
logFormat: json
config: |
  resync_interval = "30s"
ca:
  existingSecret: my-root-ca
persistence:
  size: 5Gi
  storageClassName: fast
resources:
  requests: {cpu: 100m, memory: 128Mi}
  limits: {cpu: "1", memory: 512Mi}
service:
  port: 9443
traefik:
  host: pki.example.net
  entryPoints: [tls]
"#,
    )
    .unwrap();
    let docs = render(&["-f", values.to_str().unwrap()]);

    let sts = one(&docs, "StatefulSet");
    let pod = &sts["spec"]["template"]["spec"];
    let server = container(pod, "containers", "certdock");
    assert_eq!(server["image"], "registry.example.net/certdock:1.2.3");
    assert_eq!(server["imagePullPolicy"], "Always");
    let env = |n: &str| env_value(server, n);
    assert_eq!(
        env("CERTDOCK_ALLOW_DOMAIN").as_deref(),
        Some(".example.net,10.0.0.0/8")
    );
    assert_eq!(
        env("CERTDOCK_DENY_DOMAIN").as_deref(),
        Some("secret.example.net")
    );
    assert_eq!(env("CERTDOCK_DEFAULT_TTL").as_deref(), Some("12h"));
    assert_eq!(env("CERTDOCK_MIN_TTL").as_deref(), Some("10m"));
    assert_eq!(env("CERTDOCK_MAX_TTL").as_deref(), Some("7d"));
    assert_eq!(env("CERTDOCK_LOG_FORMAT").as_deref(), Some("json"));
    let names = env("CERTDOCK_API_NAME").unwrap();
    let names: Vec<&str> = names.split(',').collect();
    for n in ["pki.example.net", "ca.internal", "10.0.0.10"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }

    // The TOML file: a ConfigMap mounted where CERTDOCK_CONFIG points.
    let config_path = env("CERTDOCK_CONFIG").expect("CERTDOCK_CONFIG is set");
    let cm = one(&docs, "ConfigMap");
    let file = Path::new(&config_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        str_of(&cm["data"][file], "config").contains("resync_interval"),
        "{cm}"
    );

    assert_eq!(server["resources"]["requests"]["cpu"], "100m");
    assert_eq!(server["resources"]["limits"]["memory"], "512Mi");
    let claim = &sts["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["resources"]["requests"]["storage"], "5Gi");
    assert_eq!(claim["storageClassName"], "fast");

    // ca.existingSecret: an init container imports the root into the state volume, and tolerates
    // exactly an existing CA (checks STATE/ca/root.pem before `certdock init`).
    let import = container(pod, "initContainers", "import-ca");
    let script = arr(&import["command"], "command")
        .iter()
        .map(|c| str_of(c, "command"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(script.contains("/certdock init --import-root"), "{script}");
    assert!(script.contains("/ca/root.pem"), "{script}");
    assert_eq!(
        env_value(import, "CERTDOCK_STATE_DIR").as_deref(),
        Some(STATE_DIR)
    );
    assert_eq!(
        state_mount(import)["name"],
        state_mount(server)["name"],
        "import-ca writes the state volume"
    );
    let import_volume = arr(&pod["volumes"], "volumes")
        .iter()
        .find(|v| v["name"] == "import")
        .expect("the import volume");
    assert_eq!(import_volume["secret"]["secretName"], "my-root-ca");

    // Service port and the route follow service.port; the mTLS option trusts the imported root.
    assert_eq!(
        named(&docs, "Service", "x-certdock")["spec"]["ports"][0]["port"],
        9443
    );
    let route = one(&docs, "IngressRouteTCP");
    assert_eq!(route["spec"]["entryPoints"][0], "tls");
    assert_eq!(route["spec"]["routes"][0]["services"][0]["port"], 9443);
    assert_eq!(
        route["spec"]["routes"][0]["match"],
        "HostSNI(`pki.example.net`)"
    );
    let mtls = kinds(&docs, "TLSOption")
        .into_iter()
        .find(|o| !o["spec"]["clientAuth"].is_null())
        .expect("mTLS TLSOption from ca.existingSecret");
    assert_eq!(mtls["spec"]["clientAuth"]["secretNames"][0], "my-root-ca");
}

#[test]
fn traefik_disabled_renders_no_traefik_resources() {
    let docs = render(&["--set", "traefik.enabled=false"]);
    for doc in &docs {
        let api = doc["apiVersion"].as_str().unwrap_or_default();
        assert!(!api.starts_with("traefik.io/"), "rendered {doc}");
    }
    one(&docs, "StatefulSet");
}

#[test]
fn mtls_option_fails_closed_without_a_ca_bundle() {
    let err = render_fails(&["--set", "traefik.mtlsOption.enabled=true"]);
    assert!(err.contains("traefik.clientCA"), "{err}");

    let err = render_fails(&["--set", "traefik.clientCA=not a certificate"]);
    assert!(err.contains("PEM"), "{err}");

    // Turned off explicitly: no client-auth option even with a bundle.
    let dir = tempfile::tempdir().unwrap();
    let pem = pem_file(dir.path());
    let set_file = format!("traefik.clientCA={}", pem.display());
    let docs = render(&[
        "--set-file",
        &set_file,
        "--set",
        "traefik.mtlsOption.enabled=false",
    ]);
    assert!(
        kinds(&docs, "TLSOption")
            .iter()
            .all(|o| o["spec"]["clientAuth"].is_null())
    );
}

#[test]
fn invalid_values_are_rejected_by_the_schema() {
    let bad: &[&[&str]] = &[
        &["--set", "logFormat=xml"],
        &["--set", "traefik.host=bad host"],
        &["--set", "traefik.host=-bad.example"],
        &["--set", "replicaCount=2"],
        &["--set", "service.port=-1"],
        &["--set", "service.port=70000"],
        &["--set", "ttl.default=1 day"],
        &["--set", "ttl.max=forever"],
        &["--set", "allowDomains={not a domain}"],
        &["--set", "apiNames={bad name}"],
        &["--set", "traefik.enabled=yes please"],
        &["--set", "traefik.mtlsOption.enabled=maybe"],
        &["--set", "traefik.tlsOptionDefaults.minVersion=TLS1.2"],
        &["--set", "traefik.tlsOptionDefaults.sniStrict=true"],
        &["--set", "image.pullPolicy=Sometimes"],
        &["--set", "resources.requests.gpu=1"],
        &["--set", "unknownKey=1"],
    ];
    for args in bad {
        let err = render_fails(args);
        assert!(
            err.contains("schema"),
            "{args:?} failed, but not by the values schema:\n{err}"
        );
    }
}
