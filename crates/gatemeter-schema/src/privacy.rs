//! What of an event may reach disk (docs/privacy.md). Runs on every decoded
//! event before it is buffered, so the lake, its Parquet statistics, the
//! metrics and every answer only ever see the result:
//!
//! - Anything in any string field that looks like a provider secret
//!   (`sk-…`, `sk-or-…`, `sk-ant-…`, `AIza…`, a bearer token, a JWT) or an
//!   e-mail address replaces the whole value with a keyed hash.
//! - `user_id` is keyed-hashed by default (or kept, or dropped).
//! - `tags` keep their values by default (still scrubbed as above), or
//!   every value is keyed-hashed, or the tags are dropped.
//!
//! A keyed hash is `h:` and the first 16 bytes of HMAC-SHA256 under the
//! deployment's key, in hex: the same input gives the same value (so
//! grouping by user still works, and an attempt id still deduplicates) but
//! without the key nobody can test a guess.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::event::AttemptEvent;

/// The prefix every keyed hash carries, so a reader can tell one.
pub const KEYED_HASH_PREFIX: &str = "h:";

/// What to do with a field that may hold personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldHandling {
    Keep,
    #[default]
    KeyedHash,
    Drop,
}

impl FieldHandling {
    pub const ALLOWED: &'static str = "keep, keyed-hash, drop";

    pub fn parse(text: &str) -> Option<FieldHandling> {
        match text {
            "keep" => Some(FieldHandling::Keep),
            "keyed-hash" => Some(FieldHandling::KeyedHash),
            "drop" => Some(FieldHandling::Drop),
            _ => None,
        }
    }
}

/// Why a value was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Finding {
    Secret,
    Email,
}

impl Finding {
    pub fn as_str(self) -> &'static str {
        match self {
            Finding::Secret => "secret",
            Finding::Email => "email",
        }
    }
}

/// One value replaced because it looked like a secret or an e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redaction {
    pub field: &'static str,
    pub finding: Finding,
}

#[derive(Clone)]
pub struct PrivacyPolicy {
    key: Vec<u8>,
    pub user_id: FieldHandling,
    pub tags: FieldHandling,
}

impl std::fmt::Debug for PrivacyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("PrivacyPolicy")
            .field("user_id", &self.user_id)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl PrivacyPolicy {
    /// `key`: the deployment's secret (at least 16 bytes is sensible; any
    /// length works for HMAC).
    pub fn new(key: Vec<u8>, user_id: FieldHandling, tags: FieldHandling) -> PrivacyPolicy {
        PrivacyPolicy { key, user_id, tags }
    }

    /// `h:` and 32 hex digits of HMAC-SHA256(key, value).
    pub fn keyed_hash(&self, value: &str) -> String {
        // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
        let digest = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mut mac) => {
                mac.update(value.as_bytes());
                mac.finalize().into_bytes()
            }
            Err(_) => return format!("{KEYED_HASH_PREFIX}unkeyed"),
        };
        format!("{KEYED_HASH_PREFIX}{}", hex::encode(&digest[..16]))
    }

    /// Applies the policy to `event` in place; returns what it replaced
    /// because it looked like a secret or an e-mail.
    pub fn apply(&self, event: &mut AttemptEvent) -> Vec<Redaction> {
        let mut found = Vec::new();
        let mut scrub = |field: &'static str, value: &mut String| {
            if let Some(finding) = sensitive(value) {
                *value = self.keyed_hash(value);
                found.push(Redaction { field, finding });
            }
        };
        scrub("attempt_id", &mut event.attempt_id);
        scrub("request_id", &mut event.request_id);
        scrub("operation", &mut event.operation);
        scrub("requested_model", &mut event.requested_model);
        scrub("provider", &mut event.provider);
        scrub("team", &mut event.team);
        scrub("api_key_id", &mut event.api_key_id);
        scrub("environment", &mut event.environment);
        for (field, value) in [
            ("served_model", &mut event.served_model),
            ("region", &mut event.region),
            ("org_id", &mut event.org_id),
            ("app", &mut event.app),
            ("finish_reason", &mut event.finish_reason),
        ] {
            if let Some(value) = value.as_mut() {
                scrub(field, value);
            }
        }
        event.user_id = match (self.user_id, event.user_id.take()) {
            (_, None) | (FieldHandling::Drop, _) => None,
            (FieldHandling::KeyedHash, Some(user)) => Some(self.keyed_hash(&user)),
            (FieldHandling::Keep, Some(mut user)) => {
                scrub("user_id", &mut user);
                Some(user)
            }
        };
        event.tags = match (self.tags, event.tags.take()) {
            (_, None) | (FieldHandling::Drop, _) => None,
            (handling, Some(tags)) => Some(self.tags_text(&tags, handling, &mut found)),
        };
        found
    }

    /// The tags object (JSON text of string values, as the decoder keeps
    /// it) with every key and value scrubbed, and with `KeyedHash` every
    /// value hashed.
    fn tags_text(&self, tags: &str, handling: FieldHandling, found: &mut Vec<Redaction>) -> String {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(tags)
        else {
            // The decoder only stores objects; anything else is hashed whole.
            return self.keyed_hash(tags);
        };
        let mut cleaned = serde_json::Map::with_capacity(map.len());
        for (key, value) in map {
            let key = match sensitive(&key) {
                Some(finding) => {
                    found.push(Redaction {
                        field: "tags",
                        finding,
                    });
                    self.keyed_hash(&key)
                }
                None => key,
            };
            let text = value.as_str().unwrap_or_default();
            let text = match (sensitive(text), handling) {
                (Some(finding), _) => {
                    found.push(Redaction {
                        field: "tags",
                        finding,
                    });
                    self.keyed_hash(text)
                }
                (None, FieldHandling::KeyedHash) => self.keyed_hash(text),
                (None, _) => text.to_owned(),
            };
            cleaned.insert(key, serde_json::Value::String(text));
        }
        serde_json::Value::Object(cleaned).to_string()
    }
}

/// Characters a token is made of.
fn token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'+' | b'/' | b'=')
}

/// How many token characters start at `from`.
fn token_run(bytes: &[u8], from: usize) -> usize {
    bytes[from.min(bytes.len())..]
        .iter()
        .take_while(|&&c| token_char(c))
        .count()
}

/// Whether `value` holds something that must not be stored as it is.
pub fn sensitive(value: &str) -> Option<Finding> {
    if looks_like_secret(value) {
        Some(Finding::Secret)
    } else if looks_like_email(value) {
        Some(Finding::Email)
    } else {
        None
    }
}

/// Provider keys and bearer tokens: a known prefix at a word start followed
/// by a long run of token characters (short runs such as `risk-engine` or
/// `sk-test` are ordinary names).
fn looks_like_secret(value: &str) -> bool {
    const PREFIXES: &[(&str, usize)] = &[
        // OpenAI (`sk-`, `sk-proj-`), OpenRouter (`sk-or-`), Anthropic (`sk-ant-`).
        ("sk-", 16),
        // Google API keys: `AIza` and 35 more characters.
        ("AIza", 30),
        // JSON Web Tokens start with a base64 `{"`.
        ("eyJ", 20),
    ];
    let bytes = value.as_bytes();
    for start in 0..bytes.len() {
        let at_word_start = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
        if !at_word_start {
            continue;
        }
        let rest = &value[start..];
        for (prefix, min_run) in PREFIXES {
            if rest.starts_with(prefix) && token_run(bytes, start + prefix.len()) >= *min_run {
                return true;
            }
        }
        // `Bearer <token>`, in any case.
        if rest.len() > 7 && rest[..6].eq_ignore_ascii_case("bearer") {
            let after = &bytes[start + 6..];
            let spaces = after.iter().take_while(|c| c.is_ascii_whitespace()).count();
            if spaces > 0 && token_run(bytes, start + 6 + spaces) >= 16 {
                return true;
            }
        }
    }
    false
}

/// `local@domain.tld` anywhere in the value.
fn looks_like_email(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.iter().enumerate().any(|(at, &c)| {
        if c != b'@' || at == 0 {
            return false;
        }
        let local_ok = bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_';
        let domain: Vec<u8> = bytes[at + 1..]
            .iter()
            .copied()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.'))
            .collect();
        let labels: Vec<&[u8]> = domain.split(|&c| c == b'.').collect();
        local_ok
            && labels.len() >= 2
            && labels.iter().all(|label| !label.is_empty())
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PrivacyPolicy {
        PrivacyPolicy::new(
            b"test key".to_vec(),
            FieldHandling::KeyedHash,
            FieldHandling::Keep,
        )
    }

    #[test]
    fn secrets_and_emails_are_found_ordinary_names_are_not() {
        for secret in [
            "sk-proj-AbCdEf0123456789AbCdEf",
            "sk-or-v1-0123456789abcdef0123456789abcdef",
            "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA",
            "AIzaSyA-0123456789abcdefghijklmnopqrstu",
            "Bearer abcdefghijklmnop0123",
            "authorization: bearer abcdefghijklmnop0123",
            "key=sk-0123456789abcdef0123",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        ] {
            assert_eq!(sensitive(secret), Some(Finding::Secret), "{secret}");
        }
        for email in ["ada@example.com", "user id: a.b+c@mail.example.org"] {
            assert_eq!(sensitive(email), Some(Finding::Email), "{email}");
        }
        for ordinary in [
            "risk-engine",
            "task-0123456789abcdef0123",
            "sk-test",
            "gpt-4o-mini",
            "anthropic",
            "team-search",
            "key_7f3a",
            "bearer",
            "not@an-email",
            "us-east-1",
        ] {
            assert_eq!(sensitive(ordinary), None, "{ordinary}");
        }
    }

    #[test]
    fn keyed_hashes_are_stable_per_key_and_hide_the_input() {
        let a = policy();
        let b = PrivacyPolicy::new(
            b"other key".to_vec(),
            FieldHandling::Keep,
            FieldHandling::Keep,
        );
        let hash = a.keyed_hash("ada@example.com");
        assert_eq!(hash, a.keyed_hash("ada@example.com"));
        assert_ne!(hash, b.keyed_hash("ada@example.com"));
        assert!(
            hash.starts_with(KEYED_HASH_PREFIX) && hash.len() == 2 + 32,
            "{hash}"
        );
        assert!(!hash.contains("ada"));
    }

    #[test]
    fn applying_the_policy_replaces_every_secret_and_the_user() {
        let secret = "sk-or-v1-0123456789abcdef0123456789abcdef";
        let json = serde_json::json!({
            "schema_version": 1,
            "attempt_id": "att-1",
            "request_id": format!("req {secret}"),
            "attempt_index": 0,
            "attempt_kind": "initial",
            "is_final": true,
            "request_start": "2026-11-01T10:00:00Z",
            "attempt_start": "2026-11-01T10:00:00.010Z",
            "attempt_end": "2026-11-01T10:00:01Z",
            "requested_model": "gpt-4o",
            "provider": "openai",
            "team": "ada@example.com",
            "api_key_id": secret,
            "environment": "prod",
            "outcome": "success",
            "user_id": "user-42",
            "tags": {"feature": "search", "auth": format!("Bearer {secret}")}
        });
        let mut event = crate::decode_event(json.to_string().as_bytes()).expect("valid");
        let policy = policy();
        let found = policy.apply(&mut event);
        let text = format!("{event:?}");
        assert!(!text.contains(secret) && !text.contains("ada@"), "{text}");
        assert_eq!(event.api_key_id, policy.keyed_hash(secret));
        assert_eq!(event.user_id, Some(policy.keyed_hash("user-42")));
        assert_eq!(event.attempt_id, "att-1");
        assert_eq!(event.requested_model, "gpt-4o");
        let tags: serde_json::Value =
            serde_json::from_str(event.tags.as_deref().expect("tags kept")).expect("json");
        assert_eq!(tags["feature"], "search");
        let mut fields: Vec<_> = found.iter().map(|r| (r.field, r.finding)).collect();
        fields.sort();
        assert_eq!(
            fields,
            vec![
                ("api_key_id", Finding::Secret),
                ("request_id", Finding::Secret),
                ("tags", Finding::Secret),
                ("team", Finding::Email),
            ]
        );
        let dropping = PrivacyPolicy::new(b"k".to_vec(), FieldHandling::Drop, FieldHandling::Drop);
        let mut event = crate::decode_event(json.to_string().as_bytes()).expect("valid");
        dropping.apply(&mut event);
        assert_eq!((event.user_id, event.tags), (None, None));
    }

    #[test]
    fn field_handling_parses_its_three_names() {
        assert_eq!(FieldHandling::parse("keep"), Some(FieldHandling::Keep));
        assert_eq!(
            FieldHandling::parse("keyed-hash"),
            Some(FieldHandling::KeyedHash)
        );
        assert_eq!(FieldHandling::parse("drop"), Some(FieldHandling::Drop));
        assert_eq!(FieldHandling::parse("hash"), None);
    }
}
