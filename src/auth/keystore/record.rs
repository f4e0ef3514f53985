//! One key's record as the store holds it: its scopes, limits and restrictions, and whether
//! it admits a request now.

use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;
use serde::Deserialize;

use super::valid_id;
use crate::auth::Scopes;
use crate::config::{Quota, RateLimit, TokenBudget};
use crate::ids::Name;

/// One key's record. The hash is never logged or printed in full.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub id: Name,
    /// The argon2id PHC hash; empty for a record imported with only `legacy_sha256`.
    #[serde(default)]
    pub hash: String,
    /// Another gateway's SHA-256 of the whole key (64 hex digits), for keys that are not
    /// moat-shaped (`moat keys import --from litellm|unkey|agentgateway`): verified once by
    /// it, then re-hashed to argon2id and written back (see `api_key::legacy`).
    #[serde(default)]
    pub legacy_sha256: Option<String>,
    /// The first 8 hex digits of the SHA-256 of a re-hashed legacy key: how a key without
    /// moat's `moat_<id>_` finds its record (see `api_key::legacy`).
    #[serde(default)]
    pub legacy_tag: Option<String>,
    #[serde(default)]
    pub scopes: Scopes,
    #[serde(default)]
    pub owner: Option<Name>,
    #[serde(default, deserialize_with = "timestamp")]
    pub expires_at: Option<SystemTime>,
    #[serde(default, deserialize_with = "timestamp")]
    pub not_before: Option<SystemTime>,
    #[serde(default)]
    pub allowed_cidrs: Option<Vec<IpNet>>,
    /// Allowlist of operationIds (or `METHOD /template`).
    #[serde(default)]
    pub operations: Option<Vec<String>>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Requests per calendar window (UTC); counted in the limit store.
    #[serde(default)]
    pub quota: Option<Quota>,
    /// LLM operations only (see `llm`): the models the key may name.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// LLM operations only: the most `max_tokens` a request may ask for, and what a request
    /// that asks for none reserves.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// LLM operations only: streamed requests in flight at once, per moat process.
    #[serde(default)]
    pub max_concurrent_streams: Option<u32>,
    /// LLM operations only: prompt and completion tokens per calendar window.
    #[serde(default)]
    pub token_budget: Option<TokenBudget>,
    /// LLM operations only: the same per UTC minute.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub disabled: bool,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Why a key record does not admit a request now (for the log; the client sees one 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restriction {
    Disabled,
    Expired,
    NotYetValid,
    Address,
}

impl KeyRecord {
    /// Checks the record's time, state and address restrictions.
    pub fn admits(&self, client: IpAddr, now: SystemTime) -> Result<(), Restriction> {
        if self.disabled {
            return Err(Restriction::Disabled);
        }
        if self.expires_at.is_some_and(|at| now >= at) {
            return Err(Restriction::Expired);
        }
        if self.not_before.is_some_and(|at| now < at) {
            return Err(Restriction::NotYetValid);
        }
        if let Some(cidrs) = &self.allowed_cidrs
            && !cidrs.iter().any(|net| net.contains(&client))
        {
            return Err(Restriction::Address);
        }
        Ok(())
    }

    /// The record's state regardless of client address, for `moat keys list`.
    pub fn admits_any_address(&self, now: SystemTime) -> Result<(), &'static str> {
        if self.disabled {
            Err("disabled")
        } else if self.expires_at.is_some_and(|at| now >= at) {
            Err("expired")
        } else if self.not_before.is_some_and(|at| now < at) {
            Err("pending")
        } else {
            Ok(())
        }
    }

    /// What is wrong with the record on its own: the shape of its id, the format of its hash.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if !valid_id(&self.id) {
            problems.push(format!(
                "key id `{}` must be 1–63 of [a-z0-9-], starting with a letter or digit",
                self.id
            ));
        }
        if let Some(problem) = self.legacy_problem() {
            problems.push(format!("key `{}`: {problem}", self.id));
            return;
        }
        if self.legacy_sha256.is_some() {
            return;
        }
        if !self.hash.starts_with("$argon2id$")
            || argon2::password_hash::phc::PasswordHash::new(&self.hash).is_err()
        {
            problems.push(format!(
                "key `{}`: `hash` must be an argon2id PHC string (make one with `moat keys hash`)",
                self.id
            ));
        }
    }
}

impl KeyRecord {
    /// What is wrong with the record's legacy fields, if anything.
    fn legacy_problem(&self) -> Option<&'static str> {
        let hex = |text: &str, digits: usize| {
            text.len() == digits
                && text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        match (&self.legacy_sha256, &self.legacy_tag) {
            (Some(_), _) if !self.hash.is_empty() => {
                Some("has both `hash` and `legacy_sha256`: keep one")
            }
            (Some(_), Some(_)) => Some("has both `legacy_sha256` and `legacy_tag`: keep one"),
            (Some(sha), None) if !hex(sha, 64) => {
                Some("`legacy_sha256` must be 64 lower-case hex digits")
            }
            (None, Some(tag)) if !hex(tag, 8) => {
                Some("`legacy_tag` must be 8 lower-case hex digits")
            }
            _ => None,
        }
    }

    /// A limit of zero, which admits nothing: the snapshot refuses such a store whole; a
    /// Redis store leaves that one record out instead (see `keystore::redis::record`).
    pub fn zero_limit(&self) -> Option<&'static str> {
        let rate = self
            .rate_limit
            .is_some_and(|r| r.per_second == 0 || r.burst == 0);
        let quota = self.quota.is_some_and(|q| q.requests == 0);
        let budget = self.token_budget.is_some_and(|b| b.tokens == 0);
        let zeros = [
            (rate, "rate_limit"),
            (quota, "quota"),
            (budget, "token_budget"),
            (self.tokens_per_minute == Some(0), "tokens_per_minute"),
            (
                self.max_concurrent_streams == Some(0),
                "max_concurrent_streams",
            ),
            (self.max_tokens == Some(0), "max_tokens"),
        ];
        zeros
            .into_iter()
            .find(|(zero, _)| *zero)
            .map(|(_, field)| field)
    }

    /// The tag a key without moat's shape finds this record by: the first 32 bits of its
    /// SHA-256, known from a legacy hash or kept beside the argon2id one.
    pub fn legacy_tag(&self) -> Option<u32> {
        let hex = self
            .legacy_sha256
            .as_deref()
            .or(self.legacy_tag.as_deref())?;
        u32::from_str_radix(hex.get(..8)?, 16).ok()
    }
}

fn timestamp<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SystemTime>, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_rfc3339_weak(&text).map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not an RFC 3339 time like 2027-06-01T00:00:00Z"
        ))
    })
}
