//! `quis verify`, the real binary, against an in-process ledger: trust on first use,
//! consistency as the log grows, `--full` recomputation, and refusals that name what is
//! wrong (a tampered entry, a fork, a rollback, a wrong log key, missing cosignatures)
//! while leaving the state file as it was.
mod support;

use std::{net::SocketAddr, path::Path, process::Output, sync::Arc, time::Duration};

use quis_auth::{
    PrincipalKind, Role,
    mint::{TokenSigner, TokenSpec},
};
use quis_core::{health::Readiness, keys::FileKeySource};
use quis_proto::ledger::{
    AccessEvent, Action, Actor, AppendEventsRequest, Commitment, Decision, Event, EventDetail, GetCheckpointRequest,
    Purpose, event::Kind, ledger_service_client::LedgerServiceClient,
};
use quis_runtime::ServiceContext;
use quis_tlog::note::{KEY_TYPE_COSIGNATURE_V1, KEY_TYPE_ED25519, Signer};
use sha2::{Digest, Sha256};
use support::*;

struct LedgerUnderTest {
    dir: tempfile::TempDir,
    grpc: SocketAddr,
    tiles: SocketAddr,
    signer: TokenSigner,
    vkey: String,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for LedgerUnderTest {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A ledger on SQLite in a fresh data directory; with `log_key_of`, signing with the log key
/// of another ledger's directory (the same log, as far as signatures go: a fork).
async fn start(log_key_of: Option<&Path>) -> LedgerUnderTest {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.ledger.checkpoint_interval_ms = 50;
    if let Some(other) = log_key_of {
        let key = &config.ledger.log_key;
        std::fs::create_dir_all(dir.path().join(key).parent().expect("keys dir")).expect("keys dir");
        std::fs::copy(other.join(key), dir.path().join(key)).expect("copy the log key");
    }
    let config = Arc::new(config);
    let stop = tokio_util::sync::CancellationToken::new();
    let verifier = quis_auth::TokenVerifier::from_config(&config, stop.clone()).await.expect("verifier");
    let ctx = ServiceContext { config: Arc::clone(&config), verifier, shutdown: stop.clone() };
    let (built, router, ledger) = quis_ledger::build(&ctx).await.expect("ledger");
    let (grpc_listener, grpc) = listener().await;
    let (http_listener, tiles) = listener().await;
    let http_stop = stop.clone();
    tokio::spawn(async move {
        axum::serve(http_listener, router).with_graceful_shutdown(async move { http_stop.cancelled().await }).await
    });
    tokio::spawn(async move { quis_runtime::serve(&ctx, built, grpc_listener, Readiness::default()).await });
    let signer =
        TokenSigner::load(&FileKeySource::new(dir.path()), &config.auth.issuer, &config.auth.audience).expect("signer");
    LedgerUnderTest { vkey: ledger.verifier_key(), dir, grpc, tiles, signer, stop }
}

impl LedgerUnderTest {
    fn token(&self, sub: &str, kind: PrincipalKind, roles: &[Role]) -> String {
        self.signer.mint(&TokenSpec::new(sub, kind, roles)).expect("mint").0
    }
    fn auditor(&self) -> String {
        self.token("audrey", PrincipalKind::Staff, &[Role::Auditor])
    }
    fn url(&self) -> String {
        format!("http://{}", self.tiles)
    }

    /// Appends `n` access events and waits for a checkpoint covering them; returns the size.
    async fn append(&self, n: usize) -> u64 {
        let mut client = LedgerServiceClient::new(channel(self.grpc).await);
        let vault = self.token("vault", PrincipalKind::Service, &[Role::Service]);
        let (events, details) = (0..n).map(|i| access(&format!("subject-{i}"))).unzip();
        let last = client
            .append_events(with_token(AppendEventsRequest { events, details }, &vault))
            .await
            .expect("append")
            .into_inner()
            .indices
            .last()
            .copied()
            .expect("indices");
        let auditor = self.auditor();
        for _ in 0..250 {
            let cp = client.get_checkpoint(with_token(GetCheckpointRequest {}, &auditor)).await;
            if let Ok(cp) = cp
                && cp.get_ref().tree_size > last
            {
                return cp.get_ref().tree_size;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no checkpoint covering index {last}");
    }

    /// The signed note the ledger serves now.
    async fn checkpoint_note(&self) -> String {
        let mut client = LedgerServiceClient::new(channel(self.grpc).await);
        client
            .get_checkpoint(with_token(GetCheckpointRequest {}, &self.auditor()))
            .await
            .expect("checkpoint")
            .into_inner()
            .checkpoint
    }

    /// Rewrites stored entries behind the ledger's back, as an intruder with the database would.
    async fn tamper(&self, indexes: &[i64]) {
        let url = format!("sqlite://{}", self.dir.path().join("ledger.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.expect("open the ledger's database");
        for &idx in indexes {
            let (mut data,): (Vec<u8>,) = sqlx::query_as("SELECT data FROM ledger_entries WHERE idx = ?")
                .bind(idx)
                .fetch_one(&pool)
                .await
                .expect("entry");
            let last = data.len() - 1;
            data[last] ^= 0x01;
            sqlx::query("UPDATE ledger_entries SET data = ? WHERE idx = ?")
                .bind(data)
                .bind(idx)
                .execute(&pool)
                .await
                .expect("tamper");
        }
        pool.close().await;
    }
}

/// An access event whose subject is a fresh commitment, with its detail.
fn access(subject: &str) -> (Event, EventDetail) {
    let salt = uuid().into_bytes();
    let digest = Sha256::new().chain_update(&salt).chain_update(subject.as_bytes()).finalize().to_vec();
    let event = AccessEvent {
        actor: Some(Actor { principal: "alice".into(), kind: "staff".into(), ..Default::default() }),
        action: Action::Read as i32,
        subject: Some(Commitment { digest }),
        purpose: Purpose::Casework as i32,
        case: "cases/c-1".into(),
        decision: Decision::Allow as i32,
        ..Default::default()
    };
    (Event { kind: Some(Kind::Access(event)) }, EventDetail { salt, value: subject.into() })
}

/// Runs `quis verify --url <ledger> --state <state> <args…>` and returns its output.
async fn verify(l: &LedgerUnderTest, state: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_quis"))
        .arg("verify")
        .args(["--url", &l.url(), "--state"])
        .arg(state)
        .args(args)
        .env_remove("QUIS_TOKEN")
        .env_remove("QUIS_CONFIG")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run quis verify")
}

#[track_caller]
fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "quis verify failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[track_caller]
fn failed(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "quis verify succeeded: {}", String::from_utf8_lossy(&out.stdout));
    assert!(out.stdout.is_empty(), "no success line on failure: {}", String::from_utf8_lossy(&out.stdout));
    stderr
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[tokio::test]
async fn first_run_trusts_and_later_runs_prove_consistency() {
    let l = start(None).await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("audit.state");
    let key = ["--log-key", l.vkey.as_str(), "--quorum", "0"];

    let size = l.append(5).await;
    let out = succeeded(&verify(&l, &state, &key).await);
    assert!(out.starts_with(&format!("verified size {size} root ")), "{out}");
    assert!(out.contains("trusted on first use"), "{out}");
    assert!(out.contains("0 cosignatures"), "{out}");
    assert_eq!(read(&state), Some(l.checkpoint_note().await), "the state holds the signed note");

    // Across a full tile: the proof needs hashes from two tile levels.
    let grown = l.append(300).await;
    let out = succeeded(&verify(&l, &state, &key).await);
    assert!(out.contains(&format!("verified size {grown} ")), "{out}");
    assert!(out.contains(&format!("consistent with trusted size {size},")), "{out}");
    assert_eq!(read(&state), Some(l.checkpoint_note().await), "the state moved on");

    let out = succeeded(&verify(&l, &state, &key).await);
    assert!(out.contains(&format!("consistent with trusted size {grown},")), "same size, same root: {out}");

    let grown_again = l.append(1).await;
    let out = succeeded(&verify(&l, &state, &key).await);
    assert!(out.contains(&format!("verified size {grown_again} ")), "{out}");
    assert_eq!(
        std::fs::read_dir(state_dir.path()).expect("dir").count(),
        1,
        "no temporary files left beside the state"
    );
}

#[tokio::test]
async fn full_recomputes_the_root_and_names_the_first_tampered_entry() {
    let l = start(None).await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("audit.state");
    let size = l.append(300).await;
    let token = l.auditor();
    let full = ["--log-key", l.vkey.as_str(), "--quorum", "0", "--full", "--token", token.as_str()];

    let out = succeeded(&verify(&l, &state, &full).await);
    assert!(out.contains(&format!("all {size} entries recompute the root")), "{out}");
    let trusted = read(&state).expect("state");

    // --full needs an auditor token; a caseworker's is refused by the ledger.
    let err = failed(&verify(&l, &state, &full[..5]).await);
    assert!(err.contains("--token or QUIS_TOKEN"), "{err}");
    let caseworker = l.token("carl", PrincipalKind::Staff, &[Role::Caseworker]);
    let err = failed(&verify(&l, &state, &[&full[..5], &["--token", caseworker.as_str()]].concat()).await);
    assert!(err.contains("403"), "{err}");

    // One entry in the full bundle and one in the partial one; the first is named.
    l.tamper(&[270, 42]).await;
    let err = failed(&verify(&l, &state, &full).await);
    assert!(err.contains("entry 42 does not match the signed tree"), "{err}");
    assert_eq!(read(&state).as_deref(), Some(trusted.as_str()), "the state is unchanged after a failure");

    // Without --full the hash tiles still prove the tree: the tampering is only in the entries.
    succeeded(&verify(&l, &state, &full[..4]).await);
}

#[tokio::test]
async fn a_forked_or_rolled_back_log_is_refused_naming_the_sizes() {
    let honest = start(None).await;
    // The same origin and log key, another history: what a log operator showing different
    // views to different auditors would serve.
    let fork = start(Some(honest.dir.path())).await;
    assert_eq!(honest.vkey, fork.vkey);
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("audit.state");
    let key = ["--log-key", honest.vkey.as_str(), "--quorum", "0"];

    assert_eq!(honest.append(5).await, 5);
    succeeded(&verify(&honest, &state, &key).await);
    let trusted = read(&state).expect("state");

    assert_eq!(fork.append(5).await, 5);
    let err = failed(&verify(&fork, &state, &key).await);
    assert!(err.contains("fork at size 5"), "{err}");
    assert_eq!(read(&state).as_deref(), Some(trusted.as_str()));

    assert_eq!(fork.append(3).await, 8);
    let err = failed(&verify(&fork, &state, &key).await);
    assert!(err.contains("the tree of size 8 is not consistent with the trusted tree of size 5"), "{err}");
    assert_eq!(read(&state).as_deref(), Some(trusted.as_str()));

    // A state ahead of what the log serves: a rollback (or a stale view).
    let ahead = state_dir.path().join("ahead.state");
    std::fs::write(&ahead, fork.checkpoint_note().await).expect("write");
    let err = failed(&verify(&honest, &ahead, &key).await);
    assert!(err.contains("size 5 is smaller than the trusted size 8"), "{err}");
    assert_eq!(read(&ahead), Some(fork.checkpoint_note().await));
}

#[tokio::test]
async fn a_wrong_log_key_is_refused_naming_the_signature() {
    let l = start(None).await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("audit.state");
    l.append(3).await;

    // Same name, another key: a different key id, so the log's line is not by this key.
    let impostor = Signer::generate("quis.local/ledger", KEY_TYPE_ED25519).expect("key").vkey();
    let err = failed(&verify(&l, &state, &["--log-key", &impostor, "--quorum", "0"]).await);
    // `name+keyid`: the base64 key after the second '+' may itself hold a '+'.
    let real: Vec<&str> = l.vkey.splitn(3, '+').take(2).collect();
    let real = real.join("+");
    assert!(err.contains("no valid log signature"), "{err}");
    assert!(err.contains(&real), "names the key that did sign: {err}");
    assert_eq!(read(&state), None, "no state is created by a failure");

    succeeded(&verify(&l, &state, &["--log-key", &l.vkey, "--quorum", "0"]).await);
    let trusted = read(&state).expect("state");
    l.append(2).await;
    failed(&verify(&l, &state, &["--log-key", &impostor, "--quorum", "0"]).await);
    assert_eq!(read(&state).as_deref(), Some(trusted.as_str()));

    // During a rotation both keys are given; one valid signature by either is enough.
    let out = succeeded(&verify(&l, &state, &["--log-key", &impostor, "--log-key", &l.vkey, "--quorum", "0"]).await);
    assert!(out.contains("consistent with trusted size 3"), "{out}");

    // A witness key where a log key belongs is a type error, not a silent mismatch.
    let witness = Signer::generate("witness.example", KEY_TYPE_COSIGNATURE_V1).expect("key").vkey();
    let err = failed(&verify(&l, &state, &["--log-key", &witness, "--quorum", "0"]).await);
    assert!(err.contains("has type 0x04, expected 0x01"), "{err}");
}

#[tokio::test]
async fn an_unwitnessed_checkpoint_is_not_trusted_without_an_explicit_quorum_of_zero() {
    let l = start(None).await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("audit.state");
    let size = l.append(4).await;

    let err = failed(&verify(&l, &state, &["--log-key", &l.vkey]).await);
    assert!(err.contains(&format!("checkpoint of size {size} is not witnessed")), "{err}");
    assert!(err.contains("--quorum 0"), "says how to accept it knowingly: {err}");

    let witness = Signer::generate("witness.example", KEY_TYPE_COSIGNATURE_V1).expect("key").vkey();
    let err = failed(&verify(&l, &state, &["--log-key", &l.vkey, "--witness-key", &witness]).await);
    assert!(err.contains(&format!("checkpoint of size {size} is not witnessed: 0 of 1 cosignatures")), "{err}");
    assert!(err.contains("witness.example+"), "names the missing witness: {err}");

    let err = failed(&verify(&l, &state, &["--log-key", &l.vkey, "--witness-key", &witness, "--quorum", "2"]).await);
    assert!(err.contains("--quorum 2 exceeds the 1 witness keys"), "{err}");
    assert_eq!(read(&state), None, "nothing was trusted");

    let out = succeeded(&verify(&l, &state, &["--log-key", &l.vkey, "--witness-key", &witness, "--quorum", "0"]).await);
    assert!(out.contains("0 cosignatures"), "{out}");
}
