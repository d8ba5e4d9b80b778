//! The certificate revocation list, signed by the current intermediate.

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;

use super::CaError;
use super::authority::Authority;

/// How long a CRL is valid; fetchers must come back before then.
pub const CRL_VALIDITY: time::Duration = time::Duration::hours(24);

/// One revoked certificate, as the inventory knows it.
pub struct RevokedEntry<'a> {
    pub serial_hex: &'a str,
    pub revoked_at: OffsetDateTime,
}

/// DER CRL listing `revoked`. `number` must grow with every new CRL (the caller uses time).
pub fn build_crl(
    ca: &Authority,
    revoked: &[RevokedEntry<'_>],
    number: u64,
    now: OffsetDateTime,
) -> Result<Vec<u8>, CaError> {
    let revoked_certs = revoked
        .iter()
        .map(|r| {
            let bytes = hex::decode(r.serial_hex).map_err(|_| {
                CaError::Internal(format!("bad serial in inventory: {}", r.serial_hex))
            })?;
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: r.revoked_at,
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, CaError>>()?;
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(1),
        next_update: now + CRL_VALIDITY,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(ca.issuer()).map_err(CaError::Sign)?;
    Ok(crl.der().to_vec())
}
