//! The APNs provider token: an ES256 JWT (`kid`, `iss`, `iat`) that Apple accepts for an hour and
//! refuses to see replaced more often than every 20 minutes. Herald re-signs it every 40.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Age at which the token is replaced: between Apple's 20-minute floor and 60-minute expiry.
pub const REFRESH_AFTER: Duration = Duration::from_secs(40 * 60);
/// Apple answers `TooManyProviderTokenUpdates` to tokens replaced sooner than this.
pub const MIN_AGE: Duration = Duration::from_secs(20 * 60);

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

struct Signed {
    bearer: Arc<str>,
    at: Instant,
}

pub struct ProviderToken {
    key: jsonwebtoken::EncodingKey,
    key_id: String,
    team_id: String,
    current: RwLock<Option<Signed>>,
}

impl ProviderToken {
    /// `pem` is the `.p8` key from Apple: a PKCS#8 P-256 private key.
    pub fn new(pem: &[u8], key_id: &str, team_id: &str) -> Result<Self, String> {
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pem)
            .map_err(|e| format!("APNs key_file is not a PKCS#8 P-256 key: {e}"))?;
        let token = Self {
            key,
            key_id: key_id.to_owned(),
            team_id: team_id.to_owned(),
            current: RwLock::new(None),
        };
        token.sign()?;
        Ok(token)
    }

    /// The `authorization` header value, re-signed once the token is [`REFRESH_AFTER`] old.
    pub fn bearer(&self) -> Result<Arc<str>, String> {
        {
            let current = self.current.read().expect("token lock");
            if let Some(signed) = current.as_ref()
                && signed.at.elapsed() < REFRESH_AFTER
            {
                return Ok(signed.bearer.clone());
            }
        }
        self.sign()
    }

    /// After Apple called the token expired or invalid: re-sign, but only if that would not be
    /// sooner than Apple allows. Returns whether a new token was made.
    pub fn renew_if_allowed(&self, rejected: &str) -> bool {
        let old_enough = self
            .current
            .read()
            .expect("token lock")
            .as_ref()
            .is_none_or(|s| &*s.bearer == rejected && s.at.elapsed() >= MIN_AGE);
        old_enough && self.sign().is_ok()
    }

    fn sign(&self) -> Result<Arc<str>, String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        header.typ = None;
        let iat = herald_core::time::now_secs();
        let jwt = jsonwebtoken::encode(
            &header,
            &Claims {
                iss: &self.team_id,
                iat,
            },
            &self.key,
        )
        .map_err(|e| format!("signing the APNs provider token: {e}"))?;
        let bearer: Arc<str> = format!("bearer {jwt}").into();
        *self.current.write().expect("token lock") = Some(Signed {
            bearer: bearer.clone(),
            at: Instant::now(),
        });
        Ok(bearer)
    }
}
