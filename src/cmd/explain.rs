//! `moat explain`: one request through stages 1–6 — `serve`'s own `admit`, on an in-memory
//! body — without forwarding, and a verdict per stage with its reason from the trail. The report never echoes
//! header values, the query or the body: they may hold credentials.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::metrics::Metrics;
use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use http_body_util::Full;

use crate::admit::{Verdict, admit};
use crate::reject::{Rejection, Stage};
use crate::snapshot::Snapshot;
use crate::trail::Trail;

/// The request to explain, as the command line gave it.
pub struct Input {
    pub method: String,
    pub url: String,
    pub headers: Vec<String>,
    pub body: Option<Vec<u8>>,
    pub client: IpAddr,
}

/// The printed report and whether moat would forward the request.
pub struct Report {
    pub text: String,
    pub forwarded: bool,
}

/// The config as `serve` loads it, except that limits count in this process only: a
/// question about one request must not spend a replica's shared budget in Redis.
fn explained_snapshot(config_path: &Path) -> Result<Snapshot, crate::config::ConfigError> {
    let mut config = crate::config::Config::load(config_path)?;
    config.limits.store = crate::config::LimitStore::Memory;
    Snapshot::from_config(config, &Arc::new(Metrics::new()), None).map_err(|problems| {
        crate::config::ConfigError {
            file: config_path.to_owned(),
            problems,
        }
    })
}

/// Builds the request from `input`; a malformed one is a usage error, not a verdict.
fn build(input: &Input) -> Result<(Method, Uri, HeaderMap, Bytes, Vec<String>), String> {
    let method = Method::from_bytes(input.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", input.method))?;
    // Only the path and query matter to stages 1–6; a full URL's authority becomes the
    // request's `Host` (unless -H gives one), as a client would send it.
    let uri: Uri = input
        .url
        .parse()
        .map_err(|e| format!("the URL does not parse: {e}"))?;
    let host = uri
        .authority()
        .map_or_else(|| "localhost".to_owned(), |a| a.as_str().to_owned());
    let uri = Uri::from(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    let mut headers = HeaderMap::new();
    for (number, line) in input.headers.iter().enumerate() {
        // Never quoted back: a malformed line may still hold a credential.
        let (name, value) = line.split_once(':').ok_or_else(|| {
            format!(
                "header {} (of the -H options) needs the form `Name: value`",
                number + 1
            )
        })?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("`{}` is not a header name", name.trim()))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of `{name}` is not a valid header value"))?;
        headers.append(name, value);
    }
    if !headers.contains_key(http::header::HOST) {
        let host = HeaderValue::from_str(&host)
            .map_err(|_| "the URL's host is not a valid Host header".to_owned())?;
        headers.insert(http::header::HOST, host);
    }
    let mut notes = Vec::new();
    let body = Bytes::from(input.body.clone().unwrap_or_default());
    if !body.is_empty() {
        if !headers.contains_key(http::header::CONTENT_TYPE)
            && matches!(body.first(), Some(b'{' | b'['))
        {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            notes.push("no Content-Type given; assumed application/json".to_owned());
        }
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    Ok((method, uri, headers, body, notes))
}

/// Runs stages 1–6 on `input` against `snapshot` — `admit` itself, on an in-memory body —
/// and renders what each stage decided.
pub async fn explain(snapshot: &Snapshot, input: &Input) -> Result<Report, String> {
    let (method, uri, headers, body, notes) = build(input)?;
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    let (parts, body) = request.into_parts();
    let mut trail = Trail::explaining();
    let verdict = admit(
        &snapshot.admission(),
        parts,
        body,
        input.client,
        "explain",
        &mut trail,
    )
    .await;
    let mut out = Report {
        text: String::new(),
        forwarded: false,
    };
    for note in notes {
        out.note(&note);
    }
    Ok(out.render(&trail, verdict))
}

/// The stages as the report groups them: authorize shares authenticate's lines.
const GROUPS: [(Stage, &str); 5] = [
    (Stage::Frame, "1 frame"),
    (Stage::Route, "2 route"),
    (Stage::Authenticate, "3-4 auth"),
    (Stage::Limit, "5 limit"),
    (Stage::Validate, "6 validate"),
];

fn group(stage: Stage) -> Stage {
    match stage {
        Stage::Authorize => Stage::Authenticate,
        other => other,
    }
}

fn fail_label(stage: Stage) -> &'static str {
    match stage {
        Stage::Frame => "1 frame",
        Stage::Route => "2 route",
        Stage::Authenticate => "3 authenticate",
        Stage::Authorize => "4 authorize",
        Stage::Limit => "5 limit",
        Stage::Validate | Stage::Forward => "6 validate",
    }
}

impl Report {
    /// Each stage's verdict and details from the trail, in stage order, up to the one that
    /// refused; then the verdict.
    fn render(mut self, trail: &Trail, verdict: Result<Verdict, Rejection>) -> Report {
        let failed = verdict.as_ref().err();
        for (stage, label) in GROUPS {
            let notes: Vec<_> = trail
                .notes()
                .iter()
                .filter(|n| group(n.stage) == stage)
                .collect();
            if let Some(rejection) = failed.filter(|r| group(r.stage()) == stage) {
                self.fail(fail_label(rejection.stage()), rejection, "FAIL");
                for note in notes.iter().filter(|n| !n.verdict) {
                    self.note(&note.text);
                }
                return self.verdict_refused(rejection);
            }
            let shadowed = stage == Stage::Validate && !trail.shadowed.is_empty();
            for note in notes.iter().filter(|n| n.verdict && !shadowed) {
                self.pass(label, &note.text);
            }
            if stage == Stage::Validate {
                for rejection in &trail.shadowed {
                    self.fail(fail_label(rejection.stage()), rejection, "SHADOW");
                    self.note("shadow mode: logged and counted, forwarded anyway");
                }
            }
            for note in notes.iter().filter(|n| !n.verdict) {
                self.note(&note.text);
            }
        }
        match verdict {
            Ok(Verdict::Forward(admitted)) => self.forward(admitted.method(), admitted.uri()),
            Ok(Verdict::Options(_)) => {
                self.line("verdict: answered by moat (204), not forwarded");
                self
            }
            // A refusal at a stage the report does not group was rendered above.
            Err(rejection) => self.verdict_refused(&rejection),
        }
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.text, "{text}");
    }

    fn pass(&mut self, stage: &str, reason: &str) {
        let _ = writeln!(self.text, "{stage:<16} pass  {reason}");
    }

    fn note(&mut self, note: &str) {
        let _ = writeln!(self.text, "{:<22}{note}", "");
    }

    /// A failure: its status, code, reason and each field error with its pointer.
    fn fail(&mut self, stage: &str, rejection: &Rejection, word: &str) {
        let _ = writeln!(
            self.text,
            "{stage:<16} {word}  {} {}: {}",
            rejection.status().as_u16(),
            rejection.code(),
            rejection.detail()
        );
        for error in rejection.errors() {
            let pointer = if error.pointer.is_empty() {
                "/"
            } else {
                &error.pointer
            };
            self.note(&format!("{} {pointer}: {}", error.location, error.message));
        }
    }

    fn verdict_refused(mut self, rejection: &Rejection) -> Report {
        let _ = writeln!(
            self.text,
            "verdict: refused with {} {}, not forwarded",
            rejection.status().as_u16(),
            rejection.code()
        );
        self
    }

    fn forward(mut self, method: &Method, uri: &Uri) -> Report {
        let _ = writeln!(
            self.text,
            "verdict: {method} {} would be forwarded to the model (explain never forwards)",
            uri.path()
        );
        self.forwarded = true;
        self
    }
}

pub fn main(
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
    let snapshot = match explained_snapshot(&config_path) {
        Ok(snapshot) => snapshot,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(UNUSABLE);
        }
    };
    let input = Input {
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
    match runtime.block_on(explain(&snapshot, &input)) {
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
