//! `moat explain`: one request through stages 1–6 with the same functions `serve` uses,
//! without forwarding, and a verdict per stage with its reason. The report never echoes
//! header values, the query or the body: they may hold credentials.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::auth::{Caller, Trace};
use crate::config::Mode;
use crate::frame;
use crate::pipeline::{Routing, Target};
use crate::reject::Rejection;
use crate::snapshot::Snapshot;
use crate::validate;

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

/// Builds the request from `input`; a malformed one is a usage error, not a verdict.
fn build(input: &Input) -> Result<(Method, Uri, HeaderMap, Bytes, Vec<String>), String> {
    let method = Method::from_bytes(input.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", input.method))?;
    // Only the path and query matter to stages 1–6; a full URL's authority is dropped.
    let uri: Uri = input
        .url
        .parse()
        .map_err(|e| format!("the URL does not parse: {e}"))?;
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

/// Runs stages 1–6 on `input` against `snapshot`.
pub async fn explain(snapshot: &Snapshot, input: &Input) -> Result<Report, String> {
    let (method, uri, headers, body, notes) = build(input)?;
    let mut out = Report {
        text: String::new(),
        forwarded: false,
    };
    for note in notes {
        out.note(&note);
    }
    let config = &snapshot.config;

    // 1. frame
    let path = match frame::check(&uri, &headers, &config.limits) {
        Ok(path) => path,
        Err(rejection) => return Ok(out.refused("1 frame", &rejection)),
    };
    out.pass("1 frame", &format!("canonical path {path}"));

    // 2. route
    let target = match crate::pipeline::route(snapshot, &method, &path) {
        Err(rejection) => return Ok(out.refused("2 route", &rejection)),
        Ok(Routing::Options(allow)) => {
            let allow = allow.to_str().unwrap_or_default().to_owned();
            out.pass(
                "2 route",
                &format!("OPTIONS answered by moat: 204, Allow: {allow}"),
            );
            out.line("verdict: answered by moat (204), not forwarded");
            return Ok(out);
        }
        Ok(Routing::Target(target)) => target,
    };
    let Target {
        operation,
        template,
        path_values: values,
        requirement,
        mode,
    } = target;
    match (operation, template) {
        (Some(operation), Some(template)) => out.pass(
            "2 route",
            &format!(
                "operation `{}` ({} {template}), mode {}",
                operation.id,
                operation.method,
                mode_name(mode)
            ),
        ),
        _ => out.pass(
            "2 route",
            "no `openapi` configured: every path is forwarded",
        ),
    }

    // 3–4. credentials and scopes
    let mut trace = Trace::on();
    let principal = snapshot
        .auth
        .check(
            requirement,
            &Caller {
                headers: &headers,
                query: uri.query(),
                client: input.client,
                operation,
                request_id: "explain",
            },
            &mut trace,
        )
        .await;
    let notes = trace.into_notes();
    let principal = match principal {
        Ok(principal) => principal,
        Err(rejection) => {
            let stage = if rejection.status() == http::StatusCode::FORBIDDEN {
                "4 authorize"
            } else {
                "3 authenticate"
            };
            out.fail(stage, &rejection, "FAIL");
            for note in &notes {
                out.note(note);
            }
            return Ok(out.verdict_refused(&rejection));
        }
    };
    let who = match &principal {
        None => "no credentials needed".to_owned(),
        Some(p) => format!(
            "subject {}, key {}, scopes [{}]",
            p.subject.as_deref().unwrap_or("-"),
            p.key_id.as_deref().unwrap_or("-"),
            p.scopes.join(" ")
        ),
    };
    out.pass("3-4 auth", &who);
    for note in &notes {
        out.note(note);
    }

    // 5. limits: a fresh process has full buckets, so this says what applies.
    let mut limits = Vec::new();
    if let Some(limit) = &config.policy.client_rate_limit {
        limits.push(format!(
            "per client {}/s burst {}",
            limit.per_second, limit.burst
        ));
    }
    if principal.as_ref().is_some_and(|p| p.key_id.is_some()) {
        limits.push("the key's own rate_limit, if its record sets one".to_owned());
    }
    let limits = if limits.is_empty() {
        "no rate limit applies".to_owned()
    } else {
        format!(
            "{} (a single request passes; limits count per running process)",
            limits.join("; ")
        )
    };
    out.pass("5 limit", &limits);

    // 6. validate, in serve's order: parameters, body size, body.
    let stripped = crate::pipeline::without_query_credentials(&uri, snapshot);
    let query = stripped.as_ref().map_or(uri.query(), Uri::query);
    let too_large = || {
        (body.len() as u64 > config.limits.max_body_bytes).then_some(Rejection::BodyTooLarge {
            limit: config.limits.max_body_bytes,
        })
    };
    let Some(operation) = operation else {
        if let Some(rejection) = too_large() {
            return Ok(out.refused("6 validate", &rejection));
        }
        out.pass("6 validate", "nothing to validate without an operation");
        return Ok(out.forward(&method, &uri));
    };
    let reject_unknown = config
        .openapi
        .as_ref()
        .is_some_and(|o| o.reject_unknown_query);
    let mut valid = Vec::new();
    let mut shadowed = Vec::new();
    let parameters = validate::parameters(operation, &values, query, &headers, reject_unknown);
    if let Err(rejection) = triage(parameters, "parameters", mode, &mut valid, &mut shadowed) {
        return Ok(out.refused("6 validate", &rejection));
    }
    // Size is never shadowed: serve cannot forward what it did not read.
    if let Some(rejection) = too_large() {
        return Ok(out.refused("6 validate", &rejection));
    }
    let verdict = validate::request_body(operation, &headers, &body, config.limits.max_json_depth);
    if let Err(rejection) = triage(verdict, "body", mode, &mut valid, &mut shadowed) {
        return Ok(out.refused("6 validate", &rejection));
    }
    if shadowed.is_empty() {
        out.pass("6 validate", &format!("body {} bytes", body.len()));
    }
    for rejection in &shadowed {
        out.fail("6 validate", rejection, "SHADOW");
        out.note("shadow mode: logged and counted, forwarded anyway");
    }
    for line in valid {
        out.note(&line);
    }
    Ok(out.forward(&method, &uri))
}

/// Files a validation verdict: valid, shadowed (shadow mode), or the refusal it is.
fn triage(
    verdict: Result<(), Rejection>,
    what: &str,
    mode: Mode,
    valid: &mut Vec<String>,
    shadowed: &mut Vec<Rejection>,
) -> Result<(), Rejection> {
    match verdict {
        Ok(()) => valid.push(format!("{what}: valid")),
        Err(rejection) if matches!(mode, Mode::Shadow) => shadowed.push(rejection),
        Err(rejection) => return Err(rejection),
    }
    Ok(())
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Shadow => "shadow",
    }
}

impl Report {
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

    fn refused(mut self, stage: &str, rejection: &Rejection) -> Report {
        self.fail(stage, rejection, "FAIL");
        self.verdict_refused(rejection)
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
