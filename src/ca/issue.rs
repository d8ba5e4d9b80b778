//! Leaf certificates: the one place where a leaf's fields are decided.

use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SubjectPublicKeyInfo,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::authority::Authority;
use super::keys::{KeyType, SecretPem};
use super::pem::cert_to_pem;
use super::{CaError, random_serial};
use crate::core::names::{San, Usage};

/// How long before "now" a certificate starts, so peers with a slightly slow clock accept it.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// Where the leaf's key comes from.
pub enum LeafKey {
    /// certdock makes the key (controller, `certdock issue`): the caller gets it back.
    Generate(KeyType),
    /// The requester holds the key (a CSR): only its public half is known here.
    Public(SubjectPublicKeyInfo),
}

/// A fully checked request: names already passed policy, ttl already bounded.
pub struct LeafRequest<'a> {
    pub common_name: &'a str,
    pub sans: &'a [San],
    pub usage: Usage,
    pub ttl: Duration,
    pub key: LeafKey,
}

/// A signed leaf with everything needed to deliver it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub serial: String,
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    /// The intermediate that signed it.
    pub chain_pem: String,
    /// Every CA certificate to trust (root and intermediates).
    pub ca_pem: String,
    /// Present when certdock generated the key.
    pub key: Option<SecretPem>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Issued {
    pub fn fullchain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.chain_pem)
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

/// Signs a leaf with the authority's current intermediate.
pub fn sign_leaf(
    ca: &Authority,
    req: LeafRequest<'_>,
    now: OffsetDateTime,
) -> Result<Issued, CaError> {
    // Certificates carry whole seconds; so do the times we report.
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.common_name);
    p.distinguished_name = dn;
    p.subject_alt_names = req.sans.iter().map(san_type).collect::<Result<_, _>>()?;
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

    let (cert, key) = match req.key {
        LeafKey::Generate(kt) => {
            let key = kt.generate_leaf().map_err(CaError::Sign)?;
            let cert = p.signed_by(&key, ca.issuer()).map_err(CaError::Sign)?;
            (cert, Some(key.secret_pem()))
        }
        LeafKey::Public(spki) => {
            let cert = p.signed_by(&spki, ca.issuer()).map_err(CaError::Sign)?;
            (cert, None)
        }
    };
    let serial = p
        .serial_number
        .as_ref()
        .map(|s| hex::encode(s.to_bytes()))
        .unwrap_or_default();
    Ok(Issued {
        serial,
        cert_pem: cert_to_pem(cert.der()),
        cert_der: cert.der().clone(),
        chain_pem: ca.current().pem.clone(),
        ca_pem: ca.bundle_pem(),
        key,
        not_before: p.not_before,
        not_after: p.not_after,
    })
}
