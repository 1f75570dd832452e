//! The configuration of an `mssql` connection: the keys of `[connections.NAME]` besides
//! `connector`, and their checks.
//!
//! `url` is either `mssql://user:password@host:port/database` (also `sqlserver://`) or an
//! ADO.NET connection string (`Server=tcp:host,1433;Database=ventas;User Id=etl;Password=...`).
//! Either carries the password, so [`MsSqlConfig`]'s `Debug` prints `***` in its place and no
//! error of [`MsSqlConfig::validate`] repeats the url. Start with [`MsSqlConfig::validate`],
//! which turns the text into a checked tiberius configuration.

use serde::Deserialize;
use tiberius::{AuthMethod, EncryptionLevel};

use crate::error::{Error, Result, Secret};

/// Whether and how the connection is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encrypt {
    /// No TLS at all (tiberius `EncryptionLevel::NotSupported`): test servers and trusted
    /// networks only; the password crosses the wire in the clear.
    Off,
    /// TLS when the server offers it (the default).
    #[default]
    On,
    /// TLS or no connection.
    Required,
}

/// Configuration of an `mssql` connection.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsSqlConfig {
    /// `mssql://user:password@host:port/database` (port 1433 by default; special characters in
    /// user and password percent-encoded) or an ADO.NET connection string. Required.
    pub url: String,
    /// `off`, `on` or `required` (default `on`).
    #[serde(default)]
    pub encrypt: Encrypt,
    /// Accept the server's certificate without checking it (default false).
    #[serde(default)]
    pub trust_server_certificate: bool,
    /// Schema that discovery lists, unqualified table names refer to, and sinks keep their
    /// `_caudal_offsets` table in (default `dbo`).
    #[serde(default = "default_schema")]
    pub schema: String,
}

fn default_schema() -> String {
    "dbo".to_owned()
}

impl std::fmt::Debug for MsSqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsSqlConfig")
            .field("url", &secret_of(&self.url).redact(&self.url))
            .field("encrypt", &self.encrypt)
            .field("trust_server_certificate", &self.trust_server_certificate)
            .field("schema", &self.schema)
            .finish()
    }
}

/// A configuration that passed [`MsSqlConfig::validate`].
#[derive(Clone)]
pub struct ValidConfig {
    /// What tiberius connects with.
    pub tiberius: tiberius::Config,
    /// The login name, for messages.
    pub user: String,
    /// `host:port`, for messages and to open the TCP connection.
    pub addr: String,
    /// The database named by the url, if any.
    pub database: Option<String>,
    /// The schema of unqualified names.
    pub schema: String,
    /// The password, removed from every message.
    pub(crate) secret: Secret,
}

/// The parts of a connection string the connector reads itself.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parts {
    user: String,
    password: String,
    host: String,
    port: Option<u16>,
    database: Option<String>,
}

impl MsSqlConfig {
    /// Checks the configuration and builds the tiberius configuration.
    pub fn validate(&self) -> Result<ValidConfig> {
        if self.schema.is_empty() {
            return Err(Error::Config("`schema` is empty".into()));
        }
        let url = self.url.trim();
        let parts = if let Some(rest) = url
            .strip_prefix("mssql://")
            .or_else(|| url.strip_prefix("sqlserver://"))
        {
            parse_url(rest)?
        } else if url.contains("://") {
            let scheme = url.split("://").next().unwrap_or_default();
            return Err(Error::Config(format!(
                "`url` has scheme `{scheme}`; use `mssql://user:password@host:port/database` \
                 or an ADO.NET connection string"
            )));
        } else {
            parse_ado(url)?
        };
        if parts.host.is_empty() {
            return Err(Error::Config("`url` names no host".into()));
        }
        if parts.user.is_empty() {
            return Err(Error::Config(
                "`url` names no user (SQL Server authentication needs a login)".into(),
            ));
        }
        let mut config = tiberius::Config::new();
        config.host(&parts.host);
        let port = parts.port.unwrap_or(1433);
        config.port(port);
        if let Some(db) = &parts.database {
            config.database(db);
        }
        config.application_name("caudal");
        config.authentication(AuthMethod::sql_server(&parts.user, &parts.password));
        config.encryption(match self.encrypt {
            Encrypt::Off => EncryptionLevel::NotSupported,
            Encrypt::On => EncryptionLevel::On,
            Encrypt::Required => EncryptionLevel::Required,
        });
        if self.trust_server_certificate {
            config.trust_cert();
        }
        Ok(ValidConfig {
            tiberius: config,
            user: parts.user,
            addr: format!("{}:{port}", parts.host),
            database: parts.database,
            schema: self.schema.clone(),
            secret: secret_of(&self.url),
        })
    }
}

fn parse_url(rest: &str) -> Result<Parts> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("", authority),
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            let port = p.parse::<u16>().map_err(|_| {
                Error::Config(format!("`url` has an invalid port `{p}` (1..=65535)"))
            })?;
            (h, Some(port))
        }
        _ => (hostport, None),
    };
    Ok(Parts {
        user: percent_decode(user),
        password: percent_decode(password),
        host: host.trim_matches(['[', ']']).to_owned(),
        port,
        database: (!path.is_empty()).then(|| percent_decode(path)),
    })
}

/// Splits an ADO.NET string into `key=value` pairs (keys lower-cased; `{..}` and quoted values
/// may contain `;`).
fn ado_pairs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_ascii_lowercase();
        let after = rest[eq + 1..].trim_start();
        let (value, next) = match after.chars().next() {
            Some(open @ ('{' | '"' | '\'')) => {
                let close = if open == '{' { '}' } else { open };
                match after[1..].find(close) {
                    Some(end) => {
                        let v = &after[1..1 + end];
                        let tail = &after[1 + end + 1..];
                        (v.to_owned(), tail.split_once(';').map_or("", |(_, t)| t))
                    }
                    None => (after[1..].to_owned(), ""),
                }
            }
            _ => match after.split_once(';') {
                Some((v, t)) => (v.trim().to_owned(), t),
                None => (after.trim().to_owned(), ""),
            },
        };
        if !key.is_empty() {
            out.push((key, value));
        }
        rest = next.trim_start_matches(';');
    }
    out
}

fn parse_ado(s: &str) -> Result<Parts> {
    let mut parts = Parts::default();
    let pairs = ado_pairs(s);
    if pairs.is_empty() {
        return Err(Error::Config(
            "`url` is neither an `mssql://` url nor an ADO.NET connection string".into(),
        ));
    }
    for (key, value) in pairs {
        match key.as_str() {
            "server" | "data source" | "address" | "addr" | "network address" => {
                let v = value.trim_start_matches("tcp:");
                let (host, port) = match v.split_once(',') {
                    Some((h, p)) => {
                        let port = p.trim().parse::<u16>().map_err(|_| {
                            Error::Config(format!("`url` has an invalid port `{p}` (1..=65535)"))
                        })?;
                        (h, Some(port))
                    }
                    None => (v, None),
                };
                // `host\instance`: the instance is found through the port here.
                parts.host = host.split('\\').next().unwrap_or_default().to_owned();
                parts.port = port;
            }
            "database" | "initial catalog" => parts.database = Some(value),
            "user id" | "uid" | "user" | "username" => parts.user = value,
            "password" | "pwd" => parts.password = value,
            _ => {}
        }
    }
    Ok(parts)
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

/// The password of `url` (either form), in the spellings it may appear in.
pub(crate) fn secret_of(url: &str) -> Secret {
    let url = url.trim();
    let mut spellings = Vec::new();
    if let Some(rest) = url
        .strip_prefix("mssql://")
        .or_else(|| url.strip_prefix("sqlserver://"))
    {
        let authority = rest.split('/').next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, pw)) = userinfo.split_once(':')
        {
            spellings.push(pw.to_owned());
            spellings.push(percent_decode(pw));
        }
    } else {
        for (key, value) in ado_pairs(url) {
            if key == "password" || key == "pwd" {
                spellings.push(value);
            }
        }
    }
    Secret::new(spellings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys as a pipeline file writes them (the host passes them on as JSON; the shapes
    /// are the same).
    fn parse(text: &str) -> std::result::Result<MsSqlConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn minimal_url_takes_defaults() {
        let c = parse(r#"url = "mssql://etl:pw@127.0.0.1/ventas""#).unwrap();
        let v = c.validate().unwrap();
        assert_eq!(v.addr, "127.0.0.1:1433");
        assert_eq!(v.user, "etl");
        assert_eq!(v.database.as_deref(), Some("ventas"));
        assert_eq!(v.schema, "dbo");
        assert_eq!(c.encrypt, Encrypt::On);
        assert!(!c.trust_server_certificate);
    }

    #[test]
    fn every_key() {
        let c = parse(
            r#"
            url = "sqlserver://etl:p%40ss@tienda01.local:14330/tienda_01"
            encrypt = "off"
            trust_server_certificate = true
            schema = "ventas"
            "#,
        )
        .unwrap();
        let v = c.validate().unwrap();
        assert_eq!(v.addr, "tienda01.local:14330");
        assert_eq!(v.schema, "ventas");
        assert_eq!(c.encrypt, Encrypt::Off);
        assert_eq!(v.secret.redact("p@ss and p%40ss"), "*** and ***");
    }

    #[test]
    fn ado_strings() {
        let c = parse(
            r#"url = "Server=tcp:db.local,1444;Initial Catalog=ventas;User Id=etl;Password={a;b=c};Encrypt=false""#,
        )
        .unwrap();
        let v = c.validate().unwrap();
        assert_eq!(v.addr, "db.local:1444");
        assert_eq!(v.user, "etl");
        assert_eq!(v.database.as_deref(), Some("ventas"));
        assert_eq!(v.secret.redact("x a;b=c y"), "x *** y");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("a;b=c"), "{dbg}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let e = parse("url = \"mssql://u:p@h/db\"\npool = 3").unwrap_err();
        assert!(e.to_string().contains("unknown field `pool`"), "{e}");
        let e = parse("url = \"mssql://u:p@h/db\"\nencrypt = \"maybe\"").unwrap_err();
        assert!(e.to_string().contains("maybe"), "{e}");
        let e = parse("schema = \"x\"").unwrap_err();
        assert!(e.to_string().contains("missing field `url`"), "{e}");
        let cases = [
            (r#"url = "postgres://u:hunter22@h/db""#, "scheme `postgres`"),
            (r#"url = "mssql://u:hunter22@h:99999/db""#, "invalid port"),
            (r#"url = "mssql://u:hunter22@/db""#, "no host"),
            (r#"url = "mssql://h/db""#, "no user"),
            (r#"url = "nothing here""#, "neither"),
            ("url = \"mssql://u:p@h/db\"\nschema = \"\"", "`schema`"),
        ];
        for (toml, expected) in cases {
            let err = parse(toml).unwrap().validate().err().unwrap().to_string();
            assert!(err.contains(expected), "{toml}: {err}");
            assert!(!err.contains("hunter22"), "{err}");
        }
    }

    #[test]
    fn the_password_never_appears_in_debug() {
        let c = parse(r#"url = "mssql://etl:s3cr%40t-pw@h/db""#).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr"), "{dbg}");
        assert!(dbg.contains("etl:***@h"), "{dbg}");
    }
}
