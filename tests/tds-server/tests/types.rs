//! Every SQL Server type the connector maps crosses the wire both ways, with NULLs, through
//! `sp_executesql` parameters and through bulk load, and reads back as it was written.

mod common;

use std::borrow::Cow;

use common::{connect, server};
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
use tiberius::{ColumnData, TokenRow, Uuid};

/// (column declaration, value sent, value read back)
fn cases() -> Vec<(&'static str, ColumnData<'static>, ColumnData<'static>)> {
    let same = |d: &'static str, v: ColumnData<'static>| (d, v.clone(), v);
    let s = |v: &str| ColumnData::String(Some(Cow::Owned(v.to_string())));
    let b = |v: Vec<u8>| ColumnData::Binary(Some(Cow::Owned(v)));
    let dt2 = DateTime2::new(Date::new(738_000), Time::new(4_567_890_123, 7));
    vec![
        same("bit", ColumnData::Bit(Some(true))),
        same("tinyint", ColumnData::U8(Some(200))),
        same("smallint", ColumnData::I16(Some(-1234))),
        same("int", ColumnData::I32(Some(i32::MIN))),
        same("bigint", ColumnData::I64(Some(i64::MAX))),
        same(
            "decimal(18,4)",
            ColumnData::Numeric(Some(Numeric::new_with_scale(-12_345_678, 4))),
        ),
        same(
            "numeric(38,10)",
            ColumnData::Numeric(Some(Numeric::new_with_scale(
                12_345_678_901_234_567_890_123_456_789,
                10,
            ))),
        ),
        (
            "money",
            ColumnData::Numeric(Some(Numeric::new_with_scale(123_456_789, 4))),
            ColumnData::F64(Some(12_345.678_9)),
        ),
        (
            "smallmoney",
            ColumnData::Numeric(Some(Numeric::new_with_scale(-2_147_483_648, 4))),
            ColumnData::F64(Some(-214_748.364_8)),
        ),
        same("real", ColumnData::F32(Some(3.25))),
        same("float", ColumnData::F64(Some(0.1))),
        same("date", ColumnData::Date(Some(Date::new(738_000)))),
        // time(7) keeps microseconds (see the crate docs).
        same(
            "time(7)",
            ColumnData::Time(Some(Time::new(863_999_999_990, 7))),
        ),
        same("time(3)", ColumnData::Time(Some(Time::new(45_296_789, 3)))),
        same(
            "datetime",
            ColumnData::DateTime(Some(DateTime::new(45_000, 1))),
        ),
        same("datetime2(7)", ColumnData::DateTime2(Some(dt2))),
        same(
            "smalldatetime",
            ColumnData::SmallDateTime(Some(SmallDateTime::new(45_000, 1439))),
        ),
        same(
            "datetimeoffset(7)",
            ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
                DateTime2::new(Date::new(738_000), Time::new(1_234_567, 7)),
                -330,
            ))),
        ),
        ("char(5)", s("ab"), s("ab   ")),
        same("varchar(20)", s("Ñandú café €")),
        same("varchar(max)", s(&"x".repeat(9000))),
        ("nchar(5)", s("ñ"), s("ñ    ")),
        same("nvarchar(20)", s("日本語 🎉")),
        same("nvarchar(max)", s(&"ü".repeat(5000))),
        same("text", s("texto ñ")),
        same("ntext", s("ntext ✓ 🎉")),
        ("binary(4)", b(vec![1, 2]), b(vec![1, 2, 0, 0])),
        same("varbinary(10)", b(vec![0xde, 0xad, 0xbe, 0xef])),
        same(
            "varbinary(max)",
            b((0..20_000).map(|i| (i % 251) as u8).collect()),
        ),
        same(
            "uniqueidentifier",
            ColumnData::Guid(Some(Uuid::from_u128(
                0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
            ))),
        ),
    ]
}

/// The NULL of the type a value has.
fn null_of(v: &ColumnData<'_>) -> ColumnData<'static> {
    match v {
        ColumnData::Bit(_) => ColumnData::Bit(None),
        ColumnData::U8(_) => ColumnData::U8(None),
        ColumnData::I16(_) => ColumnData::I16(None),
        ColumnData::I32(_) => ColumnData::I32(None),
        ColumnData::I64(_) => ColumnData::I64(None),
        ColumnData::F32(_) => ColumnData::F32(None),
        ColumnData::F64(_) => ColumnData::F64(None),
        ColumnData::Numeric(_) => ColumnData::Numeric(None),
        ColumnData::Date(_) => ColumnData::Date(None),
        ColumnData::Time(_) => ColumnData::Time(None),
        ColumnData::DateTime(_) => ColumnData::DateTime(None),
        ColumnData::DateTime2(_) => ColumnData::DateTime2(None),
        ColumnData::SmallDateTime(_) => ColumnData::SmallDateTime(None),
        ColumnData::DateTimeOffset(_) => ColumnData::DateTimeOffset(None),
        ColumnData::String(_) => ColumnData::String(None),
        ColumnData::Binary(_) => ColumnData::Binary(None),
        ColumnData::Guid(_) => ColumnData::Guid(None),
        other => panic!("no NULL for {other:?}"),
    }
}

fn is_null(v: &ColumnData<'_>) -> bool {
    matches!(
        v,
        ColumnData::Bit(None)
            | ColumnData::U8(None)
            | ColumnData::I16(None)
            | ColumnData::I32(None)
            | ColumnData::I64(None)
            | ColumnData::F32(None)
            | ColumnData::F64(None)
            | ColumnData::Numeric(None)
            | ColumnData::Date(None)
            | ColumnData::Time(None)
            | ColumnData::DateTime(None)
            | ColumnData::DateTime2(None)
            | ColumnData::SmallDateTime(None)
            | ColumnData::DateTimeOffset(None)
            | ColumnData::String(None)
            | ColumnData::Binary(None)
            | ColumnData::Guid(None)
    )
}

fn create_table(name: &str) -> String {
    let cols: Vec<String> = cases()
        .iter()
        .enumerate()
        .map(|(i, (d, _, _))| format!("[c{i}] {d} NULL"))
        .collect();
    format!(
        "CREATE TABLE [dbo].[{name}] ([id] int NOT NULL PRIMARY KEY, {})",
        cols.join(", ")
    )
}

async fn read_back(c: &mut common::Conn, table: &str) {
    let rows = c
        .simple_query(format!("SELECT * FROM [{table}] ORDER BY [id]"))
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "a row of values and a row of NULLs");
    let expected = cases();
    let mut rows = rows.into_iter();
    let mut values = rows.next().unwrap().into_iter();
    assert_eq!(values.next(), Some(ColumnData::I32(Some(1))));
    for ((decl, _, want), got) in expected.iter().zip(values) {
        assert_eq!(&got, want, "{decl} read back through {table}");
    }
    let mut nulls = rows.next().unwrap().into_iter();
    assert_eq!(nulls.next(), Some(ColumnData::I32(Some(2))));
    for ((decl, _, _), got) in expected.iter().zip(nulls) {
        assert!(is_null(&got), "{decl}: expected NULL, got {got:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_through_parameters() {
    let server = server(&["tipos_param"]).await;
    let mut c = connect(&server, "tipos_param").await;
    c.simple_query(create_table("t"))
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let cases = cases();
    let marks: Vec<String> = (0..=cases.len()).map(|i| format!("@P{}", i + 1)).collect();
    let sql = format!("INSERT INTO [dbo].[t] VALUES ({})", marks.join(", "));
    let mut values: Vec<ColumnData<'static>> = vec![ColumnData::I32(Some(1))];
    values.extend(cases.iter().map(|(_, v, _)| v.clone()));
    let params: Vec<&dyn tiberius::ToSql> =
        values.iter().map(|v| v as &dyn tiberius::ToSql).collect();
    assert_eq!(c.execute(sql.as_str(), &params).await.unwrap().total(), 1);
    let mut nulls: Vec<ColumnData<'static>> = vec![ColumnData::I32(Some(2))];
    nulls.extend(cases.iter().map(|(_, v, _)| null_of(v)));
    let params: Vec<&dyn tiberius::ToSql> =
        nulls.iter().map(|v| v as &dyn tiberius::ToSql).collect();
    assert_eq!(c.execute(sql.as_str(), &params).await.unwrap().total(), 1);
    read_back(&mut c, "t").await;

    // The same values compare equal as parameters (a cursor re-reads nothing).
    for (i, (decl, v, _)) in cases.iter().enumerate() {
        if decl.contains("text") || decl.contains("max") {
            continue;
        }
        let q = format!("SELECT COUNT(*) FROM [t] WHERE [c{i}] = @P1");
        let row = c
            .query(q, &[v])
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.get::<i64, _>(0),
            Some(1),
            "{decl} compared with its own parameter"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_through_bulk_load() {
    let server = server(&["tipos_bulk"]).await;
    let mut c = connect(&server, "tipos_bulk").await;
    c.simple_query(create_table("t"))
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let cases = cases();
    let mut req = c.bulk_insert("[dbo].[t]").await.unwrap();
    let mut row = TokenRow::new();
    row.push(ColumnData::I32(Some(1)));
    for (_, v, _) in &cases {
        row.push(v.clone());
    }
    req.send(row).await.unwrap();
    let mut row = TokenRow::new();
    row.push(ColumnData::I32(Some(2)));
    for (_, v, _) in &cases {
        row.push(null_of(v));
    }
    req.send(row).await.unwrap();
    assert_eq!(req.finalize().await.unwrap().total(), 2);
    assert_eq!(server.stats().rows_received, 2);
    read_back(&mut c, "t").await;
}
