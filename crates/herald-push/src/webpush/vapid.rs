//! VAPID (RFC 8292): the application server identifies itself to push services with an ES256 JWT
//! and its public key, in `Authorization: vapid t=<jwt>, k=<key>`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::rand_core::OsRng;

use super::decode_base64url;

/// How long a signed header is valid.
const TOKEN_LIFETIME_SECS: u64 = 12 * 3600;
/// RFC 8292 section 2: `exp` must not be more than 24 hours ahead.
const MAX_LIFETIME_SECS: u64 = 24 * 3600;
/// A cached header is replaced once it has less than this left, so none expires in flight.
const MIN_REMAINING_SECS: u64 = 3600;
/// Audiences are push service origins, a handful in practice; the bound only guards against
/// endpoints made up to grow the cache.
const MAX_CACHED_AUDIENCES: usize = 256;

const JWT_HEADER: &str = r#"{"typ":"JWT","alg":"ES256"}"#;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VapidKeyError {
    #[error("the VAPID private key is not base64url")]
    NotBase64,
    #[error("the VAPID private key must be a 32-byte P-256 scalar, not {0} bytes")]
    WrongLength(usize),
    #[error("the VAPID private key is not a valid P-256 scalar")]
    NotAScalar,
}

/// The application server's VAPID key, with the headers it signed recently.
pub struct VapidKey {
    signing_key: SigningKey,
    public_key_b64url: String,
    /// Signed headers by audience.
    signed_headers: Mutex<HashMap<String, SignedHeader>>,
}

struct SignedHeader {
    subject: String,
    expires_at: u64,
    value: String,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("VapidKey")
            .field("public_key", &self.public_key_b64url)
            .finish_non_exhaustive()
    }
}

/// A new VAPID key pair: the private 32-byte scalar and the 65-byte uncompressed public point,
/// both base64url without padding (the public key is the browser's `applicationServerKey`).
pub fn generate() -> (String, String) {
    let signing_key = SigningKey::random(&mut OsRng);
    let private = URL_SAFE_NO_PAD.encode(signing_key.to_bytes());
    (private, public_key_b64url(&signing_key))
}

fn public_key_b64url(signing_key: &SigningKey) -> String {
    URL_SAFE_NO_PAD.encode(
        signing_key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes(),
    )
}

impl VapidKey {
    /// Reads the private key as [`generate`] writes it (padding is tolerated).
    pub fn from_base64url(private_key: &str) -> Result<Self, VapidKeyError> {
        let bytes = decode_base64url(private_key).map_err(|_| VapidKeyError::NotBase64)?;
        if bytes.len() != 32 {
            return Err(VapidKeyError::WrongLength(bytes.len()));
        }
        let signing_key = SigningKey::from_slice(&bytes).map_err(|_| VapidKeyError::NotAScalar)?;
        Ok(Self {
            public_key_b64url: public_key_b64url(&signing_key),
            signing_key,
            signed_headers: Mutex::new(HashMap::new()),
        })
    }

    /// The 65-byte uncompressed public key, base64url without padding.
    pub fn public_key_b64url(&self) -> &str {
        &self.public_key_b64url
    }

    /// The `Authorization` header value for a push service at `audience_origin`
    /// (`scheme://host[:port]` of the endpoint): `vapid t=<jwt>, k=<public key>`.
    ///
    /// A header signed earlier for the same audience and subject is reused while it has at least
    /// an hour left; signing on every send would be wasted work.
    pub fn authorization(&self, audience_origin: &str, subject: &str, now_secs: u64) -> String {
        let mut cache = self
            .signed_headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(cached) = cache.get(audience_origin)
            && cached.subject == subject
            && usable(cached.expires_at, now_secs)
        {
            return cached.value.clone();
        }

        let expires_at = now_secs + TOKEN_LIFETIME_SECS;
        let value = format!(
            "vapid t={}, k={}",
            self.jwt(audience_origin, subject, expires_at),
            self.public_key_b64url
        );
        if cache.len() >= MAX_CACHED_AUDIENCES && !cache.contains_key(audience_origin) {
            cache.retain(|_, header| usable(header.expires_at, now_secs));
            if cache.len() >= MAX_CACHED_AUDIENCES {
                cache.clear();
            }
        }
        cache.insert(
            audience_origin.to_owned(),
            SignedHeader {
                subject: subject.to_owned(),
                expires_at,
                value: value.clone(),
            },
        );
        value
    }

    /// An ES256 JWT: header and claims base64url, signed as raw `r || s`.
    fn jwt(&self, audience: &str, subject: &str, expires_at: u64) -> String {
        let claims = serde_json::json!({ "aud": audience, "exp": expires_at, "sub": subject });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(JWT_HEADER),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = self.signing_key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// Whether a header expiring at `expires_at` may still be sent: an hour or more left, and not
/// further ahead than RFC 8292 allows (which happens only if the clock went back).
fn usable(expires_at: u64, now_secs: u64) -> bool {
    expires_at >= now_secs + MIN_REMAINING_SECS && expires_at <= now_secs + MAX_LIFETIME_SECS
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;
    use serde_json::Value;

    const NOW: u64 = 1_700_000_000;
    const AUDIENCE: &str = "https://push.example.net";
    const SUBJECT: &str = "mailto:ops@example.com";

    /// Splits `vapid t=<jwt>, k=<key>`, checks the signature with `k`, returns header and claims.
    fn verify(authorization: &str) -> (Value, Value, String) {
        let rest = authorization.strip_prefix("vapid t=").unwrap();
        let (jwt, key) = rest.split_once(", k=").unwrap();
        let public = URL_SAFE_NO_PAD.decode(key).unwrap();
        assert_eq!(public.len(), 65);
        let verifying_key = VerifyingKey::from_sec1_bytes(&public).unwrap();

        let (signing_input, signature) = jwt.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert_eq!(signature.len(), 64, "ES256 signatures are raw r || s");
        let signature = Signature::from_slice(&signature).unwrap();
        verifying_key
            .verify(signing_input.as_bytes(), &signature)
            .unwrap();

        let (header, claims) = signing_input.split_once('.').unwrap();
        let decode = |part: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        (decode(header), decode(claims), key.to_owned())
    }

    #[test]
    fn generated_keys_load_and_match() {
        let (private, public) = generate();
        let key = VapidKey::from_base64url(&private).unwrap();
        assert_eq!(key.public_key_b64url(), public);
        assert_eq!(URL_SAFE_NO_PAD.decode(&public).unwrap()[0], 0x04);
        // Padding is tolerated.
        let padded = format!("{private}=");
        assert_eq!(
            VapidKey::from_base64url(&padded)
                .unwrap()
                .public_key_b64url(),
            public
        );
        assert!(!format!("{key:?}").contains(&private));
    }

    #[test]
    fn rejects_bad_private_keys() {
        assert_eq!(
            VapidKey::from_base64url("not base64!").unwrap_err(),
            VapidKeyError::NotBase64
        );
        assert_eq!(
            VapidKey::from_base64url(&URL_SAFE_NO_PAD.encode([1u8; 31])).unwrap_err(),
            VapidKeyError::WrongLength(31)
        );
        assert_eq!(
            VapidKey::from_base64url(&URL_SAFE_NO_PAD.encode([0u8; 32])).unwrap_err(),
            VapidKeyError::NotAScalar
        );
        assert_eq!(
            VapidKey::from_base64url(&URL_SAFE_NO_PAD.encode([0xffu8; 32])).unwrap_err(),
            VapidKeyError::NotAScalar
        );
    }

    #[test]
    fn jwt_verifies_and_has_the_claims() {
        let (private, public) = generate();
        let key = VapidKey::from_base64url(&private).unwrap();
        let (header, claims, k) = verify(&key.authorization(AUDIENCE, SUBJECT, NOW));
        assert_eq!(header, serde_json::json!({"typ": "JWT", "alg": "ES256"}));
        assert_eq!(claims["aud"], AUDIENCE);
        assert_eq!(claims["sub"], SUBJECT);
        assert_eq!(claims["exp"], NOW + 12 * 3600);
        assert_eq!(k, public);
    }

    #[test]
    fn reuses_the_header_until_an_hour_is_left() {
        let (private, _) = generate();
        let key = VapidKey::from_base64url(&private).unwrap();
        let first = key.authorization(AUDIENCE, SUBJECT, NOW);

        // ECDSA signatures here are deterministic (RFC 6979), so a re-signed header for a new
        // `exp` differs in the claims; an equal header is the cached one.
        assert_eq!(key.authorization(AUDIENCE, SUBJECT, NOW + 60), first);
        let last_reuse = NOW + TOKEN_LIFETIME_SECS - MIN_REMAINING_SECS;
        assert_eq!(key.authorization(AUDIENCE, SUBJECT, last_reuse), first);

        let renewed = key.authorization(AUDIENCE, SUBJECT, last_reuse + 1);
        assert_ne!(renewed, first);
        let (_, claims, _) = verify(&renewed);
        assert_eq!(claims["exp"], last_reuse + 1 + TOKEN_LIFETIME_SECS);

        // Another audience or subject gets its own header.
        let other = key.authorization("https://other.example.org:8443", SUBJECT, last_reuse + 1);
        assert_ne!(other, renewed);
        assert_eq!(verify(&other).1["aud"], "https://other.example.org:8443");
        let other_subject = key.authorization(AUDIENCE, "mailto:x@example.com", last_reuse + 1);
        assert_eq!(verify(&other_subject).1["sub"], "mailto:x@example.com");
    }

    #[test]
    fn clock_going_back_never_sends_exp_beyond_24_hours() {
        let (private, _) = generate();
        let key = VapidKey::from_base64url(&private).unwrap();
        key.authorization(AUDIENCE, SUBJECT, NOW);
        let earlier = NOW - 13 * 3600;
        let (_, claims, _) = verify(&key.authorization(AUDIENCE, SUBJECT, earlier));
        assert_eq!(claims["exp"], earlier + TOKEN_LIFETIME_SECS);
    }

    #[test]
    fn cache_stays_bounded() {
        let (private, _) = generate();
        let key = VapidKey::from_base64url(&private).unwrap();
        for i in 0..MAX_CACHED_AUDIENCES + 10 {
            key.authorization(&format!("https://push{i}.example.net"), SUBJECT, NOW);
        }
        let cached = key.signed_headers.lock().unwrap().len();
        assert!(cached <= MAX_CACHED_AUDIENCES, "{cached} cached headers");
    }
}
