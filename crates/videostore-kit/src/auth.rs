//! Bearer tokens: signed (HMAC-SHA256), expiring JWTs that carry the account id and role.
//!
//! The stock service issues them at sign-in; every service verifies them locally with the shared
//! key, so no request needs a round trip to stock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;

use crate::{
    error::{Code, ServiceError},
    ids::AccountId,
};

/// The issuer and audience written into every token, so tokens of other systems signed with the
/// same key by mistake are refused.
const ISSUER: &str = "videostore";

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Rents and buys.
    Customer,
    /// Runs the shop.
    Staff,
}

/// Why a call's credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, or one that is not valid (UNAUTHENTICATED): sign in again.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A valid token without the right (PERMISSION_DENIED).
    #[error("only staff may do this")]
    NotStaff,
}

impl ServiceError for AuthError {
    fn code(&self) -> Code {
        match self {
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::NotStaff => Code::PermissionDenied,
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        crate::error::status(&error)
    }
}

/// The verified holder of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Account id.
    pub account_id: AccountId,
    /// Account email, for logs and the desk.
    pub email: String,
    /// Customer or staff.
    pub role: Role,
}

impl Caller {
    /// Whether the caller is staff.
    pub fn is_staff(&self) -> bool {
        self.role == Role::Staff
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// Account id, as a string per RFC 7519.
    sub: String,
    email: String,
    role: Role,
    iss: String,
    iat: u64,
    exp: u64,
}

/// Signs and verifies tokens with one shared key.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token to send as `authorization: Bearer <token>`.
    pub token: String,
    /// When it expires.
    pub expires_at: SystemTime,
}

impl TokenKeys {
    /// Keys from a secret of at least 32 bytes.
    pub fn new(secret: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            secret.len() >= 32,
            "the token secret must be at least 32 bytes long (it is {})",
            secret.len()
        );
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// Issues a token for an account, valid for `ttl` from `now`.
    pub fn issue(
        &self,
        caller: &Caller,
        now: SystemTime,
        ttl: Duration,
    ) -> anyhow::Result<IssuedToken> {
        let iat = now.duration_since(UNIX_EPOCH)?.as_secs();
        let expires_at = now + ttl;
        let claims = Claims {
            sub: caller.account_id.get().to_string(),
            email: caller.email.clone(),
            role: caller.role,
            iss: ISSUER.to_owned(),
            iat,
            exp: iat + ttl.as_secs(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken { token, expires_at })
    }

    /// Verifies a token: signature, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        const NOT_VALID: AuthError =
            AuthError::Unauthenticated("the token is not valid: sign in again");
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    AuthError::Unauthenticated("the token has expired: sign in again")
                }
                _ => NOT_VALID,
            })?;
        let account_id = data.claims.sub.parse().map_err(|_| NOT_VALID)?;
        Ok(Caller {
            account_id: AccountId::new(account_id),
            email: data.claims.email,
            role: data.claims.role,
        })
    }

    /// The caller named by the request's `authorization` metadata, if it has any.
    ///
    /// No header is `Ok(None)`; a header that is not a valid bearer token is UNAUTHENTICATED.
    pub fn caller(&self, metadata: &MetadataMap) -> Result<Option<Caller>, AuthError> {
        let Some(value) = metadata.get("authorization") else {
            return Ok(None);
        };
        let value = value.to_str().map_err(|_| {
            AuthError::Unauthenticated("the authorization header is not valid text")
        })?;
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).ok_or(
            AuthError::Unauthenticated("the authorization header must be `Bearer <token>`"),
        )?;
        self.verify(token.trim()).map(Some)
    }

    /// The signed-in caller, or UNAUTHENTICATED.
    pub fn require_signed_in(&self, metadata: &MetadataMap) -> Result<Caller, AuthError> {
        self.caller(metadata)?
            .ok_or(AuthError::Unauthenticated("sign in first: this call needs a bearer token"))
    }

    /// A staff caller, or UNAUTHENTICATED / PERMISSION_DENIED.
    pub fn require_staff(&self, metadata: &MetadataMap) -> Result<Caller, AuthError> {
        let caller = self.require_signed_in(metadata)?;
        if caller.is_staff() { Ok(caller) } else { Err(AuthError::NotStaff) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&[7u8; 32]).unwrap()
    }

    fn alice() -> Caller {
        Caller {
            account_id: AccountId::new(42),
            email: "alice@example.com".into(),
            role: Role::Customer,
        }
    }

    #[test]
    fn issued_token_verifies_to_the_same_caller() {
        let issued = keys().issue(&alice(), SystemTime::now(), Duration::from_secs(60)).unwrap();
        assert_eq!(keys().verify(&issued.token).unwrap(), alice());
    }

    #[test]
    fn expired_token_is_refused() {
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let issued = keys().issue(&alice(), long_ago, Duration::from_secs(60)).unwrap();
        let refused = keys().verify(&issued.token).unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert!(refused.to_string().contains("expired"));
    }

    #[test]
    fn token_signed_with_another_key_is_refused() {
        let other = TokenKeys::new(&[8u8; 32]).unwrap();
        let issued = other.issue(&alice(), SystemTime::now(), Duration::from_secs(60)).unwrap();
        assert_eq!(keys().verify(&issued.token).unwrap_err().code(), Code::Unauthenticated);
    }

    #[test]
    fn customer_is_not_staff() {
        let issued = keys().issue(&alice(), SystemTime::now(), Duration::from_secs(60)).unwrap();
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", format!("Bearer {}", issued.token).parse().unwrap());
        assert_eq!(keys().require_signed_in(&metadata).unwrap().account_id, AccountId::new(42));
        assert_eq!(keys().require_staff(&metadata).unwrap_err(), AuthError::NotStaff);
        assert_eq!(
            keys().require_staff(&MetadataMap::new()).unwrap_err().code(),
            Code::Unauthenticated
        );
    }

    #[test]
    fn short_secret_is_rejected() {
        assert!(TokenKeys::new(b"short").is_err());
    }
}
