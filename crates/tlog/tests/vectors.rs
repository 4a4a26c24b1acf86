//! Runs every vector file in `tests/vectors` (copied from the project's shared test data; see
//! the README files there for their origin).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use quis_tlog::checkpoint::{self, Checkpoint};
use quis_tlog::note::{KEY_TYPE_COSIGNATURE_V1, KEY_TYPE_ED25519, Note, Signer, Verifier};
use quis_tlog::tile::{self, Tile, TilePath};
use quis_tlog::{Hash, MemoryHashes, TlogError, check_record, check_tree, leaf_hash, tree_hash};
use serde::Deserialize;
use sha2::{Digest, Sha256};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out.sort();
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> T {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn b64(s: &str) -> Vec<u8> {
    B64.decode(s).unwrap()
}

/// A hash where the API takes one (leaf hash, proof element): anything but 32 bytes is refused,
/// as every parser in front of these functions (checkpoints, witness requests) refuses it.
fn strict_hash(s: &str) -> Option<Hash> {
    b64(s).try_into().ok()
}

/// A root as the vectors treat it: an opaque byte string compared for equality. Our roots are
/// 32 bytes, so a value of another length (e.g. "don't care 2") is mapped injectively to one
/// that no real root equals; this keeps "equal sizes, equal roots" cases meaningful.
fn root(s: &str) -> Hash {
    let bytes = b64(s);
    bytes
        .clone()
        .try_into()
        .unwrap_or_else(|_| Sha256::new().chain_update(b"not a 32-byte root:").chain_update(&bytes).finalize().into())
}

fn proof(p: &Option<Vec<String>>) -> Option<Vec<Hash>> {
    p.iter().flatten().map(|h| strict_hash(h)).collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inclusion {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Consistency {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[test]
fn rfc6962_inclusion_vectors() {
    let mut files = Vec::new();
    json_files(&vectors().join("rfc6962/inclusion"), &mut files);
    assert_eq!(files.len(), 98, "every inclusion vector file is run");
    let (mut accepted, mut rejected) = (0, 0);
    for file in &files {
        let v: Inclusion = read(file);
        let result = match (strict_hash(&v.leaf_hash), proof(&v.proof)) {
            (Some(leaf), Some(proof)) => check_record(&proof, v.tree_size, &root(&v.root), v.leaf_idx, &leaf),
            _ => Err(TlogError::Malformed("not a 32-byte hash".into())),
        };
        assert_eq!(result.is_err(), v.want_err, "{file:?} ({}): {result:?}", v.desc);
        if result.is_ok() { accepted += 1 } else { rejected += 1 }
    }
    println!("inclusion: {accepted} accepted, {rejected} rejected");
}

#[test]
fn rfc6962_consistency_vectors() {
    let mut files = Vec::new();
    json_files(&vectors().join("rfc6962/consistency"), &mut files);
    assert_eq!(files.len(), 98, "every consistency vector file is run");
    let (mut accepted, mut rejected) = (0, 0);
    for file in &files {
        let v: Consistency = read(file);
        let result = match proof(&v.proof) {
            Some(proof) => check_tree(&proof, v.size2, &root(&v.root2), v.size1, &root(&v.root1)),
            None => Err(TlogError::Malformed("not a 32-byte hash".into())),
        };
        assert_eq!(result.is_err(), v.want_err, "{file:?} ({}): {result:?}", v.desc);
        if result.is_ok() { accepted += 1 } else { rejected += 1 }
    }
    println!("consistency: {accepted} accepted, {rejected} rejected");
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<Key>,
    spec_example_vkey: String,
}

#[derive(Deserialize, Clone)]
struct Key {
    name: String,
    #[serde(rename = "type")]
    key_type: u8,
    seed_hex: String,
    public_hex: String,
    key_id_hex: String,
    vkey: String,
}

fn keys() -> Keys {
    read(&vectors().join("c2sp/keys.json"))
}

fn signer(key: &Key) -> Signer {
    let seed: [u8; 32] = hex::decode(&key.seed_hex).unwrap().try_into().unwrap();
    Signer::new(&key.name, key.key_type, seed).unwrap()
}

#[test]
fn c2sp_keys() {
    let keys = keys();
    assert_eq!(keys.keys.len(), 5);
    for key in &keys.keys {
        let s = signer(key);
        assert_eq!(hex::encode(s.public_key()), key.public_hex, "{}", key.name);
        assert_eq!(hex::encode(s.key_id()), key.key_id_hex, "{}", key.name);
        assert_eq!(s.vkey(), key.vkey, "{}", key.name);
        let v = Verifier::from_vkey(&key.vkey).unwrap();
        assert_eq!((v.name(), v.key_type(), v.key_id()), (key.name.as_str(), key.key_type, s.key_id()));
        assert_eq!(v.vkey(), key.vkey);
        assert_eq!(v, s.verifier());
    }
    let spec = Verifier::from_vkey(&keys.spec_example_vkey).unwrap();
    assert_eq!((spec.name(), hex::encode(spec.key_id()), spec.key_type()), ("example.com/foo", "530d903a".into(), 1));
}

#[derive(Deserialize)]
struct NoteVector {
    desc: String,
    note: String,
    log_vkeys: Vec<String>,
    witness_vkeys: Vec<String>,
    want_valid: bool,
    want: Option<Want>,
    why_invalid: Option<String>,
}

#[derive(Deserialize)]
struct Want {
    origin: String,
    size: u64,
    root_b64: String,
    cosigners: BTreeMap<String, u64>,
}

fn verifiers(vkeys: &[String]) -> Vec<Verifier> {
    vkeys.iter().map(|k| Verifier::from_vkey(k).unwrap()).collect()
}

#[test]
fn c2sp_notes() {
    let keys = keys().keys;
    let vectors: Vec<NoteVector> = read(&vectors().join("c2sp/notes.json"));
    assert_eq!(vectors.len(), 11);
    let tree = MemoryHashes::from_entries((0..1000).map(|i| format!("entry {i}"))).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for v in &vectors {
        let result = checkpoint::open(&v.note, &verifiers(&v.log_vkeys), &verifiers(&v.witness_vkeys));
        if !v.want_valid {
            let err = result.expect_err(&v.desc);
            let why = v.why_invalid.as_deref().unwrap_or_default();
            let expected = match why {
                "log signature does not verify" | "cosignature does not verify" => {
                    matches!(err, TlogError::BadSignature { .. })
                }
                "no known log key signed" => err == TlogError::NoLogSignature,
                "malformed note" => matches!(err, TlogError::MalformedNote(_)),
                other => panic!("unknown why_invalid {other:?}"),
            };
            assert!(expected, "{}: {why} but got {err}", v.desc);
            invalid += 1;
            continue;
        }
        let verified = result.unwrap_or_else(|e| panic!("{}: {e}", v.desc));
        let want = v.want.as_ref().unwrap();
        let want_root: Hash = b64(&want.root_b64).try_into().unwrap();
        assert_eq!(verified.checkpoint.origin, want.origin, "{}", v.desc);
        assert_eq!(verified.checkpoint.size, want.size, "{}", v.desc);
        assert_eq!(verified.checkpoint.root, want_root, "{}", v.desc);
        assert_eq!(verified.cosigners.iter().cloned().collect::<BTreeMap<_, _>>(), want.cosigners, "{}", v.desc);
        // The tree the checkpoints describe: 1,000 entries "entry i".
        assert_eq!(tree_hash(want.size, &tree).unwrap(), want_root);

        // Reproduce the note byte for byte from the seeds: log signatures first, in order,
        // then the cosignatures at the timestamps their lines carry.
        let parsed = Note::parse(&v.note).unwrap();
        let key_of =
            |name: &str, id: [u8; 4]| keys.iter().find(|k| k.name == name && signer(k).key_id() == id).map(signer);
        let mut log_signers = Vec::new();
        let mut cosignatures = Vec::new();
        for sig in &parsed.signatures {
            let s = key_of(&sig.name, sig.key_id).unwrap_or_else(|| panic!("{}: no seed for {}", v.desc, sig.name));
            match s.key_type() {
                KEY_TYPE_ED25519 => {
                    assert!(cosignatures.is_empty(), "{}: log signature after a cosignature", v.desc);
                    log_signers.push(s);
                }
                KEY_TYPE_COSIGNATURE_V1 => {
                    let ts = sig.cosignature_timestamp().unwrap();
                    cosignatures.push(checkpoint::cosign(&parsed.text, &s, ts).unwrap());
                }
                other => panic!("key type {other}"),
            }
        }
        let cp = Checkpoint {
            origin: want.origin.clone(),
            size: want.size,
            root: want_root,
            extensions: Checkpoint::parse(&parsed.text).unwrap().extensions,
        };
        assert_eq!(cp.body(), parsed.text, "{}", v.desc);
        let refs: Vec<&Signer> = log_signers.iter().collect();
        let mut note = checkpoint::sign(&cp, &refs).unwrap();
        if !cosignatures.is_empty() {
            note = checkpoint::add_signatures(&note, &cosignatures).unwrap();
        }
        assert_eq!(note, v.note, "{}: not reproduced byte for byte", v.desc);
        valid += 1;
    }
    assert_eq!((valid, invalid), (5, 6));
}

#[derive(Deserialize)]
struct Tiles {
    tile_paths: Vec<TilePathVector>,
    partial_examples: Vec<Partial>,
    entries_bundle_example: Bundle,
}

#[derive(Deserialize)]
struct TilePathVector {
    index: u64,
    path: String,
}

#[derive(Deserialize)]
struct Partial {
    tree_size: u64,
    level: u8,
    tile: u64,
    path: String,
}

#[derive(Deserialize)]
struct Bundle {
    entries_b64: Vec<String>,
    bundle_b64: String,
}

#[test]
fn c2sp_tiles() {
    let v: Tiles = read(&vectors().join("c2sp/tiles.json"));
    for t in &v.tile_paths {
        assert_eq!(tile::n_path(t.index), t.path);
        let full = Tile { level: 0, index: t.index, width: 256 };
        assert_eq!(tile::parse(&format!("tile/0/{}", t.path)), Ok(TilePath::Hashes(full)));
        assert_eq!(
            tile::parse(&format!("tile/entries/{}", t.path)),
            Ok(TilePath::Entries { index: t.index, width: 256 })
        );
    }
    let tree = MemoryHashes::from_entries((0..1000).map(|i| format!("entry {i}"))).unwrap();
    for p in &v.partial_examples {
        let tiles = Tile::for_tree(p.tree_size);
        let tile = tiles.iter().find(|t| t.level == p.level && t.index == p.tile).unwrap();
        assert_eq!(tile.path(), p.path);
        assert_eq!(tile::parse(&p.path), Ok(TilePath::Hashes(*tile)));
        let data = tile::read_tile_data(*tile, &tree).unwrap();
        assert_eq!(data.len(), usize::from(tile.width) * 32);
    }
    let entries: Vec<Vec<u8>> = v.entries_bundle_example.entries_b64.iter().map(|e| b64(e)).collect();
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let bundle = b64(&v.entries_bundle_example.bundle_b64);
    assert_eq!(tile::encode_bundle(&refs).unwrap(), bundle);
    assert_eq!(tile::decode_bundle(&bundle).unwrap(), entries);
    // The bundle's entries hash to the first leaves of the vectors' tree.
    let level0 = tile::read_tile_data(Tile { level: 0, index: 0, width: 2 }, &tree).unwrap();
    assert_eq!(level0, [leaf_hash(&entries[0]), leaf_hash(&entries[1])].concat());
}
