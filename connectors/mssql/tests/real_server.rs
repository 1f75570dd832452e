//! The same scenarios against a real SQL Server, when `CAUDAL_TEST_MSSQL_URL` is set
//! (`mssql://user:password@host:port/database`; the login needs to create and drop tables in
//! `dbo`; TLS on, the server certificate trusted).
//!
//! When the variable is unset, each test prints that it did not run and returns: no SQL
//! Server can be installed on the machines these tests usually run on. Their passing then
//! means nothing about a real server; the scenarios themselves run against the TDS test server
//! in `server_reads.rs` and `server_writes.rs`.

mod common;

use common::{Env, scenarios};

fn real(tag: &str) -> Option<Env> {
    let env = Env::real(tag);
    if env.is_none() {
        eprintln!("CAUDAL_TEST_MSSQL_URL unset: real-server test not run");
    }
    env
}

#[test]
fn real_server_discover() {
    let Some(env) = real("discover") else { return };
    scenarios::discover(&env);
}

#[test]
fn real_server_keyset_chunks_and_resume() {
    let Some(env) = real("keyset") else { return };
    scenarios::keyset_chunks_and_resume(&env);
}

#[test]
fn real_server_offset_pages_without_key() {
    let Some(env) = real("offset") else { return };
    scenarios::offset_pages_without_key(&env);
}

#[test]
fn real_server_datetime_cursor() {
    let Some(env) = real("datetime") else { return };
    scenarios::incremental_datetime_cursor(&env);
}

#[test]
fn real_server_query_with_bounds() {
    let Some(env) = real("query") else { return };
    scenarios::query_with_bounds(&env);
}

#[test]
fn real_server_every_type_round_trip() {
    let Some(env) = real("types") else { return };
    scenarios::every_type_round_trip(&env);
}

#[test]
fn real_server_sample_of_every_logical_type() {
    let Some(env) = real("sample") else { return };
    scenarios::sample_of_every_logical_type(&env);
}

#[test]
fn real_server_upsert_and_delete() {
    let Some(env) = real("upsert") else { return };
    scenarios::upsert_and_delete(&env);
}

#[test]
fn real_server_offsets_and_already_applied() {
    let Some(env) = real("offsets") else { return };
    scenarios::offsets_and_already_applied(&env);
}

#[test]
fn real_server_snapshot_swap() {
    let Some(env) = real("swap") else { return };
    scenarios::snapshot_swap(&env);
}

#[test]
fn real_server_errors_name_user_and_host() {
    let Some(env) = real("errors") else { return };
    scenarios::errors_name_user_and_host(&env);
}
