//! Real arrival times and token sizes from public LLM-serving traces: the
//! Azure LLM inference trace (`TIMESTAMP,ContextTokens,GeneratedTokens`) and
//! BurstGPT (`Timestamp,Session ID,Elapsed time,Model,Request tokens,
//! Response tokens,Total tokens,Log Type`). gatemeter adds what they lack
//! (provider, key, team, retries, cost) from the generator's seed.

use chrono::NaiveDateTime;

use super::RequestShape;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceError {
    #[error("unknown trace header `{0}` (expected the Azure or BurstGPT CSV format)")]
    UnknownFormat(String),
    #[error("line {line}: {reason}")]
    BadRow { line: usize, reason: String },
    #[error("the trace has no rows")]
    Empty,
}

fn column<'a>(fields: &[&'a str], index: usize, line: usize) -> Result<&'a str, TraceError> {
    fields
        .get(index)
        .map(|f| f.trim())
        .ok_or_else(|| TraceError::BadRow {
            line,
            reason: format!("missing column {}", index + 1),
        })
}

fn number<T: std::str::FromStr>(text: &str, line: usize, what: &str) -> Result<T, TraceError> {
    text.parse().map_err(|_| TraceError::BadRow {
        line,
        reason: format!("{what} `{text}` is not a number"),
    })
}

/// Parses a trace; arrival times are shifted so the first row arrives at
/// `start_micros`.
pub fn parse_trace(text: &str, start_micros: i64) -> Result<Vec<RequestShape>, TraceError> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, h)| h.trim()).unwrap_or_default();
    let mut shapes = Vec::new();
    let mut first_arrival: Option<i64> = None;
    let mut anchor = |arrival: i64| arrival - *first_arrival.get_or_insert(arrival) + start_micros;
    if header.starts_with("TIMESTAMP,ContextTokens,GeneratedTokens") {
        for (index, row) in lines.filter(|(_, l)| !l.trim().is_empty()) {
            let line = index + 1;
            let fields: Vec<&str> = row.split(',').collect();
            let when =
                NaiveDateTime::parse_from_str(column(&fields, 0, line)?, "%Y-%m-%d %H:%M:%S%.f")
                    .map_err(|e| TraceError::BadRow {
                        line,
                        reason: format!("timestamp: {e}"),
                    })?;
            shapes.push(RequestShape {
                arrival_micros: anchor(when.and_utc().timestamp_micros()),
                input_tokens: number(column(&fields, 1, line)?, line, "ContextTokens")?,
                output_tokens: number(column(&fields, 2, line)?, line, "GeneratedTokens")?,
                failed: false,
                latency_ms: None,
                model: None,
            });
        }
    } else if header
        .starts_with("Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens")
    {
        for (index, row) in lines.filter(|(_, l)| !l.trim().is_empty()) {
            let line = index + 1;
            let fields: Vec<&str> = row.split(',').collect();
            let seconds: f64 = number(column(&fields, 0, line)?, line, "Timestamp")?;
            let elapsed_s: f64 = number(column(&fields, 2, line)?, line, "Elapsed time")?;
            let output_tokens: i64 = number(column(&fields, 5, line)?, line, "Response tokens")?;
            shapes.push(RequestShape {
                arrival_micros: anchor((seconds * 1e6) as i64),
                input_tokens: number(column(&fields, 4, line)?, line, "Request tokens")?,
                output_tokens,
                // BurstGPT marks a failed request with zero response tokens.
                failed: output_tokens == 0,
                latency_ms: Some(elapsed_s * 1000.0),
                model: Some(match column(&fields, 3, line)? {
                    "GPT-4" => "gpt-4o",
                    _ => "gpt-4o-mini",
                }),
            });
        }
    } else {
        return Err(TraceError::UnknownFormat(header.chars().take(80).collect()));
    }
    if shapes.is_empty() {
        return Err(TraceError::Empty);
    }
    Ok(shapes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_rows_keep_their_spacing_and_sizes() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n2023-11-16 18:17:04.0319600,3180,8\n";
        let shapes = parse_trace(text, 1_000_000).expect("parses");
        assert_eq!(shapes.len(), 2);
        assert_eq!(shapes[0].arrival_micros, 1_000_000);
        assert_eq!(shapes[1].arrival_micros, 1_052_000);
        assert_eq!(
            (shapes[0].input_tokens, shapes[0].output_tokens),
            (4808, 10)
        );
    }

    #[test]
    fn burstgpt_failures_and_latency_are_read() {
        let text = "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
                    19440110.0,a,43,GPT-4,906,446,1352,Conversation log\n\
                    19440161.0,b,2,ChatGPT,36,0,36,Conversation log\n";
        let shapes = parse_trace(text, 0).expect("parses");
        assert_eq!(shapes[1].arrival_micros, 51_000_000);
        assert_eq!(shapes[0].latency_ms, Some(43_000.0));
        assert_eq!(shapes[0].model, Some("gpt-4o"));
        assert!(shapes[1].failed);
    }

    #[test]
    fn bad_traces_say_where() {
        assert!(matches!(
            parse_trace("a,b\n1,2\n", 0),
            Err(TraceError::UnknownFormat(_))
        ));
        let err = parse_trace(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9,x,1\n",
            0,
        )
        .expect_err("bad");
        assert_eq!(err.to_string(), "line 2: ContextTokens `x` is not a number");
    }
}
