//! Envelope encryption with AES-256-GCM.
//!
//! Every version of every sealed object (a record version, a subject profile
//! version) gets a fresh random 256-bit data key. The payload is encrypted
//! under it with the object's resource name and version as associated data,
//! and the data key is wrapped (AES-256-GCM again) under a key-encryption key
//! (KEK) named by id, with the KEK id, resource name and version as associated
//! data. So a ciphertext or a wrapped key copied to another row or version
//! fails to open, and re-wrapping under a new KEK never touches the payload.
use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::keyring::Keyring;

/// Length of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of a wrapped data key: nonce, 32-byte key, 16-byte tag.
pub const WRAPPED_KEY_LEN: usize = NONCE_LEN + 32 + 16;

/// Why sealing or opening failed. Deliberately coarse: which check failed is
/// not something to tell anyone who may have tampered with the store.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("key-encryption key {0} is not loaded")]
    UnknownKek(String),
    #[error("sealed data failed its integrity check")]
    Integrity,
}

/// Where a sealed object lives: bound into both ciphertexts.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    /// The resource name, e.g. `subjects/s1/records/r1` or `subjects/s1`.
    pub name: &'a str,
    /// The version, from 1.
    pub version: i64,
}

impl Binding<'_> {
    /// Length-prefixed so that no two (label, name, version) triples share an encoding.
    fn aad(&self, label: &[u8], kek_id: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(label.len() + kek_id.len() + self.name.len() + 24);
        for part in [label, kek_id.as_bytes(), self.name.as_bytes()] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad
    }
}

const PAYLOAD_LABEL: &[u8] = b"quis.vault.payload.v1";
const WRAP_LABEL: &[u8] = b"quis.vault.data-key.v1";

/// A sealed object as stored: payload ciphertext and the wrapped data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub wrapped_key: Vec<u8>,
    pub kek_id: String,
}

/// Encrypts `plaintext` under a fresh data key wrapped by the active KEK.
pub fn seal(keyring: &Keyring, at: Binding<'_>, plaintext: &[u8]) -> Result<Sealed, EnvelopeError> {
    let mut data_key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(data_key.as_mut());
    let nonce = random_nonce();
    let cipher = Aes256Gcm::new(data_key.as_ref().into());
    let ciphertext = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: &at.aad(PAYLOAD_LABEL, "") })
        .map_err(|_| EnvelopeError::Integrity)?;
    let (kek_id, _) = keyring.active();
    let wrapped_key = wrap(keyring, kek_id, at, &data_key)?;
    Ok(Sealed { nonce: nonce.to_vec(), ciphertext, wrapped_key, kek_id: kek_id.to_string() })
}

/// Decrypts a sealed object stored at `at`.
pub fn open(keyring: &Keyring, at: Binding<'_>, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let data_key = unwrap(keyring, &sealed.kek_id, at, &sealed.wrapped_key)?;
    let nonce: [u8; NONCE_LEN] = sealed.nonce.as_slice().try_into().map_err(|_| EnvelopeError::Integrity)?;
    let cipher = Aes256Gcm::new(data_key.as_ref().into());
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: &sealed.ciphertext, aad: &at.aad(PAYLOAD_LABEL, "") })
        .map(Zeroizing::new)
        .map_err(|_| EnvelopeError::Integrity)
}

/// Re-wraps a data key from its KEK under the active one; the payload is untouched.
/// Returns the new wrapped key and the active KEK id.
pub fn rewrap(
    keyring: &Keyring,
    at: Binding<'_>,
    kek_id: &str,
    wrapped_key: &[u8],
) -> Result<(Vec<u8>, String), EnvelopeError> {
    let data_key = unwrap(keyring, kek_id, at, wrapped_key)?;
    let (active, _) = keyring.active();
    Ok((wrap(keyring, active, at, &data_key)?, active.to_string()))
}

fn wrap(keyring: &Keyring, kek_id: &str, at: Binding<'_>, data_key: &[u8; 32]) -> Result<Vec<u8>, EnvelopeError> {
    let kek = keyring.get(kek_id).ok_or_else(|| EnvelopeError::UnknownKek(kek_id.to_string()))?;
    let nonce = random_nonce();
    let cipher = Aes256Gcm::new(kek.into());
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: data_key, aad: &at.aad(WRAP_LABEL, kek_id) })
        .map_err(|_| EnvelopeError::Integrity)?;
    let mut out = Vec::with_capacity(WRAPPED_KEY_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn unwrap(
    keyring: &Keyring,
    kek_id: &str,
    at: Binding<'_>,
    wrapped_key: &[u8],
) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
    let kek = keyring.get(kek_id).ok_or_else(|| EnvelopeError::UnknownKek(kek_id.to_string()))?;
    if wrapped_key.len() != WRAPPED_KEY_LEN {
        return Err(EnvelopeError::Integrity);
    }
    let (nonce, sealed) = wrapped_key.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| EnvelopeError::Integrity)?;
    let cipher = Aes256Gcm::new(kek.into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: &at.aad(WRAP_LABEL, kek_id) })
            .map_err(|_| EnvelopeError::Integrity)?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&plain);
    Ok(key)
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn keyring() -> Keyring {
        Keyring::from_keys([("k1".to_string(), [7u8; 32]), ("k2".to_string(), [9u8; 32])], "k1").expect("keyring")
    }

    const AT: Binding<'static> = Binding { name: "subjects/s1/records/r1", version: 1 };

    #[test]
    fn round_trip_and_fresh_keys() {
        let ring = keyring();
        let a = seal(&ring, AT, b"payload").expect("seal");
        let b = seal(&ring, AT, b"payload").expect("seal");
        assert_ne!(a.ciphertext, b.ciphertext, "a fresh data key and nonce per seal");
        assert_ne!(a.wrapped_key, b.wrapped_key);
        assert_eq!(a.kek_id, "k1");
        assert_eq!(open(&ring, AT, &a).expect("open").as_slice(), b"payload");
    }

    #[test]
    fn tampering_with_any_part_fails() {
        let ring = keyring();
        let sealed = seal(&ring, AT, b"a record field value").expect("seal");
        let flip = |bytes: &mut Vec<u8>, i: usize| bytes[i] ^= 1;

        for i in [0, sealed.ciphertext.len() / 2, sealed.ciphertext.len() - 1] {
            let mut s = sealed.clone();
            flip(&mut s.ciphertext, i);
            assert_eq!(open(&ring, AT, &s), Err(EnvelopeError::Integrity), "ciphertext byte {i}");
        }
        let mut s = sealed.clone();
        flip(&mut s.nonce, 0);
        assert_eq!(open(&ring, AT, &s), Err(EnvelopeError::Integrity), "nonce");
        for i in [0, NONCE_LEN, WRAPPED_KEY_LEN - 1] {
            let mut s = sealed.clone();
            flip(&mut s.wrapped_key, i);
            assert_eq!(open(&ring, AT, &s), Err(EnvelopeError::Integrity), "wrapped key byte {i}");
        }
        let mut s = sealed.clone();
        s.ciphertext.truncate(3);
        assert_eq!(open(&ring, AT, &s), Err(EnvelopeError::Integrity), "truncated");

        // The same wrapped key claimed to be under another known KEK.
        let mut s = sealed.clone();
        s.kek_id = "k2".into();
        assert_eq!(open(&ring, AT, &s), Err(EnvelopeError::Integrity), "kek id swapped");
        let mut s = sealed.clone();
        s.kek_id = "k9".into();
        assert_eq!(open(&ring, AT, &s), Err(EnvelopeError::UnknownKek("k9".into())));
    }

    #[test]
    fn moved_rows_and_versions_fail() {
        let ring = keyring();
        let sealed = seal(&ring, AT, b"payload").expect("seal");
        for other in [
            Binding { name: "subjects/s1/records/r2", version: 1 },
            Binding { name: "subjects/s2/records/r1", version: 1 },
            Binding { name: "subjects/s1/records/r1", version: 2 },
            Binding { name: "subjects/s1", version: 1 },
        ] {
            assert_eq!(open(&ring, other, &sealed), Err(EnvelopeError::Integrity), "{other:?}");
        }
        // A payload spliced with another row's (valid) wrapped key.
        let other = seal(&ring, Binding { name: "subjects/s1/records/r2", version: 1 }, b"payload").expect("seal");
        let spliced = Sealed { wrapped_key: other.wrapped_key, ..sealed };
        assert_eq!(open(&ring, AT, &spliced), Err(EnvelopeError::Integrity));
    }

    #[test]
    fn rewrap_moves_to_the_active_kek_and_keeps_the_payload() {
        let old = keyring();
        let sealed = seal(&old, AT, b"payload").expect("seal");
        let new =
            Keyring::from_keys([("k1".to_string(), [7u8; 32]), ("k2".to_string(), [9u8; 32])], "k2").expect("keyring");
        let (wrapped_key, kek_id) = rewrap(&new, AT, &sealed.kek_id, &sealed.wrapped_key).expect("rewrap");
        assert_eq!(kek_id, "k2");
        let moved = Sealed { wrapped_key, kek_id, ..sealed.clone() };
        assert_eq!(open(&new, AT, &moved).expect("open").as_slice(), b"payload");
        // Once re-wrapped, the old KEK is no longer needed.
        let only_new = Keyring::from_keys([("k2".to_string(), [9u8; 32])], "k2").expect("keyring");
        assert_eq!(open(&only_new, AT, &moved).expect("open").as_slice(), b"payload");
        assert_eq!(open(&only_new, AT, &sealed), Err(EnvelopeError::UnknownKek("k1".into())));
    }

    proptest! {
        #[test]
        fn seal_open_round_trips(plain in proptest::collection::vec(any::<u8>(), 0..4096),
                                 name in "[a-z0-9/-]{1,80}", version in 1i64..i64::MAX) {
            let ring = keyring();
            let at = Binding { name: &name, version };
            let sealed = seal(&ring, at, &plain).expect("seal");
            prop_assert_eq!(sealed.ciphertext.len(), plain.len() + 16);
            let opened = open(&ring, at, &sealed).expect("open");
            prop_assert_eq!(opened.as_slice(), plain.as_slice());
            let later = Binding { name: &name, version: version - 1 };
            prop_assert_eq!(open(&ring, later, &sealed), Err(EnvelopeError::Integrity));
        }
    }
}
