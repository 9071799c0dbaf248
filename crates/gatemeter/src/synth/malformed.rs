//! Bad events on purpose, one dead-letter class after another, so a demo or
//! a test exercises every rejection path. (Oversize messages are left to the
//! tests: most brokers refuse them before gatemeter ever sees them.)

use serde_json::{json, Value};

use super::SynthEvent;

/// The classes produced, in rotation.
pub const CLASSES: &[&str] = &[
    "invalid_json",
    "missing_field",
    "wrong_type",
    "invalid_enum",
    "bad_timestamp",
    "out_of_range",
    "not_an_object",
];

/// A corrupted copy of `event`: the class it should be rejected with, and
/// the payload.
pub fn corrupt(event: &SynthEvent, counter: usize) -> (&'static str, Vec<u8>) {
    let class = CLASSES[counter % CLASSES.len()];
    let mut value: Value = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
    let payload = match class {
        "invalid_json" => {
            let mut text = event.to_json();
            text.truncate(text.len() / 2);
            return (class, text);
        }
        "not_an_object" => return (class, b"[[\"not\", \"an event\"]]".to_vec()),
        "missing_field" => {
            if let Some(map) = value.as_object_mut() {
                map.remove("provider");
            }
            value
        }
        "wrong_type" => {
            value["attempt_index"] = json!("zero");
            value
        }
        "invalid_enum" => {
            value["outcome"] = json!("ok");
            value
        }
        "bad_timestamp" => {
            value["attempt_end"] = json!("yesterday at noon");
            value
        }
        _ => {
            // Seconds where milliseconds belong: 1970, out of range.
            value["request_start"] = json!(1_700_000_000);
            value
        }
    };
    (class, serde_json::to_vec(&payload).unwrap_or_default())
}
