//! Reading the CA's CRL on a host that is not the CA (an agent): verified against the CA bundle
//! it pinned, then its revoked serials feed the [`super::decider::Decider`].

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrlError {
    #[error("the CRL is unreadable: {0}")]
    Unreadable(String),
    #[error("the CRL is not signed by a certificate of the CA bundle")]
    NotSigned,
    #[error("the CRL is stale: its next update was {next_update}")]
    Stale { next_update: OffsetDateTime },
    #[error("CRL number {got} is older than the last one seen ({seen})")]
    Rollback { got: String, seen: String },
}

/// What a verified CRL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlFacts {
    /// The CRL number, big-endian: CRLs only move forward.
    pub number: Vec<u8>,
    pub this_update: OffsetDateTime,
    /// Serials (big-endian bytes, no leading zeros).
    pub revoked: Vec<Vec<u8>>,
}

/// Verifies `der` with the CA certificates in `bundle` and returns its revoked serials. A CRL
/// past its next update, or older than `last_number`, is refused: the caller keeps what it had
/// and says so.
pub fn read_crl(
    der: &[u8],
    bundle: &[CertificateDer<'_>],
    last_number: Option<&[u8]>,
    now: OffsetDateTime,
) -> Result<CrlFacts, CrlError> {
    let (_, crl) = CertificateRevocationList::from_der(der)
        .map_err(|e| CrlError::Unreadable(e.to_string()))?;
    let signed = bundle.iter().any(|ca| {
        X509Certificate::from_der(ca).is_ok_and(|(_, c)| {
            c.subject() == crl.issuer() && crl.verify_signature(c.public_key()).is_ok()
        })
    });
    if !signed {
        return Err(CrlError::NotSigned);
    }
    if let Some(next) = crl.next_update() {
        let next = next.to_datetime();
        if next <= now {
            return Err(CrlError::Stale { next_update: next });
        }
    }
    let number = crl
        .crl_number()
        .map(|n| n.to_bytes_be())
        .unwrap_or_default();
    if let Some(seen) = last_number
        && newer(seen, &number)
    {
        return Err(CrlError::Rollback {
            got: hex::encode(&number),
            seen: hex::encode(seen),
        });
    }
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| trim(r.raw_serial()))
        .collect();
    Ok(CrlFacts {
        number,
        this_update: crl.last_update().to_datetime(),
        revoked,
    })
}

fn trim(b: &[u8]) -> Vec<u8> {
    let zeros = b.iter().take_while(|x| **x == 0).count();
    b[zeros.min(b.len().saturating_sub(1))..].to_vec()
}

/// Whether big-endian `a` is greater than `b`.
fn newer(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (trim(a), trim(b));
    (a.len(), a.as_slice()) > (b.len(), b.as_slice())
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
    };
    use time::Duration;

    use super::*;

    struct Ca {
        cert: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        Ca {
            cert: cert.der().clone(),
            issuer: Issuer::new(p, key),
        }
    }

    fn crl(ca: &Ca, number: u64, serials: &[&[u8]], next: Duration) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + next,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca.issuer)
        .unwrap()
        .der()
        .to_vec()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn a_crl_of_the_bundle_gives_its_serials() {
        let ca = ca("ours");
        let der = crl(&ca, 5, &[&[0x42], &[0x01, 0x02]], Duration::hours(1));
        let facts = read_crl(&der, std::slice::from_ref(&ca.cert), None, now()).unwrap();
        assert_eq!(facts.revoked, vec![vec![0x42], vec![0x01, 0x02]]);
        assert_eq!(trim(&facts.number), vec![5]);
    }

    #[test]
    fn a_crl_signed_by_another_ca_is_refused() {
        let (ours, theirs) = (ca("ours"), ca("theirs"));
        let der = crl(&theirs, 5, &[&[0x42]], Duration::hours(1));
        assert_eq!(
            read_crl(&der, std::slice::from_ref(&ours.cert), None, now()),
            Err(CrlError::NotSigned)
        );
        assert!(matches!(
            read_crl(b"junk", std::slice::from_ref(&ours.cert), None, now()),
            Err(CrlError::Unreadable(_))
        ));
    }

    #[test]
    fn a_stale_or_older_crl_is_refused() {
        let ca = ca("ours");
        let der = crl(&ca, 5, &[], Duration::hours(1));
        assert!(matches!(
            read_crl(
                &der,
                std::slice::from_ref(&ca.cert),
                None,
                now() + Duration::hours(2)
            ),
            Err(CrlError::Stale { .. })
        ));
        assert!(matches!(
            read_crl(&der, std::slice::from_ref(&ca.cert), Some(&[6]), now()),
            Err(CrlError::Rollback { .. })
        ));
        assert!(read_crl(&der, std::slice::from_ref(&ca.cert), Some(&[0, 5]), now()).is_ok());
        assert!(read_crl(&der, std::slice::from_ref(&ca.cert), Some(&[4]), now()).is_ok());
    }
}
