//! Web Push message encryption (RFC 8291) in the `aes128gcm` content coding (RFC 8188).
//!
//! Every message is one record, encrypted for the subscription's P-256 key and auth secret with a
//! fresh ephemeral key pair and salt. The body is the RFC 8188 header (salt, record size, and the
//! ephemeral public key as key id) followed by the record.

use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use hkdf::Hkdf;
use p256::elliptic_curve::rand_core::{OsRng, RngCore};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

/// Record size written in the header. One record carries the whole message.
pub const RECORD_SIZE: u32 = 4096;
/// An uncompressed SEC1 P-256 point: 0x04, x, y.
pub const PUBLIC_KEY_LEN: usize = 65;
pub const AUTH_SECRET_LEN: usize = 16;
pub const SALT_LEN: usize = 16;
/// salt (16) + record size (4) + key id length (1) + key id (65).
pub const HEADER_LEN: usize = SALT_LEN + 4 + 1 + PUBLIC_KEY_LEN;
const TAG_LEN: usize = 16;
/// Ends the plaintext of the last (here: only) record; no padding follows it.
const LAST_RECORD_DELIMITER: u8 = 0x02;
/// Push services must accept 4096 bytes of body (RFC 8030 section 7.2); with the header, the
/// delimiter and the tag that leaves 3993 bytes of plaintext (RFC 8291 section 4).
pub const MAX_PLAINTEXT_LEN: usize = 4096 - HEADER_LEN - 1 - TAG_LEN;

const WEBPUSH_INFO: &[u8] = b"WebPush: info\0";
const CEK_INFO: &[u8] = b"Content-Encoding: aes128gcm\0";
const NONCE_INFO: &[u8] = b"Content-Encoding: nonce\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EceError {
    #[error("the subscription key (p256dh) is not an uncompressed P-256 point")]
    InvalidPublicKey,
    #[error("the subscription auth secret must be {AUTH_SECRET_LEN} bytes, not {0}")]
    InvalidAuthSecret(usize),
    #[error(
        "a plaintext of {0} bytes is longer than the {MAX_PLAINTEXT_LEN} a push message carries"
    )]
    PlaintextTooLong(usize),
    #[error("AES-128-GCM encryption failed")]
    Encryption,
}

/// Encrypts `plaintext` for the subscription with `ua_public` (65-byte uncompressed P-256 point)
/// and `auth_secret` (16 bytes), with a fresh ephemeral key pair and salt.
pub fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
) -> Result<Vec<u8>, EceError> {
    let as_private = SecretKey::random(&mut OsRng);
    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    encrypt_with(plaintext, ua_public, auth_secret, &as_private, salt)
}

/// [`encrypt`] with the application server's ephemeral key and the salt given: deterministic.
pub fn encrypt_with(
    plaintext: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
    as_private: &SecretKey,
    salt: [u8; SALT_LEN],
) -> Result<Vec<u8>, EceError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(EceError::PlaintextTooLong(plaintext.len()));
    }
    let ua_key = parse_public_key(ua_public)?;
    if auth_secret.len() != AUTH_SECRET_LEN {
        return Err(EceError::InvalidAuthSecret(auth_secret.len()));
    }
    let as_public = as_private.public_key().to_encoded_point(false);
    let as_public = as_public.as_bytes();

    let shared = p256::ecdh::diffie_hellman(as_private.to_nonzero_scalar(), ua_key.as_affine());
    let (cek, nonce) = derive_key_and_nonce(
        shared.raw_secret_bytes(),
        auth_secret,
        ua_public,
        as_public,
        &salt,
    )?;

    let mut body = Vec::with_capacity(HEADER_LEN + plaintext.len() + 1 + TAG_LEN);
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(PUBLIC_KEY_LEN as u8);
    body.extend_from_slice(as_public);
    body.extend_from_slice(plaintext);
    body.push(LAST_RECORD_DELIMITER);

    let cipher = Aes128Gcm::new(&cek.into());
    // The only record has sequence number 0, so its nonce is the derived one unchanged.
    let tag = cipher
        .encrypt_in_place_detached(&nonce.into(), b"", &mut body[HEADER_LEN..])
        .map_err(|_| EceError::Encryption)?;
    body.extend_from_slice(&tag);
    Ok(body)
}

fn parse_public_key(bytes: &[u8]) -> Result<PublicKey, EceError> {
    // RFC 8291 requires the uncompressed form; its exact bytes also go into the key derivation.
    if bytes.len() != PUBLIC_KEY_LEN || bytes[0] != 0x04 {
        return Err(EceError::InvalidPublicKey);
    }
    PublicKey::from_sec1_bytes(bytes).map_err(|_| EceError::InvalidPublicKey)
}

/// RFC 8291 section 3.4 then RFC 8188 section 2.2: the content encryption key and the nonce.
fn derive_key_and_nonce(
    ecdh_secret: &[u8],
    auth_secret: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8],
) -> Result<([u8; 16], [u8; 12]), EceError> {
    let mut key_info = Vec::with_capacity(WEBPUSH_INFO.len() + 2 * PUBLIC_KEY_LEN);
    key_info.extend_from_slice(WEBPUSH_INFO);
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth_secret), ecdh_secret)
        .expand(&key_info, &mut ikm)
        .map_err(|_| EceError::Encryption)?;

    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(CEK_INFO, &mut cek)
        .map_err(|_| EceError::Encryption)?;
    prk.expand(NONCE_INFO, &mut nonce)
        .map_err(|_| EceError::Encryption)?;
    Ok((cek, nonce))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn b64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).unwrap()
    }

    /// What a browser does with a push message, by the fake push service's independent
    /// implementation of RFC 8291 (so a shared misreading of the RFC cannot pass both).
    pub(crate) fn decrypt(body: &[u8], ua_private: &SecretKey, auth_secret: &[u8]) -> Vec<u8> {
        let record_size = u32::from_be_bytes(body[SALT_LEN..SALT_LEN + 4].try_into().unwrap());
        assert_eq!(record_size, RECORD_SIZE);
        herald_fakes::ece::decrypt_aes128gcm(body, ua_private, auth_secret).unwrap()
    }

    /// RFC 8291 Appendix A.
    const RFC_PLAINTEXT: &str = "V2hlbiBJIGdyb3cgdXAsIEkgd2FudCB0byBiZSBhIHdhdGVybWVsb24";
    const RFC_AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const RFC_AS_PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
    const RFC_UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const RFC_UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const RFC_AUTH_SECRET: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const RFC_SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const RFC_BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    #[test]
    fn reproduces_rfc_8291_appendix_a() {
        let plaintext = b64(RFC_PLAINTEXT);
        assert_eq!(plaintext, b"When I grow up, I want to be a watermelon");
        let as_private = SecretKey::from_slice(&b64(RFC_AS_PRIVATE)).unwrap();
        assert_eq!(
            as_private.public_key().to_encoded_point(false).as_bytes(),
            b64(RFC_AS_PUBLIC)
        );
        let ua_private = SecretKey::from_slice(&b64(RFC_UA_PRIVATE)).unwrap();
        assert_eq!(
            ua_private.public_key().to_encoded_point(false).as_bytes(),
            b64(RFC_UA_PUBLIC)
        );
        let salt: [u8; SALT_LEN] = b64(RFC_SALT).try_into().unwrap();

        let body = encrypt_with(
            &plaintext,
            &b64(RFC_UA_PUBLIC),
            &b64(RFC_AUTH_SECRET),
            &as_private,
            salt,
        )
        .unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(&body), RFC_BODY);
        assert_eq!(
            decrypt(&body, &ua_private, &b64(RFC_AUTH_SECRET)),
            plaintext
        );
    }

    #[test]
    fn round_trips_with_fresh_keys_and_salt() {
        let ua_private = SecretKey::random(&mut OsRng);
        let ua_public = ua_private.public_key().to_encoded_point(false);
        let auth_secret = [7u8; AUTH_SECRET_LEN];
        let plaintext = vec![b'x'; MAX_PLAINTEXT_LEN];

        let first = encrypt(&plaintext, ua_public.as_bytes(), &auth_secret).unwrap();
        let second = encrypt(&plaintext, ua_public.as_bytes(), &auth_secret).unwrap();
        assert_ne!(first, second, "salt and ephemeral key are fresh each time");
        assert_eq!(
            first.len(),
            4096,
            "the largest message is exactly 4096 bytes"
        );
        assert_eq!(decrypt(&first, &ua_private, &auth_secret), plaintext);
        assert_eq!(decrypt(&second, &ua_private, &auth_secret), plaintext);

        let empty = encrypt(b"", ua_public.as_bytes(), &auth_secret).unwrap();
        assert_eq!(decrypt(&empty, &ua_private, &auth_secret), b"");
    }

    #[test]
    fn rejects_bad_keys_and_oversized_plaintext() {
        let ua_public = SecretKey::random(&mut OsRng)
            .public_key()
            .to_encoded_point(false);
        let auth_secret = [1u8; AUTH_SECRET_LEN];
        let compressed = SecretKey::random(&mut OsRng)
            .public_key()
            .to_encoded_point(true);

        assert_eq!(
            encrypt(b"hi", compressed.as_bytes(), &auth_secret),
            Err(EceError::InvalidPublicKey)
        );
        let mut off_curve = ua_public.as_bytes().to_vec();
        off_curve[64] ^= 1;
        assert_eq!(
            encrypt(b"hi", &off_curve, &auth_secret),
            Err(EceError::InvalidPublicKey)
        );
        assert_eq!(
            encrypt(b"hi", ua_public.as_bytes(), &[1u8; 12]),
            Err(EceError::InvalidAuthSecret(12))
        );
        assert_eq!(
            encrypt(
                &[0u8; MAX_PLAINTEXT_LEN + 1],
                ua_public.as_bytes(),
                &auth_secret
            ),
            Err(EceError::PlaintextTooLong(MAX_PLAINTEXT_LEN + 1))
        );
    }
}
