//! The synthetic gateway's world: providers, models with list prices, teams,
//! keys and apps. Prices match `config/prices.csv` so price-book costs and
//! provider-reported costs agree.

/// Providers the synthetic gateway has a zero-data-retention agreement
/// with; its attempts to the others report none.
pub const ZERO_RETENTION_PROVIDERS: &[&str] = &["azure", "bedrock", "anthropic", "google"];

/// A model served by one provider, with USD prices per 1M tokens.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub provider: &'static str,
    pub model: &'static str,
    pub input_per_1m: f64,
    pub output_per_1m: f64,
    pub cache_read_per_1m: f64,
    /// Milliseconds per output token (decode speed) and median TTFT.
    pub ms_per_token: f64,
    pub ttft_ms: f64,
    /// Where a provider fallback goes (same model, other provider).
    pub provider_fallback: Option<usize>,
    /// Where a model fallback goes (other model).
    pub model_fallback: Option<usize>,
    /// Share of traffic that asks for this route first.
    pub weight: u32,
}

pub const ROUTES: &[Route] = &[
    Route {
        provider: "openai",
        model: "gpt-4o",
        input_per_1m: 2.5,
        output_per_1m: 10.0,
        cache_read_per_1m: 1.25,
        ms_per_token: 12.0,
        ttft_ms: 450.0,
        provider_fallback: Some(1),
        model_fallback: Some(3),
        weight: 18,
    },
    Route {
        provider: "azure",
        model: "gpt-4o",
        input_per_1m: 2.5,
        output_per_1m: 10.0,
        cache_read_per_1m: 1.25,
        ms_per_token: 14.0,
        ttft_ms: 520.0,
        provider_fallback: None,
        model_fallback: Some(3),
        weight: 4,
    },
    Route {
        provider: "openai",
        model: "gpt-4o-mini",
        input_per_1m: 0.15,
        output_per_1m: 0.6,
        cache_read_per_1m: 0.075,
        ms_per_token: 8.0,
        ttft_ms: 300.0,
        provider_fallback: None,
        model_fallback: Some(6),
        weight: 22,
    },
    Route {
        provider: "anthropic",
        model: "claude-sonnet-4",
        input_per_1m: 3.0,
        output_per_1m: 15.0,
        cache_read_per_1m: 0.3,
        ms_per_token: 15.0,
        ttft_ms: 600.0,
        provider_fallback: Some(4),
        model_fallback: Some(0),
        weight: 14,
    },
    Route {
        provider: "bedrock",
        model: "claude-sonnet-4",
        input_per_1m: 3.0,
        output_per_1m: 15.0,
        cache_read_per_1m: 0.3,
        ms_per_token: 17.0,
        ttft_ms: 700.0,
        provider_fallback: None,
        model_fallback: Some(0),
        weight: 3,
    },
    Route {
        provider: "anthropic",
        model: "claude-haiku-3.5",
        input_per_1m: 0.8,
        output_per_1m: 4.0,
        cache_read_per_1m: 0.08,
        ms_per_token: 7.0,
        ttft_ms: 350.0,
        provider_fallback: None,
        model_fallback: Some(2),
        weight: 8,
    },
    Route {
        provider: "google",
        model: "gemini-2.5-flash",
        input_per_1m: 0.3,
        output_per_1m: 2.5,
        cache_read_per_1m: 0.075,
        ms_per_token: 5.0,
        ttft_ms: 280.0,
        provider_fallback: None,
        model_fallback: Some(2),
        weight: 12,
    },
    Route {
        provider: "google",
        model: "gemini-2.5-pro",
        input_per_1m: 1.25,
        output_per_1m: 10.0,
        cache_read_per_1m: 0.31,
        ms_per_token: 11.0,
        ttft_ms: 900.0,
        provider_fallback: None,
        model_fallback: Some(0),
        weight: 5,
    },
    Route {
        provider: "together",
        model: "llama-3.3-70b-instruct",
        input_per_1m: 0.88,
        output_per_1m: 0.88,
        cache_read_per_1m: 0.88,
        ms_per_token: 9.0,
        ttft_ms: 400.0,
        provider_fallback: Some(9),
        model_fallback: Some(2),
        weight: 6,
    },
    Route {
        provider: "deepinfra",
        model: "llama-3.3-70b-instruct",
        input_per_1m: 0.23,
        output_per_1m: 0.4,
        cache_read_per_1m: 0.23,
        ms_per_token: 10.0,
        ttft_ms: 450.0,
        provider_fallback: None,
        model_fallback: Some(2),
        weight: 2,
    },
    Route {
        provider: "mistral",
        model: "mistral-large",
        input_per_1m: 2.0,
        output_per_1m: 6.0,
        cache_read_per_1m: 2.0,
        ms_per_token: 12.0,
        ttft_ms: 500.0,
        provider_fallback: None,
        model_fallback: Some(0),
        weight: 4,
    },
    Route {
        provider: "deepseek",
        model: "deepseek-chat",
        input_per_1m: 0.27,
        output_per_1m: 1.1,
        cache_read_per_1m: 0.07,
        ms_per_token: 13.0,
        ttft_ms: 650.0,
        provider_fallback: Some(9),
        model_fallback: Some(2),
        weight: 2,
    },
];

/// USD per 1,000 web search requests (every provider here).
pub const WEB_SEARCH_PER_1K: f64 = 10.0;

pub const TEAMS: &[&str] = &[
    "search",
    "support",
    "growth",
    "research",
    "platform",
    "finance-ops",
];
pub const APPS: &[&str] = &[
    "chat-web",
    "support-bot",
    "code-review",
    "summarizer",
    "agent-runner",
];
pub const ENVIRONMENTS: &[(&str, u32)] = &[("prod", 70), ("staging", 20), ("dev", 8), ("ci", 2)];
pub const REGIONS: &[&str] = &["us-east-1", "eu-west-1", "us-west-2"];
pub const ORGS: &[&str] = &["org-acme", "org-globex"];
/// API keys per team; the last key of every team is a BYOK key.
pub const KEYS_PER_TEAM: usize = 3;
