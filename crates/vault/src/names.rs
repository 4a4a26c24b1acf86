//! Resource names (AIP-122): `subjects/{subject}` and
//! `subjects/{subject}/records/{record}`, ids of 1 to 64 characters of `[a-z0-9-]`.

/// Whether `id` is 1 to 64 characters of `[a-z0-9-]`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The rule of [`is_valid_id`], for error messages.
pub const ID_RULE: &str = "must be 1 to 64 characters of [a-z0-9-]";

/// `subjects/{id}`.
pub fn subject_name(id: &str) -> String {
    format!("subjects/{id}")
}

/// The subject id of `subjects/{subject}`.
pub fn parse_subject(name: &str) -> Option<&str> {
    name.strip_prefix("subjects/").filter(|id| is_valid_id(id))
}

/// A parsed `subjects/{subject}/records/{record}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordName {
    pub subject: String,
    pub record: String,
}

impl RecordName {
    pub fn new(subject: &str, record: &str) -> Option<Self> {
        (is_valid_id(subject) && is_valid_id(record))
            .then(|| Self { subject: subject.to_string(), record: record.to_string() })
    }

    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("subjects/")?;
        let (subject, record) = rest.split_once("/records/")?;
        Self::new(subject, record)
    }

    /// The subject's resource name.
    pub fn parent(&self) -> String {
        subject_name(&self.subject)
    }
}

impl std::fmt::Display for RecordName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "subjects/{}/records/{}", self.subject, self.record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_strictly() {
        let name = RecordName::parse("subjects/s-1/records/tax-2024").expect("valid");
        assert_eq!((name.subject.as_str(), name.record.as_str()), ("s-1", "tax-2024"));
        assert_eq!(name.to_string(), "subjects/s-1/records/tax-2024");
        assert_eq!(name.parent(), "subjects/s-1");
        for bad in [
            "",
            "subjects/s1",
            "subjects//records/r",
            "subjects/S1/records/r",
            "subjects/s1/records/",
            "subjects/s1/records/r/x",
            "subject/s1/records/r",
            "subjects/s1/records/r1/records/r2",
            "subjects/s_1/records/r",
        ] {
            assert_eq!(RecordName::parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse_subject("subjects/abc"), Some("abc"));
        assert_eq!(parse_subject("subjects/abc/records/x"), None);
        assert!(is_valid_id(&"a".repeat(64)) && !is_valid_id(&"a".repeat(65)));
    }
}
