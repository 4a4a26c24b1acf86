//! The real binary as separate processes: `quis up` from nothing, a service
//! per process behind the gateway with one replica killed, key files that
//! others can read, and SIGTERM.
mod support;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use quis_proto::{
    echo::{EchoRequest, echo_service_client::EchoServiceClient},
    sentinel::{ListDetectionsRequest, sentinel_service_client::SentinelServiceClient},
};
use support::*;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const QUIS: &str = env!("CARGO_BIN_EXE_quis");

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `quis args…` and waits for the stdout line starting with `prefix`; returns the address after it.
fn spawn_until(args: &[&str], envs: &[(&str, &str)], prefix: &str) -> (Proc, SocketAddr) {
    let (proc, addrs) = spawn_until_all(args, envs, &[prefix]);
    (proc, addrs[0])
}

/// Like [`spawn_until`], for several lines in order.
fn spawn_until_all(args: &[&str], envs: &[(&str, &str)], prefixes: &[&str]) -> (Proc, Vec<SocketAddr>) {
    let mut cmd = Command::new(QUIS);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::null()).env("QUIS_LOG__FORMAT", "json");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn quis");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut addrs = Vec::new();
    for prefix in prefixes {
        let addr = loop {
            let line = lines.next().expect("quis exited before printing its address").expect("read");
            if let Some(rest) = line.strip_prefix(prefix) {
                break rest.trim().parse::<SocketAddr>().expect("address");
            }
        };
        addrs.push(addr);
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), addrs)
}

/// A plain HTTP/1.0 GET; returns the status and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nhost: quis\r\n\r\n").as_bytes()).await.expect("write");
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.expect("read");
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn quis_token(data_dir: &str, sub: &str, role: &str) -> String {
    quis_token_of_kind(data_dir, sub, role, "staff")
}

fn quis_token_of_kind(data_dir: &str, sub: &str, role: &str, kind: &str) -> String {
    let out = Command::new(QUIS)
        .args(["--data-dir", data_dir, "token", "--sub", sub, "--role", role, "--kind", kind, "--ttl", "10m"])
        .output()
        .expect("quis token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8").trim().to_string()
}

async fn serving(addr: SocketAddr) -> bool {
    let Ok(channel) = tonic::transport::Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await
    else {
        return false;
    };
    HealthClient::new(channel).check(HealthCheckRequest::default()).await.map(|r| r.into_inner().status).ok()
        == Some(ServingStatus::Serving as i32)
}

#[tokio::test]
async fn quis_up_from_nothing_serves_through_the_gateway_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf8");
    let (mut up, addrs) = spawn_until_all(
        &["--data-dir", data, "up", "--port", "0", "--admin-port", "0"],
        &[],
        &["gateway listening on ", "admin (/livez /readyz /metrics) on http://"],
    );
    let (gateway, admin) = (addrs[0], addrs[1]);
    assert!(eventually(Duration::from_secs(10), async || serving(gateway).await).await, "health through the gateway");

    let token = quis_token(data, "alice", "caseworker");
    let mut client = EchoServiceClient::new(channel(gateway).await);
    let reply =
        client.echo(with_token(EchoRequest { message: "hello".into(), payload: vec![] }, &token)).await.expect("echo");
    assert_eq!(reply.into_inner().principal, "alice");

    // Sentinel runs in the suite and is routed by the gateway, for investigators only.
    let investigator = quis_token(data, "ivy", "investigator");
    let mut sentinel = SentinelServiceClient::new(channel(gateway).await);
    let detections = sentinel
        .list_detections(with_token(ListDetectionsRequest {}, &investigator))
        .await
        .expect("sentinel through the gateway")
        .into_inner()
        .detections;
    assert!(detections.iter().any(|d| d.id == "ledger-integrity"), "{detections:?}");
    let refused = sentinel.list_detections(with_token(ListDetectionsRequest {}, &token)).await.expect_err("caseworker");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    assert_eq!(http_get(admin, "/livez").await.0, 200);
    assert_eq!(http_get(admin, "/readyz").await.0, 200);
    let (status, metrics) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("quis_grpc_requests_total") && metrics.contains("method=\"Echo\""),
        "call metrics are exported:\n{metrics}"
    );

    Command::new("kill").args(["-TERM", &up.0.id().to_string()]).status().expect("kill");
    let exited = eventually(Duration::from_secs(10), async || matches!(up.0.try_wait(), Ok(Some(_)))).await;
    assert!(exited, "quis up stops on SIGTERM");
    assert!(up.0.wait().expect("status").success());
}

#[tokio::test]
async fn with_two_replicas_and_one_killed_calls_keep_succeeding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8");
    let mut config = test_config(dir.path());
    let env = [("QUIS_SERVICES__ECHO__LISTEN", "127.0.0.1:0"), ("QUIS_SERVICES__ECHO__ADMIN_LISTEN", "127.0.0.1:0")];
    let (mut first, a) = spawn_until(&["--data-dir", data, "serve", "echo"], &env, "echo listening on ");
    let (_second, b) = spawn_until(&["--data-dir", data, "serve", "echo"], &env, "echo listening on ");
    config.gateway.upstreams.insert("echo".into(), vec![format!("http://{a}"), format!("http://{b}")]);
    let config = Arc::new(config);
    let stop = tokio_util::sync::CancellationToken::new();
    let gateway = serve_gateway(&config, stop.clone()).await;
    let token = quis_token(data, "alice", "caseworker");
    let mut client = EchoServiceClient::new(channel(gateway).await);
    for _ in 0..10 {
        client.echo(with_token(EchoRequest::default(), &token)).await.expect("both replicas up");
    }
    first.0.kill().expect("kill -9 one replica");
    first.0.wait().expect("reaped");
    for i in 0..50 {
        client
            .echo(with_token(EchoRequest::default(), &token))
            .await
            .unwrap_or_else(|e| panic!("call {i} after the kill: {e:?}"));
    }
    stop.cancel();
}

#[test]
fn a_key_file_readable_by_others_stops_the_service_naming_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8");
    let init = Command::new(QUIS).args(["--data-dir", data, "init"]).output().expect("init");
    assert!(init.status.success());
    let key = dir.path().join("keys/token-signing.pem");
    assert_eq!(std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777, 0o600, "created owner-only");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let up = Command::new(QUIS).args(["--data-dir", data, "up", "--port", "0"]).output().expect("up");
    assert!(!up.status.success(), "quis up must refuse to start");
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(stderr.contains(&key.display().to_string()), "the message names the file: {stderr}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // A service with TLS refuses an open TLS key the same way.
    let tls_key = dir.path().join("pki/service.key");
    std::fs::set_permissions(&tls_key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let serve = Command::new(QUIS)
        .args(["--data-dir", data, "serve", "echo"])
        .env("QUIS_TLS__ENABLED", "true")
        .env("QUIS_SERVICES__ECHO__LISTEN", "127.0.0.1:0")
        .env("QUIS_SERVICES__ECHO__ADMIN_LISTEN", "127.0.0.1:0")
        .output()
        .expect("serve");
    assert!(!serve.status.success(), "quis serve must refuse to start");
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(stderr.contains(&tls_key.display().to_string()), "the message names the file: {stderr}");
}

#[tokio::test]
async fn mutual_tls_between_gateway_and_services() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8");
    let mut config = test_config(dir.path());
    let tls = [
        ("QUIS_TLS__ENABLED", "true"),
        ("QUIS_TLS__MUTUAL", "true"),
        ("QUIS_SERVICES__ECHO__LISTEN", "127.0.0.1:0"),
        ("QUIS_SERVICES__ECHO__ADMIN_LISTEN", "127.0.0.1:0"),
    ];
    let (_echo, echo) = spawn_until(&["--data-dir", data, "serve", "echo"], &tls, "echo listening on ");
    config.tls.enabled = true;
    config.tls.mutual = true;
    config.gateway.upstreams.insert("echo".into(), vec![format!("https://localhost:{}", echo.port())]);
    let config = Arc::new(config);
    let stop = tokio_util::sync::CancellationToken::new();
    let gateway = serve_gateway(&config, stop.clone()).await;
    let token = quis_token(data, "alice", "caseworker");
    let ca = std::fs::read(dir.path().join("pki/ca.crt")).expect("ca");
    let client_tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
        .domain_name("localhost");
    let channel = tonic::transport::Channel::from_shared(format!("https://localhost:{}", gateway.port()))
        .expect("uri")
        .tls_config(client_tls.clone())
        .expect("tls")
        .connect()
        .await
        .expect("TLS to the gateway");
    let reply =
        EchoServiceClient::new(channel).echo(with_token(EchoRequest::default(), &token)).await.expect("through mTLS");
    assert_eq!(reply.into_inner().principal, "alice");

    // Without a client certificate the service itself refuses the connection.
    let direct = tonic::transport::Channel::from_shared(format!("https://localhost:{}", echo.port()))
        .expect("uri")
        .tls_config(client_tls)
        .expect("tls")
        .connect()
        .await;
    let refused = match direct {
        Err(_) => true,
        Ok(ch) => EchoServiceClient::new(ch).echo(with_token(EchoRequest::default(), &token)).await.is_err(),
    };
    assert!(refused, "a client without a certificate must not reach a service under mutual TLS");
    stop.cancel();
}

/// An access event on a fresh commitment of `subject`, with its detail and digest.
fn ledger_access(subject: &str) -> ((quis_proto::ledger::Event, quis_proto::ledger::EventDetail), Vec<u8>) {
    use quis_proto::ledger::{
        AccessEvent, Action, Actor, Commitment, Decision, Event, EventDetail, Purpose, event::Kind,
    };
    use sha2::Digest;
    let salt = uuid().into_bytes();
    let digest = sha2::Sha256::new().chain_update(&salt).chain_update(subject.as_bytes()).finalize().to_vec();
    let event = AccessEvent {
        actor: Some(Actor { principal: "alice".into(), kind: "staff".into(), ..Default::default() }),
        action: Action::Read as i32,
        subject: Some(Commitment { digest: digest.clone() }),
        purpose: Purpose::Casework as i32,
        decision: Decision::Allow as i32,
        ..Default::default()
    };
    ((Event { kind: Some(Kind::Access(event)) }, EventDetail { salt, value: subject.into() }), digest)
}

fn subject_digest(entry: &[u8]) -> Vec<u8> {
    use prost::Message;
    let entry = quis_proto::ledger::LedgerEntry::decode(entry).expect("a LedgerEntry");
    match entry.event.and_then(|e| e.kind) {
        Some(quis_proto::ledger::event::Kind::Access(a)) => a.subject.map(|c| c.digest).unwrap_or_default(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn a_ledger_killed_mid_burst_keeps_every_acknowledged_entry() {
    use quis_proto::ledger::{
        AppendEventsRequest, GetCheckpointRequest, GetEntriesRequest, ledger_service_client::LedgerServiceClient,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8");
    test_config(dir.path());
    let env = [
        ("QUIS_SERVICES__LEDGER__LISTEN", "127.0.0.1:0"),
        ("QUIS_SERVICES__LEDGER__ADMIN_LISTEN", "127.0.0.1:0"),
        ("QUIS_LEDGER__HTTP_LISTEN", "127.0.0.1:0"),
        ("QUIS_LEDGER__CHECKPOINT_INTERVAL_MS", "50"),
    ];
    let (mut ledger, addr) = spawn_until(&["--data-dir", data, "serve", "ledger"], &env, "ledger listening on ");
    let vault = quis_token_of_kind(data, "vault", "service", "service");
    let auditor = quis_token(data, "audrey", "auditor");

    // Sixteen appenders send batches until the process dies under them; each
    // remembers which commitment the ledger acknowledged at which index.
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<(u64, Vec<u8>)>::new()));
    let mut appenders = Vec::new();
    for worker in 0..16 {
        let (acknowledged, vault) = (Arc::clone(&acknowledged), vault.clone());
        let mut client = LedgerServiceClient::new(channel(addr).await);
        appenders.push(tokio::spawn(async move {
            for round in 0.. {
                let (pairs, digests): (Vec<_>, Vec<_>) =
                    (0..8).map(|i| ledger_access(&format!("s-{worker}-{round}-{i}"))).unzip();
                let (events, details) = pairs.into_iter().unzip();
                match client.append_events(with_token(AppendEventsRequest { events, details }, &vault)).await {
                    Ok(r) => acknowledged.lock().expect("lock").extend(r.into_inner().indices.into_iter().zip(digests)),
                    Err(_) => return,
                }
            }
        }));
    }
    let enough = eventually(Duration::from_secs(30), async || acknowledged.lock().expect("lock").len() >= 2_000).await;
    assert!(enough, "appends were acknowledged");
    ledger.0.kill().expect("kill -9");
    ledger.0.wait().expect("reaped");
    for a in appenders {
        a.await.expect("appender");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();

    let (_restarted, addr) = spawn_until(&["--data-dir", data, "serve", "ledger"], &env, "ledger listening on ");
    let mut client = LedgerServiceClient::new(channel(addr).await);
    let max = acknowledged.iter().map(|(i, _)| *i).max().expect("some");
    let mut size = 0;
    let caught_up = eventually(Duration::from_secs(10), async || {
        size = client
            .get_checkpoint(with_token(GetCheckpointRequest {}, &auditor))
            .await
            .map(|r| r.into_inner().tree_size)
            .unwrap_or(0);
        size > max
    })
    .await;
    assert!(caught_up, "the signed tree holds every acknowledged index (max {max}, size {size})");

    // Every acknowledged entry is there, unchanged, and the entries recompute the signed root.
    let mut leaves = quis_tlog::MemoryHashes(Vec::new());
    let mut stored = Vec::new();
    while (stored.len() as u64) < size {
        let page = client
            .get_entries(with_token(
                GetEntriesRequest {
                    start_index: stored.len() as u64,
                    end_index: size,
                    page_size: 1000,
                    page_token: String::new(),
                },
                &auditor,
            ))
            .await
            .expect("entries")
            .into_inner();
        for e in page.entries {
            assert_eq!(e.index, stored.len() as u64);
            leaves.append_record(&e.data).expect("append");
            stored.push(e.data);
        }
    }
    for (index, digest) in &acknowledged {
        assert_eq!(&subject_digest(&stored[*index as usize]), digest, "entry {index} is the one acknowledged");
    }
    let note =
        client.get_checkpoint(with_token(GetCheckpointRequest {}, &auditor)).await.expect("checkpoint").into_inner();
    let body = note.checkpoint.split_once("\n\n").map(|(b, _)| format!("{b}\n")).expect("a signed note");
    let cp = quis_tlog::checkpoint::Checkpoint::parse(&body).expect("checkpoint body");
    assert_eq!(quis_tlog::tree_hash(note.tree_size, &leaves).expect("root"), cp.root);

    // Appends continue where the log stopped.
    let ((event, detail), _) = ledger_access("after the restart");
    let more = client
        .append_events(with_token(AppendEventsRequest { events: vec![event], details: vec![detail] }, &vault))
        .await
        .expect("appends continue")
        .into_inner();
    assert_eq!(more.indices, vec![stored.len() as u64], "the next index follows the recovered tree");
}
