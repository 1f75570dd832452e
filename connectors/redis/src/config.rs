//! The `[connections.NAME]` keys of a Redis connection.
//!
//! ```toml
//! [connections.cache]
//! connector = "redis"
//! url = "redis://127.0.0.1:6379/0"     # redis://[:password@]host[:port][/db]
//! prefix = "ventas"                    # every key of the connection starts with it
//! key = "{prefix}:{table}:{pk}"        # where a row lives
//! format = "hash"                      # "hash" (one field per column) | "json"
//! ```
//!
//! The host hands the keys (without `connector`) to the plugin as JSON; serde rejects unknown
//! keys and wrong types, [`RedisConfig::validate`] checks the rules serde cannot express. The
//! URL may hold a password: it is never printed, [`RedisConfig::redacted_url`] is what error
//! messages and `Debug` show.

use caudal_connector::{Error, Result};
use serde::Deserialize;

/// The default key template.
pub const DEFAULT_KEY: &str = "{prefix}:{table}:{pk}";
/// The default prefix.
pub const DEFAULT_PREFIX: &str = "caudal";

/// How a row is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A hash with one field per non-NULL column (a NULL column has no field).
    #[default]
    Hash,
    /// A string holding a JSON object with every column (NULL as `null`).
    Json,
}

/// A Redis connection's configuration.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[[user]:password@]host[:port][/db]` or `unix:///path/to/socket`. Required.
    pub url: String,
    /// Start of every key this connection writes or reads. Default: `"caudal"`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Where a row lives: `{prefix}`, `{table}` and `{pk}` are replaced by the prefix, the
    /// table name and the primary-key values (joined with `:`). It must contain `{prefix}` and
    /// `{table}` once each and end with `:{pk}`. Default: `"{prefix}:{table}:{pk}"`.
    #[serde(default = "default_key")]
    pub key: String,
    /// `"hash"` (one hash field per non-NULL column) or `"json"` (one JSON string per row).
    /// Default: `"hash"`.
    #[serde(default)]
    pub format: Format,
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.to_owned()
}

fn default_key() -> String {
    DEFAULT_KEY.to_owned()
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("key", &self.key)
            .field("format", &self.format)
            .finish()
    }
}

impl RedisConfig {
    /// A configuration for `url` with the default prefix, key template and format.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: default_prefix(),
            key: default_key(),
            format: Format::Hash,
        }
    }

    /// The URL with any password replaced by `***`, for messages.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// Checks the rules serde cannot: a URL redis-rs understands, a non-empty prefix without
    /// control characters, and a key template of the documented shape.
    pub fn validate(&self) -> Result<()> {
        if self.url.trim().is_empty() {
            return Err(Error::Config(
                "`url` is empty: give the server as redis://host:port/db".into(),
            ));
        }
        if let Err(e) = redis::IntoConnectionInfo::into_connection_info(self.url.as_str()) {
            // redis-rs does not echo the URL in its parse errors, but say which one we mean.
            return Err(Error::Config(format!(
                "`url` {} is not a Redis URL ({}); write it as redis://[:password@]host[:port][/db]",
                self.redacted_url(),
                e.detail().unwrap_or("invalid URL")
            )));
        }
        if self.prefix.is_empty() {
            return Err(Error::Config(
                "`prefix` is empty: every key needs a prefix of its own (default \"caudal\")"
                    .into(),
            ));
        }
        if self.prefix.chars().any(char::is_control) {
            return Err(Error::Config(format!(
                "`prefix` {:?} holds a control character",
                self.prefix
            )));
        }
        KeyTemplate::parse(&self.key)?;
        Ok(())
    }
}

/// `url` with the password part of its user info (if any) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme_end + 3], &rest[at..])
        }
        None => url.to_owned(),
    }
}

/// A checked key template: the literal text around `{prefix}` and `{table}`, `{pk}` last.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct KeyTemplate(String);

impl KeyTemplate {
    /// Checks `template`: placeholders `{prefix}` and `{table}` exactly once each, and
    /// `:{pk}` at the end (so every row key of a table starts with one literal text, which is
    /// what SCAN matches on, and the metadata keys `{prefix}:{table}:schema` are told apart).
    pub fn parse(template: &str) -> Result<KeyTemplate> {
        let bad = |why: &str| {
            Error::Config(format!(
                "`key` {template:?} {why}; the default is \"{DEFAULT_KEY}\""
            ))
        };
        let Some(head) = template.strip_suffix(":{pk}") else {
            return Err(bad("must end with `:{pk}`"));
        };
        for name in ["{prefix}", "{table}"] {
            if head.matches(name).count() != 1 {
                return Err(bad(&format!("must contain `{name}` exactly once")));
            }
        }
        let rest = head.replace("{prefix}", "").replace("{table}", "");
        if rest.contains('{') || rest.contains('}') {
            return Err(bad(
                "has an unknown placeholder (only {prefix}, {table} and {pk} exist)",
            ));
        }
        if rest.chars().any(char::is_control) {
            return Err(bad("holds a control character"));
        }
        Ok(KeyTemplate(template.to_owned()))
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What every row key of `table` starts with (the template up to `{pk}`).
    pub fn row_prefix(&self, prefix: &str, table: &str) -> String {
        let head = &self.0[..self.0.len() - "{pk}".len()];
        head.replace("{prefix}", prefix).replace("{table}", table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> std::result::Result<RedisConfig, String> {
        toml::from_str::<RedisConfig>(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_apply() {
        let c = parse(r#"url = "redis://127.0.0.1:6379/0""#).unwrap();
        assert_eq!(c, RedisConfig::new("redis://127.0.0.1:6379/0"));
        assert_eq!(c.prefix, "caudal");
        assert_eq!(c.key, DEFAULT_KEY);
        assert_eq!(c.format, Format::Hash);
        c.validate().unwrap();
        let c = parse(
            r#"
            url = "redis://localhost"
            prefix = "ventas"
            key = "cache:{prefix}/{table}:{pk}"
            format = "json"
            "#,
        )
        .unwrap();
        assert_eq!(c.format, Format::Json);
        c.validate().unwrap();
        assert_eq!(
            KeyTemplate::parse(&c.key).unwrap().row_prefix("v", "t"),
            "cache:v/t:"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_by_name() {
        let err = parse("url = \"redis://a\"\nprefx = \"x\"").unwrap_err();
        assert!(err.contains("prefx"), "{err}");
        let err = parse("url = \"redis://a\"\nformat = \"xml\"").unwrap_err();
        assert!(err.contains("xml") || err.contains("format"), "{err}");
        let err = parse("prefix = \"a\"").unwrap_err();
        assert!(err.contains("url"), "{err}");
        let err = serde_json::from_str::<RedisConfig>(r#"{"url": "redis://a", "path": "y"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("path"), "{err}");
    }

    #[test]
    fn invalid_values_are_named() {
        let cases = [
            ("url = \" \"", "`url` is empty"),
            ("url = \"http://x\"", "`url`"),
            ("url = \"redis://a\"\nprefix = \"\"", "`prefix` is empty"),
            ("url = \"redis://a\"\nkey = \"{prefix}:{table}\"", ":{pk}"),
            ("url = \"redis://a\"\nkey = \"{table}:{pk}\"", "`{prefix}`"),
            (
                "url = \"redis://a\"\nkey = \"{prefix}:{table}:{table}:{pk}\"",
                "`{table}` exactly once",
            ),
            (
                "url = \"redis://a\"\nkey = \"{prefix}:{tabla}:{table}:{pk}\"",
                "unknown placeholder",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap().validate().unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{text}: {err:?}");
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn passwords_never_show() {
        let c = RedisConfig::new("redis://:s3cr3t@db.local:6380/2");
        assert_eq!(c.redacted_url(), "redis://:***@db.local:6380/2");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let c = RedisConfig::new("redis://user:s3cr3t@db.local/2");
        assert_eq!(c.redacted_url(), "redis://user:***@db.local/2");
        let bad = RedisConfig::new("redis://:s3cr3t@[bad/2");
        if let Err(e) = bad.validate() {
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
        }
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}
