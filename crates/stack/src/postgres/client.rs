//! Talking to our PostgreSQL: connection strings, quoting, and `psql`.

use std::process::Command;

use super::Postgres;
use crate::error::{Result, StackError};
use crate::process::{describe_status, last_lines};

/// The superuser initdb creates (`-U postgres`); trust auth needs no password.
pub(super) const SUPERUSER: &str = "postgres";

impl Postgres {
    /// A libpq key=value connection string for `database`, e.g.
    /// `host=127.0.0.1 port=15432 user=postgres dbname=citygauge`.
    pub fn connection_string(&self, database: &str) -> String {
        format!("host=127.0.0.1 port={} user={SUPERUSER} dbname={}", self.port, conninfo_value(database))
    }

    /// A URL for `database`, e.g. `postgres://postgres@127.0.0.1:15432/citygauge`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{}", self.port, percent_encode(database))
    }

    /// Runs `sql` in `database` with `psql` and returns its unaligned,
    /// tuples-only output (`-At`: one row per line, columns separated by `|`).
    ///
    /// Handy for tests and tooling that want no client library; stops at the
    /// first error (`ON_ERROR_STOP`). A single statement runs outside any
    /// transaction block, so `CREATE DATABASE` works.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        check_name("database name", database)?;
        let mut cmd = Command::new(self.toolchain.pg_tool("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            // Passed as a conninfo string so that no database name can be
            // mistaken for one (psql treats a -d value containing '=' so).
            .arg("-d")
            .arg(self.connection_string(database))
            .arg("-c")
            .arg(sql)
            .env("PGCONNECT_TIMEOUT", "10");
        isolate_from_libpq_env(&mut cmd);
        run(cmd, "psql")
    }

    /// Creates database `name`, copied from `template` if given (otherwise
    /// PostgreSQL's default, `template1`). Fails if it already exists.
    ///
    /// Copying a template needs no one else connected to it; cloning the
    /// database passed to [`Postgres::start`] (which has PostGIS and perhaps
    /// migrations) is a fast way to give each test its own database.
    pub fn create_database(&self, name: &str, template: Option<&str>) -> Result<()> {
        check_name("database name", name)?;
        let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
        if let Some(template) = template {
            check_name("template name", template)?;
            sql.push_str(&format!(" TEMPLATE {}", quote_ident(template)));
        }
        self.psql("postgres", &sql).map(drop)
    }

    /// Creates `name` if missing and the PostGIS extension in it.
    pub(super) fn ensure_database(&self, name: &str) -> Result<()> {
        let query = format!("SELECT count(*) FROM pg_database WHERE datname = {}", quote_literal(name));
        if self.psql("postgres", &query)?.trim() == "0" {
            tracing::info!(database = name, port = self.port, "creating database");
            self.create_database(name, None)?;
        }
        self.psql(name, "CREATE EXTENSION IF NOT EXISTS postgis").map(drop)
    }

    /// Whether the server accepts connections, per `pg_isready`.
    pub(super) fn is_ready(&self) -> bool {
        let mut cmd = Command::new(self.toolchain.pg_tool("pg_isready"));
        cmd.args(["-q", "-h", "127.0.0.1", "-U", SUPERUSER, "-d", "postgres", "-t", "2"])
            .arg("-p")
            .arg(self.port.to_string());
        isolate_from_libpq_env(&mut cmd);
        cmd.status().is_ok_and(|status| status.success())
    }
}

/// Removes libpq environment variables that would override or extend the
/// explicit connection parameters we pass (PGHOSTADDR, for one, would send
/// us to another address despite `host=127.0.0.1`).
fn isolate_from_libpq_env(cmd: &mut Command) {
    for var in ["PGHOSTADDR", "PGSERVICE", "PGSERVICEFILE", "PGOPTIONS", "PGSSLMODE", "PGTARGETSESSIONATTRS"] {
        cmd.env_remove(var);
    }
}

/// Runs a helper command to completion; its stdout on success, else an
/// error quoting the end of its output.
pub(super) fn run(mut cmd: Command, what: &str) -> Result<String> {
    let output = cmd.output().map_err(|e| StackError::io(format!("running {what}"), e))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = if stderr.trim().is_empty() { String::from_utf8_lossy(&output.stdout) } else { stderr };
    Err(StackError::Command {
        command: describe_command(&cmd),
        status: describe_status(&output.status),
        output: last_lines(&text, 30),
    })
}

fn describe_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Rejects names PostgreSQL cannot hold (empty, or with a NUL byte).
pub(super) fn check_name(what: &'static str, name: &str) -> Result<()> {
    if name.is_empty() || name.contains('\0') {
        return Err(StackError::InvalidName { what, value: name.to_owned() });
    }
    Ok(())
}

/// Quotes an SQL identifier: `a"b` becomes `"a""b"`.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal: `it's` becomes `'it''s'`
/// (backslashes are literal: `standard_conforming_strings` is on).
pub(super) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Formats a libpq conninfo value, quoting it when it has spaces, quotes or
/// backslashes (or is empty).
fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(conninfo_value("citygauge"), "citygauge");
        assert_eq!(conninfo_value("my db"), "'my db'");
        assert_eq!(conninfo_value(r"a'b\c"), r"'a\'b\\c'");
        assert_eq!(conninfo_value(""), "''");
        assert_eq!(percent_encode("city gauge/ü"), "city%20gauge%2F%C3%BC");
        assert!(check_name("x", "a\0b").is_err());
        assert!(check_name("x", "").is_err());
    }
}
