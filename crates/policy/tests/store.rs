//! The policy store on SQLite and on PostgreSQL, the same tests on both:
//! idempotent bulk upserts, a refusing gate that leaves nothing behind, the
//! change feed in order, and policy-set versions with their approval.
use quis_policy::{
    PolicyError,
    store::{EntityWrite, POLICY_KIND, Store},
};

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("policy.db").display());
    (Store::connect(&url).await.expect("sqlite store"), dir)
}

async fn postgres() -> Store {
    let name = format!("quis_test_{}", uuid::Uuid::new_v4().simple());
    let admin = quis_core::db::Db::connect("postgres://postgres@127.0.0.1:5432/postgres").await.expect("postgres");
    let quis_core::db::Db::Postgres(pool) = admin else { unreachable!() };
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.expect("create database");
    Store::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}")).await.expect("postgres store")
}

fn writes(n: usize, version: u8) -> Vec<EntityWrite> {
    (0..n)
        .map(|i| EntityWrite { kind: "subject", id: format!("s-{i}"), body: vec![version, i as u8, (i >> 8) as u8] })
        .collect()
}

async fn ok(_: &quis_policy::store::Pending) -> Result<(), PolicyError> {
    Ok(())
}

async fn upserts_are_idempotent_and_fed_in_order(store: Store) {
    let first = store.upsert(&writes(2500, 1), "hr", async |p| ok(p).await).await.expect("upsert");
    assert_eq!((first.changed, first.unchanged), (2500, 0));
    assert_eq!(store.head().await.expect("head"), first.head);
    let again = store.upsert(&writes(2500, 1), "hr", async |p| ok(p).await).await.expect("again");
    assert_eq!((again.changed, again.unchanged, again.head), (0, 2500, first.head), "a repeat changes nothing");

    // Change 10 of them: exactly those are fed, after everything before.
    let mut changed = writes(2500, 1);
    for w in changed.iter_mut().step_by(250) {
        w.body[0] = 2;
    }
    let second = store.upsert(&changed, "hr", async |p| ok(p).await).await.expect("change");
    assert_eq!((second.changed, second.unchanged), (10, 2490));
    let fed = store.changes_since(first.head, 100).await.expect("feed");
    assert_eq!(fed.len(), 10);
    assert!(fed.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(fed.iter().all(|c| c.seq > first.head && c.seq <= second.head && c.body.as_ref().expect("body")[0] == 2));
    assert_eq!(store.changes_since(0, 10_000).await.expect("all").len(), 2510);

    let deleted = store.delete("subject", "s-0", "hr", async |p| ok(p).await).await.expect("delete");
    let tail = store.changes_since(second.head, 10).await.expect("feed");
    assert_eq!(tail.len(), 1);
    assert_eq!((tail[0].seq, tail[0].id.as_str(), tail[0].body.is_none()), (deleted.expect("deleted"), "s-0", true));
    assert_eq!(store.delete("subject", "s-0", "hr", async |p| ok(p).await).await.expect("again"), None);
    let (rows, mut chunks) = tokio::sync::mpsc::channel(16);
    assert_eq!(store.load_entities(1000, rows).await.expect("load"), 2499);
    let mut loaded = Vec::new();
    while let Some(chunk) = chunks.recv().await {
        assert!(chunk.len() <= 1000);
        loaded.extend(chunk);
    }
    assert_eq!(loaded.len(), 2499);
    assert!(loaded.iter().all(|e| e.kind == "subject" && e.id != "s-0"));
    // The ten changed rows, less the deleted s-0, in their changed form.
    assert_eq!(loaded.iter().filter(|e| e.body.first() == Some(&2)).count(), 9);
    let page = store.list_entities("subject", "s-1", 3).await.expect("list");
    assert_eq!(page.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["s-10", "s-100", "s-1000"]);
}

async fn a_refusing_gate_leaves_nothing(store: Store) {
    let before = store.head().await.expect("head");
    let refused = store
        .upsert(&writes(10, 1), "hr", async |_| Err(PolicyError::LedgerUnavailable("down".into())))
        .await
        .expect_err("refused");
    assert!(matches!(refused, PolicyError::LedgerUnavailable(_)));
    assert_eq!(store.head().await.expect("head"), before);
    assert!(store.changes_since(0, 10).await.expect("feed").is_empty());
    assert_eq!(store.entity("subject", "s-1").await.expect("read"), None);
    let proposal = store
        .propose("text", "hash", "why", "admin-a", async |_| Err(PolicyError::LedgerUnavailable("down".into())))
        .await;
    assert!(proposal.is_err());
    assert!(store.list_versions(0, 10).await.expect("versions").is_empty());
}

async fn versions_need_approval(store: Store) {
    assert_eq!(store.bootstrap("pack", "h0", "policy", async |_| Ok(())).await.expect("bootstrap"), Some(1));
    assert_eq!(store.bootstrap("pack", "h0", "policy", async |_| Ok(())).await.expect("once"), None);
    let proposed = store.propose("v2", "h2", "stricter", "admin-a", async |_| Ok(())).await.expect("propose");
    assert_eq!((proposed.version, proposed.state.as_str()), (2, "proposed"));
    assert_eq!(store.active_version().await.expect("active").expect("v1").version, 1);
    let refused = store
        .approve(
            2,
            "admin-a",
            |row| if row.proposed_by == "admin-a" { Err(PolicyError::SelfApproval) } else { Ok(()) },
            async |_, _| Ok(()),
        )
        .await;
    assert!(matches!(refused, Err(PolicyError::SelfApproval)));
    let head = store.head().await.expect("head");
    let (approved, at) = store.approve(2, "admin-b", |_| Ok(()), async |_, _| Ok(())).await.expect("approve");
    assert_eq!((approved.state.as_str(), approved.approved_by.as_deref()), ("active", Some("admin-b")));
    let fed = store.changes_since(head, 10).await.expect("feed");
    assert_eq!((fed.len(), fed[0].seq, fed[0].kind.as_str(), fed[0].id.as_str()), (1, at, POLICY_KIND, "2"));
    assert_eq!(store.version(1).await.expect("v1").expect("v1").state, "superseded");
    let listed = store.list_versions(0, 10).await.expect("list");
    assert_eq!(listed.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1]);
    assert!(matches!(
        store.approve(9, "admin-b", |_| Ok(()), async |_, _| Ok(())).await,
        Err(PolicyError::NotFound(_))
    ));
}

#[tokio::test]
async fn sqlite_upserts_are_idempotent_and_fed_in_order() {
    let (store, _dir) = sqlite().await;
    upserts_are_idempotent_and_fed_in_order(store).await;
}

#[tokio::test]
async fn postgres_upserts_are_idempotent_and_fed_in_order() {
    upserts_are_idempotent_and_fed_in_order(postgres().await).await;
}

#[tokio::test]
async fn sqlite_a_refusing_gate_leaves_nothing() {
    let (store, _dir) = sqlite().await;
    a_refusing_gate_leaves_nothing(store).await;
}

#[tokio::test]
async fn postgres_a_refusing_gate_leaves_nothing() {
    a_refusing_gate_leaves_nothing(postgres().await).await;
}

#[tokio::test]
async fn sqlite_versions_need_approval() {
    let (store, _dir) = sqlite().await;
    versions_need_approval(store).await;
}

#[tokio::test]
async fn postgres_versions_need_approval() {
    versions_need_approval(postgres().await).await;
}
