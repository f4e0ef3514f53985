//! The one write `serve` makes to a Redis key store: a legacy key's record with its
//! SHA-256 replaced by the argon2id hash (see `api_key::legacy`), through the store's
//! script — refused if the record changed since it was read, published to every replica.

use serde_json::{Map, Value};
use tokio::time::timeout;

use super::LiveKeys;

impl LiveKeys {
    pub async fn write_rehashed(
        &self,
        id: &str,
        sha_hex: &str,
        hash: &str,
        tag: &str,
    ) -> Result<bool, String> {
        let wait = self.config.timeout;
        let mut connection = timeout(wait, self.target.connect())
            .await
            .map_err(|_| "Redis timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let read: Option<String> = redis::cmd("HGET")
            .arg(&self.layout.records)
            .arg(id)
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        // Gone, or no longer this SHA-256 (re-hashed by another replica, edited): nothing
        // left to replace.
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
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.layout.write_script())
            .query_async::<String>(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        self.layout
            .write(id, Some(&written), Some(&read))
            .query_async::<u64>(&mut connection)
            .await
            .map(|_| true)
            .map_err(|e| e.to_string())
    }
}
