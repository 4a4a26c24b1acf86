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

use quis_proto::echo::{EchoRequest, echo_service_client::EchoServiceClient};
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
    let out = Command::new(QUIS)
        .args(["--data-dir", data_dir, "token", "--sub", sub, "--role", role, "--ttl", "10m"])
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
