//! Property tests of the `add-checkpoint` handler: whatever the body, it answers (never panics)
//! with one of the statuses of c2sp.org/tlog-witness, and the log's state changes only on a 200,
//! and then only to the honest tree.
mod support;

use std::sync::{Mutex, OnceLock};

use proptest::prelude::*;
use quis_tlog::Hash;
use quis_witness::Witness;
use support::*;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    witness: Witness,
    log: Log,
    /// Cases run on several threads; each reads the state before and after its request.
    serial: Mutex<()>,
    _dir: tempfile::TempDir,
}

/// One witness for all cases: the log has 7 entries and the witness cosigned its tree of 3.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::honest(7);
        let (_, witness) =
            runtime.block_on(quis_witness::build(&config(dir.path(), None, logs_for(&log)))).expect("witness");
        let first = runtime.block_on(witness.handle(log.request(0, 3).as_bytes()));
        assert_eq!(first.status, 200);
        Fixture { runtime, witness, log, serial: Mutex::new(()), _dir: dir }
    })
}

fn check(body: &[u8]) -> Result<(), TestCaseError> {
    let f = fixture();
    let _serial = f.serial.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let before = f.runtime.block_on(f.witness.latest(ORIGIN)).expect("state");
    let reply = f.runtime.block_on(f.witness.handle(body));
    let after: Option<(u64, Hash)> = f.runtime.block_on(f.witness.latest(ORIGIN)).expect("state");
    prop_assert!(matches!(reply.status.as_u16(), 200 | 400 | 403 | 404 | 409 | 422), "{reply:?}");
    prop_assert!(reply.body.ends_with('\n'), "{reply:?}");
    if reply.status.as_u16() == 200 {
        let (size, root) = after.expect("a cosigned state");
        prop_assert_eq!(root, f.log.root(size));
    } else {
        prop_assert_eq!(before, after);
        if reply.status.as_u16() != 409 {
            prop_assert_eq!(reply.body.lines().count(), 1, "one line: {:?}", reply);
        }
    }
    Ok(())
}

/// A valid request (3 → 7) with bytes overwritten, inserted or removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let base = fixture().log.request(3, 7).into_bytes();
    let len = base.len();
    (0..len, any::<u8>(), 0..3u8).prop_map(move |(at, byte, how)| {
        let mut body = base.clone();
        match how {
            // Always a change: an unchanged valid request would be cosigned.
            0 => body[at] = if body[at] == byte { byte ^ 1 } else { byte },
            1 => body.insert(at, byte),
            _ => {
                body.remove(at);
            }
        }
        body
    })
}

/// Request-shaped text: an old-size line, proof-like lines, then note-like text.
fn shaped() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just("old 3".to_string()), any::<u64>().prop_map(|n| format!("old {n}")), "[a-z0-9 ]{0,12}"],
        proptest::collection::vec("[A-Za-z0-9+/=]{0,48}", 0..70),
        prop_oneof![
            Just(fixture().log.note(7)),
            "(quis.test/ledger\n[0-9]{1,3}\n[A-Za-z0-9+/=]{0,48}\n\n\u{2014} [a-z./]{1,20} [A-Za-z0-9+/=]{0,100}\n)"
        ],
    )
        .prop_map(|(old, proof, note)| {
            let mut body = format!("{old}\n");
            for line in proof {
                body.push_str(&line);
                body.push('\n');
            }
            body.push('\n');
            body.push_str(&note);
            body.into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check(&body)?;
    }

    #[test]
    fn shaped_requests_never_panic(body in shaped()) {
        check(&body)?;
    }

    #[test]
    fn mutated_requests_never_panic(body in mutated()) {
        check(&body)?;
    }
}
