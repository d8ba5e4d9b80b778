//! A private key in PEM that cannot end up in a log by accident.

use std::fmt;

/// A PEM-encoded private key. Its `Debug` is redacted and its text is reachable only through
/// [`SecretPem::secret_pem`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPem(String);

impl SecretPem {
    pub fn new(pem: String) -> Self {
        Self(pem)
    }

    pub fn secret_pem(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem([secret key elided])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let k = SecretPem::new("-----BEGIN PRIVATE KEY-----\nsecret\n".into());
        assert_eq!(format!("{k:?}"), "SecretPem([secret key elided])");
    }
}
