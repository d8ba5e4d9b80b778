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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::ca::authority::CaLifetimes;
    use crate::ca::authorize::{Local, Order};
    use crate::ca::keys::KeyType;
    use crate::ca::local::{OpenMode, Policy};
    use crate::core::names::{CertName, San, Usage};
    use crate::store::tokens::TokenError;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn ca() -> (tempfile::TempDir, LocalCa) {
        let dir = tempfile::tempdir().unwrap();
        let mode = OpenMode::CreateIfMissing(KeyType::EcdsaP256);
        let ca = LocalCa::open(
            dir.path(),
            Policy::default(),
            CaLifetimes::default(),
            mode,
            now(),
        );
        (dir, ca.unwrap())
    }

    /// The DER of a certificate `who` gets for `name` with `usage` and the admin group.
    fn admin_group_cert(ca: &LocalCa, who: Local, name: &str, usage: Usage) -> Vec<u8> {
        let order = Order {
            name: CertName::parse(name).unwrap(),
            sans: vec![San::parse(name).unwrap()],
            usage,
            groups: BTreeSet::from([GroupName::parse(ADMIN_GROUP).unwrap()]),
            ttl: None,
            key_type: KeyType::EcdsaP256,
        };
        let auth = ca.authorize_local(who, order).unwrap();
        let issued = ca.sign(auth, now()).unwrap().wait().unwrap();
        issued.cert.cert_der.to_vec()
    }

    fn token(ca: &LocalCa, kind: TokenKind) -> String {
        let expires = now().unix_timestamp() + 3600;
        let (_, secret) = ca
            .with_tokens(|t| t.create("me", kind, vec![], expires))
            .unwrap()
            .unwrap();
        secret.secret_str().to_string()
    }

    #[test]
    fn only_an_operator_issued_client_certificate_with_the_admin_group_is_an_admin() {
        let (_dir, ca) = ca();
        let ops = admin_group_cert(&ca, Local::Operator, "ops", Usage::CLIENT);
        assert!(ca.authorize_view(Viewer::Certificate(&ops), now()).is_ok());
        // A container may carry any group its labels name: that makes no admin.
        let labelled = admin_group_cert(&ca, Local::Controller, "web", Usage::CLIENT);
        let server = admin_group_cert(&ca, Local::Operator, "srv", Usage::SERVER);
        for der in [&labelled, &server] {
            assert!(matches!(
                ca.authorize_view(Viewer::Certificate(der), now()),
                Err(AuthError::NotAnAdmin)
            ));
        }
        ca.revoke(
            &crate::ca::facts::CertFacts::from_der("t", &ops)
                .unwrap()
                .serial,
            now(),
        )
        .unwrap();
        assert!(ca.authorize_view(Viewer::Certificate(&ops), now()).is_err());
    }

    #[test]
    fn viewing_checks_an_admin_token_and_logging_in_spends_it() {
        let (_dir, ca) = ca();
        let admin = token(&ca, TokenKind::Admin);
        for _ in 0..2 {
            assert!(ca.authorize_view(Viewer::AdminToken(&admin), now()).is_ok());
        }
        assert!(ca.authorize_login(&admin, now()).is_ok());
        for result in [
            ca.authorize_view(Viewer::AdminToken(&admin), now()),
            ca.authorize_login(&admin, now()).map(drop),
        ] {
            assert!(matches!(result, Err(AuthError::Token(TokenError::Used))));
        }
        let sign = token(&ca, TokenKind::Sign);
        assert!(matches!(
            ca.authorize_login(&sign, now()),
            Err(AuthError::Token(TokenError::WrongKind { .. }))
        ));
        // A refused login spends nothing: the sign token is still good for signing.
        let unspent =
            ca.with_tokens(|t| t.check(&sign, &[TokenKind::Sign], now().unix_timestamp()));
        assert!(unspent.unwrap().is_ok());
    }

    #[test]
    fn an_admins_certificate_revokes_others_and_identities_and_a_plain_one_only_itself() {
        use crate::ca::authorize::{RevokeTarget, Revoker};
        let (_dir, ca) = ca();
        let serial = |der: &[u8]| {
            crate::ca::facts::CertFacts::from_der("t", der)
                .unwrap()
                .serial
        };
        let ops = admin_group_cert(&ca, Local::Operator, "ops", Usage::CLIENT);
        let web = admin_group_cert(&ca, Local::Controller, "web", Usage::CLIENT);
        let web_serial = serial(&web);
        let by = |der| Revoker::Itself(der);
        assert!(matches!(
            ca.authorize_revoke(by(&web), RevokeTarget::Serial(&serial(&ops)), now()),
            Err(AuthError::NotYourCertificate)
        ));
        assert!(matches!(
            ca.authorize_revoke(by(&web), RevokeTarget::Identity("web"), now()),
            Err(AuthError::NotYourCertificate)
        ));
        assert!(
            ca.authorize_revoke(by(&web), RevokeTarget::Serial(&web_serial), now())
                .is_ok()
        );
        assert!(
            ca.authorize_revoke(by(&ops), RevokeTarget::Serial(&web_serial), now())
                .is_ok()
        );
        assert!(
            ca.authorize_revoke(by(&ops), RevokeTarget::Identity("web"), now())
                .is_ok()
        );
        assert_eq!(ca.revoke_name("web", now()).unwrap(), vec![web_serial]);
        assert!(matches!(
            ca.revoke_name("web", now()),
            Err(crate::ca::CaError::NoLiveCertificate { .. })
        ));
    }
}
