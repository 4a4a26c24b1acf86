//! c2sp.org/tlog-tiles over HTTP on the ledger's HTTP port. The checkpoint
//! and hash tiles are public (hashes only); entry bundles say who accessed
//! whose record, so they need a verified auditor token. Only trees covered by
//! a signed checkpoint are served.
use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use quis_auth::Role;
use quis_tlog::tile::{self, TilePath};

use crate::{Ledger, hashes::with_hashes};

/// Hashes in a full tile, and entries in a full bundle.
const TILE_WIDTH: u64 = 256;

pub fn router(ledger: Arc<Ledger>) -> Router {
    Router::new().route("/checkpoint", get(checkpoint)).route("/tile/{*path}", get(tile_handler)).with_state(ledger)
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn checkpoint(State(ledger): State<Arc<Ledger>>) -> Response {
    match ledger.latest_checkpoint() {
        Some(c) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], c.note)
            .into_response(),
        None => text(StatusCode::NOT_FOUND, "no checkpoint yet\n"),
    }
}

/// The number of leaves a tile's last hash (or bundle's last entry) needs.
fn leaves_needed(level: u8, index: u64, width: u16) -> Option<u64> {
    let per_hash = TILE_WIDTH.checked_pow(u32::from(level))?;
    index.checked_mul(TILE_WIDTH)?.checked_add(u64::from(width))?.checked_mul(per_hash)
}

async fn tile_handler(State(ledger): State<Arc<Ledger>>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Ok(parsed) = tile::parse(&format!("tile/{path}")) else {
        return text(StatusCode::NOT_FOUND, "not a tile path\n");
    };
    let Some(signed) = ledger.latest_checkpoint().map(|c| c.size) else {
        return text(StatusCode::NOT_FOUND, "no checkpoint yet\n");
    };
    let (needed, width) = match parsed {
        TilePath::Hashes(t) => (leaves_needed(t.level, t.index, t.width), t.width),
        TilePath::Entries { index, width } => (leaves_needed(0, index, width), width),
    };
    if needed.is_none_or(|n| n > signed) {
        return text(StatusCode::NOT_FOUND, "beyond the latest checkpoint\n");
    }
    let cache = if u64::from(width) == TILE_WIDTH {
        HeaderValue::from_static("public, max-age=31536000, immutable")
    } else {
        HeaderValue::from_static("no-cache")
    };
    let body = match parsed {
        TilePath::Hashes(t) => {
            let mut map = Default::default();
            match with_hashes(&ledger.store, &mut map, |r| tile::read_tile_data(t, r)).await {
                Ok(data) => data,
                Err(e) => {
                    tracing::error!(error = %e, "reading a tile failed");
                    return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
                }
            }
        }
        TilePath::Entries { index, width } => {
            match ledger.verifier.verify_header(headers.get(header::AUTHORIZATION)) {
                Ok(p) if p.has_role(Role::Auditor) => {}
                Ok(_) => return text(StatusCode::FORBIDDEN, "entry bundles need the auditor role\n"),
                Err(_) => return text(StatusCode::UNAUTHORIZED, "a verified bearer token is required\n"),
            }
            let start = index * TILE_WIDTH;
            let entries = match ledger.store.read_entries(start, start + u64::from(width)).await {
                Ok(e) => e,
                Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
            };
            let refs: Vec<&[u8]> = entries.iter().map(|(_, d)| d.as_slice()).collect();
            match tile::encode_bundle(&refs) {
                Ok(b) => b,
                Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
            }
        }
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")), (header::CACHE_CONTROL, cache)],
        body,
    )
        .into_response()
}
