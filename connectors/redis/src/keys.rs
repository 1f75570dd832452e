//! Key names: row keys from primary-key values, the per-table metadata keys, the offsets key,
//! and the glob patterns SCAN uses to find them.
//!
//! A row key is the template's text up to `{pk}` followed by the primary-key values, each
//! written as its text (see [`crate::types`]) and joined with `:`. Inside a value, `%` is
//! written `%25` and `:` is written `%3A`, so the `:` between values is never ambiguous (a
//! `TIME` key `12:30:00` becomes `12%3A30%3A00`). A key value equal to one of the metadata
//! names (`schema`, `digest`, `rowdigests`) has its first character written as `%XX` too, so
//! a row of a table keyed by text never lands on the table's metadata key. NULL key values
//! are refused: a key names one row.

use caudal_connector::{Batch, Error, Result};

use crate::types::encode_text;

/// The last segment of the metadata keys `{prefix}:{table}:NAME`; never the end of a row key.
pub const RESERVED: [&str; 3] = ["schema", "digest", "rowdigests"];

/// The hash of offsets: field `pipeline \x1f stream`, value the last seq applied.
pub fn offsets_key(prefix: &str) -> String {
    format!("{prefix}:_caudal_offsets")
}

/// The field of `(pipeline, stream)` in the offsets hash.
pub fn offset_field(pipeline: &str, stream: &str) -> String {
    format!("{pipeline}\x1f{stream}")
}

/// `{prefix}:{table}:schema`: the table's schema document (JSON).
pub fn schema_key(prefix: &str, table: &str) -> String {
    format!("{prefix}:{table}:schema")
}

/// `{prefix}:{table}:digest`: the table digest kept current by every write.
pub fn digest_key(prefix: &str, table: &str) -> String {
    format!("{prefix}:{table}:digest")
}

/// `{prefix}:{table}:rowdigests`: hash from encoded primary key to the row's 32-byte digest.
pub fn row_digests_key(prefix: &str, table: &str) -> String {
    format!("{prefix}:{table}:rowdigests")
}

/// Refuses table names that would make keys ambiguous: empty, or holding `:` or a control
/// character.
pub fn check_table_name(table: &str) -> Result<()> {
    if table.is_empty() {
        return Err(Error::Schema("the table name is empty".into()));
    }
    if table.contains(':') || table.chars().any(char::is_control) {
        return Err(Error::Schema(format!(
            "table name {table:?} holds `:` or a control character, which Redis keys of caudal \
             use as separators; name the table without them"
        )));
    }
    Ok(())
}

/// `text` with every glob metacharacter escaped, for SCAN's MATCH.
pub fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Appends one key value's text to `out`, escaping `%` and `:`.
fn push_escaped(out: &mut Vec<u8>, text: &[u8]) {
    let reserved = RESERVED.iter().any(|r| r.as_bytes() == text);
    for (i, &b) in text.iter().enumerate() {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b':' => out.extend_from_slice(b"%3A"),
            _ if i == 0 && reserved => {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
            _ => out.push(b),
        }
    }
}

/// The encoded primary key of every row of `batch` (the `{pk}` part of its key).
pub fn encoded_keys(batch: &Batch) -> Result<Vec<Vec<u8>>> {
    let schema = batch.schema();
    let key = schema.primary_key();
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut text = Vec::new();
    for row in 0..batch.num_rows() {
        let mut pk = Vec::with_capacity(16);
        for (j, &k) in key.iter().enumerate() {
            let column = &batch.columns()[k];
            let field = &schema.fields()[k];
            if column.is_null(row) {
                return Err(Error::Schema(format!(
                    "row {row}: primary key column `{}` is NULL; a Redis key needs every key value",
                    field.name
                )));
            }
            if j > 0 {
                pk.push(b':');
            }
            text.clear();
            encode_text(column, &field.logical_type, row, &mut text);
            push_escaped(&mut pk, &text);
        }
        out.push(pk);
    }
    Ok(out)
}

/// Whether `suffix` (a key with its table's row prefix removed) can be a row's `{pk}`: the
/// metadata names are escaped in row keys, so a bare one is a metadata key.
pub fn is_row_suffix(suffix: &[u8]) -> bool {
    !RESERVED.iter().any(|r| r.as_bytes() == suffix)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use caudal_connector::{BatchBuilder, Field, LogicalType, Schema};

    use super::*;

    fn keys_of(rows: &[(&str, i64)]) -> Vec<String> {
        let schema = Arc::new(
            Schema::new(
                vec![
                    Field::new("a", LogicalType::Text { max_bytes: None }, false),
                    Field::new("b", LogicalType::Int64, false),
                ],
                &["a", "b"],
            )
            .unwrap(),
        );
        let mut b = BatchBuilder::new(schema);
        for (a, n) in rows {
            b.push(0, *a).unwrap();
            b.push(1, *n).unwrap();
        }
        encoded_keys(&b.finish().unwrap())
            .unwrap()
            .into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect()
    }

    #[test]
    fn separators_and_metadata_names_are_escaped() {
        assert_eq!(
            keys_of(&[
                ("x", 1),
                ("a:b", -2),
                ("50%", 3),
                ("schema", 4),
                ("digest", 5),
                ("", 6)
            ]),
            vec![
                "x:1",
                "a%3Ab:-2",
                "50%25:3",
                "%73chema:4",
                "%64igest:5",
                ":6"
            ]
        );
        assert!(!is_row_suffix(b"schema"));
        assert!(is_row_suffix(b"%73chema"));
    }

    #[test]
    fn null_keys_are_refused_by_column() {
        let schema = Arc::new(
            Schema::new(vec![Field::new("id", LogicalType::Int32, true)], &["id"]).unwrap(),
        );
        let mut b = BatchBuilder::new(schema);
        b.push_null(0).unwrap();
        let err = encoded_keys(&b.finish().unwrap()).unwrap_err();
        assert!(err.to_string().contains("`id` is NULL"), "{err}");
    }

    #[test]
    fn table_names_and_globs() {
        assert!(check_table_name("ventas").is_ok());
        assert!(check_table_name("dbo.ventas").is_ok());
        assert!(check_table_name("a:b").is_err());
        assert!(check_table_name("").is_err());
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
