//! The gateway's HTTP surface besides plain gRPC: gRPC-Web from browsers,
//! the ledger's tlog-tiles paths, and graceful shutdown.
mod support;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message;
use quis_auth::Role;
use quis_proto::echo::{EchoRequest, EchoResponse, ExpandRequest, echo_service_client::EchoServiceClient};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

async fn http1(
    addr: std::net::SocketAddr,
    req: http::Request<Full<Bytes>>,
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("handshake");
    tokio::spawn(conn);
    let response = sender.send_request(req).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body)
}

#[tokio::test]
async fn grpc_web_calls_work_over_http1() {
    let suite = Suite::start(|_| {}).await;
    let token = suite.token("alice", &[Role::Caseworker]);
    let message = EchoRequest { message: "from a browser".into(), payload: vec![] }.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let req = http::Request::post("/quis.echo.v1.EchoService/Echo")
        .header("host", suite.gateway.to_string())
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(frame)))
        .expect("request");
    let (status, headers, body) = http1(suite.gateway, req).await;
    assert_eq!(status, http::StatusCode::OK);
    assert!(headers["content-type"].to_str().expect("ascii").starts_with("application/grpc-web"), "{headers:?}");
    assert_eq!(body[0], 0, "a data frame first");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let response = EchoResponse::decode(&body[5..5 + len]).expect("decode");
    assert_eq!((response.message.as_str(), response.principal.as_str()), ("from a browser", "alice"));
    let trailers = String::from_utf8_lossy(&body[5 + len + 5..]);
    assert_eq!(body[5 + len], 0x80, "then a trailers frame");
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
}

/// A stand-in for the ledger's tiles HTTP server: answers every GET with its path.
async fn tiles_stand_in() -> std::net::SocketAddr {
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = tcp.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                let reply =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{path}", path.len());
                let _ = tcp.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn tiles_paths_reach_the_tiles_upstream_and_entries_need_a_token() {
    let upstream = tiles_stand_in().await;
    let suite = Suite::start(|c| c.gateway.tiles_upstream = Some(format!("http://{upstream}"))).await;
    let get = |path: &str, token: Option<&str>| {
        let mut b = http::Request::get(path).header("host", "quis");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Full::new(Bytes::new())).expect("request")
    };
    for path in ["/checkpoint", "/tile/0/x001/234", "/tile/1/000.p/7"] {
        let (status, _, body) = http1(suite.gateway, get(path, None)).await;
        assert_eq!(status, http::StatusCode::OK, "{path}");
        assert_eq!(body, path.as_bytes(), "forwarded unchanged");
    }
    let (status, _, _) = http1(suite.gateway, get("/tile/entries/000", None)).await;
    assert_eq!(status, http::StatusCode::UNAUTHORIZED, "entry bundles need a token");
    let token = suite.token("audrey", &[Role::Auditor]);
    let (status, _, body) = http1(suite.gateway, get("/tile/entries/000", Some(&token))).await;
    assert_eq!((status, body.as_ref()), (http::StatusCode::OK, b"/tile/entries/000".as_ref()));
}

#[tokio::test]
async fn shutdown_turns_health_off_first_and_lets_calls_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.shutdown.drain_delay_ms = 500;
    config.shutdown.grace_secs = 10;
    let config = Arc::new(config);
    let stop = tokio_util::sync::CancellationToken::new();
    let echo = serve_backend(&config, quis_echo::build(), stop.clone()).await;
    let token = caseworker_token(dir.path(), &config);
    let channel = channel(echo).await;
    let mut health = HealthClient::new(channel.clone());
    let serving = eventually(Duration::from_secs(5), async || {
        health.check(HealthCheckRequest::default()).await.map(|r| r.into_inner().status).ok()
            == Some(ServingStatus::Serving as i32)
    })
    .await;
    assert!(serving);

    // A call that takes ~1.5 s is in flight when the shutdown starts.
    let mut client = EchoServiceClient::new(channel.clone());
    let mut stream = client
        .expand(with_token(ExpandRequest { message: "m".into(), count: 15, interval_ms: 100 }, &token))
        .await
        .expect("stream")
        .into_inner();
    stream.message().await.expect("first").expect("some");
    stop.cancel();
    let status = health.check(HealthCheckRequest::default()).await.expect("health during drain").into_inner().status;
    assert_eq!(status, ServingStatus::NotServing as i32, "health turns NOT_SERVING first");
    let mut received = 1;
    while let Some(_item) = stream.message().await.expect("the in-flight call completes") {
        received += 1;
    }
    assert_eq!(received, 15);
}
