//! c2sp.org/tlog-checkpoint: the tree head as note text, signed by the log and cosigned by
//! witnesses (c2sp.org/tlog-cosignature).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::note::{self, KEY_TYPE_COSIGNATURE_V1, KEY_TYPE_ED25519, MAX_SIGNATURES, Note, Signature, Signer, Verifier};
use crate::{HASH_SIZE, Hash, TlogError};

/// A tree head: origin, size and root, with optional extension lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `quis.example/audit`.
    pub origin: String,
    /// The number of entries in the tree.
    pub size: u64,
    /// The RFC 6962 root hash of the tree.
    pub root: Hash,
    /// Extension lines (without newlines), each non-empty. Opaque and not recommended.
    pub extensions: Vec<String>,
}

fn malformed(why: impl Into<String>) -> TlogError {
    TlogError::MalformedCheckpoint(why.into())
}

impl Checkpoint {
    /// Parses a checkpoint body: origin, size (decimal, no leading zeros), base64 root, then
    /// any extension lines, every line non-empty and ending in a newline.
    pub fn parse(text: &str) -> Result<Self, TlogError> {
        note::check_text(text).map_err(|e| malformed(e.to_string()))?;
        let body = &text[..text.len() - 1];
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(malformed("fewer than three lines"));
        };
        if origin.is_empty() {
            return Err(malformed("empty origin"));
        }
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(malformed(format!("tree size {size:?} is not a canonical decimal")));
        }
        let size: u64 = size.parse().map_err(|_| malformed(format!("tree size {size:?} is too large")))?;
        let root_bytes = B64.decode(root).map_err(|_| malformed(format!("root hash {root:?} is not base64")))?;
        let root: Hash =
            root_bytes.try_into().map_err(|_| malformed(format!("root hash {root:?} is not {HASH_SIZE} bytes")))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(malformed("empty extension line"));
        }
        Ok(Self { origin: origin.to_owned(), size, root, extensions })
    }

    /// The note text: `origin\nsize\nbase64(root)\n` followed by the extension lines.
    pub fn body(&self) -> String {
        let mut out = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        for ext in &self.extensions {
            out.push_str(ext);
            out.push('\n');
        }
        out
    }

    /// The body, after checking it parses back to this checkpoint (no newline in the origin or
    /// an extension, no empty line), so that nothing malformed is ever signed.
    fn checked_body(&self) -> Result<String, TlogError> {
        let body = self.body();
        if Checkpoint::parse(&body)? != *self {
            return Err(malformed("origin or extension lines contain newlines"));
        }
        Ok(body)
    }
}

/// Signs a checkpoint with one or more log keys (several during a key rotation); returns the
/// signed note, signature lines in the order of `log_signers`.
pub fn sign(checkpoint: &Checkpoint, log_signers: &[&Signer]) -> Result<String, TlogError> {
    if log_signers.is_empty() {
        return Err(TlogError::Malformed("a checkpoint needs at least one log signature".into()));
    }
    let text = checkpoint.checked_body()?;
    let signatures = log_signers.iter().map(|s| s.sign_text(&text)).collect::<Result<Vec<_>, _>>()?;
    Ok(Note { text, signatures }.encode())
}

/// A witness's `cosignature/v1` over a checkpoint body at `timestamp` (POSIX seconds).
pub fn cosign(checkpoint_body: &str, witness: &Signer, timestamp: u64) -> Result<Signature, TlogError> {
    Checkpoint::parse(checkpoint_body)?;
    witness.cosign_text(checkpoint_body, timestamp)
}

/// Appends signature lines (typically cosignatures) to a signed note. A line by the same key
/// (name and key id) already on the note is replaced, so re-cosigning does not pile up lines.
pub fn add_signatures(note: &str, extra: &[Signature]) -> Result<String, TlogError> {
    let mut parsed = Note::parse(note)?;
    for sig in extra {
        if !note::is_valid_key_name(&sig.name) {
            return Err(TlogError::InvalidKeyName(sig.name.clone()));
        }
    }
    parsed.signatures.retain(|old| !extra.iter().any(|new| new.name == old.name && new.key_id == old.key_id));
    parsed.signatures.extend(extra.iter().cloned());
    if parsed.signatures.len() > MAX_SIGNATURES {
        return Err(TlogError::MalformedNote(format!("more than {MAX_SIGNATURES} signatures")));
    }
    Ok(parsed.encode())
}

/// A checkpoint whose note verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// Key ids of the log keys with a valid signature (at least one).
    pub log_key_ids: Vec<[u8; 4]>,
    /// Witnesses with a valid cosignature: name and cosignature timestamp, one per key, in note
    /// order (the latest timestamp if a key cosigned twice).
    pub cosigners: Vec<(String, u64)>,
}

/// Opens a signed checkpoint: parses it strictly and checks every signature line by a known key.
///
/// Lines by unknown keys (name or key id not both matching a verifier) are ignored, as
/// c2sp.org/signed-note requires. A line by a known key that does not verify rejects the whole
/// note. At least one log key (type 0x01) must have signed. Valid witness cosignatures (type
/// 0x04) are returned; the caller applies its quorum and any timestamp policy.
pub fn open(note: &str, log_verifiers: &[Verifier], witness_verifiers: &[Verifier]) -> Result<Verified, TlogError> {
    for (verifiers, expected) in [(log_verifiers, KEY_TYPE_ED25519), (witness_verifiers, KEY_TYPE_COSIGNATURE_V1)] {
        if let Some(v) = verifiers.iter().find(|v| v.key_type() != expected) {
            return Err(TlogError::WrongKeyType { key: v.label(), expected, got: v.key_type() });
        }
    }
    let parsed = Note::parse(note)?;
    let checkpoint = Checkpoint::parse(&parsed.text)?;
    let mut log_key_ids = Vec::new();
    let mut cosigners: Vec<(String, [u8; 4], u64)> = Vec::new();
    for sig in &parsed.signatures {
        if let Some(v) = log_verifiers.iter().find(|v| v.matches(sig)) {
            v.verify(&parsed.text, sig)?;
            if !log_key_ids.contains(&v.key_id()) {
                log_key_ids.push(v.key_id());
            }
        }
        if let Some(v) = witness_verifiers.iter().find(|v| v.matches(sig)) {
            let timestamp = v.verify(&parsed.text, sig)?.unwrap_or_default();
            match cosigners.iter_mut().find(|(name, id, _)| *name == sig.name && *id == sig.key_id) {
                Some(seen) => seen.2 = seen.2.max(timestamp),
                None => cosigners.push((sig.name.clone(), sig.key_id, timestamp)),
            }
        }
    }
    if log_key_ids.is_empty() {
        return Err(TlogError::NoLogSignature);
    }
    Ok(Verified { checkpoint, log_key_ids, cosigners: cosigners.into_iter().map(|(name, _, ts)| (name, ts)).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint { origin: "o.example/log".into(), size: 3, root: [9; 32], extensions: vec![] }
    }

    #[test]
    fn strict_bodies() {
        let body = cp().body();
        assert_eq!(Checkpoint::parse(&body).unwrap(), cp());
        for bad in [
            "o\n3\n",
            "o\n03\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "o\n+3\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "o\n3\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=",
            "o\n3\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n\n",
            "o\n3\nCQkJ\n",
            "\n3\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "o\n18446744073709551616\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
        let mut newline = cp();
        newline.origin = "a\nb".into();
        let log = Signer::new("o.example/log", KEY_TYPE_ED25519, [1; 32]).unwrap();
        assert!(sign(&newline, &[&log]).is_err());
        assert!(sign(&cp(), &[]).is_err());
    }

    #[test]
    fn cosign_and_replace() {
        let log = Signer::new("o.example/log", KEY_TYPE_ED25519, [1; 32]).unwrap();
        let w = Signer::new("w.example", KEY_TYPE_COSIGNATURE_V1, [2; 32]).unwrap();
        let note = sign(&cp(), &[&log]).unwrap();
        let once = add_signatures(&note, &[cosign(&cp().body(), &w, 10).unwrap()]).unwrap();
        let twice = add_signatures(&once, &[cosign(&cp().body(), &w, 11).unwrap()]).unwrap();
        assert_eq!(twice.lines().count(), once.lines().count());
        let v = open(&twice, &[log.verifier()], &[w.verifier()]).unwrap();
        assert_eq!(v.cosigners, vec![("w.example".to_string(), 11)]);
        assert!(matches!(open(&twice, &[w.verifier()], &[]), Err(TlogError::WrongKeyType { .. })));
        assert!(cosign("not a checkpoint\n", &w, 1).is_err());
    }
}
