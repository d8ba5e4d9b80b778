//! Entry points for the fuzz targets in `fuzz/` and the corpus replay test: raw bytes in, no panic out.
//!
//! Each `fuzz_*` function feeds its input to the parsers and asserts the invariants of whatever
//! they accept; an assertion failure is a finding, exactly like a panic inside a parser. The
//! `check_*` helpers are the same invariants for property tests. Not a stable API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::ca::csr::Csr;
use crate::ca::local::normalize_serial;
use crate::ca::pem::pem_block;
use crate::controller::outputs::OutputDirs;
use crate::core::container::{ContainerInfo, ContainerState};
use crate::core::labelled::Labelled;
use crate::core::labels::{
    self, CertSpec, ContainerPath, LabelContext, MAX_PATH_LEN, Owner, Reload,
};
use crate::core::names::{CertName, DnsName, San, Usage};
use crate::core::plan::{self, CertSpecLite, Current, Identity, Plan, World};
use crate::core::policy::{MAX_SANS, NamePolicy, NameRule, TtlPolicy, parse_duration};

/// The label prefix every target uses (the default of `--label-prefix`).
pub const PREFIX: &str = "certdock";

/// Two policies every input is tried under: anything goes but the CA's own name, and a strict
/// allow/deny list with wildcards switched on.
pub fn policies() -> [NamePolicy; 2] {
    let reserved = vec![San::parse("ca.internal").expect("literal")];
    [
        NamePolicy {
            reserved: reserved.clone(),
            ..Default::default()
        },
        NamePolicy {
            allow: NameRule::parse_list("internal,example.test,10.0.0.0/8,fd00::/8")
                .expect("literal"),
            deny: NameRule::parse_list("secret.internal,10.9.0.0/16").expect("literal"),
            allow_wildcards: true,
            reserved,
            for_certdock_itself: false,
        },
    ]
}

// === labels ===

/// Decodes a label map file: containers separated by a line `---`; in each, `key=value` lines
/// (split at the first `=`), and `@name NAME` / `@state created|running|stopped` lines.
pub fn decode_containers(text: &str) -> Vec<ContainerInfo> {
    let mut out = Vec::new();
    for (i, block) in text.split("\n---\n").take(16).enumerate() {
        let mut c = ContainerInfo {
            id: format!("{i:012x}"),
            name: format!("c{i}"),
            labels: BTreeMap::new(),
            state: ContainerState::Running,
            networks: Vec::new(),
        };
        for line in block.lines() {
            if let Some(name) = line.strip_prefix("@name ") {
                c.name = name.to_string();
            } else if let Some(state) = line.strip_prefix("@state ") {
                c.state = match state {
                    "created" => ContainerState::Created,
                    "stopped" => ContainerState::Stopped,
                    _ => ContainerState::Running,
                };
            } else if let Some((k, v)) = line.split_once('=') {
                c.labels.insert(k.to_string(), v.to_string());
            }
        }
        out.push(c);
    }
    out
}

/// Label maps → `labels::parse` and `plan::plan` under every policy, with their invariants.
pub fn fuzz_labels(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let containers = decode_containers(&text);
    for names in &policies() {
        check_labels_and_plan(&containers, names);
    }
}

/// Parses every container and plans the world twice (nothing held yet, then everything held
/// but nothing delivered), asserting what must hold of accepted specs and of the plans.
pub fn check_labels_and_plan(containers: &[ContainerInfo], names: &NamePolicy) {
    let ttls = TtlPolicy::default();
    let ctx = LabelContext {
        prefix: PREFIX,
        names,
        ttls: &ttls,
        proxy_network_configured: true,
        forward_auth: true,
    };
    let mut accepted = BTreeSet::new();
    let mut refused = BTreeSet::new();
    for c in containers {
        match labels::parse(c, &ctx) {
            Ok(Some(spec)) => {
                check_spec(&spec, names);
                accepted.insert(c.id.clone());
            }
            Ok(None) => {}
            Err(e) => {
                let shown = e.to_string();
                assert!(
                    e.label.starts_with(&format!("{PREFIX}."))
                        || e.label.starts_with("traefik.http.routers."),
                    "the error names a label of ours: {shown}"
                );
                assert!(shown.starts_with(&format!("label {}=", e.label)), "{shown}");
                assert!(shown.chars().count() < 1000, "bounded: {shown}");
                refused.insert(c.id.clone());
            }
        }
    }

    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let empty_current = BTreeMap::new();
    let empty_failures = BTreeMap::new();
    let empty_copied = BTreeMap::new();
    let empty_published = BTreeMap::new();
    let empty_orphans = BTreeMap::new();
    let traefik_client = CertSpecLite {
        sans: vec![San::parse("traefik").expect("literal")],
        groups: Default::default(),
        usage: Usage::CLIENT,
        ttl: ttls.default,
    };
    let labelled = Labelled::parse_all(containers, &ctx);
    let world = |current| World {
        containers: &labelled,
        label_prefix: PREFIX,
        proxy_network: Some("proxy"),
        traefik_client: Some(&traefik_client),
        current,
        failures: &empty_failures,
        copied: &empty_copied,
        ca_version: "ca-test",
        published: &empty_published,
        orphaned_since: &empty_orphans,
        first_list_done: true,
        grace: Duration::from_secs(600),
        now,
    };
    let first = plan::plan(&world(&empty_current));
    check_plan(&first, containers, names, &accepted, &refused);

    // Everything desired is now held and fresh; nothing delivered yet: only copies are due.
    let held: BTreeMap<Identity, Current> = first
        .desired
        .iter()
        .map(|(id, d)| {
            let cur = Current {
                version: "v1".into(),
                sans: d.spec.sans.clone(),
                groups: d.spec.groups.clone(),
                usage: d.spec.usage,
                not_before: now - Duration::from_secs(60),
                not_after: now + d.spec.ttl,
                renew_at: now + d.spec.ttl / 3 * 2,
                issuer_trusted: true,
            };
            (id.clone(), cur)
        })
        .collect();
    let second = plan::plan(&world(&held));
    check_plan(&second, containers, names, &accepted, &refused);
    assert!(
        second.work.iter().all(|w| w.issue.is_none()),
        "nothing is reissued when every fresh certificate is held: {:?}",
        second.work
    );
}

/// What every spec accepted from labels satisfies.
pub fn check_spec(spec: &CertSpec, names: &NamePolicy) {
    assert!(!spec.sans.is_empty() && spec.sans.len() <= MAX_SANS);
    assert!(
        names.check(&spec.sans).is_ok(),
        "accepted SANs pass the policy: {:?}",
        spec.sans
    );
    for san in &spec.sans {
        check_san(san);
    }
    check_cert_name(&spec.name);
    check_container_path(&spec.path);
}

fn check_plan(
    plan: &Plan,
    containers: &[ContainerInfo],
    names: &NamePolicy,
    accepted: &BTreeSet<String>,
    refused: &BTreeSet<String>,
) {
    for r in &plan.refused {
        assert!(
            !accepted.contains(&r.container_id) || refused.contains(&r.container_id) || {
                // A valid spec refused by the planner: it shares a name with another container.
                r.error.contains("already uses this name")
            },
            "refusal of an accepted container: {r:?}"
        );
    }
    let refused_now: BTreeSet<&str> = plan
        .refused
        .iter()
        .map(|r| r.container_id.as_str())
        .collect();
    for id in refused {
        assert!(refused_now.contains(id.as_str()), "{id} refused by labels");
    }
    for w in &plan.work {
        for copy in &w.copies {
            assert!(
                accepted.contains(&copy.container_id)
                    && !refused_now.contains(copy.container_id.as_str()),
                "a copy only for a container whose labels were accepted: {copy:?}"
            );
            check_container_path(&copy.path);
        }
        if let Some((spec, _)) = &w.issue {
            let policy = match w.id {
                Identity::Named(_) => names.clone(),
                // certdock's own client certificate is not asked for by any container.
                Identity::TraefikClient => NamePolicy::default(),
            };
            assert!(policy.check(&spec.sans).is_ok(), "{:?}", spec.sans);
        }
    }
    for a in &plan.attaches {
        assert!(
            accepted.contains(&a.container_id) && !refused_now.contains(a.container_id.as_str()),
            "attach only accepted containers: {a:?}"
        );
    }
    let out = OutputDirs {
        out: PathBuf::from("/srv/out"),
        proxy_view: PathBuf::from("/out"),
    };
    for id in plan.desired.keys() {
        check_published_dir(&out, id);
    }
    assert!(plan.desired.len() <= containers.len() + 1);
}

// === names ===

/// Asserts what every parsed DNS name satisfies: lower-case ASCII, at most 253 characters, no
/// empty label, no trailing dot, labels of at most 63, and it parses back to itself.
pub fn check_dns_name(d: &DnsName) {
    let s = d.as_str();
    assert!(!s.is_empty() && s.len() <= 253, "{s:?}");
    assert!(
        s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase()),
        "{s:?}"
    );
    assert!(!s.ends_with('.') && !s.starts_with('.'), "{s:?}");
    for (i, label) in s.split('.').enumerate() {
        assert!(!label.is_empty() && label.len() <= 63, "{s:?}");
        assert!(
            (label == "*" && i == 0)
                || label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{s:?}"
        );
    }
    assert_eq!(DnsName::parse(s).as_ref(), Ok(d), "round trip");
}

pub fn check_san(san: &San) {
    match san {
        San::Dns(d) => check_dns_name(d),
        San::Ip(_) => {}
    }
    assert_eq!(San::parse(&san.to_string()).as_ref(), Ok(san), "round trip");
}

/// A certificate name is one safe path component: it can never leave `certs/`.
pub fn check_cert_name(n: &CertName) {
    let s = n.as_str();
    assert!(!s.is_empty() && s.len() <= 64, "{s:?}");
    assert!(!s.contains(['/', '\\', '\0']) && s.is_ascii(), "{s:?}");
    let components: Vec<Component<'_>> = Path::new(s).components().collect();
    assert_eq!(
        components,
        [Component::Normal(s.as_ref())],
        "{s:?} is one normal path component"
    );
    assert!(!s.starts_with('.'), "{s:?} is not hidden nor ..");
}

/// The host directory of an identity is a direct child of `OUT/certs` (or certdock's own).
pub fn check_published_dir(out: &OutputDirs, id: &Identity) {
    let dir = out.published_dir(id);
    let parent = match id {
        Identity::Named(n) => {
            check_cert_name(n);
            out.out.join("certs")
        }
        Identity::TraefikClient => out.out.clone(),
    };
    assert_eq!(dir.parent(), Some(parent.as_path()), "{}", dir.display());
    assert!(
        dir.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
        "{}",
        dir.display()
    );
}

/// Absolute, normalised, no `.`/`..`/empty component, no trailing `/`, bounded, tar-safe.
pub fn check_container_path(p: &ContainerPath) {
    let s = p.as_str();
    assert!(s.len() > 1 && s.len() <= MAX_PATH_LEN, "{s:?}");
    assert!(s.starts_with('/') && !s.ends_with('/'), "{s:?}");
    for c in s[1..].split('/') {
        assert!(!c.is_empty() && c != "." && c != "..", "{s:?}");
    }
    assert!(s.bytes().all(|b| b.is_ascii_graphic()), "{s:?}");
    assert_eq!(ContainerPath::parse(s).as_ref(), Ok(p), "round trip");
}

/// Every name parser on every line of the input, then the policies on what parsed.
pub fn fuzz_names(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut sans = Vec::new();
    let mut rules = Vec::new();
    for item in text.lines().take(256) {
        if let Ok(d) = DnsName::parse(item) {
            check_dns_name(&d);
        }
        if let Ok(n) = CertName::parse(item) {
            check_cert_name(&n);
            if let Some(d) = n.as_dns() {
                check_dns_name(&d);
            }
        }
        if let Ok(s) = San::parse(item) {
            check_san(&s);
            sans.push(s);
        }
        match NameRule::parse(item) {
            Ok(r) => {
                assert_eq!(NameRule::parse(&r.to_string()).as_ref(), Ok(&r), "{r}");
                rules.push(r);
            }
            Err(e) => assert!(e.to_string().contains("name rule"), "{e}"),
        }
        if let Ok(u) = Usage::parse(item) {
            assert_eq!(Usage::parse(&u.to_string()), Ok(u));
        }
        if let Ok(p) = ContainerPath::parse(item) {
            check_container_path(&p);
        }
        if let Ok(o) = Owner::parse(item) {
            assert_eq!(Owner::parse(&o.to_string()), Ok(o));
        }
        if let Ok(r) = Reload::parse(item) {
            assert_eq!(Reload::parse(&r.to_string()), Ok(r));
        }
        let _ = parse_duration(item);
        let _ = TtlPolicy::default().resolve_str(Some(item));
        let _ = normalize_serial(item);
    }
    let _ = NameRule::parse_list(&text);
    for base in &policies() {
        check_policy(base, &sans, &rules);
    }
}

/// `check` never panics, and a scope never lets through a name that the base refuses.
pub fn check_policy(base: &NamePolicy, sans: &[San], scope: &[NameRule]) {
    let _ = base.check(sans);
    let narrowed = base.narrowed(scope);
    assert_eq!(narrowed.reserved, base.reserved);
    assert_eq!(narrowed.deny, base.deny);
    assert!(!narrowed.allow_wildcards || base.allow_wildcards);
    for san in sans {
        let one = std::slice::from_ref(san);
        if narrowed.check(one).is_ok() {
            assert!(
                base.check(one).is_ok(),
                "{san} allowed by the scope {scope:?} but not by the base policy"
            );
        }
    }
}

// === CSRs ===

/// The same bytes as DER in a PEM block, as PEM text, and as names in a freshly signed CSR.
pub fn fuzz_csr(data: &[u8]) {
    check_csr_result(Csr::parse(&pem_block("CERTIFICATE REQUEST", data)));
    if let Ok(text) = std::str::from_utf8(data) {
        check_csr_result(Csr::parse(text));
        if let Some(pem) = csr_with_names(text) {
            check_csr_result(Csr::parse(&pem));
        }
    }
}

/// What `Csr::parse` returns: an identity that satisfies the name invariants, or an error that
/// says it is the CSR that was refused.
pub fn check_csr_result(r: Result<Csr, crate::ca::CaError>) {
    match r {
        Ok(Csr { name, sans, .. }) => {
            check_cert_name(&name);
            assert!(!sans.is_empty());
            for san in &sans {
                check_san(san);
            }
            for policy in &policies() {
                let _ = policy.check(&sans);
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains("CSR"), "the error names the CSR: {shown}");
        }
    }
}

/// A CSR signed by a fixed key: the first line is the subject CN (any UTF-8), every other line a
/// SAN (an IP when it parses as one, else a DNS name when rcgen takes it). `None` when rcgen
/// refuses the request.
pub fn csr_with_names(text: &str) -> Option<String> {
    use rcgen::string::Ia5String;
    use rcgen::{CertificateParams, DnType, DnValue, KeyPair, SanType};
    static KEY: OnceLock<Option<KeyPair>> = OnceLock::new();
    let key = KEY.get_or_init(|| KeyPair::generate().ok()).as_ref()?;
    let mut lines = text.lines().take(MAX_SANS + 2);
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = lines.next().filter(|cn| !cn.is_empty()) {
        params
            .distinguished_name
            .push(DnType::CommonName, DnValue::Utf8String(cn.to_string()));
    }
    for line in lines {
        let san = match line.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(Ia5String::try_from(line).ok()?),
        };
        params.subject_alt_names.push(san);
    }
    params.serialize_request(key).ok()?.pem().ok()
}

// === API bodies ===

/// A request body as `/v1/sign`, `/v1/renew` and `/v1/revoke` take it, read as JSON.
pub fn fuzz_api_body(data: &[u8]) {
    use crate::core::wire::{RenewRequest, RevokeRequest, SignRequest};
    // The very types the handlers deserialise, then the checks each handler applies next.
    if let Ok(req) = serde_json::from_slice::<SignRequest>(data) {
        check_csr_result(Csr::parse(&req.csr));
        if let Some(ttl) = req.ttl.as_deref() {
            match TtlPolicy::default().resolve_str(Some(ttl)) {
                Ok(d) => assert!(d >= TtlPolicy::default().min && d <= TtlPolicy::default().max),
                Err(e) => assert!(e.to_string().contains("ttl"), "{e}"),
            }
        }
        if let Some(usage) = req.usage.as_deref() {
            let _ = crate::core::names::Usage::parse(usage);
        }
    }
    if let Ok(req) = serde_json::from_slice::<RenewRequest>(data)
        && let Some(csr) = req.csr.as_deref()
    {
        check_csr_result(Csr::parse(csr));
    }
    if let Ok(req) = serde_json::from_slice::<RevokeRequest>(data)
        && let Some(serial) = req.serial.as_deref()
        && let Ok(s) = normalize_serial(serial)
    {
        assert!(s.len() <= 40 && s.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
