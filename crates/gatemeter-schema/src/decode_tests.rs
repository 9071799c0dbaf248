//! Table tests: one case per decode error class, plus the defaults and the
//! null-stays-null rule.

use serde_json::{json, Value};

use crate::decode::{decode_event, decode_message, EVENT_FIELDS, MAX_MESSAGE_BYTES};
use crate::error::{DecodeError, ERROR_CLASSES};
use crate::event::{AttemptKind, KeyType, Outcome, Usd};

fn valid() -> Value {
    json!({
        "schema_version": 1,
        "attempt_id": "att-1",
        "request_id": "req-1",
        "attempt_index": 0,
        "attempt_kind": "initial",
        "is_final": true,
        "request_start": "2026-11-01T10:00:00Z",
        "attempt_start": "2026-11-01T10:00:00.010Z",
        "attempt_end": 1793527200500i64,
        "requested_model": "gpt-4o",
        "provider": "openai",
        "api_key_id": "key-fp-1",
        "environment": "prod",
        "outcome": "success",
        "cost_usd": 0.0015,
        "unknown_field": {"ignored": [1, 2]}
    })
}

fn with(field: &str, value: Value) -> Vec<u8> {
    let mut event = valid();
    event[field] = value;
    serde_json::to_vec(&event).expect("json")
}

fn without(field: &str) -> Vec<u8> {
    let mut event = valid();
    event.as_object_mut().expect("object").remove(field);
    serde_json::to_vec(&event).expect("json")
}

#[test]
fn a_valid_event_decodes_with_defaults() {
    let event = decode_event(&serde_json::to_vec(&valid()).expect("json")).expect("valid");
    assert_eq!(event.attempt_kind, AttemptKind::Initial);
    assert_eq!(event.outcome, Outcome::Success);
    assert_eq!(event.event_version, 0);
    assert_eq!(event.team, "unassigned");
    assert_eq!(event.operation, "chat");
    assert_eq!(event.key_type, KeyType::Platform);
    assert!(!event.streaming);
    assert!(event.billed);
    assert_eq!(event.cost_usd, Some(Usd(1_500_000)));
    assert_eq!(event.attempt_start - event.request_start, 10_000);
    assert_eq!(event.attempt_end, 1_793_527_200_500_000);
    // Not reported stays not reported.
    assert_eq!(event.input_tokens, None);
    assert_eq!(event.ttft_ms, None);
    assert_eq!(event.tags, None);
}

#[test]
fn rejected_attempts_default_to_unbilled_and_explicit_values_win() {
    let event = decode_event(&with("outcome", json!("rejected"))).expect("valid");
    assert!(!event.billed);
    let mut raw = valid();
    raw["billed"] = json!(false);
    raw["input_tokens"] = json!(0);
    raw["cost_usd"] = json!("12.000000001");
    raw["tags"] = json!({"feature": "search"});
    let event = decode_event(&serde_json::to_vec(&raw).expect("json")).expect("valid");
    assert!(!event.billed);
    assert_eq!(event.input_tokens, Some(0));
    assert_eq!(event.cost_usd, Some(Usd(12_000_000_001)));
    assert_eq!(event.tags.as_deref(), Some(r#"{"feature":"search"}"#));
}

#[test]
fn null_counts_as_absent() {
    let err = decode_event(&with("provider", Value::Null)).expect_err("required");
    assert_eq!(err, DecodeError::MissingField("provider"));
    let event = decode_event(&with("input_tokens", Value::Null)).expect("optional");
    assert_eq!(event.input_tokens, None);
}

#[test]
fn every_error_class_names_its_field() {
    let oversize = {
        let mut payload = serde_json::to_vec(&valid()).expect("json");
        payload.resize(MAX_MESSAGE_BYTES + 1, b' ');
        payload
    };
    let cases: Vec<(&str, Vec<u8>, &str, Option<&str>)> = vec![
        (
            "truncated json",
            b"{\"schema_version\": 1, \"attempt_id\"".to_vec(),
            "invalid_json",
            None,
        ),
        ("trailing garbage", b"{} x".to_vec(), "invalid_json", None),
        ("not utf-8", vec![b'"', 0xff, b'"'], "invalid_json", None),
        (
            "a bare string",
            b"\"hello\"".to_vec(),
            "not_an_object",
            None,
        ),
        ("a number", b"42".to_vec(), "not_an_object", None),
        ("oversize", oversize, "oversize", None),
        (
            "missing attempt_id",
            without("attempt_id"),
            "missing_field",
            Some("attempt_id"),
        ),
        (
            "missing request_start",
            without("request_start"),
            "missing_field",
            Some("request_start"),
        ),
        (
            "missing outcome",
            without("outcome"),
            "missing_field",
            Some("outcome"),
        ),
        (
            "missing api_key_id",
            without("api_key_id"),
            "missing_field",
            Some("api_key_id"),
        ),
        (
            "attempt_index as string",
            with("attempt_index", json!("0")),
            "wrong_type",
            Some("attempt_index"),
        ),
        (
            "is_final as number",
            with("is_final", json!(1)),
            "wrong_type",
            Some("is_final"),
        ),
        (
            "input_tokens as float",
            with("input_tokens", json!(1.5)),
            "wrong_type",
            Some("input_tokens"),
        ),
        (
            "provider as object",
            with("provider", json!({"a": 1})),
            "wrong_type",
            Some("provider"),
        ),
        (
            "tags with a number",
            with("tags", json!({"a": 1})),
            "wrong_type",
            Some("tags"),
        ),
        (
            "cost as bool",
            with("cost_usd", json!(true)),
            "wrong_type",
            Some("cost_usd"),
        ),
        (
            "unknown attempt_kind",
            with("attempt_kind", json!("second_try")),
            "invalid_enum",
            Some("attempt_kind"),
        ),
        (
            "unknown outcome",
            with("outcome", json!("ok")),
            "invalid_enum",
            Some("outcome"),
        ),
        (
            "unknown error_class",
            with("error_class", json!("teapot")),
            "invalid_enum",
            Some("error_class"),
        ),
        (
            "unknown key_type",
            with("key_type", json!("shared")),
            "invalid_enum",
            Some("key_type"),
        ),
        (
            "unparseable timestamp",
            with("attempt_start", json!("yesterday")),
            "bad_timestamp",
            Some("attempt_start"),
        ),
        (
            "timestamp in seconds",
            with("request_start", json!(1_793_527_200)),
            "out_of_range",
            Some("request_start"),
        ),
        (
            "timestamp far future",
            with("attempt_end", json!("2199-01-01T00:00:00Z")),
            "out_of_range",
            Some("attempt_end"),
        ),
        (
            "end before start",
            with("attempt_end", json!("2026-11-01T09:00:00Z")),
            "out_of_range",
            Some("attempt_end"),
        ),
        (
            "negative tokens",
            with("output_tokens", json!(-1)),
            "out_of_range",
            Some("output_tokens"),
        ),
        (
            "attempt_id too long",
            with("attempt_id", json!("x".repeat(129))),
            "out_of_range",
            Some("attempt_id"),
        ),
        (
            "too many decimals",
            with("cost_usd", json!("0.0000000001")),
            "out_of_range",
            Some("cost_usd"),
        ),
        (
            "negative money",
            with("cost_usd", json!("-1")),
            "out_of_range",
            Some("cost_usd"),
        ),
        (
            "http status 42",
            with("http_status", json!(42)),
            "out_of_range",
            Some("http_status"),
        ),
        (
            "schema version 2",
            with("schema_version", json!(2)),
            "unsupported_version",
            Some("schema_version"),
        ),
    ];
    let mut classes_seen = std::collections::BTreeSet::new();
    for (name, payload, class, field) in cases {
        let err = decode_event(&payload).expect_err(name);
        assert_eq!(err.class(), class, "{name}: {err}");
        assert_eq!(err.field(), field, "{name}: {err}");
        if let Some(field) = field {
            assert!(
                err.to_string().contains(field),
                "{name}: message `{err}` must name `{field}`"
            );
        }
        classes_seen.insert(class);
    }
    let all: std::collections::BTreeSet<_> = ERROR_CLASSES.iter().copied().collect();
    assert_eq!(classes_seen, all, "every error class has a case");
}

#[test]
fn a_batch_message_decodes_each_element_on_its_own() {
    let good = valid();
    let mut bad = valid();
    bad["outcome"] = json!("ok");
    let payload = serde_json::to_vec(&json!([good, bad, 7])).expect("json");
    let events = decode_message(&payload).expect("message");
    assert_eq!(events.len(), 3);
    assert!(events[0].is_ok());
    assert_eq!(events[1].as_ref().expect_err("bad").class(), "invalid_enum");
    assert_eq!(
        events[2].as_ref().expect_err("bad").class(),
        "not_an_object"
    );
}

#[test]
fn the_arrow_schema_has_a_column_for_every_field() {
    let schema = crate::attempts_schema();
    for field in EVENT_FIELDS.iter().chain(["tags"].iter()) {
        assert!(schema.field_with_name(field).is_ok(), "column {field}");
    }
    assert_eq!(schema.fields().len(), EVENT_FIELDS.len() + 1 + 4);
}

#[test]
fn the_json_schema_file_lists_every_field() {
    let text = include_str!("../../../schemas/attempt.v1.json");
    let schema: Value = serde_json::from_str(text).expect("schema parses");
    let properties = schema["properties"].as_object().expect("properties");
    for field in EVENT_FIELDS.iter().chain(["tags"].iter()) {
        assert!(properties.contains_key(*field), "schema lacks {field}");
    }
    assert_eq!(properties.len(), EVENT_FIELDS.len() + 1);
}

#[test]
fn an_error_names_the_field_but_never_repeats_the_value() {
    let secret = "sk-or-v1-0123456789abcdef0123456789abcdef";
    for (field, value) in [
        ("outcome", json!(secret)),
        ("attempt_kind", json!(secret)),
        ("request_start", json!(secret)),
        ("cost_usd", json!(secret)),
        ("http_status", json!(987_654_321)),
        ("input_tokens", json!(-987_654_321)),
    ] {
        let error = decode_event(&with(field, value)).expect_err(field);
        let message = error.to_string();
        assert_eq!(error.field(), Some(field), "{message}");
        assert!(!message.contains(secret), "{field}: {message}");
        assert!(!message.contains("987654321"), "{field}: {message}");
    }
}
