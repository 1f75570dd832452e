//! Reads against the TDS test server (`tests/tds-server`): discovery, keyset and offset
//! chunks with resume, an incremental `datetime` cursor, queries with bounds, every type.

mod common;

use common::{Env, scenarios};

#[test]
fn server_discover_lists_tables_types_and_keys() {
    scenarios::discover(&Env::double("discover"));
}

#[test]
fn server_keyset_chunks_resume_after_their_cursor() {
    scenarios::keyset_chunks_and_resume(&Env::double("keyset"));
}

#[test]
fn server_tables_without_key_read_in_offset_pages() {
    scenarios::offset_pages_without_key(&Env::double("offset"));
}

#[test]
fn server_datetime_cursor_never_reads_a_row_twice() {
    scenarios::incremental_datetime_cursor(&Env::double("datetime"));
}

#[test]
fn server_query_reads_bind_from_and_to() {
    scenarios::query_with_bounds(&Env::double("query"));
}

#[test]
fn server_every_type_round_trips_with_equal_digests() {
    scenarios::every_type_round_trip(&Env::double("types"));
}

#[test]
fn server_every_logical_type_of_other_sources_round_trips() {
    scenarios::sample_of_every_logical_type(&Env::double("sample"));
}
