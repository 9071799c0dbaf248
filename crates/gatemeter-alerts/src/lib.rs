//! Alerts and budgets (README.md, "Alerts and SLOs"): budget periods on the UTC calendar and the
//! figures of a budget, the SLO multi-window multi-burn-rate policy, and the
//! pure alert state machine. Every function here takes the time as an
//! argument, so tests drive them with an injected clock.

pub mod allowlist;
pub mod budget;
mod conditions;
pub mod config;
mod error;
pub mod evaluator;
pub mod figures;
pub mod metrics;
pub mod notify;
pub mod period;
pub mod rules_export;
pub mod slo;
pub mod state;
pub mod store;
mod time_serde;

pub use error::AlertError;
