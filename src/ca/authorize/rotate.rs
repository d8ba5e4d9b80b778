//! Who may rotate the CA's own certificates from the API (`POST /v1/ca/rotate`).

use time::OffsetDateTime;

use super::{AuthError, Viewer};
use crate::ca::local::LocalCa;
use crate::store::tokens::TokenKind;

/// What a caller asking for a rotation presents.
pub enum Rotator<'a> {
    /// An `admin` token: spent here, as for a revocation (a rotation changes the CA).
    AdminToken(&'a str),
    /// The verified client certificate on the connection (DER): an admin's only
    /// (`certdock issue NAME --usage client --admin`).
    Certificate(&'a [u8]),
}

impl LocalCa {
    /// May `who` rotate the intermediate (or, with `root`, the root)? The operator on the CA
    /// host needs no check: `certdock ca rotate` reads the state directory itself.
    pub fn authorize_rotate(
        &self,
        who: Rotator<'_>,
        root: bool,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        match who {
            Rotator::AdminToken(secret) => {
                let grant = self.with_tokens(|t| {
                    t.redeem(secret, &[TokenKind::Admin], now.unix_timestamp())
                })??;
                tracing::info!(root, token = %grant.id, "CA rotation with an admin token");
            }
            Rotator::Certificate(der) => {
                self.authorize_view(Viewer::Certificate(der), now)?;
                tracing::info!(root, "CA rotation by an admin certificate");
            }
        }
        Ok(())
    }
}
