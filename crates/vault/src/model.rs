//! Subjects and records as the vault holds them, and their sealed encodings.
//!
//! What is sealed is protobuf (prost) of the messages below: compact, and
//! bytes-friendly. Field names and sensitivity tags are sealed with the values:
//! in the clear, a tag such as `special-category` on a field named `diagnosis`
//! would tell a reader of the store which subjects have a health record.
//! Policy does not need them before decryption (it answers which fields or
//! sensitivities are allowed; the vault filters after opening).
use std::collections::BTreeSet;

/// A field's sensitivity, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum Sensitivity {
    Unspecified = 0,
    Basic = 1,
    Confidential = 2,
    SpecialCategory = 3,
    Restricted = 4,
}

/// A typed value.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum FieldValue {
    #[prost(string, tag = "3")]
    String(String),
    #[prost(int64, tag = "4")]
    Int(i64),
    /// Decimal as text, to keep amounts exact.
    #[prost(string, tag = "5")]
    Decimal(String),
    #[prost(bool, tag = "6")]
    Bool(bool),
    /// `YYYY-MM-DD`.
    #[prost(string, tag = "7")]
    Date(String),
    /// Seconds since the Unix epoch and nanoseconds.
    #[prost(message, tag = "8")]
    Timestamp(Instant),
    #[prost(bytes, tag = "9")]
    Bytes(Vec<u8>),
}

/// An instant, as `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Instant {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// One field of a record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Field {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(enumeration = "Sensitivity", tag = "2")]
    pub sensitivity: i32,
    #[prost(oneof = "FieldValue", tags = "3, 4, 5, 6, 7, 8, 9")]
    pub value: Option<FieldValue>,
}

impl Field {
    pub fn new(name: &str, sensitivity: Sensitivity, value: FieldValue) -> Self {
        Self { name: name.to_string(), sensitivity: sensitivity as i32, value: Some(value) }
    }

    /// The tag; unknown numbers read as the most sensitive (fail closed,
    /// unlike prost's `sensitivity()`, which reads them as unspecified).
    pub fn effective_sensitivity(&self) -> Sensitivity {
        Sensitivity::try_from(self.sensitivity).unwrap_or(Sensitivity::Restricted)
    }
}

/// The sealed body of a record version. It repeats the record's kind, which
/// is also stored in the clear for policy: a kind changed in the store no
/// longer matches the sealed one, and the read fails instead of answering
/// under a decision made for another kind.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RecordBody {
    #[prost(message, repeated, tag = "1")]
    pub fields: Vec<Field>,
    #[prost(string, tag = "2")]
    pub kind: String,
}

/// The sealed identifying data of a subject.
///
/// The decoy flag lives here and nowhere else in the store: no column, index
/// or access path can tell a decoy from a real subject. `marks` is a fixed32
/// holding only non-zero values so that it is always encoded in exactly five
/// bytes: a decoy's profile is as long as a real one with the same data.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubjectProfile {
    #[prost(string, tag = "1")]
    pub given_names: String,
    #[prost(string, tag = "2")]
    pub family_name: String,
    #[prost(string, tag = "3")]
    pub date_of_birth: String,
    #[prost(string, tag = "4")]
    pub postcode: String,
    #[prost(string, tag = "5")]
    pub reference_number: String,
    #[prost(string, repeated, tag = "6")]
    pub address_lines: Vec<String>,
    #[prost(string, tag = "7")]
    pub household: String,
    #[prost(string, tag = "8")]
    pub compartment: String,
    #[prost(fixed32, tag = "9")]
    pub marks: u32,
}

/// `marks` bits above a constant high bit that keeps the value non-zero.
const MARKS_PRESENT: u32 = 0x8000_0000;
const MARK_PROTECTED: u32 = 1;
const MARK_DECOY: u32 = 2;

impl SubjectProfile {
    pub fn set_marks(&mut self, protected: bool, decoy: bool) {
        self.marks = MARKS_PRESENT | if protected { MARK_PROTECTED } else { 0 } | if decoy { MARK_DECOY } else { 0 };
    }

    pub fn protected(&self) -> bool {
        self.marks & MARK_PROTECTED != 0
    }

    pub fn decoy(&self) -> bool {
        self.marks & MARK_DECOY != 0
    }
}

/// Which fields a decision allows: those named (all, if `names` is `None`)
/// and at most as sensitive as `max_sensitivity`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedFields {
    pub names: Option<BTreeSet<String>>,
    pub max_sensitivity: Sensitivity,
}

impl AllowedFields {
    /// Every field up to `max_sensitivity`.
    pub fn up_to(max_sensitivity: Sensitivity) -> Self {
        Self { names: None, max_sensitivity }
    }

    /// These names only, of any sensitivity up to `max_sensitivity`.
    pub fn named<'a>(names: impl IntoIterator<Item = &'a str>, max_sensitivity: Sensitivity) -> Self {
        Self { names: Some(names.into_iter().map(str::to_string).collect()), max_sensitivity }
    }

    pub fn allows(&self, field: &Field) -> bool {
        field.effective_sensitivity() <= self.max_sensitivity
            && self.names.as_ref().is_none_or(|names| names.contains(&field.name))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn a_decoy_profile_encodes_to_the_same_length() {
        let mut real = SubjectProfile { family_name: "Smith".into(), ..Default::default() };
        real.set_marks(false, false);
        let mut decoy = real.clone();
        decoy.set_marks(false, true);
        let mut both = real.clone();
        both.set_marks(true, true);
        assert_eq!(real.encode_to_vec().len(), decoy.encode_to_vec().len());
        assert_eq!(real.encode_to_vec().len(), both.encode_to_vec().len());
        assert!(decoy.decoy() && !decoy.protected() && !real.decoy());
        let back = SubjectProfile::decode(both.encode_to_vec().as_slice()).expect("decode");
        assert!(back.decoy() && back.protected());
    }

    #[test]
    fn unknown_sensitivities_are_treated_as_restricted() {
        let field = Field { name: "x".into(), sensitivity: 99, value: Some(FieldValue::Bool(true)) };
        assert_eq!(field.effective_sensitivity(), Sensitivity::Restricted);
        assert!(!AllowedFields::up_to(Sensitivity::SpecialCategory).allows(&field));
        assert!(AllowedFields::up_to(Sensitivity::Restricted).allows(&field));
        let named = AllowedFields::named(["y"], Sensitivity::Restricted);
        assert!(!named.allows(&field));
    }
}
