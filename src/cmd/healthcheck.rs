//! `moat healthcheck`: one GET to the admin listener, so a distroless image needs no curl.

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::error::Elapsed;

pub async fn probe(url: &str) -> Result<StatusCode, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// URLs are supported".to_owned());
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::get(uri)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    Ok(response.status())
}

/// Exit 0 when `url` answers 2xx within 3 s.
pub fn main(url: &str) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(runtime) = runtime else {
        return ExitCode::FAILURE;
    };
    let outcome =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(3), probe(url)).await });
    verdict(url, outcome)
}

/// Success for a 2xx answer; otherwise what went wrong, on stderr.
fn verdict(url: &str, outcome: Result<Result<StatusCode, String>, Elapsed>) -> ExitCode {
    match outcome {
        Ok(Ok(status)) if status.is_success() => return ExitCode::SUCCESS,
        Ok(Ok(status)) => eprintln!("moat healthcheck: {url} answered {status}"),
        Ok(Err(error)) => eprintln!("moat healthcheck: {url}: {error}"),
        Err(_) => eprintln!("moat healthcheck: {url} did not answer within 3s"),
    }
    ExitCode::FAILURE
}
