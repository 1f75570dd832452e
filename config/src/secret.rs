//! Secrets: `${ENV_VAR}` references and `file:PATH` values in connection settings.
//!
//! Every value substituted from the environment or read from a secret file is treated as a
//! secret: it is held inside [`Secret`] (whose `Debug` and `Display` print `***`), replaced by
//! `***` in redacted views, and remembered so that [`crate::Pipeline::scrub`] can remove it from
//! any text (a driver's error message that echoes the connection string, for instance).
//! Resolution errors name the variable or the file, never a value.
//!
//! Syntax, inside any string of a connection setting (nested arrays and tables included):
//! `${NAME}` is replaced by the variable `NAME` (letters, digits, `_`, not starting with a digit);
//! `$${` writes a literal `${`; a lone `$` is kept. A whole value `file:PATH` is replaced by the
//! content of `PATH` (relative to the pipeline file, `${VAR}` allowed in it) with trailing
//! newlines removed.

use std::fmt;

/// A value that must not be printed: `Debug` and `Display` show `***`.
///
/// Get the value with [`Secret::expose`] only to hand it to the code that needs it (a plugin's
/// configuration); never to a log, an error message or the journal.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T = String>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value in clear. Hand it only to the code that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value in clear.
    pub fn into_exposed(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What redacted views print instead of a secret.
pub(crate) const MASK: &str = "***";

/// One part of a string setting: literal text or an environment variable reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text written in the file.
    Literal(String),
    /// `${name}`, with the byte offset of its `$` within the string.
    Env { name: String, offset: usize },
}

/// A malformed reference: what is wrong, and the byte offset of its `$` within the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub(crate) offset: usize,
    pub(crate) message: String,
}

/// Splits a string into literal text and `${NAME}` references.
pub(crate) fn parse_template(text: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(dollar) = rest.find('$') {
        literal.push_str(&rest[..dollar]);
        let at = offset + dollar;
        let after = &rest[dollar..];
        if let Some(escaped) = after.strip_prefix("$${") {
            literal.push_str("${");
            let used = after.len() - escaped.len();
            rest = escaped;
            offset = at + used;
        } else if let Some(inner) = after.strip_prefix("${") {
            let Some(close) = inner.find('}') else {
                return Err(TemplateError {
                    offset: at,
                    message: "`${` is not closed by `}`; write `$${` for a literal `${`".into(),
                });
            };
            let name = &inner[..close];
            if !is_env_name(name) {
                return Err(TemplateError {
                    offset: at,
                    message: format!(
                        "`${{{name}}}` is not a valid environment variable reference: \
                         names use letters, digits and `_` and do not start with a digit"
                    ),
                });
            }
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Env {
                name: name.to_owned(),
                offset: at,
            });
            let used = 2 + close + 1;
            rest = &after[used..];
            offset = at + used;
        } else {
            literal.push('$');
            rest = &after[1..];
            offset = at + 1;
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Setting names whose whole value is a secret even when written in clear in the file.
pub(crate) fn is_sensitive_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "api_key",
        "apikey",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// The byte range of the password in a URL's user info (`scheme://user:PASSWORD@host/...`).
pub(crate) fn url_password_range(url: &str) -> Option<std::ops::Range<usize>> {
    let authority_start = url.find("://")? + 3;
    let authority_len = url[authority_start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - authority_start);
    let authority = &url[authority_start..authority_start + authority_len];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    let start = authority_start + colon + 1;
    let end = authority_start + at;
    (start < end).then_some(start..end)
}

/// Replaces the password of a URL by `***`, if it has one.
pub(crate) fn mask_url_password(text: &str) -> String {
    match url_password_range(text) {
        Some(range) => format!("{}{MASK}{}", &text[..range.start], &text[range.end..]),
        None => text.to_owned(),
    }
}

/// Decodes `%XX` escapes, as URL parsers do with passwords; `None` if there are none.
pub(crate) fn percent_decoded(text: &str) -> Option<String> {
    if !text.contains('%') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
        .ok()
        .filter(|decoded| decoded != text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, offset: usize) -> Piece {
        Piece::Env {
            name: name.into(),
            offset,
        }
    }

    #[test]
    fn secret_never_prints_its_value() {
        let secret = Secret::new("hunter2".to_string());
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(***)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn templates_split_into_literals_and_references() {
        assert_eq!(
            parse_template("mssql://etl:${TIENDA_01_PASSWORD}@h:1433/v"),
            Ok(vec![
                Piece::Literal("mssql://etl:".into()),
                env("TIENDA_01_PASSWORD", 12),
                Piece::Literal("@h:1433/v".into()),
            ])
        );
        assert_eq!(
            parse_template("${A}${B}"),
            Ok(vec![env("A", 0), env("B", 4)])
        );
        assert_eq!(
            parse_template("plain"),
            Ok(vec![Piece::Literal("plain".into())])
        );
        assert_eq!(parse_template(""), Ok(vec![]));
    }

    #[test]
    fn dollar_escapes_and_lone_dollars_stay_literal() {
        assert_eq!(
            parse_template("a$${B}c"),
            Ok(vec![Piece::Literal("a${B}c".into())])
        );
        assert_eq!(
            parse_template("cost $5 $"),
            Ok(vec![Piece::Literal("cost $5 $".into())])
        );
        assert_eq!(
            parse_template("$${X}${Y}"),
            Ok(vec![Piece::Literal("${X}".into()), env("Y", 5)])
        );
    }

    #[test]
    fn malformed_references_are_errors_with_their_offset() {
        let unclosed = parse_template("ab${PASS").unwrap_err();
        assert_eq!(unclosed.offset, 2);
        assert!(unclosed.message.contains("not closed"));
        let bad = parse_template("x${1ABC}").unwrap_err();
        assert_eq!(bad.offset, 1);
        assert!(bad.message.contains("`${1ABC}`"));
        assert!(parse_template("${}").is_err());
        assert!(parse_template("${A-B}").is_err());
    }

    #[test]
    fn url_passwords_are_found_and_masked() {
        assert_eq!(
            mask_url_password("mysql://root:pw@h:3306/db"),
            "mysql://root:***@h:3306/db"
        );
        assert_eq!(mask_url_password("redis://:p@ss@h/0"), "redis://:***@h/0");
        assert_eq!(mask_url_password("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(
            mask_url_password("mysql://h/db?x=a:b@c"),
            "mysql://h/db?x=a:b@c"
        );
        assert_eq!(mask_url_password("not a url"), "not a url");
        assert_eq!(mask_url_password("mysql://u:@h"), "mysql://u:@h");
    }

    #[test]
    fn percent_decoding_finds_the_password_drivers_print() {
        assert_eq!(percent_decoded("p%40ss%2F"), Some("p@ss/".into()));
        assert_eq!(percent_decoded("plain"), None);
        assert_eq!(percent_decoded("100%"), None);
        assert_eq!(percent_decoded("%zz"), None);
    }

    #[test]
    fn sensitive_keys_are_recognised() {
        assert!(is_sensitive_key("password"));
        assert!(is_sensitive_key("DB_PASSWORD"));
        assert!(is_sensitive_key("auth_token"));
        assert!(!is_sensitive_key("url"));
        assert!(!is_sensitive_key("prefix"));
        assert!(!is_sensitive_key("primary_key"));
    }
}
