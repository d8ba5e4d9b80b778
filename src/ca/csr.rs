//! A CSR, parsed and its signature verified once, as a typed value every path then reuses.

use rcgen::{CertificateSigningRequestParams, SubjectPublicKeyInfo};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, GeneralName};

use super::CaError;
use super::pem::csr_from_pem;
use crate::core::names::{CertName, San};

/// Larger CSRs are refused unread; a real one is a few hundred bytes.
pub const MAX_CSR_PEM: usize = 64 * 1024;

/// The identity a verified CSR asks for: CN (or first SAN) as the name, its SANs (the CN among
/// them), and its public key. Anything else it requests (key usage, lifetime, CA status) is
/// ignored: the CA decides those, never the requester.
pub struct Csr {
    pub name: CertName,
    pub sans: Vec<San>,
    pub key: SubjectPublicKeyInfo,
}

impl std::fmt::Debug for Csr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Csr")
            .field("name", &self.name)
            .field("sans", &self.sans)
            .finish_non_exhaustive()
    }
}

fn bad(reason: impl Into<String>) -> CaError {
    CaError::BadCsr {
        reason: reason.into(),
    }
}

impl Csr {
    /// Parses a PEM `CERTIFICATE REQUEST` and verifies its signature.
    ///
    /// # Errors
    /// [`CaError::BadCsr`] naming the rule: too large, unreadable, badly signed, a SAN that is
    /// neither a DNS name nor an IP, an invalid name, or no name at all.
    pub fn parse(pem: &str) -> Result<Csr, CaError> {
        if pem.len() > MAX_CSR_PEM {
            return Err(bad("larger than 64 KiB"));
        }
        let der = csr_from_pem(pem)?;
        // rcgen checks the CSR's signature; x509-parser reads the fields rcgen does not expose.
        CertificateSigningRequestParams::from_der(&der)
            .map_err(|e| bad(format!("unreadable or badly signed: {e}")))?;
        let (_, parsed) =
            X509CertificationRequest::from_der(der.as_ref()).map_err(|e| bad(e.to_string()))?;
        let mut sans = Vec::new();
        for ext in parsed.requested_extensions().into_iter().flatten() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for gn in &san.general_names {
                    sans.push(san_of(gn)?);
                }
            }
        }
        let cn = parsed
            .certification_request_info
            .subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        // The CN is a name too: it must be among the SANs, so that policy sees it, and it is
        // written in the same normal form (lower case, no trailing dot) as its SAN.
        let cn = match &cn {
            Some(cn) => {
                let as_san = San::parse(cn).map_err(|e| bad(format!("subject CN: {e}")))?;
                if !sans.contains(&as_san) {
                    sans.insert(0, as_san.clone());
                }
                Some(as_san.to_string())
            }
            None => None,
        };
        let first = sans
            .first()
            .ok_or_else(|| bad("no names: give a CN or SANs"))?;
        let name = CertName::parse(cn.as_deref().unwrap_or(&first.to_string()))
            .map_err(|e| bad(e.to_string()))?;
        let key = SubjectPublicKeyInfo::from_der(parsed.certification_request_info.subject_pki.raw)
            .map_err(|e| bad(format!("public key: {e}")))?;
        sans.dedup();
        Ok(Csr { name, sans, key })
    }
}

fn san_of(gn: &GeneralName<'_>) -> Result<San, CaError> {
    match gn {
        GeneralName::DNSName(d) => San::parse(d).map_err(|e| bad(e.to_string())),
        GeneralName::IPAddress(b) => ip_of(b)
            .map(San::Ip)
            .ok_or_else(|| bad("an IP SAN of odd length")),
        other => Err(bad(format!(
            "unsupported SAN type {other:?}; only DNS names and IPs"
        ))),
    }
}

/// An IP address SAN's octets (4 or 16 of them).
pub fn ip_of(octets: &[u8]) -> Option<std::net::IpAddr> {
    match octets.len() {
        4 => <[u8; 4]>::try_from(octets).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(octets)
            .ok()
            .map(std::net::IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(cn: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_cn_is_normalised_like_its_san() {
        let c = Csr::parse(&csr("Web.Internal.")).unwrap();
        assert_eq!(c.name.as_str(), "web.internal");
        assert_eq!(c.sans, vec![San::parse("web.internal").unwrap()]);
    }
}
