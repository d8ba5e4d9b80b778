//! The facts of a certificate, read in one place: what the ledger, renewal, the API and the
//! agent (and the controller's holdings) need to know about a leaf.

use std::collections::BTreeSet;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::CaError;
use super::csr::ip_of;
use super::pem::{certs_from_pem, parse_cert};
use crate::core::authz::GroupName;
use crate::core::names::{San, Usage};

/// What a certificate says, independent of who parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Lower-case hex, as the inventory keys it.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The subject CN, when there is one and it is text.
    pub common_name: Option<String>,
    /// DNS and IP SANs. A DNS name certdock would not issue is skipped: these facts describe,
    /// they do not judge (the CA's own checks run on what is asked, not on what is held).
    pub sans: Vec<San>,
    /// Groups bound by the CA (URI SANs `urn:certdock:group:NAME`); other URIs grant nothing.
    pub groups: BTreeSet<GroupName>,
    /// From the extended key usage; neither flag set when the extension is absent.
    pub usage: Usage,
    /// The DER of the SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// SHA-256 of the certificate's DER.
    pub sha256: [u8; 32],
    pub is_ca: bool,
}

impl CertFacts {
    /// Reads a DER certificate.
    ///
    /// # Errors
    /// [`CaError::BadPem`] naming `what` when the bytes are not an X.509 certificate.
    pub fn from_der(what: &str, der: &[u8]) -> Result<Self, CaError> {
        Ok(Self::from_parsed(&parse_cert(what, der)?, der))
    }

    /// Reads the first certificate of a PEM text (a leaf, possibly followed by its chain).
    pub fn from_pem(what: &str, pem: &str) -> Result<Self, CaError> {
        let certs = certs_from_pem(what, pem)?;
        Self::from_der(what, &certs[0])
    }

    /// For a caller that needs the parsed certificate too (e.g. to check its signature).
    pub fn from_parsed(cert: &X509Certificate<'_>, der: &[u8]) -> Self {
        let mut sans = Vec::new();
        let mut groups = BTreeSet::new();
        let mut usage = Usage {
            server: false,
            client: false,
        };
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(s) => {
                    for gn in &s.general_names {
                        match gn {
                            GeneralName::DNSName(d) => sans.extend(San::parse(d).ok()),
                            GeneralName::IPAddress(b) => sans.extend(ip_of(b).map(San::Ip)),
                            GeneralName::URI(u) => groups.extend(GroupName::from_uri(u)),
                            _ => {}
                        }
                    }
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    usage.server = eku.server_auth;
                    usage.client = eku.client_auth;
                }
                _ => {}
            }
        }
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
        Self {
            serial: hex::encode(cert.raw_serial()),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string),
            sans,
            groups,
            usage,
            spki_der: cert.public_key().raw.to_vec(),
            sha256,
            is_ca: cert.is_ca(),
        }
    }

    /// Whether `now` lies within the validity.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// The CA certificate that signs now (the bundle's last) and when it started signing: what a
/// leaf's issuer is compared with to find leaves issued before a rollover.
#[derive(Debug, Clone)]
pub struct Signer {
    der: CertificateDer<'static>,
    since: OffsetDateTime,
}

impl Signer {
    /// The signer of a CA bundle (its last certificate), if the bundle has a readable one.
    pub fn of_bundle(bundle: &[CertificateDer<'static>]) -> Option<Signer> {
        let der = bundle.last()?.clone();
        // CA certificates are backdated a minute; leaves by `BACKDATE`.
        let since = parse_cert("signer", &der)
            .ok()?
            .validity()
            .not_before
            .to_datetime()
            + time::Duration::minutes(1);
        Some(Signer { der, since })
    }

    /// When the signer started, if a leaf issued by `issuer` and valid from `leaf_not_before`
    /// was issued before that by another CA certificate: it is due for re-issue under the new
    /// chain. A leaf issued after the signer started is never flagged, so a CA that orders its
    /// bundle otherwise cannot cause a re-issue loop.
    pub fn rolled_over_since(
        &self,
        issuer: &CertificateDer<'_>,
        leaf_not_before: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        if *issuer == self.der {
            return None;
        }
        // Certificates carry whole seconds: a leaf of the rollover's very second counts as before
        // it (once re-issued, its issuer is the signer, so this cannot repeat).
        let issued_at = leaf_not_before + crate::core::renew::BACKDATE;
        (issued_at <= self.since).then_some(self.since)
    }
}

/// [`Signer::rolled_over_since`] from PEM: the CA bundle (its signer last) and a leaf's
/// `chain.pem` (its issuer first).
pub fn issued_before_rollover(
    bundle_pem: &str,
    chain_pem: &str,
    leaf_not_before: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let signer = Signer::of_bundle(&certs_from_pem("bundle", bundle_pem).ok()?)?;
    let issuer = certs_from_pem("chain", chain_pem)
        .ok()?
        .into_iter()
        .next()?;
    signer.rolled_over_since(&issuer, leaf_not_before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::authority::{Authority, CaLifetimes};
    use crate::ca::issue::{LeafRequest, issue_leaf};
    use crate::ca::keys::KeyType;

    #[test]
    fn the_facts_of_a_leaf_are_what_it_was_signed_with() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let ca = Authority::create(
            dir.path(),
            KeyType::EcdsaP256,
            CaLifetimes::default(),
            None,
            now,
        )
        .unwrap();
        let sans = vec![
            San::parse("web.internal").unwrap(),
            San::parse("10.1.2.3").unwrap(),
        ];
        let issued = issue_leaf(
            &ca,
            LeafRequest {
                common_name: "web.internal",
                sans: &sans,
                groups: &["ops", "web"]
                    .iter()
                    .map(|g| GroupName::parse(g).unwrap())
                    .collect(),
                usage: Usage::CLIENT,
                ttl: std::time::Duration::from_secs(3600),
            },
            KeyType::EcdsaP256,
            now,
        )
        .unwrap();
        let facts = CertFacts::from_pem("leaf", &issued.fullchain_pem()).unwrap();
        assert_eq!(facts.serial, issued.serial);
        assert_eq!(facts.not_before, issued.not_before);
        assert_eq!(facts.not_after, issued.not_after);
        assert_eq!(facts.common_name.as_deref(), Some("web.internal"));
        assert_eq!(facts.sans, sans);
        let groups: Vec<&str> = facts.groups.iter().map(GroupName::as_str).collect();
        assert_eq!(groups, ["ops", "web"]);
        assert_eq!(facts.usage, Usage::CLIENT);
        assert!(!facts.is_ca);
        assert_eq!(
            hex::encode(facts.sha256),
            crate::ca::pem::fingerprint(&issued.cert_der)
        );
        assert!(CertFacts::from_pem("ca", &ca.root().pem).unwrap().is_ca);
        assert!(
            CertFacts::from_der("junk", b"junk")
                .unwrap_err()
                .to_string()
                .contains("junk")
        );
    }
}
