//! The one write `serve` makes to a Redis key store: a legacy key's record with its
//! SHA-256 replaced by the argon2id hash (see `api_key::legacy`), through the store's
//! script — refused if the record changed since it was read, published to every replica.

use std::future::Future;

use serde_json::{Map, Value};

use super::LiveKeys;

impl LiveKeys {
    /// True when written; false when the record no longer holds `sha_hex` (gone, edited,
    /// or re-hashed by another replica first): nothing left to replace.
    pub async fn write_rehashed(
        &self,
        id: &str,
        sha_hex: &str,
        hash: &str,
        tag: &str,
    ) -> Result<bool, String> {
        let mut connection = self.within(self.target.connect()).await?;
        let read: Option<String> = self
            .within(
                redis::cmd("HGET")
                    .arg(&self.layout.records)
                    .arg(id)
                    .query_async(&mut connection),
            )
            .await?;
        let Some(read) = read else { return Ok(false) };
        let mut record: Map<String, Value> =
            serde_json::from_str(&read).map_err(|e| e.to_string())?;
        if record.get("legacy_sha256").and_then(Value::as_str) != Some(sha_hex) {
            return Ok(false);
        }
        record.remove("legacy_sha256");
        record.insert("hash".to_owned(), Value::from(hash));
        record.insert("legacy_tag".to_owned(), Value::from(tag));
        let written = Value::Object(record).to_string();
        self.within(self.layout.load_write_async(&mut connection))
            .await?;
        let write = self.layout.write(id, Some(&written), Some(&read));
        match self.within(write.query_async::<u64>(&mut connection)).await {
            Ok(_) => Ok(true),
            // Changed between the read and the write: whoever changed it decided.
            Err(error) if error.contains("CHANGED") => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// `call` within the store's `timeout`.
    async fn within<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("Redis did not answer within the store's timeout".to_owned()),
        }
    }
}
