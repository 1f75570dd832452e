//! T-SQL to DuckDB SQL: a tokenizer, a batch splitter (statements end at `;`, or where the next
//! statement's first keyword starts, as SQL Server allows), and a token-level translator.
//!
//! The translator rewrites what differs between the dialects: `[x]` identifiers, the `dbo.`
//! prefix, `N'...'`, `@P1` parameters (replaced by literals), `TOP n`, `OFFSET .. FETCH`,
//! `#temp` names, SQL Server type names in `CAST`/`CONVERT`, a few functions (`GETDATE`,
//! `ISNULL`, `LEN`, `NEWID`, `DB_NAME`, `OBJECT_ID`), `@@ROWCOUNT` / `@@VERSION` /
//! `@@TRANCOUNT`, table hints, qualified `SET` targets, and INFORMATION_SCHEMA views (answered
//! from the side catalog). Statements the engine handles itself (CREATE TABLE, DROP, ALTER,
//! sp_rename, transactions, SET options, INSERT BULK) are recognised in `engine.rs`.

use crate::error::{Error, Result};
use crate::types::{SqlType, quote};

/// One lexical token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A keyword or unquoted identifier (also `#temp`, `@var`, `@@VERSION`).
    Word(String),
    /// `[x]` or `"x"`.
    Quoted(String),
    /// `'x'` or `N'x'`, unescaped.
    Str(String),
    Num(String),
    Sym(&'static str),
}

impl Tok {
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
    pub fn is_sym(&self, s: &str) -> bool {
        matches!(self, Tok::Sym(x) if *x == s)
    }
    /// The identifier this token names, if it is one.
    pub fn ident(&self) -> Option<&str> {
        match self {
            Tok::Word(w) if !w.starts_with('@') => Some(w),
            Tok::Quoted(q) => Some(q),
            _ => None,
        }
    }
    /// How SQL Server would show it in "Incorrect syntax near '...'".
    pub fn text(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Num(w) => w.clone(),
            Tok::Quoted(q) => q.clone(),
            Tok::Str(s) => s.clone(),
            Tok::Sym(s) => (*s).to_string(),
        }
    }
}

const SYMS: [&str; 22] = [
    "<>", "!=", ">=", "<=", "::", "||", "(", ")", ",", ";", ".", "=", "<", ">", "+", "-", "*", "/",
    "%", "&", "|", "^",
];

/// Splits T-SQL text into tokens; comments are dropped.
pub(crate) fn tokenize(sql: &str) -> Result<Vec<Tok>> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let syntax = |near: &str| Error::sql(102, format!("Incorrect syntax near '{near}'."));
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || ((c == 'N' || c == 'n') && chars.get(i + 1) == Some(&'\'')) {
            if c != '\'' {
                i += 1;
            }
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(Error::sql(
                            105,
                            format!("Unclosed quotation mark after the character string '{s}'."),
                        ));
                    }
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c == '[' || c == '"' {
            let close = if c == '[' { ']' } else { '"' };
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(syntax(&s)),
                    Some(&ch) if ch == close && chars.get(i + 1) == Some(&close) => {
                        s.push(close);
                        i += 2;
                    }
                    Some(&ch) if ch == close => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Quoted(s));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                if (chars[i] == 'e' || chars[i] == 'E')
                    && matches!(chars.get(i + 1), Some('+' | '-'))
                {
                    i += 1;
                }
                i += 1;
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' || c == '#' || c == '@' {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '#' | '@' | '$'))
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            match SYMS.iter().find(|s| rest.starts_with(**s)) {
                Some(s) => {
                    out.push(Tok::Sym(s));
                    i += s.len();
                }
                None => return Err(syntax(&c.to_string())),
            }
        }
    }
    Ok(out)
}

/// A parsed batch element.
#[derive(Debug, Clone)]
pub(crate) enum Stmt {
    Simple(Vec<Tok>),
    If {
        cond: Vec<Tok>,
        then: Box<Stmt>,
        otherwise: Option<Box<Stmt>>,
    },
    Block(Vec<Stmt>),
}

const STARTS: [&str; 21] = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE", "IF",
    "BEGIN", "COMMIT", "ROLLBACK", "SET", "EXEC", "EXECUTE", "DECLARE", "WITH", "SAVE", "PRINT",
    "USE",
];

fn is_start(t: &Tok) -> bool {
    STARTS.iter().any(|k| t.is_kw(k))
}

/// Splits a token list into statements.
pub(crate) fn parse_batch(toks: &[Tok]) -> Result<Vec<Stmt>> {
    let mut p = Parser { toks, pos: 0 };
    let mut out = Vec::new();
    loop {
        p.skip_semis();
        if p.pos >= toks.len() {
            break;
        }
        if toks[p.pos].is_kw("END") || toks[p.pos].is_kw("ELSE") {
            return Err(Error::sql(
                156,
                format!(
                    "Incorrect syntax near the keyword '{}'.",
                    toks[p.pos].text()
                ),
            ));
        }
        out.push(p.stmt()?);
    }
    Ok(out)
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
}

impl Parser<'_> {
    fn skip_semis(&mut self) {
        while self.pos < self.toks.len() && self.toks[self.pos].is_sym(";") {
            self.pos += 1;
        }
    }

    fn peek(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.pos + k)
    }

    fn stmt(&mut self) -> Result<Stmt> {
        self.skip_semis();
        let Some(first) = self.peek(0) else {
            return Err(Error::sql(
                102,
                "Incorrect syntax near the end of the batch.",
            ));
        };
        if first.is_kw("IF") {
            self.pos += 1;
            let start = self.pos;
            let mut depth = 0i32;
            while let Some(t) = self.peek(0) {
                if t.is_sym("(") {
                    depth += 1;
                } else if t.is_sym(")") {
                    depth -= 1;
                } else if depth == 0 && is_start(t) {
                    break;
                }
                self.pos += 1;
            }
            let cond = self.toks[start..self.pos].to_vec();
            if cond.is_empty() || self.pos >= self.toks.len() {
                return Err(Error::sql(
                    102,
                    "Incorrect syntax near the end of the IF statement.",
                ));
            }
            let then = Box::new(self.stmt()?);
            self.skip_semis();
            let otherwise = if self.peek(0).is_some_and(|t| t.is_kw("ELSE")) {
                self.pos += 1;
                Some(Box::new(self.stmt()?))
            } else {
                None
            };
            return Ok(Stmt::If {
                cond,
                then,
                otherwise,
            });
        }
        if first.is_kw("BEGIN")
            && !self.peek(1).is_some_and(|t| {
                t.is_kw("TRAN") || t.is_kw("TRANSACTION") || t.is_kw("DISTRIBUTED")
            })
        {
            self.pos += 1;
            let mut body = Vec::new();
            loop {
                self.skip_semis();
                match self.peek(0) {
                    None => return Err(Error::sql(102, "Incorrect syntax: BEGIN without END.")),
                    Some(t) if t.is_kw("END") => {
                        self.pos += 1;
                        break;
                    }
                    Some(_) => body.push(self.stmt()?),
                }
            }
            return Ok(Stmt::Block(body));
        }
        Ok(Stmt::Simple(self.simple()))
    }

    fn simple(&mut self) -> Vec<Tok> {
        let start = self.pos;
        let head = self.toks[start].text().to_ascii_uppercase();
        let mut depth = 0i32;
        let mut cases = 0i32;
        let mut absorbed = false;
        self.pos += 1;
        while let Some(t) = self.peek(0) {
            let prev = &self.toks[self.pos - 1];
            if t.is_sym("(") {
                depth += 1;
            } else if t.is_sym(")") {
                depth -= 1;
            } else if depth == 0 {
                if t.is_sym(";") {
                    break;
                }
                if t.is_kw("CASE") {
                    cases += 1;
                } else if t.is_kw("END") {
                    if cases == 0 {
                        break;
                    }
                    cases -= 1;
                } else if (t.is_kw("ELSE") && cases == 0)
                    || (head != "MERGE"
                        && is_start(t)
                        && !self.continues(&head, prev, t, &mut absorbed))
                {
                    break;
                }
            }
            self.pos += 1;
        }
        self.toks[start..self.pos].to_vec()
    }

    /// Whether keyword `t` (a statement start) belongs to the current statement instead.
    fn continues(&self, head: &str, prev: &Tok, t: &Tok, absorbed: &mut bool) -> bool {
        if [
            "UNION",
            "ALL",
            "EXCEPT",
            "INTERSECT",
            "THEN",
            "AS",
            "TABLE",
            "VIEW",
            "INDEX",
            "SCHEMA",
        ]
        .iter()
        .any(|k| prev.is_kw(k))
        {
            return true;
        }
        if t.is_kw("WITH") && self.peek(1).is_some_and(|n| n.is_sym("(")) {
            return true;
        }
        let first_time = !*absorbed;
        let yes = match head {
            "INSERT" => {
                t.is_kw("SELECT") || t.is_kw("WITH") || t.is_kw("EXEC") || t.is_kw("EXECUTE")
            }
            "WITH" => ["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"]
                .iter()
                .any(|k| t.is_kw(k)),
            "UPDATE" => t.is_kw("SET"),
            "ALTER" => t.is_kw("DROP") || t.is_kw("ALTER"),
            _ => false,
        };
        if yes && first_time {
            *absorbed = true;
            return true;
        }
        false
    }
}

/// What the translator needs from the session.
pub(crate) trait Context {
    /// A parameter's value as a DuckDB literal.
    fn param(&self, name: &str) -> Option<String>;
    fn rowcount(&self) -> i64;
    fn trancount(&self) -> i64;
    fn database(&self) -> &str;
    /// Whether a table (or temp table) of this name exists.
    fn table_exists(&self, name: &str) -> bool;
}

pub(crate) const VERSION: &str =
    "Microsoft SQL Server 2022 (caudal-tds-server test double, DuckDB engine)";

/// Maps a SQL Server type name (with its argument tokens) to DuckDB, for CAST/CONVERT.
fn cast_type(toks: &[Tok], i: &mut usize) -> Result<String> {
    let name = toks.get(*i).map(Tok::text).unwrap_or_default();
    *i += 1;
    let mut args = Vec::new();
    if toks.get(*i).is_some_and(|t| t.is_sym("(")) {
        *i += 1;
        while let Some(t) = toks.get(*i) {
            *i += 1;
            if t.is_sym(")") {
                break;
            }
            if !t.is_sym(",") {
                args.push(t.text());
            }
        }
    }
    match SqlType::parse(&name, &args) {
        Ok(t) => Ok(t.duckdb_type()),
        Err(_) if name.eq_ignore_ascii_case("date") => Ok("DATE".into()),
        Err(e) => Err(e),
    }
}

/// Finds the index of the `)` closing the `(` at `open`.
pub(crate) fn closing(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate().skip(open) {
        if t.is_sym("(") {
            depth += 1;
        } else if t.is_sym(")") {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

fn is_ident(t: Option<&Tok>) -> bool {
    t.is_some_and(|t| t.ident().is_some())
}

/// Renders an identifier for DuckDB.
pub(crate) fn ident_sql(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

const HINTS: [&str; 12] = [
    "NOLOCK",
    "HOLDLOCK",
    "UPDLOCK",
    "ROWLOCK",
    "TABLOCK",
    "TABLOCKX",
    "READPAST",
    "PAGLOCK",
    "SERIALIZABLE",
    "READCOMMITTED",
    "XLOCK",
    "READUNCOMMITTED",
];

/// Translates one statement's tokens to DuckDB SQL.
pub(crate) fn translate(toks: &[Tok], cx: &dyn Context) -> Result<String> {
    let toks = strip_schema(toks);
    let mut out = String::new();
    // Pending LIMITs from TOP: (paren depth of the SELECT, the limit text).
    let mut limits: Vec<(i32, String)> = Vec::new();
    let mut depth = 0i32;
    let mut in_set = false;
    let head = toks
        .first()
        .map(|t| t.text().to_ascii_uppercase())
        .unwrap_or_default();
    let mut i = 0;
    let push = |out: &mut String, s: &str| {
        let call = s == "(" && out.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '"');
        if !out.is_empty()
            && !out.ends_with(['(', '.', ' '])
            && s != "."
            && s != ")"
            && s != ","
            && s != "::"
            && !call
        {
            out.push(' ');
        }
        out.push_str(s);
    };
    while i < toks.len() {
        let t = &toks[i];
        let next = toks.get(i + 1);
        match t {
            Tok::Sym("(") => {
                depth += 1;
                push(&mut out, "(");
            }
            Tok::Sym(")") => {
                if let Some(pos) = limits.iter().rposition(|(d, _)| *d == depth) {
                    let (_, l) = limits.remove(pos);
                    push(&mut out, &l);
                }
                depth -= 1;
                push(&mut out, ")");
            }
            Tok::Sym(s) => {
                if *s == "," && in_set && depth == 0 {
                    push(&mut out, ",");
                    i += 1;
                    i += skip_set_qualifier(&toks[i..]);
                    continue;
                }
                push(&mut out, s);
            }
            Tok::Str(s) => push(&mut out, &quote(s)),
            Tok::Num(n) => match n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
                // A binary literal: 0x followed by hex digits (none for the empty binary).
                Some(hex) if hex.chars().all(|c| c.is_ascii_hexdigit()) => {
                    push(&mut out, &format!("from_hex('{hex}')"))
                }
                _ => push(&mut out, n),
            },
            Tok::Quoted(q) => push(&mut out, &ident_sql(q)),
            Tok::Word(w) => {
                let up = w.to_ascii_uppercase();
                if let Some(var) = w.strip_prefix("@@") {
                    let lit = match var.to_ascii_uppercase().as_str() {
                        "ROWCOUNT" => cx.rowcount().to_string(),
                        "TRANCOUNT" => cx.trancount().to_string(),
                        "VERSION" => quote(VERSION),
                        "SERVERNAME" => quote(crate::tokens::SERVER_NAME),
                        "SPID" => "51".into(),
                        "ERROR" => "0".into(),
                        _ => {
                            return Err(Error::sql(
                                137,
                                format!("Must declare the scalar variable \"{w}\"."),
                            ));
                        }
                    };
                    push(&mut out, &lit);
                } else if w.starts_with('@') {
                    let lit = cx.param(w).ok_or_else(|| {
                        Error::sql(137, format!("Must declare the scalar variable \"{w}\"."))
                    })?;
                    push(&mut out, &lit);
                } else if w.starts_with('#') {
                    push(&mut out, &ident_sql(w));
                } else if up == "TOP" && i > 0 {
                    // TOP (n) | TOP n  ->  LIMIT n at the end of this SELECT.
                    let (n, used) = if next.is_some_and(|t| t.is_sym("(")) {
                        let close = closing(&toks, i + 1)
                            .ok_or_else(|| Error::sql(102, "Incorrect syntax near 'TOP'."))?;
                        (translate(&toks[i + 2..close], cx)?, close - i + 1)
                    } else {
                        (next.map(Tok::text).unwrap_or_default(), 2)
                    };
                    if head == "SELECT"
                        || head == "WITH"
                        || head == "INSERT"
                        || toks[..i].iter().any(|t| t.is_kw("SELECT"))
                    {
                        limits.push((depth, format!("LIMIT {n}")));
                    }
                    i += used;
                    if toks.get(i).is_some_and(|t| t.is_kw("PERCENT")) {
                        return Err(Error::sql(
                            102,
                            "TOP ... PERCENT is not supported by this test server.",
                        ));
                    }
                    continue;
                } else if up == "OFFSET"
                    && toks
                        .get(i + 2)
                        .is_some_and(|t| t.is_kw("ROWS") || t.is_kw("ROW"))
                {
                    push(&mut out, "OFFSET");
                    let n = toks[i + 1].clone();
                    push(&mut out, &translate(std::slice::from_ref(&n), cx)?);
                    i += 3;
                    continue;
                } else if up == "FETCH" && next.is_some_and(|t| t.is_kw("NEXT") || t.is_kw("FIRST"))
                {
                    // FETCH NEXT m ROWS ONLY -> LIMIT m (DuckDB takes OFFSET before LIMIT).
                    let mut j = i + 2;
                    let start = j;
                    while j < toks.len() && !(toks[j].is_kw("ROWS") || toks[j].is_kw("ROW")) {
                        j += 1;
                    }
                    let n = translate(&toks[start..j], cx)?;
                    push(&mut out, &format!("LIMIT {n}"));
                    i = j + 2;
                    continue;
                } else if up == "WITH"
                    && next.is_some_and(|t| t.is_sym("("))
                    && toks
                        .get(i + 2)
                        .is_some_and(|t| HINTS.iter().any(|h| t.is_kw(h)))
                {
                    i = closing(&toks, i + 1).map_or(toks.len(), |c| c + 1);
                    continue;
                } else if (up == "CAST" || up == "TRY_CAST") && next.is_some_and(|t| t.is_sym("("))
                {
                    let close = closing(&toks, i + 1)
                        .ok_or_else(|| Error::sql(102, "Incorrect syntax near 'CAST'."))?;
                    let as_pos = (i + 2..close)
                        .rev()
                        .find(|&k| toks[k].is_kw("AS"))
                        .ok_or_else(|| Error::sql(102, "Incorrect syntax near 'CAST'."))?;
                    let inner = translate(&toks[i + 2..as_pos], cx)?;
                    let mut k = as_pos + 1;
                    let ty = cast_type(&toks, &mut k)?;
                    push(&mut out, &format!("{up}({inner} AS {ty})"));
                    i = close + 1;
                    continue;
                } else if (up == "CONVERT" || up == "TRY_CONVERT")
                    && next.is_some_and(|t| t.is_sym("("))
                {
                    let close = closing(&toks, i + 1)
                        .ok_or_else(|| Error::sql(102, "Incorrect syntax near 'CONVERT'."))?;
                    let mut k = i + 2;
                    let ty = cast_type(&toks, &mut k)?;
                    if !toks.get(k).is_some_and(|t| t.is_sym(",")) {
                        return Err(Error::sql(102, "Incorrect syntax near 'CONVERT'."));
                    }
                    let mut end = close;
                    let mut d = 0;
                    for (j, t) in toks.iter().enumerate().take(close).skip(k + 1) {
                        if t.is_sym("(") {
                            d += 1;
                        } else if t.is_sym(")") {
                            d -= 1;
                        } else if d == 0 && t.is_sym(",") {
                            end = j;
                            break;
                        }
                    }
                    let inner = translate(&toks[k + 1..end], cx)?;
                    let f = if up == "CONVERT" { "CAST" } else { "TRY_CAST" };
                    push(&mut out, &format!("{f}({inner} AS {ty})"));
                    i = close + 1;
                    continue;
                } else if up == "OBJECT_ID" && next.is_some_and(|t| t.is_sym("(")) {
                    let close = closing(&toks, i + 1)
                        .ok_or_else(|| Error::sql(102, "Incorrect syntax near 'OBJECT_ID'."))?;
                    let name = match toks.get(i + 2) {
                        Some(Tok::Str(s)) => s.clone(),
                        _ => {
                            return Err(Error::sql(
                                102,
                                "OBJECT_ID takes a literal name in this test server.",
                            ));
                        }
                    };
                    let name = name
                        .rsplit('.')
                        .next()
                        .unwrap_or_default()
                        .trim_matches(['[', ']'])
                        .to_string();
                    let name = name.strip_prefix("tempdb..").unwrap_or(&name).to_string();
                    let exists = cx.table_exists(&name);
                    push(&mut out, if exists { "1001" } else { "NULL" });
                    i = close + 1;
                    continue;
                } else if up == "DB_NAME" && next.is_some_and(|t| t.is_sym("(")) {
                    let close = closing(&toks, i + 1).unwrap_or(i + 2);
                    push(&mut out, &quote(cx.database()));
                    i = close + 1;
                    continue;
                } else if (up == "SET") && (head == "UPDATE" || head == "MERGE") {
                    in_set = true;
                    push(&mut out, "SET");
                    i += 1;
                    i += skip_set_qualifier(&toks[i..]);
                    continue;
                } else if in_set
                    && (up == "FROM" || up == "WHERE" || up == "WHEN" || up == "OUTPUT")
                {
                    in_set = false;
                    push(&mut out, w);
                } else if up == "INFORMATION_SCHEMA" && next.is_some_and(|t| t.is_sym(".")) {
                    let view = toks
                        .get(i + 2)
                        .map(Tok::text)
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    push(&mut out, &format!("tds_catalog.information_schema_{view}"));
                    i += 3;
                    continue;
                } else if let Some(c) = clock(&up).filter(|_| {
                    next.is_some_and(|t| t.is_sym("("))
                        && toks.get(i + 2).is_some_and(|t| t.is_sym(")"))
                }) {
                    push(&mut out, c);
                    i += 3;
                    continue;
                } else if next.is_some_and(|t| t.is_sym("(")) && function(&up).is_some() {
                    push(&mut out, function(&up).unwrap_or_default());
                } else {
                    push(&mut out, w);
                }
            }
        }
        i += 1;
    }
    while let Some((_, l)) = limits.pop() {
        push(&mut out, &l);
    }
    Ok(out)
}

/// `T.col =` in a SET list -> `col =` (DuckDB takes unqualified targets). Returns tokens skipped.
fn skip_set_qualifier(toks: &[Tok]) -> usize {
    if is_ident(toks.first())
        && toks.get(1).is_some_and(|t| t.is_sym("."))
        && is_ident(toks.get(2))
        && toks.get(3).is_some_and(|t| t.is_sym("="))
    {
        2
    } else {
        0
    }
}

fn function(up: &str) -> Option<&'static str> {
    Some(match up {
        "ISNULL" => "coalesce",
        "LEN" => "length",
        "NEWID" => "uuid",
        "COUNT_BIG" => "count",
        "DATALENGTH" => "octet_length",
        _ => return None,
    })
}

/// Niladic date functions: `GETDATE()` and friends.
fn clock(up: &str) -> Option<&'static str> {
    Some(match up {
        // The server's clock is UTC (DuckDB without ICU), so local and UTC agree.
        "GETDATE" | "SYSDATETIME" | "GETUTCDATE" | "SYSUTCDATETIME" => "CAST(now() AS TIMESTAMP)",
        _ => return None,
    })
}

/// What one item of a SELECT list is, for typing its result column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SelectItem {
    /// A plain column reference (`a`, `t.a`, `[a] AS [b]`): the column's declared type.
    Column(String),
    /// `CAST(x AS type)` / `CONVERT(type, x)`: the type it names.
    Cast(SqlType),
    /// `*` or `t.*`.
    Star,
    /// Anything else: typed from DuckDB's result type.
    Expr,
}

/// The items of the outermost SELECT list of a statement, if it has one.
pub(crate) fn select_items(toks: &[Tok]) -> Option<Vec<SelectItem>> {
    let mut depth = 0i32;
    let mut start = None;
    for (i, t) in toks.iter().enumerate() {
        if t.is_sym("(") {
            depth += 1;
        } else if t.is_sym(")") {
            depth -= 1;
        } else if depth == 0 && t.is_kw("SELECT") {
            start = Some(i + 1);
            break;
        }
    }
    let mut i = start?;
    if toks
        .get(i)
        .is_some_and(|t| t.is_kw("DISTINCT") || t.is_kw("ALL"))
    {
        i += 1;
    }
    if toks.get(i).is_some_and(|t| t.is_kw("TOP")) {
        i += if toks.get(i + 1).is_some_and(|t| t.is_sym("(")) {
            closing(toks, i + 1)? - i + 1
        } else {
            2
        };
    }
    let mut items = Vec::new();
    let mut item: Vec<Tok> = Vec::new();
    let mut depth = 0i32;
    while let Some(t) = toks.get(i) {
        if t.is_sym("(") {
            depth += 1;
        } else if t.is_sym(")") {
            depth -= 1;
        }
        let end = depth == 0
            && ([
                "FROM",
                "INTO",
                "WHERE",
                "GROUP",
                "ORDER",
                "UNION",
                "EXCEPT",
                "INTERSECT",
                "HAVING",
                "OPTION",
            ]
            .iter()
            .any(|k| t.is_kw(k))
                || t.is_sym(";"));
        if end {
            break;
        }
        if depth == 0 && t.is_sym(",") {
            items.push(classify(&item));
            item.clear();
        } else {
            item.push(t.clone());
        }
        i += 1;
    }
    items.push(classify(&item));
    Some(items)
}

fn classify(item: &[Tok]) -> SelectItem {
    let n = item.len();
    let body = if n >= 3 && item[n - 2].is_kw("AS") {
        &item[..n - 2]
    } else if n >= 2
        && is_ident(item.last())
        && (is_ident(item.get(n - 2)) || item[n - 2].is_sym(")"))
        && !item[n - 2].is_kw("CASE")
    {
        &item[..n - 1]
    } else {
        item
    };
    match body {
        [t] if t.is_sym("*") => SelectItem::Star,
        [.., d, t] if t.is_sym("*") && d.is_sym(".") => SelectItem::Star,
        [t] if is_ident(Some(t)) => SelectItem::Column(t.ident().unwrap_or_default().to_string()),
        [a, d, t] if is_ident(Some(a)) && d.is_sym(".") && is_ident(Some(t)) => {
            SelectItem::Column(t.ident().unwrap_or_default().to_string())
        }
        [f, open, .., close]
            if open.is_sym("(")
                && close.is_sym(")")
                && closing(body, 1) == Some(body.len() - 1) =>
        {
            let up = f.text().to_ascii_uppercase();
            let ty_at = match up.as_str() {
                "CAST" | "TRY_CAST" => (2..body.len() - 1)
                    .rev()
                    .find(|&k| body[k].is_kw("AS"))
                    .map(|k| k + 1),
                "CONVERT" | "TRY_CONVERT" => Some(2),
                _ => None,
            };
            match ty_at {
                Some(mut k) => crate::catalog::parse_type(body, &mut k)
                    .map_or(SelectItem::Expr, SelectItem::Cast),
                None => SelectItem::Expr,
            }
        }
        _ => SelectItem::Expr,
    }
}

/// Drops `dbo.` and `db.dbo.` / `db..` prefixes (one schema per database here); in
/// `dbo.t.c` only the schema goes.
pub(crate) fn strip_schema(toks: &[Tok]) -> Vec<Tok> {
    let is_dbo = |t: Option<&Tok>| {
        t.and_then(Tok::ident)
            .is_some_and(|n| n.eq_ignore_ascii_case("dbo"))
    };
    let dot = |t: Option<&Tok>| t.is_some_and(|t| t.is_sym("."));
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let after_dot = i > 0 && toks[i - 1].is_sym(".");
        if !after_dot && is_ident(Some(t)) && !t.is_kw("INFORMATION_SCHEMA") && !t.is_kw("sys") {
            // db..t
            if dot(toks.get(i + 1)) && dot(toks.get(i + 2)) && is_ident(toks.get(i + 3)) {
                i += 3;
                continue;
            }
            // db.dbo.t
            if !is_dbo(Some(t))
                && dot(toks.get(i + 1))
                && is_dbo(toks.get(i + 2))
                && dot(toks.get(i + 3))
                && is_ident(toks.get(i + 4))
            {
                i += 4;
                continue;
            }
            // dbo.t, dbo.t.c
            if is_dbo(Some(t)) && dot(toks.get(i + 1)) && is_ident(toks.get(i + 2)) {
                i += 2;
                continue;
            }
        }
        out.push(t.clone());
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Cx;
    impl Context for Cx {
        fn param(&self, name: &str) -> Option<String> {
            (name == "@P1").then(|| "42".to_string())
        }
        fn rowcount(&self) -> i64 {
            3
        }
        fn trancount(&self) -> i64 {
            0
        }
        fn database(&self) -> &str {
            "tienda_01"
        }
        fn table_exists(&self, name: &str) -> bool {
            name == "ventas"
        }
    }

    fn tr(sql: &str) -> String {
        let toks = tokenize(sql).unwrap();
        translate(&toks, &Cx).unwrap()
    }

    #[test]
    fn binary_literals_become_blobs() {
        assert_eq!(
            tr("INSERT INTO t VALUES (0x00FF, 0x, 12)"),
            "INSERT INTO t VALUES(from_hex('00FF'), from_hex(''), 12)"
        );
    }

    #[test]
    fn identifiers_literals_and_parameters() {
        assert_eq!(
            tr("SELECT [a b], N'it''s' FROM [dbo].[t] WHERE x = @P1"),
            "SELECT \"a b\", 'it''s' FROM \"t\" WHERE x = 42"
        );
    }

    #[test]
    fn top_and_offset_fetch() {
        assert_eq!(
            tr("SELECT TOP (5) a FROM t ORDER BY a"),
            "SELECT a FROM t ORDER BY a LIMIT 5"
        );
        assert_eq!(
            tr("SELECT a FROM t WHERE a IN (SELECT TOP 1 b FROM u) "),
            "SELECT a FROM t WHERE a IN(SELECT b FROM u LIMIT 1)"
        );
        assert_eq!(
            tr("SELECT a FROM t ORDER BY a OFFSET 10 ROWS FETCH NEXT 5 ROWS ONLY"),
            "SELECT a FROM t ORDER BY a OFFSET 10 LIMIT 5"
        );
    }

    #[test]
    fn schema_prefixes_go() {
        assert_eq!(
            tr(
                "DELETE FROM [dbo].[v] WHERE EXISTS (SELECT 1 FROM [#s] AS [s] WHERE [s].[id] = [dbo].[v].[id])"
            ),
            "DELETE FROM \"v\" WHERE EXISTS(SELECT 1 FROM \"#s\" AS \"s\" WHERE \"s\".\"id\" = \"v\".\"id\")"
        );
        assert_eq!(
            tr("SELECT * FROM tienda_01.dbo.t JOIN tienda_01..u ON 1 = 1"),
            "SELECT * FROM t JOIN u ON 1 = 1"
        );
    }

    #[test]
    fn casts_and_functions() {
        assert_eq!(
            tr("SELECT CAST(x AS nvarchar(max)), ISNULL(a, 0)"),
            "SELECT CAST(x AS VARCHAR), coalesce(a, 0)"
        );
        assert_eq!(
            tr("SELECT CONVERT(datetime2(3), x, 121)"),
            "SELECT CAST(x AS TIMESTAMP)"
        );
        assert_eq!(tr("SELECT DB_NAME(), @@ROWCOUNT"), "SELECT 'tienda_01', 3");
        assert_eq!(tr("SELECT OBJECT_ID(N'dbo.ventas', N'U')"), "SELECT 1001");
    }

    #[test]
    fn merge_set_targets_lose_their_qualifier() {
        let sql = tr(
            "MERGE INTO t WITH (HOLDLOCK) AS T USING #s AS S ON T.id = S.id WHEN MATCHED THEN UPDATE SET T.a = S.a, T.b = S.b WHEN NOT MATCHED THEN INSERT (id, a) VALUES (S.id, S.a);",
        );
        assert!(sql.contains("UPDATE SET a = S.a, b = S.b WHEN"), "{sql}");
        assert!(sql.contains("USING \"#s\" AS S"), "{sql}");
        assert!(!sql.contains("HOLDLOCK"), "{sql}");
    }

    #[test]
    fn batches_split_on_keywords_and_semicolons() {
        let toks = tokenize(
            "SET NOCOUNT ON\nUPDATE t SET a = 1 WHERE id = 2\nIF @@ROWCOUNT = 0 INSERT INTO t (id, a) SELECT 2, 1\nSELECT a FROM t UNION ALL SELECT b FROM u; DROP TABLE IF EXISTS x",
        )
        .unwrap();
        let stmts = parse_batch(&toks).unwrap();
        assert_eq!(stmts.len(), 5, "{stmts:?}");
        assert!(matches!(&stmts[2], Stmt::If { .. }));
    }

    #[test]
    fn select_items_tell_columns_from_expressions() {
        let toks = tokenize(
            "SELECT TOP (@P1) [a], t.b AS c, CAST([m] AS decimal(19,4)) AS [m], COUNT(*), * FROM t",
        )
        .unwrap();
        assert_eq!(
            select_items(&toks).unwrap(),
            [
                SelectItem::Column("a".into()),
                SelectItem::Column("b".into()),
                SelectItem::Cast(SqlType::Decimal {
                    precision: 19,
                    scale: 4
                }),
                SelectItem::Expr,
                SelectItem::Star,
            ]
        );
    }

    #[test]
    fn unclosed_string_is_an_error() {
        assert!(tokenize("SELECT 'abc").is_err());
    }
}
