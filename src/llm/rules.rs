//! The keys' rules for LLM operations — `models` and `max_tokens` from each record — and
//! how the bound admission grants is written (`policy.max_tokens_fields`,
//! `policy.stream_usage`).

use std::collections::HashMap;

use crate::auth::keystore::KeyRecord;
use crate::config::{BoundField, BoundFields, PolicyConfig};

/// A key's rules for LLM operations, from its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRules {
    pub models: Option<Vec<String>>,
    pub max_tokens: Option<u64>,
}

impl KeyRules {
    pub fn of(record: &KeyRecord) -> Option<KeyRules> {
        (record.models.is_some() || record.max_tokens.is_some()).then(|| KeyRules {
            models: record.models.clone(),
            max_tokens: record.max_tokens,
        })
    }

    /// Whether the key may name `model`: any, without a `models` allowlist; with one, only
    /// what it lists (naming none is not allowed).
    pub fn allows_model(&self, model: Option<&str>) -> bool {
        let Some(models) = &self.models else {
            return true;
        };
        model.is_some_and(|model| models.iter().any(|listed| listed == model))
    }
}

/// Every key's rules, by key id, and how the admitted bound is written.
#[derive(Debug)]
pub struct Rules {
    pub(super) keys: HashMap<String, KeyRules>,
    /// `policy.max_tokens_fields`.
    pub(super) fields: Vec<BoundField>,
    /// `policy.stream_usage`.
    pub(super) stream_usage: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            keys: HashMap::new(),
            fields: BoundFields::default().0,
            stream_usage: false,
        }
    }
}

impl Rules {
    /// Whether the key `key_id` may name `model` (see [`KeyRules::allows_model`]); a key
    /// without rules, or no key, may name any.
    pub fn allows_model(&self, key_id: Option<&str>, model: Option<&str>) -> bool {
        let rules = key_id.and_then(|id| self.keys.get(id));
        rules.is_none_or(|rules| rules.allows_model(model))
    }

    pub fn new(keys: Vec<(String, KeyRules)>, policy: &PolicyConfig) -> Result<Rules, Vec<String>> {
        let problems: Vec<String> = keys
            .iter()
            .filter(|(_, rules)| rules.max_tokens == Some(0))
            .map(|(id, _)| format!("key `{id}`: max_tokens must be at least 1"))
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Rules {
            keys: keys.into_iter().collect(),
            fields: policy.max_tokens_fields.0.clone(),
            stream_usage: policy.asks_stream_usage(),
        })
    }
}
