//! Writes against the TDS test server (`tests/tds-server`): upserts and deletes, offsets and
//! replays, the snapshot swap, and errors.

mod common;

use caudal_connector::{Connector, OpenContext};
use caudal_mssql::MsSqlConnector;
use common::{Env, PASSWORD, scenarios};

#[test]
fn server_upserts_and_deletes_by_key() {
    scenarios::upsert_and_delete(&Env::double("upsert"));
}

#[test]
fn server_offsets_move_with_the_rows() {
    scenarios::offsets_and_already_applied(&Env::double("offsets"));
}

#[test]
fn server_snapshot_swap_replaces_the_table() {
    scenarios::snapshot_swap(&Env::double("swap"));
}

#[test]
fn server_errors_name_user_and_host_but_not_the_password() {
    scenarios::errors_name_user_and_host(&Env::double("errors"));
}

#[test]
fn server_refused_logins_are_retryable_connection_errors() {
    let env = Env::double("refused");
    let server = env.server.as_ref().expect("test double");
    server.refuse_logins(&env.database, 2);
    let context = OpenContext {
        connection: "tienda_02".into(),
        base_dir: None,
    };
    for _ in 0..2 {
        let err = match MsSqlConnector::open(env.config(), &context) {
            Err(e) => e,
            Ok(_) => panic!("a refused login opened a connection"),
        };
        assert!(err.is_retryable(), "{err}");
        assert_eq!(err.code(), caudal_connector::ErrorCode::Connection, "{err}");
        assert!(err.to_string().contains("tienda_02"), "{err}");
        assert!(!err.to_string().contains(PASSWORD), "{err}");
    }
    // The third attempt is let in.
    let mut conn = env.open();
    assert!(conn.source().unwrap().discover().is_ok());
}
