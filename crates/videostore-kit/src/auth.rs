//! Bearer tokens: expiring JWTs that carry the account id and role, signed with Ed25519.
//!
//! Only stock holds the private key and issues tokens (at sign-in); every service verifies them
//! locally with the public keys, so no request needs a round trip to stock, and no other service
//! (nor anything with its configuration) can make one. Each token names its key (`kid`, the
//! key's RFC 7638 thumbprint), so a new key can be brought in next to the old one and the old
//! one dropped once its last tokens have expired, without downtime (README: "Tokens").

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use ed25519_dalek::{
    SigningKey, VerifyingKey,
    pkcs8::{
        DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey,
        spki::der::pem::LineEnding,
    },
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tonic::metadata::MetadataMap;

use crate::{
    error::{Code, ServiceError},
    ids::AccountId,
};

/// The issuer written into every token.
const ISSUER: &str = "videostore";
/// The audience of every access token: the video store's services. A token made for anything
/// else, even if signed by a key they trust, is refused.
const AUDIENCE: &str = "videostore";
/// The audience of refresh tokens: stock's Refresh and SignOut only. A refresh token sent as a
/// bearer token is refused, and an access token is no refresh token.
const REFRESH_AUDIENCE: &str = "videostore-refresh";

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
    aud: String,
    iat: u64,
    exp: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct RefreshClaims {
    /// Account id.
    sub: String,
    iss: String,
    aud: String,
    iat: u64,
    exp: u64,
    /// The account's session version when issued: a sign-out since makes it stale.
    ver: i64,
}

/// What a verified refresh token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshGrant {
    /// The account it was issued to.
    pub account_id: AccountId,
    /// The account's session version then.
    pub session_version: i64,
}

/// An Ed25519 key pair for tokens, as PEM: the private key (PKCS#8, for stock only) and the
/// public key (SPKI, for every service), as `openssl genpkey -algorithm ed25519` and
/// `openssl pkey -pubout` write them.
#[derive(Clone)]
pub struct KeyPairPem {
    /// `-----BEGIN PRIVATE KEY-----`…
    pub private: String,
    /// `-----BEGIN PUBLIC KEY-----`…
    pub public: String,
}

impl std::fmt::Debug for KeyPairPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPairPem").field("public", &self.public).finish_non_exhaustive()
    }
}

impl KeyPairPem {
    /// A new random key pair.
    pub fn generate() -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
        let key = SigningKey::from_bytes(&seed);
        Ok(Self {
            private: key.to_pkcs8_pem(LineEnding::LF)?.to_string(),
            public: key.verifying_key().to_public_key_pem(LineEnding::LF)?,
        })
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key: its `kid`.
fn key_id(key: &VerifyingKey) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64.encode(key.as_bytes()));
    b64.encode(sha2::Sha256::digest(jwk.as_bytes()))
}

/// Issues tokens: stock's private key.
#[derive(Clone)]
pub struct TokenSigner {
    kid: String,
    public: VerifyingKey,
    encoding: EncodingKey,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("kid", &self.kid).finish_non_exhaustive()
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

impl TokenSigner {
    /// The signer of an Ed25519 private key in PKCS#8 PEM.
    pub fn from_pem(private_pem: &str) -> anyhow::Result<Self> {
        let key = SigningKey::from_pkcs8_pem(private_pem.trim()).map_err(|error| {
            anyhow::anyhow!("the token signing key is not an Ed25519 private key in PEM: {error}")
        })?;
        let der = key.to_pkcs8_der()?;
        Ok(Self {
            kid: key_id(&key.verifying_key()),
            public: key.verifying_key(),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
        })
    }

    /// The public half, as SPKI PEM: what every service is given to verify with.
    pub fn public_pem(&self) -> anyhow::Result<String> {
        Ok(self.public.to_public_key_pem(LineEnding::LF)?)
    }

    /// The key's id, written into each token it signs.
    pub fn kid(&self) -> &str {
        &self.kid
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
            aud: AUDIENCE.to_owned(),
            iat,
            exp: iat + ttl.as_secs(),
        };
        self.sign(&claims, expires_at)
    }

    /// Issues a refresh token for an account at its current session version.
    pub fn issue_refresh(
        &self,
        account_id: AccountId,
        session_version: i64,
        now: SystemTime,
        ttl: Duration,
    ) -> anyhow::Result<IssuedToken> {
        let iat = now.duration_since(UNIX_EPOCH)?.as_secs();
        let claims = RefreshClaims {
            sub: account_id.get().to_string(),
            iss: ISSUER.to_owned(),
            aud: REFRESH_AUDIENCE.to_owned(),
            iat,
            exp: iat + ttl.as_secs(),
            ver: session_version,
        };
        self.sign(&claims, now + ttl)
    }

    fn sign(&self, claims: &impl Serialize, expires_at: SystemTime) -> anyhow::Result<IssuedToken> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, claims, &self.encoding)?;
        Ok(IssuedToken { token, expires_at })
    }
}

/// Verifies tokens with the public keys the store trusts, by their ids.
#[derive(Clone)]
pub struct TokenKeys {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    refresh_validation: Validation,
    /// Access tokens whose signature and claims checked out, with their holder and expiry,
    /// until they expire (see [`TokenKeys::verify_session`]).
    verified: Arc<quick_cache::sync::Cache<String, (Caller, SystemTime)>>,
}

/// How many verified access tokens a process remembers: about 2 MB at most, and a client
/// makes many calls with one token.
const VERIFIED_TOKENS: usize = 10_000;

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").field("kids", &self.keys.keys()).finish()
    }
}

impl TokenKeys {
    /// The verifier of tokens signed by any of the Ed25519 public keys in `public_pem` (one or
    /// more SPKI PEM blocks, one after another), and by `signer`'s own key if given.
    pub fn new(public_pem: &str, signer: Option<&TokenSigner>) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        for block in pem_blocks(public_pem) {
            let key = VerifyingKey::from_public_key_pem(block).map_err(|error| {
                anyhow::anyhow!("a token verify key is not an Ed25519 public key in PEM: {error}")
            })?;
            keys.insert(key_id(&key), DecodingKey::from_ed_der(key.as_bytes()));
        }
        if let Some(signer) = signer {
            keys.insert(signer.kid.clone(), DecodingKey::from_ed_der(signer.public.as_bytes()));
        }
        anyhow::ensure!(!keys.is_empty(), "no token verify key is configured");
        // EdDSA only: a token of any other algorithm (`none`, or HS256 made with a public key
        // taken for a secret) is refused before its signature is looked at.
        let validation = |audience: &str| {
            let mut validation = Validation::new(Algorithm::EdDSA);
            validation.set_issuer(&[ISSUER]);
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.leeway = 5;
            validation
        };
        Ok(Self {
            keys,
            validation: validation(AUDIENCE),
            refresh_validation: validation(REFRESH_AUDIENCE),
            verified: Arc::new(quick_cache::sync::Cache::new(VERIFIED_TOKENS)),
        })
    }

    /// The ids of the keys trusted.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Verifies an access token: algorithm, key, signature, issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify_session(token).map(|(caller, _)| caller)
    }

    /// [`TokenKeys::verify`], with when the token expires.
    ///
    /// A token that verified once is remembered until it expires: a token is the same bytes
    /// on every call of its holder, and what it says cannot change. Checking its Ed25519
    /// signature each time took a third of stock's own CPU in the PostgreSQL rentals bench
    /// (`perf record -a` during `bench postgres`: 7% of all samples, the database's included).
    /// Remembering them took `bench rentals` (SQLite) from 5,557 to 7,262 and 8,709 rent+return
    /// pairs a second in two runs; on PostgreSQL the database bounds the rentals, which stayed
    /// within their noise (1,884 before; 1,661 and 1,949 after, on three replicas).
    /// Only what verified is kept, under the token's exact text; a remembered token is given
    /// back only before its expiry (without the leeway, which the full check then applies);
    /// the keys are fixed for the process's life. Whether a session is still current (sign-out,
    /// role changes) is checked after this, as before.
    pub fn verify_session(&self, token: &str) -> Result<(Caller, SystemTime), AuthError> {
        if let Some((caller, expires_at)) = self.verified.get(token)
            && SystemTime::now() < expires_at
        {
            return Ok((caller, expires_at));
        }
        let verified = self.check_session(token)?;
        self.verified.insert(token.to_owned(), verified.clone());
        Ok(verified)
    }

    /// Checks an access token in full: algorithm, key, signature, issuer, audience, expiry.
    fn check_session(&self, token: &str) -> Result<(Caller, SystemTime), AuthError> {
        let claims: Claims = self.decode(
            token,
            &self.validation,
            "the token has expired: refresh it or sign in again",
        )?;
        let account_id = claims.sub.parse().map_err(|_| NOT_VALID)?;
        let caller = Caller {
            account_id: AccountId::new(account_id),
            email: claims.email,
            role: claims.role,
        };
        Ok((caller, UNIX_EPOCH + Duration::from_secs(claims.exp)))
    }

    /// Verifies a refresh token (algorithm, key, signature, issuer, its own audience, expiry):
    /// whether it is still current is the account's to say.
    pub fn verify_refresh(&self, token: &str) -> Result<RefreshGrant, AuthError> {
        let claims: RefreshClaims =
            self.decode(token, &self.refresh_validation, "the session has expired: sign in again")?;
        let account_id = claims.sub.parse().map_err(|_| NOT_VALID)?;
        Ok(RefreshGrant { account_id: AccountId::new(account_id), session_version: claims.ver })
    }

    fn decode<C: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
        expired: &'static str,
    ) -> Result<C, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| NOT_VALID)?;
        let key = header.kid.as_deref().and_then(|kid| self.keys.get(kid)).ok_or(NOT_VALID)?;
        jsonwebtoken::decode::<C>(token, key, validation).map(|data| data.claims).map_err(|error| {
            match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    AuthError::Unauthenticated(expired)
                }
                _ => NOT_VALID,
            }
        })
    }

    /// The caller named by the request's `authorization` metadata, if it has any.
    ///
    /// No header is `Ok(None)`; a header that is not a valid bearer token is UNAUTHENTICATED.
    pub fn caller(&self, metadata: &MetadataMap) -> Result<Option<Caller>, AuthError> {
        bearer(metadata)?.map(|token| self.verify(token)).transpose()
    }

    /// The signed-in caller, or UNAUTHENTICATED.
    pub fn require_signed_in(&self, metadata: &MetadataMap) -> Result<Caller, AuthError> {
        self.caller(metadata)?
            .ok_or(AuthError::Unauthenticated("sign in first: this call needs a bearer token"))
    }

    /// A staff caller, or UNAUTHENTICATED / PERMISSION_DENIED.
    pub fn require_staff(&self, metadata: &MetadataMap) -> Result<Caller, AuthError> {
        self.require_staff_session(metadata).map(|session| session.caller)
    }

    /// A staff caller and when its token expires: for long streams, which check it again at
    /// each command.
    pub fn require_staff_session(&self, metadata: &MetadataMap) -> Result<Session, AuthError> {
        let token = bearer(metadata)?
            .ok_or(AuthError::Unauthenticated("sign in first: this call needs a bearer token"))?;
        let (caller, expires_at) = self.verify_session(token)?;
        if caller.is_staff() {
            Ok(Session { caller, expires_at })
        } else {
            Err(AuthError::NotStaff)
        }
    }
}

/// The refusal of a token that does not verify, whatever the reason (not said, to not help
/// forgers).
const NOT_VALID: AuthError = AuthError::Unauthenticated("the token is not valid: sign in again");

/// A staff caller whose token was checked at the start of a long stream.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub caller: Caller,
    /// When the token expires: the stream checks it again at every command.
    pub expires_at: SystemTime,
}

impl Session {
    /// UNAUTHENTICATED once the token has expired (with the same leeway as at the start).
    pub fn check(&self, now: SystemTime) -> Result<(), AuthError> {
        if now > self.expires_at + Duration::from_secs(5) {
            Err(AuthError::Unauthenticated(
                "the token has expired: refresh it and open the stream again",
            ))
        } else {
            Ok(())
        }
    }
}

/// The bearer token of the request's `authorization` metadata, if it has one.
fn bearer(metadata: &MetadataMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Unauthenticated("the authorization header is not valid text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AuthError::Unauthenticated("the authorization header must be `Bearer <token>`"))?;
    Ok(Some(token.trim()))
}

/// The PEM blocks of `text`, each from its `-----BEGIN` line to its `-----END …-----` line.
fn pem_blocks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find("-----BEGIN ")?;
        let end_marker = rest[start..].find("-----END ")? + start;
        let end = rest[end_marker + 9..].find("-----").map(|i| end_marker + 9 + i + 5)?;
        let block = &rest[start..end];
        rest = &rest[end..];
        Some(block)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;

    static PAIR: LazyLock<KeyPairPem> = LazyLock::new(|| KeyPairPem::generate().unwrap());
    static OTHER: LazyLock<KeyPairPem> = LazyLock::new(|| KeyPairPem::generate().unwrap());

    fn signer() -> TokenSigner {
        TokenSigner::from_pem(&PAIR.private).unwrap()
    }

    fn keys() -> TokenKeys {
        TokenKeys::new(&PAIR.public, None).unwrap()
    }

    fn alice() -> Caller {
        Caller {
            account_id: AccountId::new(42),
            email: "alice@example.com".into(),
            role: Role::Customer,
        }
    }

    fn claims(role: Role, aud: &str) -> Claims {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        Claims {
            sub: "42".into(),
            email: "alice@example.com".into(),
            role,
            iss: ISSUER.into(),
            aud: aud.into(),
            iat: now,
            exp: now + 600,
        }
    }

    #[test]
    fn issued_token_verifies_to_the_same_caller_and_names_its_key() {
        let issued = signer().issue(&alice(), SystemTime::now(), Duration::from_secs(60)).unwrap();
        assert_eq!(keys().verify(&issued.token).unwrap(), alice());
        let header = jsonwebtoken::decode_header(&issued.token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(signer().kid()));
        // A verifier given only the signer knows its key too.
        let own = TokenKeys::new("", Some(&signer())).unwrap();
        assert_eq!(own.verify(&issued.token).unwrap(), alice());
    }

    #[test]
    fn the_key_id_is_the_rfc_7638_thumbprint() {
        // RFC 8037, appendix A.3: the thumbprint of its example Ed25519 key.
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(key_id(&key), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn expired_token_is_refused() {
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let issued = signer().issue(&alice(), long_ago, Duration::from_secs(60)).unwrap();
        let refused = keys().verify(&issued.token).unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert!(refused.to_string().contains("expired"));
    }

    #[test]
    fn a_remembered_token_is_given_back_only_unchanged_and_until_it_expires() {
        let keys = keys();
        let issued = signer().issue(&alice(), SystemTime::now(), Duration::from_secs(60)).unwrap();
        assert_eq!(keys.verify(&issued.token).unwrap(), alice());
        assert!(keys.verified.get(issued.token.as_str()).is_some(), "remembered");
        assert_eq!(keys.verify(&issued.token).unwrap(), alice(), "and given back");
        // Any other text is checked in full, however close to a remembered token.
        let mut edited = issued.token.clone().into_bytes();
        let last = edited.len() - 10;
        edited[last] = if edited[last] == b'A' { b'B' } else { b'A' };
        let edited = String::from_utf8(edited).unwrap();
        assert_eq!(keys.verify(&edited).unwrap_err().code(), Code::Unauthenticated);
        // A token remembered while it was current is refused once it has expired.
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let old = signer().issue(&alice(), long_ago, Duration::from_secs(60)).unwrap();
        keys.verified.insert(old.token.clone(), (alice(), old.expires_at));
        let refused = keys.verify(&old.token).unwrap_err();
        assert!(refused.to_string().contains("expired"), "{refused}");
    }

    #[test]
    fn tokens_of_keys_not_trusted_are_refused_and_rotation_trusts_both() {
        let other = TokenSigner::from_pem(&OTHER.private).unwrap();
        let issued = other.issue(&alice(), SystemTime::now(), Duration::from_secs(60)).unwrap();
        assert_eq!(keys().verify(&issued.token).unwrap_err().code(), Code::Unauthenticated);
        // During a rotation every service trusts the old key and the new one.
        let both = TokenKeys::new(&format!("{}\n{}", PAIR.public, OTHER.public), None).unwrap();
        assert_eq!(both.kids().count(), 2);
        assert_eq!(both.verify(&issued.token).unwrap(), alice());
        let old = signer().issue(&alice(), SystemTime::now(), Duration::from_secs(60)).unwrap();
        assert_eq!(both.verify(&old.token).unwrap(), alice());
        // A token whose kid was swapped for a trusted one does not verify either.
        let forged_kid = {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(signer().kid().to_owned());
            let key = EncodingKey::from_ed_der(
                SigningKey::from_pkcs8_pem(&OTHER.private)
                    .unwrap()
                    .to_pkcs8_der()
                    .unwrap()
                    .as_bytes(),
            );
            jsonwebtoken::encode(&header, &claims(Role::Staff, AUDIENCE), &key).unwrap()
        };
        assert!(keys().verify(&forged_kid).is_err());
    }

    #[test]
    fn other_algorithms_audiences_and_garbage_are_refused() {
        // HS256 signed with the public key as the secret (the classic confusion), and `none`.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(signer().kid().to_owned());
        let hs256 = jsonwebtoken::encode(
            &header,
            &claims(Role::Staff, AUDIENCE),
            &EncodingKey::from_secret(PAIR.public.as_bytes()),
        )
        .unwrap();
        assert!(keys().verify(&hs256).is_err());
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(format!(r#"{{"alg":"none","kid":"{}"}}"#, signer().kid())),
            b64.encode(serde_json::to_vec(&claims(Role::Staff, AUDIENCE)).unwrap())
        );
        assert!(keys().verify(&none).is_err());
        // Signed by the right key, for another audience.
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signer().kid().to_owned());
        let elsewhere =
            jsonwebtoken::encode(&header, &claims(Role::Staff, "billing"), &signer().encoding)
                .unwrap();
        assert!(keys().verify(&elsewhere).is_err());
        for garbage in ["", "a.b.c", "not a token", "\u{202e}..", &"x".repeat(10_000)] {
            assert_eq!(keys().verify(garbage).unwrap_err().code(), Code::Unauthenticated);
        }
    }

    #[test]
    fn customer_is_not_staff() {
        let issued = signer().issue(&alice(), SystemTime::now(), Duration::from_secs(60)).unwrap();
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
    fn keys_that_are_not_ed25519_pem_are_rejected() {
        assert!(TokenSigner::from_pem("short").is_err());
        assert!(TokenSigner::from_pem(&PAIR.public).is_err());
        assert!(TokenKeys::new("", None).is_err());
        assert!(TokenKeys::new(&PAIR.private, None).is_err());
        assert!(
            TokenKeys::new("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", None)
                .is_err()
        );
    }

    #[test]
    fn refresh_and_access_tokens_are_not_taken_for_each_other() {
        let now = SystemTime::now();
        let refresh = signer()
            .issue_refresh(AccountId::new(42), 3, now, Duration::from_secs(3600))
            .unwrap()
            .token;
        assert_eq!(
            keys().verify_refresh(&refresh).unwrap(),
            RefreshGrant { account_id: AccountId::new(42), session_version: 3 }
        );
        assert_eq!(keys().verify(&refresh).unwrap_err().code(), Code::Unauthenticated);
        let access = signer().issue(&alice(), now, Duration::from_secs(60)).unwrap().token;
        assert_eq!(keys().verify_refresh(&access).unwrap_err().code(), Code::Unauthenticated);
        let stale = signer()
            .issue_refresh(
                AccountId::new(42),
                3,
                now - Duration::from_secs(7200),
                Duration::from_secs(3600),
            )
            .unwrap()
            .token;
        assert!(keys().verify_refresh(&stale).unwrap_err().to_string().contains("sign in again"));
    }

    #[test]
    fn a_long_streams_session_ends_when_its_token_expires() {
        let staff = Caller { role: Role::Staff, ..alice() };
        let now = SystemTime::now();
        let issued = signer().issue(&staff, now, Duration::from_secs(60)).unwrap();
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", format!("Bearer {}", issued.token).parse().unwrap());
        let session = keys().require_staff_session(&metadata).unwrap();
        assert_eq!(session.caller, staff);
        assert!(session.check(now + Duration::from_secs(30)).is_ok());
        let ended = session.check(now + Duration::from_secs(120)).unwrap_err();
        assert_eq!(ended.code(), Code::Unauthenticated);
    }
}
