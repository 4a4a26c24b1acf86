//! Blind indexes and relationship keys: HMAC-SHA256 under the organization
//! secret over normalized values, so that the store can match search terms and
//! sentinel can compare relationships without holding a name or an address.
//!
//! The two uses are domain-separated by the first bytes of the HMAC input
//! (`quis.vault.search.v1` vs `quis.relationship.v1`, then the kind, each
//! followed by a NUL, which no normalized value holds): a search token can
//! never be confused with a relationship key, and a family-name token never
//! with a postcode token of the same text. Policy computes staff members'
//! relationship keys with the same rule, under the same secret.
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::normalize;

/// Shortest name prefix indexed and searchable, in characters.
pub const MIN_PREFIX_CHARS: usize = 3;
/// Longest name prefix indexed, in characters: longer prefixes match as this long.
pub const MAX_PREFIX_CHARS: usize = 24;

const SEARCH_DOMAIN: &[u8] = b"quis.vault.search.v1";
const RELATIONSHIP_DOMAIN: &[u8] = b"quis.relationship.v1";

/// What a search token stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Term {
    FamilyName,
    FamilyNamePrefix,
    GivenName,
    GivenNamePrefix,
    DateOfBirth,
    Postcode,
    ReferenceNumber,
}

impl Term {
    /// The term's name, e.g. `family-name-prefix` (also its HMAC label).
    pub fn as_str(self) -> &'static str {
        match self {
            Term::FamilyName => "family-name",
            Term::FamilyNamePrefix => "family-name-prefix",
            Term::GivenName => "given-name",
            Term::GivenNamePrefix => "given-name-prefix",
            Term::DateOfBirth => "date-of-birth",
            Term::Postcode => "postcode",
            Term::ReferenceNumber => "reference-number",
        }
    }

    fn label(self) -> &'static [u8] {
        self.as_str().as_bytes()
    }
}

/// A relationship sentinel compares between staff and subjects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Relationship {
    Surname,
    Address,
    Household,
}

impl Relationship {
    /// The kind's name, as stored and as pushed to policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Relationship::Surname => "surname",
            Relationship::Address => "address",
            Relationship::Household => "household",
        }
    }
}

/// A 32-byte blind token.
pub type Token = [u8; 32];

/// Computes tokens and keys under the organization secret.
pub struct BlindIndexer {
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for BlindIndexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlindIndexer")
    }
}

impl BlindIndexer {
    pub fn new(secret: Zeroizing<[u8; 32]>) -> Self {
        Self { secret }
    }

    fn mac(&self, domain: &[u8], kind: &[u8], value: &str) -> Token {
        // HMAC accepts keys of any length; 32 bytes never fails.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.secret.as_ref()).unwrap_or_else(|_| unreachable!());
        for part in [domain, b"\0", kind, b"\0", value.as_bytes()] {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The search token of an already normalized value.
    pub fn token(&self, term: Term, normalized: &str) -> Token {
        self.mac(SEARCH_DOMAIN, term.label(), normalized)
    }

    /// The relationship key of an already normalized value.
    pub fn relationship_key(&self, kind: Relationship, normalized: &str) -> Token {
        self.mac(RELATIONSHIP_DOMAIN, kind.as_str().as_bytes(), normalized)
    }

    /// The tokens that index a normalized name: the whole name, each word, and
    /// the prefixes of 3 to 24 characters of the whole name and of each word.
    pub fn name_tokens(&self, exact: Term, prefix: Term, normalized: &str) -> Vec<Token> {
        let mut values: Vec<&str> = vec![normalized];
        values.extend(normalized.split(' ').filter(|w| *w != normalized));
        let mut tokens = Vec::new();
        for value in values {
            tokens.push(self.token(exact, value));
            for p in prefixes(value) {
                tokens.push(self.token(prefix, p));
            }
        }
        tokens.sort_unstable();
        tokens.dedup();
        tokens
    }
}

/// The prefixes of `value` from [`MIN_PREFIX_CHARS`] to [`MAX_PREFIX_CHARS`] characters.
pub fn prefixes(value: &str) -> impl Iterator<Item = &str> {
    value
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .enumerate()
        .filter(|(n, _)| (MIN_PREFIX_CHARS - 1..MAX_PREFIX_CHARS).contains(n))
        .map(move |(_, end)| &value[..end])
}

/// A prefix as searched: cut to [`MAX_PREFIX_CHARS`], as it was indexed.
pub fn searchable_prefix(normalized: &str) -> &str {
    prefixes(normalized).last().unwrap_or(normalized)
}

/// The relationship keys of a subject (or staff member) from raw values; a
/// value that is absent or normalizes to nothing yields no key.
pub fn relationship_keys(
    indexer: &BlindIndexer,
    family_name: &str,
    address_lines: &[String],
    postcode: &str,
    household: &str,
) -> Vec<(Relationship, Token)> {
    let mut keys = Vec::new();
    if let Ok(surname) = normalize::name(family_name) {
        keys.push((Relationship::Surname, indexer.relationship_key(Relationship::Surname, &surname)));
    }
    if let (Ok(address), Ok(postcode)) = (normalize::address(address_lines), normalize::postcode(postcode)) {
        let value = format!("{address}|{postcode}");
        keys.push((Relationship::Address, indexer.relationship_key(Relationship::Address, &value)));
    }
    if let Ok(household) = normalize::reference_number(household) {
        keys.push((Relationship::Household, indexer.relationship_key(Relationship::Household, &household)));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexer(byte: u8) -> BlindIndexer {
        BlindIndexer::new(Zeroizing::new([byte; 32]))
    }

    #[test]
    fn prefixes_are_three_to_twenty_four_characters() {
        assert_eq!(prefixes("sm").count(), 0);
        assert_eq!(prefixes("smith").collect::<Vec<_>>(), ["smi", "smit", "smith"]);
        assert_eq!(prefixes("müll").collect::<Vec<_>>(), ["mül", "müll"]);
        let long = "a".repeat(40);
        assert_eq!(prefixes(&long).count(), MAX_PREFIX_CHARS - MIN_PREFIX_CHARS + 1);
        assert_eq!(searchable_prefix(&long).len(), MAX_PREFIX_CHARS);
        assert_eq!(searchable_prefix("smit"), "smit");
    }

    #[test]
    fn tokens_are_keyed_and_domain_separated() {
        let a = indexer(1);
        assert_eq!(a.token(Term::FamilyName, "smith"), a.token(Term::FamilyName, "smith"));
        assert_ne!(a.token(Term::FamilyName, "smith"), indexer(2).token(Term::FamilyName, "smith"), "keyed");
        assert_ne!(a.token(Term::FamilyName, "smith"), a.token(Term::GivenName, "smith"), "kinds differ");
        assert_ne!(a.token(Term::FamilyName, "smith"), a.relationship_key(Relationship::Surname, "smith"));
        assert_ne!(a.token(Term::FamilyName, "smith"), a.token(Term::FamilyName, "smyth"));
    }

    #[test]
    fn a_name_is_indexed_whole_by_word_and_by_prefix() {
        let a = indexer(1);
        let tokens = a.name_tokens(Term::FamilyName, Term::FamilyNamePrefix, "van der berg");
        for (term, value) in [
            (Term::FamilyName, "van der berg"),
            (Term::FamilyName, "berg"),
            (Term::FamilyNamePrefix, "van d"),
            (Term::FamilyNamePrefix, "ber"),
            (Term::FamilyNamePrefix, "der"),
        ] {
            assert!(tokens.contains(&a.token(term, value)), "{term:?} {value}");
        }
        assert!(!tokens.contains(&a.token(Term::FamilyNamePrefix, "va")));
        assert!(!tokens.contains(&a.token(Term::GivenName, "berg")));
    }

    #[test]
    fn relationship_keys_match_across_spellings() {
        let a = indexer(1);
        let one = relationship_keys(&a, "Müller", &["12 Rue de l'Église".into()], "75 001", "HH-0042");
        let two = relationship_keys(&a, "MULLER", &["12 rue de l eglise".into()], "75001", "hh0042");
        assert_eq!(one.len(), 3);
        // Apostrophes are dropped, a space is kept: `l'église` and `l eglise` differ.
        assert_eq!(one[0], two[0]);
        assert_ne!(one[1], two[1]);
        assert_eq!(one[2], two[2]);
        let three = relationship_keys(&a, "Muller", &["12 Rue de lEglise".into()], "75001", "");
        assert_eq!(three[1], one[1]);
        assert_eq!(three.len(), 2, "no household given, no household key");
    }
}
