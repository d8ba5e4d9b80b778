//! Who may look at the whole CA (`GET /ui`, `GET /v1/status`) and how an admin logs in.

use time::OffsetDateTime;

use super::AuthError;
use crate::ca::local::LocalCa;
use crate::core::authz::GroupName;
use crate::store::requester::Requester;
use crate::store::tokens::{TokenGrant, TokenKind};

/// The group that makes an operator-issued client certificate an admin's
/// (`certdock issue NAME --usage client --admin`).
pub const ADMIN_GROUP: &str = "certdock-admin";

/// What a viewer presents.
pub enum Viewer<'a> {
    /// `Authorization: Bearer` with an `admin` token: checked, not spent (reading changes
    /// nothing; the token still expires, and spending it elsewhere ends this use too).
    AdminToken(&'a str),
    /// The verified client certificate on the connection (DER).
    Certificate(&'a [u8]),
    /// A session the login made (looked up by the API's session store, which alone builds it).
    Session,
}

impl LocalCa {
    /// May `who` read everything the CA knows (certificates, agents, events)?
    pub fn authorize_view(&self, who: Viewer<'_>, now: OffsetDateTime) -> Result<(), AuthError> {
        match who {
            Viewer::Session => Ok(()),
            Viewer::AdminToken(secret) => {
                let grant = self.with_tokens(|t| {
                    t.check(secret, &[TokenKind::Admin], now.unix_timestamp())
                })??;
                tracing::debug!(token = %grant.id, "viewing with an admin token");
                Ok(())
            }
            Viewer::Certificate(der) => {
                let record = self.verify_presented(der, now)?;
                // Only the operator on the CA host (`certdock issue`) makes admins: a label, a
                // token or an agent may ask for any group, so the group alone proves nothing.
                let admin = GroupName::parse(ADMIN_GROUP)
                    .map_err(|e| AuthError::Ca(crate::ca::CaError::Internal(e.to_string())))?;
                if record.requester == Requester::Cli
                    && record.usage.client
                    && record.groups.contains(&admin)
                {
                    Ok(())
                } else {
                    Err(AuthError::NotAnAdmin)
                }
            }
        }
    }

    /// The login form's exchange: an `admin` token is spent for a session, so a token that
    /// leaked after the login (history, a shoulder) opens nothing.
    pub fn authorize_login(
        &self,
        secret: &str,
        now: OffsetDateTime,
    ) -> Result<TokenGrant, AuthError> {
        let grant =
            self.with_tokens(|t| t.redeem(secret, &[TokenKind::Admin], now.unix_timestamp()))??;
        tracing::info!(token = %grant.id, "admin logged in to the UI");
        Ok(grant)
    }
}
