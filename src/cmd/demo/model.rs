//! The sample model behind the demo: what the shipped `config/openapi.json` declares, just
//! enough of it — the iris predict API and a server-sent event stream, in process.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

type ModelBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

const CLASSES: [&str; 3] = ["setosa", "versicolor", "virginica"];

/// Binds the model to a free loopback port and serves it in the background.
pub(super) async fn start() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot start the sample model: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(serve(listener));
    Ok(addr)
}

async fn serve(listener: TcpListener) {
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

async fn model(request: Request<Incoming>) -> Result<Response<ModelBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(answer(&parts.method, parts.uri.path(), &body))
}

/// The model's answer to one request.
fn answer(method: &Method, path: &str, body: &[u8]) -> Response<ModelBody> {
    match (method, path) {
        (&Method::GET, "/health") => json_response(StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET, "/v1/models") => json_response(
            StatusCode::OK,
            json!({"models": [{"name": "iris", "versions": ["v1"], "framework": "sklearn"}]}),
        ),
        (&Method::POST, "/v1/generate/stream") => stream(body),
        (&Method::POST, p) if p.ends_with(":predict") => match predict(body) {
            Some(value) => json_response(StatusCode::OK, value),
            None => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"detail": "bad instances"}),
            ),
        },
        (&Method::GET, p) if p.starts_with("/v1/models/") => json_response(
            StatusCode::OK,
            json!({"name": "iris", "versions": ["v1"], "classes": CLASSES}),
        ),
        _ => json_response(StatusCode::NOT_FOUND, json!({"detail": "Not Found"})),
    }
}

fn json_response(status: StatusCode, value: Value) -> Response<ModelBody> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The classic two-split iris tree (petal length, then petal width).
fn predict(body: &[u8]) -> Option<Value> {
    let request: Value = serde_json::from_slice(body).ok()?;
    let predictions = request["instances"]
        .as_array()?
        .iter()
        .map(classify)
        .collect::<Option<Vec<_>>>()?;
    Some(json!({"model_name": "iris", "model_version": "v1", "predictions": predictions}))
}

/// One row's prediction; `None` when it has no petal length and width.
fn classify(row: &Value) -> Option<Value> {
    let petal_length = row.get(2)?.as_f64()?;
    let petal_width = row.get(3)?.as_f64()?;
    let class = if petal_length < 2.45 {
        0
    } else if petal_width < 1.75 {
        1
    } else {
        2
    };
    Some(json!({"label": CLASSES[class], "class_index": class}))
}

/// Server-sent events, one token every 200 ms, then `[DONE]`.
fn stream(body: &[u8]) -> Response<ModelBody> {
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    let count = request["max_tokens"].as_u64().unwrap_or(16).min(256);
    let events = futures_util::stream::unfold(0u64, move |i| async move {
        if i > count {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let line = Bytes::from(event(i, count));
        Some((Ok::<_, Infallible>(Frame::data(line)), i + 1))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(events)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// Event `i` of `count` tokens: a token, or `[DONE]` after the last.
fn event(i: u64, count: u64) -> String {
    const WORDS: [&str; 5] = ["setosa", "versicolor", "virginica", "petal", "sepal"];
    if i == count {
        return "data: [DONE]\n\n".to_owned();
    }
    let token = WORDS[(i as usize) % WORDS.len()];
    format!("data: {}\n\n", json!({"index": i, "token": token}))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
