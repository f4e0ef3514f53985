//! Fetching a document over plain HTTP from a sidecar neighbour (the model's OpenAPI
//! document, a JWKS), with retries while it starts up.

use std::time::{Duration, Instant};

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

/// The same, from inside a runtime. A body past `kind`'s cap (see `input`) is refused as a
/// file of that size would be.
pub async fn fetch_async(url: &str, deadline: Duration, kind: Kind) -> Result<Vec<u8>, String> {
    use http_body_util::{BodyExt, Empty};
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let give_up = Instant::now() + deadline;
    let mut delay = Duration::from_millis(100);
    loop {
        let request = http::Request::get(uri.clone())
            .header(http::header::ACCEPT, "application/json, application/yaml")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let attempt = async {
            let response = client.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let cap = usize::try_from(kind.cap()).unwrap_or(usize::MAX);
            let body = http_body_util::Limited::new(response.into_body(), cap)
                .collect()
                .await
                .map_err(|e| match e.is::<http_body_util::LengthLimitError>() {
                    true => format!("the answer is over the {cap} bytes moat reads for it"),
                    false => e.to_string(),
                })?;
            if status.is_success() {
                Ok(body.to_bytes().to_vec())
            } else {
                Err(format!("answered {status}"))
            }
        };
        // One attempt never outlasts the whole deadline (`fetch_timeout`).
        let left = give_up
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), Duration::from_secs(10));
        let outcome = tokio::time::timeout(left, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:.1}s", left.as_secs_f64())));
        match outcome {
            Ok(bytes) => return Ok(bytes),
            Err(error) if Instant::now() + delay < give_up => {
                tracing::info!(url, error = %error, retry_in = ?delay, "not available yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(error) => {
                return Err(format!(
                    "cannot fetch {url} within {} (`fetch_timeout`): {error}",
                    humantime::format_duration(deadline)
                ));
            }
        }
    }
}
