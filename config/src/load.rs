//! From text to a validated [`Pipeline`]: parse, then check every rule between settings.
//!
//! Two stages. First serde parses the text into the `Raw*` structs below (`deny_unknown_fields`
//! everywhere); unknown keys, wrong types and values that check themselves (`values.rs`) fail
//! here, one error, positioned by the TOML parser. Then [`build`] checks the rules that involve
//! several settings, resolves secrets and turns raw structs into the public types; it keeps going
//! after a problem so that one run reports them all. Fields that later rules point at are kept
//! as `Spanned<T>` for their byte range, which [`Checker::at`] turns into `line:column`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::connection::{self, RawSettings};
use crate::error::{ConfigError, Location, Result};
use crate::glob;
use crate::journal::{DEFAULT_SEGMENT_SIZE, DEFAULT_SYNC_INTERVAL, Durability, JournalSettings};
use crate::pipeline::Pipeline;
use crate::position::LineIndex;
use crate::retry::{Backoff, RetryPolicy};
use crate::schedule::{CronSchedule, Schedule, ScheduleTime};
use crate::secret::Secret;
use crate::stream::{DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_ROWS, DEFAULT_SOURCE_COLUMN, Mode, Stream};
use crate::values::{ByteSize, CronExpr, Fraction, HumanDuration, Positive, StringList};

/// The whole file as written. This and the `Raw*` structs below are the file format's
/// reference: each field's comment gives its meaning and default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a pipeline file")]
struct RawFile {
    /// `[pipeline]`: required.
    pipeline: Spanned<RawPipeline>,
    /// `[journal]`: optional; every field has a default.
    #[serde(default)]
    journal: RawJournal,
    /// `[connections.NAME]` tables, each with `connector` and the connector's own settings.
    /// Default: none (but every stream needs some).
    #[serde(default)]
    connections: BTreeMap<Spanned<String>, Spanned<RawSettings>>,
    /// `[[streams]]`: at least one is required.
    #[serde(default)]
    streams: Vec<Spanned<RawStream>>,
    /// `[retry]`: the pipeline's retry policy; every field has a default.
    #[serde(default)]
    retry: RawRetry,
    /// `[schedule]`: optional; without it the pipeline runs only when asked.
    schedule: Option<Spanned<RawSchedule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table: [pipeline]")]
struct RawPipeline {
    /// The pipeline's identity in the journal and in sinks' offset rows. Required.
    name: Spanned<String>,
    /// Free text for people. Default: none.
    description: Option<String>,
    /// A directory searched for connector plugins before `CAUDAL_PLUGIN_PATH` and the
    /// directory of the `caudal` binary, relative to this file. Default: none.
    plugin_dir: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table: [journal]")]
struct RawJournal {
    /// The journal directory, relative to this file. Default `"journal"`.
    dir: Option<Spanned<String>>,
    /// `always`, `batch`, `interval` or `never`. Default `"batch"` (group commit).
    durability: Option<Spanned<DurabilityName>>,
    /// The longest time between syncs with `durability = "interval"` (and only then).
    /// Default `"100ms"`.
    interval: Option<Spanned<HumanDuration>>,
    /// Segment files are rotated at this size. Default `"64 MiB"`.
    segment_size: Option<ByteSize>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum DurabilityName {
    Always,
    Batch,
    Interval,
    Never,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table: [[streams]]")]
struct RawStream {
    /// The stream's name, unique in the pipeline. Default: `table`.
    name: Option<Spanned<String>>,
    /// Source connections: a name, a pattern (`tienda_*`) or a list of either. Required.
    from: Spanned<StringList>,
    /// The table read from each source when there is no `query`, and the table written in
    /// each destination. Required.
    table: Spanned<String>,
    /// A query run on each source instead of reading `table`. Default: none.
    query: Option<Spanned<String>>,
    /// Destination connections: a name or a list of names. Required, not empty.
    to: Spanned<StringList>,
    /// `snapshot`, `incremental`, `merge` or `consolidate`. Default `"snapshot"`.
    mode: Option<Spanned<Mode>>,
    /// The column an incremental read continues from. Required by `incremental`, refused by
    /// `snapshot`, optional otherwise. Default: none.
    cursor: Option<Spanned<String>>,
    /// Key columns: a name or a list. Required by `merge`. Default: none.
    primary_key: Option<Spanned<StringList>>,
    /// In `consolidate` mode (only), the column that receives each row's source connection
    /// name. Default `"_source"`.
    source_column: Option<Spanned<String>>,
    /// The most rows per batch. Default 20000.
    chunk_rows: Option<Positive>,
    /// The most bytes per batch, an integer or e.g. `"8 MiB"`. Default `"8 MiB"`.
    chunk_bytes: Option<ByteSize>,
    /// Overrides of single `[retry]` fields for this stream. Default: none.
    #[serde(default)]
    retry: RawRetry,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, expecting = "a table of retry settings")]
struct RawRetry {
    /// Attempts in all, the first included. Default 3.
    max_attempts: Option<Spanned<Positive>>,
    /// The wait before a retry, e.g. `"20m"`, `"200ms"`. Default `"1m"`.
    every: Option<Spanned<HumanDuration>>,
    /// `fixed` or `exponential`. Default `"fixed"`.
    backoff: Option<Spanned<Backoff>>,
    /// Random spread of each wait, from 0 to 1. Default 0.
    jitter: Option<Fraction>,
    /// The cap of exponential waits (exponential only). Default `"1h"`, or `every` if longer.
    max_delay: Option<Spanned<HumanDuration>>,
}

impl RawRetry {
    /// `self` with every field `over` sets replaced by `over`'s.
    fn overridden_by(&self, over: &RawRetry) -> RawRetry {
        RawRetry {
            max_attempts: over
                .max_attempts
                .clone()
                .or_else(|| self.max_attempts.clone()),
            every: over.every.clone().or_else(|| self.every.clone()),
            backoff: over.backoff.clone().or_else(|| self.backoff.clone()),
            jitter: over.jitter.or(self.jitter),
            max_delay: over.max_delay.clone().or_else(|| self.max_delay.clone()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table: [schedule]")]
struct RawSchedule {
    /// A cron expression in local time, e.g. `"0 5 * * *"`. Default: none.
    cron: Option<Spanned<CronExpr>>,
    /// A fixed period between runs, e.g. `"3d"`. Default: none.
    every: Option<Spanned<HumanDuration>>,
    /// A single run at a TOML datetime, local unless an offset is written. Default: none.
    once: Option<Spanned<toml::value::Datetime>>,
    /// With `every` only: the first run. Default: when `caudal serve` starts.
    start: Option<Spanned<toml::value::Datetime>>,
}

/// Where validation problems go, with what turning byte ranges into positions needs.
pub(crate) struct Checker<'a> {
    file: &'a Path,
    lines: LineIndex<'a>,
    base_dir: &'a Path,
    env: &'a dyn Fn(&str) -> Option<OsString>,
    errors: Vec<ConfigError>,
    secrets: Vec<String>,
}

impl Checker<'_> {
    /// The position where a span starts.
    pub(crate) fn at(&self, span: &Range<usize>) -> Location {
        self.lines.start(span)
    }

    /// The position of byte `offset` inside the string value written at `span`. Exact for
    /// one-line strings without escapes; otherwise the value's start, which is never wrong.
    pub(crate) fn at_string_offset(&self, span: &Range<usize>, offset: usize) -> Location {
        let raw = self.lines.slice(span).unwrap_or("");
        let simple = !raw.starts_with("\"\"\"")
            && !raw.starts_with("'''")
            && (raw.starts_with('\'') || (raw.starts_with('"') && !raw.contains('\\')));
        if simple {
            self.lines.location(span.start + 1 + offset)
        } else {
            self.at(span)
        }
    }

    /// The pipeline file's directory, against which relative paths resolve.
    pub(crate) fn base_dir(&self) -> &Path {
        self.base_dir
    }

    /// Records a rule broken at `span`.
    pub(crate) fn invalid(&mut self, span: &Range<usize>, message: String) {
        let location = self.at(span);
        self.invalid_at(location, message);
    }

    /// Records a rule broken at `location`.
    pub(crate) fn invalid_at(&mut self, location: Location, message: String) {
        self.errors.push(ConfigError::Invalid {
            file: self.file.to_path_buf(),
            location,
            message,
        });
    }

    /// Checks a pipeline, connection or stream name; records the problem and returns false if
    /// it is not one.
    pub(crate) fn check_name(&mut self, name: &Spanned<String>, what: &str) -> bool {
        let valid = is_name(name.get_ref());
        if !valid {
            self.invalid(
                &name.span(),
                format!(
                    "`{}` is not a valid {what} name: use letters, digits, `_`, `-` and `.`",
                    name.get_ref()
                ),
            );
        }
        valid
    }

    /// Looks up an environment variable for setting `path`; records the problem if it is unset
    /// or not UTF-8. The value is never part of an error.
    pub(crate) fn env_var(&mut self, path: &str, var: &str, location: Location) -> Option<String> {
        match (self.env)(var).map(OsString::into_string) {
            Some(Ok(value)) => Some(value),
            Some(Err(_)) => {
                self.invalid_at(
                    location,
                    format!("environment variable `{var}` (used by `{path}`) is not valid UTF-8"),
                );
                None
            }
            None => {
                self.errors.push(ConfigError::MissingEnv {
                    file: self.file.to_path_buf(),
                    location,
                    key: path.to_owned(),
                    var: var.to_owned(),
                });
                None
            }
        }
    }

    /// Reads a `file:` secret (relative to the pipeline file), trailing newlines removed.
    pub(crate) fn read_secret_file(
        &mut self,
        key: &str,
        file: &str,
        location: Location,
    ) -> Option<String> {
        if file.trim().is_empty() {
            self.invalid_at(location, format!("`{key}` says `file:` but names no file"));
            return None;
        }
        let path = self.base_dir.join(file);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(cause) => {
                self.errors.push(ConfigError::SecretFile {
                    file: self.file.to_path_buf(),
                    location,
                    key: key.to_owned(),
                    path,
                    cause,
                });
                return None;
            }
        };
        match String::from_utf8(bytes) {
            Ok(text) => Some(text.trim_end_matches(['\n', '\r']).to_owned()),
            Err(_) => {
                self.invalid_at(
                    location,
                    format!(
                        "secret file `{}` (used by `{key}`) is not valid UTF-8",
                        path.display()
                    ),
                );
                None
            }
        }
    }

    /// Remembers a secret value so that it can be scrubbed from any text later.
    pub(crate) fn remember_secret(&mut self, value: &str) {
        if value.is_empty() {
            return;
        }
        if let Some(decoded) = crate::secret::percent_decoded(value) {
            self.secrets.push(decoded);
        }
        self.secrets.push(value.to_owned());
    }
}

/// Names of pipelines, connections and streams: letters, digits, `_`, `-`, `.`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A TOML value's type, as users know it, for messages.
pub(crate) fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Parses and validates a pipeline file's text.
pub(crate) fn load(
    text: &str,
    file: &Path,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Pipeline> {
    let lines = LineIndex::new(text);
    let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        file: file.to_path_buf(),
        location: e.span().map_or(Location::START, |span| lines.start(&span)),
        message: with_context(text, e.span(), e.message()),
    })?;
    let mut ck = Checker {
        file,
        lines,
        base_dir,
        env,
        errors: Vec::new(),
        secrets: Vec::new(),
    };
    let pipeline = build(&mut ck, raw);
    if ck.errors.is_empty()
        && let Some(mut pipeline) = pipeline
    {
        pipeline.secrets = sorted_secrets(ck.secrets)
            .into_iter()
            .map(Secret::new)
            .collect();
        return Ok(pipeline);
    }
    let mut seen = BTreeSet::new();
    let errors = ck
        .errors
        .into_iter()
        .filter(|e| seen.insert(e.to_string()))
        .collect();
    Err(ConfigError::from_list(errors))
}

/// Completes the parser's message with what it leaves out: the key a bad value belongs to, the
/// table a missing key belongs in, and advice where the fix is not obvious.
fn with_context(text: &str, span: Option<Range<usize>>, message: &str) -> String {
    let message = message.trim_end();
    if message.contains("invalid type: map, expected a sequence") {
        return format!("{message}; write each stream as its own [[streams]] table");
    }
    if message == "missing field `pipeline`" {
        return format!("{message}; the file needs a [pipeline] table with a `name`");
    }
    // Spans fall on token boundaries; `get` keeps a surprise from becoming a panic.
    let Some((before_all, after_all)) =
        span.and_then(|s| Some((text.get(..s.start)?, text.get(s.start..)?)))
    else {
        return message.to_owned();
    };
    let before = before_all.rsplit('\n').next().unwrap_or_default();
    let rest_of_line = after_all.split('\n').next().unwrap_or_default();
    if message == "duplicate key" {
        let key: String = rest_of_line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            .collect();
        if !key.is_empty() {
            return format!("duplicate key `{key}`: it is already set in this table");
        }
    }
    let header = format!("{before}{rest_of_line}");
    let header = header.split('#').next().unwrap_or_default().trim();
    if message.starts_with("missing field") && header.starts_with('[') {
        return format!("{message} in {header}");
    }
    match key_before(before) {
        Some(key) if !message.contains(&format!("`{key}`")) => format!("`{key}`: {message}"),
        _ => message.to_owned(),
    }
}

/// The key of `key = value` when `before` is the line's text up to the value.
fn key_before(before: &str) -> Option<&str> {
    let before = before.trim_end().strip_suffix('=')?.trim_end();
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"');
    let key = before.trim_start_matches(|c: char| !is_key_char(c));
    let start = key
        .char_indices()
        .rev()
        .find(|&(_, c)| !is_key_char(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let key = key[start..].trim_matches('"');
    (!key.is_empty()).then_some(key)
}

/// Longest first, so that scrubbing a secret that contains another removes all of it.
fn sorted_secrets(mut secrets: Vec<String>) -> Vec<String> {
    secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    secrets.dedup();
    secrets
}

fn build(ck: &mut Checker<'_>, raw: RawFile) -> Option<Pipeline> {
    let pipeline_span = raw.pipeline.span();
    let section = raw.pipeline.into_inner();
    let name_ok = ck.check_name(&section.name, "pipeline");
    let plugin_dir = section
        .plugin_dir
        .and_then(|dir| relative_path(ck, &dir, "plugin_dir"));
    let journal = build_journal(ck, raw.journal);

    let mut connections = BTreeMap::new();
    for (name, settings) in &raw.connections {
        if let Some(connection) = connection::build(ck, name, settings) {
            connections.insert(connection.name.clone(), connection);
        }
    }
    // Streams are checked against every connection name, including connections that have
    // problems of their own, so that one mistake is not reported twice.
    let names: Vec<String> = raw
        .connections
        .keys()
        .map(|k| k.get_ref().clone())
        .collect();

    let retry = build_retry(ck, &raw.retry);
    if raw.streams.is_empty() {
        ck.invalid(
            &pipeline_span,
            "the pipeline has no [[streams]]: add at least one with `from`, `table` and `to`"
                .into(),
        );
    }
    let mut streams: Vec<Stream> = Vec::new();
    let mut first_seen: BTreeMap<String, Location> = BTreeMap::new();
    for raw_stream in &raw.streams {
        let Some(stream) = build_stream(ck, raw_stream, &names, &raw.retry) else {
            continue;
        };
        let name_span = raw_stream
            .get_ref()
            .name
            .as_ref()
            .map_or_else(|| raw_stream.get_ref().table.span(), Spanned::span);
        if let Some(first) = first_seen.get(&stream.name) {
            ck.invalid(
                &name_span,
                format!(
                    "stream `{}` is defined twice (first at line {}); give one of them another \
                     `name`",
                    stream.name, first.line
                ),
            );
            continue;
        }
        first_seen.insert(stream.name.clone(), ck.at(&name_span));
        streams.push(stream);
    }
    let schedule = raw.schedule.as_ref().and_then(|s| build_schedule(ck, s));

    Some(Pipeline {
        path: ck.file.to_path_buf(),
        base_dir: ck.base_dir.to_path_buf(),
        name: name_ok.then(|| section.name.into_inner())?,
        description: section.description,
        plugin_dir,
        journal: journal?,
        connections,
        streams,
        retry: retry?,
        schedule,
        secrets: Vec::new(),
    })
}

/// A non-empty path setting, resolved against the pipeline file's directory.
fn relative_path(ck: &mut Checker<'_>, value: &Spanned<String>, key: &str) -> Option<PathBuf> {
    if value.get_ref().trim().is_empty() {
        ck.invalid(&value.span(), format!("`{key}` is empty; give a directory"));
        return None;
    }
    Some(ck.base_dir.join(value.get_ref()))
}

fn build_journal(ck: &mut Checker<'_>, raw: RawJournal) -> Option<JournalSettings> {
    let dir = match &raw.dir {
        Some(dir) => relative_path(ck, dir, "journal.dir")?,
        None => ck.base_dir.join("journal"),
    };
    let name = raw
        .durability
        .as_ref()
        .map_or(DurabilityName::Batch, |d| *d.get_ref());
    let durability = match name {
        DurabilityName::Always => Durability::Always,
        DurabilityName::Batch => Durability::Batch,
        DurabilityName::Never => Durability::Never,
        DurabilityName::Interval => Durability::Interval(
            raw.interval
                .as_ref()
                .map_or(DEFAULT_SYNC_INTERVAL, |i| i.get_ref().0),
        ),
    };
    if let Some(interval) = &raw.interval
        && name != DurabilityName::Interval
    {
        ck.invalid(
            &interval.span(),
            "`interval` only applies to durability = \"interval\"; remove it or set that \
             durability"
                .into(),
        );
        return None;
    }
    Some(JournalSettings {
        dir,
        durability,
        segment_size: raw.segment_size.map_or(DEFAULT_SEGMENT_SIZE, |s| s.0),
    })
}

fn build_retry(ck: &mut Checker<'_>, raw: &RawRetry) -> Option<RetryPolicy> {
    let defaults = RetryPolicy::default();
    let mut ok = true;
    let max_attempts = match &raw.max_attempts {
        None => defaults.max_attempts,
        Some(n) => u32::try_from(n.get_ref().0).unwrap_or_else(|_| {
            ck.invalid(
                &n.span(),
                format!("`max_attempts` must be at most {}", u32::MAX),
            );
            ok = false;
            defaults.max_attempts
        }),
    };
    let backoff = raw
        .backoff
        .as_ref()
        .map_or(defaults.backoff, |b| *b.get_ref());
    let every = raw.every.as_ref().map_or(defaults.every, |e| e.get_ref().0);
    let max_delay = match &raw.max_delay {
        None => defaults.max_delay.max(every),
        Some(max) if backoff != Backoff::Exponential => {
            ck.invalid(
                &max.span(),
                "`max_delay` only applies to backoff = \"exponential\"; remove it or change the \
                 backoff"
                    .into(),
            );
            ok = false;
            max.get_ref().0
        }
        Some(max) if max.get_ref().0 < every => {
            ck.invalid(
                &max.span(),
                format!(
                    "`max_delay` ({}) is shorter than `every` ({}): the first wait would \
                     already exceed it",
                    humantime::format_duration(max.get_ref().0),
                    humantime::format_duration(every)
                ),
            );
            ok = false;
            max.get_ref().0
        }
        Some(max) => max.get_ref().0,
    };
    ok.then_some(RetryPolicy {
        max_attempts,
        every,
        backoff,
        jitter: raw.jitter.map_or(defaults.jitter, |j| j.0),
        max_delay,
    })
}

/// Builds one stream; `connections` are the names sources and destinations must come from.
fn build_stream(
    ck: &mut Checker<'_>,
    raw: &Spanned<RawStream>,
    connections: &[String],
    pipeline_retry: &RawRetry,
) -> Option<Stream> {
    let s = raw.get_ref();
    let mut ok = true;
    let name = match &s.name {
        Some(name) => {
            ok &= ck.check_name(name, "stream");
            name.get_ref().clone()
        }
        None => {
            // The table may be `schema.table` or quoted oddly; only a usable name is a default.
            if !is_name(s.table.get_ref()) && !s.table.get_ref().trim().is_empty() {
                ck.invalid(
                    &s.table.span(),
                    format!(
                        "table `{}` cannot serve as the stream's name; add `name = \"...\"` \
                         (letters, digits, `_`, `-`, `.`)",
                        s.table.get_ref()
                    ),
                );
                ok = false;
            }
            s.table.get_ref().clone()
        }
    };
    ok &= non_empty(ck, &s.table, "table");
    if let Some(query) = &s.query {
        ok &= non_empty(ck, query, "query");
    }
    let sources = expand_sources(ck, &s.from, connections);
    let destinations = check_destinations(ck, &s.to, connections, sources.as_ref().map(|s| &s.1));
    let mode = s.mode.as_ref().map_or(Mode::Snapshot, |m| *m.get_ref());
    let mode_span = s.mode.as_ref().map_or_else(|| raw.span(), Spanned::span);

    let cursor = s.cursor.as_ref().map(|c| {
        ok &= non_empty(ck, c, "cursor");
        c.get_ref().clone()
    });
    let primary_key = match &s.primary_key {
        Some(pk) => check_column_list(ck, pk, "primary_key").unwrap_or_else(|| {
            ok = false;
            Vec::new()
        }),
        None => Vec::new(),
    };
    ok &= check_mode_rules(ck, s, mode, &mode_span, sources.as_ref());
    let source_column = match (&s.source_column, mode) {
        (Some(column), Mode::Consolidate) => {
            ok &= non_empty(ck, column, "source_column");
            Some(column.get_ref().clone())
        }
        (None, Mode::Consolidate) => Some(DEFAULT_SOURCE_COLUMN.to_owned()),
        (Some(column), other) => {
            ck.invalid(
                &column.span(),
                format!(
                    "`source_column` only applies to mode = \"consolidate\" (this stream is \
                     \"{other}\"); remove it"
                ),
            );
            ok = false;
            None
        }
        (None, _) => None,
    };
    let retry = build_retry(ck, &pipeline_retry.overridden_by(&s.retry));

    let (from, sources, partitioned) = sources?;
    Some(Stream {
        name,
        location: ck.at(&raw.span()),
        from,
        sources,
        partitioned,
        table: s.table.get_ref().clone(),
        query: s.query.as_ref().map(|q| q.get_ref().clone()),
        destinations: destinations?,
        mode,
        cursor,
        primary_key,
        source_column,
        chunk_rows: s.chunk_rows.map_or(DEFAULT_CHUNK_ROWS, |n| n.0),
        chunk_bytes: s.chunk_bytes.map_or(DEFAULT_CHUNK_BYTES, |n| n.0),
        retry: retry?,
    })
    .filter(|_| ok)
}

fn non_empty(ck: &mut Checker<'_>, value: &Spanned<String>, key: &str) -> bool {
    let empty = value.get_ref().trim().is_empty();
    if empty {
        ck.invalid(&value.span(), format!("`{key}` is empty"));
    }
    !empty
}

/// Column names: non-empty, no duplicates, at least one.
fn check_column_list(
    ck: &mut Checker<'_>,
    list: &Spanned<StringList>,
    key: &str,
) -> Option<Vec<String>> {
    let columns = &list.get_ref().0;
    let mut seen = BTreeSet::new();
    let problem = if columns.is_empty() {
        Some(format!("`{key}` is empty; name at least one column"))
    } else if columns.iter().any(|c| c.trim().is_empty()) {
        Some(format!("`{key}` contains an empty column name"))
    } else {
        columns
            .iter()
            .find(|c| !seen.insert(c.as_str()))
            .map(|c| format!("`{key}` names column `{c}` twice"))
    };
    match problem {
        Some(message) => {
            ck.invalid(&list.span(), message);
            None
        }
        None => Some(columns.clone()),
    }
}

/// `from` as written, the connections it names (sorted, unique), and whether it is partitioned.
type Sources = (Vec<String>, Vec<String>, bool);

fn expand_sources(
    ck: &mut Checker<'_>,
    from: &Spanned<StringList>,
    connections: &[String],
) -> Option<Sources> {
    let entries = &from.get_ref().0;
    if entries.is_empty() {
        ck.invalid(
            &from.span(),
            "`from` is empty; name a connection or a pattern such as \"tienda_*\"".into(),
        );
        return None;
    }
    let mut sources = BTreeSet::new();
    let mut ok = true;
    for entry in entries {
        if entry.trim().is_empty() {
            ck.invalid(
                &from.span(),
                "`from` contains an empty connection name".into(),
            );
            ok = false;
        } else if glob::is_pattern(entry) {
            if let Err(message) = glob::check(entry) {
                ck.invalid(&from.span(), format!("in `from`: {message}"));
                ok = false;
                continue;
            }
            let mut matched = false;
            for name in connections.iter().filter(|n| glob::matches(entry, n)) {
                matched = true;
                sources.insert(name.clone());
            }
            if !matched {
                ck.invalid(
                    &from.span(),
                    format!(
                        "`from` pattern `{entry}` matches no connection{}",
                        defined_list(connections)
                    ),
                );
                ok = false;
            }
        } else if connections.contains(entry) {
            sources.insert(entry.clone());
        } else {
            ck.invalid(
                &from.span(),
                format!(
                    "`from` names connection `{entry}`, which is not defined{}",
                    suggestion(entry, connections)
                ),
            );
            ok = false;
        }
    }
    let partitioned = entries.len() > 1 || entries.iter().any(|e| glob::is_pattern(e));
    ok.then(|| (entries.clone(), sources.into_iter().collect(), partitioned))
}

fn check_destinations(
    ck: &mut Checker<'_>,
    to: &Spanned<StringList>,
    connections: &[String],
    sources: Option<&Vec<String>>,
) -> Option<Vec<String>> {
    let entries = &to.get_ref().0;
    if entries.is_empty() {
        ck.invalid(
            &to.span(),
            "`to` is empty; name at least one destination connection".into(),
        );
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut ok = true;
    for entry in entries {
        let problem = if glob::is_pattern(entry) {
            Some(format!(
                "`to` takes connection names, not patterns: `{entry}`"
            ))
        } else if !connections.contains(entry) {
            Some(format!(
                "`to` names connection `{entry}`, which is not defined{}",
                suggestion(entry, connections)
            ))
        } else if !seen.insert(entry.as_str()) {
            Some(format!("`to` names `{entry}` twice"))
        } else if sources.is_some_and(|s| s.contains(entry)) {
            Some(format!(
                "`{entry}` is both a source (`from`) and a destination (`to`) of this stream"
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            ck.invalid(&to.span(), message);
            ok = false;
        }
    }
    ok.then(|| entries.clone())
}

/// What each mode needs; returns false after recording a problem.
fn check_mode_rules(
    ck: &mut Checker<'_>,
    s: &RawStream,
    mode: Mode,
    mode_span: &Range<usize>,
    sources: Option<&Sources>,
) -> bool {
    let several = sources.is_some_and(|(_, names, _)| names.len() > 1);
    let message = match mode {
        Mode::Incremental if s.cursor.is_none() => Some((
            mode_span.clone(),
            "mode = \"incremental\" needs `cursor`, the column whose last value the next run \
             starts after (e.g. cursor = \"fecha\")"
                .to_owned(),
        )),
        Mode::Merge if s.primary_key.is_none() => Some((
            mode_span.clone(),
            "mode = \"merge\" needs `primary_key`, the columns rows are upserted and deleted by \
             (e.g. primary_key = [\"id\"])"
                .to_owned(),
        )),
        Mode::Snapshot if s.cursor.is_some() => Some((
            s.cursor
                .as_ref()
                .map_or_else(|| mode_span.clone(), Spanned::span),
            "`cursor` has no effect with mode = \"snapshot\", which copies the whole table; \
             use mode = \"incremental\" to continue from a cursor, or remove `cursor`"
                .to_owned(),
        )),
        Mode::Snapshot if several => Some((
            s.from.span(),
            "mode = \"snapshot\" replaces the whole destination table, so it takes one source; \
             `from` names several. Use mode = \"consolidate\" to combine them"
                .to_owned(),
        )),
        Mode::Consolidate
            if sources.is_some_and(|(from, _, partitioned)| !partitioned && from.len() == 1) =>
        {
            Some((
                s.from.span(),
                "mode = \"consolidate\" combines several sources: give `from` a list of \
                 connections or a pattern such as \"restaurante_*\""
                    .to_owned(),
            ))
        }
        _ => None,
    };
    match message {
        Some((span, message)) => {
            ck.invalid(&span, message);
            false
        }
        None => true,
    }
}

/// " (did you mean `x`?)" for a near miss, else the defined names.
fn suggestion(name: &str, connections: &[String]) -> String {
    let closest = connections
        .iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min();
    match closest {
        Some((_, c)) => format!(" (did you mean `{c}`?)"),
        None => defined_list(connections),
    }
}

fn defined_list(connections: &[String]) -> String {
    const SHOWN: usize = 8;
    if connections.is_empty() {
        return "; no [connections.NAME] is defined".into();
    }
    let mut names: Vec<String> = connections
        .iter()
        .take(SHOWN)
        .map(|c| format!("`{c}`"))
        .collect();
    if connections.len() > SHOWN {
        names.push(format!("and {} more", connections.len() - SHOWN));
    }
    format!("; defined: {}", names.join(", "))
}

/// Levenshtein distance, for "did you mean" on short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn build_schedule(ck: &mut Checker<'_>, raw: &Spanned<RawSchedule>) -> Option<Schedule> {
    let s = raw.get_ref();
    let set: Vec<(&str, Range<usize>)> = [
        s.cron.as_ref().map(|c| ("cron", c.span())),
        s.every.as_ref().map(|e| ("every", e.span())),
        s.once.as_ref().map(|o| ("once", o.span())),
    ]
    .into_iter()
    .flatten()
    .collect();
    match set.as_slice() {
        [] => {
            ck.invalid(
                &raw.span(),
                "[schedule] needs one of `cron` (e.g. \"0 5 * * *\"), `every` (e.g. \"3d\") or \
                 `once` (e.g. 2025-01-10T20:00:00)"
                    .into(),
            );
            return None;
        }
        [_] => {}
        [(first, _), (second, span), ..] => {
            ck.invalid(
                span,
                format!("[schedule] sets both `{first}` and `{second}`; keep exactly one"),
            );
            return None;
        }
    }
    if let (Some(start), None) = (&s.start, &s.every) {
        ck.invalid(
            &start.span(),
            "`start` only applies with `every`; remove it".into(),
        );
        return None;
    }
    if let Some(cron) = &s.cron {
        let CronExpr { text, cron } = cron.get_ref().clone();
        return Some(Schedule::Cron(CronSchedule { text, cron }));
    }
    if let Some(every) = &s.every {
        let start = match &s.start {
            Some(start) => Some(schedule_time(ck, start, "start")?),
            None => None,
        };
        return Some(Schedule::Every {
            period: every.get_ref().0,
            start,
        });
    }
    let once = s.once.as_ref()?;
    schedule_time(ck, once, "once").map(Schedule::Once)
}

/// A TOML datetime that has both a date and a time of day.
fn schedule_time(
    ck: &mut Checker<'_>,
    value: &Spanned<toml::value::Datetime>,
    key: &str,
) -> Option<ScheduleTime> {
    let dt = value.get_ref();
    let converted = match (dt.date, dt.time) {
        (Some(date), Some(time)) => convert_datetime(date, time, dt.offset),
        _ => Err(format!(
            "`{key}` needs a date and a time of day, e.g. {key} = 2025-01-10T20:00:00 (local \
             time) or 2025-01-10T20:00:00-04:00"
        )),
    };
    match converted {
        Ok(time) => Some(time),
        Err(message) => {
            ck.invalid(&value.span(), message);
            None
        }
    }
}

fn convert_datetime(
    date: toml::value::Date,
    time: toml::value::Time,
    offset: Option<toml::value::Offset>,
) -> std::result::Result<ScheduleTime, String> {
    let month = time::Month::try_from(date.month).map_err(|e| e.to_string())?;
    let date = time::Date::from_calendar_date(i32::from(date.year), month, date.day)
        .map_err(|e| format!("invalid date: {e}"))?;
    let time = time::Time::from_hms_nano(
        time.hour,
        time.minute,
        time.second.unwrap_or(0),
        time.nanosecond.unwrap_or(0),
    )
    .map_err(|e| format!("invalid time of day: {e}"))?;
    let offset = match offset {
        None => None,
        Some(toml::value::Offset::Z) => Some(time::UtcOffset::UTC),
        Some(toml::value::Offset::Custom { minutes }) => Some(
            time::UtcOffset::from_whole_seconds(i32::from(minutes) * 60)
                .map_err(|e| format!("invalid offset: {e}"))?,
        ),
    };
    Ok(ScheduleTime {
        datetime: time::PrimitiveDateTime::new(date, time),
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_before_finds_the_key_of_a_value() {
        assert_eq!(key_before("chunk_rows = "), Some("chunk_rows"));
        assert_eq!(
            key_before("retry = { max_attempts = 5, jitter ="),
            Some("jitter")
        );
        assert_eq!(key_before("\"every\" = "), Some("every"));
        // A multi-byte character right before the key must not split a character.
        assert_eq!(key_before("x = { ñ\"name\" = "), Some("name"));
        assert_eq!(key_before("[pipeline]"), None);
        assert_eq!(key_before("= "), None);
    }

    #[test]
    fn edit_distance_suggests_near_misses_only() {
        assert_eq!(edit_distance("tienda_1", "tienda_01"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        let names = vec!["tienda_01".to_owned(), "warehouse".to_owned()];
        assert_eq!(
            suggestion("warehose", &names),
            " (did you mean `warehouse`?)"
        );
        assert_eq!(
            suggestion("duckdb", &names),
            "; defined: `tienda_01`, `warehouse`"
        );
        let many: Vec<String> = (1..=16).map(|i| format!("tienda_{i:02}")).collect();
        assert!(suggestion("almacen", &many).ends_with("and 8 more"));
    }
}
