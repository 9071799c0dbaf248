//! Tests of the synthetic generator: events that decode, scenarios that
//! show in the traffic, the same seed giving the same stream.

use super::*;
use gatemeter_schema::{decode_event, AttemptEvent};

fn generator(scenario: Scenario, seed: u64) -> Generator {
    Generator::new(GeneratorConfig {
        seed,
        scenario,
        start_micros: 1_793_527_200_000_000,
        requests_per_second: 100.0,
        duplicate_share: 0.01,
        correction_share: 0.01,
        malformed_share: 0.01,
    })
}

#[test]
fn every_generated_event_is_valid_and_requests_are_well_formed() {
    let mut g = generator(Scenario::Default, 7);
    let mut kinds = std::collections::BTreeSet::new();
    let mut malformed = 0;
    let mut retried = 0;
    for _ in 0..5000 {
        let messages = g.next_request(None);
        let mut finals = 0;
        let mut attempts = 0;
        for m in &messages {
            match m.kind {
                MessageKind::Malformed(class) => {
                    malformed += 1;
                    let err = decode_event(&m.payload).expect_err("malformed must fail");
                    assert_eq!(err.class(), class, "{err}");
                }
                MessageKind::Event => {
                    let e = decode_event(&m.payload).expect("valid");
                    assert_eq!(e.request_id, m.key);
                    assert_eq!(e.attempt_index, attempts);
                    kinds.insert(e.attempt_kind.as_str());
                    attempts += 1;
                    finals += i32::from(e.is_final);
                }
                MessageKind::Duplicate | MessageKind::Correction => {
                    decode_event(&m.payload).expect("valid");
                }
            }
        }
        assert_eq!(finals, 1, "exactly one final attempt");
        retried += i32::from(attempts > 1);
    }
    assert!(malformed > 0);
    assert!(retried > 100, "{retried}");
    for kind in ["initial", "retry", "provider_fallback", "model_fallback"] {
        assert!(kinds.contains(kind), "{kind}");
    }
}

#[test]
fn the_same_seed_gives_the_same_traffic() {
    let run = |seed| {
        let mut g = generator(Scenario::Default, seed);
        (0..50)
            .flat_map(|_| g.next_request(None))
            .map(|m| m.payload)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

#[test]
fn clean_traffic_is_one_successful_attempt_per_request() {
    let mut g = generator(Scenario::Clean, 1);
    g.config.duplicate_share = 0.0;
    g.config.correction_share = 0.0;
    g.config.malformed_share = 0.0;
    for _ in 0..200 {
        let messages = g.next_request(None);
        assert_eq!(messages.len(), 1);
        let e = decode_event(&messages[0].payload).expect("valid");
        assert_eq!(e.outcome.as_str(), "success");
    }
}

/// Attempts of `count` requests of a scenario, without extra messages.
fn attempts_of(scenario: Scenario, count: usize) -> Vec<AttemptEvent> {
    let mut g = generator(scenario, 5);
    // One request a second: 2,000 requests span several bursts.
    g.config.requests_per_second = 1.0;
    g.config.duplicate_share = 0.0;
    g.config.correction_share = 0.0;
    g.config.malformed_share = 0.0;
    (0..count)
        .flat_map(|_| g.next_request(None))
        .map(|m| decode_event(&m.payload).expect("valid"))
        .collect()
}

/// Retries on the same provider after a 429, and how many started
/// before the wait it asked for was over.
fn retries_after_throttling(events: &[AttemptEvent]) -> (usize, usize) {
    let (mut retries, mut early) = (0, 0);
    for pair in events.windows(2) {
        let [failed, next] = pair else { continue };
        let same_request = failed.request_id == next.request_id;
        if same_request && failed.http_status == Some(429) && next.provider == failed.provider {
            let wait = failed.retry_after_ms.expect("a 429 says when to retry");
            retries += 1;
            early +=
                usize::from(((next.attempt_start - failed.attempt_end) as f64) < wait * 1000.0);
        }
    }
    (retries, early)
}

#[test]
fn a_throttled_attempt_says_when_to_retry_and_only_a_storm_retries_sooner() {
    let (retries, early) = retries_after_throttling(&attempts_of(Scenario::Default, 2000));
    assert!(retries > 10, "{retries} retries after a 429");
    assert_eq!(early, 0);
    let (retries, early) = retries_after_throttling(&attempts_of(Scenario::RetryStorm, 2000));
    assert!(retries > 100 && early == retries, "{early} of {retries}");
    let everyday = attempts_of(Scenario::Default, 200);
    assert!(everyday
        .iter()
        .all(|e| e.zero_data_retention
            == Some(ZERO_RETENTION_PROVIDERS.contains(&e.provider.as_str()))));
}

#[test]
fn each_scenario_shows_its_condition_and_everyday_traffic_does_not() {
    let share = |events: &[AttemptEvent], hit: &dyn Fn(&AttemptEvent) -> bool| {
        events.iter().filter(|e| hit(e)).count() as f64 / events.len() as f64
    };
    let everyday = attempts_of(Scenario::Default, 2000);
    let storm = attempts_of(Scenario::RetryStorm, 2000);
    let unbacked_retry =
        |e: &AttemptEvent| e.attempt_kind.as_str() == "retry" && e.backoff_ms == Some(0.0);
    assert!(
        storm.len() as f64 / 2000.0 > 1.6,
        "{} attempts",
        storm.len()
    );
    assert!(
        everyday.len() as f64 / 2000.0 < 1.3,
        "{} attempts",
        everyday.len()
    );
    assert!(share(&storm, &unbacked_retry) > 0.3);
    assert_eq!(share(&everyday, &unbacked_retry), 0.0);

    let down = |e: &AttemptEvent| e.provider == DOWN_PROVIDER;
    let failed_down = |e: &AttemptEvent| down(e) && e.http_status == Some(503);
    let outage = attempts_of(Scenario::ProviderOutage, 2000);
    assert!(share(&outage, &failed_down) / share(&outage, &down) > 0.8);
    assert!(share(&everyday, &failed_down) == 0.0);

    let output =
        |events: &[AttemptEvent]| -> i64 { events.iter().filter_map(|e| e.output_tokens).sum() };
    let spike = attempts_of(Scenario::PriceSpike, 2000);
    assert!(output(&spike) > 10 * output(&everyday));

    let slow_first_token = |e: &AttemptEvent| e.ttft_ms.is_some_and(|ms| ms > 4000.0);
    let cold = attempts_of(Scenario::ColdStart, 2000);
    assert!(share(&cold, &slow_first_token) > 0.01);
    assert!(share(&everyday, &slow_first_token) < 0.001);
}

#[test]
fn usd_text_is_exact_decimal() {
    assert_eq!(usd_text(0.0015), "0.001500000");
    assert_eq!(usd_text(12.5), "12.500000000");
}
