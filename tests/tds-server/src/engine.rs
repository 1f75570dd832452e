//! Running T-SQL on DuckDB: one DuckDB database per hosted database, one DuckDB connection per
//! client session (so transactions and temp tables are per session, as in SQL Server).
//!
//! A statement runs as soon as it is split off its batch. Statement kinds DuckDB cannot take
//! after translation (CREATE TABLE with SQL Server types, DROP, ALTER, sp_rename, transactions,
//! SET options, INSERT BULK, SELECT INTO) are carried out here, keeping the side catalog in step.
//!
//! Errors follow `SET XACT_ABORT ON`: a failed statement ends its batch, and inside a
//! transaction rolls the transaction back (DuckDB cannot continue an aborted transaction).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use duckdb::arrow::datatypes::DataType;

use crate::Counters;
use crate::catalog::{ColumnDef, TableDef, parse_create_table, parse_type, setup_sql};
use crate::error::{Error, Result};
use crate::sql::{
    self, Context, SelectItem, Stmt, Tok, ident_sql, parse_batch, select_items, strip_schema,
    tokenize,
};
use crate::tokens::ResultColumn;
use crate::types::{Reader, SqlType, Value, WireType, quote};

/// One hosted database.
pub(crate) struct Database {
    pub name: String,
    root: Mutex<duckdb::Connection>,
    /// Bumped by every catalog change so sessions drop cached table definitions.
    pub catalog_version: AtomicU64,
    /// Logins still to refuse with error 4060.
    pub refuse: AtomicU32,
    pub fail_always: AtomicBool,
}

impl Database {
    pub fn open(name: &str, path: Option<&std::path::Path>) -> Result<Database> {
        let conn = match path {
            Some(p) => duckdb::Connection::open(p)?,
            None => duckdb::Connection::open_in_memory()?,
        };
        // Never reach for the network: extensions are not installed on demand.
        conn.execute_batch(
            "SET autoinstall_known_extensions = false; SET autoload_known_extensions = false;",
        )?;
        conn.execute_batch(&setup_sql(name))?;
        Ok(Database {
            name: name.to_string(),
            root: Mutex::new(conn),
            catalog_version: AtomicU64::new(0),
            refuse: AtomicU32::new(0),
            fail_always: AtomicBool::new(false),
        })
    }

    pub fn connect(&self) -> Result<duckdb::Connection> {
        let root = self
            .root
            .lock()
            .map_err(|_| Error::Protocol("database lock poisoned".into()))?;
        Ok(root.try_clone()?)
    }
}

/// What one statement produced.
pub(crate) enum Outcome {
    Rows {
        columns: Vec<ResultColumn>,
        rows: BytesMut,
        count: u64,
    },
    Count(u64),
    Done,
    /// Nothing on the wire (DECLARE).
    Silent,
    /// ENVCHANGE 8 (begin), 9 (commit) or 10 (rollback) with the descriptor.
    Tran(u8, u64),
}

/// What a batch produced: outcomes up to the first error, and the error.
pub(crate) struct BatchResult {
    pub outcomes: Vec<Outcome>,
    pub error: Option<(u32, String)>,
}

/// The target of an `INSERT BULK` awaiting its rows.
pub(crate) struct BulkTarget {
    table: TableDef,
}

/// One client session on one database.
pub(crate) struct Session {
    pub db: Arc<Database>,
    conn: duckdb::Connection,
    rowcount: i64,
    trancount: u32,
    descriptor: u64,
    temp: HashMap<String, TableDef>,
    cache: HashMap<String, Option<TableDef>>,
    cache_version: u64,
    bulk: Option<BulkTarget>,
    params: HashMap<String, String>,
    raw_params: HashMap<String, Value>,
    /// While describing a query, unknown variables read as NULL.
    lenient: bool,
    counters: Arc<Counters>,
}

impl Context for Session {
    fn param(&self, name: &str) -> Option<String> {
        match self.params.get(&name.to_ascii_uppercase()) {
            Some(p) => Some(p.clone()),
            None => self.lenient.then(|| "NULL".to_string()),
        }
    }
    fn rowcount(&self) -> i64 {
        self.rowcount
    }
    fn trancount(&self) -> i64 {
        i64::from(self.trancount)
    }
    fn database(&self) -> &str {
        &self.db.name
    }
    fn table_exists(&self, name: &str) -> bool {
        if name.starts_with('#') {
            return self.temp.contains_key(&name.to_ascii_lowercase());
        }
        self.conn
            .query_row(
                "SELECT count(*) FROM tds_catalog.columns WHERE lower(table_name) = lower(?)",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|n| n > 0)
    }
}

fn syntax_near(t: Option<&Tok>) -> Error {
    Error::sql(
        102,
        format!(
            "Incorrect syntax near '{}'.",
            t.map(Tok::text).unwrap_or_default()
        ),
    )
}

impl Session {
    pub fn new(db: Arc<Database>, counters: Arc<Counters>) -> Result<Session> {
        let conn = db.connect()?;
        Ok(Session {
            db,
            conn,
            rowcount: 0,
            trancount: 0,
            descriptor: 0,
            temp: HashMap::new(),
            cache: HashMap::new(),
            cache_version: 0,
            bulk: None,
            params: HashMap::new(),
            raw_params: HashMap::new(),
            lenient: false,
            counters,
        })
    }

    pub fn in_transaction(&self) -> bool {
        self.trancount > 0
    }

    /// Runs a batch; `params` maps `@P1`-style names to values.
    pub fn run_batch(&mut self, sql: &str, params: HashMap<String, Value>) -> BatchResult {
        self.params = params
            .iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v.to_literal()))
            .collect();
        self.raw_params = params
            .into_iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v))
            .collect();
        let mut outcomes = Vec::new();
        let result = tokenize(sql)
            .and_then(|t| parse_batch(&t))
            .and_then(|stmts| {
                stmts
                    .iter()
                    .try_for_each(|s| self.run_stmt(s, &mut outcomes))
            });
        let error = result.err().map(|e| {
            if self.trancount > 0 {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.after_rollback();
                outcomes.push(Outcome::Tran(10, self.descriptor));
            }
            match e {
                Error::Sql { number, message } => (number, message),
                other => (50000, other.to_string()),
            }
        });
        BatchResult { outcomes, error }
    }

    fn run_stmt(&mut self, s: &Stmt, out: &mut Vec<Outcome>) -> Result<()> {
        match s {
            Stmt::Simple(toks) => {
                self.counters.statements.fetch_add(1, Ordering::Relaxed);
                let o = self.simple(toks)?;
                out.push(o);
            }
            Stmt::If {
                cond,
                then,
                otherwise,
            } => {
                let cond = self.translate(cond)?;
                let sql = format!("SELECT CASE WHEN {cond} THEN 1 ELSE 0 END");
                let yes: i32 = self
                    .timed(|c| c.query_row(&sql, [], |r| r.get(0)))
                    .map_err(|e| map_error(&e, None))?;
                if yes == 1 {
                    self.run_stmt(then, out)?;
                } else if let Some(o) = otherwise {
                    self.run_stmt(o, out)?;
                }
            }
            Stmt::Block(stmts) => {
                for s in stmts {
                    self.run_stmt(s, out)?;
                }
            }
        }
        Ok(())
    }

    fn timed<T>(
        &self,
        f: impl FnOnce(&duckdb::Connection) -> duckdb::Result<T>,
    ) -> duckdb::Result<T> {
        let start = Instant::now();
        let r = f(&self.conn);
        self.counters
            .engine_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }

    fn exec(&self, sql: &str, target: Option<&str>) -> Result<usize> {
        tracing::trace!(sql, "duckdb");
        self.timed(|c| c.execute(sql, []))
            .map_err(|e| map_error(&e, target))
    }

    fn translate(&self, toks: &[Tok]) -> Result<String> {
        sql::translate(toks, self)
    }

    fn simple(&mut self, toks: &[Tok]) -> Result<Outcome> {
        let toks = strip_schema(toks);
        let kw = |i: usize, k: &str| toks.get(i).is_some_and(|t| t.is_kw(k));
        let head = toks[0].text().to_ascii_uppercase();
        match head.as_str() {
            "BEGIN" => self.begin(),
            "COMMIT" => self.commit(),
            "ROLLBACK" => self.rollback(),
            "SAVE" | "PRINT" => Ok(Outcome::Done),
            "USE" => match toks.get(1).and_then(Tok::ident) {
                Some(d) if d.eq_ignore_ascii_case(&self.db.name) => Ok(Outcome::Done),
                _ => Err(Error::sql(
                    911,
                    format!(
                        "Database '{}' does not exist. Make sure that the name is entered correctly.",
                        toks.get(1).map(Tok::text).unwrap_or_default()
                    ),
                )),
            },
            "SET" => {
                if toks.get(1).is_some_and(|t| t.text().starts_with('@')) {
                    return Err(Error::sql(
                        137,
                        format!("Must declare the scalar variable \"{}\".", toks[1].text()),
                    ));
                }
                Ok(Outcome::Done)
            }
            "DECLARE" => self.declare(&toks),
            _ if toks
                .iter()
                .any(|t| t.is_kw("dm_exec_describe_first_result_set")) =>
            {
                self.describe_first_result_set(&toks)
            }
            "CREATE" if kw(1, "TABLE") => self.create_table(&toks),
            "CREATE" => {
                let kept: Vec<Tok> = toks
                    .iter()
                    .filter(|t| !t.is_kw("CLUSTERED") && !t.is_kw("NONCLUSTERED"))
                    .cloned()
                    .collect();
                if kw(1, "SCHEMA") {
                    return Ok(Outcome::Done);
                }
                let sql = self.translate(&kept)?;
                self.exec(&sql, None)?;
                Ok(Outcome::Done)
            }
            "DROP" if kw(1, "TABLE") => self.drop_tables(&toks),
            "ALTER" if kw(1, "TABLE") => self.alter_table(&toks),
            "TRUNCATE" => {
                let name = toks
                    .get(2)
                    .and_then(Tok::ident)
                    .ok_or_else(|| syntax_near(toks.get(2)))?;
                self.exec(&format!("DELETE FROM {}", ident_sql(name)), Some(name))?;
                Ok(Outcome::Done)
            }
            "EXEC" | "EXECUTE" => self.exec_proc(&toks),
            "INSERT" if kw(1, "BULK") => self.insert_bulk(&toks),
            "SELECT" if top_level(&toks).any(|t| t.is_kw("INTO")) => self.select_into(&toks),
            "SELECT" => self.query(&toks),
            "WITH"
                if !top_level(&toks).any(|t| {
                    ["INSERT", "UPDATE", "DELETE", "MERGE"]
                        .iter()
                        .any(|k| t.is_kw(k))
                }) =>
            {
                self.query(&toks)
            }
            "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "WITH" => {
                let target = target_table(&toks);
                self.check_target(target.as_deref())?;
                let sql = self.translate(&toks)?;
                let n = self.exec(&sql, target.as_deref())?;
                self.rowcount = n as i64;
                Ok(Outcome::Count(n as u64))
            }
            _ => {
                let sql = self.translate(&toks)?;
                self.exec(&sql, None)?;
                Ok(Outcome::Done)
            }
        }
    }

    /// An unknown target table is error 208, named as the client wrote it.
    fn check_target(&mut self, target: Option<&str>) -> Result<()> {
        if let Some(t) = target
            && self.table(t).is_none()
        {
            return Err(Error::sql(208, format!("Invalid object name '{t}'.")));
        }
        Ok(())
    }

    /// `DECLARE @a type [= expr], ...`: variables live for the rest of the batch.
    fn declare(&mut self, toks: &[Tok]) -> Result<Outcome> {
        let mut depth = 0;
        let mut items: Vec<Vec<Tok>> = vec![Vec::new()];
        for t in &toks[1..] {
            if t.is_sym("(") {
                depth += 1;
            } else if t.is_sym(")") {
                depth -= 1;
            }
            if depth == 0 && t.is_sym(",") {
                items.push(Vec::new());
            } else if let Some(last) = items.last_mut() {
                last.push(t.clone());
            }
        }
        for item in items {
            let name = match item.first() {
                Some(Tok::Word(w)) if w.starts_with('@') => w.to_ascii_uppercase(),
                other => return Err(syntax_near(other)),
            };
            let mut i = 1;
            if item.get(i).is_some_and(|t| t.is_kw("AS")) {
                i += 1;
            }
            let ty = parse_type(&item, &mut i)?;
            let value = if item.get(i).is_some_and(|t| t.is_sym("=")) {
                self.translate(&item[i + 1..])?
            } else {
                "NULL".to_string()
            };
            self.params
                .insert(name, format!("CAST(({value}) AS {})", ty.duckdb_type()));
        }
        Ok(Outcome::Silent)
    }

    /// `sys.dm_exec_describe_first_result_set(@tsql, ...)`: the result columns of a query with
    /// their declared types, computed by running it with LIMIT 0 (unknown variables as NULL).
    fn describe_first_result_set(&mut self, toks: &[Tok]) -> Result<Outcome> {
        let k = toks
            .iter()
            .position(|t| t.is_kw("dm_exec_describe_first_result_set"))
            .unwrap_or(0);
        let close = sql::closing(toks, k + 1).ok_or_else(|| syntax_near(toks.get(k)))?;
        let text = match toks.get(k + 2) {
            Some(Tok::Str(s)) => s.clone(),
            Some(Tok::Word(w)) => match self.raw_params.get(&w.to_ascii_uppercase()) {
                Some(Value::Text(s)) => s.clone(),
                _ => {
                    return Err(Error::sql(
                        137,
                        format!("Must declare the scalar variable \"{w}\"."),
                    ));
                }
            },
            other => return Err(syntax_near(other)),
        };
        let inner = tokenize(&text)?;
        let stmts = parse_batch(&inner)?;
        let Some(Stmt::Simple(first)) = stmts.first() else {
            return Err(Error::sql(
                11501,
                "The batch could not be analyzed: it has no first statement.",
            ));
        };
        let first = strip_schema(first);
        self.lenient = true;
        let translated = self.translate(&first);
        self.lenient = false;
        let tables = self.referenced(&first);
        let columns = self.describe(&translated?, &tables, select_items(&first).as_deref())?;
        let rows: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "SELECT {} AS name, {} AS system_type_name, {} AS is_nullable, {} AS column_ordinal",
                    quote(&c.name),
                    quote(&c.ty.declaration()),
                    c.nullable,
                    i + 1
                )
            })
            .collect();
        let body = if rows.is_empty() {
            "SELECT NULL::VARCHAR AS name, NULL::VARCHAR AS system_type_name, NULL::BOOLEAN AS is_nullable, NULL::INTEGER AS column_ordinal LIMIT 0".to_string()
        } else {
            rows.join(" UNION ALL ")
        };
        self.exec(
            &format!("CREATE OR REPLACE TEMP VIEW tds_describe AS {body}"),
            None,
        )?;
        let start = if k >= 2 && toks[k - 1].is_sym(".") {
            k - 2
        } else {
            k
        };
        let mut outer = toks[..start].to_vec();
        outer.push(Tok::Word("tds_describe".into()));
        outer.extend_from_slice(&toks[close + 1..]);
        self.query(&outer)
    }

    fn begin(&mut self) -> Result<Outcome> {
        self.trancount += 1;
        if self.trancount > 1 {
            return Ok(Outcome::Done);
        }
        self.timed(|c| c.execute_batch("BEGIN TRANSACTION"))
            .map_err(|e| map_error(&e, None))?;
        self.descriptor += 1;
        Ok(Outcome::Tran(8, self.descriptor))
    }

    fn commit(&mut self) -> Result<Outcome> {
        match self.trancount {
            0 => Err(Error::sql(
                3902,
                "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.",
            )),
            1 => {
                self.trancount = 0;
                if let Err(e) = self.timed(|c| c.execute_batch("COMMIT")) {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    self.after_rollback();
                    return Err(map_error(&e, None));
                }
                Ok(Outcome::Tran(9, self.descriptor))
            }
            _ => {
                self.trancount -= 1;
                Ok(Outcome::Done)
            }
        }
    }

    fn rollback(&mut self) -> Result<Outcome> {
        if self.trancount == 0 {
            return Err(Error::sql(
                3903,
                "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.",
            ));
        }
        self.timed(|c| c.execute_batch("ROLLBACK"))
            .map_err(|e| map_error(&e, None))?;
        self.after_rollback();
        Ok(Outcome::Tran(10, self.descriptor))
    }

    /// Transaction-manager requests (tiberius' `begin_transaction` and friends).
    pub fn transaction_request(&mut self, kind: u16) -> Result<Outcome> {
        match kind {
            5 => self.begin(),
            7 => {
                self.trancount = self.trancount.min(1);
                self.commit()
            }
            8 => self.rollback(),
            9 => Ok(Outcome::Done),
            other => Err(Error::Protocol(format!(
                "unsupported transaction manager request {other}"
            ))),
        }
    }

    fn after_rollback(&mut self) {
        self.trancount = 0;
        self.db.catalog_version.fetch_add(1, Ordering::Relaxed);
        let names: Vec<String> = self.temp.keys().cloned().collect();
        for n in names {
            let exists = self
                .conn
                .query_row(
                    "SELECT count(*) FROM duckdb_tables() WHERE temporary AND lower(table_name) = ?",
                    [&n],
                    |r| r.get::<_, i64>(0),
                )
                .is_ok_and(|c| c > 0);
            if !exists {
                self.temp.remove(&n);
            }
        }
    }

    /// Runs statements as one unit: inside the session's transaction, or in their own.
    fn atomically(&mut self, stmts: &[String], target: Option<&str>) -> Result<usize> {
        let own = self.trancount == 0;
        if own {
            self.timed(|c| c.execute_batch("BEGIN TRANSACTION"))
                .map_err(|e| map_error(&e, None))?;
        }
        let mut total = 0;
        for s in stmts {
            match self.exec(s, target) {
                Ok(n) => total += n,
                Err(e) => {
                    if own {
                        let _ = self.conn.execute_batch("ROLLBACK");
                    }
                    return Err(e);
                }
            }
        }
        if own {
            self.timed(|c| c.execute_batch("COMMIT"))
                .map_err(|e| map_error(&e, target))?;
        }
        Ok(total)
    }

    /// The declared definition of a table (temp tables first), cached per catalog version.
    fn table(&mut self, name: &str) -> Option<TableDef> {
        let key = name.to_ascii_lowercase();
        if key.starts_with('#') {
            return self.temp.get(&key).cloned();
        }
        let version = self.db.catalog_version.load(Ordering::Relaxed);
        if version != self.cache_version {
            self.cache.clear();
            self.cache_version = version;
        }
        if let Some(t) = self.cache.get(&key) {
            return t.clone();
        }
        let def = self.load_table(name).ok().flatten();
        self.cache.insert(key, def.clone());
        def
    }

    fn load_table(&self, name: &str) -> Result<Option<TableDef>> {
        let mut stmt = self.conn.prepare(
            "SELECT table_name, column_name, declaration, nullable, is_identity, default_sql FROM tds_catalog.columns
             WHERE lower(table_name) = lower(?) ORDER BY ordinal",
        )?;
        let mut rows = stmt.query([name])?;
        let mut def: Option<TableDef> = None;
        while let Some(r) = rows.next()? {
            let table: String = r.get(0)?;
            let col: String = r.get(1)?;
            let decl: String = r.get(2)?;
            let toks = tokenize(&decl)?;
            let ty = parse_type(&toks, &mut 0)?;
            let d = def.get_or_insert_with(|| TableDef {
                name: table,
                columns: Vec::new(),
                primary_key: Vec::new(),
                pk_name: None,
                unique: Vec::new(),
            });
            d.columns.push(ColumnDef {
                name: col,
                ty,
                nullable: r.get(3)?,
                identity: r.get::<_, bool>(4)?.then_some((1, 1)),
                default: r.get(5)?,
            });
        }
        if let Some(d) = def.as_mut() {
            let mut stmt = self.conn.prepare(
                "SELECT constraint_name, column_name FROM tds_catalog.constraints
                 WHERE lower(table_name) = lower(?) AND constraint_type = 'PRIMARY KEY' ORDER BY ordinal",
            )?;
            let mut rows = stmt.query([name])?;
            while let Some(r) = rows.next()? {
                d.pk_name = Some(r.get(0)?);
                d.primary_key.push(r.get(1)?);
            }
        }
        Ok(def)
    }

    fn create_table(&mut self, toks: &[Tok]) -> Result<Outcome> {
        let def = parse_create_table(toks, &|t| self.translate(t))?;
        if self.table(&def.name).is_some() {
            return Err(Error::sql(
                2714,
                format!(
                    "There is already an object named '{}' in the database.",
                    def.name
                ),
            ));
        }
        let mut stmts = def.ddl();
        if def.is_temp() {
            self.atomically(&stmts, Some(&def.name))?;
            self.temp.insert(def.name.to_ascii_lowercase(), def);
        } else {
            stmts.extend(def.catalog_inserts());
            self.atomically(&stmts, Some(&def.name))?;
            self.db.catalog_version.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Outcome::Done)
    }

    fn drop_tables(&mut self, toks: &[Tok]) -> Result<Outcome> {
        let mut i = 2;
        let if_exists = toks.get(2).is_some_and(|t| t.is_kw("IF"))
            && toks.get(3).is_some_and(|t| t.is_kw("EXISTS"));
        if if_exists {
            i = 4;
        }
        let names: Vec<String> = toks[i..]
            .iter()
            .filter_map(Tok::ident)
            .map(str::to_string)
            .collect();
        if names.is_empty() {
            return Err(syntax_near(toks.last()));
        }
        for name in names {
            let Some(def) = self.table(&name) else {
                if if_exists {
                    continue;
                }
                return Err(Error::sql(
                    3701,
                    format!(
                        "Cannot drop the table '{name}', because it does not exist or you do not have permission."
                    ),
                ));
            };
            let mut stmts = vec![format!("DROP TABLE {}", ident_sql(&def.name))];
            for c in def.columns.iter().filter(|c| c.identity.is_some()) {
                stmts.push(format!(
                    "DROP SEQUENCE IF EXISTS {}",
                    ident_sql(&format!("{}__{}_seq", def.name, c.name))
                ));
            }
            if def.is_temp() {
                self.atomically(&stmts, None)?;
                self.temp.remove(&def.name.to_ascii_lowercase());
            } else {
                stmts.push(format!(
                    "DELETE FROM tds_catalog.columns WHERE lower(table_name) = lower({})",
                    quote(&def.name)
                ));
                stmts.push(format!(
                    "DELETE FROM tds_catalog.constraints WHERE lower(table_name) = lower({})",
                    quote(&def.name)
                ));
                self.atomically(&stmts, None)?;
                self.db.catalog_version.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(Outcome::Done)
    }

    fn alter_table(&mut self, toks: &[Tok]) -> Result<Outcome> {
        let name = toks
            .get(2)
            .and_then(Tok::ident)
            .ok_or_else(|| syntax_near(toks.get(2)))?
            .to_string();
        let def = self.table(&name).ok_or_else(|| Error::sql(4902, format!("Cannot find the object \"{name}\" because it does not exist or you do not have permissions.")))?;
        let t = ident_sql(&def.name);
        let mut stmts = Vec::new();
        let action = toks
            .get(3)
            .map(|t| t.text().to_ascii_uppercase())
            .unwrap_or_default();
        match action.as_str() {
            "ADD" => {
                let body = &toks[4..];
                let mut ordinal = def.columns.len();
                for item in body.split(|t| t.is_sym(",")) {
                    let mut fake = vec![
                        Tok::Word("CREATE".into()),
                        Tok::Word("TABLE".into()),
                        Tok::Word("x".into()),
                        Tok::Sym("("),
                    ];
                    fake.extend_from_slice(item);
                    fake.push(Tok::Sym(")"));
                    let parsed = parse_create_table(&fake, &|t| self.translate(t))?;
                    for c in parsed.columns {
                        let mut s = format!(
                            "ALTER TABLE {t} ADD COLUMN {} {}",
                            ident_sql(&c.name),
                            c.ty.duckdb_type()
                        );
                        if let Some(d) = &c.default {
                            s.push_str(&format!(" DEFAULT ({d})"));
                        }
                        stmts.push(s);
                        ordinal += 1;
                        let single = TableDef {
                            name: def.name.clone(),
                            columns: vec![c],
                            primary_key: vec![],
                            pk_name: None,
                            unique: vec![],
                        };
                        for ins in single.catalog_inserts() {
                            stmts.push(ins.replacen(", 1, ", &format!(", {ordinal}, "), 1));
                        }
                    }
                }
            }
            "DROP" => {
                let col = toks
                    .iter()
                    .skip(4)
                    .find_map(|t| if t.is_kw("COLUMN") { None } else { t.ident() })
                    .ok_or_else(|| syntax_near(toks.last()))?;
                stmts.push(format!("ALTER TABLE {t} DROP COLUMN {}", ident_sql(col)));
                stmts.push(format!("DELETE FROM tds_catalog.columns WHERE lower(table_name) = lower({}) AND lower(column_name) = lower({})", quote(&def.name), quote(col)));
            }
            "ALTER" => {
                let col = toks
                    .get(5)
                    .and_then(Tok::ident)
                    .ok_or_else(|| syntax_near(toks.get(5)))?;
                let mut i = 6;
                let ty = parse_type(toks, &mut i)?;
                let not_null = toks[i..].iter().any(|t| t.is_kw("NOT"));
                stmts.push(format!(
                    "ALTER TABLE {t} ALTER COLUMN {} TYPE {}",
                    ident_sql(col),
                    ty.duckdb_type()
                ));
                stmts.push(format!(
                    "UPDATE tds_catalog.columns SET data_type = {}, declaration = {}, nullable = {} WHERE lower(table_name) = lower({}) AND lower(column_name) = lower({})",
                    quote(ty.name()), quote(&ty.declaration()), !not_null, quote(&def.name), quote(col)
                ));
            }
            _ => return Err(syntax_near(toks.get(3))),
        }
        self.atomically(&stmts, Some(&def.name))?;
        self.db.catalog_version.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome::Done)
    }

    fn exec_proc(&mut self, toks: &[Tok]) -> Result<Outcome> {
        let proc = toks
            .get(1)
            .map(Tok::text)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if proc != "sp_rename" {
            return Err(Error::sql(
                2812,
                format!("Could not find stored procedure '{proc}'."),
            ));
        }
        let args: Vec<String> = toks[2..]
            .iter()
            .filter_map(|t| match t {
                Tok::Str(s) => Some(s.clone()),
                Tok::Word(w) if !w.starts_with('@') => Some(w.clone()),
                _ => None,
            })
            .collect();
        let unbracket = |s: &str| {
            s.rsplit('.')
                .next()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_string()
        };
        let (old, new) = match (args.first(), args.get(1)) {
            (Some(o), Some(n)) => (o.clone(), unbracket(n)),
            _ => {
                return Err(Error::sql(
                    201,
                    "Procedure or function 'sp_rename' expects parameter '@newname', which was not supplied.",
                ));
            }
        };
        let is_column = args
            .get(2)
            .is_some_and(|k| k.eq_ignore_ascii_case("COLUMN"));
        let stmts = if is_column {
            let parts: Vec<&str> = old.split('.').map(|p| p.trim_matches(['[', ']'])).collect();
            let (table, col) = match parts.as_slice() {
                [.., t, c] => ((*t).to_string(), (*c).to_string()),
                _ => {
                    return Err(Error::sql(
                        15248,
                        format!(
                            "Either the parameter @objname is ambiguous or the claimed @objtype (COLUMN) is wrong: '{old}'."
                        ),
                    ));
                }
            };
            let def = self.table(&table).ok_or_else(|| Error::sql(15248, format!("Either the parameter @objname is ambiguous or the claimed @objtype (COLUMN) is wrong: '{old}'.")))?;
            vec![
                format!(
                    "ALTER TABLE {} RENAME COLUMN {} TO {}",
                    ident_sql(&def.name),
                    ident_sql(&col),
                    ident_sql(&new)
                ),
                format!(
                    "UPDATE tds_catalog.columns SET column_name = {} WHERE lower(table_name) = lower({}) AND lower(column_name) = lower({})",
                    quote(&new),
                    quote(&def.name),
                    quote(&col)
                ),
                format!(
                    "UPDATE tds_catalog.constraints SET column_name = {} WHERE lower(table_name) = lower({}) AND lower(column_name) = lower({})",
                    quote(&new),
                    quote(&def.name),
                    quote(&col)
                ),
            ]
        } else {
            let old = unbracket(&old);
            let def = self.table(&old).ok_or_else(|| Error::sql(15248, format!("Either the parameter @objname is ambiguous or the claimed @objtype (OBJECT) is wrong: '{old}'.")))?;
            if self.table(&new).is_some() {
                return Err(Error::sql(
                    15335,
                    format!(
                        "Error: The new name '{new}' is already in use as a object name and would cause a duplicate that is not permitted."
                    ),
                ));
            }
            vec![
                format!(
                    "ALTER TABLE {} RENAME TO {}",
                    ident_sql(&def.name),
                    ident_sql(&new)
                ),
                format!(
                    "UPDATE tds_catalog.columns SET table_name = {} WHERE lower(table_name) = lower({})",
                    quote(&new),
                    quote(&def.name)
                ),
                format!(
                    "UPDATE tds_catalog.constraints SET table_name = {} WHERE lower(table_name) = lower({})",
                    quote(&new),
                    quote(&def.name)
                ),
            ]
        };
        self.atomically(&stmts, None)?;
        self.db.catalog_version.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome::Done)
    }

    fn insert_bulk(&mut self, toks: &[Tok]) -> Result<Outcome> {
        let name = toks
            .get(2)
            .and_then(Tok::ident)
            .ok_or_else(|| syntax_near(toks.get(2)))?;
        let table = self
            .table(name)
            .ok_or_else(|| Error::sql(208, format!("Invalid object name '{name}'.")))?;
        self.bulk = Some(BulkTarget { table });
        Ok(Outcome::Done)
    }

    /// Loads a BulkLoad message (COLMETADATA, ROW tokens, DONE) into the pending INSERT BULK target.
    pub fn bulk_load(&mut self, body: &[u8]) -> BatchResult {
        let mut outcomes = Vec::new();
        let error = match self.bulk_rows(body) {
            Ok(n) => {
                self.rowcount = n as i64;
                outcomes.push(Outcome::Count(n));
                None
            }
            Err(e) => {
                if self.trancount > 0 {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    self.after_rollback();
                    outcomes.push(Outcome::Tran(10, self.descriptor));
                }
                Some(match e {
                    Error::Sql { number, message } => (number, message),
                    other => (
                        4815,
                        format!("Received an invalid column length from the bcp client: {other}"),
                    ),
                })
            }
        };
        BatchResult { outcomes, error }
    }

    fn bulk_rows(&mut self, body: &[u8]) -> Result<u64> {
        let target = self.bulk.take().ok_or_else(|| {
            Error::sql(
                4804,
                "While reading current row from host, a premature end-of-message was encountered: no INSERT BULK preceded the rows.",
            )
        })?;
        let mut r = Reader::new(body);
        if r.u8()? != 0x81 {
            return Err(Error::Protocol(
                "bulk load does not start with COLMETADATA".into(),
            ));
        }
        let n = usize::from(r.u16()?);
        let mut types = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        for _ in 0..n {
            r.u32()?;
            r.u16()?;
            types.push(WireType::read(&mut r, true)?);
            let name = r.b_varchar()?;
            let column = target
                .table
                .column(&name)
                .ok_or_else(|| Error::sql(207, format!("Invalid column name '{name}'.")))?;
            names.push(column.name.clone());
        }
        let table = target.table.name.clone();
        let start = Instant::now();
        let own = self.trancount == 0;
        if own {
            self.conn
                .execute_batch("BEGIN TRANSACTION")
                .map_err(|e| map_error(&e, None))?;
        }
        // The appender checks types, NOT NULL and keys as INSERT does, at a fraction of its cost.
        let loaded = (|| -> Result<u64> {
            let cols: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut app = if target.table.is_temp() {
                self.conn
                    .appender_with_columns_to_catalog_and_db(&table, "temp", "main", &cols)
            } else {
                self.conn.appender_with_columns(&table, &cols)
            }
            .map_err(|e| map_error(&e, Some(&table)))?;
            let mut row: Vec<duckdb::types::Value> = Vec::with_capacity(n);
            let mut rows = 0u64;
            loop {
                match r.u8()? {
                    0xD1 => {
                        row.clear();
                        for wt in &types {
                            row.push(wt.read_value(&mut r)?.to_duckdb());
                        }
                        app.append_row(duckdb::appender_params_from_iter(row.iter()))
                            .map_err(|e| map_error(&e, Some(&table)))?;
                        rows += 1;
                    }
                    0xFD => break,
                    other => {
                        return Err(Error::Protocol(format!(
                            "unexpected token 0x{other:02X} in bulk load"
                        )));
                    }
                }
            }
            app.flush().map_err(|e| map_error(&e, Some(&table)))?;
            Ok(rows)
        })();
        let result = match loaded {
            Ok(rows) if own => self
                .conn
                .execute_batch("COMMIT")
                .map(|()| rows)
                .map_err(|e| map_error(&e, Some(&table))),
            Ok(rows) => Ok(rows),
            Err(e) => {
                if own {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(e)
            }
        };
        self.counters
            .engine_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let rows = result?;
        self.counters
            .rows_received
            .fetch_add(rows, Ordering::Relaxed);
        Ok(rows)
    }

    fn select_into(&mut self, toks: &[Tok]) -> Result<Outcome> {
        let into = position_top_level(toks, "INTO").ok_or_else(|| syntax_near(toks.last()))?;
        let name = toks
            .get(into + 1)
            .and_then(Tok::ident)
            .ok_or_else(|| syntax_near(toks.get(into + 1)))?
            .to_string();
        let mut rest = toks[..into].to_vec();
        rest.extend_from_slice(&toks[into + 2..]);
        let select = self.translate(&rest)?;
        let tables = self.referenced(&rest);
        let temp = name.starts_with('#');
        let create = format!(
            "CREATE {}TABLE {} AS {select}",
            if temp { "TEMP " } else { "" },
            ident_sql(&name)
        );
        let n = self.exec(&create, None)?;
        let columns = self.describe(
            &format!("SELECT * FROM {}", ident_sql(&name)),
            &tables,
            select_items(&rest).as_deref(),
        )?;
        let def = TableDef {
            name: name.clone(),
            columns: columns
                .into_iter()
                .map(|c| ColumnDef {
                    name: c.name,
                    ty: c.ty,
                    nullable: true,
                    identity: None,
                    default: None,
                })
                .collect(),
            primary_key: Vec::new(),
            pk_name: None,
            unique: Vec::new(),
        };
        if temp {
            self.temp.insert(name.to_ascii_lowercase(), def);
        } else {
            self.atomically(&def.catalog_inserts(), None)?;
            self.db.catalog_version.fetch_add(1, Ordering::Relaxed);
        }
        self.rowcount = n as i64;
        Ok(Outcome::Count(n as u64))
    }

    /// Tables a statement names after FROM / JOIN / INTO / UPDATE / USING.
    fn referenced(&mut self, toks: &[Tok]) -> Vec<TableDef> {
        let mut out: Vec<TableDef> = Vec::new();
        for (i, t) in toks.iter().enumerate() {
            if ["FROM", "JOIN", "INTO", "UPDATE", "USING"]
                .iter()
                .any(|k| t.is_kw(k))
                && let Some(name) = toks.get(i + 1).and_then(Tok::ident)
                && let Some(d) = self.table(name)
                && !out.iter().any(|o| o.name == d.name)
            {
                out.push(d);
            }
        }
        out
    }

    fn describe(
        &self,
        sql: &str,
        tables: &[TableDef],
        items: Option<&[SelectItem]>,
    ) -> Result<Vec<ResultColumn>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT * FROM ({sql}) AS tds_q LIMIT 0"))
            .map_err(|e| map_error(&e, None))?;
        let rows = stmt.query([]).map_err(|e| map_error(&e, None))?;
        let s = rows
            .as_ref()
            .ok_or_else(|| Error::Protocol("statement vanished".into()))?;
        Ok(result_columns(s, tables, items))
    }

    fn query(&mut self, toks: &[Tok]) -> Result<Outcome> {
        let sql = self.translate(toks)?;
        let tables = self.referenced(toks);
        let items = select_items(toks);
        tracing::trace!(sql, "duckdb query");
        let start = Instant::now();
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(|e| map_error(&e, first_from(toks).as_deref()))?;
        let mut rows = stmt.query([]).map_err(|e| map_error(&e, None))?;
        let columns = {
            let s = rows
                .as_ref()
                .ok_or_else(|| Error::Protocol("statement vanished".into()))?;
            result_columns(s, &tables, items.as_deref())
        };
        let mut buf = BytesMut::new();
        let mut count = 0u64;
        let n = columns.len();
        let mut nulls = vec![0u8; n.div_ceil(8)];
        while let Some(row) = rows.next().map_err(|e| map_error(&e, None))? {
            nulls.iter_mut().for_each(|b| *b = 0);
            let mut any_null = false;
            for i in 0..n {
                if matches!(row.get_ref(i), Ok(duckdb::types::ValueRef::Null)) {
                    nulls[i / 8] |= 1 << (i % 8);
                    any_null = true;
                }
            }
            if any_null {
                buf.put_u8(0xD2);
                buf.put_slice(&nulls);
            } else {
                buf.put_u8(0xD1);
            }
            for (i, c) in columns.iter().enumerate() {
                let v = row.get_ref(i)?;
                if any_null && matches!(v, duckdb::types::ValueRef::Null) {
                    continue;
                }
                c.ty.write_value(&mut buf, v)?;
            }
            count += 1;
        }
        self.counters
            .engine_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.counters.rows_sent.fetch_add(count, Ordering::Relaxed);
        self.rowcount = count as i64;
        Ok(Outcome::Rows {
            columns,
            rows: buf,
            count,
        })
    }
}

/// Tokens at parenthesis depth 0.
fn top_level(toks: &[Tok]) -> impl Iterator<Item = &Tok> {
    let mut depth = 0i32;
    toks.iter().filter(move |t| {
        if t.is_sym("(") {
            depth += 1;
        } else if t.is_sym(")") {
            depth -= 1;
        }
        depth == 0
    })
}

fn position_top_level(toks: &[Tok], kw: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate() {
        if t.is_sym("(") {
            depth += 1;
        } else if t.is_sym(")") {
            depth -= 1;
        } else if depth == 0 && t.is_kw(kw) {
            return Some(i);
        }
    }
    None
}

fn first_from(toks: &[Tok]) -> Option<String> {
    let i = position_top_level(toks, "FROM")?;
    toks.get(i + 1).and_then(Tok::ident).map(str::to_string)
}

/// The table an INSERT / UPDATE / DELETE / MERGE writes.
fn target_table(toks: &[Tok]) -> Option<String> {
    let mut i = 1;
    if toks[0].is_kw("WITH") {
        i = position_top_level(toks, "INSERT")
            .or_else(|| position_top_level(toks, "UPDATE"))
            .or_else(|| position_top_level(toks, "DELETE"))
            .or_else(|| position_top_level(toks, "MERGE"))?
            + 1;
    }
    if toks.get(i).is_some_and(|t| t.is_kw("TOP")) {
        i += if toks.get(i + 1).is_some_and(|t| t.is_sym("(")) {
            4
        } else {
            2
        };
    }
    if toks
        .get(i)
        .is_some_and(|t| t.is_kw("INTO") || t.is_kw("FROM"))
    {
        i += 1;
    }
    toks.get(i).and_then(Tok::ident).map(str::to_string)
}

/// Result columns typed as declared: a plain column reference gets its column's declared type,
/// a CAST the type it names, anything else a type derived from DuckDB's.
fn result_columns(
    s: &duckdb::Statement<'_>,
    tables: &[TableDef],
    items: Option<&[SelectItem]>,
) -> Vec<ResultColumn> {
    let names = s.column_names();
    let positional = items.filter(|it| it.len() == names.len() && !it.contains(&SelectItem::Star));
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let dt = s.column_type(i);
            let lookup = match positional.map(|it| &it[i]) {
                Some(SelectItem::Expr) => None,
                Some(SelectItem::Cast(t)) => {
                    let t = *t;
                    if compatible(t, &dt) {
                        return ResultColumn {
                            name,
                            ty: t,
                            nullable: true,
                            identity: false,
                            table: String::new(),
                        };
                    }
                    None
                }
                Some(SelectItem::Column(c)) => Some(c.clone()),
                _ => Some(name.clone()),
            };
            let declared = lookup.and_then(|col| {
                tables.iter().find_map(|t| {
                    t.column(&col)
                        .filter(|c| compatible(c.ty, &dt))
                        .map(|c| (c.clone(), t.name.clone()))
                })
            });
            match declared {
                Some((c, table)) => ResultColumn {
                    name,
                    ty: c.ty,
                    nullable: c.nullable,
                    identity: c.identity.is_some(),
                    table,
                },
                None => ResultColumn {
                    ty: SqlType::for_result(&dt),
                    name,
                    nullable: true,
                    identity: false,
                    table: String::new(),
                },
            }
        })
        .collect()
}

/// Whether DuckDB's result type is the storage of the declared type.
fn compatible(ty: SqlType, dt: &DataType) -> bool {
    use DataType as D;
    match ty {
        SqlType::Bit => matches!(dt, D::Boolean),
        SqlType::TinyInt => matches!(dt, D::UInt8),
        SqlType::SmallInt => matches!(dt, D::Int16),
        SqlType::Int => matches!(dt, D::Int32),
        SqlType::BigInt => matches!(dt, D::Int64),
        SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
            matches!(dt, D::Decimal128(p, s) if *p == precision && *s == scale as i8)
        }
        SqlType::Money => matches!(dt, D::Decimal128(19, 4)),
        SqlType::SmallMoney => matches!(dt, D::Decimal128(10, 4)),
        SqlType::Real => matches!(dt, D::Float32),
        SqlType::Float => matches!(dt, D::Float64),
        SqlType::Date => matches!(dt, D::Date32),
        SqlType::Time(_) => matches!(dt, D::Time64(_) | D::Time32(_)),
        SqlType::DateTime | SqlType::DateTime2(_) | SqlType::SmallDateTime => {
            matches!(dt, D::Timestamp(_, None))
        }
        SqlType::Binary(_) | SqlType::VarBinary(_) => {
            matches!(dt, D::Binary | D::LargeBinary | D::BinaryView)
        }
        SqlType::UniqueIdentifier => matches!(
            dt,
            D::Utf8 | D::LargeUtf8 | D::Utf8View | D::FixedSizeBinary(16)
        ),
        _ => matches!(dt, D::Utf8 | D::LargeUtf8 | D::Utf8View),
    }
}

/// Turns a DuckDB error into the SQL Server error a client would see.
pub(crate) fn map_error(e: &duckdb::Error, target: Option<&str>) -> Error {
    let msg = e.to_string();
    let table = target.unwrap_or("?");
    let quoted = |m: &str| -> Option<String> {
        let a = m.find('"')?;
        let b = m[a + 1..].find('"')?;
        Some(m[a + 1..a + 1 + b].to_string())
    };
    if msg.contains("Parser Error") {
        let near = msg
            .split("at or near")
            .nth(1)
            .and_then(quoted)
            .unwrap_or_else(|| "end of statement".into());
        return Error::sql(102, format!("Incorrect syntax near '{near}'. ({msg})"));
    }
    if msg.contains("Catalog Error") && msg.contains("does not exist") && msg.contains("with name")
    {
        let name = msg
            .split("with name ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or(table)
            .trim_end_matches('!')
            .to_string();
        return Error::sql(208, format!("Invalid object name '{name}'."));
    }
    if msg.contains("already exists") {
        return Error::sql(
            2714,
            format!("There is already an object named '{table}' in the database."),
        );
    }
    if msg.contains("Referenced column")
        || (msg.contains("Binder Error") && msg.contains("not found"))
    {
        let col = quoted(&msg).unwrap_or_default();
        return Error::sql(207, format!("Invalid column name '{col}'."));
    }
    let lower = msg.to_ascii_lowercase();
    if lower.contains("constraint")
        && (lower.contains("primary key")
            || lower.contains("duplicate key")
            || lower.contains("unique"))
    {
        let key = msg
            .split("\"")
            .nth(1)
            .map(|k| k.split(": ").last().unwrap_or(k).to_string())
            .unwrap_or_default();
        return Error::sql(
            2627,
            format!(
                "Violation of PRIMARY KEY constraint 'PK_{table}'. Cannot insert duplicate key in object 'dbo.{table}'. The duplicate key value is ({key})."
            ),
        );
    }
    if lower.contains("not null constraint") {
        let col = msg
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        return Error::sql(
            515,
            format!(
                "Cannot insert the value NULL into column '{col}', table 'dbo.{table}'; column does not allow nulls. INSERT fails."
            ),
        );
    }
    if lower.contains("check constraint") && lower.contains("regexp_full_match") {
        return Error::sql(
            241,
            format!(
                "Conversion failed when converting date and/or time from character string (a datetimeoffset of table 'dbo.{table}' out of range or unreadable)."
            ),
        );
    }
    if lower.contains("check constraint") && lower.contains("length(") {
        let col = msg
            .split("length(")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap_or_default()
            .trim_matches('"')
            .to_string();
        return Error::sql(
            2628,
            format!(
                "String or binary data would be truncated in table 'dbo.{table}', column '{col}'."
            ),
        );
    }
    if lower.contains("out of range") || lower.contains("overflow") {
        return Error::sql(
            8115,
            format!("Arithmetic overflow error converting expression to data type. ({msg})"),
        );
    }
    if msg.contains("Conversion Error")
        || lower.contains("could not convert")
        || lower.contains("invalid input")
    {
        return Error::sql(
            245,
            format!("Conversion failed when converting the value to the column type. ({msg})"),
        );
    }
    if msg.contains("TransactionContext Error") || lower.contains("conflict") {
        return Error::sql(
            1205,
            format!(
                "Transaction (Process ID 51) was deadlocked on lock resources with another process and has been chosen as the deadlock victim. Rerun the transaction. ({msg})"
            ),
        );
    }
    Error::sql(50000, msg)
}
