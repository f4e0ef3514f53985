//! A bare HTTP/1.1 pass-through on hyper: one current_thread runtime, one upstream
//! connection per client connection driven in the same task, the request body buffered
//! (as moat buffers it), the response streamed. No checks, timers, logs or metrics: what
//! moat costs above this is moat's own work per request.
//!
//! Usage: moat-bench-ceiling LISTEN UPSTREAM   (both `host:port`)

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: moat-bench-ceiling LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(listen, upstream))
}

async fn serve(listen: String, upstream: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(&listen).await?;
    loop {
        let (client, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::task::spawn_local(async move {
            let _ = client.set_nodelay(true);
            let Ok(model) = TcpStream::connect(&upstream).await else {
                return;
            };
            let _ = model.set_nodelay(true);
            let Ok((sender, model_connection)) =
                hyper::client::conn::http1::handshake(TokioIo::new(model)).await
            else {
                return;
            };
            tokio::task::spawn_local(model_connection);
            let sender = Rc::new(RefCell::new(sender));
            let service = hyper::service::service_fn(move |request| {
                pass(sender.clone(), request)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(client), service)
                .await;
        });
    }
}

async fn pass(
    sender: Rc<RefCell<SendRequest<Full<Bytes>>>>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|collected| collected.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    // HTTP/1 serves one request at a time per connection, so the borrow never overlaps.
    let sent = sender
        .borrow_mut()
        .send_request(Request::from_parts(parts, Full::new(body)));
    Ok(match sent.await {
        Ok(response) => response.map(BodyExt::boxed_unsync),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    })
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = code;
    response
}
