//! Everything the ledger, the witness and `quis verify` parse from the
//! network: signed notes, checkpoints, verifier keys, tile paths, entry
//! bundles, add-checkpoint requests and witness responses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quis_tlog::{checkpoint::Checkpoint, note, tile, witness};

fuzz_target!(|data: &[u8]| {
    let _ = tile::decode_bundle(data);
    let _ = witness::AddCheckpoint::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(n) = note::Note::parse(text) {
            // What parses re-encodes to the same text.
            assert_eq!(n.encode(), text);
        }
        let _ = Checkpoint::parse(text);
        let _ = note::Verifier::from_vkey(text);
        if let Ok(path) = tile::parse(text) {
            let again = match path {
                tile::TilePath::Hashes(t) => t.path(),
                tile::TilePath::Entries { index, width } => tile::entries_path(index, width),
            };
            assert_eq!(again, text, "tile paths are canonical");
        }
        let _ = witness::parse_response(text);
    }
});
