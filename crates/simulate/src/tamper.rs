//! The insider with database access: opens the ledger's embedded SQLite file
//! directly and covers someone's tracks, rewriting the actor of one of their
//! entries (a plausible, well-formed entry) and deleting another, leaving the
//! stored hashes alone as a careless intruder would not know to change them.
use anyhow::{Context, Result, bail};
use quis_core::db::Db;

/// What the insider changed.
#[derive(Debug)]
pub struct Tampering {
    pub rewritten: u64,
    pub deleted: Option<u64>,
}

/// Rewrites `actor` to `cover` in the entry at `rewrite` and deletes the entry at `delete`.
pub async fn cover_tracks(
    ledger_store_url: &str,
    rewrite: u64,
    delete: Option<u64>,
    actor: &str,
    cover: &str,
) -> Result<Tampering> {
    if actor.len() != cover.len() {
        bail!("the cover id must be as long as the actor's, to keep the entry well-formed");
    }
    let Db::Sqlite(pool) = Db::connect(ledger_store_url).await.context("ledger store")? else {
        bail!("the insider works on the embedded SQLite store only");
    };
    let data: Vec<u8> = sqlx::query_scalar("SELECT data FROM ledger_entries WHERE idx = $1")
        .bind(i64::try_from(rewrite)?)
        .fetch_one(&pool)
        .await
        .with_context(|| format!("ledger entry {rewrite}"))?;
    let forged = replace(&data, actor.as_bytes(), cover.as_bytes());
    sqlx::query("UPDATE ledger_entries SET data = $1 WHERE idx = $2")
        .bind(forged)
        .bind(i64::try_from(rewrite)?)
        .execute(&pool)
        .await?;
    if let Some(index) = delete {
        sqlx::query("DELETE FROM ledger_entries WHERE idx = $1").bind(i64::try_from(index)?).execute(&pool).await?;
    }
    pool.close().await;
    Ok(Tampering { rewritten: rewrite, deleted: delete })
}

/// `data` with every occurrence of `from` replaced by `to` (same length); if
/// there is none, with its last byte flipped, so that the entry always changes.
fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut changed = false;
    if !from.is_empty() {
        let mut i = 0;
        while i + from.len() <= out.len() {
            if &out[i..i + from.len()] == from {
                out[i..i + from.len()].copy_from_slice(to);
                changed = true;
                i += from.len();
            } else {
                i += 1;
            }
        }
    }
    if !changed && let Some(last) = out.last_mut() {
        *last ^= 0xff;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forgery_keeps_the_length_and_always_changes_the_entry() {
        assert_eq!(replace(b"xx emp-0007 yy emp-0007", b"emp-0007", b"emp-0001"), b"xx emp-0001 yy emp-0001");
        assert_eq!(replace(b"abc", b"emp-0007", b"emp-0001"), b"ab\x9c");
    }
}
