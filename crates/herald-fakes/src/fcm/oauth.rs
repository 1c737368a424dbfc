//! Google's OAuth 2.0 token endpoint for service accounts (the JWT bearer grant), and the access
//! tokens it hands out.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::Rng as _;
use serde::Deserialize;
use serde_json::json;

use crate::clock::unix_seconds;
use crate::form::form_value;
use crate::reply;
use crate::server::FakeResponse;

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const MESSAGING_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/firebase.messaging",
    "https://www.googleapis.com/auth/cloud-platform",
];
/// How far in the future `iat` may be: Google tolerates this much clock skew.
const MAX_CLOCK_SKEW_SECS: u64 = 60;
const MAX_ASSERTION_LIFETIME_SECS: u64 = 3600;

#[derive(Deserialize)]
struct AssertionClaims {
    scope: Option<String>,
    iat: u64,
    exp: u64,
}

/// An OAuth error answer: `{"error":…,"error_description":…}`.
struct OAuthError {
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn invalid_grant(description: impl Into<String>) -> Self {
        Self {
            error: "invalid_grant",
            description: description.into(),
        }
    }

    fn response(&self) -> FakeResponse {
        reply::json_value(
            StatusCode::BAD_REQUEST,
            &json!({"error": self.error, "error_description": self.description}),
        )
    }
}

/// Checks service-account assertions (RS256 JWTs) and issues access tokens.
pub(crate) struct TokenEndpoint {
    key: DecodingKey,
    validation: Validation,
    audience: String,
    tokens: AccessTokens,
}

impl TokenEndpoint {
    /// Assertions must be signed by `public_key_pem`, issued by `client_email` for `audience`.
    pub(crate) fn new(
        public_key_pem: &str,
        client_email: &str,
        audience: &str,
        tokens: AccessTokens,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = DecodingKey::from_rsa_pem(public_key_pem.as_bytes())?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        validation.set_issuer(&[client_email]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        Ok(Self {
            key,
            validation,
            audience: audience.to_string(),
            tokens,
        })
    }

    pub(crate) fn tokens(&self) -> &AccessTokens {
        &self.tokens
    }

    /// Answers `POST /token` with a form body.
    pub(crate) fn answer(&self, content_type: Option<&str>, body: &[u8]) -> FakeResponse {
        let is_form = content_type
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        // Google reads parameters from a form body only.
        let body: &[u8] = if is_form { body } else { b"" };
        match self.grant(body) {
            Ok(access_token) => reply::json_value(
                StatusCode::OK,
                &json!({
                    "access_token": access_token,
                    "expires_in": self.tokens.lifetime.as_secs(),
                    "token_type": "Bearer",
                }),
            ),
            Err(error) => error.response(),
        }
    }

    fn grant(&self, body: &[u8]) -> Result<String, OAuthError> {
        let grant_type = form_value(body, "grant_type").ok_or_else(|| OAuthError {
            error: "invalid_request",
            description: "Missing required parameter: grant_type".into(),
        })?;
        if grant_type != JWT_BEARER_GRANT {
            return Err(OAuthError {
                error: "unsupported_grant_type",
                description: format!("Invalid grant_type: {grant_type}"),
            });
        }
        let assertion = form_value(body, "assertion").ok_or_else(|| OAuthError {
            error: "invalid_request",
            description: "Missing required parameter: assertion".into(),
        })?;
        self.verify(&assertion)?;
        Ok(self.tokens.issue())
    }

    fn verify(&self, assertion: &str) -> Result<(), OAuthError> {
        let claims =
            jsonwebtoken::decode::<AssertionClaims>(assertion, &self.key, &self.validation)
                .map_err(|error| self.describe(error.kind()))?
                .claims;
        let now = unix_seconds();
        let short_lived = claims.iat <= now + MAX_CLOCK_SKEW_SECS
            && claims.exp > now
            && claims.exp >= claims.iat
            && claims.exp - claims.iat <= MAX_ASSERTION_LIFETIME_SECS;
        if !short_lived {
            return Err(OAuthError::invalid_grant(SHORT_LIVED));
        }
        let scopes = claims.scope.unwrap_or_default();
        if !scopes
            .split_whitespace()
            .any(|scope| MESSAGING_SCOPES.contains(&scope))
        {
            return Err(OAuthError {
                error: "invalid_scope",
                description: "Invalid OAuth scope or ID token audience provided.".into(),
            });
        }
        Ok(())
    }

    fn describe(&self, kind: &ErrorKind) -> OAuthError {
        OAuthError::invalid_grant(match kind {
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                "Invalid JWT Signature.".to_string()
            }
            ErrorKind::ExpiredSignature => SHORT_LIVED.to_string(),
            ErrorKind::InvalidIssuer => "Invalid email or User ID".to_string(),
            ErrorKind::InvalidAudience => format!(
                "Invalid JWT: Failed audience check. The right audience is {}",
                self.audience
            ),
            ErrorKind::MissingRequiredClaim(claim) => format!("Invalid JWT: missing claim {claim}"),
            _ => "Invalid JWT.".to_string(),
        })
    }
}

const SHORT_LIVED: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a \
                           reasonable timeframe. Check your iat and exp values in the JWT claim.";

/// Access tokens handed out and not yet expired or revoked, plus an optional fixed token that
/// is always valid (for load generators such as h2load, which cannot fetch one).
pub(crate) struct AccessTokens {
    issued: RwLock<HashMap<String, Instant>>,
    issued_count: AtomicU64,
    lifetime: Duration,
    static_token: Option<String>,
}

impl AccessTokens {
    pub(crate) fn new(lifetime: Duration, static_token: Option<String>) -> Self {
        Self {
            issued: RwLock::new(HashMap::new()),
            issued_count: AtomicU64::new(0),
            lifetime,
            static_token,
        }
    }

    /// A new random token, valid for the configured lifetime.
    pub(crate) fn issue(&self) -> String {
        let mut random = [0u8; 32];
        rand::rng().fill(&mut random);
        let token = format!("ya29.fake.{}", URL_SAFE_NO_PAD.encode(random));
        let now = Instant::now();
        let mut issued = self.issued.write().expect("access tokens lock");
        issued.retain(|_, expires| *expires > now);
        issued.insert(token.clone(), now + self.lifetime);
        self.issued_count.fetch_add(1, Ordering::Relaxed);
        token
    }

    pub(crate) fn is_valid(&self, token: &str) -> bool {
        if self.static_token.as_deref() == Some(token) {
            return true;
        }
        self.issued
            .read()
            .expect("access tokens lock")
            .get(token)
            .is_some_and(|expires| *expires > Instant::now())
    }

    /// Invalidates every issued token (the static token stays valid).
    pub(crate) fn revoke_all(&self) {
        self.issued.write().expect("access tokens lock").clear();
    }

    pub(crate) fn issued_count(&self) -> u64 {
        self.issued_count.load(Ordering::Relaxed)
    }
}
