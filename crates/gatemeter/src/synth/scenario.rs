//! The traffic mixes of the synthetic gateway, and the state the ones that
//! depend on time keep: each shows one condition the diagnostics of
//! docs/diagnostics.md are there to find.

/// A named traffic mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Everyday traffic: a few percent retries, fallbacks and errors.
    Default,
    /// A provider outage: about 20% of attempts fail with 5xx.
    Outage,
    /// Only successful single attempts (hand-checkable numbers).
    Clean,
    /// A retry storm: about 45% of attempts throttled (429), retried up to
    /// four times on the same provider with no backoff.
    RetryStorm,
    /// One provider down: 90% of openai's attempts fail with 503 and fall
    /// back to other providers and models.
    ProviderOutage,
    /// Bursts of 5 minutes after 15 idle minutes; an attempt to a provider
    /// and model idle for 10 minutes or more starts cold (4 s more to the
    /// first token).
    ColdStart,
    /// A runaway client: prompts 5 times and answers 20 times as long as
    /// everyday traffic, so spend per hour jumps.
    PriceSpike,
}

/// The provider `ProviderOutage` takes down.
pub const DOWN_PROVIDER: &str = "openai";

/// Share of attempts `RetryStorm` throttles, whatever else they would draw.
pub const STORM_THROTTLED_SHARE: f64 = 0.45;

/// Retries after a 429 before the gateway falls back.
pub fn rate_limit_retries(scenario: Scenario) -> i32 {
    if scenario == Scenario::RetryStorm {
        4
    } else {
        2
    }
}

/// Token multipliers (input, output) of a request.
pub fn token_factors(scenario: Scenario) -> (i64, i64) {
    if scenario == Scenario::PriceSpike {
        (5, 20)
    } else {
        (1, 1)
    }
}

const MINUTE_MICROS: i64 = 60_000_000;
const BURST_MICROS: i64 = 5 * MINUTE_MICROS;
const IDLE_MICROS: i64 = 15 * MINUTE_MICROS;
const COLD_AFTER_MICROS: i64 = 10 * MINUTE_MICROS;
const COLD_START_MS: f64 = 4_000.0;

/// `ColdStart`'s clock: when the current burst began, and when each route
/// was last called.
#[derive(Debug, Default)]
pub struct Bursts {
    burst_start: Option<i64>,
    last_call: Vec<Option<i64>>,
}

impl Bursts {
    /// The arrival time of a request that would arrive at `at`: moved past
    /// an idle gap when the current burst is over.
    pub fn arrival(&mut self, at: i64) -> i64 {
        match self.burst_start {
            Some(start) if at - start >= BURST_MICROS => {
                let moved = at + IDLE_MICROS;
                self.burst_start = Some(moved);
                moved
            }
            Some(_) => at,
            None => {
                self.burst_start = Some(at);
                at
            }
        }
    }

    /// The extra time to first token of a call to `route` at `at`: a cold
    /// start when the route was never called or idle long enough.
    pub fn cold_start_ms(&mut self, route: usize, at: i64) -> f64 {
        if self.last_call.len() <= route {
            self.last_call.resize(route + 1, None);
        }
        let cold = self.last_call[route].is_none_or(|last| at - last >= COLD_AFTER_MICROS);
        self.last_call[route] = Some(at);
        if cold {
            COLD_START_MS
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_leave_idle_gaps_and_idle_routes_start_cold() {
        let mut bursts = Bursts::default();
        assert_eq!(bursts.arrival(0), 0);
        assert_eq!(bursts.arrival(BURST_MICROS - 1), BURST_MICROS - 1);
        let next = bursts.arrival(BURST_MICROS);
        assert_eq!(next, BURST_MICROS + IDLE_MICROS);
        assert_eq!(bursts.arrival(next + 1), next + 1);

        assert_eq!(bursts.cold_start_ms(2, 0), COLD_START_MS);
        assert_eq!(bursts.cold_start_ms(2, COLD_AFTER_MICROS - 1), 0.0);
        assert_eq!(
            bursts.cold_start_ms(2, 2 * COLD_AFTER_MICROS),
            COLD_START_MS
        );
        assert_eq!(bursts.cold_start_ms(0, 5), COLD_START_MS);
    }
}
