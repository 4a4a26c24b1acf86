//! The search query: raw terms as a caller typed them, parsed into normalized
//! blind-index terms, with the too-broad rules applied.
//!
//! Rules:
//! - at least one term;
//! - a name is exact, or a prefix ending in one `*` with at least 3 characters
//!   before it (after normalization); a prefix longer than the indexed 24
//!   characters is searched as its first 24;
//! - any other wildcard (`*` elsewhere, `?`, `%`, `_`) anywhere is refused:
//!   it is how enumeration looks, and the index could not honour it anyway;
//! - dates of birth, postcodes and reference numbers match exactly.
use quis_core::FieldViolation;

use crate::{
    blind::{self, MIN_PREFIX_CHARS, Term},
    error::VaultError,
    normalize,
};

/// Longest raw term accepted, in bytes.
pub const MAX_TERM_BYTES: usize = 256;

/// The terms of a search, as received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawQuery {
    pub family_name: String,
    pub given_name: String,
    pub date_of_birth: String,
    pub postcode: String,
    pub reference_number: String,
}

/// A parsed search: normalized terms, all of which must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    pub terms: Vec<(Term, String)>,
}

const WILDCARDS: &[char] = &['*', '?', '%', '_'];

impl SearchQuery {
    /// Parses and checks `raw`; field paths in errors are `query.<term>`.
    pub fn parse(raw: &RawQuery) -> Result<Self, VaultError> {
        let mut terms = Vec::new();
        let mut violations = Vec::new();
        let fields: [(&str, &str); 5] = [
            ("family_name", &raw.family_name),
            ("given_name", &raw.given_name),
            ("date_of_birth", &raw.date_of_birth),
            ("postcode", &raw.postcode),
            ("reference_number", &raw.reference_number),
        ];
        for (field, value) in fields {
            if value.trim().is_empty() {
                continue;
            }
            let path = format!("query.{field}");
            if value.len() > MAX_TERM_BYTES {
                violations.push(FieldViolation::new(path, format!("must be at most {MAX_TERM_BYTES} bytes")));
                continue;
            }
            match field {
                "family_name" => name_term(&path, value, Term::FamilyName, Term::FamilyNamePrefix)?,
                "given_name" => name_term(&path, value, Term::GivenName, Term::GivenNamePrefix)?,
                _ => {
                    refuse_wildcards(&path, value, "matches exactly: wildcards are refused")?;
                    let (term, normalized) = match field {
                        "date_of_birth" => (Term::DateOfBirth, normalize::date_of_birth(value)),
                        "postcode" => (Term::Postcode, normalize::postcode(value)),
                        _ => (Term::ReferenceNumber, normalize::reference_number(value)),
                    };
                    normalized.map(|n| (term, n)).map_err(|e| FieldViolation::new(&path, e.to_string()))
                }
            }
            .map(|t| terms.push(t))
            .unwrap_or_else(|v| violations.push(v));
        }
        if !violations.is_empty() {
            return Err(VaultError::InvalidArgument(violations));
        }
        if terms.is_empty() {
            return Err(VaultError::QueryTooBroad(FieldViolation::new("query", "at least one term is required")));
        }
        terms.sort();
        terms.dedup();
        Ok(Self { terms })
    }
}

/// A name term: `Ok(Ok(term))`, `Ok(Err(violation))` for bad input, `Err` for a too-broad one.
fn name_term(
    path: &str,
    value: &str,
    exact: Term,
    prefix: Term,
) -> Result<Result<(Term, String), FieldViolation>, VaultError> {
    let trimmed = value.trim();
    let (body, is_prefix) = match trimmed.strip_suffix('*') {
        Some(body) => (body, true),
        None => (trimmed, false),
    };
    refuse_wildcards(path, body, "allows one `*`, at the end of a prefix of at least 3 letters")?;
    let normalized = match normalize::name(body) {
        Ok(n) => n,
        Err(normalize::NormalizeError::Empty) if is_prefix => {
            return Err(too_broad(path, "a prefix needs at least 3 letters before `*`"));
        }
        Err(e) => return Ok(Err(FieldViolation::new(path, e.to_string()))),
    };
    if !is_prefix {
        return Ok(Ok((exact, normalized)));
    }
    if normalized.chars().filter(|c| *c != ' ').count() < MIN_PREFIX_CHARS {
        return Err(too_broad(path, "a prefix needs at least 3 letters before `*`"));
    }
    Ok(Ok((prefix, blind::searchable_prefix(&normalized).to_string())))
}

fn refuse_wildcards(path: &str, value: &str, rule: &str) -> Result<(), VaultError> {
    if value.contains(WILDCARDS) { Err(too_broad(path, rule)) } else { Ok(()) }
}

fn too_broad(path: &str, rule: &str) -> VaultError {
    VaultError::QueryTooBroad(FieldViolation::new(path, rule))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn family(v: &str) -> RawQuery {
        RawQuery { family_name: v.into(), ..Default::default() }
    }

    fn reason(result: Result<SearchQuery, VaultError>) -> &'static str {
        use quis_core::ApiError;
        result.map(|_| "OK").unwrap_or_else(|e| e.reason())
    }

    #[test]
    fn exact_and_prefix_terms_are_normalized() {
        let q = SearchQuery::parse(&RawQuery {
            family_name: "  Müller ".into(),
            given_name: "Joh*".into(),
            date_of_birth: "1980-02-29".into(),
            postcode: "sw1a 1aa".into(),
            reference_number: "ab-12".into(),
        })
        .expect("valid");
        let want = [
            (Term::FamilyName, "muller"),
            (Term::GivenNamePrefix, "joh"),
            (Term::DateOfBirth, "1980-02-29"),
            (Term::Postcode, "SW1A1AA"),
            (Term::ReferenceNumber, "AB12"),
        ];
        assert_eq!(q.terms, want.map(|(t, v)| (t, v.to_string())));
    }

    #[test]
    fn too_broad_searches_are_refused() {
        assert_eq!(reason(SearchQuery::parse(&RawQuery::default())), "QUERY_TOO_BROAD");
        assert_eq!(reason(SearchQuery::parse(&family("   "))), "QUERY_TOO_BROAD");
        for broad in ["*", "s*", "sm*", "Ö'*", "*smith", "sm*th", "smi**", "smi?", "%mith", "smi_*", "s m*"] {
            assert_eq!(reason(SearchQuery::parse(&family(broad))), "QUERY_TOO_BROAD", "{broad:?}");
        }
        for broad in [
            RawQuery { postcode: "SW1A*".into(), ..Default::default() },
            RawQuery { date_of_birth: "1980-*".into(), ..Default::default() },
            RawQuery { reference_number: "%".into(), ..Default::default() },
        ] {
            assert_eq!(reason(SearchQuery::parse(&broad)), "QUERY_TOO_BROAD", "{broad:?}");
        }
        assert_eq!(reason(SearchQuery::parse(&family("smi*"))), "OK");
        assert_eq!(reason(SearchQuery::parse(&family("smith"))), "OK");
    }

    #[test]
    fn malformed_terms_are_invalid_with_their_field() {
        let err = SearchQuery::parse(&RawQuery {
            family_name: "a#b".into(),
            date_of_birth: "1980-02-30".into(),
            ..Default::default()
        })
        .expect_err("invalid");
        let VaultError::InvalidArgument(violations) = err else { panic!("{err:?}") };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["query.family_name", "query.date_of_birth"]);
        assert_eq!(reason(SearchQuery::parse(&family(&"a".repeat(300)))), "INVALID_ARGUMENT");
    }

    #[test]
    fn long_prefixes_are_cut_to_the_indexed_length() {
        let q = SearchQuery::parse(&family(&format!("{}*", "a".repeat(40)))).expect("valid");
        assert_eq!(q.terms, [(Term::FamilyNamePrefix, "a".repeat(24))]);
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepted_terms_are_canonical(
            family_name in "\\PC{0,40}", given_name in "\\PC{0,40}", date_of_birth in "\\PC{0,12}",
            postcode in "\\PC{0,12}", reference_number in "\\PC{0,12}") {
            let raw = RawQuery { family_name, given_name, date_of_birth, postcode, reference_number };
            if let Ok(q) = SearchQuery::parse(&raw) {
                prop_assert!(!q.terms.is_empty());
                for (_, value) in &q.terms {
                    prop_assert!(!value.contains(WILDCARDS));
                    prop_assert_eq!(value.trim(), value.as_str());
                }
            }
        }
    }
}
