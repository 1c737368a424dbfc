//! OAuth2 for FCM: a service account signs an RS256 assertion, the token endpoint trades it for
//! an access token, which is cached and refreshed before it expires (and at once after a 401).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::http::ClientPool;

pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// A token is replaced this long before Google says it expires, so no send races its expiry.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The fields of a Google service-account JSON file that FCM needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    // The private key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

#[derive(Clone)]
pub struct AccessToken {
    pub value: Arc<str>,
    /// `Bearer <value>`, made once: every send carries it.
    pub header: http::HeaderValue,
    refresh_at: Instant,
}

/// Hands out a valid access token, fetching a new one only when needed and only once at a time.
pub struct TokenSource {
    account: ServiceAccount,
    key: jsonwebtoken::EncodingKey,
    http: ClientPool,
    /// Shared as one `Arc`: every send takes it, and one count costs less than one per field.
    current: std::sync::RwLock<Option<Arc<AccessToken>>>,
    refreshing: Mutex<()>,
}

impl TokenSource {
    pub fn new(account: ServiceAccount, http: ClientPool) -> Result<Self, String> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| format!("service account private_key: {e}"))?;
        Ok(Self {
            account,
            key,
            http,
            current: std::sync::RwLock::new(None),
            refreshing: Mutex::new(()),
        })
    }

    pub fn project_id(&self) -> &str {
        &self.account.project_id
    }

    /// A token that is good for a while yet.
    pub async fn token(&self) -> Result<Arc<AccessToken>, String> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        // Boxed: the token request's future is large and rare; inline it would enlarge (and
        // add copying to) every send's future.
        let token = Arc::new(Box::pin(self.fetch()).await?);
        *self.current.write().expect("token lock") = Some(token.clone());
        Ok(token)
    }

    /// Forgets `rejected` after FCM answered 401 to it, so the next call fetches a new one.
    pub fn invalidate(&self, rejected: &str) {
        let mut current = self.current.write().expect("token lock");
        if current.as_ref().is_some_and(|t| &*t.value == rejected) {
            *current = None;
        }
    }

    fn fresh(&self) -> Option<Arc<AccessToken>> {
        let current = self.current.read().expect("token lock");
        current
            .as_ref()
            .filter(|t| Instant::now() < t.refresh_at)
            .cloned()
    }

    async fn fetch(&self) -> Result<AccessToken, String> {
        let now = herald_core::time::now_secs();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = self.account.private_key_id.clone();
        let assertion = jsonwebtoken::encode(
            &header,
            &Assertion {
                iss: &self.account.client_email,
                scope: FCM_SCOPE,
                aud: &self.account.token_uri,
                iat: now,
                exp: now + 3600,
            },
            &self.key,
        )
        .map_err(|e| format!("signing the OAuth assertion: {e}"))?;
        // A JWT is base64url and dots: nothing in it needs form encoding.
        let body = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let started = Instant::now();
        let response = self
            .http
            .client()
            .post(&self.account.token_uri)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| format!("OAuth token request: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(format!(
                "OAuth token endpoint answered {status}: {}",
                crate::provider::truncate(&text, 200)
            ));
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| format!("OAuth token response: {e}"))?;
        let lifetime = Duration::from_secs(token.expires_in);
        tracing::debug!(expires_in = token.expires_in, "FCM access token refreshed");
        let header = http::HeaderValue::try_from(format!("Bearer {}", token.access_token))
            .map_err(|_| "the OAuth access token is not a valid header value".to_owned())?;
        Ok(AccessToken {
            header,
            value: token.access_token.into(),
            refresh_at: started + lifetime.saturating_sub(REFRESH_MARGIN).max(lifetime / 2),
        })
    }
}
