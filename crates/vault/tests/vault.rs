//! The vault library on a real store: every test runs on an SQLite file in a
//! fresh data directory and on a fresh PostgreSQL database.
use quis_core::{ApiError, db::Db, on_pool};
use quis_vault::{
    AllowedFields, Field, FieldValue, RawQuery, Sensitivity, SubjectInput, Vault, VaultConfig, VaultError,
    keyring::{KeyConfig, Keyring},
    store::{IndexedAccess, Store},
};

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Harness {
    dir: tempfile::TempDir,
    url: String,
    vault: Vault,
}

async fn store_url(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("vault.db").display()),
        Backend::Postgres => {
            let name = format!("quis_test_{}", uuid::Uuid::new_v4().simple());
            let admin = Db::connect("postgres://postgres@127.0.0.1:5432/postgres").await.expect("postgres");
            on_pool!(&admin, pool => sqlx::query(&format!("CREATE DATABASE {name}")).execute(pool).await.map(|_| ()))
                .expect("create database");
            format!("postgres://postgres@127.0.0.1:5432/{name}")
        }
    }
}

async fn harness(backend: Backend, config: VaultConfig) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = store_url(backend, dir.path()).await;
    let db = Db::connect(&url).await.expect("connect");
    let vault = Vault::open(db, dir.path(), config).await.expect("open vault");
    Harness { dir, url, vault }
}

async fn reopen(h: &Harness, config: VaultConfig) -> Result<Vault, VaultError> {
    Vault::open(Db::connect(&h.url).await.expect("connect"), h.dir.path(), config).await
}

fn person(given: &str, family: &str) -> SubjectInput {
    SubjectInput {
        given_names: given.into(),
        family_name: family.into(),
        date_of_birth: "1980-02-29".into(),
        postcode: "SW1A 1AA".into(),
        reference_number: "AB-123-456".into(),
        address_lines: vec!["10 Downing Street".into()],
        household: "HH-1".into(),
        ..SubjectInput::default()
    }
}

fn tax_record() -> Vec<Field> {
    vec![
        Field::new("status", Sensitivity::Basic, FieldValue::String("open".into())),
        Field::new("income", Sensitivity::Confidential, FieldValue::Decimal("52000.50".into())),
        Field::new("diagnosis", Sensitivity::SpecialCategory, FieldValue::String("zebrafish-syndrome".into())),
        Field::new("refuge_address", Sensitivity::Restricted, FieldValue::String("Safehouse Lane 7".into())),
        Field::new("dependents", Sensitivity::Basic, FieldValue::Int(2)),
        Field::new("scan", Sensitivity::Confidential, FieldValue::Bytes(vec![0, 1, 2, 255])),
    ]
}

fn names(record: &quis_vault::RecordView) -> Vec<&str> {
    record.fields.iter().map(|f| f.name.as_str()).collect()
}

async fn count(h: &Harness, table: &str) -> i64 {
    let (n,): (i64,) = on_pool!(h.vault.store().db(), pool =>
        sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(pool).await)
    .expect("count");
    n
}

async fn ingest_and_minimized_reads(backend: Backend) {
    let h = harness(backend, VaultConfig::default()).await;
    let ingested = h.vault.ingest_subject("s1", &person("Ann", "Smith")).await.expect("ingest");
    assert_eq!(ingested.subject.name, "subjects/s1");
    assert_eq!(ingested.subject.family_name, "Smith");
    assert_eq!(ingested.subject.version, 1);
    assert_eq!(ingested.policy.relationship_keys.len(), 3);

    let name = "subjects/s1/records/tax-2024";
    let created = h.vault.upsert_record(name, "tax-return", tax_record(), Some(0)).await.expect("create");
    assert_eq!(created.version, 1);
    assert_eq!(created.fields, tax_record());

    let basic = h.vault.get_record(name, &AllowedFields::up_to(Sensitivity::Basic)).await.expect("read");
    assert_eq!(names(&basic), ["status", "dependents"]);
    let confidential = h.vault.get_record(name, &AllowedFields::up_to(Sensitivity::Confidential)).await.expect("read");
    assert_eq!(names(&confidential), ["status", "income", "dependents", "scan"]);
    let named = AllowedFields::named(["income", "diagnosis"], Sensitivity::Confidential);
    assert_eq!(names(&h.vault.get_record(name, &named).await.expect("read")), ["income"]);
    assert_eq!(basic.kind, "tax-return");

    // An update is a new version under a new data key; the old version stays sealed in the store.
    let mut fields = tax_record();
    fields[0] = Field::new("status", Sensitivity::Basic, FieldValue::String("closed".into()));
    let updated = h.vault.upsert_record(name, "tax-return", fields, Some(1)).await.expect("update");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.fields[0].value, Some(FieldValue::String("closed".into())));

    // Heads read together: current versions only, a name asked twice answered once, a missing one left out.
    let other = "subjects/s1/records/tax-2023";
    h.vault.upsert_record(other, "tax-return", tax_record(), Some(0)).await.expect("create");
    let asked: Vec<String> = [name, other, name, "subjects/s1/records/nope"].map(String::from).into();
    let heads = h.vault.store().records(&asked).await.expect("heads");
    let mut versions: Vec<(&str, i64)> = heads.iter().map(|(n, head)| (n.as_str(), head.version)).collect();
    versions.sort();
    assert_eq!(versions, [(other, 1), (name, 2)]);
    let alone = h.vault.store().record(name).await.expect("head").expect("present");
    assert_eq!(heads[name].sealed, alone.sealed, "the same sealed version as a lone read");
    assert!(h.vault.store().records(&[]).await.expect("no names").is_empty());
    assert_eq!(count(&h, "vault_sealed").await, 4, "profile v1, record v1 and v2, the other record");

    let stale = h.vault.upsert_record(name, "tax-return", tax_record(), Some(1)).await.expect_err("stale");
    assert_eq!(stale.reason(), "VERSION_MISMATCH");
    assert_eq!(stale.code(), tonic::Code::Aborted);

    let missing = h.vault.get_record("subjects/s1/records/nope", &AllowedFields::up_to(Sensitivity::Basic)).await;
    assert_eq!(missing.expect_err("missing").reason(), "NOT_FOUND");
    let orphan = h.vault.upsert_record("subjects/s9/records/r", "tax-return", tax_record(), None).await;
    let orphan = orphan.expect_err("no subject");
    assert_eq!((orphan.reason(), orphan.to_string().as_str()), ("NOT_FOUND", "subjects/s9 not found"));

    // Replacing the subject keeps its records and raises its version.
    let again = h.vault.ingest_subject("s1", &person("Ann", "Smith-Jones")).await.expect("re-ingest");
    assert_eq!((again.subject.version, again.subject.family_name.as_str()), (2, "Smith-Jones"));
    assert_eq!(h.vault.get_record(name, &AllowedFields::up_to(Sensitivity::Basic)).await.expect("read").version, 2);
}

async fn search_by_blind_indexes(backend: Backend) {
    let config = VaultConfig { max_search_results: 3, ..VaultConfig::default() };
    let h = harness(backend, config).await;
    let mut muller = person("Jean-Paul", "Müller");
    muller.date_of_birth = "1975-06-01".into();
    muller.postcode = "75001".into();
    muller.reference_number = "FR-99".into();
    h.vault.ingest_subject("m1", &muller).await.expect("ingest");
    for (id, given) in [("s1", "Ann"), ("s2", "Bob"), ("s3", "Cyd"), ("s4", "Dee")] {
        h.vault.ingest_subject(id, &person(given, "Smith")).await.expect("ingest");
    }
    let vault = &h.vault;
    let search = |raw: RawQuery| async move { vault.search(&raw).await };
    let family = |v: &str| RawQuery { family_name: v.into(), ..RawQuery::default() };

    for spelling in ["MULLER", "müller", " Mu\u{0308}ller ", "mül*", "MUL*"] {
        let found = search(family(spelling)).await.expect("search");
        assert_eq!(found.subjects, ["subjects/m1"], "{spelling:?}");
        assert!(!found.truncated);
    }
    let by_given = RawQuery { given_name: "paul".into(), ..RawQuery::default() };
    assert_eq!(search(by_given).await.expect("given word").subjects, ["subjects/m1"]);
    let precise = RawQuery { family_name: "smith".into(), given_name: "bo*".into(), ..RawQuery::default() };
    assert_eq!(search(precise).await.expect_err("short prefix").reason(), "QUERY_TOO_BROAD");
    let precise = RawQuery { family_name: "smith".into(), given_name: "bob".into(), ..RawQuery::default() };
    assert_eq!(search(precise).await.expect("and").subjects, ["subjects/s2"]);
    let dob = RawQuery { date_of_birth: "1975-06-01".into(), postcode: "75 001".into(), ..RawQuery::default() };
    assert_eq!(search(dob).await.expect("dob").subjects, ["subjects/m1"]);
    let reference = RawQuery { reference_number: "fr 99".into(), ..RawQuery::default() };
    assert_eq!(search(reference).await.expect("ref").subjects, ["subjects/m1"]);
    let nobody = RawQuery { family_name: "smith".into(), postcode: "75001".into(), ..RawQuery::default() };
    assert!(search(nobody).await.expect("none").subjects.is_empty());

    // Four Smiths, a limit of three: cut and reported.
    let smiths = search(family("smi*")).await.expect("smiths");
    assert_eq!(smiths.subjects, ["subjects/s1", "subjects/s2", "subjects/s3"]);
    assert!(smiths.truncated);
    for broad in ["sm*", "*", "%", "s?ith", "*mith"] {
        assert_eq!(search(family(broad)).await.expect_err(broad).reason(), "QUERY_TOO_BROAD", "{broad:?}");
    }
    assert_eq!(search(RawQuery::default()).await.expect_err("empty").reason(), "QUERY_TOO_BROAD");
}

async fn decoys_are_indistinguishable(backend: Backend) {
    let h = harness(backend, VaultConfig::default()).await;
    let real = person("Ann", "Smith");
    let decoy = SubjectInput { decoy: true, ..real.clone() };
    let a = h.vault.ingest_subject("aaaa", &real).await.expect("real");
    let b = h.vault.ingest_subject("bbbb", &decoy).await.expect("decoy");
    assert!(!a.policy.decoy && b.policy.decoy, "policy is told");
    let (va, vb) = (h.vault.get_subject("aaaa").await.expect("a"), h.vault.get_subject("bbbb").await.expect("b"));
    let strip = |mut v: quis_vault::SubjectView| {
        v.name.clear();
        v.create_time_us = 0;
        v.update_time_us = 0;
        v
    };
    assert_eq!(strip(va), strip(vb), "the same answer but for the name");
    for id in ["aaaa", "bbbb"] {
        h.vault
            .upsert_record(&format!("subjects/{id}/records/r1"), "tax-return", tax_record(), None)
            .await
            .expect("record");
    }
    let found = h.vault.search(&RawQuery { family_name: "smith".into(), ..RawQuery::default() }).await.expect("search");
    assert_eq!(found.subjects, ["subjects/aaaa", "subjects/bbbb"]);

    // In the store, rows differ only in ids, times and random ciphertext, never in shape or length.
    type Row = (i64, i64, i64, i64, String);
    let rows: Vec<Row> = on_pool!(h.vault.store().db(), pool => sqlx::query_as(
        "SELECT version, CAST(LENGTH(nonce) AS BIGINT), CAST(LENGTH(ciphertext) AS BIGINT),
                CAST(LENGTH(wrapped_key) AS BIGINT), kek_id FROM vault_sealed
         WHERE name IN ('subjects/aaaa', 'subjects/bbbb') ORDER BY name").fetch_all(pool).await)
    .expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], rows[1]);
    let tokens: Vec<(String, i64)> = on_pool!(h.vault.store().db(), pool => sqlx::query_as(
        "SELECT subject_id, COUNT(*) FROM vault_search_index GROUP BY subject_id ORDER BY subject_id").fetch_all(pool).await)
    .expect("tokens");
    assert_eq!(tokens[0].1, tokens[1].1);
    let missing = h.vault.get_record("subjects/bbbb/records/r2", &AllowedFields::up_to(Sensitivity::Basic)).await;
    let real_missing = h.vault.get_record("subjects/aaaa/records/r2", &AllowedFields::up_to(Sensitivity::Basic)).await;
    let (missing, real_missing) = (missing.expect_err("missing"), real_missing.expect_err("missing"));
    assert_eq!((missing.code(), missing.reason()), (real_missing.code(), real_missing.reason()), "the same errors");

    // A replacement keeps the mark, whatever it says: ingest can neither unmask nor plant a decoy later.
    let b2 = h.vault.ingest_subject("bbbb", &real).await.expect("replace decoy");
    let a2 = h.vault.ingest_subject("aaaa", &decoy).await.expect("replace real");
    assert!(b2.policy.decoy && !a2.policy.decoy);
}

async fn moved_ciphertext_fails_to_open(backend: Backend) {
    let h = harness(backend, VaultConfig::default()).await;
    h.vault.ingest_subject("s1", &person("Ann", "Smith")).await.expect("ingest");
    let (a, b) = ("subjects/s1/records/a", "subjects/s1/records/b");
    h.vault.upsert_record(a, "tax-return", tax_record(), None).await.expect("a");
    h.vault
        .upsert_record(b, "tax-return", vec![Field::new("x", Sensitivity::Basic, FieldValue::Bool(true))], None)
        .await
        .expect("b");
    let all = AllowedFields::up_to(Sensitivity::Restricted);
    // Copy a's payload and wrapped key over b's row: a well-formed ciphertext, in the wrong place.
    on_pool!(h.vault.store().db(), pool => sqlx::query(
        "UPDATE vault_sealed SET nonce = (SELECT nonce FROM vault_sealed WHERE name = $1),
             ciphertext = (SELECT ciphertext FROM vault_sealed WHERE name = $1),
             wrapped_key = (SELECT wrapped_key FROM vault_sealed WHERE name = $1) WHERE name = $2")
        .bind(a).bind(b).execute(pool).await.map(|_| ()))
    .expect("move");
    let err = h.vault.get_record(b, &all).await.expect_err("moved row");
    assert_eq!((err.reason(), err.code()), ("SEALED_DATA_INTEGRITY", tonic::Code::Internal));
    assert!(h.vault.get_record(a, &all).await.is_ok());

    // A version moved onto the next one fails too.
    h.vault.upsert_record(a, "tax-return", tax_record(), None).await.expect("a v2");
    on_pool!(h.vault.store().db(), pool => sqlx::query(
        "UPDATE vault_sealed SET nonce = (SELECT nonce FROM vault_sealed WHERE name = $1 AND version = 1),
             ciphertext = (SELECT ciphertext FROM vault_sealed WHERE name = $1 AND version = 1),
             wrapped_key = (SELECT wrapped_key FROM vault_sealed WHERE name = $1 AND version = 1)
         WHERE name = $1 AND version = 2")
        .bind(a).execute(pool).await.map(|_| ()))
    .expect("move version");
    assert_eq!(h.vault.get_record(a, &all).await.expect_err("old version").reason(), "SEALED_DATA_INTEGRITY");

    // The kind is in the clear for policy; changing it in the store makes the read fail, not answer.
    let c = "subjects/s1/records/c";
    h.vault.upsert_record(c, "tax-return", tax_record(), None).await.expect("c");
    on_pool!(h.vault.store().db(), pool => sqlx::query("UPDATE vault_records SET kind = 'newsletter' WHERE name = $1")
        .bind(c).execute(pool).await.map(|_| ()))
    .expect("relabel");
    assert_eq!(h.vault.get_record(c, &all).await.expect_err("relabelled").reason(), "SEALED_DATA_INTEGRITY");
}

async fn rotation_keeps_every_record_readable(backend: Backend) {
    let h = harness(backend, VaultConfig::default()).await;
    let all = AllowedFields::up_to(Sensitivity::Restricted);
    let mut records = Vec::new();
    for i in 0..7 {
        let id = format!("s{i}");
        h.vault.ingest_subject(&id, &person("Ann", &format!("Smith{i}"))).await.expect("ingest");
        let name = format!("subjects/{id}/records/r");
        h.vault.upsert_record(&name, "tax-return", tax_record(), None).await.expect("record");
        records.push(name);
    }
    let usage = h.vault.key_usage().await.expect("usage");
    assert_eq!((usage.len(), usage[0].kek_id.as_str(), usage[0].wrapped_data_keys), (1, "k1", 14));

    // A vault never starts without a KEK that still wraps data keys.
    std::fs::rename(h.dir.path().join("keys/vault-kek/k1.hex"), h.dir.path().join("k1.hex.aside")).expect("move");
    let err = reopen(&h, VaultConfig::default()).await.expect_err("k1 missing");
    assert_eq!(err.reason(), "KEYS_UNAVAILABLE");
    assert!(err.to_string().contains("restore the key files"), "{err}");
    assert!(!h.dir.path().join("keys/vault-kek/k1.hex").exists(), "no fresh k1 was made up");
    // Nor with another key in its place.
    Keyring::create_next(h.dir.path(), &KeyConfig::default()).expect("an impostor k1");
    let err = reopen(&h, VaultConfig::default()).await.expect_err("wrong k1");
    assert!(err.to_string().contains("check value differs"), "{err}");
    std::fs::rename(h.dir.path().join("k1.hex.aside"), h.dir.path().join("keys/vault-kek/k1.hex")).expect("back");

    let config = KeyConfig::default();
    assert_eq!(Keyring::create_next(h.dir.path(), &config).expect("k2"), "k2");
    let only_k2 = Keyring::from_keys([("k2".to_string(), read_key(&h, "k2"))], "k2").expect("ring");
    assert_eq!(h.vault.replace_keyring(only_k2).await.expect_err("k1 still in use").reason(), "INVALID_ARGUMENT");
    h.vault.replace_keyring(Keyring::load(h.dir.path(), &config, false).expect("load")).await.expect("swap");

    // New writes go under k2 at once; old ones move in batches, readable throughout.
    h.vault.upsert_record(&records[0], "tax-return", tax_record(), None).await.expect("write under k2");
    let mut remaining = u64::MAX;
    let mut rounds = 0;
    while remaining > 0 {
        let progress = h.vault.rotate_keys(4).await.expect("rotate");
        assert_eq!(progress.active_kek, "k2");
        assert!(progress.remaining < remaining, "progress is made");
        remaining = progress.remaining;
        rounds += 1;
        for name in &records {
            assert_eq!(h.vault.get_record(name, &all).await.expect("readable mid-rotation").fields, tax_record());
        }
    }
    assert_eq!(rounds, 4, "14 data keys in batches of 4");
    let usage = h.vault.key_usage().await.expect("usage");
    assert_eq!(
        usage.iter().map(|u| (u.kek_id.as_str(), u.wrapped_data_keys)).collect::<Vec<_>>(),
        [("k1", 0), ("k2", 15)]
    );

    // The old KEK can now be destroyed: a vault opened without it reads everything.
    std::fs::remove_file(h.dir.path().join("keys/vault-kek/k1.hex")).expect("destroy k1");
    let reopened = reopen(&h, VaultConfig::default()).await.expect("reopen without k1");
    for name in &records {
        assert_eq!(reopened.get_record(name, &all).await.expect("readable after").fields, tax_record());
    }
    for i in 0..7 {
        assert_eq!(reopened.get_subject(&format!("s{i}")).await.expect("subject").family_name, format!("Smith{i}"));
    }
}

fn read_key(h: &Harness, id: &str) -> [u8; 32] {
    let text = std::fs::read_to_string(h.dir.path().join(format!("keys/vault-kek/{id}.hex"))).expect("read key");
    hex::decode(text.trim()).expect("hex").try_into().expect("32 bytes")
}

async fn no_plaintext_at_rest(backend: Backend) {
    let h = harness(backend, VaultConfig::default()).await;
    let secrets = [
        "Quetzalcoatl",
        "Zyxwvutsrq",
        "QX9 7ZZ",
        "ZZ-987-654",
        "Rue Introuvable",
        "zebrafish-syndrome",
        "Safehouse Lane",
    ];
    let subject = SubjectInput {
        given_names: secrets[0].into(),
        family_name: secrets[1].into(),
        date_of_birth: "1911-11-11".into(),
        postcode: secrets[2].into(),
        reference_number: secrets[3].into(),
        address_lines: vec![format!("1 {}", secrets[4])],
        household: "HH-ABCDEF".into(),
        ..SubjectInput::default()
    };
    h.vault.ingest_subject("s1", &subject).await.expect("ingest");
    h.vault.upsert_record("subjects/s1/records/r1", "tax-return", tax_record(), None).await.expect("record");
    let found = h.vault.search(&RawQuery { family_name: "zyxw*".into(), ..RawQuery::default() }).await.expect("search");
    assert_eq!(found.subjects, ["subjects/s1"]);

    let mut dump = Vec::new();
    match backend {
        Backend::Sqlite => {
            // The raw files, WAL included, byte for byte.
            for file in ["vault.db", "vault.db-wal"] {
                dump.extend_from_slice(&std::fs::read(h.dir.path().join(file)).expect("database file"));
            }
            assert!(dump.len() > 8192, "the database files were read");
        }
        Backend::Postgres => {
            // Every row of every table as text (bytea as hex, hence the hex needles below).
            for table in
                ["vault_subjects", "vault_records", "vault_sealed", "vault_search_index", "vault_relationship_keys"]
            {
                let rows: Vec<(String,)> = on_pool!(h.vault.store().db(), pool =>
                    sqlx::query_as(&format!("SELECT t::text FROM {table} t")).fetch_all(pool).await)
                .expect("dump");
                assert!(!rows.is_empty(), "{table} holds rows");
                for (row,) in rows {
                    dump.extend_from_slice(row.as_bytes());
                }
            }
        }
    }
    let haystack = String::from_utf8_lossy(&dump).to_lowercase();
    // Positive control: what is stored in the clear (the record kind) is found, so the search would see plaintext.
    assert!(haystack.contains("tax-return"), "the dump holds the stored rows");
    for needle in
        secrets.iter().map(|s| s.to_lowercase()).chain(["1911-11-11".into(), "zyxw".into(), "52000.50".into()])
    {
        assert!(!haystack.contains(&needle), "{needle:?} found in the store");
        let hex_needle = hex::encode(needle.as_bytes());
        assert!(!haystack.contains(&hex_needle), "{needle:?} found hex-encoded in the store");
    }
}

async fn bad_input_changes_nothing(backend: Backend) {
    let h = harness(backend, VaultConfig::default()).await;
    h.vault.ingest_subject("s1", &person("Ann", "Smith")).await.expect("ingest");
    let before =
        (count(&h, "vault_subjects").await, count(&h, "vault_sealed").await, count(&h, "vault_search_index").await);

    let bad_subject = SubjectInput {
        given_names: "".into(),
        family_name: "Sm*th".into(),
        date_of_birth: "1980-02-30".into(),
        postcode: "!".into(),
        compartment: "Public Figure".into(),
        ..SubjectInput::default()
    };
    let err = h.vault.ingest_subject("BAD ID", &bad_subject).await.expect_err("invalid");
    let fields: Vec<String> = err.violations().into_iter().map(|v| v.field).collect();
    assert_eq!(
        fields,
        [
            "subject.given_names",
            "subject.family_name",
            "subject.date_of_birth",
            "subject.postcode",
            "subject_id",
            "subject.compartment"
        ]
    );
    let err = h.vault.ingest_subject("s1", &SubjectInput { family_name: "".into(), ..person("Ann", "") }).await;
    assert_eq!(err.expect_err("no family name").violations()[0].field, "subject.family_name");

    let name = "subjects/s1/records/r1";
    let cases: Vec<(&str, Vec<Field>, &str)> = vec![
        ("tax-return", vec![], "record.fields"),
        ("Tax Return", tax_record(), "record.kind"),
        ("tax-return", vec![Field::new("Bad-Name", Sensitivity::Basic, FieldValue::Int(1))], "record.fields[0].name"),
        (
            "tax-return",
            vec![
                Field::new("a", Sensitivity::Basic, FieldValue::Int(1)),
                Field::new("a", Sensitivity::Basic, FieldValue::Int(2)),
            ],
            "record.fields[1].name",
        ),
        (
            "tax-return",
            vec![Field::new("a", Sensitivity::Unspecified, FieldValue::Int(1))],
            "record.fields[0].sensitivity",
        ),
        ("tax-return", vec![Field { name: "a".into(), sensitivity: 1, value: None }], "record.fields[0].value"),
        (
            "tax-return",
            vec![Field::new("a", Sensitivity::Basic, FieldValue::Date("2023-02-29".into()))],
            "record.fields[0].value",
        ),
        (
            "tax-return",
            vec![Field::new("a", Sensitivity::Basic, FieldValue::Decimal("1.2.3".into()))],
            "record.fields[0].value",
        ),
        (
            "tax-return",
            vec![Field::new("a", Sensitivity::Basic, FieldValue::String("x".repeat(64 * 1024 + 1)))],
            "record.fields[0].value",
        ),
        (
            "tax-return",
            (0..20)
                .map(|i| Field::new(&format!("f{i}"), Sensitivity::Basic, FieldValue::Bytes(vec![0; 60 * 1024])))
                .collect(),
            "record.fields",
        ),
    ];
    for (kind, fields, field) in cases {
        let err = h.vault.upsert_record(name, kind, fields, None).await.expect_err(field);
        assert_eq!((err.reason(), err.violations()[0].field.as_str()), ("INVALID_ARGUMENT", field));
    }
    for bad_name in ["subjects/s1", "subjects/s1/records/R1", "records/r1", "subjects/s1/records/r1/x"] {
        let err = h.vault.upsert_record(bad_name, "tax-return", tax_record(), None).await.expect_err(bad_name);
        assert_eq!(err.violations()[0].field, "record.name");
        let err = h.vault.get_record(bad_name, &AllowedFields::up_to(Sensitivity::Basic)).await.expect_err(bad_name);
        assert_eq!(err.violations()[0].field, "name");
    }
    let after =
        (count(&h, "vault_subjects").await, count(&h, "vault_sealed").await, count(&h, "vault_search_index").await);
    assert_eq!(before, after, "bad input changed nothing");
    assert_eq!(count(&h, "vault_records").await, 0);
}

async fn concurrent_writers_do_not_both_win(backend: Backend) {
    let h = harness(backend, VaultConfig::default()).await;
    h.vault.ingest_subject("s1", &person("Ann", "Smith")).await.expect("ingest");
    let name = "subjects/s1/records/r";
    let writes = (0..8).map(|_| h.vault.upsert_record(name, "tax-return", tax_record(), None));
    let results = futures::future::join_all(writes).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert!(won >= 1);
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(err.reason(), "VERSION_MISMATCH", "{err}");
    }
    let head = h.vault.get_record(name, &AllowedFields::up_to(Sensitivity::Basic)).await.expect("read");
    assert_eq!(head.version as usize, won, "each success wrote exactly one version");
    assert_eq!(count(&h, "vault_sealed").await as usize, 1 + won);
}

async fn relationship_keys_and_access_index(backend: Backend) {
    let h = harness(backend, VaultConfig::default()).await;
    let a = h.vault.ingest_subject("a1", &person("Ann", "Müller")).await.expect("a");
    let mut other = person("Bob", "MULLER");
    other.address_lines = vec!["10, Downing   Street".into()];
    other.household = "hh 1".into();
    let b = h.vault.ingest_subject("b1", &other).await.expect("b");
    assert_eq!(a.policy.relationship_keys, b.policy.relationship_keys, "same surname, address and household");
    let stored = h.vault.relationship_keys("a1").await.expect("keys");
    let kinds: Vec<&str> = stored.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["address", "household", "surname"]);
    let mut moved = person("Ann", "Müller");
    moved.postcode = "EC1A 1BB".into();
    let c = h.vault.ingest_subject("a1", &moved).await.expect("moved");
    assert_ne!(c.policy.relationship_keys[1], a.policy.relationship_keys[1], "a new address, a new key");
    assert_eq!(c.policy.relationship_keys[0], a.policy.relationship_keys[0]);

    let store = h.vault.store();
    let access = |subject: &str, ledger_index: u64, visible_from_us: i64| IndexedAccess {
        subject_id: subject.into(),
        ledger_index,
        visible_from_us,
        salt: vec![ledger_index as u8; 16],
    };
    store.add_access(&access("a1", 5, 0)).await.expect("add");
    store.add_access(&access("a1", 9, i64::MAX)).await.expect("covert, hidden");
    store.add_access(&access("a1", 7, 0)).await.expect("add");
    store.add_access(&access("a1", 7, 0)).await.expect("idempotent");
    store.add_access(&access("b1", 6, 0)).await.expect("add");
    let indices = |rows: Vec<IndexedAccess>| rows.into_iter().map(|r| r.ledger_index).collect::<Vec<_>>();
    assert_eq!(indices(store.accesses("a1", 1_000, -1, 10).await.expect("list")), [5, 7]);
    let released = store.accesses("a1", i64::MAX, -1, 10).await.expect("released");
    assert_eq!(released[2], access("a1", 9, i64::MAX), "the salt comes back with the row");
    assert_eq!(indices(released), [5, 7, 9]);
    assert_eq!(indices(store.accesses("a1", i64::MAX, 5, 1).await.expect("page")), [7]);
    // A group of 300 (statements of 256, 32, 8 and 4 rows on SQLite): two rows already there, one twice.
    let mut group: Vec<IndexedAccess> = (100..398).map(|i| access("c1", i, 0)).collect();
    group.extend([access("a1", 5, 0), access("c1", 100, 0)]);
    assert_eq!(store.add_accesses(&group).await.expect("group"), 298, "only rows not there before count");
    assert_eq!(store.accesses("c1", 0, -1, 1000).await.expect("list").len(), 298);
    store.clear_access_index().await.expect("clear");
    assert!(store.accesses("a1", i64::MAX, -1, 10).await.expect("empty").is_empty());
}

/// A store written before the access index had a file of its own: its rows
/// move over on open, the old table goes, and a second open changes nothing.
#[tokio::test]
async fn the_access_index_moves_to_its_own_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = store_url(Backend::Sqlite, dir.path()).await;
    let Db::Sqlite(old) = Db::connect(&url).await.expect("connect") else { unreachable!() };
    sqlx::query(
        "CREATE TABLE vault_access_index (subject_id TEXT NOT NULL, ledger_index BIGINT NOT NULL,
         visible_from_us BIGINT NOT NULL, salt BLOB NOT NULL, PRIMARY KEY (subject_id, ledger_index))",
    )
    .execute(&old)
    .await
    .expect("old table");
    for (subject, index) in [("a1", 3), ("a1", 8), ("b1", 4)] {
        sqlx::query("INSERT INTO vault_access_index VALUES ($1, $2, 0, X'0102')")
            .bind(subject)
            .bind(index)
            .execute(&old)
            .await
            .expect("old row");
    }
    let old_table = async || -> i64 {
        sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM sqlite_master WHERE name = 'vault_access_index'")
            .fetch_one(&old)
            .await
            .expect("schema")
            .0
    };
    for _ in 0..2 {
        let store = Store::open(Db::connect(&url).await.expect("connect")).await.expect("open");
        let listed: Vec<u64> =
            store.accesses("a1", 0, -1, 10).await.expect("list").into_iter().map(|a| a.ledger_index).collect();
        assert_eq!(listed, [3, 8]);
        assert_eq!(store.accesses("b1", 0, -1, 10).await.expect("list")[0].salt, [1, 2]);
        assert_eq!(old_table().await, 0, "the vault's file no longer holds the index");
    }
    assert!(dir.path().join("vault-access-index.db").is_file());
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                super::$test(super::Backend::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$test(super::Backend::Postgres).await;
            }
        }
    )*};
}

on_both_backends!(
    ingest_and_minimized_reads,
    search_by_blind_indexes,
    decoys_are_indistinguishable,
    moved_ciphertext_fails_to_open,
    rotation_keeps_every_record_readable,
    no_plaintext_at_rest,
    bad_input_changes_nothing,
    concurrent_writers_do_not_both_win,
    relationship_keys_and_access_index,
);
