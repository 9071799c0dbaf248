//! The attempt event of schemas/README.md as a Rust type.

use std::fmt;

/// Microseconds since the Unix epoch, UTC. The lake stores every timestamp at
/// this precision (`Timestamp(Microsecond, "UTC")`).
pub type EpochMicros = i64;

/// Money in USD as an exact decimal with 9 fractional digits: the value is
/// `units / 10^9`. Matches the lake's `Decimal128(20, 9)` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(pub i128);

impl Usd {
    pub const SCALE: u32 = 9;
    pub const PRECISION: u8 = 20;
    const ONE: i128 = 1_000_000_000;

    /// Parses a plain decimal (`"0.0015"`, `"12"`, `"-3.5"`) exactly.
    /// Returns `None` for anything else, for more than 9 fractional digits and
    /// for values beyond 20 significant digits.
    pub fn parse(text: &str) -> Option<Usd> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (whole, fraction) = match digits.split_once('.') {
            Some((w, f)) => (w, f),
            None => (digits, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty())
            || !all_digits(whole)
            || !all_digits(fraction)
            || fraction.len() > Self::SCALE as usize
            || whole.trim_start_matches('0').len()
                > (Self::PRECISION as usize - Self::SCALE as usize)
        {
            return None;
        }
        let whole_value: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut fraction_value: i128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().ok()?
        };
        for _ in fraction.len()..Self::SCALE as usize {
            fraction_value *= 10;
        }
        let units = whole_value * Self::ONE + fraction_value;
        Some(Usd(if negative { -units } else { units }))
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let one = Self::ONE as u128;
        write!(f, "{sign}{}.{:09}", abs / one, abs % one)
    }
}

macro_rules! closed_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, as written in events.
            pub const ALLOWED: &'static str = concat!($($text, " "),+);

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

closed_enum!(
    /// Why this upstream call was made.
    AttemptKind {
        Initial => "initial",
        Retry => "retry",
        ProviderFallback => "provider_fallback",
        ModelFallback => "model_fallback",
        KeyFallback => "key_fallback",
    }
);

closed_enum!(
    /// How the attempt ended.
    Outcome {
        Success => "success",
        Error => "error",
        Partial => "partial",
        Cancelled => "cancelled",
        Rejected => "rejected",
    }
);

closed_enum!(
    /// Normalised error class of a failed attempt.
    ErrorClass {
        BadRequest => "bad_request",
        Auth => "auth",
        InsufficientCredits => "insufficient_credits",
        Forbidden => "forbidden",
        Timeout => "timeout",
        RateLimited => "rate_limited",
        ProviderError => "provider_error",
        NoProvider => "no_provider",
        StreamInterrupted => "stream_interrupted",
        ContextLength => "context_length",
        Network => "network",
        BudgetExceeded => "budget_exceeded",
        Other => "other",
    }
);

closed_enum!(
    /// Whose credential paid for the attempt.
    KeyType {
        Platform => "platform",
        Byok => "byok",
    }
);

/// One upstream attempt, validated. Optional fields stay `None` when the
/// event did not report them: "not reported" is never turned into zero.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEvent {
    pub schema_version: i32,
    pub attempt_id: String,
    pub event_version: i64,
    pub request_id: String,
    pub attempt_index: i32,
    pub attempt_kind: AttemptKind,
    pub is_final: bool,
    pub request_start: EpochMicros,
    pub attempt_start: EpochMicros,
    pub attempt_end: EpochMicros,
    pub ttft_ms: Option<f64>,
    pub backoff_ms: Option<f64>,
    pub operation: String,
    pub requested_model: String,
    pub served_model: Option<String>,
    pub provider: String,
    pub region: Option<String>,
    pub org_id: Option<String>,
    pub team: String,
    pub app: Option<String>,
    pub user_id: Option<String>,
    pub api_key_id: String,
    pub environment: String,
    pub key_type: KeyType,
    pub streaming: bool,
    pub outcome: Outcome,
    pub http_status: Option<i32>,
    pub error_class: Option<ErrorClass>,
    pub finish_reason: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub tool_calls: Option<i64>,
    pub web_search_requests: Option<i64>,
    pub cost_usd: Option<Usd>,
    pub cost_tools_usd: Option<Usd>,
    pub billed: bool,
    /// Free-form tags, kept as a JSON object text (never a metric label).
    pub tags: Option<String>,
    /// The wait the provider asked for before another try (its
    /// `Retry-After`), in ms; on a throttled or unavailable answer.
    pub retry_after_ms: Option<f64>,
    /// Whether the attempt ran under a zero-data-retention agreement with
    /// its provider (null: not reported).
    pub zero_data_retention: Option<bool>,
}

/// Where a row came from: the Kafka position (or the import file's stand-in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// An event with its source position: what the lake stores as one row.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub event: AttemptEvent,
    pub source: SourcePosition,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_parses_exactly() {
        assert_eq!(Usd::parse("0.0015"), Some(Usd(1_500_000)));
        assert_eq!(Usd::parse("12"), Some(Usd(12_000_000_000)));
        assert_eq!(Usd::parse("-3.5"), Some(Usd(-3_500_000_000)));
        assert_eq!(Usd::parse(".5"), Some(Usd(500_000_000)));
        assert_eq!(Usd::parse("0.000000001"), Some(Usd(1)));
        assert_eq!(
            Usd::parse("99999999999.999999999"),
            Some(Usd(99_999_999_999_999_999_999))
        );
    }

    #[test]
    fn usd_rejects_what_it_cannot_hold() {
        for bad in [
            "",
            ".",
            "1e-3",
            "0.0000000001",
            "abc",
            "1.2.3",
            "100000000000",
            "--1",
        ] {
            assert_eq!(Usd::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn usd_displays_all_digits() {
        assert_eq!(Usd(1_500_000).to_string(), "0.001500000");
        assert_eq!(Usd(-3_500_000_000).to_string(), "-3.500000000");
    }
}
