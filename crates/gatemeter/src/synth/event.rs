//! The synthetic event as it is serialised: optional fields that a real
//! gateway would leave out are left out, never sent as zero.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct SynthEvent {
    pub schema_version: i32,
    pub attempt_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_version: Option<i64>,
    pub request_id: String,
    pub attempt_index: i32,
    pub attempt_kind: &'static str,
    pub is_final: bool,
    pub request_start: String,
    pub attempt_start: String,
    pub attempt_end: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<&'static str>,
    pub requested_model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    pub provider: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub api_key_id: String,
    pub environment: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streaming: Option<bool>,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_search_requests: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_tools_usd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_data_retention: Option<bool>,
    /// The reported cost as a number, to derive corrections from.
    #[serde(skip)]
    pub reported_cost: Option<f64>,
}

impl SynthEvent {
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a plain struct of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
