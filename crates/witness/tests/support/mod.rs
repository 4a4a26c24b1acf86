//! Shared by the witness tests: an in-memory log that signs checkpoints, and a witness served
//! over real HTTP on 127.0.0.1:0 with a SQLite file in a temporary directory or a fresh
//! PostgreSQL database.
#![allow(dead_code)]

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use quis_core::QuisConfig;
use quis_tlog::{
    Hash, MemoryHashes,
    checkpoint::{self, Checkpoint},
    note::{KEY_TYPE_ED25519, Signer},
    prove_tree, tree_hash,
    witness::AddCheckpoint,
};
use quis_witness::Witness;
use tokio_util::sync::CancellationToken;

pub const ORIGIN: &str = "quis.test/ledger";
pub const LOG_SEED: [u8; 32] = [7; 32];

/// A log held in memory: its key, and a tree of entries `<prefix> <i>`.
pub struct Log {
    pub signer: Signer,
    pub tree: MemoryHashes,
    prefix: String,
}

impl Log {
    pub fn new(origin: &str, seed: [u8; 32], prefix: &str) -> Self {
        let signer = Signer::new(origin, KEY_TYPE_ED25519, seed).expect("log key");
        Self { signer, tree: MemoryHashes::new(), prefix: prefix.to_string() }
    }

    /// The test log, with `size` entries.
    pub fn honest(size: u64) -> Self {
        let mut log = Self::new(ORIGIN, LOG_SEED, "entry");
        log.grow_to(size);
        log
    }

    pub fn size(&self) -> u64 {
        self.tree.tree_size().expect("tree size")
    }

    pub fn grow_to(&mut self, size: u64) {
        while self.size() < size {
            let i = self.size();
            self.tree.append_record(format!("{} {i}", self.prefix).as_bytes()).expect("append");
        }
    }

    pub fn root(&self, size: u64) -> Hash {
        tree_hash(size, &self.tree).expect("root")
    }

    pub fn checkpoint(&self, size: u64) -> Checkpoint {
        Checkpoint { origin: self.signer.name().to_string(), size, root: self.root(size), extensions: Vec::new() }
    }

    /// The signed checkpoint note of the tree of `size` entries.
    pub fn note(&self, size: u64) -> String {
        checkpoint::sign(&self.checkpoint(size), &[&self.signer]).expect("sign")
    }

    /// An `add-checkpoint` body from `old` to `size`, with the right proof.
    pub fn request(&self, old: u64, size: u64) -> String {
        let proof = prove_tree(size, old, &self.tree).expect("proof");
        AddCheckpoint { old_size: old, proof, note: self.note(size) }.encode()
    }
}

/// The known logs: the test log's origin with its key.
pub fn logs_for(log: &Log) -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([(log.signer.name().to_string(), vec![log.signer.vkey()])])
}

/// A fresh PostgreSQL database on the local server.
pub async fn postgres_url() -> String {
    let name = format!("quis_test_{}", uuid::Uuid::new_v4().simple());
    let admin = quis_core::db::Db::connect("postgres://postgres@127.0.0.1:5432/postgres").await.expect("postgres");
    let quis_core::db::Db::Postgres(pool) = admin else { unreachable!() };
    sqlx_create(&pool, &name).await;
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

async fn sqlx_create(pool: &sqlx::PgPool, name: &str) {
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(pool).await.expect("create database");
}

pub fn config(data_dir: &Path, store_url: Option<String>, logs: BTreeMap<String, Vec<String>>) -> QuisConfig {
    let mut config = QuisConfig { data_dir: data_dir.to_path_buf(), ..QuisConfig::default() };
    config.store.url = store_url;
    config.witness.logs = logs;
    config
}

/// A witness served over HTTP until dropped.
pub struct Running {
    pub witness: Witness,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An HTTP answer: status, content type, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Running {
    pub async fn start(config: &QuisConfig) -> Self {
        let (router, witness) = quis_witness::build(config).await.expect("witness");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
        });
        Self { witness, addr, http: reqwest::Client::new(), stop }
    }

    pub async fn post(&self, body: impl Into<Vec<u8>>) -> Answer {
        let response = self
            .http
            .post(format!("http://{}/add-checkpoint", self.addr))
            .body(body.into())
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        Answer { status, content_type, body: response.text().await.expect("body") }
    }

    pub async fn get(&self, path: &str) -> Answer {
        let response = self.http.get(format!("http://{}{path}", self.addr)).send().await.expect("request");
        let status = response.status().as_u16();
        Answer { status, content_type: String::new(), body: response.text().await.expect("body") }
    }

    pub async fn latest(&self, origin: &str) -> Option<(u64, Hash)> {
        self.witness.latest(origin).await.expect("latest")
    }
}

/// Adds the cosignature lines of a 200 answer to the note and opens it with the log and witness keys;
/// returns the checkpoint's size and root.
pub fn open_cosigned(log: &Log, note: &str, answer: &Answer, witness: &Witness) -> (u64, Hash) {
    assert_eq!(answer.status, 200, "{answer:?}");
    let cosignatures = quis_tlog::witness::parse_response(&answer.body).expect("cosignature lines");
    assert_eq!(cosignatures.len(), 1);
    let cosigned = checkpoint::add_signatures(note, &cosignatures).expect("add");
    let verified =
        checkpoint::open(&cosigned, &[log.signer.verifier()], &[witness.verifier()]).expect("cosignature verifies");
    assert_eq!(verified.cosigners.len(), 1);
    assert_eq!(verified.cosigners[0].0, "quis.local/witness");
    (verified.checkpoint.size, verified.checkpoint.root)
}
