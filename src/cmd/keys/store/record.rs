//! The record `moat keys new` writes: its fields from the command line, each checked as
//! the loader will check it.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

/// What `moat keys new` writes into a record besides its id and hash.
#[derive(Debug, Default)]
pub struct NewKey<'a> {
    pub scopes: &'a [String],
    pub owner: Option<&'a str>,
    /// RFC 3339.
    pub expires: Option<&'a str>,
    /// RFC 3339.
    pub not_before: Option<&'a str>,
    /// operationIds or `METHOD /template`.
    pub operations: &'a [String],
    /// CIDRs (or addresses) the client must come from.
    pub allowed_cidrs: &'a [String],
    /// `PER_SECOND/BURST` or `PER_SECOND`.
    pub rate_limit: Option<&'a str>,
    /// `REQUESTS/PERIOD`.
    pub quota: Option<&'a str>,
    /// LLM operations: the models the key may name.
    pub models: &'a [String],
    pub max_tokens: Option<u64>,
    pub max_concurrent_streams: Option<u32>,
    /// `TOKENS/PERIOD`.
    pub token_budget: Option<&'a str>,
    pub tokens_per_minute: Option<u64>,
}

impl NewKey<'_> {
    /// The record's fields, each checked as the loader will check it.
    pub(super) fn fields(&self) -> Result<Map<String, Value>, String> {
        let mut record = Map::new();
        record.insert("scopes".to_owned(), Value::from(self.scopes.to_vec()));
        if let Some(owner) = self.owner {
            record.insert("owner".to_owned(), Value::from(owner));
        }
        self.insert_times(&mut record)?;
        self.insert_reach(&mut record)?;
        self.insert_limits(&mut record)?;
        self.insert_llm(&mut record)?;
        Ok(record)
    }

    /// When the key starts and stops being valid.
    fn insert_times(&self, record: &mut Map<String, Value>) -> Result<(), String> {
        for (field, time) in [
            ("expires_at", self.expires),
            ("not_before", self.not_before),
        ] {
            if let Some(time) = time {
                check_rfc3339(time)?;
                record.insert(field.to_owned(), Value::from(time));
            }
        }
        Ok(())
    }

    /// What the key may call, and from where.
    fn insert_reach(&self, record: &mut Map<String, Value>) -> Result<(), String> {
        if !self.operations.is_empty() {
            record.insert(
                "operations".to_owned(),
                Value::from(self.operations.to_vec()),
            );
        }
        if !self.allowed_cidrs.is_empty() {
            let cidrs = self
                .allowed_cidrs
                .iter()
                .map(|cidr| cidr_value(cidr))
                .collect::<Result<Vec<_>, _>>()?;
            record.insert("allowed_cidrs".to_owned(), Value::Array(cidrs));
        }
        Ok(())
    }

    /// How fast and how much the key may call.
    fn insert_limits(&self, record: &mut Map<String, Value>) -> Result<(), String> {
        if let Some(limit) = self.rate_limit {
            record.insert("rate_limit".to_owned(), rate_limit(limit)?);
        }
        if let Some(quota) = self.quota {
            record.insert(
                "quota".to_owned(),
                per_period(quota, "--quota", "requests")?,
            );
        }
        Ok(())
    }

    /// The rules on LLM operations.
    fn insert_llm(&self, record: &mut Map<String, Value>) -> Result<(), String> {
        if !self.models.is_empty() {
            record.insert("models".to_owned(), Value::from(self.models.to_vec()));
        }
        self.insert_counts(record)?;
        if let Some(budget) = self.token_budget {
            record.insert(
                "token_budget".to_owned(),
                per_period(budget, "--token-budget", "tokens")?,
            );
        }
        Ok(())
    }

    /// The LLM limits given as counts, each at least 1.
    fn insert_counts(&self, record: &mut Map<String, Value>) -> Result<(), String> {
        for (field, value) in [
            ("max_tokens", self.max_tokens),
            (
                "max_concurrent_streams",
                self.max_concurrent_streams.map(u64::from),
            ),
            ("tokens_per_minute", self.tokens_per_minute),
        ] {
            if let Some(n) = value {
                record.insert(field.to_owned(), at_least_one(field, n)?);
            }
        }
        Ok(())
    }
}

/// Refuses what is not an RFC 3339 time, as the loader would.
pub(super) fn check_rfc3339(time: &str) -> Result<(), String> {
    humantime::parse_rfc3339_weak(time)
        .map(drop)
        .map_err(|_| format!("`{time}` is not an RFC 3339 time like 2027-06-01T00:00:00Z"))
}

/// A CIDR, or an address as its one-address network.
fn cidr_value(cidr: &str) -> Result<Value, String> {
    cidr.parse::<IpNet>()
        .or_else(|_| cidr.parse::<IpAddr>().map(IpNet::from))
        .map(|net| Value::from(net.to_string()))
        .map_err(|_| format!("`{cidr}` is not a CIDR like 10.0.0.0/8 or an address"))
}

/// A count given by `--FIELD`, which only makes sense from 1 up.
fn at_least_one(field: &str, n: u64) -> Result<Value, String> {
    if n == 0 {
        let flag = field.replace('_', "-");
        return Err(format!("`--{flag}` must be at least 1"));
    }
    Ok(Value::from(n))
}

/// `50/100` → `{per_second: 50, burst: 100}`; `50` → burst 50.
fn rate_limit(text: &str) -> Result<Value, String> {
    let (rate, burst) = text.split_once('/').unwrap_or((text, text));
    let number = |n: &str| n.trim().parse::<u32>().ok().filter(|n| *n > 0);
    match (number(rate), number(burst)) {
        (Some(per_second), Some(burst)) => {
            Ok(serde_json::json!({"per_second": per_second, "burst": burst}))
        }
        _ => Err(format!(
            "`--rate-limit {text}`: write PER_SECOND/BURST (e.g. 50/100), both at least 1"
        )),
    }
}

/// `10000/day` → `{requests: 10000, per: day}` (`what` = `requests`; `tokens` for
/// `--token-budget`).
fn per_period(text: &str, flag: &str, what: &str) -> Result<Value, String> {
    let parsed = text.split_once('/').and_then(|(count, per)| {
        let count = count.trim().parse::<u64>().ok().filter(|n| *n > 0)?;
        let per = per.trim();
        ["minute", "hour", "day", "month"]
            .contains(&per)
            .then_some((count, per))
    });
    match parsed {
        Some((count, per)) => Ok(serde_json::json!({what: count, "per": per})),
        None => Err(format!(
            "`{flag} {text}`: write {}/PERIOD (e.g. 10000/day), PERIOD one of minute, hour, day, month",
            what.to_uppercase()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_are_written_per_second_slash_burst() {
        assert_eq!(
            rate_limit("50/100").unwrap(),
            serde_json::json!({"per_second": 50, "burst": 100})
        );
        assert_eq!(
            rate_limit("5").unwrap(),
            serde_json::json!({"per_second": 5, "burst": 5})
        );
        for bad in ["0/1", "x", "5/", "-1/2"] {
            assert!(rate_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_key_fields_are_checked_as_the_loader_checks_them() {
        let key = NewKey {
            allowed_cidrs: &["10.0.0.0/8".into(), "::1".into()],
            ..NewKey::default()
        };
        assert_eq!(
            key.fields().unwrap()["allowed_cidrs"],
            serde_json::json!(["10.0.0.0/8", "::1/128"])
        );
        let bad = NewKey {
            allowed_cidrs: &["10.0.0.0/33".into()],
            ..NewKey::default()
        };
        assert!(bad.fields().is_err());
        let bad_time = NewKey {
            not_before: Some("tomorrow"),
            ..NewKey::default()
        };
        assert!(bad_time.fields().is_err());
    }
}
