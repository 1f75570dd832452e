//! The example pipelines under `pipelines/` parse, and say what their comments say they do.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use caudal_config::{Backoff, Durability, Mode, Pipeline, Schedule};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipelines")
        .join(name)
}

/// Secrets as a service manager would export them; each value is distinct so a leak is
/// attributable.
fn env(var: &str) -> Option<OsString> {
    let value = match var {
        "RESTAURANTES_PASSWORD" => "rest-Secret-1".to_owned(),
        "REPORTES_PASSWORD" => "rep-Secret-2".to_owned(),
        "INVENTARIO_PASSWORD" => "inv-Secret-3".to_owned(),
        tienda if tienda.starts_with("TIENDA_") && tienda.ends_with("_PASSWORD") => {
            format!("pw-{}-x9", &tienda[7..9])
        }
        _ => return None,
    };
    Some(value.into())
}

fn load(name: &str) -> Pipeline {
    let path = example(name);
    let text = std::fs::read_to_string(&path).expect("example file");
    Pipeline::from_str_with_env(&text, &path, env).unwrap_or_else(|e| panic!("{name}:\n{e}"))
}

#[test]
fn ventas_reads_sixteen_stores_into_duckdb_nightly() {
    let p = load("ventas.toml");
    assert_eq!(p.name(), "ventas");
    let expected_dir = example("journal/ventas");
    assert!(
        p.journal_dir().ends_with("pipelines/journal/ventas"),
        "{:?}",
        p.journal_dir()
    );
    assert_eq!(
        std::path::absolute(&expected_dir).ok(),
        Some(p.journal_dir())
    );
    assert_eq!(p.journal().durability(), Durability::Batch);

    let ventas = p.stream("ventas").expect("stream `ventas`");
    let stores: Vec<String> = (1..=16).map(|i| format!("tienda_{i:02}")).collect();
    assert_eq!(ventas.sources(), stores.as_slice());
    assert!(ventas.is_partitioned());
    assert_eq!(ventas.destinations(), ["warehouse"]);
    assert_eq!(ventas.table(), "ventas_raw");
    assert_eq!(ventas.mode(), Mode::Incremental);
    assert_eq!(ventas.cursor(), Some("fecha"));
    assert_eq!(ventas.primary_key(), ["tienda", "factura", "linea"]);
    assert_eq!(ventas.chunk_rows(), 20_000);
    assert_eq!(ventas.chunk_bytes(), 8 << 20);

    // 5:00, then three retries 20 minutes apart: 5:20, 5:40, 6:00.
    let retry = ventas.retry();
    assert_eq!(retry.max_attempts, 4);
    assert_eq!(retry.backoff, Backoff::Fixed);
    for failed in 1..=3 {
        assert!(retry.may_retry(failed));
        assert_eq!(retry.delay_after(failed, 0.7), Duration::from_secs(20 * 60));
    }
    assert!(!retry.may_retry(4));
    match p.schedule() {
        Some(Schedule::Cron(cron)) => assert_eq!(cron.as_str(), "0 5 * * *"),
        other => panic!("expected a nightly cron, got {other:?}"),
    }

    let tienda = p.connection("tienda_07").expect("tienda_07");
    assert_eq!(tienda.connector(), "mssql");
    assert!(tienda.is_builtin());
    assert_eq!(
        tienda
            .plugin_config()
            .expose()
            .get("url")
            .and_then(|v| v.as_str()),
        Some("mssql://etl:pw-07-x9@tienda07.local:1433/ventas")
    );
    assert_eq!(
        tienda.redacted().get("url").and_then(|v| v.as_str()),
        Some("mssql://etl:***@tienda07.local:1433/ventas")
    );
    let warehouse = p.connection("warehouse").expect("warehouse");
    let path = warehouse.plugin_config().into_exposed();
    let path = path.get("path").and_then(|v| v.as_str()).expect("path");
    assert!(
        Path::new(path).is_absolute() && path.ends_with("pipelines/data/fluxion_production.db")
    );
}

#[test]
fn restaurantes_consolidates_three_databases_with_a_source_column() {
    let p = load("restaurantes.toml");
    assert_eq!(p.streams().len(), 4);
    for s in p.streams() {
        assert_eq!(s.mode(), Mode::Consolidate, "{}", s.name());
        assert_eq!(
            s.sources(),
            [
                "restaurante_centro",
                "restaurante_norte",
                "restaurante_playa"
            ],
            "{}",
            s.name()
        );
        assert_eq!(s.destinations(), ["reportes"]);
        assert_eq!(s.source_column(), Some("_source"));
    }
    assert_eq!(
        p.stream("pedidos").and_then(|s| s.cursor()),
        Some("actualizado_en")
    );
    assert_eq!(
        p.stream("productos").and_then(|s| s.cursor()),
        None,
        "copied whole each run"
    );
    assert_eq!(
        p.stream("pedido_lineas").map(|s| s.primary_key().len()),
        Some(2)
    );

    let retry = p.retry();
    let waits: Vec<u64> = (1..=5)
        .map(|n| retry.delay_after(n, 0.0).as_secs() / 60)
        .collect();
    assert_eq!(
        waits,
        [2, 4, 8, 16, 30],
        "exponential from 2m, capped at 30m"
    );
    match p.schedule() {
        Some(Schedule::Cron(cron)) => assert_eq!(cron.as_str(), "30 23 * * *"),
        other => panic!("expected the nightly cierre, got {other:?}"),
    }
}

#[test]
fn cache_keeps_redis_equal_to_mysql_every_thirty_seconds() {
    let p = load("cache.toml");
    let items = p.stream("items").expect("stream `items`");
    assert_eq!(items.sources(), ["tienda"]);
    assert!(!items.is_partitioned());
    assert_eq!(items.destinations(), ["inventario", "cache"]);
    assert_eq!(items.mode(), Mode::Merge);
    assert_eq!(items.primary_key(), ["id"]);
    assert_eq!(items.chunk_rows(), 5000);
    assert_eq!(
        p.journal().durability(),
        Durability::Interval(Duration::from_millis(100))
    );
    let cache = p.connection("cache").expect("cache");
    assert_eq!(cache.connector(), "redis");
    assert_eq!(
        cache.redacted().get("prefix").and_then(|v| v.as_str()),
        Some("items")
    );
    assert!(!cache.setting("url").expect("url").is_secret());
    match p.schedule() {
        Some(Schedule::Every {
            period,
            start: None,
        }) => assert_eq!(*period, Duration::from_secs(30)),
        other => panic!("expected every 30s, got {other:?}"),
    }
    let retry = items.retry();
    assert_eq!(retry.jitter, 0.2);
    let low = retry.delay_after(1, 0.0);
    let high = retry.delay_after(1, 0.999);
    assert_eq!(low, Duration::from_millis(160));
    assert!(high > Duration::from_millis(239) && high <= Duration::from_millis(240));
}

#[test]
fn examples_need_their_secrets() {
    let path = example("ventas.toml");
    let text = std::fs::read_to_string(&path).expect("example file");
    let err = Pipeline::from_str_with_env(&text, &path, |_| None).expect_err("no secrets set");
    // One problem per store, in file order, each naming its variable.
    assert_eq!(err.problems().len(), 16);
    assert!(
        err.problems()[0]
            .to_string()
            .contains("`TIENDA_01_PASSWORD` is not set")
    );
    assert!(
        err.problems()[15]
            .to_string()
            .contains("`TIENDA_16_PASSWORD` is not set")
    );
}
