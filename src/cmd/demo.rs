//! `moat demo`: the shipped example, whole, with nothing to install. A small sample model
//! (the iris predict API and an SSE stream, in process) runs behind moat, which loads the
//! shipped `config/moat.yaml` and `config/openapi.json` (embedded in the binary, so the demo
//! works from any directory); a fresh API key and a signed JWT are minted for the session,
//! and ready-to-paste `curl` lines show an accepted call and a refusal of each kind.

mod banner;
mod model;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::cmd::keys::store::{self, NewKey, Target};
use crate::config::{Config, JwtConfig, SchemeConfig, Secret};
use crate::metrics::Metrics;
use crate::server::{self, Listeners};
use crate::snapshot::{Snapshot, State};
use banner::{Session, banner};

const CONFIG: &str = include_str!("../../config/moat.yaml");
const SPEC: &str = include_str!("../../config/openapi.json");

/// Runs the demo until SIGINT or SIGTERM. A signal during the set-up ends it too, and
/// whichever way it ends, the session's directory (its key store) goes with it.
pub async fn run(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let mut shutdown = std::pin::pin!(shutdown);
    let (state, listeners, session, _dir) = tokio::select! {
        ready = set_up(listen, admin_listen) => ready?,
        () = &mut shutdown => return Ok(()),
    };
    print!("{}", banner(&session));
    let _ = std::io::Write::flush(&mut std::io::stdout());
    tracing::info!(listen = %session.public, admin = %session.admin, "listening");
    server::serve(state, listeners, shutdown).await;
    Ok(())
}

/// The sample model, the session's files and credentials, and the bound listeners.
async fn set_up(
    listen: SocketAddr,
    admin_listen: SocketAddr,
) -> Result<(Arc<State>, Listeners, Session, SessionDir), String> {
    let model = model::start().await?;
    let dir = SessionDir::create()?;
    let files = Files::write(dir.path())?;
    let config = session_config(&files, listen, admin_listen, model)?;
    let credentials = Credentials::mint(&config, &files.store)?;
    let state = session_state(config, files.config)?;
    let listeners = Listeners::bind(&state).await.map_err(|e| {
        format!("cannot listen on {listen} or {admin_listen}: {e}; pick free ports with --listen and --admin-listen")
    })?;
    let session = Session {
        public: listeners.public_addr().map_err(|e| e.to_string())?,
        admin: listeners.admin_addr().map_err(|e| e.to_string())?,
        credentials,
    };
    Ok((state, listeners, session, dir))
}

/// A private directory for the session's files (spec copy, key store with the session's
/// key hashes), under `$TMPDIR`; removed when dropped, so no exit path — a port in use, a
/// failed set-up, Ctrl-C, a panic — leaves it behind.
struct SessionDir(PathBuf);

impl SessionDir {
    fn create() -> Result<SessionDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("moat-demo-{}", random_hex(8)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(SessionDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SessionDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `bytes` random bytes, in hex.
fn random_hex(bytes: usize) -> String {
    let mut random = vec![0u8; bytes];
    rand::fill(&mut random[..]);
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session's copies of the shipped files, and its empty key store.
struct Files {
    spec: PathBuf,
    config: PathBuf,
    store: PathBuf,
}

impl Files {
    /// Writes the embedded spec and config, and an empty key store, into `dir`.
    fn write(dir: &Path) -> Result<Files, String> {
        let files = Files {
            spec: dir.join("openapi.json"),
            config: dir.join("moat.yaml"),
            store: dir.join("keys.yaml"),
        };
        std::fs::write(&files.spec, SPEC).map_err(|e| e.to_string())?;
        std::fs::write(&files.config, CONFIG).map_err(|e| e.to_string())?;
        std::fs::write(&files.store, "keys: []\n").map_err(|e| e.to_string())?;
        Ok(files)
    }
}

/// The embedded config, its variables set to the session's addresses, files and secret
/// (the environment fills in the rest).
fn session_config(
    files: &Files,
    listen: SocketAddr,
    admin_listen: SocketAddr,
    model: SocketAddr,
) -> Result<Config, String> {
    // A session secret for HS256 tokens: random, never written anywhere.
    let secret = random_hex(32);
    let overrides = [
        ("MOAT_LISTEN", listen.to_string()),
        ("MOAT_ADMIN_LISTEN", admin_listen.to_string()),
        ("MOAT_UPSTREAM", format!("http://{model}")),
        ("MOAT_OPENAPI_FILE", files.spec.display().to_string()),
        ("MOAT_KEY_STORE", files.store.display().to_string()),
        ("MOAT_JWT_SECRET", secret),
    ];
    let mut config = Config::parse(CONFIG, &|name: &str| overridden(&overrides, name))
        .map_err(|problems| format!("the embedded config: {}", problems.join("; ")))?;
    // The demo's values live in this process only: a reload from the file could not see them.
    config.watch_files = false;
    Ok(config)
}

/// The variable `name`: its override, or else the environment's value.
fn overridden(overrides: &[(&str, String)], name: &str) -> Option<String> {
    overrides
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(name).ok())
}

/// What serves the session: the config loaded as `serve` loads it.
fn session_state(config: Config, config_path: PathBuf) -> Result<Arc<State>, String> {
    let metrics = Arc::new(Metrics::new());
    let snapshot = Snapshot::from_config(config, &metrics, None)
        .map_err(|problems| format!("the embedded config: {}", problems.join("; ")))?;
    Ok(Arc::new(State::new(snapshot, config_path, metrics)))
}

/// The session's keys and tokens; they stop working when the demo stops.
struct Credentials {
    key: String,
    limited_key: String,
    token: String,
    read_only_token: String,
}

impl Credentials {
    /// Signs the tokens and adds the keys to the session's store.
    fn mint(config: &Config, store: &Path) -> Result<Credentials, String> {
        let Some(SchemeConfig::Jwt(jwt)) = config.auth.schemes.get("bearer") else {
            return Err("the embedded config has no `bearer` JWT scheme".to_owned());
        };
        let token = session_token(jwt, &["predict", "generate", "models:read"])?;
        let read_only_token = session_token(jwt, &["models:read"])?;
        let (key, limited_key) = session_keys(config, store)?;
        Ok(Credentials {
            key,
            limited_key,
            token,
            read_only_token,
        })
    }
}

/// An hour's token for the demo user, signed as `moat token` signs, with the session secret.
fn session_token(jwt: &JwtConfig, scopes: &[&str]) -> Result<String, String> {
    let secret = jwt
        .secret
        .as_ref()
        .ok_or("the demo's bearer scheme has no secret")?;
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let claims = crate::cmd::token::Claims {
        subject: "demo-user",
        scopes: &scopes,
        ttl: Duration::from_secs(3600),
    };
    crate::cmd::token::sign(jwt, secret, &claims)
}

/// Two keys in the session's store: one for every operation, and one limited to 1/s.
fn session_keys(config: &Config, store: &Path) -> Result<(String, String), String> {
    let target = Target {
        store: crate::config::KeySource::File(store.to_owned()),
        pepper: api_key_pepper(config),
    };
    let all = ["predict".to_owned(), "generate".to_owned()];
    let everything = NewKey {
        scopes: &all,
        owner: Some("demo-user"),
        ..Default::default()
    };
    let limited = NewKey {
        scopes: &all[..1],
        rate_limit: Some("1/2"),
        ..Default::default()
    };
    Ok((
        store::new(&target, "demo", &everything)?,
        store::new(&target, "demo-limited", &limited)?,
    ))
}

/// The pepper of the config's `api_key` scheme, as `moat keys` takes it.
fn api_key_pepper(config: &Config) -> Option<Secret> {
    match config.auth.schemes.get("api_key") {
        Some(SchemeConfig::ApiKey(key)) => key.pepper.clone().filter(|p| !p.expose().is_empty()),
        _ => None,
    }
}

pub fn main(listen: std::net::SocketAddr, admin_listen: std::net::SocketAddr) -> ExitCode {
    let _log = crate::telemetry::init();
    let Some(runtime) = super::serve::multi_thread_runtime() else {
        return ExitCode::FAILURE;
    };
    let demo = async { run(listen, admin_listen, super::serve::shutdown_signal()).await };
    match runtime.block_on(demo) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat demo: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_config_loads_with_the_demo_values() {
        let lookup = |name: &str| match name {
            "MOAT_JWT_SECRET" => Some("x".repeat(32)),
            _ => None,
        };
        let config = Config::parse(CONFIG, &lookup).unwrap();
        assert!(config.auth.schemes.contains_key("bearer"));
        assert!(config.auth.schemes.contains_key("api_key"));
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config/openapi.json")
                .exists()
        );
    }
}
