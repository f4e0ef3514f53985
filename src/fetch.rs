//! Fetching a document over plain HTTP from a sidecar neighbour (the model's OpenAPI
//! document, a JWKS), with retries while it starts up; or, under `moat check --offline`,
//! never.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Set once by `moat check --offline`, before anything is loaded: a process-wide switch so
/// that no fetch anywhere (spec, JWKS) can open a connection, whichever code asks.
static OFFLINE: AtomicBool = AtomicBool::new(false);

/// From now on every fetch of this process fails at once, without touching the network.
pub fn go_offline() {
    OFFLINE.store(true, Ordering::Relaxed);
}

pub fn is_offline() -> bool {
    OFFLINE.load(Ordering::Relaxed)
}

/// How `moat check` fetches: a fixed number of attempts, each started on its own slot and
/// bounded by it, so the whole wait is known up front and can be said on each attempt
/// (serve's backoff cannot say how many attempts a deadline holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub attempts: u32,
    /// Both the timeout of one attempt and the interval between attempt starts.
    pub each: Duration,
}

impl Schedule {
    /// About five attempts of 1 to 5 s each within `total`; one attempt when `total` is
    /// shorter than a second.
    pub fn within(total: Duration) -> Schedule {
        let total = total.max(Duration::from_millis(100));
        let each = (total / 5)
            .clamp(Duration::from_secs(1), Duration::from_secs(5))
            .min(total);
        let attempts = (total.as_millis() / each.as_millis()).max(1);
        Schedule {
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            each,
        }
    }

    /// The longest the whole fetch can take.
    pub fn total(&self) -> Duration {
        self.each.saturating_mul(self.attempts)
    }
}

/// Fetches `url` on `schedule`, calling `progress` with the number of each attempt as it
/// starts. Blocking, as [`fetch`].
pub fn fetch_on_schedule(
    url: &str,
    schedule: Schedule,
    kind: Kind,
    progress: &mut dyn FnMut(u32),
) -> Result<Vec<u8>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime to fetch {url}: {e}"))?;
    runtime.block_on(async {
        let uri = parse(url)?;
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let start = tokio::time::Instant::now();
        let mut last_error = String::new();
        for number in 1..=schedule.attempts {
            let slot = start + schedule.each.saturating_mul(number - 1);
            tokio::time::sleep_until(slot).await;
            progress(number);
            let attempt = attempt(&client, get(&uri)?, kind);
            match tokio::time::timeout(schedule.each, attempt).await {
                Ok(Ok(bytes)) => return Ok(bytes),
                Ok(Err(error)) => last_error = error,
                Err(_) => last_error = format!("no answer within {}", seconds(schedule.each)),
            }
        }
        Err(format!(
            "cannot fetch {url}: {} attempt{} in {} failed, the last: {last_error}",
            schedule.attempts,
            if schedule.attempts == 1 { "" } else { "s" },
            seconds(schedule.total())
        ))
    })
}

/// `2s`, `1.5s`: how long, as a person reads it.
pub fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0}s")
    } else {
        format!("{secs:.1}s")
    }
}

fn parse(url: &str) -> Result<http::Uri, String> {
    if is_offline() {
        return Err(format!("{url} is not fetched: offline (`--offline`)"));
    }
    url.parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))
}

/// The same, from inside a runtime. A body past `kind`'s cap (see `input`) is refused as a
/// file of that size would be.
pub async fn fetch_async(url: &str, deadline: Duration, kind: Kind) -> Result<Vec<u8>, String> {
    let uri = parse(url)?;
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
    let response = client.request(request).await.map_err(|e| causes(&e))?;
    let status = response.status();
    let body = capped_body(response.into_body(), kind).await?;
    if status.is_success() {
        Ok(body.to_vec())
    } else {
        Err(format!("answered {status}"))
    }
}

/// An error and its causes: hyper's own says only `client error (Connect)`, its source
/// says `Connection refused`.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_holds_about_five_attempts_within_its_bound() {
        let ten = Schedule::within(Duration::from_secs(10));
        assert_eq!((ten.attempts, ten.each), (5, Duration::from_secs(2)));
        let minute = Schedule::within(Duration::from_secs(60));
        assert_eq!((minute.attempts, minute.each), (12, Duration::from_secs(5)));
        let short = Schedule::within(Duration::from_millis(300));
        assert_eq!(
            (short.attempts, short.each),
            (1, Duration::from_millis(300))
        );
        let none = Schedule::within(Duration::ZERO);
        assert_eq!(none.attempts, 1);
        for bound in [1, 3, 7, 10, 60, 600] {
            let bound = Duration::from_secs(bound);
            assert!(Schedule::within(bound).total() <= bound, "{bound:?}");
        }
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
        assert_eq!(seconds(Duration::from_secs(2)), "2s");
    }
}
