//! Authentication (§2): the deployment's Ed25519 signing key (made on first
//! start, kept in the database so every process verifies the same tokens),
//! JWT issue and verification, and client secrets hashed with Argon2.

use std::time::Duration;

use anyhow::Context;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::events::Actor;
use crate::domain::ids::{AccountId, Scope};
use crate::store::{now_micros, ClientRecord, SigningKeyRecord, Store};

/// The claims of every access token we issue.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Who is calling, as proven by a verified token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub account: AccountId,
    pub subject: String,
    pub scopes: Vec<Scope>,
    /// The request the token came with (set by the HTTP layer), recorded
    /// with the changes the caller makes.
    pub request_id: Option<String>,
}

impl Principal {
    pub fn has_any(&self, scopes: &[Scope]) -> bool {
        self.scopes.iter().any(|s| scopes.contains(s))
    }

    /// The caller as the author of a change.
    pub fn actor(&self) -> Actor<'_> {
        Actor { name: &self.subject, request_id: self.request_id.as_deref() }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Bad signature, expired, wrong issuer, malformed: 401.
    Invalid,
    /// Valid token, issued for another account: 403.
    OtherAccount,
}

/// The signing key pair and token settings, built once at start-up.
pub struct Keys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_key: Vec<u8>,
    issuer: String,
    pub token_ttl: Duration,
    verified: std::sync::Mutex<std::collections::HashMap<String, Verified>>,
}

/// A token whose signature and claims were checked once: clients send the
/// same token many times, and an Ed25519 verification costs more than the
/// rest of a point read.
#[derive(Clone)]
struct Verified {
    account: AccountId,
    subject: String,
    scopes: Vec<Scope>,
    expires_at: i64,
}

/// Tokens remembered at most; the cache is emptied when it fills.
const VERIFIED_CAPACITY: usize = 10_000;
/// Seconds of clock skew allowed on `exp` and `nbf`.
const LEEWAY: u64 = 30;

impl Keys {
    /// Loads the deployment's key, creating it on first start. Concurrent
    /// first starts race on one database row and all adopt the winner.
    pub async fn load_or_create(store: &dyn Store, issuer: &str, token_ttl: Duration) -> anyhow::Result<Self> {
        let candidate = generate_key()?;
        let record = store.ensure_signing_key(candidate).await?;
        Self::from_record(&record, issuer, token_ttl)
    }

    fn from_record(record: &SigningKeyRecord, issuer: &str, token_ttl: Duration) -> anyhow::Result<Self> {
        Ed25519KeyPair::from_pkcs8(&record.private_pkcs8)
            .map_err(|_| anyhow::anyhow!("stored signing key is corrupt"))?;
        Ok(Self {
            kid: record.kid.clone(),
            encoding: EncodingKey::from_ed_der(&record.private_pkcs8),
            decoding: DecodingKey::from_ed_der(&record.public_key),
            public_key: record.public_key.clone(),
            issuer: issuer.to_owned(),
            token_ttl,
            verified: Default::default(),
        })
    }

    /// The audience string for an account: `<issuer>/v1/accounts/<aid>`.
    pub fn audience(&self, account: &AccountId) -> String {
        format!("{}/v1/accounts/{account}", self.issuer.trim_end_matches('/'))
    }

    pub fn issue(&self, account: &AccountId, subject: &str, scopes: &[Scope], ttl: Duration) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience(account),
            sub: subject.to_owned(),
            scope: Scope::join(scopes),
            iat: now,
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).context("signing token")
    }

    /// Verifies a bearer token for a request on `account`'s paths.
    pub fn verify(&self, token: &str, account: &AccountId) -> Result<Principal, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let cached = self.verified.lock().ok().and_then(|cache| cache.get(token).cloned());
        let verified = match cached {
            Some(v) if now <= v.expires_at + LEEWAY as i64 => v,
            _ => {
                let v = self.verify_signature(token)?;
                if let Ok(mut cache) = self.verified.lock() {
                    if cache.len() >= VERIFIED_CAPACITY {
                        cache.clear();
                    }
                    cache.insert(token.to_owned(), v.clone());
                }
                v
            }
        };
        if verified.account != *account {
            return Err(TokenError::OtherAccount);
        }
        Ok(Principal {
            account: verified.account,
            subject: verified.subject,
            scopes: verified.scopes,
            request_id: None,
        })
    }

    fn verify_signature(&self, token: &str) -> Result<Verified, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        // Only our algorithm and our key: `alg: none` and HMAC-with-the-
        // public-key tokens fail here or in `Validation`.
        if header.alg != Algorithm::EdDSA || header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY;
        // The audience names the account; it is compared by the caller so
        // that a token for another account is told apart (403, not 401).
        validation.validate_aud = false;
        let claims =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|_| TokenError::Invalid)?.claims;
        let account = claims
            .aud
            .strip_prefix(&format!("{}/v1/accounts/", self.issuer.trim_end_matches('/')))
            .and_then(AccountId::parse)
            .ok_or(TokenError::Invalid)?;
        Ok(Verified {
            account,
            subject: claims.sub,
            scopes: claims.scope.split_whitespace().filter_map(Scope::parse).collect(),
            expires_at: claims.exp,
        })
    }

    /// The public key as a JSON Web Key Set (RFC 8037 OKP key).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "use": "sig",
                "alg": "EdDSA",
                "kid": self.kid,
                "x": URL_SAFE_NO_PAD.encode(&self.public_key),
            }]
        })
    }
}

fn generate_key() -> anyhow::Result<SigningKeyRecord> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow::anyhow!("cannot generate a key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| anyhow::anyhow!("cannot read the new key"))?;
    let public_key = pair.public_key().as_ref().to_vec();
    let kid = crate::domain::hex(&Sha256::digest(&public_key)[..8]);
    Ok(SigningKeyRecord { kid, private_pkcs8: pkcs8.as_ref().to_vec(), public_key, created_at: now_micros() })
}

/// A fresh random secret, URL-safe.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

pub fn hash_secret(secret: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing secret: {e}"))
}

/// Bounds how many Argon2 computations run at once. Each holds 19 MiB for
/// tens of milliseconds of one core, so more at once than there are cores
/// only adds memory and latency: a flood of token requests with a new client
/// id each took an unbounded server to 21 GB. A caller waits at most
/// `max_wait` for a slot, then is told to come back ([`Busy`]).
pub struct HashingSlots {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    max_wait: Duration,
}

/// No Argon2 slot became free in time.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

impl HashingSlots {
    pub fn new(slots: usize, max_wait: Duration) -> Self {
        Self { permits: std::sync::Arc::new(tokio::sync::Semaphore::new(slots.max(1))), max_wait }
    }

    /// One slot per core, two seconds' wait.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, usize::from), Duration::from_secs(2))
    }

    /// Runs `work` on the blocking pool once a slot is free. The slot is
    /// held by the work itself, so a caller that gives up (a timed-out
    /// request) does not free it before the computation ends.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
        let permit = tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        })
        .await
        .map_err(|_| Busy)
    }
}

/// A well-formed Argon2 hash that no secret is known to match, checked when
/// a client id is unknown so that the answer costs the same work (and the
/// same memory, once) as for a known one.
pub const UNKNOWN_CLIENT_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$dW5rbm93bi1jbGllbnQ$2Zb8aIq1RMrw9CbQzCqNfPKrL1gRSmu7Ra9BRFVg4yg";

/// Constant-time check of a secret against its stored Argon2 hash.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// A client record with its secret hashed, and the secret (random unless
/// given; the only time it is known in clear).
pub fn new_client(
    account: &AccountId,
    scopes: &[Scope],
    client_id: Option<String>,
    client_secret: Option<String>,
) -> anyhow::Result<(ClientRecord, String)> {
    let secret = client_secret.unwrap_or_else(|| random_token(32));
    let record = ClientRecord {
        client_id: client_id.unwrap_or_else(|| format!("client_{}", random_token(12))),
        account_id: account.to_string(),
        secret_hash: hash_secret(&secret)?,
        scopes: Scope::join(scopes),
        created_at: now_micros(),
    };
    Ok((record, secret))
}

/// Creates an API client and returns its one-time secret.
pub async fn create_client(
    store: &dyn Store,
    account: &AccountId,
    scopes: &[Scope],
    client_id: Option<String>,
    client_secret: Option<String>,
) -> anyhow::Result<(ClientRecord, String)> {
    let (record, secret) = new_client(account, scopes, client_id, client_secret)?;
    store.insert_client(record.clone()).await.map_err(|e| match e {
        crate::store::StoreError::Conflict { .. } => {
            anyhow::anyhow!("client id `{}` exists already", record.client_id)
        }
        other => anyhow::Error::new(other),
    })?;
    Ok((record, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::from_record(&generate_key().unwrap(), "http://issuer", Duration::from_secs(60)).unwrap()
    }

    fn account(raw: &str) -> AccountId {
        AccountId::parse(raw).unwrap()
    }

    #[test]
    fn issued_tokens_verify_for_their_account_only() {
        let keys = keys();
        let a = account("T00000001");
        let token = keys.issue(&a, "client-1", &[Scope::Read], keys.token_ttl).unwrap();
        let principal = keys.verify(&token, &a).unwrap();
        assert_eq!(principal.subject, "client-1");
        assert_eq!(principal.scopes, vec![Scope::Read]);
        assert_eq!(keys.verify(&token, &account("T00000002")).unwrap_err(), TokenError::OtherAccount);
    }

    #[test]
    fn tokens_of_another_key_or_tampered_are_invalid() {
        let (mine, theirs) = (keys(), keys());
        let a = account("T00000001");
        let foreign = theirs.issue(&a, "x", &[Scope::Admin], theirs.token_ttl).unwrap();
        assert_eq!(mine.verify(&foreign, &a).unwrap_err(), TokenError::Invalid);
        let token = mine.issue(&a, "x", &[Scope::Read], mine.token_ttl).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let forged = serde_json::json!({"iss": "http://issuer", "aud": mine.audience(&a), "sub": "x",
            "scope": "admin:customers", "iat": 0, "exp": 9_999_999_999i64, "jti": "j"});
        parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
        assert_eq!(mine.verify(&parts.join("."), &a).unwrap_err(), TokenError::Invalid);
    }

    #[test]
    fn alg_none_is_rejected() {
        let keys = keys();
        let a = account("T00000001");
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{}"}}"#, keys.kid));
        let claims = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iss":"http://issuer","aud":"{}","sub":"x","scope":"admin:customers","iat":0,"exp":9999999999}}"#,
            keys.audience(&a)
        ));
        assert_eq!(keys.verify(&format!("{header}.{claims}."), &a).unwrap_err(), TokenError::Invalid);
    }

    fn signed(keys: &Keys, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.kid.clone());
        jsonwebtoken::encode(&header, &claims, &keys.encoding).unwrap()
    }

    #[test]
    fn expired_future_and_foreign_issuer_tokens_are_invalid() {
        let keys = keys();
        let a = account("T00000001");
        let now = chrono::Utc::now().timestamp();
        let claims = |iss: &str, iat: i64, exp: i64, nbf: i64| {
            serde_json::json!({"iss": iss, "aud": keys.audience(&a), "sub": "x", "scope": "admin:customers",
                "iat": iat, "exp": exp, "nbf": nbf, "jti": "j"})
        };
        let valid = signed(&keys, claims("http://issuer", now, now + 60, now));
        assert!(keys.verify(&valid, &a).is_ok(), "the baseline token must verify");
        let expired = signed(&keys, claims("http://issuer", now - 600, now - 300, now - 600));
        let not_yet = signed(&keys, claims("http://issuer", now, now + 600, now + 300));
        let foreign = signed(&keys, claims("http://elsewhere", now, now + 60, now));
        for token in [expired, not_yet, foreign] {
            assert_eq!(keys.verify(&token, &a).unwrap_err(), TokenError::Invalid);
        }
    }

    #[test]
    fn wrong_audience_and_unknown_kid_are_invalid() {
        let keys = keys();
        let a = account("T00000001");
        let now = chrono::Utc::now().timestamp();
        let claims = |aud: &str| {
            serde_json::json!({"iss": "http://issuer", "aud": aud, "sub": "x", "scope": "admin:customers",
                "iat": now, "exp": now + 60, "jti": "j"})
        };
        for aud in ["http://elsewhere/v1/accounts/T00000001", "http://issuer/v1/accounts/not-an-id", "", "T00000001"] {
            assert_eq!(keys.verify(&signed(&keys, claims(aud)), &a).unwrap_err(), TokenError::Invalid, "aud {aud:?}");
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("another-kid".to_owned());
        let unknown_kid = jsonwebtoken::encode(&header, &claims(&keys.audience(&a)), &keys.encoding).unwrap();
        assert_eq!(keys.verify(&unknown_kid, &a).unwrap_err(), TokenError::Invalid);
        assert!(keys.verify(&signed(&keys, claims(&keys.audience(&a))), &a).is_ok(), "the baseline verifies");
    }

    #[test]
    fn hmac_signed_with_the_public_key_is_rejected() {
        let keys = keys();
        let a = account("T00000001");
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({"iss": "http://issuer", "aud": keys.audience(&a), "sub": "x",
            "scope": "admin:customers", "iat": now, "exp": now + 60, "jti": "j"});
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(keys.kid.clone());
        let forged = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&keys.public_key)).unwrap();
        assert_eq!(keys.verify(&forged, &a).unwrap_err(), TokenError::Invalid);
    }

    #[test]
    fn cached_verifications_are_used_only_until_expiry() {
        let keys = keys();
        let a = account("T00000001");
        let now = chrono::Utc::now().timestamp();
        let plant = |expires_at: i64| {
            let entry =
                Verified { account: a.clone(), subject: "planted".into(), scopes: vec![Scope::Read], expires_at };
            keys.verified.lock().unwrap().insert("not-a-jwt".into(), entry);
        };
        plant(now + 60);
        assert_eq!(keys.verify("not-a-jwt", &a).unwrap().subject, "planted", "a live entry is used");
        assert_eq!(keys.verify("not-a-jwt", &account("T00000002")).unwrap_err(), TokenError::OtherAccount);
        plant(now - 60);
        assert_eq!(keys.verify("not-a-jwt", &a).unwrap_err(), TokenError::Invalid, "an expired entry is not");
    }

    #[test]
    fn the_unknown_client_hash_has_the_parameters_of_real_ones() {
        let real = hash_secret("s3cret").unwrap();
        let params = |hash: &str| PasswordHash::new(hash).unwrap().params.to_string();
        assert_eq!(params(UNKNOWN_CLIENT_HASH), params(&real), "the same cost either way");
        assert!(!verify_secret("", UNKNOWN_CLIENT_HASH));
    }

    #[tokio::test]
    async fn hashing_slots_bound_concurrent_work_and_time_out_waiters() {
        let slots = std::sync::Arc::new(HashingSlots::new(1, Duration::from_millis(50)));
        let (started, release) = (std::sync::mpsc::channel::<()>(), std::sync::mpsc::channel::<()>());
        let (started_tx, release_rx) = (started.0, release.1);
        let holder = {
            let slots = slots.clone();
            tokio::spawn(async move {
                slots
                    .run(move || {
                        started_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        1
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || started.1.recv().unwrap()).await.unwrap();
        assert_eq!(slots.run(|| 2).await, Err(Busy), "the only slot is taken");
        release.0.send(()).unwrap();
        assert_eq!(holder.await.unwrap(), Ok(1));
        assert_eq!(slots.run(|| 3).await, Ok(3), "the slot is free again");
    }

    #[test]
    fn secrets_verify_against_their_hash_only() {
        let hash = hash_secret("s3cret").unwrap();
        assert!(verify_secret("s3cret", &hash));
        assert!(!verify_secret("s3cret!", &hash));
        assert!(!verify_secret("s3cret", "not a hash"));
    }
}
