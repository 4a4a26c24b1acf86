//! The witness over real HTTP, on SQLite and on PostgreSQL: it cosigns a log's checkpoints
//! only along one consistent history, answers every refusal with the status c2sp.org/tlog-witness
//! gives it, and stays consistent under concurrent submissions and across restarts.
mod support;

use std::{collections::BTreeMap, os::unix::fs::PermissionsExt, sync::Arc};

use quis_tlog::{
    checkpoint::{self, Checkpoint},
    note::{KEY_TYPE_COSIGNATURE_V1, Signer},
    witness::AddCheckpoint,
};
use support::*;

async fn start(postgres: bool) -> (tempfile::TempDir, Running, Log) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::honest(0);
    let store = if postgres { Some(postgres_url().await) } else { None };
    let running = Running::start(&config(dir.path(), store, logs_for(&log))).await;
    (dir, running, log)
}

/// The protocol, end to end, with every refusal leaving the state as it was.
async fn protocol(postgres: bool) {
    let (_dir, w, mut log) = start(postgres).await;

    // Nothing cosigned yet: the first checkpoint comes with old size 0 and no proof.
    log.grow_to(3);
    let answer = w.post(log.request(0, 3)).await;
    assert_eq!(open_cosigned(&log, &log.note(3), &answer, &w.witness), (3, log.root(3)));
    assert_eq!(w.latest(ORIGIN).await, Some((3, log.root(3))));

    // Growth with a consistency proof.
    log.grow_to(7);
    let answer = w.post(log.request(3, 7)).await;
    assert_eq!(open_cosigned(&log, &log.note(7), &answer, &w.witness), (7, log.root(7)));
    let state = Some((7, log.root(7)));
    assert_eq!(w.latest(ORIGIN).await, state);

    // The same checkpoint again is cosigned again (same size, same root, empty proof).
    let answer = w.post(log.request(7, 7)).await;
    open_cosigned(&log, &log.note(7), &answer, &w.witness);

    // A stale old size: 409 with the latest cosigned size, as text/x.tlog.size.
    log.grow_to(10);
    for old in [0, 3, 5, 8] {
        let answer = w.post(log.request(old, 10)).await;
        assert_eq!((answer.status, answer.body.as_str()), (409, "7\n"), "old {old}");
        assert_eq!(answer.content_type, "text/x.tlog.size");
    }

    // A proof that does not verify: 422.
    let good = AddCheckpoint::parse(log.request(7, 10).as_bytes()).expect("request");
    let mut tampered = good.clone();
    tampered.proof[0][0] ^= 1;
    let mut short = good.clone();
    short.proof.pop();
    let mut long = good.clone();
    long.proof.push([0; 32]);
    let wrong_sizes = AddCheckpoint { proof: vec![[9; 32]; 3], ..good.clone() };
    let empty = AddCheckpoint { proof: Vec::new(), ..good.clone() };
    for (what, bad) in
        [("tampered", tampered), ("short", short), ("long", long), ("wrong", wrong_sizes), ("empty", empty)]
    {
        let answer = w.post(bad.encode()).await;
        assert_eq!(answer.status, 422, "{what}: {answer:?}");
    }
    // A non-empty proof between equal sizes.
    let answer = w.post(AddCheckpoint { old_size: 7, proof: vec![[1; 32]], note: log.note(7) }.encode()).await;
    assert_eq!(answer.status, 422);
    assert_eq!(w.latest(ORIGIN).await, state);

    // Unknown origin: 404. Known origin, but not signed by its key: 403.
    let mut other = Log::new("other.test/log", LOG_SEED, "entry");
    other.grow_to(10);
    assert_eq!(w.post(other.request(0, 10)).await.status, 404);
    let mut impostor = Log::new(ORIGIN, [8; 32], "entry");
    impostor.grow_to(10);
    assert_eq!(w.post(impostor.request(7, 10)).await.status, 403);
    // A correct signature line by the known key, but over another text: 403.
    let note = log.note(10);
    let (text, _) = note.split_once("\n\n").expect("note");
    let note_9 = log.note(9);
    let (_, signature_of_9) = note_9.split_once("\n\n").expect("note");
    let transplanted = AddCheckpoint { note: format!("{text}\n\n{signature_of_9}"), ..good.clone() };
    assert_eq!(w.post(transplanted.encode()).await.status, 403);
    // A witness-style cosignature with the log's name is not a log signature.
    let cosigner = Signer::new(ORIGIN, KEY_TYPE_COSIGNATURE_V1, LOG_SEED).expect("key");
    let cosig = checkpoint::cosign(&log.checkpoint(10).body(), &cosigner, 1).expect("cosign");
    let only_cosig = format!("{}\n{}", log.checkpoint(10).body(), quis_tlog::witness::encode_response(&[cosig]));
    assert_eq!(w.post(AddCheckpoint { note: only_cosig, ..good.clone() }.encode()).await.status, 403);
    assert_eq!(w.latest(ORIGIN).await, state);

    // Garbage: 400 with a one-line reason.
    let cp_text = log.checkpoint(10).body();
    for garbage in [
        String::new(),
        "old 7".into(),
        "old 7\n".into(),
        "old x\n\n".into(),
        "old 07\n\n".into(),
        "old -1\n\n".into(),
        format!("old 7\nnot base64\n\n{}", log.note(10)),
        format!("old 7\n\n{cp_text}"),
        format!("old 7\n\n{cp_text}\n"),
        "old 7\n\nnot a checkpoint\n\n\u{2014} quis.test/ledger AAAAAAA=\n".into(),
        format!("old 0\n{}\n\n{}", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", log.note(10)),
        format!("old 18446744073709551616\n\n{}", log.note(10)),
        "\u{0}\u{1}\u{2}".into(),
    ] {
        let answer = w.post(garbage.clone()).await;
        assert_eq!(answer.status, 400, "{garbage:?}: {answer:?}");
        assert_eq!(answer.body.lines().count(), 1, "{answer:?}");
        assert!(answer.body.ends_with('\n'));
    }
    assert_eq!(w.post(vec![0xff, 0xfe, b'\n']).await.status, 400);
    // Old size above the checkpoint's size, log-signed: 400.
    assert_eq!(
        w.post(AddCheckpoint { old_size: 11, proof: vec![[1; 32]], note: log.note(10) }.encode()).await.status,
        400
    );
    // Too large a body: refused before parsing.
    assert_eq!(w.post(vec![b'a'; quis_witness::MAX_BODY_BYTES + 1]).await.status, 413);
    assert_eq!(w.latest(ORIGIN).await, state);

    // A fork signed with the real log key: the same size with another root is refused (409,
    // and the latest size), and so is a rolled-back smaller tree.
    let mut fork = Log::new(ORIGIN, LOG_SEED, "forked");
    fork.grow_to(10);
    let answer = w.post(fork.request(7, 7)).await;
    assert_eq!((answer.status, answer.body.as_str()), (409, "7\n"));
    assert_eq!(answer.content_type, "text/x.tlog.size");
    assert_eq!(w.post(fork.request(0, 7)).await.status, 409);
    assert_eq!(w.post(fork.request(7, 10)).await.status, 422, "no proof leads from the real 7 to the fork's 10");
    assert_eq!(w.post(log.request(7, 7).replace("old 7", "old 5")).await.status, 409);
    // Rolled back: the log signs its tree of 5 again.
    assert_eq!(w.post(log.request(5, 5)).await.status, 409);
    assert_eq!(w.post(AddCheckpoint { old_size: 7, proof: Vec::new(), note: log.note(5) }.encode()).await.status, 400);
    assert_eq!(w.latest(ORIGIN).await, state);

    // And the honest log still advances.
    let answer = w.post(log.request(7, 10)).await;
    assert_eq!(open_cosigned(&log, &log.note(10), &answer, &w.witness), (10, log.root(10)));
    assert_eq!(w.latest(ORIGIN).await, Some((10, log.root(10))));

    // The verifier key is published.
    for path in ["/", "/vkey"] {
        let answer = w.get(path).await;
        assert_eq!((answer.status, answer.body.clone()), (200, format!("{}\n", w.witness.verifier_key())));
    }
    assert_eq!(w.get("/add-checkpoint").await.status, 405);
}

#[tokio::test]
async fn protocol_on_sqlite() {
    protocol(false).await;
}

#[tokio::test]
async fn protocol_on_postgres() {
    protocol(true).await;
}

/// Concurrent submissions: each distinct state transition succeeds exactly once, and no two
/// different roots are ever cosigned for one size.
async fn concurrency(postgres: bool) {
    let (_dir, w, mut log) = start(postgres).await;
    let w = Arc::new(w);
    log.grow_to(40);
    let log = Arc::new(log);
    assert_eq!(w.post(log.request(0, 5)).await.status, 200);

    // 20 copies of one growth: exactly one cosigned, the others told the new size.
    let answers = submit_all(&w, (0..20).map(|_| log.request(5, 12)).collect()).await;
    assert_eq!(answers.iter().filter(|a| a.status == 200).count(), 1, "{answers:?}");
    assert!(answers.iter().filter(|a| a.status != 200).all(|a| a.status == 409 && a.body == "12\n"), "{answers:?}");
    assert_eq!(w.latest(ORIGIN).await, Some((12, log.root(12))));

    // Competing growths from one state, honest and forked, 20 at once: exactly one wins.
    let mut fork = Log::new(ORIGIN, LOG_SEED, "forked");
    fork.grow_to(20);
    // The fork's checkpoint of 12 is another root at the cosigned size (409); its tree of 20
    // cannot be proven from the cosigned 12 (422).
    let mut bodies = Vec::new();
    for i in 0..20 {
        bodies.push(match i % 4 {
            0 => log.request(12, 15),
            1 => log.request(12, 20),
            2 => fork.request(12, 12),
            _ => fork.request(12, 20),
        });
    }
    let answers = submit_all(&w, bodies).await;
    let won: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    let (size, root) = w.latest(ORIGIN).await.expect("state");
    assert!(size == 15 || size == 20, "{size}");
    assert_eq!(root, log.root(size), "the state follows the honest log");
    for a in &answers {
        assert!(matches!(a.status, 200 | 409 | 422), "{a:?}");
        if a.status == 409 {
            assert!(a.body == "12\n" || a.body == format!("{size}\n"), "{a:?}");
        }
    }

    // Racing clients that retry from each 409's size: every size is cosigned at most once, each
    // with the honest root, and the state ends at the largest cosigned size.
    let mut tasks = tokio::task::JoinSet::new();
    for target in size + 1..=size + 20 {
        let (w, log) = (Arc::clone(&w), Arc::clone(&log));
        tasks.spawn(async move {
            let mut old = 0;
            loop {
                if old >= target {
                    return None;
                }
                let answer = w.post(log.request(old, target)).await;
                match answer.status {
                    200 => return Some((target, open_cosigned(&log, &log.note(target), &answer, &w.witness))),
                    409 => old = answer.body.trim().parse().expect("size"),
                    other => panic!("unexpected {other}: {answer:?}"),
                }
            }
        });
    }
    let mut cosigned = BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        if let Some((target, (cp_size, cp_root))) = result.expect("task") {
            assert_eq!((target, cp_root), (cp_size, log.root(cp_size)));
            assert!(cosigned.insert(cp_size, cp_root).is_none(), "size {cp_size} cosigned twice");
        }
    }
    let (&last, _) = cosigned.last_key_value().expect("some cosigned");
    assert_eq!(w.latest(ORIGIN).await, Some((last, log.root(last))));
}

async fn submit_all(w: &Arc<Running>, bodies: Vec<String>) -> Vec<Answer> {
    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        let w = Arc::clone(w);
        tasks.spawn(async move { w.post(body).await });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer.expect("task"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_on_sqlite() {
    concurrency(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_on_postgres() {
    concurrency(true).await;
}

/// The key is created once (mode 0600) and the state survives a restart.
#[tokio::test]
async fn key_and_state_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::honest(6);
    let config = config(dir.path(), None, logs_for(&log));
    let first = Running::start(&config).await;
    let vkey = first.witness.verifier_key();
    assert!(vkey.starts_with("quis.local/witness+"), "{vkey}");
    assert_eq!(first.post(log.request(0, 6)).await.status, 200);
    drop(first);
    let mode = std::fs::metadata(dir.path().join("keys/witness.key")).expect("key file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let second = Running::start(&config).await;
    assert_eq!(second.witness.verifier_key(), vkey);
    let answer = second.post(log.request(0, 6)).await;
    assert_eq!((answer.status, answer.body.as_str()), (409, "6\n"));
    log.grow_to(9);
    assert_eq!(second.post(log.request(6, 9)).await.status, 200);
}

/// A size-0 checkpoint must carry the empty tree's root.
#[tokio::test]
async fn empty_tree() {
    let (_dir, w, log) = start(false).await;
    assert_eq!(w.post(log.request(0, 0)).await.status, 200);
    assert_eq!(w.latest(ORIGIN).await, Some((0, quis_tlog::EMPTY_HASH)));
    let cp = Checkpoint { origin: ORIGIN.into(), size: 0, root: [1; 32], extensions: Vec::new() };
    let note = checkpoint::sign(&cp, &[&log.signer]).expect("sign");
    assert_eq!(w.post(AddCheckpoint { old_size: 0, proof: Vec::new(), note }.encode()).await.status, 409);
}

/// Bad configurations are refused at start.
#[tokio::test]
async fn bad_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::honest(0);
    let witness_key = Signer::new("w.example", KEY_TYPE_COSIGNATURE_V1, [3; 32]).expect("key");
    for logs in [
        BTreeMap::from([(ORIGIN.to_string(), vec!["not a vkey".to_string()])]),
        BTreeMap::from([(ORIGIN.to_string(), Vec::new())]),
        BTreeMap::from([(ORIGIN.to_string(), vec![witness_key.vkey()])]),
        BTreeMap::from([(String::new(), vec![log.signer.vkey()])]),
    ] {
        assert!(quis_witness::build(&config(dir.path(), None, logs.clone())).await.is_err(), "{logs:?}");
    }
    let mut bad_name = config(dir.path(), None, logs_for(&log));
    bad_name.witness.name = "has space".into();
    assert!(quis_witness::build(&bad_name).await.is_err());
}
