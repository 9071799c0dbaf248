//! The closed set of reasons an event is bad (schemas/README.md, "Dead letters"). Every variant that
//! concerns a field names it, so a dead letter tells the producer what to fix;
//! none carries the bad value, which may be a secret or personal data.

/// Why one gateway event was rejected. The set is closed: ingest maps each
/// variant to a dead-letter `error_class` with [`DecodeError::class`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("an event must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    Oversize { size: usize, limit: usize },
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field `{field}` has a value outside its list: {allowed}")]
    InvalidEnum {
        field: &'static str,
        allowed: &'static str,
    },
    #[error("field `{field}` is not an RFC 3339 timestamp or epoch milliseconds")]
    BadTimestamp { field: &'static str },
    #[error("field `{field}` is out of range: {reason}")]
    OutOfRange { field: &'static str, reason: String },
    #[error("field `schema_version` is {0}, this build reads version 1")]
    UnsupportedVersion(i64),
}

impl DecodeError {
    /// The dead-letter class, a stable lower-case name.
    pub fn class(&self) -> &'static str {
        match self {
            DecodeError::InvalidJson(_) => "invalid_json",
            DecodeError::NotAnObject(_) => "not_an_object",
            DecodeError::Oversize { .. } => "oversize",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::InvalidEnum { .. } => "invalid_enum",
            DecodeError::BadTimestamp { .. } => "bad_timestamp",
            DecodeError::OutOfRange { .. } => "out_of_range",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
        }
    }

    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            DecodeError::MissingField(f) => Some(f),
            DecodeError::WrongType { field, .. }
            | DecodeError::InvalidEnum { field, .. }
            | DecodeError::BadTimestamp { field, .. }
            | DecodeError::OutOfRange { field, .. } => Some(field),
            DecodeError::UnsupportedVersion(_) => Some("schema_version"),
            DecodeError::InvalidJson(_)
            | DecodeError::NotAnObject(_)
            | DecodeError::Oversize { .. } => None,
        }
    }
}

/// Every class [`DecodeError::class`] can return, for docs and tests.
pub const ERROR_CLASSES: &[&str] = &[
    "invalid_json",
    "not_an_object",
    "oversize",
    "missing_field",
    "wrong_type",
    "invalid_enum",
    "bad_timestamp",
    "out_of_range",
    "unsupported_version",
];
