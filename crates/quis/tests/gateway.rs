//! The gateway over real sockets: every rejection with its status and reason,
//! the four call shapes, cancellation, limits, gRPC-Web, reflection, tiles.
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
use futures::StreamExt;
use quis_auth::Role;
use quis_proto::echo::{
    ChatRequest, CollectRequest, EchoRequest, ExpandRequest, echo_service_client::EchoServiceClient,
};
use support::*;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

async fn echo_with(suite: &Suite, token: &str) -> Result<String, tonic::Status> {
    let mut client = EchoServiceClient::new(suite.channel().await);
    client
        .echo(with_token(EchoRequest { message: "hi".into(), payload: vec![] }, token))
        .await
        .map(|r| r.into_inner().principal)
}

#[tokio::test]
async fn health_answers_without_a_token_and_calls_need_one() {
    let suite = Suite::start(|_| {}).await;
    let mut health = HealthClient::new(suite.channel().await);
    let serving = eventually(Duration::from_secs(5), async || {
        health.check(HealthCheckRequest { service: String::new() }).await.map(|r| r.into_inner().status).ok()
            == Some(ServingStatus::Serving as i32)
    })
    .await;
    assert!(serving, "the suite's health turns SERVING through the gateway");
    let echo_serving = eventually(Duration::from_secs(5), async || {
        health
            .check(HealthCheckRequest { service: "quis.echo.v1.EchoService".into() })
            .await
            .map(|r| r.into_inner().status)
            .ok()
            == Some(ServingStatus::Serving as i32)
    })
    .await;
    assert!(echo_serving, "each service's health is published too");

    let mut client = EchoServiceClient::new(suite.channel().await);
    let err = client.echo(EchoRequest::default()).await.expect_err("no token");
    assert_refused(&err, Code::Unauthenticated, "TOKEN_MISSING");

    let token = suite.token("alice", &[Role::Caseworker]);
    assert_eq!(echo_with(&suite, &token).await.expect("allowed"), "alice");
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_refused_with_their_reason() {
    let suite = Suite::start(|_| {}).await;
    let kid = kid(suite.dir.path());
    let config = &suite.config;

    // Signed by a key the suite does not trust, under the trusted kid.
    let rogue = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let rogue_pem = rogue.to_pkcs8_pem(LineEnding::LF).expect("pem");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    let bad_signature = jsonwebtoken::encode(
        &header,
        &claims(config),
        &jsonwebtoken::EncodingKey::from_ed_pem(rogue_pem.as_bytes()).expect("key"),
    )
    .expect("sign");

    let alg_none = forge(serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid}), claims(config), b"");
    // The classic confusion: HMAC keyed with the public key.
    let public = std::fs::read(suite.dir.path().join("keys/jwks.json")).expect("jwks");
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(&hs_header, &claims(config), &jsonwebtoken::EncodingKey::from_secret(&public))
        .expect("hs256");

    let signing_pem = std::fs::read(suite.dir.path().join("keys/token-signing.pem")).expect("pem");
    let real_key = jsonwebtoken::EncodingKey::from_ed_pem(&signing_pem).expect("key");
    let sign = |header_kid: &str, claims: serde_json::Value| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = Some(header_kid.to_string());
        jsonwebtoken::encode(&h, &claims, &real_key).expect("sign")
    };
    let mut expired = claims(config);
    expired["iat"] = (now() - 7200).into();
    expired["nbf"] = (now() - 7200).into();
    expired["exp"] = (now() - 3600).into();
    let mut future = claims(config);
    future["nbf"] = (now() + 3600).into();
    let mut wrong_aud = claims(config);
    wrong_aud["aud"] = "someone-else".into();
    let mut wrong_iss = claims(config);
    wrong_iss["iss"] = "https://evil.example".into();

    let cases = [
        ("bad signature", bad_signature, Code::Unauthenticated, "TOKEN_BAD_SIGNATURE"),
        ("alg none", alg_none, Code::Unauthenticated, "TOKEN_ALGORITHM_NOT_ALLOWED"),
        ("HS256 with the public key", hs256, Code::Unauthenticated, "TOKEN_ALGORITHM_NOT_ALLOWED"),
        ("expired", sign(&kid, expired), Code::Unauthenticated, "TOKEN_EXPIRED"),
        ("not yet valid", sign(&kid, future), Code::Unauthenticated, "TOKEN_NOT_YET_VALID"),
        ("wrong audience", sign(&kid, wrong_aud), Code::Unauthenticated, "TOKEN_WRONG_AUDIENCE"),
        ("wrong issuer", sign(&kid, wrong_iss), Code::Unauthenticated, "TOKEN_WRONG_ISSUER"),
        ("unknown kid", sign("not-a-known-key", claims(config)), Code::Unauthenticated, "TOKEN_UNKNOWN_KEY"),
        ("garbage", "a.b.c".to_string(), Code::Unauthenticated, "TOKEN_MALFORMED"),
    ];
    for (name, token, code, reason) in cases {
        let err = echo_with(&suite, &token).await.expect_err(name);
        assert_eq!(err.code(), code, "{name}: {err:?}");
        assert_eq!(support::reason(&err), reason, "{name}: {err:?}");
    }
    // The real key under the real kid passes, so the cases above fail for their stated reason.
    assert!(echo_with(&suite, &sign(&kid, claims(config))).await.is_ok());
}

#[tokio::test]
async fn backends_verify_tokens_themselves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Arc::new(test_config(dir.path()));
    let stop = tokio_util::sync::CancellationToken::new();
    let echo = serve_backend(&config, quis_echo::build(), stop.clone()).await;
    let mut client = EchoServiceClient::new(channel(echo).await);
    // A caller that skips the gateway gets nothing without a valid token.
    let err = client.echo(EchoRequest::default()).await.expect_err("no token");
    assert_refused(&err, Code::Unauthenticated, "TOKEN_MISSING");
    let forged = forge(serde_json::json!({"alg": "none"}), claims(&config), b"");
    let err = client.echo(with_token(EchoRequest::default(), &forged)).await.expect_err("forged");
    assert_refused(&err, Code::Unauthenticated, "TOKEN_ALGORITHM_NOT_ALLOWED");
    // Reflection needs a token too; health does not.
    let mut health = HealthClient::new(channel(echo).await);
    assert!(health.check(HealthCheckRequest { service: String::new() }).await.is_ok());
    stop.cancel();
}

#[tokio::test]
async fn oversize_messages_are_refused_at_the_edge() {
    let suite = Suite::start(|c| c.gateway.max_message_bytes = 64 * 1024).await;
    let token = suite.token("alice", &[Role::Caseworker]);
    let mut client = EchoServiceClient::new(suite.channel().await);
    let ok = client.echo(with_token(EchoRequest { message: String::new(), payload: vec![1; 60 * 1024] }, &token)).await;
    assert!(ok.is_ok(), "{ok:?}");
    let err = client
        .echo(with_token(EchoRequest { message: String::new(), payload: vec![1; 100 * 1024] }, &token))
        .await
        .expect_err("too large");
    assert_refused(&err, Code::ResourceExhausted, "MESSAGE_TOO_LARGE");
    // The connection stays usable.
    assert!(echo_with(&suite, &token).await.is_ok());
}

#[tokio::test]
async fn rate_limits_answer_resource_exhausted_with_retry_info() {
    let suite = Suite::start(|c| {
        c.gateway.rate_limit.per_principal_per_sec = 1;
        c.gateway.rate_limit.per_principal_burst = 3;
    })
    .await;
    let token = suite.token("alice", &[Role::Caseworker]);
    for _ in 0..3 {
        echo_with(&suite, &token).await.expect("within the burst");
    }
    let err = echo_with(&suite, &token).await.expect_err("over the limit");
    assert_refused(&err, Code::ResourceExhausted, "RATE_LIMITED");
    use tonic_types::StatusExt;
    let retry = err.get_error_details().retry_info().and_then(|r| r.retry_delay).expect("RetryInfo");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1), "{retry:?}");
    // Another principal has its own bucket.
    assert!(echo_with(&suite, &suite.token("bob", &[Role::Caseworker])).await.is_ok());
}

async fn raw_unary(channel: tonic::transport::Channel, path: &'static str, token: &str) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<EchoRequest, quis_proto::echo::EchoResponse>::default();
    grpc.unary(with_token(EchoRequest::default(), token), http::uri::PathAndQuery::from_static(path), codec)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn unknown_services_and_internal_methods_are_unimplemented() {
    let suite = Suite::start(|c| c.gateway.internal_methods = vec!["/quis.echo.v1.EchoService/Collect".into()]).await;
    let token = suite.token("alice", &[Role::Caseworker]);
    let err =
        raw_unary(suite.channel().await, "/quis.nothing.v1.NothingService/Do", &token).await.expect_err("unknown");
    assert_refused(&err, Code::Unimplemented, "UNKNOWN_SERVICE");
    let err = raw_unary(suite.channel().await, "/not.a.quis.Path/Do", &token).await.expect_err("unknown");
    assert_refused(&err, Code::Unimplemented, "UNKNOWN_SERVICE");
    // An internal method looks exactly like an unknown one from outside.
    let err =
        raw_unary(suite.channel().await, "/quis.echo.v1.EchoService/Collect", &token).await.expect_err("internal");
    assert_refused(&err, Code::Unimplemented, "UNKNOWN_SERVICE");
}

#[tokio::test]
async fn a_dead_upstream_is_unavailable_quickly() {
    let (l, dead) = listener().await;
    drop(l);
    let suite = Suite::start(|c| {
        c.gateway.upstreams.insert("echo".into(), vec![format!("http://{dead}")]).map(|_| ()).unwrap_or(())
    })
    .await;
    let token = suite.token("alice", &[Role::Caseworker]);
    let started = std::time::Instant::now();
    let err = echo_with(&suite, &token).await.expect_err("dead upstream");
    assert_refused(&err, Code::Unavailable, "UPSTREAM_UNAVAILABLE");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn idle_connections_do_not_stop_other_clients() {
    let suite = Suite::start(|c| {
        c.gateway.header_read_timeout_ms = 500;
        c.gateway.max_connections_per_address = 1000;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(suite.gateway).await.expect("connect"));
    }
    let token = suite.token("alice", &[Role::Caseworker]);
    assert_eq!(echo_with(&suite, &token).await.expect("served despite idle sockets"), "alice");
    // And the silent ones are closed after the first-bytes deadline.
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        idle[0].read(&mut buf).await
    })
    .await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "idle connection still open: {closed:?}");
}

#[tokio::test]
async fn all_four_call_shapes_stream_through_the_gateway() {
    let suite = Suite::start(|_| {}).await;
    let token = suite.token("alice", &[Role::Caseworker]);
    let mut client = EchoServiceClient::new(suite.channel().await);

    let unary = client
        .echo(with_token(EchoRequest { message: "one".into(), payload: vec![9; 10] }, &token))
        .await
        .expect("unary");
    assert_eq!(unary.into_inner().payload, vec![9; 10]);

    let mut expand = client
        .expand(with_token(ExpandRequest { message: "m".into(), count: 5, interval_ms: 0 }, &token))
        .await
        .expect("server stream")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(item) = expand.message().await.expect("item") {
        seen.push(item.sequence);
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);

    let upload = futures::stream::iter((0..7).map(|i| CollectRequest { payload: vec![0; i] }));
    let collected = client.collect(with_token(upload, &token)).await.expect("client stream").into_inner();
    assert_eq!((collected.message_count, collected.total_bytes), (7, 21));

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut answers = client
        .chat(with_token(tokio_stream::wrappers::ReceiverStream::new(rx), &token))
        .await
        .expect("bidi")
        .into_inner();
    for i in 0..3 {
        tx.send(ChatRequest { message: format!("m{i}") }).await.expect("send");
        let answer = answers.message().await.expect("answer").expect("some");
        assert_eq!((answer.message, answer.sequence), (format!("m{i}"), i as u64));
    }
    drop(tx);
    assert!(answers.message().await.expect("end").is_none());

    let err = client
        .expand(with_token(ExpandRequest { message: String::new(), count: 0, interval_ms: 0 }, &token))
        .await
        .expect_err("invalid");
    assert_refused(&err, Code::InvalidArgument, "INVALID_ARGUMENT");
    use tonic_types::StatusExt;
    assert_eq!(err.get_error_details().bad_request().expect("BadRequest").field_violations[0].field, "count");
}

/// An echo whose Expand stream reports when it is dropped (the call was cancelled).
#[derive(Clone)]
struct Watched(Arc<AtomicUsize>);

struct DropFlag(Arc<AtomicUsize>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tonic::async_trait]
impl quis_proto::echo::echo_service_server::EchoService for Watched {
    async fn echo(
        &self,
        r: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<quis_proto::echo::EchoResponse>, tonic::Status> {
        quis_echo::Echo.echo(r).await
    }
    type ExpandStream = futures::stream::BoxStream<'static, Result<quis_proto::echo::ExpandResponse, tonic::Status>>;
    async fn expand(
        &self,
        _: tonic::Request<ExpandRequest>,
    ) -> Result<tonic::Response<Self::ExpandStream>, tonic::Status> {
        let flag = DropFlag(Arc::clone(&self.0));
        let stream = futures::stream::unfold((0u32, flag), |(i, flag)| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok(quis_proto::echo::ExpandResponse { message: String::new(), sequence: i }), (i + 1, flag)))
        });
        Ok(tonic::Response::new(stream.boxed()))
    }
    async fn collect(
        &self,
        r: tonic::Request<tonic::Streaming<CollectRequest>>,
    ) -> Result<tonic::Response<quis_proto::echo::CollectResponse>, tonic::Status> {
        quis_echo::Echo.collect(r).await
    }
    type ChatStream = <quis_echo::Echo as quis_proto::echo::echo_service_server::EchoService>::ChatStream;
    async fn chat(
        &self,
        r: tonic::Request<tonic::Streaming<ChatRequest>>,
    ) -> Result<tonic::Response<Self::ChatStream>, tonic::Status> {
        quis_echo::Echo.chat(r).await
    }
}

#[tokio::test]
async fn cancelling_a_call_cancels_it_upstream() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    let stop = tokio_util::sync::CancellationToken::new();
    let base = Arc::new(config.clone());
    let watched = quis_runtime::BuiltService {
        name: "echo",
        grpc_names: vec!["quis.echo.v1.EchoService"],
        routes: tonic::service::Routes::new(quis_proto::echo::echo_service_server::EchoServiceServer::new(Watched(
            Arc::clone(&dropped),
        ))),
        readiness: vec![],
    };
    let echo = serve_backend(&base, watched, stop.clone()).await;
    config.gateway.upstreams.insert("echo".into(), vec![format!("http://{echo}")]);
    let config = Arc::new(config);
    let gateway = serve_gateway(&config, stop.clone()).await;
    let token = caseworker_token(dir.path(), &config);

    let mut client = EchoServiceClient::new(channel(gateway).await);
    let mut stream = client
        .expand(with_token(ExpandRequest { message: String::new(), count: 10_000, interval_ms: 0 }, &token))
        .await
        .expect("stream")
        .into_inner();
    stream.message().await.expect("first").expect("some");
    stream.message().await.expect("second").expect("some");
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    drop(stream);
    let cancelled = eventually(Duration::from_secs(5), async || dropped.load(Ordering::SeqCst) == 1).await;
    assert!(cancelled, "the upstream stream was not cancelled");
    stop.cancel();
}

/// An echo that answers with the headers the gateway forwarded.
#[derive(Clone)]
struct Headers;

#[tonic::async_trait]
impl quis_proto::echo::echo_service_server::EchoService for Headers {
    async fn echo(
        &self,
        r: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<quis_proto::echo::EchoResponse>, tonic::Status> {
        let get = |name: &str| r.metadata().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let message = format!("{}|{}|{}", get("quis-source-address"), get("x-request-id"), get("traceparent"));
        Ok(tonic::Response::new(quis_proto::echo::EchoResponse { message, payload: vec![], principal: String::new() }))
    }
    type ExpandStream = <quis_echo::Echo as quis_proto::echo::echo_service_server::EchoService>::ExpandStream;
    async fn expand(
        &self,
        r: tonic::Request<ExpandRequest>,
    ) -> Result<tonic::Response<Self::ExpandStream>, tonic::Status> {
        quis_echo::Echo.expand(r).await
    }
    async fn collect(
        &self,
        r: tonic::Request<tonic::Streaming<CollectRequest>>,
    ) -> Result<tonic::Response<quis_proto::echo::CollectResponse>, tonic::Status> {
        quis_echo::Echo.collect(r).await
    }
    type ChatStream = <quis_echo::Echo as quis_proto::echo::echo_service_server::EchoService>::ChatStream;
    async fn chat(
        &self,
        r: tonic::Request<tonic::Streaming<ChatRequest>>,
    ) -> Result<tonic::Response<Self::ChatStream>, tonic::Status> {
        quis_echo::Echo.chat(r).await
    }
}

#[tokio::test]
async fn request_ids_trace_context_and_source_addresses_are_set_by_the_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    let stop = tokio_util::sync::CancellationToken::new();
    let base = Arc::new(config.clone());
    let upstream = quis_runtime::BuiltService {
        name: "echo",
        grpc_names: vec!["quis.echo.v1.EchoService"],
        routes: tonic::service::Routes::new(quis_proto::echo::echo_service_server::EchoServiceServer::new(Headers)),
        readiness: vec![],
    };
    let echo = serve_backend(&base, upstream, stop.clone()).await;
    config.gateway.upstreams.insert("echo".into(), vec![format!("http://{echo}")]);
    let config = Arc::new(config);
    let gateway = serve_gateway(&config, stop.clone()).await;
    let token = caseworker_token(dir.path(), &config);

    let mut client = EchoServiceClient::new(channel(gateway).await);
    let mut req = with_token(EchoRequest::default(), &token);
    req.metadata_mut().insert("x-request-id", "req-123".parse().expect("id"));
    req.metadata_mut().insert("quis-source-address", "10.9.9.9".parse().expect("spoof"));
    req.metadata_mut()
        .insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().expect("trace"));
    let response = client.echo(req).await.expect("echo");
    assert_eq!(response.metadata().get("x-request-id").map(|v| v.to_str().expect("ascii")), Some("req-123"));
    let seen = response.into_inner().message;
    let parts: Vec<_> = seen.split('|').collect();
    assert_eq!(parts[0], "127.0.0.1", "the upstream sees the peer the gateway saw, not the caller's claim");
    assert_eq!(parts[1], "req-123");
    assert!(parts[2].starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "the trace continues: {}", parts[2]);
    assert!(!parts[2].contains("00f067aa0ba902b7"), "with the gateway's own span id");

    let response = client.echo(with_token(EchoRequest::default(), &token)).await.expect("echo");
    let id = response.metadata().get("x-request-id").expect("made up when absent").to_str().expect("ascii").to_string();
    assert_eq!(response.into_inner().message.split('|').nth(1), Some(id.as_str()), "the upstream gets the same id");
    stop.cancel();
}

#[tokio::test]
async fn reflection_needs_a_token() {
    use tonic_reflection_client::*;
    let suite = Suite::start(|_| {}).await;
    let token = suite.token("alice", &[Role::Caseworker]);
    let err = list_services(suite.channel().await, None).await.expect_err("no token");
    assert_refused(&err, Code::Unauthenticated, "TOKEN_MISSING");
    let services = list_services(suite.channel().await, Some(&token)).await.expect("with token");
    assert!(services.contains(&"quis.echo.v1.EchoService".to_string()), "{services:?}");
    assert!(services.contains(&"quis.identity.v1.IdentityService".to_string()), "{services:?}");
}

/// A minimal reflection client (list services), over the generated tonic-reflection types.
mod tonic_reflection_client {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    pub async fn list_services(
        channel: tonic::transport::Channel,
        token: Option<&str>,
    ) -> Result<Vec<String>, tonic::Status> {
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut req = tonic::Request::new(futures::stream::iter(vec![request]));
        if let Some(t) = token {
            req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
        }
        let mut responses = client.server_reflection_info(req).await?.into_inner();
        let response = responses.message().await?.ok_or_else(|| tonic::Status::internal("no response"))?;
        match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => Ok(list.service.into_iter().map(|s| s.name).collect()),
            other => Err(tonic::Status::internal(format!("unexpected {other:?}"))),
        }
    }
}

#[tokio::test]
async fn many_calls_in_flight_on_one_connection_all_succeed() {
    let suite = Suite::start(|c| c.gateway.max_concurrent_streams = 1024).await;
    let token = suite.token("alice", &[Role::Caseworker]);
    let channel = suite.channel().await;
    let calls =
        (0..400).map(|i| {
            let mut client = EchoServiceClient::new(channel.clone());
            let token = token.clone();
            async move {
                client.echo(with_token(EchoRequest { message: format!("{i}"), payload: vec![0; 64] }, &token)).await
            }
        });
    let results = futures::future::join_all(calls).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of 400 concurrent calls failed, e.g. {:?}", failed.len(), failed.first());
}
