//! A synthetic OpenRouter-like gateway: every call yields the attempt events
//! of one client request — 429 retries with backoff, provider and model
//! fallbacks, broken streams, cancellations, client errors, BYOK keys, tool
//! costs — plus, when asked, producer duplicates, `event_version`
//! corrections and malformed messages. Deterministic for a given seed.

pub mod catalog;
mod event;
pub mod malformed;
pub mod replay;
mod scenario;

use chrono::{SecondsFormat, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use catalog::{
    Route, APPS, ENVIRONMENTS, KEYS_PER_TEAM, ORGS, REGIONS, ROUTES, TEAMS, WEB_SEARCH_PER_1K,
    ZERO_RETENTION_PROVIDERS,
};
pub use event::SynthEvent;
pub use scenario::Scenario;
use scenario::{Bursts, DOWN_PROVIDER, STORM_THROTTLED_SHARE};

#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    pub scenario: Scenario,
    /// `request_start` of the first request (µs since epoch).
    pub start_micros: i64,
    /// Mean client requests per second of simulated time.
    pub requests_per_second: f64,
    pub duplicate_share: f64,
    pub correction_share: f64,
    pub malformed_share: f64,
}

/// One request's shape when it comes from a real trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestShape {
    pub arrival_micros: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// The trace says the request failed.
    pub failed: bool,
    /// End-to-end latency from the trace, when it has one.
    pub latency_ms: Option<f64>,
    /// Prefer a route serving this model.
    pub model: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Event,
    Duplicate,
    Correction,
    Malformed(&'static str),
}

/// One Kafka message: key = `request_id`.
#[derive(Debug, Clone)]
pub struct Message {
    pub key: String,
    pub payload: Vec<u8>,
    pub kind: MessageKind,
}

pub struct Generator {
    config: GeneratorConfig,
    rng: StdRng,
    clock_micros: i64,
    malformed_counter: usize,
    route_weights_total: u32,
    bursts: Bursts,
}

/// Micro-dollars as the decimal text of an exact 9-digit amount.
fn usd_text(usd: f64) -> String {
    let nano = (usd * 1e9).round() as i128;
    format!("{}.{:09}", nano / 1_000_000_000, nano % 1_000_000_000)
}

fn rfc3339(micros: i64) -> String {
    Utc.timestamp_micros(micros)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Attempt outcome drawn for one upstream call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Draw {
    Success,
    ClientError(&'static str, i32),
    Rejected,
    RateLimited,
    ProviderError(&'static str, Option<i32>),
    Partial,
    Cancelled,
}

impl Generator {
    pub fn new(config: GeneratorConfig) -> Self {
        Generator {
            rng: StdRng::seed_from_u64(config.seed),
            clock_micros: config.start_micros,
            malformed_counter: 0,
            route_weights_total: ROUTES.iter().map(|r| r.weight).sum(),
            bursts: Bursts::default(),
            config,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }

    /// A log-normal factor with median 1 (Box–Muller).
    fn spread(&mut self, sigma: f64) -> f64 {
        let u1: f64 = self.rng.random::<f64>().max(1e-12);
        let u2: f64 = self.rng.random();
        let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (sigma * normal).exp()
    }

    fn pick_route(&mut self, model: Option<&str>) -> usize {
        if let Some(model) = model {
            if let Some(index) = ROUTES.iter().position(|r| r.model == model) {
                return index;
            }
        }
        let mut ticket = self.rng.random_range(0..self.route_weights_total);
        for (index, route) in ROUTES.iter().enumerate() {
            if ticket < route.weight {
                return index;
            }
            ticket -= route.weight;
        }
        0
    }

    fn draw(&mut self, first: bool, streaming: bool) -> Draw {
        let scenario = self.config.scenario;
        match scenario {
            Scenario::Clean => return Draw::Success,
            Scenario::Outage if self.chance(0.2) => {
                return Draw::ProviderError("provider_error", Some(503))
            }
            Scenario::RetryStorm if self.chance(STORM_THROTTLED_SHARE) => return Draw::RateLimited,
            _ => {}
        }
        let r: f64 = self.rng.random();
        let client_errors: [(&str, i32); 5] = [
            ("bad_request", 400),
            ("auth", 401),
            ("insufficient_credits", 402),
            ("forbidden", 403),
            ("context_length", 400),
        ];
        match r {
            r if first && r < 0.015 => {
                let (class, status) = client_errors[self.rng.random_range(0..client_errors.len())];
                Draw::ClientError(class, status)
            }
            r if first && r < 0.02 => Draw::Rejected,
            r if r < 0.09 => Draw::RateLimited,
            r if r < 0.11 => Draw::ProviderError("provider_error", Some(502)),
            r if r < 0.115 => Draw::ProviderError("timeout", Some(408)),
            r if r < 0.12 => Draw::ProviderError("network", None),
            r if streaming && r < 0.14 => Draw::Partial,
            r if r < 0.15 => Draw::Cancelled,
            _ => Draw::Success,
        }
    }

    /// The messages of the next client request, in produce order.
    pub fn next_request(&mut self, shape: Option<RequestShape>) -> Vec<Message> {
        let request_start = match shape {
            Some(shape) => shape.arrival_micros,
            None => {
                let gap = -self.rng.random::<f64>().max(1e-12).ln()
                    / self.config.requests_per_second.max(1e-9);
                self.clock_micros += (gap * 1e6) as i64;
                if self.config.scenario == Scenario::ColdStart {
                    self.clock_micros = self.bursts.arrival(self.clock_micros);
                }
                self.clock_micros
            }
        };
        let request_id = format!("req_{:016x}", self.rng.random::<u64>());
        let team_index = self.rng.random_range(0..TEAMS.len());
        let key_index = self.rng.random_range(0..KEYS_PER_TEAM);
        let byok = key_index == KEYS_PER_TEAM - 1;
        let mut env_ticket = self.rng.random_range(0..100);
        let environment = ENVIRONMENTS
            .iter()
            .find(|(_, weight)| {
                let hit = env_ticket < *weight;
                env_ticket = env_ticket.saturating_sub(*weight);
                hit
            })
            .map_or("prod", |(name, _)| name);
        let (input_factor, output_factor) = scenario::token_factors(self.config.scenario);
        let input_tokens = shape.map_or_else(
            || (600.0 * self.spread(1.0)) as i64 + 20,
            |s| s.input_tokens,
        ) * input_factor;
        let output_tokens = shape.map_or_else(
            || (180.0 * self.spread(0.9)) as i64 + 5,
            |s| s.output_tokens,
        ) * output_factor;
        let streaming = self.chance(0.6);
        let base = SynthEvent {
            schema_version: 1,
            request_id: request_id.clone(),
            request_start: rfc3339(request_start),
            requested_model: String::new(),
            org_id: Some(ORGS[team_index % ORGS.len()]),
            team: Some(TEAMS[team_index]),
            app: Some(APPS[self.rng.random_range(0..APPS.len())]),
            user_id: Some(format!("user_{:04}", self.rng.random_range(0..2000))),
            api_key_id: format!("kfp_{:02}{:02}", team_index, key_index),
            environment,
            key_type: Some(if byok { "byok" } else { "platform" }),
            streaming: Some(streaming),
            operation: Some("chat"),
            ..SynthEvent::default()
        };

        let first_route = self.pick_route(shape.and_then(|s| s.model));
        let requested_model = ROUTES[first_route].model;
        let mut route_index = first_route;
        let mut clock = request_start + self.rng.random_range(1_000..5_000);
        let mut events = Vec::new();
        let mut rate_limited_here = 0;
        let mut kind = "initial";
        for attempt_index in 0..5 {
            let route: Route = ROUTES[route_index];
            let last_chance = attempt_index == 4;
            let mut draw = self.draw(attempt_index == 0, streaming);
            if let Some(s) = shape {
                if attempt_index == 0 && s.failed {
                    draw = Draw::ProviderError("provider_error", Some(500));
                } else if !s.failed && last_chance {
                    draw = Draw::Success;
                }
            }
            if self.config.scenario == Scenario::ProviderOutage
                && route.provider == DOWN_PROVIDER
                && self.chance(0.9)
            {
                draw = Draw::ProviderError("provider_error", Some(503));
            }
            let backoff_ms = match kind {
                // The storm's retries go out at once.
                "retry" if self.config.scenario == Scenario::RetryStorm => Some(0.0),
                "retry" => Some(
                    200.0 * 2f64.powi(rate_limited_here - 1) * (0.5 + self.rng.random::<f64>()),
                ),
                _ => None,
            };
            let attempt_start = clock + backoff_ms.map_or(0, |ms| (ms * 1000.0) as i64);
            let mut ttft = route.ttft_ms * self.spread(0.35);
            if self.config.scenario == Scenario::ColdStart {
                ttft += self.bursts.cold_start_ms(route_index, attempt_start);
            }
            let decode = output_tokens as f64 * route.ms_per_token * self.spread(0.25);
            let full_ms = match shape.and_then(|s| s.latency_ms) {
                Some(latency) if draw == Draw::Success => latency.max(ttft + 1.0),
                _ => ttft + decode,
            };
            let mut event = SynthEvent {
                attempt_id: format!("att_{:016x}", self.rng.random::<u64>()),
                attempt_index,
                attempt_kind: kind,
                requested_model: requested_model.to_owned(),
                provider: route.provider,
                region: Some(REGIONS[route_index % REGIONS.len()]),
                zero_data_retention: Some(ZERO_RETENTION_PROVIDERS.contains(&route.provider)),
                attempt_start: rfc3339(attempt_start),
                backoff_ms,
                ..base.clone()
            };
            let (duration_ms, billed_output, retry_next) = match draw {
                Draw::Success => {
                    event.outcome = "success";
                    event.http_status = Some(200);
                    event.finish_reason = Some(if self.chance(0.9) { "stop" } else { "length" });
                    (full_ms, Some(output_tokens), None)
                }
                Draw::Partial => {
                    event.outcome = "partial";
                    event.http_status = Some(200);
                    event.error_class = Some("stream_interrupted");
                    let share = self.rng.random_range(0.1..0.9);
                    (
                        ttft + decode * share,
                        Some((output_tokens as f64 * share) as i64),
                        None,
                    )
                }
                Draw::Cancelled => {
                    event.outcome = "cancelled";
                    let share = self.rng.random_range(0.0..0.7);
                    (
                        ttft + decode * share,
                        Some((output_tokens as f64 * share) as i64),
                        None,
                    )
                }
                Draw::ClientError(class, status) => {
                    event.outcome = "error";
                    event.http_status = Some(status);
                    event.error_class = Some(class);
                    (self.rng.random_range(30.0..200.0), None, None)
                }
                Draw::Rejected => {
                    event.outcome = "rejected";
                    event.error_class = Some("budget_exceeded");
                    event.billed = Some(false);
                    (self.rng.random_range(0.5..3.0), None, None)
                }
                Draw::RateLimited => {
                    event.outcome = "error";
                    event.http_status = Some(429);
                    event.error_class = Some("rate_limited");
                    // The provider asks for the least backoff the gateway
                    // draws for its next retry here (none in a storm).
                    event.retry_after_ms = Some(100.0 * 2f64.powi(rate_limited_here));
                    let next =
                        if rate_limited_here < scenario::rate_limit_retries(self.config.scenario) {
                            rate_limited_here += 1;
                            Some(("retry", route_index))
                        } else {
                            rate_limited_here = 0;
                            self.fallback(route_index)
                        };
                    (self.rng.random_range(40.0..250.0), None, next)
                }
                Draw::ProviderError(class, status) => {
                    event.outcome = "error";
                    event.http_status = status;
                    event.error_class = Some(class);
                    let took = if class == "timeout" {
                        30_000.0
                    } else {
                        self.rng.random_range(100.0..3_000.0)
                    };
                    // Some providers bill the prompt of a call that failed
                    // after it was processed: the tokens retries re-spend.
                    let billed_prompt = (class == "timeout" || self.chance(0.3)).then_some(0);
                    (took, billed_prompt, self.fallback(route_index))
                }
            };
            let retry_next = if last_chance { None } else { retry_next };
            let billed = event.billed.unwrap_or(true) && billed_output.is_some();
            if let Some(output) = billed_output {
                event.input_tokens = Some(input_tokens);
                event.output_tokens = Some(output);
                if self.chance(0.3) {
                    event.cache_read_tokens = Some(input_tokens / 2);
                }
                if route.model.starts_with("gemini-2.5-pro") {
                    event.reasoning_tokens = Some(output / 3);
                }
                if self.chance(0.05) {
                    event.web_search_requests = Some(self.rng.random_range(1..4));
                    event.tool_calls = event.web_search_requests;
                }
                event.served_model = Some(if self.chance(0.02) {
                    format!("{}-latest", route.model)
                } else {
                    route.model.to_owned()
                });
                if streaming && output > 0 {
                    event.ttft_ms = Some((ttft * 10.0).round() / 10.0);
                }
                if billed && self.chance(0.7) {
                    let cost = priced(&route, &event);
                    event.cost_usd = Some(usd_text(cost));
                    event.reported_cost = Some(cost);
                    if let Some(searches) = event.web_search_requests {
                        event.cost_tools_usd =
                            Some(usd_text(searches as f64 * WEB_SEARCH_PER_1K / 1000.0));
                    }
                }
            }
            if !billed && event.billed.is_none() {
                event.billed = Some(false);
            }
            let attempt_end = attempt_start + (duration_ms * 1000.0) as i64;
            event.attempt_end = rfc3339(attempt_end);
            clock = attempt_end;
            match retry_next {
                Some((next_kind, next_route)) => {
                    event.is_final = false;
                    events.push(event);
                    kind = next_kind;
                    route_index = next_route;
                }
                None => {
                    event.is_final = true;
                    events.push(event);
                    break;
                }
            }
        }
        self.messages_of(request_id, events)
    }

    /// Where a failed attempt goes next: another provider for the same model,
    /// else another model.
    fn fallback(&mut self, route_index: usize) -> Option<(&'static str, usize)> {
        let route = ROUTES[route_index];
        match (route.provider_fallback, route.model_fallback) {
            (Some(next), _) => Some(("provider_fallback", next)),
            (None, Some(next)) => Some(("model_fallback", next)),
            (None, None) => None,
        }
    }

    fn messages_of(&mut self, request_id: String, events: Vec<SynthEvent>) -> Vec<Message> {
        let mut messages = Vec::with_capacity(events.len() + 1);
        for mut event in events {
            let payload = event.to_json();
            if self.chance(self.config.duplicate_share) {
                messages.push(Message {
                    key: request_id.clone(),
                    payload: payload.clone(),
                    kind: MessageKind::Duplicate,
                });
            }
            let corrected = self.chance(self.config.correction_share) && event.cost_usd.is_some();
            messages.push(Message {
                key: request_id.clone(),
                payload,
                kind: MessageKind::Event,
            });
            if corrected {
                // The provider's invoice later revised the cost: version 1 wins.
                event.event_version = Some(1);
                event.cost_usd = event.reported_cost.map(|cost| usd_text(cost * 1.1));
                messages.push(Message {
                    key: request_id.clone(),
                    payload: event.to_json(),
                    kind: MessageKind::Correction,
                });
            }
            if self.chance(self.config.malformed_share) {
                let (class, payload) = malformed::corrupt(&event, self.malformed_counter);
                self.malformed_counter += 1;
                messages.push(Message {
                    key: request_id.clone(),
                    payload,
                    kind: MessageKind::Malformed(class),
                });
            }
        }
        messages
    }
}

/// List-price cost of an attempt, as the price book computes it.
fn priced(route: &Route, event: &SynthEvent) -> f64 {
    let input = event.input_tokens.unwrap_or(0) as f64;
    let cache_read = event.cache_read_tokens.unwrap_or(0) as f64;
    let output = event.output_tokens.unwrap_or(0) as f64;
    let searches = event.web_search_requests.unwrap_or(0) as f64;
    ((input - cache_read) * route.input_per_1m
        + cache_read * route.cache_read_per_1m
        + output * route.output_per_1m)
        / 1e6
        + searches * WEB_SEARCH_PER_1K / 1000.0
}

#[cfg(test)]
mod tests;
