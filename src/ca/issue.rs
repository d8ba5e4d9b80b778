//! Leaf certificates: the one place where a leaf's fields are decided.

use std::collections::BTreeSet;
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::CaError;
use super::authority::Authority;
use super::keys::{KeyType, SecretPem};
use super::pem::cert_to_pem;
use crate::core::authz::GroupName;
use crate::core::names::{San, Usage};

/// How long before "now" a certificate starts, so peers with a slightly slow clock accept it.
/// Defined with the renewal maths, which must correct for it.
pub use crate::core::renew::BACKDATE;

/// What a leaf certifies: names already passed policy, ttl already bounded.
pub struct LeafRequest<'a> {
    pub common_name: &'a str,
    pub sans: &'a [San],
    /// Bound to the certificate as URI SANs (`urn:certdock:group:NAME`), so a decider needs
    /// nothing but the certificate to know them.
    pub groups: &'a BTreeSet<GroupName>,
    pub usage: Usage,
    pub ttl: Duration,
}

/// A signed leaf for a key someone else holds (a CSR, a renewal): everything but the key.
#[derive(Debug, Clone)]
pub struct SignedCert {
    pub serial: String,
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    /// The intermediate that signed it.
    pub chain_pem: String,
    /// Every CA certificate to trust (root and intermediates).
    pub ca_pem: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl SignedCert {
    pub fn fullchain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.chain_pem)
    }
}

impl AsRef<SignedCert> for SignedCert {
    fn as_ref(&self) -> &SignedCert {
        self
    }
}

/// A signed leaf with the key certdock generated for it: everything needed to deliver it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: SignedCert,
    pub key: SecretPem,
}

/// An issued certificate is a signed one plus its key: its certificate fields read through.
impl std::ops::Deref for Issued {
    type Target = SignedCert;
    fn deref(&self) -> &SignedCert {
        &self.cert
    }
}

impl AsRef<SignedCert> for Issued {
    fn as_ref(&self) -> &SignedCert {
        &self.cert
    }
}

fn san_type(san: &San) -> Result<SanType, CaError> {
    Ok(match san {
        San::Ip(ip) => SanType::IpAddress(*ip),
        San::Dns(d) => SanType::DnsName(
            d.as_str()
                .try_into()
                .map_err(|_| CaError::Internal(format!("{d} is not IA5")))?,
        ),
    })
}

/// Signs a leaf for `key` (the requester's public key) with the current intermediate.
pub fn sign_leaf(
    ca: &Authority,
    req: LeafRequest<'_>,
    key: &impl PublicKeyData,
    now: OffsetDateTime,
) -> Result<SignedCert, CaError> {
    let p = leaf_params(ca, &req, now)?;
    let cert = p.signed_by(key, ca.issuer()).map_err(CaError::Sign)?;
    let serial = p
        .serial_number
        .as_ref()
        .map(|s| hex::encode(s.to_bytes()))
        .unwrap_or_default();
    Ok(SignedCert {
        serial,
        cert_pem: cert_to_pem(cert.der()),
        cert_der: cert.der().clone(),
        chain_pem: ca.chain_pem(),
        ca_pem: ca.bundle_pem(),
        not_before: p.not_before,
        not_after: p.not_after,
    })
}

/// Generates a key of `key_type` and signs a leaf for it.
pub fn issue_leaf(
    ca: &Authority,
    req: LeafRequest<'_>,
    key_type: KeyType,
    now: OffsetDateTime,
) -> Result<Issued, CaError> {
    let key = key_type.generate_leaf().map_err(CaError::Sign)?;
    let cert = sign_leaf(ca, req, &key, now)?;
    Ok(Issued {
        cert,
        key: key.secret_pem(),
    })
}

/// The one place where a leaf's fields are decided.
fn leaf_params(
    ca: &Authority,
    req: &LeafRequest<'_>,
    now: OffsetDateTime,
) -> Result<CertificateParams, CaError> {
    // Certificates carry whole seconds; so do the times we report.
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.common_name);
    p.distinguished_name = dn;
    p.subject_alt_names = req.sans.iter().map(san_type).collect::<Result<_, _>>()?;
    for g in req.groups {
        p.subject_alt_names.push(SanType::URI(
            g.to_uri()
                .try_into()
                .map_err(|_| CaError::Internal(format!("group {g} is not IA5")))?,
        ));
    }
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = Vec::new();
    if req.usage.server {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if req.usage.client {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - BACKDATE;
    // A leaf never outlives the intermediate that vouches for it.
    p.not_after = std::cmp::min(now + req.ttl, ca.current().not_after);
    p.serial_number = Some(random_serial());
    Ok(p)
}

/// A random, positive 128-bit serial (RFC 5280 §4.1.2.2: positive, at most 20 octets). The
/// first octet is kept in 0x01..=0x7f so every serial has the same 16-octet encoding.
pub fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f).max(1);
    SerialNumber::from_slice(&bytes)
}
