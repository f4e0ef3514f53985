//! A store opened for an edit, whichever it is: a file (edited as text, keeping its layout:
//! `store_edit`) or Redis (each changed record written by the store's script, which refuses
//! it if the record changed since it was read, and publishes the change to every replica).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{read_store, write_store};
use crate::auth::keystore::KeyStore;
use crate::auth::keystore::redis::{Layout, records};
use crate::auth::store_edit::StoreText;
use crate::config::{KeySource, RedisKeysConfig};

pub struct Opened {
    /// The records as `serve` would read them.
    pub store: KeyStore,
    backend: Backend,
}

enum Backend {
    File { path: PathBuf, text: StoreText },
    Redis(Box<RedisEdit>),
}

struct RedisEdit {
    connection: crate::redis_client::Blocking,
    layout: Layout,
    /// Each record's JSON as read: what a write expects to replace.
    read: HashMap<String, String>,
    edited: BTreeMap<String, Map<String, Value>>,
}

impl Opened {
    pub fn open(source: &KeySource) -> Result<Opened, String> {
        match source {
            KeySource::File(path) => {
                let (text, store) = read_store(path)?;
                Ok(Opened {
                    store,
                    backend: Backend::File {
                        path: path.clone(),
                        text,
                    },
                })
            }
            KeySource::Redis(config) => open_redis(config),
        }
    }

    /// The record `id` as stored (with this edit's changes).
    pub fn record(&self, id: &str) -> Option<Map<String, Value>> {
        match &self.backend {
            Backend::File { text, .. } => text.record(id).cloned(),
            Backend::Redis(redis) => redis
                .edited
                .get(id)
                .cloned()
                .or_else(|| serde_json::from_str(redis.read.get(id)?).ok()),
        }
    }

    /// Adds a new record.
    pub fn append(&mut self, record: Map<String, Value>) {
        self.append_all(vec![record]);
    }

    /// Adds new records.
    pub fn append_all(&mut self, records: Vec<Map<String, Value>>) {
        match &mut self.backend {
            Backend::File { text, .. } => text.append_all(records),
            Backend::Redis(redis) => {
                for record in records {
                    let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
                    redis.edited.insert(id.to_owned(), record);
                }
            }
        }
    }

    /// Every record as stored, by id.
    pub fn all_records(&self) -> Vec<Map<String, Value>> {
        let mut all: Vec<Map<String, Value>> = match &self.backend {
            Backend::File { text, .. } => text.all_records().cloned().collect(),
            Backend::Redis(redis) => redis
                .read
                .values()
                .filter_map(|json| serde_json::from_str(json).ok())
                .collect(),
        };
        let id = |record: &Map<String, Value>| {
            record.get("id").and_then(Value::as_str).map(str::to_owned)
        };
        all.sort_by_key(id);
        all
    }

    /// Sets `field` of the record `id` to `value`.
    pub fn set(&mut self, id: &str, field: &str, value: Value) -> Result<(), String> {
        if let Backend::File { text, .. } = &mut self.backend {
            return text.set(id, field, value);
        }
        let mut record = self
            .record(id)
            .ok_or_else(|| format!("no key with id `{id}`"))?;
        record.insert(field.to_owned(), value);
        if let Backend::Redis(redis) = &mut self.backend {
            redis.edited.insert(id.to_owned(), record);
        }
        Ok(())
    }

    /// Writes the edit: the file atomically; in Redis, each changed record.
    pub fn save(self) -> Result<(), String> {
        match self.backend {
            Backend::File { path, text } => write_store(&path, text).map(drop),
            Backend::Redis(redis) => redis.save(),
        }
    }
}

fn open_redis(config: &RedisKeysConfig) -> Result<Opened, String> {
    let unreachable =
        |e: redis::RedisError| format!("redis (key_prefix {:?}): {e}", config.key_prefix);
    let target =
        crate::redis_client::target(&config.url, config.ca_file.as_deref(), config.timeout)?;
    let mut connection = target.connect_blocking().map_err(unreachable)?;
    let layout = Layout::new(&config.key_prefix);
    let (version, read): (Option<u64>, HashMap<String, String>) = layout
        .read_all()
        .invoke(connection.connection())
        .map_err(unreachable)?;
    let (by_id, bytes, problems) = records(&read);
    for problem in problems {
        eprintln!("warning: {problem} (serve refuses that key)");
    }
    let store = KeyStore::of_records(by_id, format!("v{}", version.unwrap_or(0)), bytes);
    Ok(Opened {
        store,
        backend: Backend::Redis(Box::new(RedisEdit {
            connection,
            layout,
            read,
            edited: BTreeMap::new(),
        })),
    })
}

/// Records written per round trip: an import of 100,000 takes 100 trips, not 100,000.
const BATCH: usize = 1000;

impl RedisEdit {
    /// Every edited record checked as `serve` reads it, then written, a batch per trip.
    fn save(mut self) -> Result<(), String> {
        let mut written = Vec::new();
        for (id, record) in &self.edited {
            written.push((id, Value::Object(record.clone()).to_string()));
        }
        for (id, json) in &written {
            crate::auth::keystore::redis::record(id, json)
                .map_err(|problem| format!("{problem}; nothing written"))?;
        }
        self.layout
            .load_write(self.connection.connection())
            .map_err(|e| format!("redis: {e}"))?;
        for batch in written.chunks(BATCH) {
            let commands = batch.iter().map(|(id, json)| {
                let expected = self.read.get(*id).map(String::as_str);
                self.layout.write(id, Some(json), expected)
            });
            self.connection
                .pipeline(commands)
                .map_err(|e| format!("redis: {e} (the records before it were written; running the command again is safe)"))?;
        }
        Ok(())
    }
}
