//! tiberius against the test server: login, batches, parameters, errors, transactions.

mod common;

use common::{connect, error_number, server, try_connect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiberius_connects_creates_inserts_and_selects_with_parameters() {
    let server = server(&["tienda_01"]).await;
    let mut c = connect(&server, "tienda_01").await;
    c.simple_query("CREATE TABLE [dbo].[ventas] (id int NOT NULL PRIMARY KEY, producto nvarchar(50) NULL, importe decimal(12,2) NOT NULL)")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let n = c
        .execute(
            "INSERT INTO dbo.ventas (id, producto, importe) VALUES (@P1, @P2, @P3), (@P4, @P5, @P6)",
            &[&1i32, &"café", &rust_decimal::Decimal::new(1250, 2), &2i32, &Option::<&str>::None, &rust_decimal::Decimal::new(-5, 2)],
        )
        .await
        .unwrap();
    assert_eq!(n.total(), 2);
    let rows = c
        .query(
            "SELECT id, producto, importe FROM [ventas] WHERE id >= @P1 ORDER BY id",
            &[&1i32],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<i32, _>(0), Some(1));
    assert_eq!(rows[0].get::<&str, _>(1), Some("café"));
    assert_eq!(
        rows[0].get::<rust_decimal::Decimal, _>(2),
        Some(rust_decimal::Decimal::new(1250, 2))
    );
    assert_eq!(rows[1].get::<&str, _>(1), None);
    assert_eq!(
        rows[1].get::<rust_decimal::Decimal, _>(2),
        Some(rust_decimal::Decimal::new(-5, 2))
    );
    let s = server.stats();
    assert!(
        s.statements >= 3 && s.rows_sent >= 2 && s.logins == 1,
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_database_name_top_and_offset_fetch() {
    let server = server(&["tienda_02"]).await;
    let mut c = connect(&server, "tienda_02").await;
    let row = c
        .simple_query("SELECT @@VERSION, DB_NAME()")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert!(row.get::<&str, _>(0).unwrap().contains("SQL Server"));
    assert_eq!(row.get::<&str, _>(1), Some("tienda_02"));
    server
        .execute(
            "tienda_02",
            "CREATE TABLE n (i int PRIMARY KEY); INSERT INTO n SELECT * FROM range(100)",
        )
        .unwrap();
    let rows = c
        .query("SELECT TOP (@P1) i FROM n ORDER BY i DESC", &[&3i32])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let got: Vec<i32> = rows.iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(got, [99, 98, 97]);
    let rows = c
        .query(
            "SELECT i FROM n ORDER BY i OFFSET @P1 ROWS FETCH NEXT 4 ROWS ONLY",
            &[&10i32],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let got: Vec<i32> = rows.iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(got, [10, 11, 12, 13]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_back_with_sql_server_numbers() {
    let server = server(&["tienda_03"]).await;
    let mut c = connect(&server, "tienda_03").await;
    c.simple_query("CREATE TABLE t (id int PRIMARY KEY, code varchar(3), n int)")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(error_number(c.execute("SELEC 1", &[]).await), 102);
    assert_eq!(
        error_number(c.execute("SELECT * FROM nowhere", &[]).await),
        208
    );
    c.execute("INSERT INTO t (id, code) VALUES (1, 'abc')", &[])
        .await
        .unwrap();
    assert_eq!(
        error_number(
            c.execute("INSERT INTO t (id, code) VALUES (1, 'x')", &[])
                .await
        ),
        2627
    );
    assert_eq!(
        error_number(
            c.execute(
                "INSERT INTO t (id, code) VALUES (@P1, @P2)",
                &[&2i32, &"abcd"]
            )
            .await
        ),
        2628
    );
    assert_eq!(
        error_number(
            c.execute("INSERT INTO t (id, n) VALUES (3, 'abc')", &[])
                .await
        ),
        245
    );
    c.simple_query("CREATE TABLE o (id int PRIMARY KEY, d datetimeoffset(7))")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.execute(
        "INSERT INTO o VALUES (1, '9999-12-31 23:59:59.9999999 +14:00')",
        &[],
    )
    .await
    .unwrap();
    // In UTC this is year 10000, out of datetimeoffset's range.
    let late = "INSERT INTO o VALUES (2, '9999-12-31 23:59:59.9999999 -14:00')";
    assert_eq!(error_number(c.execute(late, &[]).await), 241);
    let unreadable = "INSERT INTO o VALUES (3, 'yesterday')";
    assert_eq!(error_number(c.execute(unreadable, &[]).await), 241);
    // The connection stays usable after errors.
    let row = c
        .simple_query("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i64, _>(0), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_roll_back() {
    let server = server(&["tienda_04"]).await;
    let mut c = connect(&server, "tienda_04").await;
    c.simple_query("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.simple_query("BEGIN TRAN")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.execute("INSERT INTO t VALUES (@P1)", &[&1i32])
        .await
        .unwrap();
    c.simple_query("ROLLBACK")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.simple_query("BEGIN TRANSACTION; INSERT INTO t VALUES (2); COMMIT TRANSACTION")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    // tiberius' transaction-manager requests.
    c.begin_transaction().await.unwrap();
    c.execute("INSERT INTO t VALUES (@P1)", &[&3i32])
        .await
        .unwrap();
    c.rollback_transaction().await.unwrap();
    // An error inside a transaction rolls all of it back (XACT_ABORT semantics).
    c.simple_query("BEGIN TRAN")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    c.execute("INSERT INTO t VALUES (@P1)", &[&4i32])
        .await
        .unwrap();
    assert_eq!(
        error_number(c.execute("INSERT INTO t VALUES (@P1)", &[&2i32]).await),
        2627
    );
    let rows = c
        .simple_query("SELECT id FROM t ORDER BY id")
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let ids: Vec<i32> = rows.iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(ids, [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_check_credentials_and_can_be_refused() {
    let server = server(&["tienda_05", "tienda_06"]).await;
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let wrong = tiberius::Client::connect(
        common::config(&server, "tienda_05", "nope"),
        tcp.compat_write(),
    )
    .await;
    assert_eq!(error_number(wrong), 18456);
    assert_eq!(error_number(try_connect(&server, "tienda_99").await), 4060);
    server.refuse_logins("tienda_05", 2);
    assert_eq!(error_number(try_connect(&server, "tienda_05").await), 4060);
    assert_eq!(error_number(try_connect(&server, "tienda_05").await), 4060);
    connect(&server, "tienda_05").await;
    server.fail_always("tienda_06");
    for _ in 0..3 {
        assert_eq!(error_number(try_connect(&server, "tienda_06").await), 4060);
    }
}
