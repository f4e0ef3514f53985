//! A key store kept in Redis, as `serve` reads it and `moat keys` writes it. One Redis hash
//! holds the records (field: the key id; value: the record as JSON, the same fields a file
//! record has), a counter its version; every write goes through one script that changes
//! the record, increments the version and publishes `<version> <id> <redis ms>` on the
//! store's channel — so a replica that saw version N and is sent N+1 knows it missed
//! nothing, and one that is sent N+2 knows it did.
//!
//! The two keys share a hash tag (the prefix in braces), so one script touches one slot of
//! a Redis Cluster.

use std::collections::HashMap;
use std::sync::Arc;

use super::KeyRecord;

/// The store's Redis names under one `key_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub records: String,
    pub version: String,
    pub channel: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Layout {
        Layout {
            records: format!("{{{prefix}}}records"),
            version: format!("{{{prefix}}}version"),
            channel: format!("{prefix}changes"),
        }
    }

    /// Reads the version and every record at once (a script: no write lands between, and
    /// unlike `MULTI` it runs on a cluster's node too).
    pub fn read_all(&self) -> redis::ScriptInvocation<'static> {
        let script: &'static redis::Script = &READ_ALL;
        let mut invocation = script.prepare_invoke();
        invocation.key(&self.records).key(&self.version);
        invocation
    }

    /// The version and one record at once.
    pub fn read_one(&self, id: &str) -> redis::ScriptInvocation<'static> {
        let script: &'static redis::Script = &READ_ONE;
        let mut invocation = script.prepare_invoke();
        invocation.key(&self.records).key(&self.version).arg(id);
        invocation
    }

    /// The write of one record (`record`: its JSON, or `None` to delete it), refused with
    /// `CHANGED` unless the stored record is still `expected` (`None`: absent); it returns
    /// the version it made. By hash (`EVALSHA`), so writes pipeline: [`Layout::load_write`]
    /// first.
    pub fn write(&self, id: &str, record: Option<&str>, expected: Option<&str>) -> redis::Cmd {
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(WRITE.get_hash())
            .arg(2)
            .arg(&self.records)
            .arg(&self.version)
            .arg(id)
            .arg(record.unwrap_or(""))
            .arg(expected.unwrap_or(""))
            .arg(&self.channel);
        command
    }

    /// Loads the write script, which [`Layout::write`] names by its hash.
    pub fn load_write(&self, connection: &mut dyn redis::ConnectionLike) -> redis::RedisResult<()> {
        WRITE.load(connection).map(drop)
    }

    /// [`Layout::load_write`] on an async connection.
    pub async fn load_write_async(
        &self,
        connection: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<()> {
        WRITE.load_async(connection).await.map(drop)
    }
}

const WRITE_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[3] then
  return redis.error_reply('CHANGED the record changed since it was read; run the command again')
end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local version = redis.call('INCR', KEYS[2])
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('PUBLISH', ARGV[4], version .. ' ' .. ARGV[1] .. ' ' .. ms)
return version
";

static READ_ALL: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new("return {redis.call('GET', KEYS[2]), redis.call('HGETALL', KEYS[1])}")
});

static READ_ONE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new("return {redis.call('GET', KEYS[2]), redis.call('HGET', KEYS[1], ARGV[1])}")
});

static WRITE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(WRITE_SCRIPT));

/// One change as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub version: u64,
    pub id: String,
    /// Redis's clock when the change was written (Unix ms).
    pub at_ms: u64,
}

impl Change {
    pub fn parse(payload: &str) -> Option<Change> {
        let mut parts = payload.split(' ');
        let version = parts.next()?.parse().ok()?;
        let id = parts.next()?.to_owned();
        let at_ms = parts.next()?.parse().ok()?;
        parts
            .next()
            .is_none()
            .then_some(Change { version, id, at_ms })
    }
}

/// One stored record, checked as a file's record is (its id the field's, an argon2id hash).
pub fn record(id: &str, json: &str) -> Result<KeyRecord, String> {
    let record: KeyRecord =
        serde_json::from_str(json).map_err(|e| format!("key `{id}` in Redis: {e}"))?;
    let mut problems = Vec::new();
    if *record.id != *id {
        problems.push(format!(
            "key `{id}` in Redis: its record says id `{}`",
            record.id
        ));
    }
    record.check(&mut problems);
    if let Some(field) = record.zero_limit() {
        problems.push(format!(
            "key `{id}` in Redis: `{field}` of 0 admits nothing"
        ));
    }
    if problems.is_empty() {
        Ok(record)
    } else {
        Err(problems.join("; "))
    }
}

/// Every stored record that reads, the bytes they took, and a problem for each that does
/// not — left out, so that key is refused while the others serve.
/// Owned fields or borrowed (`moat keys` keeps the JSON it read, to write against).
pub fn records<I: Into<String> + AsRef<str>, J: AsRef<str>>(
    fields: impl IntoIterator<Item = (I, J)>,
) -> (HashMap<String, Arc<KeyRecord>>, usize, Vec<String>) {
    let mut by_id = HashMap::new();
    let mut bytes = 0;
    let mut problems = Vec::new();
    for (id, json) in fields {
        let (id_text, json) = (id.as_ref(), json.as_ref());
        bytes += id_text.len() + json.len();
        match record(id_text, json) {
            Ok(record) => {
                by_id.insert(id.into(), Arc::new(record));
            }
            Err(problem) => problems.push(problem),
        }
    }
    (by_id, bytes, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_share_a_hash_tag_and_changes_read_back() {
        let layout = Layout::new("moat:keys:");
        assert_eq!(layout.records, "{moat:keys:}records");
        assert_eq!(layout.version, "{moat:keys:}version");
        let change = Change::parse("42 batch-scorer 1765000000123").unwrap();
        assert_eq!(
            (change.version, &*change.id, change.at_ms),
            (42, "batch-scorer", 1765000000123)
        );
        for bad in ["", "42", "42 a", "x a 1", "42 a 1 extra"] {
            assert_eq!(Change::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_record_must_name_its_own_id_and_hold_an_argon2id_hash() {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let good = format!(r#"{{"id": "a", "hash": "{hash}"}}"#);
        assert!(record("a", &good).is_ok());
        assert!(record("b", &good).unwrap_err().contains("says id `a`"));
        assert!(record("a", r#"{"id": "a", "hash": "plain"}"#).is_err());
        let zero =
            format!(r#"{{"id": "a", "hash": "{hash}", "quota": {{"requests": 0, "per": "day"}}}}"#);
        assert!(record("a", &zero).unwrap_err().contains("`quota` of 0"));
        let fields = HashMap::from([("a".to_owned(), good), ("c".to_owned(), "{".to_owned())]);
        let (by_id, _, problems) = records(fields);
        assert!(
            by_id.contains_key("a") && problems.len() == 1,
            "{problems:?}"
        );
    }
}
