//! Writes against the TDS test server (`tests/tds-server`): upserts and deletes, offsets and
//! replays, the snapshot swap, and errors.

mod common;

use common::{Env, scenarios};

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
