//! Property tests of the event decoder over generated hostile input: raw
//! bytes, deep nesting, huge numbers, wrong types and mutated valid events.
//! Whatever comes in, the decoder returns (never panics or overflows its
//! stack), every error is one of the closed classes, and no error message
//! repeats the value it refused. The case count is bounded so it runs in
//! every test run (`PROPTEST_CASES` raises it for a longer search).

use gatemeter_schema::decode::EVENT_FIELDS;
use gatemeter_schema::{decode_message, DecodeError, ERROR_CLASSES};
use proptest::prelude::*;
use serde_json::{json, Value};

/// A marker placed in generated values; it must never come back in an error.
const MARKER: &str = "zq7marker";

fn valid() -> Value {
    json!({
        "schema_version": 1, "attempt_id": "a-1", "request_id": "r-1",
        "attempt_index": 0, "attempt_kind": "initial", "is_final": true,
        "request_start": "2026-11-01T10:00:00Z", "attempt_start": "2026-11-01T10:00:00Z",
        "attempt_end": "2026-11-01T10:00:01Z", "requested_model": "m", "provider": "p",
        "team": "t", "api_key_id": "k", "environment": "prod", "outcome": "success",
        "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.001, "tags": {"a": "b"}
    })
}

/// Every field the decoder reads, and `tags`.
fn fields() -> Vec<&'static str> {
    let mut fields = EVENT_FIELDS.to_vec();
    fields.push("tags");
    fields
}

/// Hostile JSON values, nested to a bounded depth.
fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-zA-Z0-9:._\\- ]{0,40}".prop_map(|s| json!(format!("{MARKER}{s}"))),
        Just(json!(format!("{MARKER}-9999-99-99T99:99:99Z"))),
        Just(json!("1e400")),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check(payload: &[u8]) -> Result<(), TestCaseError> {
    let mut errors: Vec<DecodeError> = Vec::new();
    match decode_message(payload) {
        Ok(events) => errors.extend(events.into_iter().filter_map(Result::err)),
        Err(error) => errors.push(error),
    }
    for error in errors {
        prop_assert!(ERROR_CLASSES.contains(&error.class()), "{}", error.class());
        prop_assert!(
            !error.to_string().contains(MARKER),
            "the error repeats the value: {}",
            error
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn raw_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes)?;
    }

    #[test]
    fn any_field_set_to_any_value_is_an_event_or_a_classed_error(
        field in prop::sample::select(fields()),
        value in hostile_value(),
    ) {
        let mut event = valid();
        event[field] = value;
        check(event.to_string().as_bytes())?;
    }

    #[test]
    fn batches_of_mutated_events_decode_one_by_one(
        mutations in prop::collection::vec((prop::sample::select(fields()), hostile_value()), 0..8),
    ) {
        let events: Vec<Value> = mutations
            .into_iter()
            .map(|(field, value)| {
                let mut event = valid();
                event[field] = value;
                event
            })
            .collect();
        let count = events.len();
        let payload = Value::Array(events).to_string();
        if let Ok(decoded) = decode_message(payload.as_bytes()) {
            prop_assert_eq!(decoded.len(), count);
        }
        check(payload.as_bytes())?;
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow(depth in 1usize..100_000) {
        let payload = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        check(payload.as_bytes())?;
        let object = format!("{}1{}", "{\"tags\":".repeat(depth.min(5_000)), "}".repeat(depth.min(5_000)));
        check(object.as_bytes())?;
    }
}
