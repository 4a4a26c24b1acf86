//! A c2sp.org/tlog-tiles client (feature `client`): fetches the checkpoint,
//! hash tiles and entry bundles over HTTP, for `quis verify` and sentinel's
//! integrity monitor. It only fetches bytes: nothing it returns is trusted
//! until the format and proof logic of this crate checked it against a signed
//! checkpoint.
use std::{collections::HashMap, time::Duration};

use futures::{StreamExt as _, TryStreamExt as _, stream};

use crate::{
    HASH_SIZE,
    note::MAX_NOTE_SIZE,
    tile::{self, FULL_WIDTH, Tile},
};

/// Requests in flight at once while downloading several tiles.
const PARALLEL_FETCHES: usize = 8;

/// The largest entry bundle: 256 entries of at most 65,535 bytes, each with a 2-byte length.
const MAX_BUNDLE_BYTES: usize = FULL_WIDTH as usize * (2 + u16::MAX as usize);

/// The largest hash tile.
const MAX_TILE_BYTES: usize = FULL_WIDTH as usize * HASH_SIZE;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    message: String,
    missing: bool,
}

impl FetchError {
    fn other(message: String) -> Self {
        Self { message, missing: false }
    }

    fn missing(message: String) -> Self {
        Self { message, missing: true }
    }

    /// Whether the log answered 404 for something its checkpoint covers (not a transport failure).
    pub fn is_missing(&self) -> bool {
        self.missing
    }
}

type Result<T> = std::result::Result<T, FetchError>;

/// Fetches from a c2sp.org/tlog-tiles log.
#[derive(Clone, Debug)]
pub struct TileClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl TileClient {
    /// A client of the log at `url` (http or https); `token`, if any, is sent with entry bundles only.
    pub fn new(url: &str, token: Option<String>) -> Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|e| FetchError::other(format!("{url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::other(format!("{url:?} must be http or https")));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            // The token must not follow a redirect anywhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| FetchError::other(format!("building the HTTP client: {e}")))?;
        Ok(Self { http, base, token })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// GETs `path`; `None` on 404. Bodies larger than `max` are refused.
    async fn get(&self, path: &str, max: usize, auth: bool) -> Result<Option<Vec<u8>>> {
        let url = self.url(path);
        let mut request = self.http.get(&url);
        if auth && let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await.map_err(|e| FetchError::other(format!("GET {url}: {e}")))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 | 403 => " (entry bundles need a token with the auditor role)",
                _ => "",
            };
            let body = response.text().await.unwrap_or_default();
            let body: String = body.trim().chars().take(200).collect();
            return Err(FetchError::other(format!("GET {url}: {status}{hint}: {body}")));
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| FetchError::other(format!("GET {url}: reading: {e}")))?
        {
            if body.len() + chunk.len() > max {
                return Err(FetchError::other(format!("GET {url}: the body exceeds {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }

    /// The latest checkpoint note.
    pub async fn checkpoint(&self) -> Result<String> {
        let url = self.url("checkpoint");
        let body = self
            .get("checkpoint", MAX_NOTE_SIZE, false)
            .await?
            .ok_or_else(|| FetchError::other(format!("GET {url}: 404, the log has no checkpoint yet")))?;
        String::from_utf8(body).map_err(|_| FetchError::other(format!("GET {url}: the checkpoint is not UTF-8")))
    }

    /// A hash tile; a partial tile the log no longer serves may be replaced by the full tile.
    /// Returns the tile actually fetched.
    pub async fn hash_tile(&self, tile: Tile) -> Result<(Tile, Vec<u8>)> {
        let mut candidates = vec![tile];
        if tile.width < FULL_WIDTH {
            candidates.push(Tile { width: FULL_WIDTH, ..tile });
        }
        for candidate in candidates {
            if let Some(data) = self.get(&candidate.path(), MAX_TILE_BYTES, false).await? {
                return Ok((candidate, data));
            }
        }
        Err(FetchError::missing(format!(
            "GET {}: 404, the log does not serve a tile its checkpoint covers",
            self.url(&tile.path())
        )))
    }

    /// Several hash tiles, fetched a few at a time.
    pub async fn hash_tiles(&self, tiles: &[Tile]) -> Result<HashMap<Tile, Vec<u8>>> {
        stream::iter(tiles.iter().copied()).map(|t| self.hash_tile(t)).buffered(PARALLEL_FETCHES).try_collect().await
    }

    /// The `width` entries of bundle `n`, from the partial bundle or, failing that, the full one.
    pub async fn entry_bundle(&self, n: u64, width: u16) -> Result<Vec<Vec<u8>>> {
        let mut candidates = vec![width];
        if width < FULL_WIDTH {
            candidates.push(FULL_WIDTH);
        }
        for w in candidates {
            let path = tile::entries_path(n, w);
            let Some(data) = self.get(&path, MAX_BUNDLE_BYTES, true).await? else {
                continue;
            };
            let mut entries = tile::decode_bundle(&data)
                .map_err(|e| FetchError::other(format!("GET {}: malformed bundle: {e}", self.url(&path))))?;
            if entries.len() != usize::from(w) {
                return Err(FetchError::other(format!(
                    "GET {}: the bundle holds {} entries, expected {w}",
                    self.url(&path),
                    entries.len()
                )));
            }
            entries.truncate(usize::from(width));
            return Ok(entries);
        }
        Err(FetchError::missing(format!(
            "GET {}: 404, the log does not serve entries its checkpoint covers",
            self.url(&tile::entries_path(n, width))
        )))
    }
}
