//! c2sp.org/tlog-tiles: tile coordinates and paths, tile contents, entry bundles, and a
//! [`HashReader`] over tiles fetched from a log.
//!
//! A tile at level `L` holds up to 256 consecutive hashes of tree level `8 * L`; a full tile
//! is the bottom row of a complete subtree of height 8, so the tree levels between tile levels
//! are recomputed by hashing. Tile `N` of level `L` at width `W` holds the hashes stored at
//! `stored_hash_index(8 * L, N * 256 + i)` for `i < W`.

use std::collections::HashMap;

use crate::tree::checked_stored_hash_index;
use crate::{HASH_SIZE, Hash, HashReader, TlogError, node_hash, split_stored_hash_index};

/// Tree levels spanned by one tile level (256 hashes per full tile).
pub const HEIGHT: u8 = 8;

/// Hashes (or entries) in a full tile.
pub const FULL_WIDTH: u16 = 1 << HEIGHT;

/// Tile levels allowed in paths by c2sp.org/tlog-tiles (`0..=63`).
pub const MAX_LEVEL: u8 = 63;

/// A hash tile: `width` hashes of tree level `8 * level`, starting at hash `index * 256`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    /// Tile level (0 holds leaf hashes).
    pub level: u8,
    /// Index of the tile within its level.
    pub index: u64,
    /// Number of hashes, 1..=256; less than 256 for a partial tile.
    pub width: u16,
}

/// What a tile path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`.
    Hashes(Tile),
    /// `tile/entries/<N>[.p/<W>]`: the bundle of entries `index * 256 ..` (`width` of them).
    Entries { index: u64, width: u16 },
}

/// Encodes a tile index as 3-digit path elements, all but the last prefixed with `x`
/// (`1234067` → `x001/x234/067`), which keeps directory listings small when tiles are files.
pub fn n_path(n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        groups.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

fn suffix(width: u16) -> String {
    if width == FULL_WIDTH { String::new() } else { format!(".p/{width}") }
}

/// The path of an entry bundle, e.g. `tile/entries/x001/234.p/7`.
pub fn entries_path(index: u64, width: u16) -> String {
    format!("tile/entries/{}{}", n_path(index), suffix(width))
}

impl Tile {
    /// The path of the tile, e.g. `tile/0/x001/234.p/7` (no leading slash).
    pub fn path(&self) -> String {
        format!("tile/{}/{}{}", self.level, n_path(self.index), suffix(self.width))
    }

    /// Every tile (full and partial) of the tree of `tree_size` records, level by level.
    pub fn for_tree(tree_size: u64) -> Vec<Tile> {
        Self::new_tiles(0, tree_size)
    }

    /// The tiles to publish when the tree grows from `old_size` to `new_size` records: every
    /// tile that changed or appeared, each at its width in the new tree.
    pub fn new_tiles(old_size: u64, new_size: u64) -> Vec<Tile> {
        let mut tiles = Vec::new();
        for level in 0..=MAX_LEVEL {
            let shift = u32::from(level) * u32::from(HEIGHT);
            let (Some(old_n), Some(new_n)) = (old_size.checked_shr(shift), new_size.checked_shr(shift)) else {
                break;
            };
            if new_n == 0 {
                break;
            }
            if old_n == new_n {
                continue;
            }
            for index in (old_n >> HEIGHT)..(new_n >> HEIGHT) {
                tiles.push(Tile { level, index, width: FULL_WIDTH });
            }
            let width = (new_n % u64::from(FULL_WIDTH)) as u16;
            if width > 0 {
                tiles.push(Tile { level, index: new_n >> HEIGHT, width });
            }
        }
        tiles
    }

    /// Whether all the tile's hashes exist in the tree of `tree_size` records (so the tile can
    /// be served for it). A partial tile of an earlier size stays valid as the tree grows.
    pub fn is_within(&self, tree_size: u64) -> bool {
        let shift = u32::from(self.level) * u32::from(HEIGHT);
        let Some(hashes_at_level) = tree_size.checked_shr(shift) else {
            return false;
        };
        (1..=FULL_WIDTH).contains(&self.width)
            && self
                .index
                .checked_mul(u64::from(FULL_WIDTH))
                .and_then(|start| start.checked_add(u64::from(self.width)))
                .is_some_and(|end| end <= hashes_at_level)
    }

    /// The stored-hash indexes of the tile's hashes, or `None` past any representable tree.
    fn stored_indexes(&self) -> Option<Vec<u64>> {
        if self.width == 0 || self.width > FULL_WIDTH {
            return None;
        }
        let tree_level = self.level.checked_mul(HEIGHT)?;
        let start = self.index.checked_mul(u64::from(FULL_WIDTH))?;
        (0..u64::from(self.width)).map(|i| checked_stored_hash_index(tree_level, start.checked_add(i)?)).collect()
    }
}

fn malformed(path: &str) -> TlogError {
    TlogError::MalformedTilePath(path.to_owned())
}

/// Parses a decimal with no sign and no leading zeros (except `0` itself).
fn canonical_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// Parses a tile or entry-bundle path (without the leading `/`), accepting only the canonical
/// form: `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]` with `L` in 0..=63, `N` in
/// `x`-prefixed 3-digit groups without a leading `x000`, and `W` in 1..=255, no leading zeros.
pub fn parse(path: &str) -> Result<TilePath, TlogError> {
    // The longest canonical path: "tile/entries/" + 7 groups of 4 + ".p/255".
    if path.len() > 64 {
        return Err(malformed(path));
    }
    let mut parts: Vec<&str> = path.split('/').collect();
    if parts.len() < 3 || parts[0] != "tile" {
        return Err(malformed(path));
    }
    let mut width = FULL_WIDTH;
    if let Some(last_group) = parts[parts.len() - 2].strip_suffix(".p") {
        let w = canonical_decimal(parts[parts.len() - 1]).ok_or_else(|| malformed(path))?;
        if !(1..u64::from(FULL_WIDTH)).contains(&w) {
            return Err(malformed(path));
        }
        width = w as u16;
        parts.pop();
        let at = parts.len() - 1;
        parts[at] = last_group;
    }
    let groups = &parts[2..];
    if groups.is_empty() {
        return Err(malformed(path));
    }
    let mut index: u64 = 0;
    for (i, group) in groups.iter().enumerate() {
        let digits = if i + 1 < groups.len() { group.strip_prefix('x') } else { Some(*group) };
        let digits = digits.filter(|d| d.len() == 3 && d.bytes().all(|b| b.is_ascii_digit()));
        let value: u64 = digits.and_then(|d| d.parse().ok()).ok_or_else(|| malformed(path))?;
        index = index.checked_mul(1000).and_then(|x| x.checked_add(value)).ok_or_else(|| malformed(path))?;
    }
    let parsed = if parts[1] == "entries" {
        TilePath::Entries { index, width }
    } else {
        let level =
            canonical_decimal(parts[1]).filter(|&l| l <= u64::from(MAX_LEVEL)).ok_or_else(|| malformed(path))?;
        TilePath::Hashes(Tile { level: level as u8, index, width })
    };
    // Rejects `x000/` prefixes and anything else that does not round-trip.
    let canonical = match parsed {
        TilePath::Hashes(tile) => tile.path(),
        TilePath::Entries { index, width } => entries_path(index, width),
    };
    if canonical != path {
        return Err(malformed(path));
    }
    Ok(parsed)
}

/// The contents of `tile` (its `width * 32` bytes of hashes), read through the stored-hash layout.
pub fn read_tile_data(tile: Tile, reader: &impl HashReader) -> Result<Vec<u8>, TlogError> {
    let indexes = tile.stored_indexes().ok_or_else(|| TlogError::TileOutOfRange { path: tile.path() })?;
    let hashes = reader.read_hashes(&indexes)?;
    if hashes.len() != indexes.len() {
        return Err(TlogError::HashReaderMisbehaved { want: indexes.len(), got: hashes.len() });
    }
    Ok(hashes.concat())
}

/// Encodes an entry bundle: each entry prefixed by its big-endian u16 length.
pub fn encode_bundle(entries: &[&[u8]]) -> Result<Vec<u8>, TlogError> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for entry in entries {
        let len = u16::try_from(entry.len()).map_err(|_| TlogError::EntryTooLarge { len: entry.len() })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Decodes an entry bundle; refuses truncated data and more than 256 entries.
pub fn decode_bundle(data: &[u8]) -> Result<Vec<Vec<u8>>, TlogError> {
    let mut entries = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if entries.len() == usize::from(FULL_WIDTH) {
            return Err(TlogError::MalformedBundle("more than 256 entries".into()));
        }
        let [hi, lo, tail @ ..] = rest else {
            return Err(TlogError::MalformedBundle("truncated length prefix".into()));
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if tail.len() < len {
            return Err(TlogError::MalformedBundle(format!(
                "entry {} claims {len} bytes, {} remain",
                entries.len(),
                tail.len()
            )));
        }
        let (entry, after) = tail.split_at(len);
        entries.push(entry.to_vec());
        rest = after;
    }
    Ok(entries)
}

/// Where the stored hash `index` lives in the tiles of a tree of `tree_size` records: the tile
/// (at its width in that tree) and the range of its hashes that hash up to it.
fn locate(tree_size: u64, index: u64) -> Result<(Tile, usize, usize), TlogError> {
    let (level, n) = split_stored_hash_index(index);
    // The node (level, n) covers records [n << level, (n + 1) << level); it must be complete.
    let complete = n
        .checked_add(1)
        .and_then(|end| if u32::from(level) < 64 && end <= (u64::MAX >> level) { Some(end << level) } else { None })
        .is_some_and(|end| end <= tree_size);
    if !complete {
        return Err(TlogError::IndexOutOfRange { index, size: tree_size });
    }
    let tile_level = level / HEIGHT;
    let sub = level % HEIGHT;
    // First hash of tile level `tile_level` under the node, and how many it spans.
    let first = n << sub;
    let tile_index = first >> HEIGHT;
    let start = (first % u64::from(FULL_WIDTH)) as usize;
    let count = 1usize << sub;
    let at_level = tree_size >> (u32::from(tile_level) * u32::from(HEIGHT));
    let width = (at_level - tile_index * u64::from(FULL_WIDTH)).min(u64::from(FULL_WIDTH)) as u16;
    Ok((Tile { level: tile_level, index: tile_index, width }, start, start + count))
}

/// The tiles holding the stored hashes `indexes` in the tree of `tree_size` records, sorted and
/// without duplicates: what `quis verify` fetches before proving from tiles.
pub fn tiles_for_indexes(tree_size: u64, indexes: &[u64]) -> Result<Vec<Tile>, TlogError> {
    let mut tiles = indexes.iter().map(|&i| locate(tree_size, i).map(|(t, _, _)| t)).collect::<Result<Vec<_>, _>>()?;
    tiles.sort();
    tiles.dedup();
    Ok(tiles)
}

/// A [`HashReader`] over tiles fetched from a log, for a tree of a given size.
///
/// The tiles are not trusted: hashes read through this reader feed [`crate::prove_record`],
/// [`crate::prove_tree`] or [`crate::tree_hash`], whose results are then checked against a
/// signed checkpoint ([`crate::check_record`], [`crate::check_tree`], or comparing roots). A
/// wrong tile makes that check fail. A full tile may stand in for a partial one.
#[derive(Debug, Clone, Copy)]
pub struct TileHashReader<'a> {
    tree_size: u64,
    tiles: &'a HashMap<Tile, Vec<u8>>,
}

impl<'a> TileHashReader<'a> {
    /// Reads hashes of the tree of `tree_size` records from `tiles` (tile → its bytes).
    pub fn new(tree_size: u64, tiles: &'a HashMap<Tile, Vec<u8>>) -> Self {
        Self { tree_size, tiles }
    }

    fn tile_data(&self, tile: Tile) -> Result<&'a [u8], TlogError> {
        let full = Tile { width: FULL_WIDTH, ..tile };
        let (found, data) = self
            .tiles
            .get(&tile)
            .map(|d| (tile, d))
            .or_else(|| self.tiles.get(&full).map(|d| (full, d)))
            .ok_or_else(|| TlogError::TileMissing { path: tile.path() })?;
        let want = usize::from(found.width) * HASH_SIZE;
        if data.len() != want {
            return Err(TlogError::TileSizeInvalid { path: found.path(), len: data.len(), want });
        }
        Ok(data)
    }
}

/// The root of the complete subtree whose bottom row is `hashes` (a power of two of them).
fn subtree_root(hashes: &[u8]) -> Hash {
    let mut row: Vec<Hash> = hashes
        .chunks_exact(HASH_SIZE)
        .map(|c| {
            let mut h = [0; HASH_SIZE];
            h.copy_from_slice(c);
            h
        })
        .collect();
    while row.len() > 1 {
        row = row.chunks(2).map(|pair| if let [l, r] = pair { node_hash(l, r) } else { pair[0] }).collect();
    }
    row.first().copied().unwrap_or([0; HASH_SIZE])
}

impl HashReader for TileHashReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|&index| {
                let (tile, start, end) = locate(self.tree_size, index)?;
                let data = self.tile_data(tile)?;
                Ok(subtree_root(&data[start * HASH_SIZE..end * HASH_SIZE]))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_paths() {
        for good in ["tile/0/000", "tile/0/x001/234.p/7", "tile/63/999", "tile/entries/000.p/1", "tile/1/000.p/255"] {
            assert!(parse(good).is_ok(), "{good}");
        }
        for bad in [
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/07",
            "tile/00/000",
            "tile/64/000",
            "tile/0/x000/001",
            "tile/0/1",
            "tile/0/0001",
            "tile/0/x001",
            "tile/0/001/002",
            "tile/0/000/",
            "/tile/0/000",
            "tile/0/000.p/7/8",
            "tile/entries",
            "tile/8/0/000",
            "tile/data/000",
            "tile/0/+01",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("tile/entries/x001/x000/000"), Ok(TilePath::Entries { index: 1_000_000, width: 256 }));
    }

    #[test]
    fn tiles_of_70000() {
        // The example of c2sp.org/tlog-tiles.
        let tiles = Tile::for_tree(70_000);
        assert_eq!(tiles.iter().filter(|t| t.level == 0 && t.width == 256).count(), 273);
        assert!(tiles.contains(&Tile { level: 0, index: 273, width: 112 }));
        assert!(tiles.contains(&Tile { level: 1, index: 0, width: 256 }));
        assert!(tiles.contains(&Tile { level: 1, index: 1, width: 17 }));
        assert!(tiles.contains(&Tile { level: 2, index: 0, width: 1 }));
        assert_eq!(tiles.len(), 277);
        assert_eq!(
            Tile::for_tree(256),
            vec![Tile { level: 0, index: 0, width: 256 }, Tile { level: 1, index: 0, width: 1 }]
        );
        assert!(Tile::for_tree(0).is_empty());
    }

    #[test]
    fn out_of_range_tiles_are_errors() {
        let huge = Tile { level: 63, index: 5, width: 256 };
        assert!(!huge.is_within(u64::MAX));
        assert!(matches!(read_tile_data(huge, &crate::MemoryHashes::new()), Err(TlogError::TileOutOfRange { .. })));
        assert!(decode_bundle(&[0, 5, 1]).is_err());
        assert!(decode_bundle(&[0]).is_err());
        assert!(encode_bundle(&[&[0; 65_536]]).is_err());
    }
}
