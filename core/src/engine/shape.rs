//! The shape of what a stream writes: the destination schema derived from the source's, and
//! the batches that carry it.
//!
//! The journal stores batches as the destinations receive them, so that retries and replays
//! need nothing but the journal: a consolidate stream's batches already hold the `_source`
//! column, and every batch's schema declares the stream's primary key (a query's result has
//! none of its own).
//!
//! Deletes of a merge stream are batches of the key columns (the key declared, as sinks need
//! it to delete by) plus a boolean column [`DELETE_MARKER`]: that column is how a `BatchRead`
//! of deleted keys is told from one of upserted rows. Sinks read only the key columns of a
//! delete, so the marker never reaches a table.

use std::collections::HashSet;
use std::sync::Arc;

use caudal_config::{Mode, Stream};
use caudal_connector::{Batch, BatchBuilder, Column, Field, LogicalType, Schema, Value};

/// Width of the `_source` column: connection names are short identifiers.
const SOURCE_COLUMN_LENGTH: u32 = 128;

/// The column that marks a batch of deleted keys.
pub const DELETE_MARKER: &str = "_caudal_deleted";

/// How batches of one task are turned into what the destinations receive.
#[derive(Debug, Clone)]
pub struct Shape {
    /// The schema every destination table has.
    pub schema: Arc<Schema>,
    /// The source's schema, as it reads.
    source_schema: Arc<Schema>,
    /// `(column, connection)` of a consolidate stream.
    source_column: Option<(String, String)>,
    /// Index of the cursor column in the source's schema.
    cursor: Option<usize>,
}

impl Shape {
    /// The shape of `stream` reading `source`, whose reader reports `source_schema`. Errors
    /// name the missing column.
    pub fn new(stream: &Stream, source: &str, source_schema: Arc<Schema>) -> Result<Shape, String> {
        let cursor = match stream.cursor() {
            Some(c) => Some(source_schema.index_of(c).ok_or_else(|| {
                format!(
                    "cursor column `{c}` is not among the columns `{source}` returns ({})",
                    names(&source_schema)
                )
            })?),
            None => None,
        };
        if source_schema.index_of(DELETE_MARKER).is_some() {
            return Err(format!(
                "`{source}` returns a column `{DELETE_MARKER}`, a name caudal keeps for itself"
            ));
        }
        let mut fields: Vec<Field> = Vec::with_capacity(source_schema.len() + 1);
        let source_column = match (stream.mode(), stream.source_column()) {
            (Mode::Consolidate, Some(column)) => {
                if source_schema.index_of(column).is_some() {
                    return Err(format!(
                        "`{source}` already returns a column `{column}`; pick another \
                         `source_column` for the stream"
                    ));
                }
                fields.push(Field::new(
                    column,
                    LogicalType::Varchar {
                        max_length: Some(SOURCE_COLUMN_LENGTH),
                    },
                    false,
                ));
                Some((column.to_owned(), source.to_owned()))
            }
            _ => None,
        };
        fields.extend(source_schema.fields().iter().cloned());
        let mut key: Vec<String> = if stream.primary_key().is_empty() {
            source_schema
                .primary_key()
                .iter()
                .map(|&i| source_schema.fields()[i].name.clone())
                .collect()
        } else {
            stream.primary_key().to_vec()
        };
        if let Some((column, _)) = &source_column
            && !key.is_empty()
        {
            // Two sources may hold the same key: the source is part of the row's identity.
            key.insert(0, column.clone());
        }
        for k in &key {
            if !fields.iter().any(|f| &f.name == k) {
                return Err(format!(
                    "primary key column `{k}` is not among the columns `{source}` returns ({})",
                    names(&source_schema)
                ));
            }
        }
        let key: Vec<&str> = key.iter().map(String::as_str).collect();
        let schema = Schema::new(fields, &key).map_err(|e| e.to_string())?;
        Ok(Shape {
            schema: Arc::new(schema),
            source_schema,
            source_column,
            cursor,
        })
    }

    /// Whether batches need rebuilding (a column added or a key declared).
    fn reshapes(&self) -> bool {
        *self.schema != *self.source_schema
    }

    /// Decodes a chunk the source encoded and brings it into the destination shape. Returns
    /// the batch and its encoding (the source's bytes when nothing changed).
    pub fn shape(&self, bytes: Vec<u8>) -> Result<(Batch, Vec<u8>), String> {
        let batch = Batch::decode(&bytes).map_err(|e| e.to_string())?;
        if **batch.schema() != *self.source_schema {
            return Err("a chunk's schema differs from the schema the read started with".into());
        }
        if !self.reshapes() {
            return Ok((batch, bytes));
        }
        let mut columns: Vec<Column> = Vec::with_capacity(self.schema.len());
        if let Some((_, source)) = &self.source_column {
            columns.push(constant_text_column(source, batch.num_rows())?);
        }
        columns.extend(batch.columns().iter().cloned());
        let shaped =
            Batch::try_new(Arc::clone(&self.schema), columns).map_err(|e| e.to_string())?;
        let encoded = shaped.encode().map_err(|e| e.to_string())?;
        Ok((shaped, encoded))
    }

    /// The cursor values of a batch's first row (read in cursor order: its lowest).
    pub fn first_cursor(&self, batch: &Batch) -> Option<Value> {
        let offset = usize::from(self.source_column.is_some());
        let col = self.cursor? + offset;
        (batch.num_rows() > 0)
            .then(|| batch.value(0, col))
            .flatten()
    }

    /// The kind of value the cursor column holds.
    pub fn cursor_type(&self) -> Option<&LogicalType> {
        self.cursor
            .map(|i| &self.source_schema.fields()[i].logical_type)
    }
}

/// A column of `rows` copies of `text`.
fn constant_text_column(text: &str, rows: usize) -> Result<Column, String> {
    let schema = Schema::new(
        vec![Field::new(
            "c",
            LogicalType::Varchar {
                max_length: Some(SOURCE_COLUMN_LENGTH),
            },
            false,
        )],
        &[],
    )
    .map_err(|e| e.to_string())?;
    let mut b = BatchBuilder::with_capacity(Arc::new(schema), rows);
    for _ in 0..rows {
        b.push(0, text).map_err(|e| e.to_string())?;
    }
    let batch = b.finish().map_err(|e| e.to_string())?;
    batch
        .columns()
        .first()
        .cloned()
        .ok_or_else(|| "building the source column produced no column".to_owned())
}

fn names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The primary-key values of every row of a batch, encoded as bytes for set membership.
pub fn keys_of(batch: &Batch) -> Vec<Vec<u8>> {
    let key = batch.schema().primary_key();
    (0..batch.num_rows())
        .map(|row| {
            let values: Vec<Value> = key
                .iter()
                .map(|&c| batch.value(row, c).unwrap_or(Value::Null))
                .collect();
            encode_key(&values)
        })
        .collect()
}

fn encode_key(values: &[Value]) -> Vec<u8> {
    // Values of one column always have one variant, so equal encodings mean equal keys.
    bincode::serde::encode_to_vec(values, bincode::config::standard()).unwrap_or_default()
}

fn decode_key(bytes: &[u8]) -> Option<Vec<Value>> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .ok()
        .map(|(v, _)| v)
}

/// Whether a batch carries deleted keys (see the module documentation).
pub fn is_delete_batch(batch: &Batch) -> bool {
    is_delete_schema(batch.schema())
}

/// Whether a schema is that of deleted keys.
pub fn is_delete_schema(schema: &Schema) -> bool {
    schema.index_of(DELETE_MARKER).is_some()
}

/// The schema of delete batches for a keyed destination schema: the key columns, the key,
/// and the marker.
pub fn delete_schema(schema: &Schema) -> Result<Schema, String> {
    let mut fields: Vec<Field> = schema
        .primary_key()
        .iter()
        .map(|&i| schema.fields()[i].clone())
        .collect();
    let key: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
    fields.push(Field::new(DELETE_MARKER, LogicalType::Bool, false));
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    Schema::new(fields, &key).map_err(|e| e.to_string())
}

/// Delete batches (at most `chunk_rows` keys each) for the keys in `before` that are not in
/// `now`.
pub fn delete_batches(
    schema: &Schema,
    before: &HashSet<Vec<u8>>,
    now: &HashSet<Vec<u8>>,
    chunk_rows: usize,
) -> Result<Vec<Batch>, String> {
    let gone: Vec<Vec<Value>> = before
        .difference(now)
        .filter_map(|k| decode_key(k))
        .collect();
    let schema = Arc::new(delete_schema(schema)?);
    let mut out = Vec::new();
    let marker = schema.len() - 1;
    for chunk in gone.chunks(chunk_rows.max(1)) {
        let mut b = BatchBuilder::with_capacity(Arc::clone(&schema), chunk.len());
        for row in chunk {
            for (c, v) in row.iter().enumerate() {
                b.push_value(c, v).map_err(|e| e.to_string())?;
            }
            b.push(marker, true).map_err(|e| e.to_string())?;
        }
        out.push(b.finish().map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use caudal_config::Pipeline;

    use super::*;

    fn source_schema() -> Arc<Schema> {
        Arc::new(
            Schema::new(
                vec![
                    Field::new("id", LogicalType::Int64, false),
                    Field::new("fecha", LogicalType::Date, false),
                    Field::new(
                        "name",
                        LogicalType::Varchar {
                            max_length: Some(20),
                        },
                        true,
                    ),
                ],
                &[],
            )
            .unwrap(),
        )
    }

    fn batch(schema: &Arc<Schema>, ids: &[i64]) -> Batch {
        let mut b = BatchBuilder::new(Arc::clone(schema));
        for &id in ids {
            b.push(0, id).unwrap();
            b.push(1, 20_000 + id as i32).unwrap();
            b.push(2, "x").unwrap();
        }
        b.finish().unwrap()
    }

    fn stream(extra: &str) -> Pipeline {
        let text = format!(
            r#"
[pipeline]
name = "p"
[connections.a]
connector = "duckdb"
[connections.b]
connector = "duckdb"
[connections.w]
connector = "duckdb"
[[streams]]
from = ["a", "b"]
table = "t"
to = "w"
{extra}
"#
        );
        Pipeline::from_str(&text, Path::new("/tmp/p.toml")).unwrap()
    }

    #[test]
    fn consolidate_adds_the_source_column_and_keys_by_it() {
        let p = stream("mode = \"consolidate\"\nprimary_key = [\"id\"]\ncursor = \"fecha\"");
        let shape = Shape::new(&p.streams()[0], "a", source_schema()).unwrap();
        let names: Vec<&str> = shape
            .schema
            .fields()
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["_source", "id", "fecha", "name"]);
        assert_eq!(shape.schema.primary_key(), [0, 1]);
        let (b, bytes) = shape
            .shape(batch(&source_schema(), &[3, 4]).encode().unwrap())
            .unwrap();
        assert_eq!(Batch::decode(&bytes).unwrap(), b);
        assert_eq!(b.value(1, 0), Some(Value::Text("a".into())));
        assert_eq!(b.value(1, 1), Some(Value::Int(4)));
        assert_eq!(shape.first_cursor(&b), Some(Value::Date(20_003)));
        assert_eq!(keys_of(&b).len(), 2);
    }

    #[test]
    fn merge_declares_the_streams_key_and_builds_delete_batches() {
        let p = stream("mode = \"merge\"\nprimary_key = [\"id\"]");
        let shape = Shape::new(&p.streams()[0], "a", source_schema()).unwrap();
        let (b, _) = shape
            .shape(batch(&source_schema(), &[1, 2, 3]).encode().unwrap())
            .unwrap();
        assert!(!is_delete_batch(&b));
        let before: HashSet<Vec<u8>> = keys_of(&b).into_iter().collect();
        let (b2, _) = shape
            .shape(batch(&source_schema(), &[2]).encode().unwrap())
            .unwrap();
        let now: HashSet<Vec<u8>> = keys_of(&b2).into_iter().collect();
        let deletes = delete_batches(&shape.schema, &before, &now, 1).unwrap();
        assert_eq!(deletes.len(), 2);
        assert!(deletes.iter().all(is_delete_batch));
        assert!(deletes.iter().all(|d| d.schema().primary_key() == [0]));
        let mut gone: Vec<Option<Value>> = deletes.iter().map(|d| d.value(0, 0)).collect();
        gone.sort_by_key(|v| format!("{v:?}"));
        assert_eq!(gone, [Some(Value::Int(1)), Some(Value::Int(3))]);
    }

    #[test]
    fn missing_columns_are_named() {
        let p = stream("mode = \"merge\"\nprimary_key = [\"code\"]");
        let err = Shape::new(&p.streams()[0], "a", source_schema()).unwrap_err();
        assert!(
            err.contains("`code`") && err.contains("id, fecha, name"),
            "{err}"
        );
        let p = stream("mode = \"consolidate\"\ncursor = \"when\"");
        let err = Shape::new(&p.streams()[0], "b", source_schema()).unwrap_err();
        assert!(err.contains("cursor column `when`"), "{err}");
    }

    #[test]
    fn unchanged_shapes_keep_the_sources_bytes() {
        let p = stream("mode = \"consolidate\"");
        let shape = Shape::new(&p.streams()[0], "a", source_schema()).unwrap();
        // Consolidate always adds its column.
        assert!(shape.reshapes());
        let q = Pipeline::from_str(
            "[pipeline]\nname = \"p\"\n[connections.a]\nconnector = \"duckdb\"\n\
             [connections.w]\nconnector = \"duckdb\"\n[[streams]]\nfrom = \"a\"\ntable = \"t\"\nto = \"w\"\n",
            Path::new("/tmp/q.toml"),
        )
        .unwrap();
        let shape = Shape::new(&q.streams()[0], "a", source_schema()).unwrap();
        let bytes = batch(&source_schema(), &[1]).encode().unwrap();
        let (_, out) = shape.shape(bytes.clone()).unwrap();
        assert_eq!(out, bytes);
    }
}
