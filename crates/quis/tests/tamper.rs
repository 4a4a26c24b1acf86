//! An intruder with root on the ledger host: they hold the log's signing key
//! and its database. Rewriting history must be caught by the witness and by
//! `quis verify`, and a ledger restored from an old backup must stop rather
//! than silently fork the log.
mod support;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use quis_proto::ledger::{
    AppendEventsRequest, GetCheckpointRequest, GetConsistencyProofRequest, ledger_service_client::LedgerServiceClient,
};
use support::*;
use tonic::Code;

const QUIS: &str = env!("CARGO_BIN_EXE_quis");
const ORIGIN: &str = "quis.local/ledger";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `quis --config <config> --data-dir <dir> serve <service>` and reads the
/// lines it prints until `want` prefixes have all been seen; returns their rests.
fn serve(dir: &Path, config: &str, service: &str, want: &[&str]) -> (Proc, Vec<String>) {
    let config_path = dir.join(format!("{service}.toml"));
    std::fs::write(&config_path, config).expect("config");
    let mut child = Command::new(QUIS)
        .args([
            "--config",
            config_path.to_str().expect("utf8"),
            "--data-dir",
            dir.to_str().expect("utf8"),
            "serve",
            service,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut found = Vec::new();
    for prefix in want {
        loop {
            let line = lines.next().expect("quis exited early").expect("read");
            if let Some(rest) = line.strip_prefix(prefix) {
                found.push(rest.trim().to_string());
                break;
            }
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), found)
}

fn ledger_config(witness: Option<(&str, &str)>) -> String {
    let mut c = String::from(
        "[services.ledger]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
         [ledger]\nhttp_listen = \"127.0.0.1:0\"\ncheckpoint_interval_ms = 50\nwitness_refresh_secs = 1\n",
    );
    if let Some((url, vkey)) = witness {
        c.push_str(&format!("witness_quorum = 1\nwitnesses = [{{ url = \"{url}\", vkey = \"{vkey}\" }}]\n"));
    }
    c
}

fn witness_config(log_vkey: &str) -> String {
    format!(
        "[services.witness]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
         [witness.logs]\n\"{ORIGIN}\" = [\"{log_vkey}\"]\n"
    )
}

fn token(dir: &Path, sub: &str, role: &str, kind: &str) -> String {
    let out = Command::new(QUIS)
        .args([
            "--data-dir",
            dir.to_str().expect("utf8"),
            "token",
            "--sub",
            sub,
            "--role",
            role,
            "--kind",
            kind,
            "--ttl",
            "10m",
        ])
        .output()
        .expect("token");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf8").trim().to_string()
}

fn events(n: usize, tag: &str) -> AppendEventsRequest {
    use quis_proto::ledger::{Event, EventDetail, TriageEvent, event::Kind};
    // Triage events carry no commitments; the sentinel service appends them.
    let events = (0..n)
        .map(|i| Event {
            kind: Some(Kind::Triage(TriageEvent {
                actor: None,
                target: format!("alerts/{tag}-{i}"),
                state: "ACKNOWLEDGED".into(),
                note: None,
                request_id: String::new(),
            })),
        })
        .collect();
    AppendEventsRequest { events, details: Vec::<EventDetail>::new() }
}

async fn wait_witnessed(client: &mut LedgerServiceClient<tonic::transport::Channel>, token: &str, size: u64) -> bool {
    eventually(Duration::from_secs(15), async || {
        client
            .get_checkpoint(with_token(GetCheckpointRequest {}, token))
            .await
            .map(|r| r.into_inner())
            .is_ok_and(|c| c.tree_size == size && c.witnessed)
    })
    .await
}

fn verify(tiles: &str, log_vkey: &str, witness_vkey: &str, quorum: &str, state: &Path) -> (bool, String) {
    let out = Command::new(QUIS)
        .args(["verify", "--url", tiles, "--log-key", log_vkey, "--witness-key", witness_vkey, "--quorum", quorum])
        .args(["--state", state.to_str().expect("utf8")])
        .output()
        .expect("verify");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Cuts the log back to `size` entries in its SQLite file, as an intruder with database access would.
async fn truncate(dir: &Path, size: u64) {
    let db = quis_core::db::Db::connect(&format!("sqlite://{}", dir.join("ledger.db").display())).await.expect("db");
    let quis_core::db::Db::Sqlite(pool) = db else { unreachable!() };
    // An entry's row holds the stored hashes its append completed: they go with it.
    for sql in [
        format!("DELETE FROM ledger_entries WHERE idx >= {size}"),
        format!("DELETE FROM ledger_checkpoints WHERE size > {size}"),
        format!("UPDATE ledger_state SET size = {size}"),
    ] {
        sqlx::query(&sql).execute(&pool).await.expect("tamper");
    }
    pool.close().await;
}

/// A ledger process with an independent witness process that knows its key, under `root`.
struct WitnessedLedger {
    ledger_dir: std::path::PathBuf,
    _witness: Proc,
    ledger: Proc,
    /// The ledger's configuration (with its witness), to restart it.
    config: String,
    addr: SocketAddr,
    tiles: String,
    log_vkey: String,
    witness_url: String,
    witness_vkey: String,
}

/// The log's key first (one start without a witness), then the witness that knows it, then the
/// ledger submitting every checkpoint to that witness.
fn witnessed_ledger(root: &Path) -> WitnessedLedger {
    let (ledger_dir, witness_dir) = (root.join("ledger"), root.join("witness"));
    test_config(&ledger_dir);
    test_config(&witness_dir);
    let (first, found) = serve(&ledger_dir, &ledger_config(None), "ledger", &["log verifier key: "]);
    let log_vkey = found[0].clone();
    drop(first);
    let (_witness, found) = serve(
        &witness_dir,
        &witness_config(&log_vkey),
        "witness",
        &["witness listening on ", "witness verifier key: "],
    );
    let (witness_url, witness_vkey) = (format!("http://{}", found[0]), found[1].clone());
    let config = ledger_config(Some((&witness_url, &witness_vkey)));
    let (ledger, found) = serve(&ledger_dir, &config, "ledger", &["ledger listening on ", "tiles on "]);
    let (addr, tiles) = (found[0].parse().expect("addr"), found[1].clone());
    WitnessedLedger { ledger_dir, _witness, ledger, config, addr, tiles, log_vkey, witness_url, witness_vkey }
}

#[tokio::test]
async fn a_rewritten_history_is_refused_by_the_witness_and_caught_by_verify() {
    let root = tempfile::tempdir().expect("tempdir");
    let WitnessedLedger { ledger_dir, _witness, ledger, config, addr, tiles, log_vkey, witness_url, witness_vkey } =
        witnessed_ledger(root.path());

    let sentinel = token(&ledger_dir, "sentinel", "service", "service");
    let auditor = token(&ledger_dir, "audrey", "auditor", "staff");
    let mut client = LedgerServiceClient::new(channel(addr).await);
    client.append_events(with_token(events(20, "honest"), &sentinel)).await.expect("append");
    assert!(wait_witnessed(&mut client, &auditor, 20).await, "the honest checkpoint is cosigned");
    let state = root.path().join("trusted-checkpoint");
    let (ok, out) = verify(&tiles, &log_vkey, &witness_vkey, "1", &state);
    assert!(ok, "{out}");
    let trusted = std::fs::read(&state).expect("state");

    // A restore from a backup older than the last witnessed checkpoint: the ledger must stop.
    drop(ledger);
    truncate(&ledger_dir, 10).await;
    let (_restored, found) = serve(&ledger_dir, &config, "ledger", &["ledger listening on "]);
    let mut client = LedgerServiceClient::new(channel(found[0].parse().expect("addr")).await);
    let halted = eventually(Duration::from_secs(10), async || {
        matches!(client.append_events(with_token(events(1, "after-restore"), &sentinel)).await,
            Err(s) if s.code() == Code::FailedPrecondition && reason(&s) == "LOG_ROLLED_BACK")
    })
    .await;
    assert!(halted, "a rolled-back ledger refuses appends instead of forking the log");
    drop(_restored);

    // The intruder drops the witness from the configuration and writes a new history with the real key.
    let (_forged, found) = serve(&ledger_dir, &ledger_config(None), "ledger", &["ledger listening on ", "tiles on "]);
    let (addr, forged_tiles): (SocketAddr, String) = (found[0].parse().expect("addr"), found[1].clone());
    let mut client = LedgerServiceClient::new(channel(addr).await);
    client.append_events(with_token(events(15, "forged"), &sentinel)).await.expect("forged append");
    let forged = eventually(Duration::from_secs(10), async || {
        client
            .get_checkpoint(with_token(GetCheckpointRequest {}, &auditor))
            .await
            .is_ok_and(|c| c.into_inner().tree_size == 25)
    })
    .await;
    assert!(forged, "the forged tree is signed with the log's own key");
    let note =
        client.get_checkpoint(with_token(GetCheckpointRequest {}, &auditor)).await.expect("cp").into_inner().checkpoint;

    // The witness refuses it, whatever the intruder claims to extend.
    let proof = client
        .get_consistency_proof(with_token(GetConsistencyProofRequest { from_size: 20, to_size: 25 }, &auditor))
        .await
        .expect("proof")
        .into_inner()
        .hashes
        .iter()
        .map(|h| h.as_slice().try_into().expect("32 bytes"))
        .collect();
    let http = reqwest::Client::new();
    for (old_size, proof, want) in [(20, proof, 422u16), (0, Vec::new(), 409)] {
        let body = quis_tlog::witness::AddCheckpoint { old_size, proof, note: note.clone() }.encode();
        let status = http.post(format!("{witness_url}/add-checkpoint")).body(body).send().await.expect("post").status();
        assert_eq!(status.as_u16(), want, "the witness refuses the forged checkpoint (old size {old_size})");
    }

    // The auditor's verify refuses it: unwitnessed, and inconsistent with the trusted state.
    let (ok, out) = verify(&forged_tiles, &log_vkey, &witness_vkey, "1", &state);
    assert!(!ok && out.contains("witness"), "an unwitnessed checkpoint is not trusted: {out}");
    let (ok, out) = verify(&forged_tiles, &log_vkey, &witness_vkey, "0", &state);
    assert!(!ok && out.contains("20") && out.contains("25"), "the inconsistency names the sizes: {out}");
    assert_eq!(std::fs::read(&state).expect("state"), trusted, "the trusted state is unchanged");
}

/// The cosignature timestamp on a signed checkpoint.
fn cosigned_at(note: &str, log_vkey: &str, witness_vkey: &str) -> u64 {
    use quis_tlog::note::Verifier;
    let log = Verifier::from_vkey(log_vkey).expect("log key");
    let witness = Verifier::from_vkey(witness_vkey).expect("witness key");
    let verified = quis_tlog::checkpoint::open(note, &[log], &[witness]).expect("a valid checkpoint");
    verified.cosigners.first().expect("cosigned").1
}

// Multi-threaded: the mirror answers while `quis verify` runs as a blocking child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_log_stays_freshly_cosigned_and_a_frozen_view_is_refused_as_stale() {
    let root = tempfile::tempdir().expect("tempdir");
    let WitnessedLedger { ledger_dir, _witness, ledger: _ledger, addr, tiles, log_vkey, witness_vkey, .. } =
        witnessed_ledger(root.path());
    let sentinel = token(&ledger_dir, "sentinel", "service", "service");
    let auditor = token(&ledger_dir, "audrey", "auditor", "staff");
    let mut client = LedgerServiceClient::new(channel(addr).await);
    client.append_events(with_token(events(3, "idle"), &sentinel)).await.expect("append");
    assert!(wait_witnessed(&mut client, &auditor, 3).await, "cosigned");
    let checkpoint = async |client: &mut LedgerServiceClient<tonic::transport::Channel>| {
        client.get_checkpoint(with_token(GetCheckpointRequest {}, &auditor)).await.expect("checkpoint").into_inner()
    };
    let frozen = checkpoint(&mut client).await.checkpoint;
    let frozen_at = cosigned_at(&frozen, &log_vkey, &witness_vkey);

    // Nothing is appended, yet the witness keeps dating the same tree.
    let refreshed = eventually(Duration::from_secs(15), async || {
        let now = checkpoint(&mut client).await;
        now.tree_size == 3 && now.witnessed && cosigned_at(&now.checkpoint, &log_vkey, &witness_vkey) >= frozen_at + 2
    })
    .await;
    assert!(refreshed, "the idle log's checkpoint is re-cosigned with a newer timestamp");
    let fresh = ["--max-age-secs", "1"];
    let state = root.path().join("live-state");
    let out = Command::new(QUIS)
        .args(["verify", "--url", &tiles, "--log-key", &log_vkey, "--witness-key", &witness_vkey])
        .args(["--state", state.to_str().expect("utf8"), "--max-age-secs", "30"])
        .output()
        .expect("verify");
    assert!(out.status.success(), "the live log is fresh: {}", String::from_utf8_lossy(&out.stderr));

    // A mirror (or the log itself) that keeps serving the old checkpoint to hide what came after.
    let (listener, mirror) = listener().await;
    let app = axum::Router::new().route(
        "/checkpoint",
        axum::routing::get(move || {
            let note = frozen.clone();
            async move { note }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let stale = Command::new(QUIS)
        .args(["verify", "--url", &format!("http://{mirror}"), "--log-key", &log_vkey])
        .args(["--witness-key", &witness_vkey, "--state", root.path().join("mirror-state").to_str().expect("utf8")])
        .args(fresh)
        .output()
        .expect("verify");
    let err = String::from_utf8_lossy(&stale.stderr);
    assert!(!stale.status.success(), "a frozen view is refused");
    assert!(
        err.contains("checkpoint of size 3 is stale") && err.contains("0 of 1 cosignatures are under 1s old"),
        "{err}"
    );
    assert!(!root.path().join("mirror-state").exists(), "nothing was trusted");
    let unwitnessed = Command::new(QUIS)
        .args(["verify", "--url", &tiles, "--log-key", &log_vkey, "--quorum", "0"])
        .args(["--state", root.path().join("s3").to_str().expect("utf8"), "--max-age-secs", "30"])
        .output()
        .expect("verify");
    let err = String::from_utf8_lossy(&unwitnessed.stderr);
    assert!(!unwitnessed.status.success() && err.contains("--max-age-secs needs witness cosignatures"), "{err}");
}
