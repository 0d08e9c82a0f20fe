//! Every database connection of the platform is made here: the connection
//! string as libpq reads it (including `sslmode=verify-ca|verify-full`,
//! `sslrootcert`, `sslcert`, `sslkey`, which tokio-postgres does not know),
//! the password from a file or the environment, and TLS through rustls.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use tokio_postgres::{Client, Connection, Socket};

use crate::tls::{self, MakeRustls, RustlsStream, TlsFiles, Verify};
use crate::{StoreConfig, StoreError};

/// A value that must never reach a log: its Debug is `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// libpq's `sslmode` values (`allow` is not offered: it would try plain text first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<SslMode, String> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(format!("sslmode `{other}`: expected disable, prefer, require, verify-ca or verify-full")),
        }
    }
}

/// How to connect beyond the connection string; the string's own settings
/// (`sslmode`, `sslrootcert`, a password) come first, except the password
/// options, which override the string's.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    pub sslmode: Option<SslMode>,
    /// PEM CA certificate(s) the server's certificate must be signed by.
    pub ca_file: Option<PathBuf>,
    pub password: Option<Secret>,
    /// A file holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("sslmode", &self.sslmode)
            .field("ca_file", &self.ca_file)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("database_url", &redact(&self.database_url))
            .field("connect", &self.connect)
            .field("pool_max_size", &self.pool_max_size)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Where and how to connect: every connection, pooled or not, is made from one.
#[derive(Debug, Clone)]
pub struct Database {
    /// Debug shows no password (tokio-postgres redacts it).
    pub config: tokio_postgres::Config,
    tls: MakeRustls,
}

impl Database {
    /// Reads the connection string and the files it names; errors name the option.
    pub fn new(url: &str, options: &ConnectOptions) -> Result<Database, StoreError> {
        let bad = |e: String| StoreError::Config(format!("--database-url: {e}"));
        let parts = Conninfo::split(url).map_err(bad)?;
        let mut config = tokio_postgres::Config::from_str(&parts.rest).map_err(|e| bad(e.to_string()))?;
        let from_url = parts.sslmode.as_deref().map(SslMode::from_str).transpose().map_err(bad)?;
        let mode = from_url.or(options.sslmode).unwrap_or(SslMode::Prefer);
        let (ca_file, ca_option) = match (&parts.sslrootcert, &options.ca_file) {
            (Some(path), _) => (Some(PathBuf::from(path)), "sslrootcert in --database-url"),
            (None, Some(path)) => (Some(path.clone()), "--database-ca-file"),
            (None, None) => (None, "--database-ca-file"),
        };
        let verify = match mode {
            SslMode::Disable | SslMode::Prefer => Verify::Nothing,
            // As libpq: `require` with a CA checks the chain.
            SslMode::Require if ca_file.is_some() => Verify::Chain,
            SslMode::Require => Verify::Nothing,
            SslMode::VerifyCa => Verify::Chain,
            SslMode::VerifyFull => Verify::Full,
        };
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let client_cert = match (&parts.sslcert, &parts.sslkey) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            _ => return Err(bad("sslcert and sslkey go together".into())),
        };
        let files = TlsFiles {
            verify,
            ca_file,
            ca_option,
            public_roots_by_default: false,
            client_cert,
            client_option: "sslcert/sslkey in --database-url",
        };
        let tls = MakeRustls::new(tls::client_config(&files).map_err(StoreError::Config)?);
        if let Some(path) = &options.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                StoreError::Config(format!("--database-password-file {}: cannot read it: {e}", path.display()))
            })?;
            config.password(text.trim_end_matches(['\n', '\r']));
        } else if let Some(password) = &options.password {
            config.password(password.expose());
        }
        Ok(Database { config, tls })
    }

    /// The same TLS and files, with other connection settings.
    pub fn with_config(&self, config: tokio_postgres::Config) -> Database {
        Database { config, tls: self.tls.clone() }
    }

    /// One connection outside any pool (LISTEN, advisory locks).
    pub async fn connect(&self) -> Result<(Client, Connection<Socket, RustlsStream<Socket>>), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }

    /// A deadpool manager for these settings.
    pub fn manager(&self) -> Manager {
        Manager::from_config(
            self.config.clone(),
            self.tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        )
    }
}

/// A connection string with no other options (tests, tools).
impl FromStr for Database {
    type Err = StoreError;
    fn from_str(url: &str) -> Result<Database, StoreError> {
        Database::new(url, &ConnectOptions::default())
    }
}

/// The settings given as a plain tokio-postgres configuration (tests):
/// `prefer`, nothing verified.
impl From<tokio_postgres::Config> for Database {
    fn from(config: tokio_postgres::Config) -> Database {
        let files = TlsFiles {
            verify: Verify::Nothing,
            ca_file: None,
            ca_option: "--database-ca-file",
            public_roots_by_default: false,
            client_cert: None,
            client_option: "",
        };
        let tls = MakeRustls::new(tls::client_config(&files).expect("no files to read"));
        Database { config, tls }
    }
}

/// The connection string for logs: any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match Conninfo::pairs(url) {
        Ok((Some(prefix), pairs)) => {
            let head = match prefix.split_once('@') {
                Some((userinfo, host)) => match userinfo.rsplit_once(':') {
                    Some((user, _)) if !user.ends_with('/') => format!("{user}:***@{host}"),
                    _ => prefix,
                },
                None => prefix,
            };
            let query: Vec<String> = pairs
                .iter()
                .map(|p| if p.key == "password" { "password=***".to_string() } else { p.raw.clone() })
                .collect();
            if query.is_empty() {
                head
            } else {
                format!("{head}?{}", query.join("&"))
            }
        }
        Ok((None, pairs)) => pairs
            .iter()
            .map(|p| if p.key == "password" { "password=***".to_string() } else { p.raw.clone() })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => "(unreadable connection string)".into(),
    }
}

/// A connection string with the keys tokio-postgres does not take set apart.
#[derive(Debug, Default, PartialEq)]
struct Conninfo {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
}

#[derive(Debug)]
struct Pair {
    key: String,
    value: String,
    /// As written, to rebuild the string.
    raw: String,
}

impl Conninfo {
    fn split(url: &str) -> Result<Conninfo, String> {
        let (prefix, pairs) = Conninfo::pairs(url)?;
        let mut info = Conninfo::default();
        let mut kept = Vec::new();
        for pair in pairs {
            let slot = match pair.key.as_str() {
                "sslmode" => &mut info.sslmode,
                "sslrootcert" => &mut info.sslrootcert,
                "sslcert" => &mut info.sslcert,
                "sslkey" => &mut info.sslkey,
                _ => {
                    kept.push(pair.raw);
                    continue;
                }
            };
            *slot = Some(pair.value);
        }
        info.rest = match prefix {
            Some(prefix) if kept.is_empty() => prefix,
            Some(prefix) => format!("{prefix}?{}", kept.join("&")),
            None => kept.join(" "),
        };
        Ok(info)
    }

    /// The URL's part before `?` (None for the key=value form) and the pairs.
    fn pairs(url: &str) -> Result<(Option<String>, Vec<Pair>), String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (prefix, query) = url.split_once('?').unwrap_or((url, ""));
            let pairs = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|raw| {
                    let (key, value) = raw.split_once('=').unwrap_or((raw, ""));
                    Ok(Pair { key: percent_decode(key)?, value: percent_decode(value)?, raw: raw.to_string() })
                })
                .collect::<Result<_, String>>()?;
            return Ok((Some(prefix.to_string()), pairs));
        }
        key_value_pairs(url).map(|pairs| (None, pairs))
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("a truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("`%{hex}` is not a %-escape"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %-escape that is not UTF-8".to_string())
}

/// libpq's `key = value` syntax: values may be single-quoted, and `\`
/// escapes the next character.
fn key_value_pairs(s: &str) -> Result<Vec<Pair>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut pairs = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            return Ok(pairs);
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        skip_ws(&mut i);
        if chars.get(i) != Some(&'=') {
            return Err(format!("`{key}` has no value"));
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = String::new();
        let quoted = chars.get(i) == Some(&'\'');
        if quoted {
            i += 1;
        }
        loop {
            match chars.get(i) {
                None if quoted => return Err(format!("the value of `{key}` has no closing quote")),
                None => break,
                Some('\'') if quoted => {
                    i += 1;
                    break;
                }
                Some(c) if c.is_whitespace() && !quoted => break,
                Some('\\') => {
                    value.extend(chars.get(i + 1));
                    i += 2;
                }
                Some(c) => {
                    value.push(*c);
                    i += 1;
                }
            }
        }
        let raw = chars[start..i.min(chars.len())].iter().collect();
        pairs.push(Pair { key, value, raw });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_only_keys_are_taken_out_of_both_forms() {
        let info = Conninfo::split(
            "postgres://u:p%40ss@db:5433/city?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(info.rest, "postgres://u:p%40ss@db:5433/city?application_name=x");
        assert_eq!(info.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(info.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        let info = Conninfo::split("host=db  sslmode = require user=u password='a b\\'c' sslrootcert=/x").unwrap();
        assert_eq!(info.rest, "host=db user=u password='a b\\'c'");
        assert_eq!(info.sslmode.as_deref(), Some("require"));
        assert_eq!(info.sslrootcert.as_deref(), Some("/x"));
        assert!(Conninfo::split("host=db password='open").is_err());
    }

    #[test]
    fn modes_and_files_are_checked_up_front() {
        let err = |url: &str, options: &ConnectOptions| Database::new(url, options).unwrap_err().to_string();
        assert!(err("host=db sslmode=sometimes", &ConnectOptions::default()).contains("sslmode `sometimes`"));
        assert!(err("host=db sslmode=verify-full", &ConnectOptions::default()).contains("--database-ca-file"));
        let missing = ConnectOptions { ca_file: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        assert!(err("host=db sslmode=verify-ca", &missing).contains("--database-ca-file /nonexistent/ca.pem"));
        let missing = ConnectOptions { password_file: Some("/nonexistent/pw".into()), ..Default::default() };
        assert!(err("host=db", &missing).contains("--database-password-file"));
        let db = Database::new("host=db sslmode=require", &ConnectOptions::default()).unwrap();
        assert_eq!(db.config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        let options = ConnectOptions { sslmode: Some(SslMode::Disable), ..Default::default() };
        let db = Database::new("host=db", &options).unwrap();
        assert_eq!(db.config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://u:hunter2@db/city?password=x&sslmode=require"),
            "postgres://u:***@db/city?password=***&sslmode=require"
        );
        assert_eq!(redact("host=db password='hunter2' user=u"), "host=db password=*** user=u");
        let options = ConnectOptions { password: Some(Secret::new("hunter2")), ..Default::default() };
        let db = Database::new("host=db", &options).unwrap();
        assert_eq!(db.config.get_password(), Some(&b"hunter2"[..]));
        let mut config = StoreConfig::new("host=db password=hunter2");
        config.connect = options;
        for shown in [format!("{db:?}"), format!("{config:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}
