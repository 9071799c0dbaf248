//! The gatemeter event contract: one gateway **attempt** per event
//! (`schemas/attempt.v1.json`), its Rust type, its Arrow schema in the lake,
//! and a JSON decoder whose errors form a closed set that names the field.

pub mod arrow;
pub mod dead_letter;
pub mod decode;
pub mod error;
pub mod event;
pub mod privacy;

pub use arrow::{as_attempts, attempts_batch, attempts_schema};
pub use dead_letter::{dead_letters_batch, dead_letters_schema, DeadLetter};
pub use decode::{decode_event, decode_message, MAX_MESSAGE_BYTES};
pub use error::{DecodeError, ERROR_CLASSES};
pub use event::{
    AttemptEvent, AttemptKind, AttemptRow, EpochMicros, ErrorClass, KeyType, Outcome,
    SourcePosition, Usd,
};
pub use privacy::{FieldHandling, PrivacyPolicy};

#[cfg(test)]
mod decode_tests;
