//! `quis bench-vault`: guarded `GetRecord` end to end through the gateway,
//! the whole suite of `quis up` in this process on loopback: token
//! verification at the gateway and the vault, a policy `Check`, a durable
//! ledger append and a decryption per call. The store is pre-populated
//! (default 1,000,000 records) once and reused by later runs on the same data
//! directory. The same run measures the gateway's trivial upstream (echo),
//! so the two figures compare as a ratio.
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use quis_auth::{
    PrincipalKind, Role, devkeys,
    mint::{TokenSigner, TokenSpec},
};
use quis_core::{QuisConfig, keys::FileKeySource};
use quis_proto::{
    echo::{EchoRequest, echo_service_client::EchoServiceClient},
    ledger::Purpose,
    policy::{self as pb, entity::Kind, policy_service_client::PolicyServiceClient},
    vault::{self as v, vault_service_client::VaultServiceClient},
};
use quis_vault::{Field, FieldValue, Sensitivity, SubjectInput, Vault, VaultError};
use tokio_util::sync::CancellationToken;
use tonic::{metadata::MetadataValue, transport::Channel};

use crate::{
    bench::{Load, header, row},
    bench_stages,
};

#[derive(clap::Args, Clone)]
pub struct BenchVaultArgs {
    /// Records in the store (written once; a later run on the same data directory reuses them).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Records per subject.
    #[arg(long, default_value_t = 10)]
    records_per_subject: u64,
    /// Subjects read by the load (on open cases of the reading staff member), from the first.
    #[arg(long, default_value_t = 10_000)]
    hot_subjects: u64,
    /// A PostgreSQL URL for every store (a fresh database); default: SQLite in the data directory.
    #[arg(long)]
    store_url: Option<String>,
    /// Calls in flight at once (closed loop).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections to the gateway, shared by the workers.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Measured seconds per target (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// Subjects per case (a case holds at most 1,000).
const SUBJECTS_PER_CASE: u64 = 1000;
const READER: &str = "bench-reader";

fn subject_id(i: u64) -> String {
    format!("bench-{i:07}")
}

fn record_name(subject: u64, record: u64) -> String {
    format!("subjects/{}/records/r{record}", subject_id(subject))
}

fn case_of(subject: u64) -> String {
    format!("cases/bench-case-{}", subject / SUBJECTS_PER_CASE)
}

/// Runs a write again while the store is busy (a build linking beside the bench can hold SQLite's
/// lock past its busy timeout), up to 10 times, a second apart.
async fn retry_busy<T, F: Future<Output = Result<T, VaultError>>>(
    mut write: impl FnMut() -> F,
) -> Result<T, VaultError> {
    for _ in 0..10 {
        match write().await {
            Err(VaultError::Store(e)) if quis_core::db::is_transient(&e) => {
                tokio::time::sleep(Duration::from_secs(1)).await
            }
            done => return done,
        }
    }
    write().await
}

/// Writes the subjects and records the store lacks, through the vault library (the
/// service's ingest path less its policy push, which [`organize`] does in bulk).
async fn populate(config: &QuisConfig, args: &BenchVaultArgs) -> Result<()> {
    let subjects = args.records.div_ceil(args.records_per_subject.max(1));
    let db = quis_core::db::Db::connect(&config.store_url("vault")).await.context("vault store")?;
    let vault = Arc::new(Vault::open(db, &config.data_dir, quis_vault_service::library_config(config)).await?);
    let last = record_name(subjects - 1, args.records_per_subject - 1);
    if vault.store().record_version(&last).await? > 0 {
        println!("store: {} records present, reused", args.records);
        return Ok(());
    }
    let started = Instant::now();
    let written = Arc::new(AtomicU64::new(0));
    let writers: u64 = 8;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (vault, written, per_subject) = (Arc::clone(&vault), Arc::clone(&written), args.records_per_subject);
        tasks.push(tokio::spawn(async move {
            for s in (w..subjects).step_by(writers as usize) {
                let id = subject_id(s);
                if vault.store().subject(&id).await?.is_none() {
                    let input = SubjectInput {
                        given_names: "Bench".into(),
                        family_name: format!("Subject{s}"),
                        date_of_birth: "1970-01-01".into(),
                        postcode: "SW1A 1AA".into(),
                        ..SubjectInput::default()
                    };
                    retry_busy(|| vault.ingest_subject(&id, &input)).await?;
                }
                for r in 0..per_subject {
                    let name = record_name(s, r);
                    if vault.store().record_version(&name).await? > 0 {
                        continue;
                    }
                    let fields = vec![
                        Field::new("income_2024", Sensitivity::Confidential, FieldValue::Decimal("54321.00".into())),
                        Field::new(
                            "contact_phone",
                            Sensitivity::Confidential,
                            FieldValue::String("+44 20 7946 0000".into()),
                        ),
                        Field::new("notes", Sensitivity::Basic, FieldValue::String("a note of some length".repeat(4))),
                    ];
                    retry_busy(|| vault.upsert_record(&name, "tax-return", fields.clone(), None)).await?;
                    let n = written.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 100_000 == 0 {
                        println!("store: {n} records written ({:.0} s)", started.elapsed().as_secs_f64());
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    println!("store: {} records written in {:.0} s", written.load(Ordering::Relaxed), started.elapsed().as_secs_f64());
    Ok(())
}

/// Tells policy the hot subjects, their cases and the reader (as an administrator, through the gateway).
async fn organize(gateway: &str, admin: &str, args: &BenchVaultArgs) -> Result<()> {
    let mut policy = PolicyServiceClient::new(Channel::from_shared(format!("http://{gateway}"))?.connect().await?);
    let bearer: MetadataValue<_> = format!("Bearer {admin}").parse()?;
    fn authorized<T>(message: T, bearer: &MetadataValue<tonic::metadata::Ascii>) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.metadata_mut().insert("authorization", bearer.clone());
        req
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let active = || authorized(pb::GetPolicySetVersionRequest { name: "policySets/active".into() }, &bearer);
    while policy.get_policy_set_version(active()).await.is_err() {
        if Instant::now() > deadline {
            bail!("policy never installed its default pack");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut entities = vec![
        Kind::Team(pb::Team { name: "teams/bench".into(), site: "hq".into(), parent: String::new() }),
        Kind::Staff(pb::Staff {
            name: format!("staff/{READER}"),
            team: "teams/bench".into(),
            site: "hq".into(),
            roles: vec!["caseworker".into()],
            status: pb::StaffStatus::Active as i32,
            ..Default::default()
        }),
    ];
    entities.extend(
        (0..args.hot_subjects)
            .map(|s| Kind::Subject(pb::Subject { name: format!("subjects/{}", subject_id(s)), ..Default::default() })),
    );
    entities.extend((0..args.hot_subjects.div_ceil(SUBJECTS_PER_CASE)).map(|c| {
        let first = c * SUBJECTS_PER_CASE;
        Kind::Case(pb::Case {
            name: case_of(first),
            subjects: (first..(first + SUBJECTS_PER_CASE).min(args.hot_subjects))
                .map(|s| format!("subjects/{}", subject_id(s)))
                .collect(),
            assigned_staff: vec![format!("staff/{READER}")],
            assigned_teams: vec![],
            status: pb::CaseStatus::Open as i32,
            purpose: pb::Purpose::Casework as i32,
        })
    }));
    let entities = entities.into_iter().map(|k| pb::Entity { kind: Some(k) }).collect();
    policy
        .batch_upsert_entities(authorized(
            pb::BatchUpsertEntitiesRequest { entities, reason: "bench-vault".into() },
            &bearer,
        ))
        .await
        .context("the bench organization")?;
    Ok(())
}

pub async fn run(args: &BenchVaultArgs, config: QuisConfig) -> Result<()> {
    if args.records == 0 || args.records_per_subject == 0 || args.hot_subjects == 0 {
        bail!("--records, --records-per-subject and --hot-subjects must be positive");
    }
    let mut config = config;
    config.store.url = args.store_url.clone().or(config.store.url);
    config.services.entry("gateway".into()).and_modify(|g| {
        g.listen = "127.0.0.1:0".parse().expect("address");
        g.admin_listen = "127.0.0.1:0".parse().expect("address");
    });
    // The load comes from one principal and one address: no edge limit may cap it.
    config.gateway.rate_limit.per_principal_per_sec = u32::MAX / 2;
    config.gateway.rate_limit.per_principal_burst = u32::MAX / 2;
    config.gateway.rate_limit.per_address_per_sec = u32::MAX / 2;
    config.gateway.rate_limit.per_address_burst = u32::MAX / 2;
    devkeys::init(&config.data_dir).map_err(anyhow::Error::msg)?;
    let subjects = args.records.div_ceil(args.records_per_subject);
    let hot = args.hot_subjects.min(subjects);
    populate(&config, args).await?;

    let stop = CancellationToken::new();
    let signer = TokenSigner::load(&FileKeySource::new(&config.data_dir), &config.auth.issuer, &config.auth.audience)?;
    let running = crate::suite::up(config, stop.clone()).await?;
    let gateway = running.listen_addr.to_string();
    let admin = signer.mint(&TokenSpec::new("bench-admin", PrincipalKind::Staff, &[Role::Admin]))?.0;
    organize(&gateway, &admin, &BenchVaultArgs { hot_subjects: hot, ..args.clone() }).await?;
    let reader = signer.mint(&TokenSpec::new(READER, PrincipalKind::Staff, &[Role::Caseworker]))?.0;
    let bearer: MetadataValue<_> = format!("Bearer {reader}").parse()?;
    let load = Load { connections: args.connections, concurrency: args.concurrency, seconds: args.seconds, rate: None };

    let next = Arc::new(AtomicU64::new(0));
    let per_subject = args.records_per_subject;
    let auth = bearer.clone();
    let metrics_before = quis_core::metrics::handle().render();
    let guarded = load
        .run(&gateway, move |channel| {
            let mut client = VaultServiceClient::new(channel);
            // Spread over the hot records: a multiplicative hash of a call counter.
            let n = next.fetch_add(1, Ordering::Relaxed).wrapping_mul(2_654_435_761);
            let (subject, record) = ((n / per_subject) % hot, n % per_subject);
            let mut req = tonic::Request::new(v::GetRecordRequest {
                name: record_name(subject, record),
                context: Some(v::AccessContext {
                    purpose: Purpose::Casework as i32,
                    case: case_of(subject),
                    justification: String::new(),
                }),
                fields: vec![],
            });
            req.metadata_mut().insert("authorization", auth.clone());
            async move { client.get_record(req).await.is_ok_and(|r| r.get_ref().receipt.is_some()) }
        })
        .await?;
    let metrics_after = quis_core::metrics::handle().render();
    let trivial = load
        .run(&gateway, move |channel| {
            let mut client = EchoServiceClient::new(channel);
            let mut req = tonic::Request::new(EchoRequest { message: "bench".into(), payload: vec![0x5a; 64] });
            req.metadata_mut().insert("authorization", bearer.clone());
            async move { client.echo(req).await.is_ok() }
        })
        .await?;
    println!(
        "guarded GetRecord: {} records ({} subjects, {hot} read), concurrency {}, {} connections",
        args.records, subjects, args.concurrency, args.connections
    );
    println!("{}", header());
    println!("{}", row("getrecord", &guarded));
    println!("{}", row("echo", &trivial));
    println!("ratio getrecord/echo: {:.2}", guarded.rate() / trivial.rate().max(1.0));
    // Each stage of the guarded reads and each hop they cross, over the guarded load (its warm-up included).
    bench_stages::print(&metrics_before, &metrics_after, guarded.calls as f64 / 100.0);
    stop.cancel();
    Ok(())
}
