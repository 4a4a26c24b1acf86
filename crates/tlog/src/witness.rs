//! c2sp.org/tlog-witness messages: the `add-checkpoint` request body and the cosignature
//! response. The witness's decisions (404, 403, 409, 422) stay in the witness; this module only
//! reads and writes the bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::note::{Note, Signature, parse_signature_lines};
use crate::{Hash, TlogError};

/// Most consistency proof lines a request may carry (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;

/// Largest request body accepted: a maximal proof plus a maximal note.
pub const MAX_REQUEST_SIZE: usize = crate::note::MAX_NOTE_SIZE + 4096;

/// The body of `POST <prefix>/add-checkpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the client believes the witness last cosigned (0 if none).
    pub old_size: u64,
    /// Consistency proof from `old_size` to the new checkpoint's size (empty if `old_size` is 0).
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, well-formed but not yet verified.
    pub note: String,
}

fn malformed(why: impl Into<String>) -> TlogError {
    TlogError::MalformedWitnessMessage(why.into())
}

impl AddCheckpoint {
    /// Parses a request body: `old <size>\n`, up to 63 base64 hash lines, an empty line, then
    /// a signed note (checked for form with [`Note::parse`]).
    pub fn parse(body: &[u8]) -> Result<Self, TlogError> {
        if body.len() > MAX_REQUEST_SIZE {
            return Err(malformed(format!("body larger than {MAX_REQUEST_SIZE} bytes")));
        }
        let body = std::str::from_utf8(body).map_err(|_| malformed("body is not UTF-8"))?;
        let (first, mut rest) = body.split_once('\n').ok_or_else(|| malformed("no old size line"))?;
        let size =
            first.strip_prefix("old ").ok_or_else(|| malformed(format!("expected \"old <size>\", got {first:?}")))?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(malformed(format!("old size {size:?} is not a canonical decimal")));
        }
        let old_size: u64 = size.parse().map_err(|_| malformed(format!("old size {size:?} is too large")))?;
        let mut proof = Vec::new();
        loop {
            let (line, after) =
                rest.split_once('\n').ok_or_else(|| malformed("no empty line before the checkpoint"))?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(malformed(format!("more than {MAX_PROOF_LINES} proof lines")));
            }
            let hash = B64.decode(line).ok().and_then(|h| Hash::try_from(h).ok());
            proof.push(hash.ok_or_else(|| malformed(format!("proof line {line:?} is not a base64 hash")))?);
        }
        if old_size == 0 && !proof.is_empty() {
            return Err(malformed("proof must be empty when the old size is 0"));
        }
        Note::parse(rest)?;
        Ok(Self { old_size, proof, note: rest.to_owned() })
    }

    /// The request body.
    pub fn encode(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        for hash in &self.proof {
            out.push_str(&B64.encode(hash));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.note);
        out
    }
}

/// The 200 response body: the witness's cosignature lines.
pub fn encode_response(cosignatures: &[Signature]) -> String {
    cosignatures.iter().map(Signature::to_line).collect()
}

/// Parses a 200 response body into signature lines (to add to the checkpoint with
/// [`crate::checkpoint::add_signatures`] and check with [`crate::checkpoint::open`]).
pub fn parse_response(body: &str) -> Result<Vec<Signature>, TlogError> {
    if body.is_empty() {
        return Err(malformed("empty response"));
    }
    parse_signature_lines(body)
}

/// The 409 response body (`text/x.tlog.size`): the size of the latest cosigned checkpoint.
pub fn encode_conflict(size: u64) -> String {
    format!("{size}\n")
}

/// Parses a 409 response body.
pub fn parse_conflict(body: &str) -> Result<u64, TlogError> {
    let size = body.strip_suffix('\n').ok_or_else(|| malformed("size does not end with a newline"))?;
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
        return Err(malformed(format!("size {size:?} is not a canonical decimal")));
    }
    size.parse().map_err(|_| malformed(format!("size {size:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: &str = "o\n1\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n\n\u{2014} o AAAAAAE=\n";

    #[test]
    fn round_trip_and_strictness() {
        let req = AddCheckpoint { old_size: 5, proof: vec![[1; 32], [2; 32]], note: NOTE.into() };
        let body = req.encode();
        assert_eq!(AddCheckpoint::parse(body.as_bytes()).unwrap(), req);
        for bad in [
            format!("old 05\n\n{NOTE}"),
            format!("old 0\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n\n{NOTE}"),
            format!("old 1\nAQE=\n\n{NOTE}"),
            format!("old 1\n{NOTE}"),
            format!("old  1\n\n{NOTE}"),
            format!("new 1\n\n{NOTE}"),
            "old 1\n\nnot a note\n".to_string(),
            format!("old 1\n{}\n{NOTE}", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n".repeat(64)),
        ] {
            assert!(AddCheckpoint::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(parse_conflict(&encode_conflict(42)), Ok(42));
        assert!(parse_conflict("042\n").is_err());
        assert!(parse_response("").is_err());
    }
}
