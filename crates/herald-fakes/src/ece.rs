//! Web Push message decryption as a browser performs it: RFC 8291 key derivation over the
//! RFC 8188 `aes128gcm` content coding. Written from the RFCs, checked against RFC 8291's
//! Appendix A example.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

/// salt(16) ‖ rs(4) ‖ idlen(1).
const HEADER_FIXED_BYTES: usize = 21;
const UNCOMPRESSED_POINT_BYTES: usize = 65;
const TAG_BYTES: usize = 16;
/// RFC 8188: a record size under 18 leaves no room for a tag and a delimiter.
const MIN_RECORD_SIZE: u32 = 18;
const LAST_RECORD_DELIMITER: u8 = 0x02;

/// Why a body could not be decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecryptError {
    /// Shorter than the header, or no room for a tag and a delimiter.
    Truncated,
    /// The key id is not an uncompressed P-256 public key.
    BadSenderKey,
    /// Record size under 18, or more than one record (RFC 8291 allows a single record).
    BadRecordSize,
    /// The AEAD tag did not verify: wrong keys, auth secret or tampered data.
    Authentication,
    /// The plaintext does not end in the last-record delimiter and zero padding.
    BadPadding,
}

impl std::fmt::Display for DecryptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Truncated => "the body is too short",
            Self::BadSenderKey => "the key id is not an uncompressed P-256 public key",
            Self::BadRecordSize => "the record size is invalid or the body holds several records",
            Self::Authentication => "the ciphertext did not authenticate",
            Self::BadPadding => "the plaintext lacks the last-record delimiter",
        })
    }
}

impl std::error::Error for DecryptError {}

/// Decrypts a push message body for the subscription with private key `user_agent_key` and
/// authentication secret `auth_secret`.
pub fn decrypt_aes128gcm(
    body: &[u8],
    user_agent_key: &SecretKey,
    auth_secret: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    let header = body
        .get(..HEADER_FIXED_BYTES)
        .ok_or(DecryptError::Truncated)?;
    let (salt, rest) = header.split_at(16);
    let record_size = u32::from_be_bytes(rest[..4].try_into().expect("four bytes"));
    let key_id_len = usize::from(rest[4]);
    let key_id = body
        .get(HEADER_FIXED_BYTES..HEADER_FIXED_BYTES + key_id_len)
        .ok_or(DecryptError::Truncated)?;
    let ciphertext = &body[HEADER_FIXED_BYTES + key_id_len..];

    if key_id_len != UNCOMPRESSED_POINT_BYTES {
        return Err(DecryptError::BadSenderKey);
    }
    let sender_key = PublicKey::from_sec1_bytes(key_id).map_err(|_| DecryptError::BadSenderKey)?;
    if record_size < MIN_RECORD_SIZE
        || u32::try_from(ciphertext.len()).map_or(true, |len| len > record_size)
    {
        return Err(DecryptError::BadRecordSize);
    }
    if ciphertext.len() <= TAG_BYTES {
        return Err(DecryptError::Truncated);
    }

    let (content_key, nonce) = derive_key_and_nonce(salt, user_agent_key, &sender_key, auth_secret);
    let cipher = Aes128Gcm::new_from_slice(&content_key).expect("16-byte key");
    // A single record has sequence number 0, so its nonce is the derived nonce itself.
    let mut padded = cipher
        .decrypt(&Nonce::from(nonce), ciphertext)
        .map_err(|_| DecryptError::Authentication)?;
    let content_end = padded
        .iter()
        .rposition(|&byte| byte != 0)
        .ok_or(DecryptError::BadPadding)?;
    if padded[content_end] != LAST_RECORD_DELIMITER {
        return Err(DecryptError::BadPadding);
    }
    padded.truncate(content_end);
    Ok(padded)
}

/// RFC 8291 section 3.4 then RFC 8188 section 2.2: the content encryption key and nonce.
fn derive_key_and_nonce(
    salt: &[u8],
    user_agent_key: &SecretKey,
    sender_key: &PublicKey,
    auth_secret: &[u8],
) -> ([u8; 16], [u8; 12]) {
    let shared =
        p256::ecdh::diffie_hellman(user_agent_key.to_nonzero_scalar(), sender_key.as_affine());
    let user_agent_public = user_agent_key.public_key().to_encoded_point(false);
    let sender_public = sender_key.to_encoded_point(false);

    let mut key_info = Vec::with_capacity(14 + 2 * UNCOMPRESSED_POINT_BYTES);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(user_agent_public.as_bytes());
    key_info.extend_from_slice(sender_public.as_bytes());
    let mut input_key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth_secret), shared.raw_secret_bytes())
        .expand(&key_info, &mut input_key)
        .expect("32 bytes is a valid HKDF-SHA-256 length");

    let content = Hkdf::<Sha256>::new(Some(salt), &input_key);
    let mut content_key = [0u8; 16];
    content
        .expand(b"Content-Encoding: aes128gcm\0", &mut content_key)
        .expect("16 bytes is a valid HKDF-SHA-256 length");
    let mut nonce = [0u8; 12];
    content
        .expand(b"Content-Encoding: nonce\0", &mut nonce)
        .expect("12 bytes is a valid HKDF-SHA-256 length");
    (content_key, nonce)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).expect("base64url")
    }

    // RFC 8291 Appendix A.
    const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH_SECRET: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    fn rfc_key() -> SecretKey {
        let key = SecretKey::from_slice(&b64(UA_PRIVATE)).expect("P-256 scalar");
        assert_eq!(
            key.public_key().to_encoded_point(false).as_bytes(),
            b64(UA_PUBLIC).as_slice()
        );
        key
    }

    #[test]
    fn decrypts_rfc8291_appendix_a() {
        let plaintext = decrypt_aes128gcm(&b64(BODY), &rfc_key(), &b64(AUTH_SECRET));
        assert_eq!(
            plaintext.as_deref(),
            Ok(&b"When I grow up, I want to be a watermelon"[..])
        );
    }

    #[test]
    fn rejects_tampering_and_wrong_secrets() {
        let mut body = b64(BODY);
        let last = body.len() - 1;
        body[last] ^= 1;
        assert_eq!(
            decrypt_aes128gcm(&body, &rfc_key(), &b64(AUTH_SECRET)),
            Err(DecryptError::Authentication)
        );
        assert_eq!(
            decrypt_aes128gcm(&b64(BODY), &rfc_key(), &[0u8; 16]),
            Err(DecryptError::Authentication)
        );
        assert_eq!(
            decrypt_aes128gcm(&b64(BODY)[..30], &rfc_key(), &b64(AUTH_SECRET)),
            Err(DecryptError::Truncated)
        );
        let mut small_records = b64(BODY);
        small_records[16..20].copy_from_slice(&20u32.to_be_bytes());
        assert_eq!(
            decrypt_aes128gcm(&small_records, &rfc_key(), &b64(AUTH_SECRET)),
            Err(DecryptError::BadRecordSize)
        );
    }
}
