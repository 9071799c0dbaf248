//! Request counts and latencies of the API itself, labelled by route
//! template (never by the raw path), method and status class.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::state::AppState;

pub const HTTP_REQUESTS_TOTAL: &str = "gatemeter_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "gatemeter_http_request_duration_seconds";

#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> Result<HttpMetrics, prometheus::Error> {
        let metrics = HttpMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    HTTP_REQUESTS_TOTAL,
                    "HTTP requests answered, by route, method and status",
                ),
                &["route", "method", "status"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    HTTP_REQUEST_DURATION,
                    "Time to answer an HTTP request, by route",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["route"],
            )?,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        Ok(metrics)
    }
}

/// The method as a label: the standard ones by name, any other (a client
/// may send any token) as `other`, so clients cannot add series at will.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Middleware: times every request and counts it once answered.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.http_metrics;
    metrics
        .duration
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[route.as_str(), method, response.status().as_str()])
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        let custom = |name: &str| axum::http::Method::from_bytes(name.as_bytes()).expect("a token");
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
        assert_eq!(method_label(&custom("BREW")), "other");
        assert_eq!(method_label(&custom("X1")), "other");
    }
}
