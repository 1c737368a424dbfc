//! VAPID (RFC 8292): `Authorization: vapid t=<JWT>, k=<public key>`, an ES256 JWT that must
//! verify with `k`, name the push service's origin as `aud`, expire within 24 hours and carry a
//! `mailto:` or `https:` subject. Verified headers are remembered: senders reuse one JWT for
//! many messages, and the request path then pays a hash lookup, not a signature check.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::Deserialize;

use crate::clock::unix_seconds;

/// RFC 8292 section 2: `exp` no further ahead than 24 hours.
const MAX_LIFETIME_SECS: u64 = 24 * 60 * 60;
/// Forget every remembered header past this many, so a flood of distinct JWTs stays bounded.
const MAX_REMEMBERED: usize = 10_000;

/// A sender whose VAPID header verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VapidSender {
    /// `k`, the application server's public key (65-byte uncompressed point).
    pub(crate) public_key: Vec<u8>,
    /// The JWT's `sub`.
    pub(crate) subject: String,
    expires_at: u64,
}

/// Why a VAPID header was refused; every case answers 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VapidError(pub(crate) String);

#[derive(Deserialize)]
struct JwtHeader {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    aud: String,
    exp: u64,
    sub: Option<String>,
}

pub(crate) struct VapidVerifier {
    audience: String,
    verified: RwLock<HashMap<String, Arc<VapidSender>>>,
}

impl VapidVerifier {
    /// JWTs must carry `audience` (the push service's origin, `https://host:port`) as `aud`.
    pub(crate) fn new(audience: String) -> Self {
        Self {
            audience,
            verified: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn verify(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<Arc<VapidSender>, VapidError> {
        let header = authorization
            .ok_or_else(|| refuse("missing Authorization header"))?
            .to_str()
            .map_err(|_| refuse("Authorization header is not ASCII"))?;
        let known = self
            .verified
            .read()
            .expect("VAPID cache lock")
            .get(header)
            .cloned();
        let sender = match known {
            Some(sender) => sender,
            None => {
                let sender = Arc::new(self.verify_header(header)?);
                let mut verified = self.verified.write().expect("VAPID cache lock");
                if verified.len() >= MAX_REMEMBERED {
                    verified.clear();
                }
                verified.insert(header.to_string(), sender.clone());
                sender
            }
        };
        if sender.expires_at <= unix_seconds() {
            return Err(refuse("the JWT has expired"));
        }
        Ok(sender)
    }

    fn verify_header(&self, header: &str) -> Result<VapidSender, VapidError> {
        let (token, key) = parse_vapid_header(header)?;
        let public_key = URL_SAFE_NO_PAD
            .decode(key.trim_end_matches('='))
            .map_err(|_| refuse("k is not base64url"))?;
        if public_key.len() != 65 || public_key[0] != 0x04 {
            return Err(refuse("k is not an uncompressed P-256 public key"));
        }
        let verifying_key =
            VerifyingKey::from_sec1_bytes(&public_key).map_err(|_| refuse("k is not on P-256"))?;

        let mut parts = token.split('.');
        let (Some(header_part), Some(claims_part), Some(signature_part), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refuse("t is not a JWT"));
        };
        let jwt_header: JwtHeader = decode_json(header_part)?;
        if jwt_header.alg != "ES256" {
            return Err(refuse("the JWT is not ES256"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature_part)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or_else(|| refuse("the JWT signature is malformed"))?;
        let signed = &token[..header_part.len() + 1 + claims_part.len()];
        verifying_key
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| refuse("the JWT signature does not verify with k"))?;

        let claims: Claims = decode_json(claims_part)?;
        if claims.aud != self.audience {
            return Err(refuse(&format!("aud must be {}", self.audience)));
        }
        let now = unix_seconds();
        if claims.exp <= now {
            return Err(refuse("the JWT has expired"));
        }
        if claims.exp > now + MAX_LIFETIME_SECS {
            return Err(refuse("exp is more than 24 hours ahead"));
        }
        let subject = claims
            .sub
            .filter(|sub| sub.starts_with("mailto:") || sub.starts_with("https:"))
            .ok_or_else(|| refuse("sub must be a mailto: or https: URI"))?;
        Ok(VapidSender {
            public_key,
            subject,
            expires_at: claims.exp,
        })
    }
}

/// `vapid t=<JWT>, k=<key>` → (JWT, key).
fn parse_vapid_header(header: &str) -> Result<(&str, &str), VapidError> {
    let (scheme, parameters) = header
        .split_once(' ')
        .ok_or_else(|| refuse("expected: vapid t=…, k=…"))?;
    if !scheme.eq_ignore_ascii_case("vapid") {
        return Err(refuse("the Authorization scheme is not vapid"));
    }
    let (mut token, mut key) = (None, None);
    for parameter in parameters.split(',') {
        match parameter.trim().split_once('=') {
            Some(("t", value)) => token = Some(value.trim()),
            Some(("k", value)) => key = Some(value.trim()),
            _ => {}
        }
    }
    match (token, key) {
        (Some(token), Some(key)) => Ok((token, key)),
        _ => Err(refuse("the vapid scheme needs t and k")),
    }
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, VapidError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| refuse("a JWT part is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| refuse("a JWT part is not the expected JSON"))
}

fn refuse(reason: &str) -> VapidError {
    VapidError(reason.to_string())
}
