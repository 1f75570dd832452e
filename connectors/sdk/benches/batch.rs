//! Throughput of the SDK's hot paths on a 20 000-row chunk of the all-types sample (37
//! columns): building, encoding, decoding and digesting a batch.
//!
//! Run: `cargo bench -p caudal-connector --bench batch`.

use std::sync::Arc;

use caudal_connector::sample::{all_types_batch, all_types_schema, push_all_types_row};
use caudal_connector::{Batch, BatchBuilder, Field, LogicalType, Schema, TableDigest};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ROWS: usize = 20_000;

fn narrow_schema() -> Arc<Schema> {
    let fields = vec![
        Field::new("id", LogicalType::Int64, false),
        Field::new("store", LogicalType::Int32, false),
        Field::new(
            "amount",
            LogicalType::Decimal {
                precision: 12,
                scale: 2,
            },
            true,
        ),
        Field::new("at", LogicalType::Timestamp { precision: 6 }, true),
        Field::new(
            "note",
            LogicalType::Varchar {
                max_length: Some(40),
            },
            true,
        ),
        Field::new("ratio", LogicalType::Float64, true),
    ];
    Arc::new(Schema::new(fields, &["id"]).expect("valid schema"))
}

fn narrow_batch(schema: &Arc<Schema>) -> Batch {
    let mut b = BatchBuilder::with_capacity(Arc::clone(schema), ROWS);
    for i in 0..ROWS as i64 {
        b.push(0, i).unwrap();
        b.push(1, (i % 16) as i32).unwrap();
        b.push(2, i128::from(i * 37)).unwrap();
        b.push(3, 1_700_000_000_000_000 + i).unwrap();
        b.push_opt(4, (i % 5 != 0).then_some("venta de mostrador"))
            .unwrap();
        b.push(5, i as f64 / 7.0).unwrap();
    }
    b.finish().unwrap()
}

fn bench(c: &mut Criterion) {
    let wide_schema = Arc::new(all_types_schema());
    let wide = all_types_batch(&wide_schema, 0, ROWS).unwrap();
    let narrow_schema = narrow_schema();
    let narrow = narrow_batch(&narrow_schema);

    let mut g = c.benchmark_group("batch_20k_rows");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(20);
    g.bench_function("build_all_types", |b| {
        b.iter(|| {
            let mut builder = BatchBuilder::with_capacity(Arc::clone(&wide_schema), ROWS);
            for id in 0..ROWS as u64 {
                push_all_types_row(&mut builder, id).unwrap();
            }
            builder.finish().unwrap()
        })
    });
    for (name, batch) in [("all_types", &wide), ("six_columns", &narrow)] {
        let bytes = batch.encode().unwrap();
        g.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| batch.encode().unwrap())
        });
        g.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| Batch::decode(&bytes).unwrap())
        });
        g.bench_function(format!("digest_{name}"), |b| {
            b.iter(|| TableDigest::of_batch("t", batch))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches, parts_group);

fn parts(c: &mut Criterion) {
    let mut g = c.benchmark_group("digest_parts");
    g.sample_size(20);
    type Expand = fn(&[u8; 32], &mut [u8; 2048]);
    let expansions: [(&str, Expand); 2] = [
        ("expand_2k", caudal_connector::expand::expand),
        (
            "expand_2k_portable",
            caudal_connector::expand::expand_portable,
        ),
    ];
    for (name, expand) in expansions {
        g.bench_function(name, |b| {
            let mut out = [0u8; 2048];
            let mut seed = [0u8; 32];
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                seed[..8].copy_from_slice(&i.to_le_bytes());
                expand(&seed, &mut out);
                out[7]
            })
        });
    }
    g.bench_function("add_row", |b| {
        let mut d = TableDigest::new();
        let r = caudal_connector::RowDigest([7; 32]);
        b.iter(|| d.add_row(&r))
    });
    g.finish();
}
criterion_group!(parts_group, parts);
