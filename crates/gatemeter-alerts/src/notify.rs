//! Delivery of alerts: Prometheus Alertmanager's v2 API (`POST
//! /api/v2/alerts`: firing alerts are resent until resolved, a resolved one
//! carries `endsAt`) and generic JSON webhooks. Targets were checked against
//! the allowlist when the config was loaded.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::error::AlertError;
use crate::time_serde::text;

/// One alert as receivers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    /// Set when the alert resolved.
    pub ends_at: Option<DateTime<Utc>>,
    pub generator_url: Option<String>,
}

impl Notice {
    pub fn alertmanager_json(&self) -> Value {
        let mut alert = json!({
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": text(&self.starts_at),
        });
        if let Some(ends_at) = &self.ends_at {
            alert["endsAt"] = Value::String(text(ends_at));
        }
        if let Some(url) = &self.generator_url {
            alert["generatorURL"] = Value::String(url.clone());
        }
        alert
    }
}

pub struct Notifier {
    client: reqwest::Client,
    alertmanager: Option<String>,
    webhooks: Vec<String>,
}

impl Notifier {
    pub fn new(
        alertmanager: Option<String>,
        webhooks: Vec<String>,
    ) -> Result<Notifier, AlertError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            // Targets were vetted by address; a redirect could lead elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AlertError::Notify {
                target: "client".into(),
                reason: e.to_string(),
            })?;
        Ok(Notifier {
            client,
            alertmanager: alertmanager.map(|url| url.trim_end_matches('/').to_owned()),
            webhooks,
        })
    }

    pub fn has_targets(&self) -> bool {
        self.alertmanager.is_some() || !self.webhooks.is_empty()
    }

    /// Sends `notices` to every target; returns the errors (one per target).
    pub async fn send(&self, notices: &[Notice]) -> Vec<AlertError> {
        if notices.is_empty() {
            return Vec::new();
        }
        let mut errors = Vec::new();
        if let Some(base) = &self.alertmanager {
            let body: Vec<Value> = notices.iter().map(Notice::alertmanager_json).collect();
            if let Err(e) = self
                .post(&format!("{base}/api/v2/alerts"), &Value::Array(body))
                .await
            {
                errors.push(e);
            }
        }
        for webhook in &self.webhooks {
            let alerts: Vec<Value> = notices
                .iter()
                .map(|n| {
                    let mut alert = n.alertmanager_json();
                    alert["status"] = Value::String(
                        if n.ends_at.is_some() {
                            "resolved"
                        } else {
                            "firing"
                        }
                        .into(),
                    );
                    alert
                })
                .collect();
            if let Err(e) = self
                .post(webhook, &json!({"source": "gatemeter", "alerts": alerts}))
                .await
            {
                errors.push(e);
            }
        }
        errors
    }

    async fn post(&self, url: &str, body: &Value) -> Result<(), AlertError> {
        let failed = |reason: String| AlertError::Notify {
            target: url.to_owned(),
            reason,
        };
        let response = self
            .client
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(failed(format!("HTTP {}", response.status())))
        }
    }
}
