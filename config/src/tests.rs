//! Unit tests: TOML snippets, valid and invalid, through the whole load path.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Backoff, ConfigError, Durability, Location, Mode, Pipeline, Schedule};

const ORIGIN: &str = "/srv/caudal/pipelines/test.toml";
const PASSWORD: &str = "s3cr3t-P4ss!word";

fn env(var: &str) -> Option<OsString> {
    let vars: HashMap<&str, &str> = [
        ("DB_PASSWORD", PASSWORD),
        ("DB_USER", "etl"),
        ("SECRETS_DIR", "secrets"),
        ("EMPTY", ""),
    ]
    .into_iter()
    .collect();
    vars.get(var).map(OsString::from)
}

fn parse(text: &str) -> crate::Result<Pipeline> {
    Pipeline::from_str_with_env(text, Path::new(ORIGIN), env)
}

fn parse_ok(text: &str) -> Pipeline {
    match parse(text) {
        Ok(p) => p,
        Err(e) => panic!("expected a valid pipeline, got:\n{e}"),
    }
}

/// The error's text; every line must start with the file and a position.
fn parse_err(text: &str) -> String {
    let err = parse(text).expect_err("expected the pipeline to be refused");
    let shown = err.to_string();
    for line in shown.lines() {
        assert!(
            line.starts_with(&format!("{ORIGIN}:")),
            "no file:line:col in {line:?}"
        );
    }
    shown
}

/// Asserts one problem, at `line:column`, whose message contains `fragment`.
fn assert_error(text: &str, line: usize, column: usize, fragment: &str) {
    let err = parse(text).expect_err("expected the pipeline to be refused");
    assert_eq!(
        err.problems().len(),
        1,
        "expected exactly one problem, got:\n{err}"
    );
    let shown = err.to_string();
    assert_eq!(
        err.location(),
        Some(Location { line, column }),
        "wrong position for:\n{shown}"
    );
    assert!(
        shown.starts_with(&format!("{ORIGIN}:{line}:{column}: ")),
        "bad prefix: {shown}"
    );
    assert!(
        shown.contains(fragment),
        "{shown:?} does not contain {fragment:?}"
    );
}

/// A valid two-connection pipeline, with room for more lines at the end.
const BASE: &str = r#"[pipeline]
name = "test"

[connections.src]
connector = "mysql"
url = "mysql://root@127.0.0.1:3306/shop"

[connections.dst]
connector = "duckdb"
path = "data/out.duckdb"
"#;

fn with_stream(stream: &str) -> String {
    format!("{BASE}\n[[streams]]\n{stream}")
}

#[test]
fn minimal_pipeline_gets_every_default() {
    let p = parse_ok(&with_stream(
        "from = \"src\"\ntable = \"orders\"\nto = \"dst\"\n",
    ));
    assert_eq!(p.name(), "test");
    assert_eq!(p.description(), None);
    assert_eq!(p.plugin_dir(), None);
    assert_eq!(p.path(), Path::new(ORIGIN));
    assert_eq!(p.dir(), Path::new("/srv/caudal/pipelines"));
    assert_eq!(
        p.journal_dir(),
        PathBuf::from("/srv/caudal/pipelines/journal")
    );
    assert_eq!(p.journal().durability(), Durability::Batch);
    assert_eq!(p.journal().segment_size(), 64 << 20);
    assert!(p.schedule().is_none());
    let retry = p.retry();
    assert_eq!(retry.max_attempts, 3);
    assert_eq!(retry.every, Duration::from_secs(60));
    assert_eq!(retry.backoff, Backoff::Fixed);
    assert_eq!(retry.jitter, 0.0);

    let s = &p.streams()[0];
    assert_eq!(s.name(), "orders", "the name defaults to the table");
    assert_eq!(s.table(), "orders");
    assert_eq!(s.query(), None);
    assert_eq!(s.mode(), Mode::Snapshot);
    assert_eq!(s.sources(), ["src"]);
    assert!(!s.is_partitioned());
    assert_eq!(s.destinations(), ["dst"]);
    assert_eq!(s.chunk_rows(), 20_000);
    assert_eq!(s.chunk_bytes(), 8 * 1024 * 1024);
    assert_eq!(s.cursor(), None);
    assert!(s.primary_key().is_empty());
    assert_eq!(s.source_column(), None);
    assert_eq!(s.retry(), p.retry());
    assert_eq!(
        s.location(),
        Location {
            line: 12,
            column: 1
        }
    );
    assert_eq!(p.stream("orders").map(|s| s.table()), Some("orders"));
}

#[test]
fn every_setting_is_read() {
    let text = r#"
[pipeline]
name = "full"
description = "all of it"
plugin_dir = "../plugins"

[journal]
dir = "/var/lib/caudal/journal"
durability = "interval"
interval = "250ms"
segment_size = "16 MiB"

[connections.a]
connector = "mysql"
url = "mysql://root@127.0.0.1/a"

[connections.b]
connector = "mysql"
url = "mysql://root@127.0.0.1/b"

[connections.out]
connector = "my_plugin"
prefix = "x"
extra = { depth = 2, list = [1, 2] }

[[streams]]
name = "lines"
from = ["b", "a"]
table = "order_lines"
query = "SELECT * FROM order_lines WHERE updated > @from"
to = ["out"]
mode = "merge"
cursor = "updated"
primary_key = ["order_id", "line"]
chunk_rows = 500
chunk_bytes = 65536
retry = { max_attempts = 7, backoff = "exponential", max_delay = "10m" }

[retry]
max_attempts = 2
every = "30s"
jitter = 0.5

[schedule]
every = "3d"
start = 2025-01-10T20:00:00
"#;
    let p = parse_ok(text);
    assert_eq!(p.description(), Some("all of it"));
    assert_eq!(
        p.plugin_dir(),
        Some(Path::new("/srv/caudal/pipelines/../plugins"))
    );
    assert_eq!(p.journal_dir(), PathBuf::from("/var/lib/caudal/journal"));
    assert_eq!(
        p.journal().durability(),
        Durability::Interval(Duration::from_millis(250))
    );
    assert_eq!(p.journal().segment_size(), 16 << 20);
    assert_eq!(p.retry().max_attempts, 2);
    assert_eq!(p.retry().jitter, 0.5);

    let s = p.stream("lines").expect("stream `lines`");
    assert_eq!(s.from(), ["b", "a"]);
    assert_eq!(s.sources(), ["a", "b"], "sources are sorted");
    assert!(s.is_partitioned());
    assert_eq!(s.mode(), Mode::Merge);
    assert_eq!(s.cursor(), Some("updated"));
    assert_eq!(s.primary_key(), ["order_id", "line"]);
    assert_eq!(
        s.query(),
        Some("SELECT * FROM order_lines WHERE updated > @from")
    );
    assert_eq!(s.chunk_rows(), 500);
    assert_eq!(s.chunk_bytes(), 65536);
    // The stream overrides three fields and inherits the others from [retry].
    let r = s.retry();
    assert_eq!(r.max_attempts, 7);
    assert_eq!(r.backoff, Backoff::Exponential);
    assert_eq!(r.max_delay, Duration::from_secs(600));
    assert_eq!(r.every, Duration::from_secs(30));
    assert_eq!(r.jitter, 0.5);

    let out = p.connection("out").expect("connection `out`");
    assert_eq!(out.connector(), "my_plugin");
    assert!(!out.is_builtin());
    let config = out.plugin_config().into_exposed();
    assert_eq!(config.get("prefix").and_then(|v| v.as_str()), Some("x"));
    assert_eq!(
        config
            .get("extra")
            .and_then(|v| v.get("depth"))
            .and_then(toml::Value::as_integer),
        Some(2)
    );
    assert!(
        config.get("connector").is_none(),
        "the plugin gets its settings only"
    );

    match p.schedule() {
        Some(Schedule::Every {
            period,
            start: Some(start),
        }) => {
            assert_eq!(*period, Duration::from_secs(3 * 86_400));
            assert_eq!(start.offset, None);
            assert_eq!(start.datetime.to_string(), "2025-01-10 20:00:00.0");
        }
        other => panic!("unexpected schedule {other:?}"),
    }
}

#[test]
fn schedules_cron_once_and_offsets() {
    let cron = parse_ok(&format!(
        "{}\n[schedule]\ncron = \"0 5 * * *\"\n",
        with_stream("from = \"src\"\ntable = \"t\"\nto = \"dst\"\n")
    ));
    match cron.schedule() {
        Some(Schedule::Cron(c)) => {
            assert_eq!(c.as_str(), "0 5 * * *");
            assert_eq!(c.cron().pattern.to_string(), "0 5 * * *");
        }
        other => panic!("unexpected schedule {other:?}"),
    }
    let once = parse_ok(&format!(
        "{}\n[schedule]\nonce = 2025-01-10T20:00:00-04:00\n",
        with_stream("from = \"src\"\ntable = \"t\"\nto = \"dst\"\n")
    ));
    match once.schedule() {
        Some(Schedule::Once(at)) => {
            let instant = at.at_offset(time::UtcOffset::UTC);
            assert_eq!(
                instant.unix_timestamp(),
                1_736_553_600,
                "2025-01-11T00:00:00Z"
            );
        }
        other => panic!("unexpected schedule {other:?}"),
    }
}

#[test]
fn unknown_keys_are_named_with_their_position() {
    assert_error(
        &with_stream("from = \"src\"\ntable = \"t\"\nto = \"dst\"\nchunk_row = 5\n"),
        16,
        1,
        "unknown field `chunk_row`, expected one of",
    );
    assert_error(
        "[pipeline]\nname = \"x\"\nnmae = 1\n",
        3,
        1,
        "unknown field `nmae`",
    );
    // `plugin_dir` belongs in [pipeline]; a top-level key is refused.
    assert_error(
        &format!("plugin_dir = \"p\"\n{BASE}"),
        1,
        1,
        "unknown field `plugin_dir`",
    );
}

#[test]
fn wrong_types_and_values_point_at_the_value() {
    let stream = "from = \"src\"\ntable = \"t\"\nto = \"dst\"\n";
    assert_error(
        &with_stream(&format!("{stream}chunk_rows = \"many\"\n")),
        16,
        14,
        "at least 1",
    );
    assert_error(
        &with_stream(&format!("{stream}chunk_rows = 0\n")),
        16,
        14,
        "must be at least 1",
    );
    assert_error(
        &with_stream(&format!("{stream}chunk_bytes = \"8 MB/s\"\n")),
        16,
        15,
        "unknown unit",
    );
    assert_error(
        &with_stream(&format!("{stream}mode = \"upsert\"\n")),
        16,
        8,
        "unknown variant `upsert`",
    );
    assert_error(
        &with_stream("from = \"src\"\ntable = 5\nto = \"dst\"\n"),
        14,
        9,
        "expected a string",
    );
    assert_error(
        &with_stream("from = \"src\"\ntable = \"t\"\nto = 5\n"),
        15,
        6,
        "a string or an array of strings",
    );
    assert_error(
        &with_stream("from = \"src\"\ntable = \"t\"\nto = [\"dst\", 3]\n"),
        15,
        14,
        "expected a string",
    );
    let retry = |body: &str| format!("{}\n[retry]\n{body}\n", with_stream(stream));
    assert_error(&retry("max_attempts = 0"), 18, 16, "must be at least 1");
    assert_error(
        &retry("every = \"20 minuts\""),
        18,
        9,
        "invalid duration \"20 minuts\"",
    );
    assert_error(&retry("every = \"0s\""), 18, 9, "zero");
    assert_error(&retry("every = 20"), 18, 9, "a duration string");
    assert_error(
        &retry("backoff = \"linear\""),
        18,
        11,
        "unknown variant `linear`",
    );
    assert_error(&retry("jitter = 1.5"), 18, 10, "between 0 and 1");
    let schedule = |body: &str| format!("{}\n[schedule]\n{body}\n", with_stream(stream));
    assert_error(
        &schedule("cron = \"0 25 * * *\""),
        18,
        8,
        "invalid cron expression \"0 25 * * *\"",
    );
    assert_error(
        &schedule("cron = \"every day\""),
        18,
        8,
        "invalid cron expression",
    );
    assert_error(&schedule("once = \"tomorrow\""), 18, 8, "");
}

#[test]
fn missing_keys_point_at_their_table() {
    assert_error(
        &with_stream("from = \"src\"\nto = \"dst\"\n"),
        12,
        1,
        "missing field `table`",
    );
    assert_error(
        "[pipeline]\ndescription = \"d\"\n",
        1,
        1,
        "missing field `name`",
    );
    assert_error("[journal]\ndir = \"j\"\n", 1, 1, "needs a [pipeline] table");
}

#[test]
fn streams_must_name_defined_connections() {
    assert_error(
        &with_stream("from = \"srcc\"\ntable = \"t\"\nto = \"dst\"\n"),
        13,
        8,
        "`from` names connection `srcc`, which is not defined (did you mean `src`?)",
    );
    assert_error(
        &with_stream("from = \"src\"\ntable = \"t\"\nto = \"warehouse\"\n"),
        15,
        6,
        "`to` names connection `warehouse`, which is not defined; defined: `dst`, `src`",
    );
    assert_error(
        &with_stream("from = \"tienda_*\"\ntable = \"t\"\nto = \"dst\"\n"),
        13,
        8,
        "`from` pattern `tienda_*` matches no connection",
    );
    assert_error(
        &with_stream("from = \"t[0-9\"\ntable = \"t\"\nto = \"dst\"\n"),
        13,
        8,
        "without a matching",
    );
    assert_error(
        &with_stream("from = []\ntable = \"t\"\nto = \"dst\"\n"),
        13,
        8,
        "`from` is empty",
    );
    assert_error(
        &with_stream("from = \"src\"\ntable = \"t\"\nto = []\n"),
        15,
        6,
        "`to` is empty",
    );
    assert_error(
        &with_stream("from = \"src\"\ntable = \"t\"\nto = [\"dst\", \"dst\"]\n"),
        15,
        6,
        "`to` names `dst` twice",
    );
    assert_error(
        &with_stream("from = \"src\"\ntable = \"t\"\nto = \"d*\"\n"),
        15,
        6,
        "not patterns",
    );
    assert_error(
        &with_stream("from = \"*\"\ntable = \"t\"\nto = \"dst\"\nmode = \"consolidate\"\n"),
        15,
        6,
        "`dst` is both a source (`from`) and a destination (`to`)",
    );
}

#[test]
fn each_mode_gets_what_it_needs() {
    let three =
        "[connections.r_1]\nconnector = \"mysql\"\n[connections.r_2]\nconnector = \"mysql\"\n";
    let text = |stream: &str| format!("{BASE}{three}\n[[streams]]\n{stream}");
    // Line 16 is `[[streams]]`; the stream's keys follow.
    assert_error(
        &text("from = \"src\"\ntable = \"t\"\nto = \"dst\"\nmode = \"incremental\"\n"),
        20,
        8,
        "mode = \"incremental\" needs `cursor`",
    );
    assert_error(
        &text("from = \"src\"\ntable = \"t\"\nto = \"dst\"\nmode = \"merge\"\n"),
        20,
        8,
        "mode = \"merge\" needs `primary_key`",
    );
    assert_error(
        &text("from = \"src\"\ntable = \"t\"\nto = \"dst\"\nmode = \"consolidate\"\n"),
        17,
        8,
        "mode = \"consolidate\" combines several sources",
    );
    assert_error(
        &text("from = \"r_*\"\ntable = \"t\"\nto = \"dst\"\n"),
        17,
        8,
        "mode = \"snapshot\" replaces the whole destination table, so it takes one source",
    );
    assert_error(
        &text("from = \"src\"\ntable = \"t\"\nto = \"dst\"\ncursor = \"ts\"\n"),
        20,
        10,
        "`cursor` has no effect with mode = \"snapshot\"",
    );
    assert_error(
        &text("from = \"src\"\ntable = \"t\"\nto = \"dst\"\nsource_column = \"origen\"\n"),
        20,
        17,
        "`source_column` only applies to mode = \"consolidate\"",
    );
    assert_error(
        &text(
            "from = \"src\"\ntable = \"t\"\nto = \"dst\"\nmode = \"merge\"\nprimary_key = [\"id\", \"id\"]\n",
        ),
        21,
        15,
        "names column `id` twice",
    );
    assert_error(
        &text("from = \"src\"\ntable = \"t\"\nto = \"dst\"\nmode = \"merge\"\nprimary_key = []\n"),
        21,
        15,
        "`primary_key` is empty",
    );

    let consolidated = parse_ok(&text(
        "from = \"r_*\"\ntable = \"t\"\nto = \"dst\"\nmode = \"consolidate\"\n",
    ));
    let s = &consolidated.streams()[0];
    assert_eq!(s.sources(), ["r_1", "r_2"]);
    assert_eq!(s.source_column(), Some("_source"));
    // A pattern that matches one connection today is still a set of partitions.
    let one = parse_ok(&text(
        "from = \"sr*\"\ntable = \"t\"\nto = \"dst\"\nmode = \"consolidate\"\n",
    ));
    assert_eq!(one.streams()[0].sources(), ["src"]);
    assert!(one.streams()[0].is_partitioned());
    let merge = parse_ok(&text(
        "from = \"src\"\ntable = \"t\"\nto = \"dst\"\nmode = \"merge\"\nprimary_key = \"id\"\n",
    ));
    assert_eq!(merge.streams()[0].primary_key(), ["id"]);
}

#[test]
fn stream_names_are_unique() {
    let twice = format!(
        "{}\n[[streams]]\nfrom = \"src\"\ntable = \"orders\"\nto = \"dst\"\n",
        with_stream("from = \"src\"\ntable = \"orders\"\nto = \"dst\"\n")
    );
    assert_error(
        &twice,
        19,
        9,
        "stream `orders` is defined twice (first at line 14)",
    );
    let renamed = format!(
        "{}\n[[streams]]\nname = \"orders_copy\"\nfrom = \"src\"\ntable = \"orders\"\nto = \"dst\"\n",
        with_stream("from = \"src\"\ntable = \"orders\"\nto = \"dst\"\n")
    );
    assert_eq!(parse_ok(&renamed).streams().len(), 2);
    assert_error(
        &with_stream("name = \"a b\"\nfrom = \"src\"\ntable = \"t\"\nto = \"dst\"\n"),
        13,
        8,
        "`a b` is not a valid stream name",
    );
    assert_error(
        &with_stream("from = \"src\"\ntable = \"my table\"\nto = \"dst\"\n"),
        14,
        9,
        "cannot serve as the stream's name",
    );
}

#[test]
fn retry_rules() {
    let stream = "from = \"src\"\ntable = \"t\"\nto = \"dst\"\n";
    let retry = |body: &str| format!("{}\n[retry]\n{body}\n", with_stream(stream));
    assert_error(
        &retry("max_delay = \"1h\""),
        18,
        13,
        "`max_delay` only applies to backoff = \"exponential\"",
    );
    assert_error(
        &retry("backoff = \"exponential\"\nevery = \"20m\"\nmax_delay = \"1m\""),
        20,
        13,
        "`max_delay` (1m) is shorter than `every` (20m)",
    );
    assert_error(
        &with_stream(&format!("{stream}retry = {{ tries = 3 }}\n")),
        16,
        11,
        "unknown field `tries`",
    );
    let long = parse_ok(&retry("every = \"2h\""));
    assert!(
        long.retry().max_delay >= long.retry().every,
        "the default cap never undercuts every"
    );
}

#[test]
fn schedule_rules() {
    let stream = "from = \"src\"\ntable = \"t\"\nto = \"dst\"\n";
    let schedule = |body: &str| format!("{}\n[schedule]\n{body}\n", with_stream(stream));
    assert_error(&schedule(""), 17, 1, "[schedule] needs one of `cron`");
    assert_error(
        &schedule("cron = \"0 5 * * *\"\nevery = \"1d\""),
        19,
        9,
        "sets both `cron` and `every`",
    );
    assert_error(
        &schedule("cron = \"0 5 * * *\"\nstart = 2025-01-10T20:00:00"),
        19,
        9,
        "`start` only applies with `every`",
    );
    assert_error(
        &schedule("once = 2025-01-10"),
        18,
        8,
        "`once` needs a date and a time of day",
    );
    assert_error(
        &schedule("every = \"1d\"\nstart = 20:00:00"),
        19,
        9,
        "`start` needs a date and a time",
    );
    assert_error(&schedule("every = \"soon\""), 18, 9, "invalid duration");
}

#[test]
fn journal_rules() {
    let stream = "from = \"src\"\ntable = \"t\"\nto = \"dst\"\n";
    let journal = |body: &str| format!("{}\n[journal]\n{body}\n", with_stream(stream));
    assert_error(
        &journal("interval = \"1s\""),
        18,
        12,
        "`interval` only applies to durability = \"interval\"",
    );
    assert_error(
        &journal("durability = \"sometimes\""),
        18,
        14,
        "unknown variant `sometimes`",
    );
    assert_error(&journal("dir = \"\""), 18, 7, "`journal.dir` is empty");
    let default_interval = parse_ok(&journal("durability = \"interval\""));
    assert_eq!(
        default_interval.journal().durability(),
        Durability::Interval(Duration::from_millis(100))
    );
    assert_eq!(
        parse_ok(&journal("durability = \"never\""))
            .journal()
            .durability(),
        Durability::Never
    );
}

#[test]
fn connection_rules() {
    let stream = "\n[[streams]]\nfrom = \"src\"\ntable = \"t\"\nto = \"dst\"\n";
    assert_error(
        &format!("{BASE}[connections.other]\nurl = \"x\"\n{stream}"),
        11,
        14,
        "connection `other` has no `connector`",
    );
    assert_error(
        &format!("{BASE}[connections.other]\nconnector = 3\n{stream}"),
        12,
        13,
        "`connector` must be a connector name",
    );
    assert_error(
        &format!("{BASE}[connections.other]\nconnector = \"mysql\"\nurl = 3306\n{stream}"),
        13,
        7,
        "`connections.other.url` must be a string, not an integer",
    );
    assert_error(
        &format!("{BASE}[connections.\"bad name\"]\nconnector = \"mysql\"\n{stream}"),
        11,
        14,
        "`bad name` is not a valid connection name",
    );
    assert_error(
        &format!("{BASE}[connections]\nsrc2 = 5\n{stream}"),
        12,
        8,
        "expected a map",
    );
}

#[test]
fn structural_mistakes_get_advice() {
    assert_error(
        &format!("{BASE}\n[streams]\nfrom = \"src\"\n"),
        12,
        1,
        "write each stream as its own [[streams]] table",
    );
    assert_error(BASE, 1, 1, "the pipeline has no [[streams]]");
    assert_error("[pipeline\nname = \"x\"\n", 1, 10, "");
    assert_error(
        "[pipeline]\nname = \"x\"\nname = \"y\"\n",
        3,
        1,
        "duplicate key",
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = format!(
        "{BASE}\n[[streams]]\nfrom = \"nowhere\"\ntable = \"t\"\nto = \"dst\"\nmode = \"merge\"\n\
         \n[[streams]]\nfrom = \"src\"\ntable = \"u\"\nto = \"missing\"\n"
    );
    assert_eq!(parse_err(&text).lines().count(), 3, "one line per problem");
    let err = parse(&text).expect_err("three problems");
    let lines: Vec<usize> = err
        .problems()
        .iter()
        .filter_map(ConfigError::line)
        .collect();
    assert_eq!(lines, vec![13, 16, 21], "sorted by position:\n{err}");
    assert_eq!(err.line(), Some(13));
    assert_eq!(err.column(), Some(8));
    assert_eq!(err.file(), Path::new(ORIGIN));
    assert_eq!(err.to_string().lines().count(), 3);
}

#[test]
fn env_references_resolve_and_stay_hidden() {
    let text = format!(
        "{}\n[connections.secure]\nconnector = \"mysql\"\nurl = \"mysql://${{DB_USER}}:${{DB_PASSWORD}}@db:3306/x\"\n",
        with_stream("from = \"src\"\ntable = \"t\"\nto = \"dst\"\n")
    );
    let p = parse_ok(&text);
    let c = p.connection("secure").expect("connection");
    let url = c.setting("url").expect("url");
    assert!(url.is_secret());
    assert_eq!(
        url.location(),
        Location {
            line: 19,
            column: 1
        }
    );
    let config = c.plugin_config().into_exposed();
    assert_eq!(
        config.get("url").and_then(|v| v.as_str()),
        Some(format!("mysql://etl:{PASSWORD}@db:3306/x").as_str())
    );
    assert_eq!(
        c.redacted().get("url").and_then(|v| v.as_str()),
        Some("mysql://***:***@db:3306/x")
    );
    for shown in [
        format!("{p:?}"),
        format!("{c:?}"),
        format!("{:?}", c.plugin_config()),
    ] {
        assert!(!shown.contains(PASSWORD), "secret leaked: {shown}");
    }
    assert_eq!(
        p.scrub(&format!(
            "Access denied for user 'etl'@'x' (using password: {PASSWORD})"
        )),
        "Access denied for user '***'@'x' (using password: ***)"
    );
    assert_eq!(p.scrub("nothing to hide"), "nothing to hide");
}

#[test]
fn missing_env_vars_are_named_at_the_reference() {
    let text = format!(
        "{BASE}url2 = \"mssql://etl:${{TIENDA_01_PASSWORD}}@h/v\"\n\n[[streams]]\nfrom = \"src\"\ntable = \"t\"\nto = \"dst\"\n"
    );
    let err = parse(&text).expect_err("unset variable");
    match &err {
        ConfigError::MissingEnv {
            var, key, location, ..
        } => {
            assert_eq!(var, "TIENDA_01_PASSWORD");
            assert_eq!(key, "connections.dst.url2");
            // `url2 = "mssql://etl:` is 20 characters: the `$` is column 21.
            assert_eq!(
                *location,
                Location {
                    line: 11,
                    column: 21
                }
            );
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("environment variable `TIENDA_01_PASSWORD` is not set")
    );
    // Escaped and multi-line strings cannot be mapped exactly: the value's start is reported.
    let escaped = format!(
        "{BASE}url2 = \"a\\tb${{NOPE}}\"\n\n[[streams]]\nfrom = \"src\"\ntable = \"t\"\nto = \"dst\"\n"
    );
    assert_eq!(
        parse(&escaped).expect_err("unset").location(),
        Some(Location {
            line: 11,
            column: 8
        })
    );
    let nested = format!(
        "{BASE}tls = {{ password = \"${{NOPE}}\" }}\n\n[[streams]]\nfrom = \"src\"\ntable = \"t\"\nto = \"dst\"\n"
    );
    let err = parse(&nested).expect_err("unset");
    assert!(
        err.to_string().contains("`connections.dst.tls.password`"),
        "{err}"
    );
    assert_eq!(
        err.location(),
        Some(Location {
            line: 11,
            column: 7
        })
    );
    let malformed = format!(
        "{BASE}url2 = \"x${{DB_PASSWORD\"\n\n[[streams]]\nfrom = \"src\"\ntable = \"t\"\nto = \"dst\"\n"
    );
    assert_error(&malformed, 11, 10, "`${` is not closed");
}

#[test]
fn escapes_and_empty_values() {
    let text = format!(
        "{BASE}literal = \"cost $$${{HOME}} $5\"\nempty = \"${{EMPTY}}\"\n\n[[streams]]\nfrom = \"src\"\ntable = \"t\"\nto = \"dst\"\n"
    );
    let p = parse_ok(&text);
    let c = p.connection("dst").expect("dst");
    assert_eq!(
        c.setting("literal").map(|s| s.resolved().expose().clone()),
        Some(toml::Value::String("cost $${HOME} $5".into()))
    );
    assert!(!c.setting("literal").is_some_and(|s| s.is_secret()));
    assert_eq!(
        c.setting("empty").map(|s| s.resolved().expose().clone()),
        Some(toml::Value::String(String::new()))
    );
}

#[test]
fn secret_files_are_read_relative_to_the_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
    std::fs::write(dir.path().join("secrets/db"), format!("{PASSWORD}\n")).expect("write");
    let origin = dir.path().join("p.toml");
    let text = format!(
        "{BASE}password = \"file:${{SECRETS_DIR}}/db\"\nother = \"file:secrets/absent\"\n\n[[streams]]\nfrom = \"src\"\ntable = \"t\"\nto = \"dst\"\n"
    );
    let err = Pipeline::from_str_with_env(&text, &origin, env).expect_err("one file is missing");
    match &err {
        ConfigError::SecretFile {
            path,
            key,
            location,
            ..
        } => {
            assert_eq!(path, &dir.path().join("secrets/absent"));
            assert_eq!(key, "connections.dst.other");
            // The `file:` inside the quotes.
            assert_eq!(
                *location,
                Location {
                    line: 12,
                    column: 10
                }
            );
        }
        other => panic!("unexpected error {other:?}"),
    }
    let text = text.replace("other = \"file:secrets/absent\"\n", "");
    let p = Pipeline::from_str_with_env(&text, &origin, env).expect("valid");
    let c = p.connection("dst").expect("dst");
    let password = c.setting("password").expect("password");
    assert_eq!(
        password.resolved().expose().as_str(),
        Some(PASSWORD),
        "newline trimmed"
    );
    assert_eq!(password.redacted().as_str(), Some("***"));
    assert!(!format!("{p:?}").contains(PASSWORD));
    assert_eq!(p.scrub(PASSWORD), "***");
    let empty = format!(
        "{BASE}password = \"file:\"\n\n[[streams]]\nfrom = \"src\"\ntable = \"t\"\nto = \"dst\"\n"
    );
    assert_error(&empty, 11, 13, "names no file");
}

#[test]
fn literal_passwords_are_redacted_too() {
    let text = format!(
        "{BASE}password = \"hunter22\"\nmirror = \"redis://:p%40ss@cache:6379/0\"\n\n[[streams]]\nfrom = \"src\"\ntable = \"t\"\nto = \"dst\"\n"
    );
    let p = parse_ok(&text);
    let redacted = p.connection("dst").expect("dst").redacted();
    assert_eq!(
        redacted.get("password").and_then(|v| v.as_str()),
        Some("***")
    );
    assert_eq!(
        redacted.get("mirror").and_then(|v| v.as_str()),
        Some("redis://:***@cache:6379/0")
    );
    assert_eq!(p.scrub("auth failed: hunter22"), "auth failed: ***");
    assert_eq!(
        p.scrub("bad password p@ss and p%40ss"),
        "bad password *** and ***"
    );
}

#[test]
fn paths_resolve_against_the_pipeline_file() {
    let p = parse_ok(&with_stream(
        "from = \"src\"\ntable = \"t\"\nto = \"dst\"\n",
    ));
    let dst = p.connection("dst").expect("dst");
    assert_eq!(
        dst.plugin_config()
            .expose()
            .get("path")
            .and_then(|v| v.as_str()),
        Some("/srv/caudal/pipelines/data/out.duckdb")
    );
    let memory = with_stream("from = \"src\"\ntable = \"t\"\nto = \"dst\"\n")
        .replace("data/out.duckdb", ":memory:");
    let p = parse_ok(&memory);
    let path = p
        .connection("dst")
        .and_then(|c| c.setting("path"))
        .map(|s| s.resolved().expose().clone());
    assert_eq!(path, Some(toml::Value::String(":memory:".into())));
    let relative = Pipeline::from_str_with_env(
        &with_stream("from = \"src\"\ntable = \"t\"\nto = \"dst\"\n"),
        Path::new("p.toml"),
        env,
    )
    .expect("valid");
    assert!(relative.journal_dir().is_absolute());
    assert_eq!(
        relative.journal_dir(),
        std::env::current_dir().expect("cwd").join("./journal")
    );
}

#[test]
fn expand_from_lists_matching_connections_sorted() {
    let text = format!(
        "{BASE}[connections.tienda_02]\nconnector = \"mssql\"\n[connections.tienda_01]\nconnector = \"mssql\"\n\
         [connections.tienda_10]\nconnector = \"mssql\"\n\n[[streams]]\nfrom = \"tienda_*\"\ntable = \"v\"\nto = \"dst\"\n\
         mode = \"incremental\"\ncursor = \"fecha\"\n"
    );
    let p = parse_ok(&text);
    assert_eq!(
        p.expand_from("tienda_*"),
        ["tienda_01", "tienda_02", "tienda_10"]
    );
    assert_eq!(p.expand_from("tienda_0?"), ["tienda_01", "tienda_02"]);
    assert_eq!(p.expand_from("tienda_02"), ["tienda_02"]);
    assert!(p.expand_from("tienda_99").is_empty());
    assert_eq!(
        p.streams()[0].sources(),
        ["tienda_01", "tienda_02", "tienda_10"]
    );
    assert_eq!(p.connections().len(), 5);
}

#[test]
fn error_at_builds_positioned_errors_for_the_engine() {
    let p = parse_ok(&with_stream(
        "from = \"src\"\ntable = \"t\"\nto = \"dst\"\n",
    ));
    let c = p.connection("src").expect("src");
    let err = p.error_at(
        c.connector_location(),
        "no plugin provides connector `mysql`",
    );
    assert_eq!(
        err.to_string(),
        format!("{ORIGIN}:5:13: no plugin provides connector `mysql`")
    );
}

#[test]
fn unreadable_files_are_read_errors() {
    let err = Pipeline::from_path(Path::new("/nonexistent/caudal/p.toml")).expect_err("absent");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert_eq!(err.location(), None);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/caudal/p.toml: cannot read the pipeline file")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = dir.path().join("bin.toml");
    std::fs::write(&binary, [0xff, 0xfe, b'\n']).expect("write");
    assert!(
        Pipeline::from_path(&binary)
            .expect_err("not UTF-8")
            .to_string()
            .contains("not UTF-8")
    );
}

#[test]
fn parser_messages_name_the_key_or_table() {
    assert_error(
        "pipeline = 5\n",
        1,
        12,
        "`pipeline`: invalid type: integer `5`, expected a table: [pipeline]",
    );
    assert_error(
        "[pipeline]   # who we are\ndescription = \"d\"\n",
        1,
        1,
        "missing field `name` in [pipeline]\n".trim_end(),
    );
    let stream = "from = \"src\"\ntable = \"t\"\nto = \"dst\"\nretry = 5\n";
    assert_error(
        &with_stream(stream),
        16,
        9,
        "`retry`: invalid type: integer `5`, expected a table of retry settings",
    );
    assert_error(
        "[pipeline]\nname = \"x\"\n[schedule]\n\"every\" = 5\n",
        4,
        11,
        "`every`: invalid type: integer `5`",
    );
}
