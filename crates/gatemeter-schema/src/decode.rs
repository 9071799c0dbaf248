//! JSON → [`AttemptEvent`] in one pass over the bytes.
//!
//! serde's derive would name the field for a missing value but not for a
//! wrong type, so the visitor below reads each value as a loosely typed
//! [`Scalar`] and checks it against the field's contract itself. Syntax
//! errors are the only thing left to serde_json, and they become
//! `invalid_json`.

use std::borrow::Cow;
use std::fmt;

use chrono::NaiveDate;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

mod fields;

pub use fields::EVENT_FIELDS;
use fields::{field_slot, RawFields};

use crate::error::DecodeError;
use crate::event::{AttemptEvent, EpochMicros};

/// Messages above this size are dead letters without being parsed.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Longest accepted `attempt_id` / `request_id`.
pub const MAX_ID_LEN: usize = 128;

/// Earliest and latest accepted timestamps: anything outside is a producer
/// clock or unit bug (seconds sent as milliseconds, say), not real traffic.
fn timestamp_bounds() -> (EpochMicros, EpochMicros) {
    let micros = |y, m, d| {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_micros())
            .unwrap_or_default()
    };
    (micros(2000, 1, 1), micros(2100, 1, 1))
}

/// Decodes one Kafka message: a single event or a JSON array of events.
/// The outer error is for the whole message (oversize, invalid JSON, not an
/// object or array); the inner results are per event, in order.
pub fn decode_message(
    payload: &[u8],
) -> Result<Vec<Result<AttemptEvent, DecodeError>>, DecodeError> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::Oversize {
            size: payload.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    // One bulk UTF-8 check (fast, vectorised) lets serde_json skip checking
    // every string on its own.
    let text = std::str::from_utf8(payload)
        .map_err(|e| DecodeError::InvalidJson(format!("not UTF-8: {e}")))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let decoded = deserializer
        .deserialize_any(MessageVisitor)
        .and_then(|message| deserializer.end().map(|()| message))
        .map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    match decoded {
        Message::One(event) => Ok(vec![event]),
        Message::Many(events) => Ok(events),
        Message::Other(found) => Err(DecodeError::NotAnObject(found)),
    }
}

/// Decodes exactly one event (no arrays), e.g. a line of a JSONL file.
pub fn decode_event(payload: &[u8]) -> Result<AttemptEvent, DecodeError> {
    let mut events = decode_message(payload)?;
    match (events.pop(), events.is_empty()) {
        (Some(event), true) => event,
        _ => Err(DecodeError::NotAnObject("array")),
    }
}

// A message is matched as soon as it is decoded; boxing the one-event
// case would cost an allocation per event on the ingest path.
#[allow(clippy::large_enum_variant)]
enum Message {
    One(Result<AttemptEvent, DecodeError>),
    Many(Vec<Result<AttemptEvent, DecodeError>>),
    Other(&'static str),
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object or an array of event objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Message, A::Error> {
        EventVisitor.visit_map(map).map(Message::One)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Message, A::Error> {
        let mut events = Vec::new();
        while let Some(event) = seq.next_element_seed(EventSeed)? {
            events.push(event);
        }
        Ok(Message::Many(events))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Message, E> {
        Ok(Message::Other("boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Message, E> {
        Ok(Message::Other("number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Message, E> {
        Ok(Message::Other("number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Message, E> {
        Ok(Message::Other("number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Message, E> {
        Ok(Message::Other("string"))
    }
    fn visit_unit<E>(self) -> Result<Message, E> {
        Ok(Message::Other("null"))
    }
}

/// One element of a batch message: an event, or a non-object in its place.
struct EventSeed;

impl<'de> DeserializeSeed<'de> for EventSeed {
    type Value = Result<AttemptEvent, DecodeError>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        match deserializer.deserialize_any(ScalarVisitor {
            decode_objects: true,
        })? {
            Scalar::Object(Some(event)) => Ok(*event),
            other => Ok(Err(DecodeError::NotAnObject(other.type_name()))),
        }
    }
}

/// A JSON value read loosely, so the field check can say what it found.
enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Array,
    /// An object; at the top of an array element it holds the decoded event.
    Object(Option<Box<Result<AttemptEvent, DecodeError>>>),
}

impl Scalar<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "boolean",
            Scalar::Int(_) | Scalar::UInt(_) => "integer",
            Scalar::Float(_) => "number",
            Scalar::Str(_) => "string",
            Scalar::Array => "array",
            Scalar::Object(_) => "object",
        }
    }
}

/// Reads any JSON value as a [`Scalar`]. At the top of a batch element an
/// object is decoded as an event; nested deeper it is only skipped.
struct ScalarVisitor {
    decode_objects: bool,
}

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.decode_objects {
            return EventVisitor
                .visit_map(map)
                .map(|event| Scalar::Object(Some(Box::new(event))));
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object(None))
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor {
            decode_objects: false,
        })
    }
}

/// The `tags` value: an object whose values are all strings, kept as JSON text.
struct TagsSeed;

impl<'de> DeserializeSeed<'de> for TagsSeed {
    type Value = Result<Option<String>, &'static str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let value: serde_json::Value = de::Deserialize::deserialize(deserializer)?;
        Ok(match value {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Object(map) if map.values().all(|v| v.is_string()) => {
                Ok(Some(serde_json::Value::Object(map).to_string()))
            }
            serde_json::Value::Object(_) => Err("object with a non-string value"),
            serde_json::Value::Bool(_) => Err("boolean"),
            serde_json::Value::Number(_) => Err("number"),
            serde_json::Value::String(_) => Err("string"),
            serde_json::Value::Array(_) => Err("array"),
        })
    }
}

/// Reads one event object. Field errors are collected (first one wins) while
/// the rest of the object is still consumed, so serde_json stays in sync.
struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Result<AttemptEvent, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = RawFields::default();
        let mut first_error: Option<DecodeError> = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "tags" {
                match map.next_value_seed(TagsSeed)? {
                    Ok(tags) => fields.tags = tags,
                    Err(found) => {
                        first_error.get_or_insert(DecodeError::WrongType {
                            field: "tags",
                            expected: "an object of strings",
                            found,
                        });
                    }
                }
                continue;
            }
            match field_slot(&key) {
                Some(slot) => {
                    let value = map.next_value::<Scalar<'de>>()?;
                    fields.values[slot] = Some(value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match first_error {
            Some(error) => Err(error),
            None => fields.into_event(),
        })
    }
}
