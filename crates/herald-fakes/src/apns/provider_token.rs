//! APNs token-based authentication: `authorization: bearer <JWT>` signed ES256 with the team's
//! key, header `kid`, claims `iss` (team id) and `iat`. A token verified once is remembered, so
//! the request path pays a hash lookup, not a signature check.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use http::HeaderValue;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::rejection::{
    EXPIRED_PROVIDER_TOKEN, INVALID_PROVIDER_TOKEN, MISSING_PROVIDER_TOKEN, Rejection,
    TOO_MANY_PROVIDER_TOKEN_UPDATES,
};
use crate::clock::unix_seconds;

/// Apple refuses provider tokens issued more than an hour ago.
const MAX_TOKEN_AGE_SECS: u64 = 3600;

#[derive(Deserialize)]
struct Claims {
    iat: u64,
}

/// A distinct provider token the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderTokenSeen {
    /// The token's `iat` claim (Unix seconds).
    pub issued_at: u64,
    /// When the fake first accepted it (Unix seconds).
    pub first_seen_at: u64,
}

#[derive(Default)]
struct Verified {
    issued_at_by_token: HashMap<String, u64>,
    last_new_token: Option<Instant>,
    seen: Vec<ProviderTokenSeen>,
}

pub(crate) struct ProviderTokens {
    key: DecodingKey,
    key_id: String,
    validation: Validation,
    min_update_interval: Duration,
    verified: RwLock<Verified>,
}

impl ProviderTokens {
    pub(crate) fn new(
        public_key_pem: &str,
        team_id: &str,
        key_id: &str,
        min_update_interval: Duration,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = DecodingKey::from_ec_pem(public_key_pem.as_bytes())?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["iss"]);
        validation.set_issuer(&[team_id]);
        Ok(Self {
            key,
            key_id: key_id.to_string(),
            validation,
            min_update_interval,
            verified: RwLock::new(Verified::default()),
        })
    }

    /// Checks the `authorization` header of one request.
    pub(crate) fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), Rejection> {
        let token = authorization
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or(MISSING_PROVIDER_TOKEN)?;
        let known = self
            .verified
            .read()
            .expect("provider tokens lock")
            .issued_at_by_token
            .get(token)
            .copied();
        let issued_at = match known {
            Some(issued_at) => issued_at,
            None => self.verify(token)?,
        };
        if unix_seconds().saturating_sub(issued_at) > MAX_TOKEN_AGE_SECS {
            return Err(EXPIRED_PROVIDER_TOKEN);
        }
        if known.is_none() {
            self.remember(token, issued_at)?;
        }
        Ok(())
    }

    fn verify(&self, token: &str) -> Result<u64, Rejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| INVALID_PROVIDER_TOKEN)?;
        if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(self.key_id.as_str()) {
            return Err(INVALID_PROVIDER_TOKEN);
        }
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims.iat)
            .map_err(|_| INVALID_PROVIDER_TOKEN)
    }

    /// Records a newly seen valid token, unless the previous new one is too recent.
    fn remember(&self, token: &str, issued_at: u64) -> Result<(), Rejection> {
        let mut verified = self.verified.write().expect("provider tokens lock");
        // Concurrent first requests with the same token: only the first one is an update.
        if verified.issued_at_by_token.contains_key(token) {
            return Ok(());
        }
        let now = Instant::now();
        if verified
            .last_new_token
            .is_some_and(|last| now.duration_since(last) < self.min_update_interval)
        {
            return Err(TOO_MANY_PROVIDER_TOKEN_UPDATES);
        }
        verified.last_new_token = Some(now);
        verified
            .issued_at_by_token
            .insert(token.to_string(), issued_at);
        verified.seen.push(ProviderTokenSeen {
            issued_at,
            first_seen_at: unix_seconds(),
        });
        Ok(())
    }

    /// Distinct tokens accepted so far, oldest first.
    pub(crate) fn seen(&self) -> Vec<ProviderTokenSeen> {
        self.verified
            .read()
            .expect("provider tokens lock")
            .seen
            .clone()
    }
}
