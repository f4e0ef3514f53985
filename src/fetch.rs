//! Fetching a document over plain HTTP from a sidecar neighbour (the model's OpenAPI
//! document, a JWKS), with retries while it starts up.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::input::Kind;

/// Fetches `url`, retrying with backoff until it answers 200 or `deadline` passes (the
/// model may still be starting). Blocking: for use before the server's runtime starts.
pub fn fetch(url: &str, deadline: Duration, kind: Kind) -> Result<Vec<u8>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime to fetch {url}: {e}"))?;
    runtime.block_on(fetch_async(url, deadline, kind))
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// The same, from inside a runtime. A body past `kind`'s cap (see `input`) is refused as a
/// file of that size would be.
pub async fn fetch_async(url: &str, deadline: Duration, kind: Kind) -> Result<Vec<u8>, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let give_up = Instant::now() + deadline;
    let mut delay = Duration::from_millis(100);
    loop {
        let error = match within(give_up, attempt(&client, get(&uri)?, kind)).await {
            Ok(bytes) => return Ok(bytes),
            Err(error) => error,
        };
        if Instant::now() + delay >= give_up {
            return Err(format!(
                "cannot fetch {url} within {} (`fetch_timeout`): {error}",
                humantime::format_duration(deadline)
            ));
        }
        tracing::info!(url, error = %error, retry_in = ?delay, "not available yet; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// `attempt`, bounded by what is left until `give_up`: one attempt never outlasts the whole
/// deadline (`fetch_timeout`).
async fn within(
    give_up: Instant,
    attempt: impl Future<Output = Result<Vec<u8>, String>>,
) -> Result<Vec<u8>, String> {
    let left = give_up
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(100), Duration::from_secs(10));
    tokio::time::timeout(left, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:.1}s", left.as_secs_f64())))
}

/// The request each attempt sends.
fn get(uri: &http::Uri) -> Result<http::Request<Empty<Bytes>>, String> {
    http::Request::get(uri.clone())
        .header(http::header::ACCEPT, "application/json, application/yaml")
        .body(Empty::new())
        .map_err(|e| e.to_string())
}

/// One request: the body of a 2xx answer, or why there is none.
async fn attempt(
    client: &HttpClient,
    request: http::Request<Empty<Bytes>>,
    kind: Kind,
) -> Result<Vec<u8>, String> {
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = capped_body(response.into_body(), kind).await?;
    if status.is_success() {
        Ok(body.to_vec())
    } else {
        Err(format!("answered {status}"))
    }
}

/// The whole body, unless it is over `kind`'s cap.
async fn capped_body(body: Incoming, kind: Kind) -> Result<Bytes, String> {
    let cap = usize::try_from(kind.cap()).unwrap_or(usize::MAX);
    let body =
        Limited::new(body, cap)
            .collect()
            .await
            .map_err(|e| match e.is::<LengthLimitError>() {
                true => format!("the answer is over the {cap} bytes moat reads for it"),
                false => e.to_string(),
            })?;
    Ok(body.to_bytes())
}
