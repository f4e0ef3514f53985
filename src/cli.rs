//! The command line (design §8): each subcommand parses its arguments here and calls into
//! the library; exit codes are chosen here and nowhere else.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, mentions_placeholder};
use crate::metrics::Metrics;
use crate::server::{self, Listeners};
use crate::snapshot::{Snapshot, State};
use crate::telemetry;

/// Exit code of `serve` when the configuration cannot be loaded (EX_USAGE).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(name = "moat", version, about = "A security sidecar for model servers")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the config and serve until SIGTERM or SIGINT.
    Serve(ConfigArg),
    /// A sample model behind moat on the shipped config, with a fresh key and token, and
    /// curl lines to try; until Ctrl-C.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: std::net::SocketAddr,
    },
    /// Load the config, report every problem, and exit 1 if there is one.
    Check(ConfigArg),
    /// Run one request through stages 1-6 without forwarding; print each stage's verdict.
    /// Exit 0 if it would be forwarded, 1 if refused, 2 if the request or config is unusable.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// GET, POST, ...
        method: String,
        /// `/path?query` or a full URL (only its path and query are used).
        url: String,
        /// A request header, `Name: value`; repeatable.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The request body, or @FILE to read it from a file.
        #[arg(short, long)]
        data: Option<String>,
        /// The client address the request comes from (for allowed_cidrs).
        #[arg(long, default_value = "127.0.0.1")]
        client: std::net::IpAddr,
    },
    /// Manage API keys in the key store.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print a test JWT signed with the configured HMAC secret (HS* schemes only).
    Token {
        #[command(flatten)]
        config: ConfigArg,
        /// The jwt scheme, when the config binds several.
        #[arg(long)]
        scheme: Option<String>,
        /// The token's subject (`sub`).
        #[arg(long, default_value = "test-user")]
        sub: String,
        /// Comma-separated scopes.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// How long the token is valid.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Age-encrypted dotenv files for `env.encrypted_dotenv`.
    Env {
        #[command(subcommand)]
        command: EnvCommand,
    },
    /// Exit 0 if moat's /healthz answers (for container HEALTHCHECKs without a shell).
    Healthcheck {
        #[arg(
            long,
            env = "MOAT_HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:9090/healthz"
        )]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Mint a key: prints it once on stdout and stores only its hash.
    New {
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
        #[command(flatten)]
        target: KeyTarget,
    },
    /// Read a key on stdin, print its argon2id PHC hash (with the configured pepper).
    Hash {
        #[command(flatten)]
        target: KeyTarget,
    },
    /// List the keys with their state and restrictions (never their hashes in full).
    List {
        #[command(flatten)]
        target: KeyTarget,
    },
    /// Disable a key.
    Revoke {
        id: String,
        #[command(flatten)]
        target: KeyTarget,
    },
    /// Mint a replacement with the same scopes and restrictions; the old key expires after
    /// the grace period (never later than it already would).
    Rotate {
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
    },
}

/// Which store `moat keys` edits: the config's `api_key` scheme, as `serve` reads it.
#[derive(Debug, Args)]
struct KeyTarget {
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
    fn resolve(&self) -> Result<crate::keys::Target, String> {
        crate::keys::Target::resolve(&crate::keys::Choice {
            config: self.config.as_deref(),
            scheme: self.scheme.as_deref(),
            store: self.store.as_deref(),
        })
    }
}

#[derive(Debug, Subcommand)]
enum EnvCommand {
    /// Make an age identity: its text goes to OUT (mode 0600) or stdout, its public key to
    /// stderr.
    Keygen {
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Encrypt a dotenv file (IN, or stdin) to one or more `age1…` recipients, ASCII-armored.
    Encrypt {
        #[arg(short, long = "recipient", required = true)]
        recipients: Vec<String>,
        input: Option<PathBuf>,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Decrypt an encrypted dotenv file to stdout (for inspection), with the identity in
    /// MOAT_AGE_IDENTITY or MOAT_AGE_IDENTITY_FILE.
    Decrypt { input: PathBuf },
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// The config file.
    #[arg(long, short, env = "MOAT_CONFIG", default_value = "config/moat.yaml")]
    config: PathBuf,
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args.config),
        Command::Check(args) => check(args.config),
        Command::Demo {
            listen,
            admin_listen,
        } => demo(listen, admin_listen),
        Command::Explain {
            config,
            method,
            url,
            headers,
            data,
            client,
        } => explain(config.config, method, url, headers, data, client),
        Command::Keys { command } => keys(command),
        Command::Token {
            config,
            scheme,
            sub,
            scopes,
            ttl,
        } => {
            let claims = crate::token::Claims {
                subject: &sub,
                scopes: &scopes,
                ttl,
            };
            match crate::token::mint(&config.config, scheme.as_deref(), &claims) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("moat token: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Env { command } => env(command),
        Command::Healthcheck { url } => healthcheck(&url),
    }
}

fn keys(command: KeysCommand) -> ExitCode {
    let outcome = match command {
        KeysCommand::New {
            id,
            scopes,
            expires,
            not_before,
            owner,
            operations,
            allowed_cidrs,
            rate_limit,
            target,
        } => target.resolve().and_then(|target| {
            let key = crate::keys::NewKey {
                scopes: &scopes,
                owner: owner.as_deref(),
                expires: expires.as_deref(),
                not_before: not_before.as_deref(),
                operations: &operations,
                allowed_cidrs: &allowed_cidrs,
                rate_limit: rate_limit.as_deref(),
            };
            crate::keys::new(&target, &id, &key).map(|key| {
                println!("{key}");
                eprintln!(
                    "stored key `{id}` in {}; the key above is shown only once",
                    target.store.display()
                );
            })
        }),
        KeysCommand::Hash { target } => target
            .resolve()
            .and_then(|target| crate::keys::hash_stdin(&target))
            .map(|hash| println!("{hash}")),
        KeysCommand::List { target } => target
            .resolve()
            .and_then(|target| crate::keys::list(&target.store))
            .map(|table| print!("{table}")),
        KeysCommand::Revoke { id, target } => target
            .resolve()
            .and_then(|target| crate::keys::revoke(&target.store, &id))
            .map(|()| {
                eprintln!("revoked `{id}`; a running moat refuses it once it reloads the store");
            }),
        KeysCommand::Rotate {
            id,
            grace,
            new_id,
            expires,
            target,
        } => target.resolve().and_then(|target| {
            crate::keys::rotate(&target, &id, grace, new_id.as_deref(), expires.as_deref()).map(
                |(new_id, key)| {
                    println!("{key}");
                    eprintln!(
                        "stored `{new_id}`; `{id}` expires in {} at the latest",
                        humantime::format_duration(grace)
                    );
                },
            )
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat keys: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "age")]
fn env(command: EnvCommand) -> ExitCode {
    use crate::secrets;
    let outcome = match command {
        EnvCommand::Keygen { output } => {
            let (identity, public) = secrets::keygen();
            match output {
                Some(path) => write_new_private(&path, identity.as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", path.display())),
                None => std::io::stdout()
                    .write_all(identity.as_bytes())
                    .map_err(|e| e.to_string()),
            }
            .map(|()| eprintln!("public key: {public}"))
        }
        EnvCommand::Encrypt {
            recipients,
            input,
            output,
        } => read_input(input.as_deref()).and_then(|plaintext| {
            let origin = input
                .as_deref()
                .map_or("stdin".into(), |p| p.display().to_string());
            // Refuse now what `serve` would refuse later, while the plaintext is at hand.
            secrets::parse_dotenv(&plaintext, &origin)?;
            let armored = secrets::encrypt(&recipients, &plaintext)?;
            match output {
                Some(path) => crate::auth::keystore::write_atomically(&path, &armored)
                    .map_err(|e| format!("cannot write {}: {e}", path.display())),
                None => std::io::stdout()
                    .write_all(armored.as_bytes())
                    .map_err(|e| e.to_string()),
            }
        }),
        EnvCommand::Decrypt { input } => secrets::decrypt_file(&input)
            .map_err(|e| format!("{}: {e}", input.display()))
            .and_then(|plaintext| {
                std::io::stdout()
                    .write_all(&plaintext)
                    .map_err(|e| e.to_string())
            }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat env: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "age"))]
fn env(_: EnvCommand) -> ExitCode {
    eprintln!("moat env: this moat was built without the `age` feature");
    ExitCode::FAILURE
}

/// A file's bytes, or stdin's when no file is named; wiped when dropped.
#[cfg(feature = "age")]
fn read_input(path: Option<&std::path::Path>) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    use std::io::Read as _;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    match path {
        Some(path) => {
            *bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
        }
    }
    Ok(bytes)
}

/// Creates `path` with mode 0600; an existing file is never overwritten (it may be the only
/// copy of an identity).
#[cfg(feature = "age")]
fn write_new_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn serve(config_path: PathBuf) -> ExitCode {
    let _log = telemetry::init();
    let metrics = Arc::new(Metrics::new());
    let snapshot = match Snapshot::load(&config_path, &metrics, None) {
        Ok(snapshot) => snapshot,
        Err(error) => {
            tracing::error!(error = %error, "cannot load the configuration");
            eprintln!("moat: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if !snapshot.config.upstream.is_loopback() {
        tracing::warn!(
            upstream = %snapshot.config.upstream.url,
            "the upstream is not on loopback: make sure its port is not reachable around moat"
        );
    }
    let Some(runtime) = multi_thread_runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let state = Arc::new(State::new(snapshot, config_path, metrics));
        let listeners = match Listeners::bind(&state).await {
            Ok(listeners) => listeners,
            Err(error) => {
                tracing::error!(error = %error, "cannot bind the listeners");
                eprintln!("moat: cannot bind the listeners: {error}");
                return ExitCode::FAILURE;
            }
        };
        if let (Ok(public), Ok(admin)) = (listeners.public_addr(), listeners.admin_addr()) {
            tracing::info!(listen = %public, admin = %admin, "listening");
        }
        server::serve(state, listeners, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

fn demo(listen: std::net::SocketAddr, admin_listen: std::net::SocketAddr) -> ExitCode {
    let _log = telemetry::init();
    let Some(runtime) = multi_thread_runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(crate::demo::run(listen, admin_listen, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat demo: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime `serve` and `demo` run on; `None` (said on stderr) when it cannot start.
fn multi_thread_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .inspect_err(|error| eprintln!("moat: cannot start the runtime: {error}"))
        .ok()
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop moat with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

fn check(config_path: PathBuf) -> ExitCode {
    // serve's warnings (a group-readable key store, say) belong in the report too.
    let warnings = tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_max_level(tracing::Level::WARN)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .compact()
        .finish();
    let _warnings = tracing::subscriber::set_default(warnings);
    match load_for_check(&config_path) {
        Ok(snapshot) => {
            let mut out = String::new();
            let config = &snapshot.config;
            let _ = writeln!(out, "{}: ok", config_path.display());
            let _ = writeln!(out, "  listen        {}", config.listen);
            let _ = writeln!(out, "  admin_listen  {}", config.admin_listen);
            let _ = writeln!(out, "  upstream      {}", config.upstream.url);
            if !config.upstream.is_loopback() {
                let _ = writeln!(out, "  warning: the upstream is not on loopback");
            }
            match &snapshot.spec {
                None => {
                    let _ = writeln!(
                        out,
                        "  routes        none: every path is forwarded (no `openapi` configured), {}",
                        snapshot.routes.unrouted().requirement
                    );
                }
                Some(spec) => {
                    let _ = writeln!(
                        out,
                        "  openapi       {} ({} operations)",
                        spec.version,
                        spec.operations.len()
                    );
                    for (index, operation) in spec.operations.iter().enumerate() {
                        let route = snapshot.routes.operation(index);
                        let _ = writeln!(
                            out,
                            "  {:<7} {:<50} {:<40} {:<8} {}",
                            operation.method.as_str(),
                            operation.template,
                            operation.id,
                            route.mode.as_str(),
                            route.requirement
                        );
                    }
                    for warning in &spec.warnings {
                        let _ = writeln!(out, "  warning: {warning}");
                    }
                }
            }
            // Stdout may be a closed pipe (`moat check | head`): not an error worth a panic.
            let _ = std::io::stdout().write_all(out.as_bytes());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Loads as `serve` does, but on a problem goes on as far as it can, so every problem of
/// every file is reported at once (an unset variable does not hide a broken key store).
fn load_for_check(config_path: &Path) -> Result<Snapshot, crate::config::ConfigError> {
    let (config, mut problems) = Config::load_leniently(config_path);
    let snapshot = config.and_then(|config| {
        match Snapshot::from_config(config, &Arc::new(Metrics::new()), None) {
            Ok(snapshot) => Some(snapshot),
            Err(more) => {
                let more = more.into_iter().filter(|p| !mentions_placeholder(p));
                problems.extend(more);
                None
            }
        }
    });
    match snapshot {
        Some(snapshot) if problems.is_empty() => Ok(snapshot),
        _ => Err(crate::config::ConfigError {
            file: config_path.to_owned(),
            problems,
        }),
    }
}

fn explain(
    config_path: PathBuf,
    method: String,
    url: String,
    headers: Vec<String>,
    data: Option<String>,
    client: std::net::IpAddr,
) -> ExitCode {
    const UNUSABLE: u8 = 2;
    let body = match data.as_deref().map(|d| match d.strip_prefix('@') {
        Some(file) => std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}")),
        None => Ok(d.as_bytes().to_vec()),
    }) {
        Some(Err(error)) => {
            eprintln!("moat explain: {error}");
            return ExitCode::from(UNUSABLE);
        }
        Some(Ok(body)) => Some(body),
        None => None,
    };
    let snapshot = match Snapshot::load(&config_path, &Arc::new(Metrics::new()), None) {
        Ok(snapshot) => snapshot,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(UNUSABLE);
        }
    };
    let input = crate::explain::Input {
        method,
        url,
        headers,
        body,
        client,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(runtime) = runtime else {
        return ExitCode::from(UNUSABLE);
    };
    match runtime.block_on(crate::explain::explain(&snapshot, &input)) {
        Ok(report) => {
            let _ = std::io::stdout().write_all(report.text.as_bytes());
            if report.forwarded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("moat explain: {error}");
            ExitCode::from(UNUSABLE)
        }
    }
}

/// A requirement as `moat check` prints it: `public`, or alternatives joined by `OR`, each
/// scheme with its scopes (`bearer[predict] AND api_key[]`).
fn healthcheck(url: &str) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(runtime) = runtime else {
        return ExitCode::FAILURE;
    };
    let outcome = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), crate::health::probe(url)).await
    });
    match outcome {
        Ok(Ok(status)) if status.is_success() => ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            eprintln!("moat healthcheck: {url} answered {status}");
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("moat healthcheck: {url}: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("moat healthcheck: {url} did not answer within 3s");
            ExitCode::FAILURE
        }
    }
}
