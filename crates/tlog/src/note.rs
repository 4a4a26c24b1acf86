//! c2sp.org/signed-note: keys, verifier keys, signature lines and note parsing.
//!
//! Two Ed25519 signature types are implemented, the only ones the ledger uses:
//! [`KEY_TYPE_ED25519`] (0x01, the log's own signature over the note text) and
//! [`KEY_TYPE_COSIGNATURE_V1`] (0x04, a witness's c2sp.org/tlog-cosignature over
//! `cosignature/v1\ntime <secs>\n<text>`, carrying the timestamp in the signature).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::TlogError;

/// Signature type of a plain Ed25519 note signature (the log's key).
pub const KEY_TYPE_ED25519: u8 = 0x01;

/// Signature type of a timestamped Ed25519 `cosignature/v1` (a witness's key).
pub const KEY_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// Largest note accepted, in bytes: far above any checkpoint with its cosignatures, and small
/// enough that parsing attacker-supplied notes stays cheap.
pub const MAX_NOTE_SIZE: usize = 1_000_000;

/// Most signature lines accepted on one note (the spec requires accepting at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// Length of an Ed25519 signature.
const ED25519_SIG_LEN: usize = 64;

/// Length of a `cosignature/v1` payload: 8-byte timestamp then the Ed25519 signature.
const COSIG_LEN: usize = 8 + ED25519_SIG_LEN;

/// The signature line prefix: em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Whether `name` may be a key name: non-empty, no Unicode space, no `+`, no control character.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// The key id: the first four bytes of `SHA-256(name || 0x0A || type || public key)`.
pub fn key_id(name: &str, key_type: u8, public_key: &[u8; 32]) -> [u8; 4] {
    let digest =
        Sha256::new().chain_update(name.as_bytes()).chain_update([b'\n', key_type]).chain_update(public_key).finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn check_key(name: &str, key_type: u8) -> Result<(), TlogError> {
    if !is_valid_key_name(name) {
        return Err(TlogError::InvalidKeyName(name.to_owned()));
    }
    if key_type != KEY_TYPE_ED25519 && key_type != KEY_TYPE_COSIGNATURE_V1 {
        return Err(TlogError::UnsupportedKeyType(key_type));
    }
    Ok(())
}

fn key_label(name: &str, key_id: &[u8; 4]) -> String {
    format!("{name}+{}", hex4(key_id))
}

fn hex4(id: &[u8; 4]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The message a `cosignature/v1` signs.
fn cosigned_message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

/// A private Ed25519 key with its name and signature type.
pub struct Signer {
    name: String,
    key_type: u8,
    key: SigningKey,
    key_id: [u8; 4],
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the seed.
        f.debug_struct("Signer").field("vkey", &self.vkey()).finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a 32-byte Ed25519 seed; `key_type` is [`KEY_TYPE_ED25519`] for a log or
    /// [`KEY_TYPE_COSIGNATURE_V1`] for a witness.
    pub fn new(name: &str, key_type: u8, seed: [u8; 32]) -> Result<Self, TlogError> {
        let seed = Zeroizing::new(seed);
        check_key(name, key_type)?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, key_type, key.verifying_key().as_bytes());
        Ok(Self { name: name.to_owned(), key_type, key, key_id })
    }

    /// A signer with a fresh random key from the operating system.
    pub fn generate(name: &str, key_type: u8) -> Result<Self, TlogError> {
        check_key(name, key_type)?;
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let key_id = key_id(name, key_type, key.verifying_key().as_bytes());
        Ok(Self { name: name.to_owned(), key_type, key, key_id })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signature type byte.
    pub fn key_type(&self) -> u8 {
        self.key_type
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The seed, to store the key; wiped from memory when dropped.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The verifier key string `name+keyid+base64(type || public key)`.
    pub fn vkey(&self) -> String {
        vkey_string(&self.name, self.key_type, &self.key_id, &self.public_key())
    }

    /// The matching [`Verifier`].
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_type: self.key_type,
            key: self.key.verifying_key(),
            key_id: self.key_id,
        }
    }

    /// Signs a note text with a log key (type 0x01).
    pub fn sign_text(&self, text: &str) -> Result<Signature, TlogError> {
        self.expect_type(KEY_TYPE_ED25519)?;
        Ok(self.signature(self.key.sign(text.as_bytes()).to_bytes().to_vec()))
    }

    /// Cosigns a note text at `timestamp` (POSIX seconds) with a witness key (type 0x04).
    pub fn cosign_text(&self, text: &str, timestamp: u64) -> Result<Signature, TlogError> {
        self.expect_type(KEY_TYPE_COSIGNATURE_V1)?;
        if timestamp > i64::MAX as u64 {
            return Err(TlogError::Malformed(format!("cosignature timestamp {timestamp} exceeds 2^63-1")));
        }
        let sig = self.key.sign(cosigned_message(text, timestamp).as_bytes());
        let mut bytes = Vec::with_capacity(COSIG_LEN);
        bytes.extend_from_slice(&timestamp.to_be_bytes());
        bytes.extend_from_slice(&sig.to_bytes());
        Ok(self.signature(bytes))
    }

    fn expect_type(&self, expected: u8) -> Result<(), TlogError> {
        if self.key_type != expected {
            return Err(TlogError::WrongKeyType {
                key: key_label(&self.name, &self.key_id),
                expected,
                got: self.key_type,
            });
        }
        Ok(())
    }

    fn signature(&self, bytes: Vec<u8>) -> Signature {
        Signature { name: self.name.clone(), key_id: self.key_id, bytes }
    }
}

fn vkey_string(name: &str, key_type: u8, key_id: &[u8; 4], public_key: &[u8; 32]) -> String {
    let mut material = Vec::with_capacity(33);
    material.push(key_type);
    material.extend_from_slice(public_key);
    format!("{name}+{}+{}", hex4(key_id), B64.encode(material))
}

/// A public Ed25519 key with its name and signature type, trusted to check notes.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_type: u8,
    key: VerifyingKey,
    key_id: [u8; 4],
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Verifier").field(&self.vkey()).finish()
    }
}

impl Verifier {
    /// A verifier from its parts.
    pub fn new(name: &str, key_type: u8, public_key: [u8; 32]) -> Result<Self, TlogError> {
        check_key(name, key_type)?;
        let key = VerifyingKey::from_bytes(&public_key)
            .map_err(|_| TlogError::MalformedVerifierKey("not an Ed25519 public key".into()))?;
        if key.is_weak() {
            return Err(TlogError::MalformedVerifierKey("weak (small-order) Ed25519 public key".into()));
        }
        Ok(Self { name: name.to_owned(), key_type, key, key_id: key_id(name, key_type, &public_key) })
    }

    /// Parses a verifier key `name+keyid+base64(type || public key)`; the key id must be the one
    /// the name, type and key hash to.
    pub fn from_vkey(vkey: &str) -> Result<Self, TlogError> {
        let bad = |why: &str| TlogError::MalformedVerifierKey(format!("{why}: {vkey:?}"));
        // The name holds no '+', the key id is hex; the base64 key may contain '+'.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+keyid+key"));
        };
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id_hex, 16).map_err(|_| bad("key id is not hex"))?.to_be_bytes();
        let material = B64.decode(material).map_err(|_| bad("key is not base64"))?;
        let [key_type, public_key @ ..] = material.as_slice() else {
            return Err(bad("empty key"));
        };
        let public_key: [u8; 32] = public_key.try_into().map_err(|_| bad("Ed25519 key is not 32 bytes"))?;
        let verifier = Self::new(name, *key_type, public_key)?;
        if verifier.key_id != id {
            return Err(bad("key id does not match the key"));
        }
        Ok(verifier)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The signature type byte.
    pub fn key_type(&self) -> u8 {
        self.key_type
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The verifier key string.
    pub fn vkey(&self) -> String {
        vkey_string(&self.name, self.key_type, &self.key_id, self.key.as_bytes())
    }

    /// `name+keyid`, how errors name the key.
    pub fn label(&self) -> String {
        key_label(&self.name, &self.key_id)
    }

    /// Whether `sig` claims to be by this key (same name and key id). Lines that do not are
    /// ignored, as the spec requires for unknown keys.
    pub fn matches(&self, sig: &Signature) -> bool {
        sig.name == self.name && sig.key_id == self.key_id
    }

    /// Verifies `sig` over the note `text`. Returns the cosignature timestamp for a type 0x04
    /// key, `None` for a type 0x01 key.
    pub fn verify(&self, text: &str, sig: &Signature) -> Result<Option<u64>, TlogError> {
        let bad = || TlogError::BadSignature { key: self.label() };
        if !self.matches(sig) {
            return Err(bad());
        }
        let (message, timestamp, raw) = match self.key_type {
            KEY_TYPE_ED25519 => (text.to_owned(), None, sig.bytes.as_slice()),
            _ => {
                if sig.bytes.len() != COSIG_LEN {
                    return Err(bad());
                }
                let (ts, raw) = sig.bytes.split_at(8);
                let mut be = [0; 8];
                be.copy_from_slice(ts);
                let timestamp = u64::from_be_bytes(be);
                if timestamp > i64::MAX as u64 {
                    return Err(bad());
                }
                (cosigned_message(text, timestamp), Some(timestamp), raw)
            }
        };
        let raw: [u8; ED25519_SIG_LEN] = raw.try_into().map_err(|_| bad())?;
        // Strict verification refuses malleable signatures and small-order points.
        self.key.verify_strict(message.as_bytes(), &ed25519_dalek::Signature::from_bytes(&raw)).map_err(|_| bad())?;
        Ok(timestamp)
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The key name.
    pub name: String,
    /// The key id (first four bytes of the base64 payload).
    pub key_id: [u8; 4],
    /// The rest of the payload: an Ed25519 signature, or for a cosignature the 8-byte
    /// big-endian timestamp followed by the Ed25519 signature.
    pub bytes: Vec<u8>,
}

impl Signature {
    /// Parses one signature line, without its final newline: `— <name> <base64>`.
    pub fn parse_line(line: &str) -> Result<Self, TlogError> {
        let bad = |why: &str| TlogError::MalformedNote(format!("{why} in signature line {line:?}"));
        let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(|| bad("no em dash and space"))?;
        let (name, b64) = rest.split_once(' ').ok_or_else(|| bad("no space after the key name"))?;
        if !is_valid_key_name(name) {
            return Err(bad("invalid key name"));
        }
        let payload = B64.decode(b64).map_err(|_| bad("invalid base64"))?;
        if payload.len() < 5 {
            return Err(bad("signature too short"));
        }
        let (id, bytes) = payload.split_at(4);
        Ok(Self { name: name.to_owned(), key_id: [id[0], id[1], id[2], id[3]], bytes: bytes.to_vec() })
    }

    /// The signature line, with its final newline.
    pub fn to_line(&self) -> String {
        let mut payload = Vec::with_capacity(4 + self.bytes.len());
        payload.extend_from_slice(&self.key_id);
        payload.extend_from_slice(&self.bytes);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(payload))
    }

    /// The timestamp a cosignature claims (unverified), if the payload has the cosignature length.
    pub fn cosignature_timestamp(&self) -> Option<u64> {
        let ts: [u8; 8] = self.bytes.get(..8)?.try_into().ok()?;
        (self.bytes.len() == COSIG_LEN).then(|| u64::from_be_bytes(ts))
    }
}

/// Parses a block of signature lines, each ending in a newline (a note's signature block, or a
/// witness's `add-checkpoint` response).
pub fn parse_signature_lines(block: &str) -> Result<Vec<Signature>, TlogError> {
    let Some(lines) = block.strip_suffix('\n') else {
        return Err(TlogError::MalformedNote("signature lines must end with a newline".into()));
    };
    let signatures = lines.split('\n').map(Signature::parse_line).collect::<Result<Vec<_>, _>>()?;
    if signatures.len() > MAX_SIGNATURES {
        return Err(TlogError::MalformedNote(format!("more than {MAX_SIGNATURES} signatures")));
    }
    Ok(signatures)
}

/// A signed note: text (ending in a newline) and its signature lines. Parsing checks the form
/// only; [`crate::checkpoint::open`] checks signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<Signature>,
}

/// Checks a note text: ends with a newline, no control characters other than newline.
pub fn check_text(text: &str) -> Result<(), TlogError> {
    if !text.ends_with('\n') {
        return Err(TlogError::MalformedNote("text does not end with a newline".into()));
    }
    if let Some(c) = text.chars().find(|&c| c < ' ' && c != '\n') {
        return Err(TlogError::MalformedNote(format!("control character U+{:04X}", u32::from(c))));
    }
    Ok(())
}

impl Note {
    /// Parses a signed note, strictly per c2sp.org/signed-note: at most [`MAX_NOTE_SIZE`]
    /// bytes, no control characters but newline, the text separated from one or more
    /// signature lines by the last blank line, every line ending in a newline.
    pub fn parse(note: &str) -> Result<Self, TlogError> {
        if note.len() > MAX_NOTE_SIZE {
            return Err(TlogError::MalformedNote(format!("larger than {MAX_NOTE_SIZE} bytes")));
        }
        if let Some(c) = note.chars().find(|&c| c < ' ' && c != '\n') {
            return Err(TlogError::MalformedNote(format!("control character U+{:04X}", u32::from(c))));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| TlogError::MalformedNote("no blank line between text and signatures".into()))?;
        let (text, block) = (&note[..=split], &note[split + 2..]);
        if block.is_empty() {
            return Err(TlogError::MalformedNote("no signature lines".into()));
        }
        Ok(Self { text: text.to_owned(), signatures: parse_signature_lines(block)? })
    }

    /// The note as text: the text, a blank line, the signature lines.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1 + self.signatures.len() * 110);
        out.push_str(&self.text);
        out.push('\n');
        for sig in &self.signatures {
            out.push_str(&sig.to_line());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_vkey() {
        let v = Verifier::from_vkey("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").unwrap();
        assert_eq!(v.key_id(), [0x53, 0x0d, 0x90, 0x3a]);
        assert_eq!(v.key_type(), KEY_TYPE_ED25519);
        assert!(Verifier::from_vkey("example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").is_err());
        assert!(Verifier::from_vkey("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k+").is_err());
        assert!(Verifier::from_vkey("example.com/foo+530d903+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").is_err());
    }

    #[test]
    fn signers_check_their_type() {
        let log = Signer::new("log.example", KEY_TYPE_ED25519, [7; 32]).unwrap();
        let witness = Signer::new("w.example", KEY_TYPE_COSIGNATURE_V1, [8; 32]).unwrap();
        assert!(log.cosign_text("a\n", 1).is_err());
        assert!(witness.sign_text("a\n").is_err());
        assert!(witness.cosign_text("a\n", u64::MAX).is_err());
        assert!(Signer::new("bad name", KEY_TYPE_ED25519, [0; 32]).is_err());
        assert!(Signer::new("a+b", KEY_TYPE_ED25519, [0; 32]).is_err());
        assert!(Signer::new("x", 0x02, [0; 32]).is_err());
        assert_eq!(*log.seed(), [7; 32]);
        assert!(!format!("{log:?}").contains("0707"));
        let sig = witness.cosign_text("a\n", 42).unwrap();
        assert_eq!(sig.cosignature_timestamp(), Some(42));
        assert_eq!(witness.verifier().verify("a\n", &sig), Ok(Some(42)));
        assert!(witness.verifier().verify("b\n", &sig).is_err());
        let generated = Signer::generate("g.example", KEY_TYPE_ED25519).unwrap();
        assert_eq!(Verifier::from_vkey(&generated.vkey()).unwrap(), generated.verifier());
    }

    #[test]
    fn strict_note_form() {
        let log = Signer::new("log.example", KEY_TYPE_ED25519, [7; 32]).unwrap();
        let note = Note { text: "hello\n".into(), signatures: vec![log.sign_text("hello\n").unwrap()] };
        let encoded = note.encode();
        assert_eq!(Note::parse(&encoded).unwrap(), note);
        let line = note.signatures[0].to_line();
        for bad in [
            format!("hello\n{line}"),
            format!("hello\n\n{}", line.trim_end()),
            format!("hello\n\n{line}\n"),
            format!("hello\r\n\n{line}"),
            format!("hello\n\n{}", line.replacen('\u{2014}', "-", 1)),
            format!("hello\n\n{}", line.replacen(' ', "  ", 1)),
            "hello\n\n".to_string(),
            format!("hello\n\n{}", "— a AAAA\n"),
        ] {
            assert!(Note::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
