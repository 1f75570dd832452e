//! Connections: `[connections.NAME]` tables, their settings and the secrets inside them.
//!
//! `connector` picks the plugin; every other key is the plugin's business and is kept as an
//! open map of TOML values, with each key's position so that a plugin's complaint can point
//! back into the file. A few keys are common to connectors and checked here: `url`, `path`
//! (resolved against the pipeline file's directory) and `prefix`, all strings.
//!
//! Each setting is held twice: resolved (secrets in clear, inside [`Secret`], for the plugin)
//! and redacted (secrets as `***`, URL passwords masked, for logs and the journal).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde_spanned::Spanned;

use crate::error::Location;
use crate::load::Checker;
use crate::secret::{self, MASK, Piece, Secret};

/// Connectors built into caudal; any other name is looked up as a plugin.
pub const BUILTIN_CONNECTORS: [&str; 4] = ["mysql", "mssql", "duckdb", "redis"];

/// Keys every connector understands the same way; they must be strings.
const STRING_KEYS: [&str; 3] = ["url", "path", "prefix"];

/// One validated `[connections.NAME]` table.
#[derive(Debug, Clone)]
pub struct Connection {
    pub(crate) name: String,
    pub(crate) location: Location,
    pub(crate) connector: String,
    pub(crate) connector_location: Location,
    pub(crate) settings: BTreeMap<String, Setting>,
}

/// One setting of a connection, other than `connector`.
#[derive(Clone)]
pub struct Setting {
    location: Location,
    resolved: Secret<toml::Value>,
    redacted: toml::Value,
    secret: bool,
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setting")
            .field("location", &self.location)
            .field("value", &self.redacted)
            .finish()
    }
}

impl Setting {
    /// Where the setting's key is written.
    pub fn location(&self) -> Location {
        self.location
    }

    /// Whether the value holds a secret: a `${VAR}` or `file:` reference, a URL password, or
    /// any value of a key such as `password` or `token`.
    pub fn is_secret(&self) -> bool {
        self.secret
    }

    /// The value with references resolved. Hand it only to the plugin.
    pub fn resolved(&self) -> &Secret<toml::Value> {
        &self.resolved
    }

    /// The value with secrets replaced by `***`, for logs and the journal.
    pub fn redacted(&self) -> &toml::Value {
        &self.redacted
    }
}

impl Connection {
    /// The connection's name, the `NAME` of `[connections.NAME]`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the connection's name is written.
    pub fn location(&self) -> Location {
        self.location
    }

    /// The connector (plugin) name: `mysql`, `mssql`, `duckdb`, `redis` or another plugin's.
    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// Where `connector = ...` is written, for "no such plugin" errors.
    pub fn connector_location(&self) -> Location {
        self.connector_location
    }

    /// Whether the connector is one of [`BUILTIN_CONNECTORS`].
    pub fn is_builtin(&self) -> bool {
        BUILTIN_CONNECTORS.contains(&self.connector.as_str())
    }

    /// One setting by key (`url`, `path`, `prefix`, or any connector-specific key).
    pub fn setting(&self, key: &str) -> Option<&Setting> {
        self.settings.get(key)
    }

    /// Every setting but `connector`, sorted by key.
    pub fn settings(&self) -> impl Iterator<Item = (&str, &Setting)> {
        self.settings.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The settings the plugin receives: every key but `connector`, secrets resolved, `path`
    /// made absolute. Contains secrets in clear: never log it.
    pub fn plugin_config(&self) -> Secret<toml::Table> {
        let table = self
            .settings
            .iter()
            .map(|(k, s)| (k.clone(), s.resolved.expose().clone()))
            .collect();
        Secret::new(table)
    }

    /// The settings with every secret replaced by `***` (URL passwords included), for logs and
    /// the journal.
    pub fn redacted(&self) -> toml::Table {
        self.settings
            .iter()
            .map(|(k, s)| (k.clone(), s.redacted.clone()))
            .collect()
    }
}

/// A connection's setting before resolution, as parsed.
pub(crate) type RawSettings = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// Builds one connection, reporting every problem to the checker; `None` if it is unusable.
pub(crate) fn build(
    ck: &mut Checker<'_>,
    name: &Spanned<String>,
    raw: &Spanned<RawSettings>,
) -> Option<Connection> {
    let location = ck.at(&name.span());
    let mut ok = ck.check_name(name, "connection");
    let mut connector = None;
    let mut settings = BTreeMap::new();
    for (key, value) in raw.get_ref() {
        let key_name = key.get_ref().as_str();
        let path = format!("connections.{}.{key_name}", name.get_ref());
        if key_name == "connector" {
            connector = check_connector(ck, value);
            ok &= connector.is_some();
            continue;
        }
        if STRING_KEYS.contains(&key_name) && !value.get_ref().is_str() {
            ck.invalid(
                &value.span(),
                format!(
                    "`{path}` must be a string, not {}",
                    crate::load::type_name(value.get_ref())
                ),
            );
            ok = false;
            continue;
        }
        match resolve_setting(ck, &path, key_name, value) {
            Some(mut setting) => {
                setting.location = ck.at(&key.span());
                if key_name == "path" {
                    absolutize_path(ck.base_dir(), &mut setting);
                }
                settings.insert(key_name.to_owned(), setting);
            }
            None => ok = false,
        }
    }
    let Some((connector, connector_location)) = connector else {
        if ok {
            ck.invalid(
                &name.span(),
                format!(
                    "connection `{}` has no `connector`; add e.g. connector = \"mysql\" \
                     (built in: {}; any other name is looked up as a plugin)",
                    name.get_ref(),
                    BUILTIN_CONNECTORS.join(", ")
                ),
            );
        }
        return None;
    };
    ok.then(|| Connection {
        name: name.get_ref().clone(),
        location,
        connector,
        connector_location,
        settings,
    })
}

fn check_connector(
    ck: &mut Checker<'_>,
    value: &Spanned<toml::Value>,
) -> Option<(String, Location)> {
    let valid = value.get_ref().as_str().filter(|s| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    match valid {
        Some(connector) => Some((connector.to_owned(), ck.at(&value.span()))),
        None => {
            ck.invalid(
                &value.span(),
                format!(
                    "`connector` must be a connector name (letters, digits, `_`, `-`): one of {} \
                     or a plugin's name",
                    BUILTIN_CONNECTORS.join(", ")
                ),
            );
            None
        }
    }
}

/// Secret values found while resolving one setting.
struct Resolution {
    value: toml::Value,
    redacted: toml::Value,
    secret: bool,
}

fn resolve_setting(
    ck: &mut Checker<'_>,
    path: &str,
    key: &str,
    value: &Spanned<toml::Value>,
) -> Option<Setting> {
    let span = value.span();
    let resolution = resolve_value(ck, path, value.get_ref(), &span, true)?;
    let mut setting = Setting {
        location: Location::START,
        resolved: Secret::new(resolution.value),
        redacted: resolution.redacted,
        secret: resolution.secret,
    };
    if secret::is_sensitive_key(key) && !setting.secret {
        remember_all_strings(ck, setting.resolved.expose());
        setting.redacted = mask_all_strings(&setting.redacted);
        setting.secret = true;
    }
    Some(setting)
}

/// Resolves references in a value; `top` is true for a setting's own value (whose string
/// offsets can be mapped to columns), false for values nested in arrays or tables.
fn resolve_value(
    ck: &mut Checker<'_>,
    path: &str,
    value: &toml::Value,
    span: &Range<usize>,
    top: bool,
) -> Option<Resolution> {
    match value {
        toml::Value::String(text) => resolve_string(ck, path, text, span, top),
        toml::Value::Array(items) => {
            let mut out = Resolution {
                value: toml::Value::Array(Vec::new()),
                redacted: toml::Value::Array(Vec::new()),
                secret: false,
            };
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match resolve_value(ck, &format!("{path}[{i}]"), item, span, false) {
                    Some(r) => {
                        if let (toml::Value::Array(v), toml::Value::Array(red)) =
                            (&mut out.value, &mut out.redacted)
                        {
                            v.push(r.value);
                            red.push(r.redacted);
                        }
                        out.secret |= r.secret;
                    }
                    None => ok = false,
                }
            }
            ok.then_some(out)
        }
        toml::Value::Table(table) => {
            let mut resolved = toml::Table::new();
            let mut redacted = toml::Table::new();
            let mut secret = false;
            let mut ok = true;
            for (key, item) in table {
                match resolve_value(ck, &format!("{path}.{key}"), item, span, false) {
                    Some(r) => {
                        let masked = if secret::is_sensitive_key(key) && !r.secret {
                            remember_all_strings(ck, &r.value);
                            secret = true;
                            mask_all_strings(&r.redacted)
                        } else {
                            r.redacted
                        };
                        resolved.insert(key.clone(), r.value);
                        redacted.insert(key.clone(), masked);
                        secret |= r.secret;
                    }
                    None => ok = false,
                }
            }
            ok.then_some(Resolution {
                value: toml::Value::Table(resolved),
                redacted: toml::Value::Table(redacted),
                secret,
            })
        }
        other => Some(Resolution {
            value: other.clone(),
            redacted: other.clone(),
            secret: false,
        }),
    }
}

fn resolve_string(
    ck: &mut Checker<'_>,
    path: &str,
    text: &str,
    span: &Range<usize>,
    top: bool,
) -> Option<Resolution> {
    let locate = |ck: &Checker<'_>, offset: usize| {
        if top {
            ck.at_string_offset(span, offset)
        } else {
            ck.at(span)
        }
    };
    if let Some(file) = text.strip_prefix("file:") {
        // Variables in a secret file's path (`file:${CREDENTIALS_DIRECTORY}/db`) name a place,
        // not a secret: they may appear in the error that says the file cannot be read.
        let (file_path, _, _) =
            expand(ck, path, file, false, |ck, i| locate(ck, i + "file:".len()))?;
        let location = locate(ck, 0);
        let content = ck.read_secret_file(path, &file_path, location)?;
        ck.remember_secret(&content);
        return Some(Resolution {
            value: toml::Value::String(content),
            redacted: toml::Value::String(MASK.into()),
            secret: true,
        });
    }
    let (resolved, redacted, substituted) = expand(ck, path, text, true, locate)?;
    let masked = secret::mask_url_password(&redacted);
    if let Some(range) = secret::url_password_range(&resolved) {
        ck.remember_secret(&resolved[range]);
    }
    let secret = substituted || masked != redacted;
    Some(Resolution {
        value: toml::Value::String(resolved),
        redacted: toml::Value::String(masked),
        secret,
    })
}

/// Expands `${VAR}` references: returns the resolved text, the text with each substituted value
/// replaced by `***`, and whether anything was substituted. With `secret`, substituted values
/// are remembered for scrubbing.
fn expand(
    ck: &mut Checker<'_>,
    path: &str,
    text: &str,
    secret: bool,
    locate: impl Fn(&Checker<'_>, usize) -> Location,
) -> Option<(String, String, bool)> {
    let pieces = match secret::parse_template(text) {
        Ok(pieces) => pieces,
        Err(e) => {
            let location = locate(ck, e.offset);
            ck.invalid_at(location, format!("in `{path}`: {}", e.message));
            return None;
        }
    };
    let mut resolved = String::with_capacity(text.len());
    let mut redacted = String::with_capacity(text.len());
    let mut ok = true;
    let mut substituted = false;
    for piece in pieces {
        match piece {
            Piece::Literal(literal) => {
                resolved.push_str(&literal);
                redacted.push_str(&literal);
            }
            Piece::Env { name, offset } => {
                let location = locate(ck, offset);
                match ck.env_var(path, &name, location) {
                    Some(value) => {
                        if secret {
                            ck.remember_secret(&value);
                        }
                        resolved.push_str(&value);
                        redacted.push_str(MASK);
                        substituted = true;
                    }
                    None => ok = false,
                }
            }
        }
    }
    ok.then_some((resolved, redacted, substituted))
}

fn remember_all_strings(ck: &mut Checker<'_>, value: &toml::Value) {
    match value {
        toml::Value::String(s) => ck.remember_secret(s),
        toml::Value::Array(items) => items.iter().for_each(|v| remember_all_strings(ck, v)),
        toml::Value::Table(t) => t.values().for_each(|v| remember_all_strings(ck, v)),
        _ => {}
    }
}

fn mask_all_strings(value: &toml::Value) -> toml::Value {
    match value {
        toml::Value::String(_) => toml::Value::String(MASK.into()),
        toml::Value::Array(items) => {
            toml::Value::Array(items.iter().map(mask_all_strings).collect())
        }
        toml::Value::Table(t) => toml::Value::Table(
            t.iter()
                .map(|(k, v)| (k.clone(), mask_all_strings(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Resolves a relative `path` against the pipeline file's directory. In-memory and URI-style
/// values such as DuckDB's `:memory:` start with `:` and are left alone.
fn absolutize_path(base_dir: &Path, setting: &mut Setting) {
    let Some(text) = setting.resolved.expose().as_str() else {
        return;
    };
    if text.starts_with(':') || Path::new(text).is_absolute() {
        return;
    }
    let absolute = base_dir.join(text).to_string_lossy().into_owned();
    if !setting.secret {
        setting.redacted = toml::Value::String(absolute.clone());
    }
    setting.resolved = Secret::new(toml::Value::String(absolute));
}
