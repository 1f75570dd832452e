//! The statement shapes a SQL Server connector sends: catalog queries, MERGE upserts, staging
//! through #temp tables, conditional DDL, renames, describe, and several databases at once.

mod common;

use common::{connect, error_number, server};

/// COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE,
/// DATETIME_PRECISION, IS_NULLABLE.
type CatalogRow = (
    String,
    String,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    String,
);

async fn batch(c: &mut common::Conn, sql: &str) {
    c.simple_query(sql)
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
}

async fn ints(c: &mut common::Conn, sql: &str) -> Vec<i64> {
    let rows = c
        .simple_query(sql)
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| match r.into_iter().next() {
            Some(tiberius::ColumnData::I32(Some(v))) => i64::from(v),
            Some(tiberius::ColumnData::I64(Some(v))) => v,
            other => panic!("not an integer: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_queries_report_declared_types() {
    let server = server(&["catalogo"]).await;
    let mut c = connect(&server, "catalogo").await;
    batch(
        &mut c,
        "CREATE TABLE [dbo].[ventas] ([tienda] smallint NOT NULL, [linea] int NOT NULL, [fecha] datetime NULL,
           [importe] decimal(12,2) NOT NULL, [nota] nvarchar(max) NULL, [codigo] varchar(10) NULL,
           [hora] time(3) NULL, [creado] datetime2(7) NOT NULL, CONSTRAINT [PK_ventas] PRIMARY KEY ([tienda], [linea]))",
    )
    .await;
    let rows = c
        .query(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, CAST(CHARACTER_MAXIMUM_LENGTH AS int) AS CHARACTER_MAXIMUM_LENGTH, \
             CAST(NUMERIC_PRECISION AS int) AS NUMERIC_PRECISION, CAST(NUMERIC_SCALE AS int) AS NUMERIC_SCALE, \
             CAST(DATETIME_PRECISION AS int) AS DATETIME_PRECISION, IS_NULLABLE \
             FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2 ORDER BY TABLE_NAME, ORDINAL_POSITION",
            &[&"dbo", &"ventas"],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let got: Vec<CatalogRow> = rows
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>(1).unwrap().to_string(),
                r.get::<&str, _>(2).unwrap().to_string(),
                r.get::<i32, _>(3),
                r.get::<i32, _>(4),
                r.get::<i32, _>(5),
                r.get::<i32, _>(6),
                r.get::<&str, _>(7).unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("tienda", "smallint", None, Some(5), Some(0), None, "NO"),
        ("linea", "int", None, Some(10), Some(0), None, "NO"),
        ("fecha", "datetime", None, None, None, Some(3), "YES"),
        ("importe", "decimal", None, Some(12), Some(2), None, "NO"),
        ("nota", "nvarchar", Some(-1), None, None, None, "YES"),
        ("codigo", "varchar", Some(10), None, None, None, "YES"),
        ("hora", "time", None, None, None, Some(3), "YES"),
        ("creado", "datetime2", None, None, None, Some(7), "NO"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|w| {
            (
                w.0.to_string(),
                w.1.to_string(),
                w.2,
                w.3,
                w.4,
                w.5,
                w.6.to_string(),
            )
        })
        .collect();
    assert_eq!(got, want);

    let rows = c
        .query(
            "SELECT tc.TABLE_NAME, kcu.COLUMN_NAME FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS AS tc \
             JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE AS kcu ON kcu.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA \
             AND kcu.CONSTRAINT_NAME = tc.CONSTRAINT_NAME AND kcu.TABLE_NAME = tc.TABLE_NAME \
             WHERE tc.CONSTRAINT_TYPE = 'PRIMARY KEY' AND tc.TABLE_SCHEMA = @P1 ORDER BY tc.TABLE_NAME, kcu.ORDINAL_POSITION",
            &[&"dbo"],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r.get::<&str, _>(1).unwrap()).collect();
    assert_eq!(keys, ["tienda", "linea"]);

    let rows = c
        .query(
            "SELECT 1 FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2",
            &[&"dbo", &"ventas"],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);

    // Result metadata carries the declared type, so a client sees what it created.
    let mut stream = c
        .simple_query("SELECT TOP 0 [fecha], [codigo], [creado] FROM [dbo].[ventas]")
        .await
        .unwrap();
    let cols = stream.columns().await.unwrap().unwrap().to_vec();
    stream.into_results().await.unwrap();
    let types: Vec<tiberius::ColumnType> = cols.iter().map(|c| c.column_type()).collect();
    assert_eq!(
        types,
        [
            tiberius::ColumnType::Datetimen,
            tiberius::ColumnType::BigVarChar,
            tiberius::ColumnType::Datetime2
        ]
    );

    // describe_first_result_set gives exact type names.
    let rows = c
        .query(
            "SELECT name, system_type_name, is_nullable FROM sys.dm_exec_describe_first_result_set(@P1, N'@from sql_variant, @to sql_variant', 0) ORDER BY column_ordinal",
            &[&"SELECT fecha, importe, CAST(importe AS money) AS m FROM ventas WHERE fecha >= @from AND fecha < @to"],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let described: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>(0).unwrap(),
                r.get::<&str, _>(1).unwrap(),
                r.get::<bool, _>(2).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            ("fecha", "datetime", true),
            ("importe", "decimal(12,2)", false),
            ("m", "money", true)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_upserts_from_values_and_from_a_temp_table() {
    let server = server(&["fusion"]).await;
    let mut c = connect(&server, "fusion").await;
    batch(
        &mut c,
        "CREATE TABLE [dbo].[t] ([id] bigint NOT NULL, [v] int NULL, PRIMARY KEY ([id]))",
    )
    .await;
    batch(&mut c, "INSERT INTO t VALUES (1, 10), (2, 20)").await;
    let n = c
        .execute(
            "MERGE INTO [dbo].[t] AS T USING (VALUES (@P1, @P2), (@P3, @P4)) AS S([id], [v]) ON T.[id] = S.[id] \
             WHEN MATCHED THEN UPDATE SET T.[v] = S.[v] WHEN NOT MATCHED THEN INSERT ([id], [v]) VALUES (S.[id], S.[v]);",
            &[&2i64, &21i32, &3i64, &30i32],
        )
        .await
        .unwrap();
    assert_eq!(n.total(), 2);
    // Staging in a #temp table, loaded by bulk insert, then merged and deleted by key.
    batch(
        &mut c,
        "CREATE TABLE [#caudal_stage] ([id] bigint NULL, [v] int NULL)",
    )
    .await;
    let mut req = c.bulk_insert("[#caudal_stage]").await.unwrap();
    for (id, v) in [(3i64, 31i32), (4, 40)] {
        let mut row = tiberius::TokenRow::new();
        row.push(tiberius::ColumnData::I64(Some(id)));
        row.push(tiberius::ColumnData::I32(Some(v)));
        req.send(row).await.unwrap();
    }
    req.finalize().await.unwrap();
    batch(
        &mut c,
        "BEGIN TRANSACTION; MERGE INTO [dbo].[t] AS [t] USING [#caudal_stage] AS [s] ON [t].[id] = [s].[id] \
         WHEN MATCHED THEN UPDATE SET [t].[v] = [s].[v] WHEN NOT MATCHED THEN INSERT ([id], [v]) VALUES ([s].[id], [s].[v]); COMMIT TRANSACTION",
    )
    .await;
    assert_eq!(
        ints(&mut c, "SELECT v FROM t ORDER BY id").await,
        [10, 21, 31, 40]
    );
    batch(&mut c, "DELETE FROM [dbo].[t] WHERE EXISTS (SELECT 1 FROM [#caudal_stage] AS [s] WHERE [s].[id] = [dbo].[t].[id])").await;
    assert_eq!(ints(&mut c, "SELECT id FROM t ORDER BY id").await, [1, 2]);
    batch(&mut c, "DROP TABLE IF EXISTS [#caudal_stage]").await;
    // A temp table belongs to its session.
    let mut other = connect(&server, "fusion").await;
    assert_eq!(
        error_number(other.execute("SELECT * FROM [#caudal_stage]", &[]).await),
        208
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_ddl_rowcount_renames_and_variables() {
    let server = server(&["ddl"]).await;
    let mut c = connect(&server, "ddl").await;
    let create = "IF OBJECT_ID(N'dbo._caudal_offsets', N'U') IS NULL CREATE TABLE [dbo].[_caudal_offsets] ([pipeline] nvarchar(255) NOT NULL, \
                  [stream] nvarchar(255) NOT NULL, [seq] bigint NOT NULL, [updated_at] datetime2(6) NOT NULL, PRIMARY KEY ([pipeline], [stream]))";
    batch(&mut c, create).await;
    batch(&mut c, create).await;
    let upsert = "UPDATE [dbo].[_caudal_offsets] SET [seq] = @P1, [updated_at] = SYSUTCDATETIME() WHERE [pipeline] = @P2 AND [stream] = @P3\n\
                  IF @@ROWCOUNT = 0 INSERT INTO [dbo].[_caudal_offsets] ([pipeline], [stream], [seq], [updated_at]) VALUES (@P2, @P3, @P1, SYSUTCDATETIME())";
    c.execute(upsert, &[&5i64, &"p", &"s"]).await.unwrap();
    c.execute(upsert, &[&6i64, &"p", &"s"]).await.unwrap();
    let rows = c
        .query("SELECT [seq] FROM [dbo].[_caudal_offsets] WITH (UPDLOCK, HOLDLOCK) WHERE [pipeline] = @P1 AND [stream] = @P2", &[&"p", &"s"])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.get::<i64, _>(0).unwrap())
            .collect::<Vec<_>>(),
        [6]
    );

    // Swap a staging table into place.
    batch(
        &mut c,
        "CREATE TABLE [dbo].[v] ([id] int NOT NULL PRIMARY KEY); INSERT INTO [dbo].[v] VALUES (1)",
    )
    .await;
    batch(&mut c, "CREATE TABLE [dbo].[v__caudal_staging] ([id] int NOT NULL PRIMARY KEY); INSERT INTO [dbo].[v__caudal_staging] VALUES (2)").await;
    batch(
        &mut c,
        "BEGIN TRANSACTION\nEXEC sp_rename N'[dbo].[v]', N'_caudal_old_v'\nEXEC sp_rename N'[dbo].[v__caudal_staging]', N'v'\nDROP TABLE [dbo].[_caudal_old_v]\nCOMMIT TRANSACTION",
    )
    .await;
    assert_eq!(ints(&mut c, "SELECT id FROM [v]").await, [2]);
    assert_eq!(
        error_number(c.execute("SELECT * FROM [_caudal_old_v]", &[]).await),
        208
    );
    batch(
        &mut c,
        "IF OBJECT_ID(N'dbo.v', N'U') IS NOT NULL DROP TABLE [dbo].[v]",
    )
    .await;
    assert_eq!(error_number(c.execute("SELECT * FROM [v]", &[]).await), 208);

    // Cursor bounds travel as variables.
    batch(&mut c, "CREATE TABLE w ([k] int NOT NULL PRIMARY KEY, [d] date NULL); INSERT INTO w VALUES (1, '2024-01-01'), (2, '2024-01-02'), (3, '2024-01-03')").await;
    let rows = c
        .query(
            "DECLARE @from date = @P1; DECLARE @to date = @P2; SELECT [k] FROM (SELECT * FROM w WHERE d >= @from AND d < @TO) AS [_caudal_q] ORDER BY [k]",
            &[&time::macros::date!(2024 - 01 - 02), &time::macros::date!(2024 - 01 - 04)],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.get::<i32, _>(0).unwrap())
            .collect::<Vec<_>>(),
        [2, 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_to_several_databases() {
    let names: Vec<String> = (1..=6).map(|i| format!("tienda_{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let server = std::sync::Arc::new(server(&refs).await);
    let mut tasks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for worker in 0..2 {
            let server = server.clone();
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = connect(&server, &name).await;
                let table = format!("t{worker}");
                c.simple_query(format!(
                    "CREATE TABLE [{table}] (id int PRIMARY KEY, tienda nvarchar(20))"
                ))
                .await
                .unwrap()
                .into_results()
                .await
                .unwrap();
                for id in 0..50i32 {
                    c.execute(
                        format!("INSERT INTO [{table}] VALUES (@P1, @P2)"),
                        &[&id, &name.as_str()],
                    )
                    .await
                    .unwrap();
                }
                let row = c
                    .simple_query(format!("SELECT COUNT(*), MIN(tienda) FROM [{table}]"))
                    .await
                    .unwrap()
                    .into_row()
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(row.get::<i64, _>(0), Some(50));
                assert_eq!(row.get::<&str, _>(1), Some(name.as_str()));
                i
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(server.stats().logins, 12);
}
