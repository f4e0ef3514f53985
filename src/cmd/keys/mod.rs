//! `moat keys`: the command line of the key store — its arguments and exit codes; the
//! store edits themselves are in `store`.

pub mod store;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process: boxing buys nothing
pub enum KeysCommand {
    /// Mint a key: prints it once on stdout and stores only its hash.
    New(NewArgs),
    /// Read a key on stdin, print its argon2id PHC hash (with the configured pepper).
    Hash {
        #[command(flatten)]
        target: KeyTarget,
    },
    /// List the keys with their state and restrictions (no hashes).
    List {
        /// Add a column with each hash's algorithm and cost (never the hash itself).
        #[arg(long)]
        hashes: bool,
        /// Only the keys imported with another gateway's SHA-256 and not yet used (each
        /// is re-hashed to argon2id on its first use).
        #[arg(long)]
        legacy: bool,
        #[command(flatten)]
        target: KeyTarget,
    },
    /// Disable a key (`disabled: true`; also `moat keys disable`).
    #[command(visible_alias = "disable")]
    Revoke {
        id: String,
        #[command(flatten)]
        target: KeyTarget,
    },
    /// Mint a replacement with the same scopes and restrictions; the old key expires after
    /// the grace period (never later than it already would).
    Rotate(RotateArgs),
    /// Add the records of a moat store file to this store (a file into Redis, or between
    /// files); records already there unchanged are skipped, so it can run again.
    Import {
        file: PathBuf,
        /// Another gateway's export: its keys become records holding their SHA-256, each
        /// re-hashed to argon2id on its first use.
        #[arg(long, value_enum)]
        from: Option<store::Gateway>,
        /// With --from: comma-separated scopes every imported key gets.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        #[command(flatten)]
        target: KeyTarget,
    },
    /// Write this store's records to a moat store file (JSON when it ends in .json).
    Export {
        file: PathBuf,
        #[command(flatten)]
        target: KeyTarget,
    },
}

/// `moat keys new`: the key's id, and its scopes, life and restrictions.
#[derive(Debug, Args)]
pub struct NewArgs {
    #[arg(long)]
    id: String,
    /// Comma-separated scopes.
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
    /// RFC 3339 expiry, e.g. 2027-06-01T00:00:00Z.
    #[arg(long)]
    expires: Option<String>,
    /// RFC 3339 time before which the key is refused.
    #[arg(long)]
    not_before: Option<String>,
    /// Free text, logged and forwarded as the subject when no token names one.
    #[arg(long)]
    owner: Option<String>,
    /// Comma-separated operationIds (or `METHOD /template`) the key may call.
    #[arg(long, value_delimiter = ',')]
    operations: Vec<String>,
    /// Comma-separated CIDRs (or addresses) the client must come from.
    #[arg(long, value_delimiter = ',')]
    allowed_cidrs: Vec<String>,
    /// PER_SECOND/BURST, e.g. 50/100.
    #[arg(long)]
    rate_limit: Option<String>,
    /// REQUESTS/PERIOD, PERIOD one of minute, hour, day, month (UTC calendar windows),
    /// e.g. 10000/day.
    #[arg(long)]
    quota: Option<String>,
    #[command(flatten)]
    llm: LlmFlags,
    #[command(flatten)]
    target: KeyTarget,
}

/// `moat keys rotate`: the key to replace, the grace period, and the replacement's id and
/// expiry.
#[derive(Debug, Args)]
pub struct RotateArgs {
    id: String,
    #[arg(long, value_parser = humantime::parse_duration)]
    grace: Duration,
    /// The new key's id (default: ID-r2, ID-r3, ...).
    #[arg(long)]
    new_id: Option<String>,
    /// RFC 3339 expiry of the new key (default: none).
    #[arg(long)]
    expires: Option<String>,
    #[command(flatten)]
    target: KeyTarget,
}

/// A key's rules on LLM operations (OpenAI-protocol calls).
#[derive(Debug, Args)]
pub struct LlmFlags {
    /// Comma-separated models the key may name in `model`.
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// The most `max_tokens` a request may ask for (and what one without reserves).
    #[arg(long)]
    max_tokens: Option<u64>,
    /// Streamed requests in flight at once (per moat process).
    #[arg(long)]
    max_concurrent_streams: Option<u32>,
    /// TOKENS/PERIOD of prompt and completion, PERIOD one of minute, hour, day, month, e.g.
    /// 2000000/day.
    #[arg(long)]
    token_budget: Option<String>,
    /// Tokens per UTC minute.
    #[arg(long)]
    tokens_per_minute: Option<u64>,
}

/// Which store `moat keys` edits: the config's `api_key` scheme, as `serve` reads it.
#[derive(Debug, Args)]
pub struct KeyTarget {
    /// The config whose api_key scheme names the store and pepper (default: $MOAT_CONFIG,
    /// else config/moat.yaml when it exists).
    #[arg(long, short, env = "MOAT_CONFIG")]
    config: Option<PathBuf>,
    /// The api_key scheme, when the config binds several.
    #[arg(long)]
    scheme: Option<String>,
    /// Edit this store file instead of the config's (its pepper still comes from the
    /// config when a scheme names this store).
    #[arg(long = "store", env = "MOAT_KEY_STORE")]
    store: Option<PathBuf>,
}

impl KeyTarget {
    fn resolve(&self) -> Result<store::Target, String> {
        store::Target::resolve(&store::Choice {
            config: self.config.as_deref(),
            scheme: self.scheme.as_deref(),
            store: self.store.as_deref(),
        })
    }
}

impl NewArgs {
    /// Mints the key and prints it, once.
    fn run(&self) -> Result<(), String> {
        let target = self.target.resolve()?;
        let key = store::new(&target, &self.id, &self.key())?;
        println!("{key}");
        eprintln!(
            "stored key `{}` in {}; the key above is shown only once",
            self.id, target.store
        );
        Ok(())
    }

    fn key(&self) -> store::NewKey<'_> {
        let llm = &self.llm;
        store::NewKey {
            scopes: &self.scopes,
            owner: self.owner.as_deref(),
            expires: self.expires.as_deref(),
            not_before: self.not_before.as_deref(),
            operations: &self.operations,
            allowed_cidrs: &self.allowed_cidrs,
            rate_limit: self.rate_limit.as_deref(),
            quota: self.quota.as_deref(),
            models: &llm.models,
            max_tokens: llm.max_tokens,
            max_concurrent_streams: llm.max_concurrent_streams,
            token_budget: llm.token_budget.as_deref(),
            tokens_per_minute: llm.tokens_per_minute,
        }
    }
}

impl RotateArgs {
    /// Mints the replacement, prints it once, and says when the old key stops working.
    fn run(&self) -> Result<(), String> {
        let target = self.target.resolve()?;
        let (new_id, key) = store::rotate(
            &target,
            &self.id,
            self.grace,
            self.new_id.as_deref(),
            self.expires.as_deref(),
        )?;
        println!("{key}");
        eprintln!(
            "stored `{new_id}`; `{}` expires in {} at the latest",
            self.id,
            humantime::format_duration(self.grace)
        );
        Ok(())
    }
}

impl KeysCommand {
    fn run(self) -> Result<(), String> {
        match self {
            KeysCommand::New(args) => args.run(),
            KeysCommand::Hash { target } => target
                .resolve()
                .and_then(|target| store::hash_stdin(&target))
                .map(|hash| println!("{hash}")),
            KeysCommand::List {
                hashes,
                legacy,
                target,
            } => target
                .resolve()
                .and_then(|target| store::list(&target.store, hashes, legacy))
                .map(|table| print!("{table}")),
            KeysCommand::Revoke { id, target } => {
                let target = target.resolve()?;
                store::revoke(&target.store, &id)?;
                eprintln!("revoked `{id}`; {}", when_refused(&target.store));
                Ok(())
            }
            KeysCommand::Rotate(args) => args.run(),
            KeysCommand::Import {
                file,
                from,
                scopes,
                target,
            } => {
                let target = target.resolve()?;
                let imported = store::import(&target.store, &file, from, &scopes)?;
                eprintln!(
                    "{}: {} records added, {} already there",
                    target.store, imported.added, imported.unchanged
                );
                Ok(())
            }
            KeysCommand::Export { file, target } => {
                let target = target.resolve()?;
                let count = store::export(&target.store, &file)?;
                eprintln!(
                    "{}: {count} records written to {}",
                    target.store,
                    file.display()
                );
                Ok(())
            }
        }
    }
}

/// When a running moat stops admitting a revoked key.
fn when_refused(store: &crate::config::KeySource) -> &'static str {
    match store {
        crate::config::KeySource::File(_) => "a running moat refuses it once it reloads the store",
        crate::config::KeySource::Redis(_) => {
            "published: every moat on this store refuses it within a second"
        }
    }
}

pub fn main(command: KeysCommand) -> ExitCode {
    match command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat keys: {error}");
            ExitCode::FAILURE
        }
    }
}
