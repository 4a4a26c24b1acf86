//! Property tests: proofs built from the stored-hash layout verify, and stop verifying when
//! touched; roots and tiles agree with the RFC 6962 / c2sp.org/tlog-tiles definitions computed
//! naively; encoders and parsers round-trip and never panic on arbitrary input.

use std::collections::HashMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use quis_tlog::checkpoint::{self, Checkpoint};
use quis_tlog::note::{KEY_TYPE_COSIGNATURE_V1, KEY_TYPE_ED25519, Note, Signer, Verifier};
use quis_tlog::tile::{self, Tile, TileHashReader, TilePath};
use quis_tlog::witness::AddCheckpoint;
use quis_tlog::{
    Hash, HashReader, MemoryHashes, check_record, check_tree, leaf_hash, node_hash, prove_record, prove_tree,
    record_proof_indexes, split_stored_hash_index, stored_hash_count, stored_hash_index, tree_hash, tree_proof_indexes,
};

const MAX: u64 = 3000;

/// One tree of MAX records; the stored hashes of a smaller tree are a prefix of it.
fn store() -> &'static (MemoryHashes, Vec<Hash>) {
    static STORE: OnceLock<(MemoryHashes, Vec<Hash>)> = OnceLock::new();
    STORE.get_or_init(|| {
        let mut m = MemoryHashes::new();
        let mut leaves = Vec::new();
        for i in 0..MAX {
            let entry = format!("record {i}");
            assert_eq!(m.append_record(entry.as_bytes()).unwrap(), i);
            leaves.push(leaf_hash(entry.as_bytes()));
            assert_eq!(m.0.len() as u64, stored_hash_count(i + 1));
        }
        (m, leaves)
    })
}

/// MTH(D[0:n]) straight from RFC 6962 §2.1.
fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => quis_tlog::EMPTY_HASH,
        1 => leaves[0],
        n => {
            let k = (n - 1).next_power_of_two().max(1);
            let k = if k >= n { k / 2 } else { k };
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

/// Every single-bit change anywhere in the proof must make it fail.
fn each_flip(proof: &[Hash], mut check: impl FnMut(&[Hash]) -> bool) {
    for i in 0..proof.len() {
        for byte in 0..32 {
            let mut bad = proof.to_vec();
            bad[i][byte] ^= 1 << (byte % 8);
            assert!(!check(&bad), "flipping bit in hash {i} byte {byte} went unnoticed");
        }
    }
}

fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX).prop_flat_map(|size| (Just(size), 0..size))
}

fn size_and_old() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX).prop_flat_map(|size| (Just(size), 1..=size))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn inclusion_proofs_verify_and_resist_tampering((size, index) in size_and_index()) {
        let (m, leaves) = store();
        let root = tree_hash(size, m).unwrap();
        let proof = prove_record(size, index, m).unwrap();
        let leaf = leaves[index as usize];
        prop_assert_eq!(check_record(&proof, size, &root, index, &leaf), Ok(()));
        each_flip(&proof, |p| check_record(p, size, &root, index, &leaf).is_ok());
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(check_record(&longer, size, &root, index, &leaf).is_err());
        if !proof.is_empty() {
            prop_assert!(check_record(&proof[1..], size, &root, index, &leaf).is_err());
            prop_assert!(check_record(&proof, size, &root, index ^ 1, &leaf).is_err());
        }
        let mut wrong_leaf = leaf;
        wrong_leaf[0] ^= 1;
        prop_assert!(check_record(&proof, size, &root, index, &wrong_leaf).is_err());
        prop_assert!(check_record(&proof, size, &root, size, &leaf).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_resist_tampering((size, old) in size_and_old()) {
        let (m, _) = store();
        let root = tree_hash(size, m).unwrap();
        let old_root = tree_hash(old, m).unwrap();
        let proof = prove_tree(size, old, m).unwrap();
        prop_assert_eq!(check_tree(&proof, size, &root, old, &old_root), Ok(()));
        each_flip(&proof, |p| check_tree(p, size, &root, old, &old_root).is_ok());
        let mut wrong = old_root;
        wrong[31] ^= 0x80;
        prop_assert!(check_tree(&proof, size, &root, old, &wrong).is_err());
        prop_assert!(check_tree(&proof, size, &wrong, old, &old_root).is_err());
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(check_tree(&longer, size, &root, old, &old_root).is_err());
        if !proof.is_empty() {
            prop_assert!(check_tree(&proof[1..], size, &root, old, &old_root).is_err());
        }
        if old < size {
            prop_assert!(check_tree(&proof, size, &root, old + 1, &old_root).is_err());
        }
    }

    #[test]
    fn tree_hash_is_the_rfc6962_root(size in 0..=MAX) {
        let (m, leaves) = store();
        prop_assert_eq!(tree_hash(size, m).unwrap(), naive_root(&leaves[..size as usize]));
    }

    #[test]
    fn tiles_hold_the_spec_hashes(size in 1..=MAX) {
        let (m, leaves) = store();
        let mut fetched = HashMap::new();
        for t in Tile::for_tree(size) {
            prop_assert!(t.is_within(size));
            let data = tile::read_tile_data(t, m).unwrap();
            prop_assert_eq!(data.len(), usize::from(t.width) * 32);
            // c2sp.org/tlog-tiles: hash i of tile n at level l is MTH(D[(n*256+i)*256^l : (n*256+i+1)*256^l]).
            let span = 256usize.pow(u32::from(t.level));
            for (i, hash) in data.chunks_exact(32).enumerate() {
                let first = (t.index as usize * 256 + i) * span;
                prop_assert_eq!(hash, &naive_root(&leaves[first..first + span])[..]);
            }
            prop_assert_eq!(tile::parse(&t.path()), Ok(TilePath::Hashes(t)));
            fetched.insert(t, data);
        }
        // Proofs computed from the fetched tiles equal those from the store.
        let reader = TileHashReader::new(size, &fetched);
        prop_assert_eq!(tree_hash(size, &reader).unwrap(), tree_hash(size, m).unwrap());
        for index in [0, size / 2, size - 1] {
            let needed = tile::tiles_for_indexes(size, &record_proof_indexes(size, index).unwrap()).unwrap();
            prop_assert!(needed.iter().all(|t| fetched.contains_key(t)));
            prop_assert_eq!(prove_record(size, index, &reader).unwrap(), prove_record(size, index, m).unwrap());
        }
        for old in [1, size / 3 + 1, size] {
            let needed = tile::tiles_for_indexes(size, &tree_proof_indexes(size, old).unwrap()).unwrap();
            prop_assert!(needed.iter().all(|t| fetched.contains_key(t)));
            prop_assert_eq!(prove_tree(size, old, &reader).unwrap(), prove_tree(size, old, m).unwrap());
        }
    }

    #[test]
    fn new_tiles_cover_growth(old in 0..=MAX, grow in 0..=MAX) {
        let new = (old + grow).min(MAX);
        let all: std::collections::HashSet<Tile> = Tile::for_tree(new).into_iter().collect();
        let before: std::collections::HashSet<Tile> = Tile::for_tree(old).into_iter().collect();
        let published: std::collections::HashSet<Tile> = Tile::new_tiles(old, new).into_iter().collect();
        // Everything of the new tree is either unchanged from the old one or newly published.
        for t in &all {
            prop_assert!(before.contains(t) || published.contains(t), "{:?} missing", t);
        }
        prop_assert!(published.is_subset(&all));
    }

    #[test]
    fn stored_hash_index_round_trips(level in 0u8..40, n in 0u64..(1 << 20)) {
        let index = stored_hash_index(level, n);
        prop_assert_eq!(split_stored_hash_index(index), (level, n));
    }

    #[test]
    fn tile_paths_round_trip(level in 0u8..=63, index in any::<u64>(), width in 1u16..=256) {
        let t = Tile { level, index, width };
        prop_assert_eq!(tile::parse(&t.path()), Ok(TilePath::Hashes(t)));
        let p = tile::entries_path(index, width);
        prop_assert_eq!(tile::parse(&p), Ok(TilePath::Entries { index, width }));
    }

    #[test]
    fn bundles_round_trip(entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40)) {
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let bundle = tile::encode_bundle(&refs).unwrap();
        prop_assert_eq!(tile::decode_bundle(&bundle).unwrap(), entries);
    }

    #[test]
    fn checkpoints_round_trip(
        origin in "[a-z0-9./-]{1,30}",
        size in any::<u64>(),
        root in any::<[u8; 32]>(),
        extensions in proptest::collection::vec("[ -~]{1,20}", 0..3),
        ts in 0u64..(1 << 40),
    ) {
        let cp = Checkpoint { origin: origin.clone(), size, root, extensions };
        let log = Signer::new(&origin, KEY_TYPE_ED25519, [3; 32]).unwrap();
        let w = Signer::new("w.example", KEY_TYPE_COSIGNATURE_V1, [4; 32]).unwrap();
        let signed = checkpoint::sign(&cp, &[&log]).unwrap();
        let cosigned = checkpoint::add_signatures(&signed, &[checkpoint::cosign(&cp.body(), &w, ts).unwrap()]).unwrap();
        let v = checkpoint::open(&cosigned, &[log.verifier()], &[w.verifier()]).unwrap();
        prop_assert_eq!(&v.checkpoint, &cp);
        prop_assert_eq!(v.cosigners, vec![("w.example".to_string(), ts)]);
        prop_assert_eq!(Note::parse(&cosigned).unwrap().encode(), cosigned.clone());
        // Any single changed character of the body breaks the note.
        let body_len = cp.body().len();
        let tampered = format!("{}{}", &cosigned[..body_len - 2].replacen(&origin, &format!("{origin}x"), 1), &cosigned[body_len - 2..]);
        prop_assert!(checkpoint::open(&tampered, &[log.verifier()], &[w.verifier()]).is_err());
        let req = AddCheckpoint { old_size: size / 2, proof: vec![root; (size % 5) as usize], note: cosigned };
        let req = if req.old_size == 0 { AddCheckpoint { proof: vec![], ..req } } else { req };
        prop_assert_eq!(AddCheckpoint::parse(req.encode().as_bytes()).unwrap(), req);
    }

    #[test]
    fn parsers_never_panic(s in "(?s).{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Note::parse(&s);
        let _ = Checkpoint::parse(&s);
        let _ = tile::parse(&s);
        let _ = Verifier::from_vkey(&s);
        let _ = quis_tlog::witness::parse_response(&s);
        let _ = AddCheckpoint::parse(s.as_bytes());
        let _ = AddCheckpoint::parse(&bytes);
        let _ = tile::decode_bundle(&bytes);
        let log = Verifier::from_vkey("quis.example/audit+5e125644+AVQUoH6TlberSqpFPbN2X5atoHWb3U85u4gHHBB3SZG0").unwrap();
        let _ = checkpoint::open(&s, &[log], &[]);
    }

    #[test]
    fn structured_garbage_never_panics(
        prefix in prop::sample::select(vec!["tile/", "tile/0/", "tile/entries/", "tile/1/x001/", "tile/0/000.p/"]),
        rest in "[0-9x./p]{0,30}",
        index in any::<u64>(),
        size in any::<u64>(),
    ) {
        let _ = tile::parse(&format!("{prefix}{rest}"));
        let m = &store().0;
        let _ = tile::tiles_for_indexes(size, &[index]);
        let _ = TileHashReader::new(size, &HashMap::new()).read_hashes(&[index]);
        let _ = prove_record(size.min(MAX), index, m);
        let _ = prove_tree(size.min(MAX), index, m);
        let _ = check_record(&[[0; 32]], size, &[0; 32], index, &[0; 32]);
        let _ = check_tree(&[[0; 32]], size, &[0; 32], index, &[0; 32]);
        let _ = split_stored_hash_index(index);
        let _ = tile::read_tile_data(Tile { level: (index % 64) as u8, index: size, width: 256 }, m);
    }
}
