//! The two kinds of credentials: publisher API keys (product services) and user tokens
//! (JWTs whose `sub` is the user id). They are never interchangeable.

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// Claims of a user token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Realtime channels the token may read: names, or prefixes ending in `*`
    /// (see `herald_core::channel::pattern_matches`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
}

/// Where the publisher key and token secret came from, so the first start can show the key once.
pub struct Secrets {
    pub api_key: String,
    pub token_secret: String,
    /// Set when this start generated the API key into this file.
    pub generated_api_key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("secrets: {0}")]
pub struct SecretError(String);

impl Secrets {
    /// Takes the secrets from the config, or from the data directory, generating what is missing.
    pub fn load_or_generate(config: &Config) -> Result<Self, SecretError> {
        std::fs::create_dir_all(&config.data).map_err(|e| {
            SecretError(format!(
                "cannot create data directory {}: {e}",
                config.data.display()
            ))
        })?;
        let (api_key, generated_api_key) = match &config.api_key {
            Some(key) => (key.clone(), None),
            None => read_or_create(&config.data.join("api_key"), || {
                format!("hk_{}", random_hex(24))
            })?,
        };
        let token_secret = match &config.token_secret {
            Some(secret) => secret.clone(),
            None => read_or_create(&config.data.join("token_secret"), || random_hex(32))?.0,
        };
        Ok(Self {
            api_key,
            token_secret,
            generated_api_key,
        })
    }
}

/// The token secret alone (for `herald token`), without touching the API key.
pub fn token_secret(config: &Config) -> Result<String, SecretError> {
    if let Some(secret) = &config.token_secret {
        return Ok(secret.clone());
    }
    std::fs::create_dir_all(&config.data).map_err(|e| {
        SecretError(format!(
            "cannot create data directory {}: {e}",
            config.data.display()
        ))
    })?;
    Ok(read_or_create(&config.data.join("token_secret"), || random_hex(32))?.0)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Reads a secret file, or creates it (mode 0600) with a fresh value; says whether it created it.
fn read_or_create(
    path: &Path,
    fresh: impl FnOnce() -> String,
) -> Result<(String, Option<PathBuf>), SecretError> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok((s.trim().to_owned(), None)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(SecretError(format!("cannot read {}: {e}", path.display()))),
    }
    let value = fresh();
    write_private(path, &value)
        .map_err(|e| SecretError(format!("cannot write {}: {e}", path.display())))?;
    Ok((value, Some(path.to_owned())))
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(value.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// What a bearer credential turned out to be.
pub enum Credential {
    Publisher,
    User(Claims),
    /// A token that failed verification; the reason is safe to show.
    Invalid(String),
}

pub struct Auth {
    api_key_digest: [u8; 32],
    hs256: DecodingKey,
    public_keys: Vec<(Algorithm, DecodingKey)>,
}

#[derive(Debug, thiserror::Error)]
#[error("token public key {path}: {reason}")]
pub struct KeyError {
    path: String,
    reason: String,
}

impl Auth {
    pub fn new(secrets: &Secrets, public_key_files: &[PathBuf]) -> Result<Self, KeyError> {
        let mut public_keys = Vec::new();
        for path in public_key_files {
            let err = |reason: String| KeyError {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            let key = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                (Algorithm::RS256, k)
            } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                (Algorithm::ES256, k)
            } else {
                return Err(err("not an RSA or EC (P-256) public key in PEM form".into()));
            };
            public_keys.push(key);
        }
        Ok(Self {
            api_key_digest: digest(&secrets.api_key),
            hs256: DecodingKey::from_secret(secrets.token_secret.as_bytes()),
            public_keys,
        })
    }

    /// Classifies a bearer credential. API keys are compared by digest, in constant time.
    pub fn check(&self, bearer: &str) -> Credential {
        if constant_time_eq(&digest(bearer), &self.api_key_digest) {
            return Credential::Publisher;
        }
        match self.verify_token(bearer) {
            Ok(claims) => Credential::User(claims),
            Err(reason) => Credential::Invalid(reason),
        }
    }

    fn verify_token(&self, token: &str) -> Result<Claims, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| "not a valid token".to_owned())?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let keys: Vec<&DecodingKey> = match header.alg {
            Algorithm::HS256 => vec![&self.hs256],
            Algorithm::RS256 | Algorithm::ES256 => self
                .public_keys
                .iter()
                .filter(|(alg, _)| *alg == header.alg)
                .map(|(_, k)| k)
                .collect(),
            other => {
                return Err(format!(
                    "tokens signed with {other:?} are not accepted; use HS256, RS256 or ES256"
                ));
            }
        };
        let mut last = "no key is configured for this token's algorithm".to_owned();
        for key in keys {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    herald_core::names::check_name("token subject", &data.claims.sub)?;
                    return Ok(data.claims);
                }
                Err(e) => {
                    last = match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                            "the token has expired".to_owned()
                        }
                        jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                            "the token's signature is invalid".to_owned()
                        }
                        jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(c) => {
                            format!("the token has no `{c}` claim")
                        }
                        _ => "not a valid token".to_owned(),
                    }
                }
            }
        }
        Err(last)
    }
}

/// Issues an HS256 user token (`herald token`).
pub fn issue_token(secret: &str, user: &str, ttl_seconds: u64) -> Result<String, String> {
    issue_channel_token(secret, user, ttl_seconds, &[])
}

/// Issues an HS256 user token that may also read the realtime channels `channels` names
/// (`herald token USER --channel PATTERN`); each pattern is checked first.
pub fn issue_channel_token(
    secret: &str,
    user: &str,
    ttl_seconds: u64,
    channels: &[String],
) -> Result<String, String> {
    for pattern in channels {
        herald_core::channel::check_pattern(pattern)?;
    }
    herald_core::names::check_name("user id", user)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = Claims {
        sub: user.to_owned(),
        exp: now + ttl_seconds,
        iat: Some(now),
        channels: channels.to_vec(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let secrets = Secrets {
            api_key: "hk_test_key_0123456789".into(),
            token_secret: "s".repeat(32),
            generated_api_key: None,
        };
        Auth::new(&secrets, &[]).unwrap()
    }

    #[test]
    fn tells_keys_from_tokens() {
        let auth = auth();
        assert!(matches!(
            auth.check("hk_test_key_0123456789"),
            Credential::Publisher
        ));
        let token = issue_token(&"s".repeat(32), "alice", 60).unwrap();
        assert!(matches!(auth.check(&token), Credential::User(c) if c.sub == "alice"));
        assert!(matches!(auth.check("hk_wrong"), Credential::Invalid(_)));
    }

    #[test]
    fn channel_claims_round_trip_and_are_checked() {
        let auth = auth();
        let patterns = vec!["session:12*".to_owned(), "logs".to_owned()];
        let token = issue_channel_token(&"s".repeat(32), "viewer", 60, &patterns).unwrap();
        assert!(matches!(auth.check(&token), Credential::User(c) if c.channels == patterns));
        let plain = issue_token(&"s".repeat(32), "viewer", 60).unwrap();
        assert!(matches!(auth.check(&plain), Credential::User(c) if c.channels.is_empty()));
        let bad = issue_channel_token(&"s".repeat(32), "viewer", 60, &["a*b".to_owned()]);
        assert!(bad.unwrap_err().contains("a*b"));
    }

    #[test]
    fn refuses_expired_and_foreign_tokens() {
        let auth = auth();
        let past = Claims {
            sub: "alice".into(),
            exp: 1_000_000,
            iat: None,
            channels: Vec::new(),
        };
        let expired = jsonwebtoken::encode(
            &Header::default(),
            &past,
            &EncodingKey::from_secret("s".repeat(32).as_bytes()),
        )
        .unwrap();
        assert!(matches!(auth.check(&expired), Credential::Invalid(r) if r.contains("expired")));
        let foreign = issue_token(&"x".repeat(32), "alice", 60).unwrap();
        assert!(matches!(auth.check(&foreign), Credential::Invalid(r) if r.contains("signature")));
    }
}
