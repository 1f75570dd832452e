//! The configuration of a `mysql` connection: the keys of `[connections.NAME]` besides
//! `connector`, and their checks.
//!
//! The url carries the password, so [`MySqlConfig`]'s `Debug` prints the url with the password
//! replaced by `***`, and every error of `MySqlConfig::validate` is written without the url.
//! Start with `MySqlConfig::validate`, which turns the text into checked connect options.

use std::str::FromStr;

use serde::Deserialize;
use sqlx::mysql::MySqlConnectOptions;

use crate::error::{Error, Result, Secret};

/// Size at which a multi-row statement is cut even when the server allows more: larger
/// statements do not load faster (measured: 1 MiB and 4 MiB statements insert at the same
/// rate), they hold more memory on both sides and leave less to overlap. A single row larger
/// than this still goes alone, up to `max_allowed_packet`.
pub const STATEMENT_TARGET: u64 = 2 << 20;
/// Smallest `max_allowed_packet` override accepted (a statement must hold at least one row).
pub const MIN_PACKET: u64 = 4096;
/// Largest value MySQL accepts for `max_allowed_packet` (1 GiB).
pub const MAX_PACKET: u64 = 1 << 30;

/// Configuration of a `mysql` connection.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MySqlConfig {
    /// `mysql://user:password@host:port/database` (required; `mariadb://` is accepted too).
    /// Query parameters understood by sqlx (`ssl-mode`, `ssl-ca`, `socket`, `charset`, ...)
    /// are passed through. Special characters in the password must be percent-encoded.
    pub url: String,
    /// Database to use; overrides the url's path. Default: the url's path. Discovery lists
    /// this database, unqualified table names refer to it, and sinks keep their
    /// `_caudal_offsets` table in it.
    #[serde(default)]
    pub database: Option<String>,
    /// Connections in the pool (default 4, 1..=64). A running read holds one connection for
    /// its whole duration; writes and digests take one each.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Largest statement to send, in bytes (4096..=1 GiB). Default: the server's
    /// `max_allowed_packet`, read at open. No statement exceeds it; multi-row statements are
    /// also cut at 2 MiB. A value above the server's own limit is refused at open.
    #[serde(default)]
    pub max_allowed_packet: Option<u64>,
}

fn default_pool_size() -> u32 {
    4
}

impl std::fmt::Debug for MySqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlConfig")
            .field("url", &redacted_url(&self.url))
            .field("database", &self.database)
            .field("pool_size", &self.pool_size)
            .field("max_allowed_packet", &self.max_allowed_packet)
            .finish()
    }
}

/// A configuration that passed `MySqlConfig::validate`.
pub(crate) struct Validated {
    /// sqlx connect options (hold the password: never format them).
    pub options: MySqlConnectOptions,
    /// The database named by `database` or the url, if any.
    pub database: Option<String>,
    /// Pool size.
    pub pool_size: u32,
    /// The `max_allowed_packet` override.
    pub max_allowed_packet: Option<u64>,
    /// The password's spellings, for redaction.
    pub secret: Secret,
}

impl MySqlConfig {
    /// Checks every field and builds the connect options. Errors never contain the url.
    pub(crate) fn validate(&self) -> Result<Validated> {
        let secret = secret_of(&self.url);
        let parsed = url::Url::parse(&self.url).map_err(|e| {
            Error::Config(format!(
                "`url` is not a valid url ({e}); expected mysql://user:password@host:port/database"
            ))
        })?;
        if !matches!(parsed.scheme(), "mysql" | "mariadb") {
            return Err(Error::Config(format!(
                "`url` has scheme `{}`; expected mysql://user:password@host:port/database",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty)
            && !parsed.query_pairs().any(|(k, _)| k == "socket")
        {
            return Err(Error::Config(
                "`url` names no host; expected mysql://user:password@host:port/database".into(),
            ));
        }
        // sqlx only knows the `mysql` scheme; its own messages may quote the input, so they
        // pass through redaction like every other error.
        let mut for_sqlx = parsed.clone();
        if for_sqlx.scheme() != "mysql" && for_sqlx.set_scheme("mysql").is_err() {
            return Err(Error::Config("`url` scheme cannot be rewritten".into()));
        }
        let mut options = MySqlConnectOptions::from_str(for_sqlx.as_str()).map_err(|e| {
            Error::Config(format!(
                "`url` is not usable: {}",
                secret.redact(&e.to_string())
            ))
        })?;
        let url_database = options.get_database().map(str::to_owned);
        let database = match &self.database {
            Some(d) => {
                check_database_name(d)?;
                options = options.database(d);
                Some(d.clone())
            }
            None => url_database,
        };
        if !(1..=64).contains(&self.pool_size) {
            return Err(Error::Config(format!(
                "`pool_size` is {}; it must be between 1 and 64",
                self.pool_size
            )));
        }
        if let Some(p) = self.max_allowed_packet
            && !(MIN_PACKET..=MAX_PACKET).contains(&p)
        {
            return Err(Error::Config(format!(
                "`max_allowed_packet` is {p}; it must be between {MIN_PACKET} and {MAX_PACKET} bytes"
            )));
        }
        // Our own session settings (sql_mode, time zone) are set after connecting.
        options = options
            .pipes_as_concat(false)
            .timezone(Some("+00:00".to_owned()));
        Ok(Validated {
            options,
            database,
            pool_size: self.pool_size,
            max_allowed_packet: self.max_allowed_packet,
            secret,
        })
    }
}

fn check_database_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 64 {
        return Err(Error::Config(format!(
            "`database` must have 1 to 64 characters, `{name}` has {}",
            name.chars().count()
        )));
    }
    Ok(())
}

/// The password of `url` as written and percent-decoded; empty when there is none or the url
/// does not parse (then the text between `:` and `@` of the authority, if any).
pub(crate) fn secret_of(url: &str) -> Secret {
    let raw = raw_password(url).unwrap_or_default();
    let decoded = url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
        .unwrap_or_else(|| raw.clone());
    let decoded = percent_decode(&decoded);
    Secret::new([raw, decoded])
}

/// The password text exactly as written in the url's authority, found without a url parser
/// (so that even a url that does not parse has its password removed from messages).
fn raw_password(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let at = rest.rfind('@')?;
    let userinfo = &rest[..at];
    let (_, password) = userinfo.split_once(':')?;
    Some(password.to_owned())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` with its password replaced by `***`, for Debug output and messages.
pub fn redacted_url(url: &str) -> String {
    secret_of(url).redact(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> std::result::Result<MySqlConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse(r#"{"url": "mysql://root@127.0.0.1:3306/ventas"}"#).unwrap();
        let v = c.validate().unwrap();
        assert_eq!(v.database.as_deref(), Some("ventas"));
        assert_eq!(v.pool_size, 4);
        assert_eq!(v.max_allowed_packet, None);
        assert_eq!(v.options.get_host(), "127.0.0.1");
    }

    #[test]
    fn database_key_overrides_the_url() {
        let c = parse(
            r#"{"url": "mariadb://root@db/uno", "database": "dos", "pool_size": 2,
                "max_allowed_packet": 65536}"#,
        )
        .unwrap();
        let v = c.validate().unwrap();
        assert_eq!(v.database.as_deref(), Some("dos"));
        assert_eq!(v.options.get_database(), Some("dos"));
        assert_eq!(v.max_allowed_packet, Some(65536));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused() {
        let e = parse(r#"{"url": "mysql://h/db", "pool": 3}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `pool`"), "{e}");
        let e = parse(r#"{"url": "mysql://h/db", "pool_size": "many"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        let e = parse(r#"{"database": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `url`"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (r#"{"url": "postgres://u:pw@h/db"}"#, "scheme `postgres`"),
            (r#"{"url": "not a url"}"#, "`url` is not a valid url"),
            (r#"{"url": "mysql:///db"}"#, "names no host"),
            (
                r#"{"url": "mysql://h/db", "pool_size": 0}"#,
                "`pool_size` is 0",
            ),
            (
                r#"{"url": "mysql://h/db", "max_allowed_packet": 100}"#,
                "`max_allowed_packet` is 100",
            ),
            (r#"{"url": "mysql://h/db", "database": ""}"#, "`database`"),
        ];
        for (json, expected) in cases {
            let err = parse(json).unwrap().validate().err().unwrap();
            assert!(err.to_string().contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn the_password_never_appears_in_debug_or_errors() {
        let c = parse(r#"{"url": "mysql://etl:s3cr%40t-pw@h:99999/db", "pool_size": 1}"#).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr"), "{dbg}");
        assert!(dbg.contains("etl:***@h"), "{dbg}");
        // Port out of range: the url parser fails; the message must not echo the url.
        let err = c.validate().err().unwrap().to_string();
        assert!(!err.contains("s3cr"), "{err}");
        let c = parse(r#"{"url": "postgres://etl:hunter22@h/db"}"#).unwrap();
        let err = c.validate().err().unwrap().to_string();
        assert!(!err.contains("hunter22"), "{err}");
    }

    #[test]
    fn pipeline_toml_snippets() {
        // The keys of `[connections.NAME]` as a pipeline file writes them (the host passes
        // them on as JSON; the shapes are the same).
        let c: MySqlConfig = toml::from_str(
            r#"
            url = "mysql://etl:pw@tienda01.local:3306/ventas"
            pool_size = 8
            max_allowed_packet = 1048576
            "#,
        )
        .unwrap();
        let v = c.validate().unwrap();
        assert_eq!(v.pool_size, 8);
        assert_eq!(v.options.get_port(), 3306);
        let e = toml::from_str::<MySqlConfig>("url = \"mysql://h/db\"\nhost = \"x\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `host`"), "{e}");
        let e =
            toml::from_str::<MySqlConfig>("url = \"mysql://h/db\"\npool_size = -1").unwrap_err();
        assert!(e.to_string().contains("pool_size"), "{e}");
    }

    #[test]
    fn secret_spellings() {
        let s = secret_of("mysql://u:p%40ss@h/db");
        assert_eq!(s.redact("p%40ss and p@ss"), "*** and ***");
        let s = secret_of("mysql://u@h/db");
        assert_eq!(s.redact("nothing to hide"), "nothing to hide");
        // Not a url at all, but a password-looking authority still gets removed.
        let s = secret_of("mysql://u:pa ss@h/db");
        assert_eq!(s.redact("x pa ss y"), "x *** y");
    }
}
