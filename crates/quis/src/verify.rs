//! `quis verify`: the auditor's check of the ledger over c2sp.org/tlog-tiles.
//!
//! Fetches the latest checkpoint, checks the log's signature and the witnesses'
//! cosignatures against a quorum, proves from hash tiles that the log's tree extends the
//! last checkpoint this auditor trusted (kept in a state file), and with `--full` downloads
//! every entry bundle and recomputes the signed root. The state file is replaced, atomically,
//! only when everything checked out; any failure exits non-zero and says what is wrong.
//!
//! All the format logic (notes, proofs, tile coordinates, bundles) is `quis-tlog`'s; this
//! module only fetches bytes and decides what to believe.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow, bail};
use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use futures::{StreamExt as _, TryStreamExt as _, stream};
use quis_tlog::{
    HashReader as _, MemoryHashes, TlogError,
    checkpoint::{self, Checkpoint},
    client::TileClient,
    note::{Note, Verifier},
    stored_hash_index,
    tile::{self, FULL_WIDTH, Tile, TileHashReader},
    tree_hash,
};

/// Requests in flight at once while downloading tiles and bundles.
const PARALLEL_FETCHES: usize = 8;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Base URL serving /checkpoint and /tile/… (the gateway, or the ledger's HTTP port), e.g. http://127.0.0.1:7400.
    #[arg(long)]
    url: String,
    /// The log's verifier key, <name>+<key id>+<base64>; repeat during a key rotation.
    #[arg(long = "log-key", required = true)]
    log_keys: Vec<String>,
    /// A witness's verifier key (cosignature/v1); repeat for each witness.
    #[arg(long = "witness-key")]
    witness_keys: Vec<String>,
    /// Valid cosignatures required (default: all the witness keys given). 0 accepts unwitnessed checkpoints, and must be said explicitly.
    #[arg(long)]
    quorum: Option<usize>,
    /// File holding the last trusted signed checkpoint; created on the first success, replaced only on success.
    #[arg(long)]
    state: PathBuf,
    /// Also download every entry bundle and recompute the signed root from the entries.
    #[arg(long)]
    full: bool,
    /// Refuse a checkpoint unless the quorum of cosignatures is at most this many seconds old:
    /// a log (or a mirror) that serves a frozen view to hide newer entries fails this. The ledger
    /// has its checkpoint re-cosigned every `ledger.witness_refresh_secs` (default 300).
    #[arg(long)]
    max_age_secs: Option<u64>,
    /// Bearer token with the auditor role, for the entry bundles (only --full needs it).
    #[arg(long, env = "QUIS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl VerifyArgs {
    /// A full verification of the log at `url` (entry bundles read with an auditor's `token`).
    pub fn full(url: String, log_keys: Vec<String>, witness_keys: Vec<String>, state: PathBuf, token: String) -> Self {
        Self { url, log_keys, witness_keys, quorum: None, state, full: true, token: Some(token), max_age_secs: None }
    }
}

pub async fn run(args: &VerifyArgs) -> Result<()> {
    println!("{}", check(args).await?);
    Ok(())
}

/// Verifies the log as `quis verify` does; returns what was verified.
pub async fn check(args: &VerifyArgs) -> Result<String> {
    let log_keys = parse_keys(&args.log_keys, "--log-key")?;
    let witness_keys = parse_keys(&args.witness_keys, "--witness-key")?;
    if let Some(q) = args.quorum
        && q > witness_keys.len()
    {
        bail!("--quorum {q} exceeds the {} witness keys given (--witness-key)", witness_keys.len());
    }
    let token = match (&args.token, args.full) {
        (Some(t), true) => Some(t.as_str()),
        (None, true) => bail!("--full downloads entry bundles, which need an auditor token: --token or QUIS_TOKEN"),
        (_, false) => None,
    };
    let trusted = load_state(&args.state)?;
    let log = TileClient::new(&args.url, token.map(str::to_string)).context("--url")?;

    // 1. The latest checkpoint, its log signature and its cosignatures.
    let note = log.checkpoint().await?;
    let verified = checkpoint::open(&note, &log_keys, &witness_keys)
        .map_err(|e| signature_failure(e, &note, &log_keys))
        .with_context(|| format!("the checkpoint at {} is not trusted", log.url("checkpoint")))?;
    let new = &verified.checkpoint;
    let cosignatures = verified.cosigners.len();
    match args.quorum {
        None if witness_keys.is_empty() => bail!(
            "checkpoint of size {} is not witnessed: no witness keys given (--witness-key); \
             pass --quorum 0 to accept checkpoints without cosignatures",
            new.size
        ),
        quorum => {
            let quorum = quorum.unwrap_or(witness_keys.len());
            if cosignatures < quorum {
                bail!(
                    "checkpoint of size {} is not witnessed: {cosignatures} of {quorum} cosignatures{}",
                    new.size,
                    missing_witnesses(&witness_keys, &verified.cosigners)
                );
            }
        }
    }

    if let Some(max_age) = args.max_age_secs {
        check_freshness(&verified.cosigners, args.quorum.unwrap_or(witness_keys.len()), max_age, unix_now()?)
            .with_context(|| format!("checkpoint of size {} is stale", new.size))?;
    }

    // 2. Consistency with the last trusted checkpoint.
    let consistency = match &trusted {
        None => "trusted on first use (no earlier state)".to_string(),
        Some(old) => {
            check_consistency(&log, new, old).await?;
            format!("consistent with trusted size {}", old.size)
        }
    };

    // 3. Every entry, if asked.
    let full = if args.full {
        recompute_from_entries(&log, new).await?;
        format!(", all {} entries recompute the root", new.size)
    } else {
        String::new()
    };

    write_state(&args.state, &note)?;
    Ok(format!(
        "verified size {} root {}, {consistency}, {cosignatures} cosignatures{full}",
        new.size,
        B64.encode(new.root)
    ))
}

/// Cosignatures from the future beyond this many seconds are not counted as fresh.
const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Checks that at least `quorum` of the valid cosignatures were made within `max_age` seconds
/// of `now`: a witness's timestamp says when it last saw the log at this size.
fn check_freshness(cosigners: &[(String, u64)], quorum: usize, max_age: u64, now: u64) -> Result<()> {
    if quorum == 0 {
        bail!(
            "--max-age-secs needs witness cosignatures to date the checkpoint: give --witness-key and a quorum of 1 or more"
        );
    }
    let fresh = cosigners.iter().filter(|(_, t)| now.saturating_sub(max_age) <= *t && *t <= now + MAX_CLOCK_SKEW_SECS);
    let fresh = fresh.count();
    if fresh < quorum {
        let ages: Vec<String> =
            cosigners.iter().map(|(name, t)| format!("{name} cosigned {}s ago", now as i64 - *t as i64)).collect();
        bail!("{fresh} of {quorum} cosignatures are under {max_age}s old ({})", ages.join(", "));
    }
    Ok(())
}

fn unix_now() -> Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

fn parse_keys(keys: &[String], flag: &str) -> Result<Vec<Verifier>> {
    keys.iter().map(|k| Verifier::from_vkey(k.trim()).with_context(|| format!("{flag} {k:?}"))).collect()
}

/// Names the signature problem: a known key whose signature fails, or, when no given log key
/// signed, which keys did sign (so a wrong or rotated key is obvious).
fn signature_failure(e: TlogError, note: &str, log_keys: &[Verifier]) -> anyhow::Error {
    match e {
        TlogError::NoLogSignature => {
            let signed_by = Note::parse(note)
                .map(|n| {
                    n.signatures.iter().map(|s| format!("{}+{}", s.name, hex(&s.key_id))).collect::<Vec<_>>().join(", ")
                })
                .unwrap_or_default();
            let given = log_keys.iter().map(Verifier::label).collect::<Vec<_>>().join(", ");
            anyhow!("no valid log signature: the note is signed by [{signed_by}], not by any --log-key [{given}]")
        }
        TlogError::BadSignature { key } => anyhow!("the signature by {key} does not verify"),
        other => anyhow::Error::new(other),
    }
}

fn missing_witnesses(witness_keys: &[Verifier], cosigners: &[(String, u64)]) -> String {
    let missing: Vec<String> = witness_keys
        .iter()
        .filter(|k| !cosigners.iter().any(|(name, _)| name == k.name()))
        .map(Verifier::label)
        .collect();
    if missing.is_empty() { String::new() } else { format!(" (none by {})", missing.join(", ")) }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Proves from hash tiles that the tree of `new` extends the tree of `old`.
async fn check_consistency(log: &TileClient, new: &Checkpoint, old: &Checkpoint) -> Result<()> {
    if new.origin != old.origin {
        bail!("the log's origin is {:?}, the trusted state's is {:?}: not the same log", new.origin, old.origin);
    }
    if new.size < old.size {
        bail!(
            "the log's checkpoint of size {} is smaller than the trusted size {}: the log rolled back or serves a \
             stale view",
            new.size,
            old.size
        );
    }
    if new.size == old.size {
        if new.root != old.root {
            bail!(
                "fork at size {}: the log signed root {}, the trusted state holds root {}",
                new.size,
                B64.encode(new.root),
                B64.encode(old.root)
            );
        }
        return Ok(());
    }
    if old.size == 0 {
        // Every tree extends the empty one.
        return Ok(());
    }
    let inconsistent =
        || format!("the tree of size {} is not consistent with the trusted tree of size {}", new.size, old.size);
    let indexes = quis_tlog::tree_proof_indexes(new.size, old.size).with_context(inconsistent)?;
    let needed = tile::tiles_for_indexes(new.size, &indexes).with_context(inconsistent)?;
    let tiles = log.hash_tiles(&needed).await?;
    let reader = TileHashReader::new(new.size, &tiles);
    let proof = quis_tlog::prove_tree(new.size, old.size, &reader)
        .with_context(|| format!("the log's tiles cannot prove size {} from size {}", new.size, old.size))?;
    quis_tlog::check_tree(&proof, new.size, &new.root, old.size, &old.root).with_context(inconsistent)?;
    Ok(())
}

/// The entries of the tree of `size`: (bundle index, width) per bundle.
fn bundles(size: u64) -> impl Iterator<Item = (u64, u16)> {
    let full = u64::from(FULL_WIDTH);
    (0..size.div_ceil(full)).map(move |n| (n, (size - n * full).min(full) as u16))
}

/// Downloads every entry and recomputes the root; on a mismatch, finds the first entry that
/// differs from the leaf hashes the log committed to.
async fn recompute_from_entries(log: &TileClient, cp: &Checkpoint) -> Result<()> {
    let mut tree = MemoryHashes::new();
    let mut fetched = stream::iter(bundles(cp.size)).map(|(n, w)| log.entry_bundle(n, w)).buffered(PARALLEL_FETCHES);
    while let Some(entries) = fetched.try_next().await? {
        for entry in entries {
            tree.append_record(&entry)?;
        }
    }
    let root = tree_hash(cp.size, &tree)?;
    if root == cp.root {
        return Ok(());
    }

    // The level-0 tiles hold the leaf hashes the log committed to; they are trusted only if
    // they recompute the signed root themselves.
    let mut committed = MemoryHashes::new();
    let mut first_bad = None;
    let mut fetched = stream::iter(bundles(cp.size))
        .map(|(n, w)| async move { log.hash_tile(Tile { level: 0, index: n, width: w }).await.map(|t| (n, w, t)) })
        .buffered(PARALLEL_FETCHES);
    while let Some((n, w, (fetched_tile, data))) = fetched.try_next().await? {
        let want = usize::from(w) * quis_tlog::HASH_SIZE;
        if data.len() < want {
            bail!("tile {} holds {} bytes, expected at least {want}", fetched_tile.path(), data.len());
        }
        let start = n * u64::from(FULL_WIDTH);
        let indexes: Vec<u64> = (start..start + u64::from(w)).map(|i| stored_hash_index(0, i)).collect();
        let recomputed = tree.read_hashes(&indexes)?;
        for (i, (hash, mine)) in data[..want].chunks_exact(quis_tlog::HASH_SIZE).zip(&recomputed).enumerate() {
            let hash: quis_tlog::Hash = hash.try_into().context("a 32-byte hash")?;
            if first_bad.is_none() && hash != *mine {
                first_bad = Some(start + i as u64);
            }
            committed.append_leaf_hash(&hash)?;
        }
    }
    let tiles_root = tree_hash(cp.size, &committed)?;
    let signed = B64.encode(cp.root);
    match (tiles_root == cp.root, first_bad) {
        (true, Some(i)) => bail!(
            "entry {i} does not match the signed tree of size {}: its leaf hash differs from the one the log \
             committed to (the entries recompute root {}, the signed root is {signed})",
            cp.size,
            B64.encode(root)
        ),
        (true, None) => {
            bail!("the entries recompute root {}, not the signed root {signed} of size {}", B64.encode(root), cp.size)
        }
        (false, Some(i)) => bail!(
            "the entries do not recompute the signed root {signed} of size {}, nor do the log's level-0 tiles; \
             entries and tiles first differ at entry {i}",
            cp.size
        ),
        (false, None) => bail!(
            "the entries do not recompute the signed root {signed} of size {}, nor do the log's level-0 tiles \
             (which agree with the entries): the log's hashes above the leaves are wrong",
            cp.size
        ),
    }
}

/// The trusted checkpoint in the state file, if there is one.
///
/// Its signatures are not checked again: it was verified before it was written, and the
/// log keys given now may have rotated since. It must parse strictly, though.
fn load_state(path: &Path) -> Result<Option<Checkpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the state file {}", path.display())),
    };
    let note = Note::parse(&text).with_context(|| format!("the state file {} is not a signed note", path.display()))?;
    let cp = Checkpoint::parse(&note.text)
        .with_context(|| format!("the state file {} does not hold a checkpoint", path.display()))?;
    Ok(Some(cp))
}

/// Replaces the state file atomically: a temporary file in the same directory, synced, then
/// renamed over it.
fn write_state(path: &Path, note: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().context("the state path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(note.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable (best effort: not every platform can open directories).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing the state file {}", path.display()))
}
