//! `moat demo`: the shipped example, whole, with nothing to install. A small sample model
//! (the iris predict API and an SSE stream, in process) runs behind moat, which loads the
//! shipped `config/moat.yaml` and `config/openapi.json` (embedded in the binary, so the demo
//! works from any directory); a fresh API key and a signed JWT are minted for the session,
//! and ready-to-paste `curl` lines show an accepted call and a refusal of each kind.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;

use crate::config::{Config, SchemeConfig};
use crate::metrics::Metrics;
use crate::server::{self, Listeners};
use crate::snapshot::{Snapshot, State};

const CONFIG: &str = include_str!("../../config/moat.yaml");
const SPEC: &str = include_str!("../../config/openapi.json");

/// Everything the demo printed banner needs, known once the listeners are bound.
struct Session {
    public: SocketAddr,
    admin: SocketAddr,
    key: String,
    limited_key: String,
    token: String,
    read_only_token: String,
}

/// Runs the demo until SIGINT or SIGTERM.
pub async fn run(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let model = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot start the sample model: {e}"))?;
    let model_addr = model.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(serve_model(model));

    let dir = tempfile_dir()?;
    let spec = dir.join("openapi.json");
    let config_path = dir.join("moat.yaml");
    let store = dir.join("keys.yaml");
    std::fs::write(&spec, SPEC).map_err(|e| e.to_string())?;
    std::fs::write(&config_path, CONFIG).map_err(|e| e.to_string())?;
    std::fs::write(&store, "keys: []\n").map_err(|e| e.to_string())?;

    // A session secret for HS256 tokens: random, never written anywhere.
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let overrides = [
        ("MOAT_LISTEN", listen.to_string()),
        ("MOAT_ADMIN_LISTEN", admin_listen.to_string()),
        ("MOAT_UPSTREAM", format!("http://{model_addr}")),
        ("MOAT_OPENAPI_FILE", spec.display().to_string()),
        ("MOAT_KEY_STORE", store.display().to_string()),
        ("MOAT_JWT_SECRET", secret.clone()),
    ];
    let lookup = |name: &str| {
        overrides
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    };
    let mut config = Config::parse(CONFIG, &lookup)
        .map_err(|problems| format!("the embedded config: {}", problems.join("; ")))?;
    // The demo's values live in this process only: a reload from the file could not see them.
    config.watch_files = false;
    let (token, read_only_token) = match config.auth.schemes.get("bearer") {
        Some(SchemeConfig::Jwt(jwt)) => (
            session_token(jwt, &["predict", "generate", "models:read"])?,
            session_token(jwt, &["models:read"])?,
        ),
        _ => return Err("the embedded config has no `bearer` JWT scheme".to_owned()),
    };

    let target = crate::cmd::keys::store::Target {
        store: store.clone(),
        pepper: match config.auth.schemes.get("api_key") {
            Some(SchemeConfig::ApiKey(key)) => {
                key.pepper.clone().filter(|p| !p.expose().is_empty())
            }
            _ => None,
        },
    };
    let all = ["predict".to_owned(), "generate".to_owned()];
    let key = crate::cmd::keys::store::new(
        &target,
        "demo",
        &crate::cmd::keys::store::NewKey {
            scopes: &all,
            owner: Some("demo-user"),
            ..Default::default()
        },
    )?;
    let limited_key = crate::cmd::keys::store::new(
        &target,
        "demo-limited",
        &crate::cmd::keys::store::NewKey {
            scopes: &all[..1],
            rate_limit: Some("1/2"),
            ..Default::default()
        },
    )?;

    let metrics = Arc::new(Metrics::new());
    let snapshot = Snapshot::from_config(config, &metrics, None)
        .map_err(|problems| format!("the embedded config: {}", problems.join("; ")))?;
    let state = Arc::new(State::new(snapshot, config_path, metrics));
    let listeners = Listeners::bind(&state).await.map_err(|e| {
        format!("cannot listen on {listen} or {admin_listen}: {e}; pick free ports with --listen and --admin-listen")
    })?;
    let session = Session {
        public: listeners.public_addr().map_err(|e| e.to_string())?,
        admin: listeners.admin_addr().map_err(|e| e.to_string())?,
        token,
        read_only_token,
        key,
        limited_key,
    };
    print!("{}", banner(&session));
    let _ = std::io::Write::flush(&mut std::io::stdout());
    tracing::info!(listen = %session.public, admin = %session.admin, "listening");
    server::serve(state, listeners, shutdown).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A private directory for the session's files (spec copy, key store), removed at exit.
fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let mut suffix = [0u8; 8];
    rand::fill(&mut suffix);
    let name: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("moat-demo-{name}"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// An hour's token for the demo user, signed as `moat token` signs, with the session secret.
fn session_token(jwt: &crate::config::JwtConfig, scopes: &[&str]) -> Result<String, String> {
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

/// The printed guide: each example is a `# expect NNN: what` line, then one curl command
/// (the end-to-end test runs them and checks the status).
#[allow(clippy::too_many_lines)] // a table of examples, one row each
fn banner(s: &Session) -> String {
    let base = format!("http://{}", s.public);
    let predict = format!("{base}/v1/models/iris:predict");
    let json = "-H 'Content-Type: application/json'";
    let body = r#"'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'"#;
    let key = format!("-H 'X-API-Key: {}'", s.key);
    let bearer = format!("-H 'Authorization: Bearer {}'", s.token);
    let examples: Vec<(u16, &str, String)> = vec![
        (
            200,
            "predict with the API key",
            format!("curl -s {predict} {key} {json} -d {body}"),
        ),
        (
            200,
            "predict with the JWT",
            format!("curl -s {predict} {bearer} {json} -d {body}"),
        ),
        (
            200,
            "a server-sent event stream, relayed as it is produced",
            format!(
                "curl -sN {base}/v1/generate/stream {key} {json} -d '{{\"prompt\": \"iris\", \"max_tokens\": 5}}'"
            ),
        ),
        (
            200,
            "public: the spec's health check",
            format!("curl -s {base}/health"),
        ),
        (
            401,
            "no credentials",
            format!("curl -s {predict} {json} -d {body}"),
        ),
        (
            401,
            "a wrong key (same id, wrong secret)",
            format!(
                "curl -s {predict} -H 'X-API-Key: moat_demo_{}' {json} -d {body}",
                "A".repeat(43)
            ),
        ),
        (
            401,
            "a tampered token",
            format!(
                "curl -s {predict} -H 'Authorization: Bearer {}x' {json} -d {body}",
                s.token
            ),
        ),
        (
            403,
            "a token without the `predict` scope",
            format!(
                "curl -s {predict} -H 'Authorization: Bearer {}' {json} -d {body}",
                s.read_only_token
            ),
        ),
        (
            400,
            "a row with three features instead of four (never reaches the model)",
            format!("curl -s {predict} {key} {json} -d '{{\"instances\": [[5.1, 3.5, 1.4]]}}'"),
        ),
        (
            400,
            "strict JSON: a duplicate key",
            format!(
                "curl -s {predict} {key} {json} -d '{{\"instances\": [[1,2,3,4]], \"instances\": [[0,0,0,0]]}}'"
            ),
        ),
        (
            415,
            "a body that is not JSON",
            format!("curl -s {predict} {key} -H 'Content-Type: text/plain' -d hello"),
        ),
        (
            400,
            "a path with `..` (no normalising guesswork)",
            format!("curl -s --path-as-is {base}/v1/models/../models {key}"),
        ),
        (
            404,
            "a path the spec does not declare",
            format!("curl -s {base}/docs {key}"),
        ),
        (
            405,
            "a method the path does not declare",
            format!("curl -s -X DELETE {base}/v1/models {key}"),
        ),
        (
            429,
            "a key limited to 1/s with a burst of 2, called six times in a row",
            format!(
                "for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}} ' {base}/v1/models -H 'X-API-Key: {}'; done; echo",
                s.limited_key
            ),
        ),
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nmoat demo: a sample iris model behind moat, on the shipped config/"
    );
    let _ = writeln!(out, "  moat:    {base}   (admin: http://{})", s.admin);
    let _ = writeln!(
        out,
        "  API key: {}   (scopes predict generate; shown once)",
        s.key
    );
    let _ = writeln!(out, "  JWT:     {}", s.token);
    let _ = writeln!(
        out,
        "  (session credentials: they stop working when the demo stops)\n"
    );
    for (status, what, command) in &examples {
        let _ = writeln!(out, "# expect {status}: {what}");
        let _ = writeln!(out, "{command}\n");
    }
    let _ = writeln!(
        out,
        "# expect 200: the metrics, counted per operation, status and refusal"
    );
    let _ = writeln!(out, "curl -s http://{}/metrics\n", s.admin);
    let _ = writeln!(
        out,
        "# expect 200: the status page's data; open http://{}/ in a browser for the page itself",
        s.admin
    );
    let _ = writeln!(out, "curl -s http://{}/status.json\n", s.admin);
    let _ = writeln!(
        out,
        "Access log lines follow below. Ctrl-C stops the demo.\n"
    );
    out
}

/// The sample model: what the shipped `config/openapi.json` declares, just enough of it.
async fn serve_model(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(model);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type ModelBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn model(request: Request<Incoming>) -> Result<Response<ModelBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path();
    let json = |status: StatusCode, value: serde_json::Value| {
        let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    };
    let response = match (&parts.method, path) {
        (&Method::GET, "/health") => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
        (&Method::GET, "/v1/models") => json(
            StatusCode::OK,
            serde_json::json!({"models": [{"name": "iris", "versions": ["v1"], "framework": "sklearn"}]}),
        ),
        (&Method::POST, "/v1/generate/stream") => stream(&body),
        (&Method::POST, p) if p.ends_with(":predict") => match predict(&body) {
            Some(value) => json(StatusCode::OK, value),
            None => json(
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({"detail": "bad instances"}),
            ),
        },
        (&Method::GET, p) if p.starts_with("/v1/models/") => json(
            StatusCode::OK,
            serde_json::json!({"name": "iris", "versions": ["v1"], "classes": CLASSES}),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"detail": "Not Found"}),
        ),
    };
    Ok(response)
}

const CLASSES: [&str; 3] = ["setosa", "versicolor", "virginica"];

/// The classic two-split iris tree (petal length, then petal width).
fn predict(body: &[u8]) -> Option<serde_json::Value> {
    let request: serde_json::Value = serde_json::from_slice(body).ok()?;
    let predictions = request["instances"]
        .as_array()?
        .iter()
        .map(|row| {
            let petal_length = row.get(2)?.as_f64()?;
            let petal_width = row.get(3)?.as_f64()?;
            let class = if petal_length < 2.45 {
                0
            } else if petal_width < 1.75 {
                1
            } else {
                2
            };
            Some(serde_json::json!({"label": CLASSES[class], "class_index": class}))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(
        serde_json::json!({"model_name": "iris", "model_version": "v1", "predictions": predictions}),
    )
}

/// Server-sent events, one token every 200 ms, then `[DONE]`.
fn stream(body: &[u8]) -> Response<ModelBody> {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let count = request["max_tokens"].as_u64().unwrap_or(16).min(256);
    let words = ["setosa", "versicolor", "virginica", "petal", "sepal"];
    let events = futures_util::stream::unfold(0u64, move |i| async move {
        if i > count {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let line = if i == count {
            "data: [DONE]\n\n".to_owned()
        } else {
            let token = words[(i as usize) % words.len()];
            format!(
                "data: {}\n\n",
                serde_json::json!({"index": i, "token": token})
            )
        };
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), i + 1))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(events)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

pub fn main(listen: std::net::SocketAddr, admin_listen: std::net::SocketAddr) -> ExitCode {
    let _log = crate::telemetry::init();
    let Some(runtime) = super::serve::multi_thread_runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(run(listen, admin_listen, super::serve::shutdown_signal())) {
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
    use std::path::Path;

    #[test]
    fn the_sample_model_classifies_like_the_iris_tree() {
        let out = predict(
            br#"{"instances": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.7, 5.1, 1.6], [6.7, 3.0, 5.2, 2.3]]}"#,
        )
        .unwrap();
        let labels: Vec<&str> = out["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["label"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["setosa", "versicolor", "virginica"]);
        assert!(predict(b"{\"instances\": [[1]]}").is_none());
    }

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
