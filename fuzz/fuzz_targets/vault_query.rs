//! The vault's search query parser and the normalizers under it: every term
//! of `SearchSubjects` is outside input. Five lines of input are the five terms.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quis_vault::{
    blind::{MIN_PREFIX_CHARS, Term},
    normalize,
    query::{RawQuery, SearchQuery},
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(5, '\n').map(str::to_string);
    let mut next = || lines.next().unwrap_or_default();
    let raw = RawQuery {
        family_name: next(),
        given_name: next(),
        date_of_birth: next(),
        postcode: next(),
        reference_number: next(),
    };
    if let Ok(query) = SearchQuery::parse(&raw) {
        assert!(!query.terms.is_empty());
        assert_eq!(SearchQuery::parse(&raw).ok(), Some(query.clone()), "parsing is deterministic");
        for (term, value) in &query.terms {
            assert!(!value.contains(['*', '?', '%', '_']), "no wildcard survives: {value:?}");
            match term {
                Term::FamilyNamePrefix | Term::GivenNamePrefix => {
                    assert!(value.chars().filter(|c| *c != ' ').count() >= MIN_PREFIX_CHARS, "{value:?}");
                }
                Term::FamilyName | Term::GivenName => {
                    assert_eq!(normalize::name(value).as_deref(), Ok(value.as_str()), "names are canonical");
                }
                _ => {}
            }
        }
    }
    // Each normalizer is idempotent on what it accepts.
    if let Ok(n) = normalize::name(text) {
        assert_eq!(normalize::name(&n), Ok(n.clone()));
    }
    if let Ok(p) = normalize::postcode(text) {
        assert_eq!(normalize::postcode(&p), Ok(p.clone()));
    }
    if let Ok(r) = normalize::reference_number(text) {
        assert_eq!(normalize::reference_number(&r), Ok(r.clone()));
    }
    if let Ok(d) = normalize::date_of_birth(text) {
        assert_eq!(normalize::date_of_birth(&d), Ok(d.clone()));
    }
});
