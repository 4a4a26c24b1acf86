//! Seal and open of a typical record: 20 fields, about 2 KiB encoded, each
//! under a fresh data key wrapped by the active KEK.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use quis_vault::{
    Field, FieldValue, Sensitivity,
    envelope::{Binding, open, seal},
    keyring::Keyring,
    model::RecordBody,
};

fn typical_record() -> Vec<u8> {
    let fields = (0..20)
        .map(|i| match i % 4 {
            0 => Field::new(&format!("note_{i}"), Sensitivity::Confidential, FieldValue::String("x".repeat(300))),
            1 => Field::new(&format!("amount_{i}"), Sensitivity::Confidential, FieldValue::Decimal("123456.78".into())),
            2 => Field::new(&format!("count_{i}"), Sensitivity::Basic, FieldValue::Int(i64::from(i) * 1_000)),
            _ => Field::new(&format!("date_{i}"), Sensitivity::Basic, FieldValue::Date("2024-04-05".into())),
        })
        .collect();
    RecordBody { fields, kind: "tax-return".into() }.encode_to_vec()
}

fn envelope(c: &mut Criterion) {
    let keyring = Keyring::from_keys([("k1".to_string(), [7u8; 32])], "k1").expect("keyring");
    let plain = typical_record();
    let at = Binding { name: "subjects/s-123456/records/tax-return-2024", version: 3 };
    let sealed = seal(&keyring, at, &plain).expect("seal");
    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Bytes(plain.len() as u64));
    group.bench_function(format!("seal_{}_bytes", plain.len()), |b| {
        b.iter(|| seal(&keyring, at, &plain).expect("seal"))
    });
    group.bench_function(format!("open_{}_bytes", plain.len()), |b| {
        b.iter(|| open(&keyring, at, &sealed).expect("open"))
    });
    group.bench_function("decode_after_open", |b| {
        b.iter(|| RecordBody::decode(open(&keyring, at, &sealed).expect("open").as_slice()).expect("decode"))
    });
    group.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
