//! The library's read paths on the embedded default (an SQLite file):
//! `get_record` (load, unwrap, open, decode, minimize) and `search` (parse,
//! HMAC, index lookup), on a store of `VAULT_BENCH_SUBJECTS` subjects (default
//! 2,000) with one typical record each. No policy, no ledger, no gRPC.
use criterion::{Criterion, criterion_group, criterion_main};
use quis_core::db::Db;
use quis_vault::{AllowedFields, Field, FieldValue, RawQuery, Sensitivity, SubjectInput, Vault, VaultConfig};

fn typical_fields() -> Vec<Field> {
    (0..20)
        .map(|i| match i % 4 {
            0 => Field::new(&format!("note_{i}"), Sensitivity::Confidential, FieldValue::String("x".repeat(300))),
            1 => Field::new(&format!("amount_{i}"), Sensitivity::Confidential, FieldValue::Decimal("123456.78".into())),
            2 => Field::new(&format!("count_{i}"), Sensitivity::Basic, FieldValue::Int(i64::from(i) * 1_000)),
            _ => Field::new(&format!("date_{i}"), Sensitivity::Basic, FieldValue::Date("2024-04-05".into())),
        })
        .collect()
}

fn store(c: &mut Criterion) {
    let subjects: usize = std::env::var("VAULT_BENCH_SUBJECTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("vault.db").display());
    let vault = rt.block_on(async {
        let vault =
            Vault::open(Db::connect(&url).await.expect("db"), dir.path(), VaultConfig::default()).await.expect("vault");
        for i in 0..subjects {
            let input = SubjectInput {
                given_names: format!("Given{}", i % 97),
                family_name: format!("Family{}", i % 1_000),
                date_of_birth: format!("19{:02}-0{}-1{}", i % 100, 1 + i % 9, i % 10),
                postcode: format!("AB{} {}CD", i % 90, i % 10),
                reference_number: format!("REF-{i}"),
                ..SubjectInput::default()
            };
            vault.ingest_subject(&format!("s{i}"), &input).await.expect("ingest");
            vault
                .upsert_record(&format!("subjects/s{i}/records/r"), "tax-return", typical_fields(), None)
                .await
                .expect("record");
        }
        vault
    });
    let allowed = AllowedFields::up_to(Sensitivity::Confidential);
    let mut group = c.benchmark_group(format!("store_sqlite_{subjects}_subjects"));
    let mut i = 0usize;
    group.bench_function("get_record", |b| {
        b.iter(|| {
            i = (i + 7919) % subjects;
            rt.block_on(vault.get_record(&format!("subjects/s{i}/records/r"), &allowed)).expect("read")
        })
    });
    group.bench_function("search_reference_exact", |b| {
        b.iter(|| {
            i = (i + 7919) % subjects;
            let raw = RawQuery { reference_number: format!("ref {i}"), ..RawQuery::default() };
            rt.block_on(vault.search(&raw)).expect("search")
        })
    });
    group.bench_function("search_family_prefix_and_given", |b| {
        b.iter(|| {
            i = (i + 7919) % subjects;
            let raw = RawQuery {
                family_name: format!("family{}*", i % 1_000),
                given_name: format!("given{}", i % 97),
                ..RawQuery::default()
            };
            rt.block_on(vault.search(&raw)).expect("search")
        })
    });
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
