//! Helpers shared by the suite's tests (one copy, used by the service crates'
//! tests and the `quis` end-to-end tests): real listeners on `127.0.0.1:0`
//! bound before serving, channels and bearer tokens, a backend served by the
//! runtime with its own verifier, fresh PostgreSQL databases on the local
//! server, access events with their commitments and details, polling without
//! fixed sleeps, and a TCP relay whose connections a test can cut.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use quis_auth::TokenVerifier;
use quis_core::{QuisConfig, health::Readiness};
use quis_proto::ledger::{AccessEvent, Action, Actor, Commitment, Decision, Event, EventDetail, Purpose, event::Kind};
use quis_runtime::{BuiltService, ServiceContext};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, transport::Channel};

/// A listener on a free loopback port, and its address.
pub async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

/// Serves a backend with its own verifier (as its own process would), until `stop`.
pub async fn serve_backend(config: &Arc<QuisConfig>, service: BuiltService, stop: CancellationToken) -> SocketAddr {
    let (l, addr) = listener().await;
    let verifier = TokenVerifier::from_config(config, stop.clone()).await.expect("verifier");
    let ctx = ServiceContext { config: Arc::clone(config), verifier, shutdown: stop };
    tokio::spawn(async move { quis_runtime::serve(&ctx, service, l, Readiness::default()).await });
    addr
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect")
}

pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    req
}

/// The `ErrorInfo.reason` of a status.
pub fn reason(status: &Status) -> String {
    use tonic_types::StatusExt;
    status.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default()
}

/// The fields named by a status's `BadRequest` violations.
pub fn violation_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

#[track_caller]
pub fn assert_refused(status: &Status, code: Code, expected_reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(status), expected_reason, "{status:?}");
}

/// A fresh PostgreSQL database on the local server.
pub async fn postgres_url() -> String {
    let name = format!("quis_test_{}", uuid::Uuid::new_v4().simple());
    let admin = quis_core::db::Db::connect("postgres://postgres@127.0.0.1:5432/postgres").await.expect("postgres");
    let quis_core::db::Db::Postgres(pool) = admin else { unreachable!("a postgres:// URL opens PostgreSQL") };
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.expect("create database");
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

/// Polls `f` until it returns true or `within` passes.
pub async fn eventually(within: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// A salted commitment to `value`, and the detail that opens it.
pub fn commitment(value: &str) -> (Commitment, EventDetail) {
    let salt = uuid::Uuid::new_v4().to_string().into_bytes();
    let digest = Sha256::new().chain_update(&salt).chain_update(value.as_bytes()).finalize().to_vec();
    (Commitment { digest }, EventDetail { salt, value: value.into() })
}

/// An access event by staff member `actor` from `host` on `subject`, with its details; an allowed
/// access declares casework on `cases/c-1`.
pub fn access(actor: &str, host: &str, action: Action, decision: Decision, subject: &str) -> (Event, Vec<EventDetail>) {
    let (subject, detail) = commitment(subject);
    let allowed = decision == Decision::Allow;
    let event = AccessEvent {
        actor: Some(Actor {
            principal: actor.into(),
            kind: "staff".into(),
            source_address: host.into(),
            ..Default::default()
        }),
        action: action as i32,
        subject: Some(subject),
        purpose: if allowed { Purpose::Casework as i32 } else { Purpose::Unspecified as i32 },
        case: if allowed { "cases/c-1".into() } else { String::new() },
        decision: decision as i32,
        ..Default::default()
    };
    (Event { kind: Some(Kind::Access(event)) }, vec![detail])
}

/// A TCP relay in front of a server whose live connections a test can cut, as a
/// network failure or a server restart would.
pub struct Relay {
    pub addr: SocketAddr,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let (l, addr) = listener().await;
        let connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let live = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = l.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                live.lock().expect("lock").push(task.abort_handle());
            }
        });
        Relay { addr, connections, accept }
    }

    /// Drops every live connection (new ones are accepted).
    pub fn cut(&self) {
        for c in self.connections.lock().expect("lock").drain(..) {
            c.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
