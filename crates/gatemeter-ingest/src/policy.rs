//! When to flush: the policy as data plus one pure function of the buffer's
//! size and age, so it is tested with an injected clock and no broker.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Flush once this many rows (events and dead letters) are buffered.
    pub max_rows: usize,
    /// Flush once the buffered payloads reach this many bytes.
    pub max_bytes: usize,
    /// Flush once the oldest buffered message is this old (`--flush-interval-ms`,
    /// 5 s by default: how fresh the lake is; README.md, "Command line").
    pub max_age: Duration,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            max_rows: 100_000,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(5),
        }
    }
}

/// The buffer as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferStats {
    pub rows: usize,
    pub bytes: usize,
    /// When the oldest message still buffered arrived; `None` when empty.
    pub oldest: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    Rows,
    Bytes,
    Age,
}

impl FlushReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::Rows => "rows",
            FlushReason::Bytes => "bytes",
            FlushReason::Age => "age",
        }
    }
}

impl FlushPolicy {
    /// Whether to flush now, and why. An empty buffer never flushes.
    pub fn check(&self, stats: &BufferStats, now: Instant) -> Option<FlushReason> {
        let oldest = stats.oldest?;
        if stats.rows >= self.max_rows {
            Some(FlushReason::Rows)
        } else if stats.bytes >= self.max_bytes {
            Some(FlushReason::Bytes)
        } else if now.saturating_duration_since(oldest) >= self.max_age {
            Some(FlushReason::Age)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> FlushPolicy {
        FlushPolicy {
            max_rows: 10,
            max_bytes: 1000,
            max_age: Duration::from_secs(5),
        }
    }

    #[test]
    fn flush_policy_table() {
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let stats = |rows, bytes, oldest: Option<Instant>| BufferStats {
            rows,
            bytes,
            oldest,
        };
        let cases = [
            (
                "empty never flushes, however late",
                stats(0, 0, None),
                at(3600),
                None,
            ),
            ("young and small", stats(9, 999, Some(t0)), at(4), None),
            (
                "row bound",
                stats(10, 1, Some(t0)),
                at(0),
                Some(FlushReason::Rows),
            ),
            (
                "byte bound",
                stats(1, 1000, Some(t0)),
                at(0),
                Some(FlushReason::Bytes),
            ),
            (
                "rows win over bytes",
                stats(10, 1000, Some(t0)),
                at(0),
                Some(FlushReason::Rows),
            ),
            (
                "age bound exactly",
                stats(1, 1, Some(t0)),
                at(5),
                Some(FlushReason::Age),
            ),
            (
                "age measured from the oldest",
                stats(1, 1, Some(at(2))),
                at(6),
                None,
            ),
            (
                "clock before oldest is age zero",
                stats(1, 1, Some(at(10))),
                at(0),
                None,
            ),
        ];
        for (name, stats, now, expected) in cases {
            assert_eq!(policy().check(&stats, now), expected, "{name}");
        }
    }
}
