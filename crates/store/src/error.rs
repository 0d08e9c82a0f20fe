use tokio_postgres::error::SqlState;

/// Everything that can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database connection pool: {}", describe_pool(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("invalid database configuration: {0}")]
    Config(String),
    #[error("the database schema is at version {found}, newer than this citygauge knows ({known}); upgrade citygauge")]
    SchemaTooNew { found: i32, known: i32 },
    #[error(
        "migration {version} was changed after it was applied (checksum {applied} in the database, {embedded} here)"
    )]
    MigrationChanged { version: i32, applied: String, embedded: String },
    #[error("the TimescaleDB backend was requested but {0}")]
    TimescaleUnavailable(String),
    /// Making a day partition failed; never the rows' fault, so retried
    /// later (a lock held too long, a concurrent insert into the default
    /// partition) unless the database refuses this daemon outright.
    #[error("creating a partition: {}", describe(.0))]
    Partition(tokio_postgres::Error),
    /// A change-stream payload that is not what [`crate::changes`] sends.
    #[error("invalid change notification: {0}")]
    ChangePayload(String),
    /// A value the binary COPY encoder cannot send (a time outside
    /// PostgreSQL's range): the row's fault, so set aside like refused data.
    #[error("cannot encode a row: {0}")]
    Encode(String),
}

/// What to do about a database error: decided here, once, for every caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The same work can succeed later (connection lost, server restarting,
    /// serialization failure or deadlock, statement or lock timeout): retry
    /// with backoff.
    Transient,
    /// The database refuses these values (a CHECK, invalid text, a number out
    /// of range...): retrying fails forever, so the refused rows are set
    /// aside and the rest stored.
    Data,
    /// Nothing this daemon can retry or set aside fixes it (authentication,
    /// missing database, privileges, a schema newer than this build): stop
    /// and tell the operator.
    Fatal,
}

impl ErrorClass {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Data => "data",
            ErrorClass::Fatal => "fatal",
        }
    }

    pub const ALL: [ErrorClass; 3] = [ErrorClass::Transient, ErrorClass::Data, ErrorClass::Fatal];
}

/// The class of a server error by its SQLSTATE. Unknown codes are transient:
/// a retried error is visible (metrics, readiness), an error wrongly taken
/// for bad data would set good rows aside.
pub fn class_of(code: &SqlState) -> ErrorClass {
    use ErrorClass::{Data, Fatal, Transient};
    // Codes that differ from the rest of their class first.
    match *code {
        // Two writers racing on one key: the loser's retry skips duplicates.
        SqlState::UNIQUE_VIOLATION => return Transient,
        // A standby after a failover: a new connection reaches the primary.
        SqlState::READ_ONLY_SQL_TRANSACTION => return Transient,
        SqlState::DATABASE_DROPPED => return Fatal,
        SqlState::DATA_CORRUPTED | SqlState::INDEX_CORRUPTED => return Fatal,
        _ => {}
    }
    match &code.code()[..2] {
        // Connection exceptions, transaction rollbacks (serialization,
        // deadlock), insufficient resources (disk full, too many
        // connections), object not in prerequisite state (lock_timeout),
        // operator intervention (statement_timeout, shutdown, starting up),
        // system errors (I/O), snapshot too old, internal errors.
        "08" | "40" | "53" | "55" | "57" | "58" | "72" | "XX" => Transient,
        // Data exceptions (invalid text, out of range...), integrity
        // violations (CHECK, NOT NULL, foreign keys), cardinality, WITH CHECK
        // OPTION, triggered data changes, routine exceptions and RAISE in
        // triggers, program limits (a value too large for an index row).
        "21" | "22" | "23" | "27" | "2F" | "38" | "39" | "44" | "54" | "P0" => Data,
        // Invalid authorization (wrong user or password), missing database or
        // schema, syntax or access rule violations (insufficient privilege, a
        // table or column this build expects but the database lacks),
        // unsupported features, configuration file errors.
        "28" | "3D" | "3F" | "42" | "0A" | "F0" | "2B" => Fatal,
        _ => Transient,
    }
}

/// tokio-postgres shows a server error as just "db error"; the operator needs
/// the server's message and SQLSTATE to know what went wrong.
fn describe(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{} ({}: {})", e, db.code().code(), db.message()),
        // The cause says why a connection or its TLS handshake failed.
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

/// A TLS setup the server or its certificate refuses (`sslmode=require` to a
/// server without TLS, a certificate not signed by the configured CA): no
/// retry fixes it.
fn tls_refused(e: &tokio_postgres::Error) -> bool {
    let Some(cause) = std::error::Error::source(e) else { return false };
    if let Some(rustls) = cause
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return matches!(rustls, rustls::Error::General(_) | rustls::Error::InvalidCertificate(_));
    }
    cause.to_string() == "server does not support TLS"
}

fn describe_pool(e: &deadpool_postgres::PoolError) -> String {
    match e {
        // The server's own words: "password authentication failed for user".
        deadpool_postgres::PoolError::Backend(e) => format!("could not connect: {}", describe(e)),
        other => other.to_string(),
    }
}

impl StoreError {
    /// The SQLSTATE the server answered with, if it answered.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        match self {
            StoreError::Postgres(e) | StoreError::Partition(e) => e.code(),
            StoreError::Pool(deadpool_postgres::PoolError::Backend(e)) => e.code(),
            _ => None,
        }
    }

    /// How this error is handled: see [`ErrorClass`].
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Pool(deadpool_postgres::PoolError::Backend(e)) | StoreError::Postgres(e) if tls_refused(e) => {
                ErrorClass::Fatal
            }
            StoreError::Postgres(e) => match e.code() {
                Some(code) => class_of(code),
                // No server answer: the connection broke or timed out.
                None => ErrorClass::Transient,
            },
            StoreError::Pool(deadpool_postgres::PoolError::Backend(e)) => match e.code() {
                // Refused at connect: the server said why (authentication,
                // missing database, too many connections, starting up).
                Some(code) => match class_of(code) {
                    // Nothing in a connection attempt is row data.
                    ErrorClass::Data => ErrorClass::Transient,
                    class => class,
                },
                None => ErrorClass::Transient,
            },
            // Timeouts waiting for a connection; a closed pool only at exit.
            StoreError::Pool(_) => ErrorClass::Transient,
            StoreError::Partition(e) => match e.code().map(class_of) {
                Some(ErrorClass::Fatal) => ErrorClass::Fatal,
                _ => ErrorClass::Transient,
            },
            StoreError::Config(_)
            | StoreError::SchemaTooNew { .. }
            | StoreError::MigrationChanged { .. }
            | StoreError::TimescaleUnavailable(_) => ErrorClass::Fatal,
            StoreError::ChangePayload(_) | StoreError::Encode(_) => ErrorClass::Data,
        }
    }

    /// Whether retrying the same work later can succeed.
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Postgres(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION))
    }

    /// For a fatal error, what the operator has to fix, in a few words.
    pub fn fatal_cause(&self) -> Option<&'static str> {
        if self.class() != ErrorClass::Fatal {
            return None;
        }
        Some(match self {
            StoreError::SchemaTooNew { .. } => "the schema is newer than this citygauge",
            StoreError::MigrationChanged { .. } => "an applied migration differs from this citygauge's",
            StoreError::Config(_) => "invalid database configuration",
            StoreError::TimescaleUnavailable(_) => "TimescaleDB is unavailable",
            _ => match self.sqlstate().map(|c| &c.code()[..2]) {
                Some("28") => "authentication failed (user or password)",
                Some("3D") => "the database does not exist",
                Some("3F") => "the schema does not exist",
                Some("42") if self.sqlstate() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => "insufficient privilege",
                Some("42") => "the database schema is not what this citygauge expects",
                Some("57") => "the database was dropped",
                Some("XX") => "the database reports corrupted data",
                _ => "the database refuses this daemon",
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(code: &str) -> ErrorClass {
        class_of(&SqlState::from_code(code))
    }

    #[test]
    fn transient_errors_are_retried() {
        for code in [
            "08000", "08003", "08006", "08001", // connection lost or refused
            "57P01", "57P02", "57P03", // admin shutdown, crash shutdown, starting up
            "40001", "40P01", // serialization failure, deadlock
            "57014", // statement_timeout (query canceled)
            "55P03", // lock_timeout (lock not available)
            "53300", "53100", "53200", // too many connections, disk full, out of memory
            "58030", // I/O error
            "23505", // two writers racing on a key: the retry skips duplicates
            "25006", // a read-only standby after failover
            "XX000", // internal error
            "ZZ999", // unknown: retried, never mistaken for data
        ] {
            assert_eq!(class(code), ErrorClass::Transient, "{code}");
        }
    }

    #[test]
    fn refused_values_are_data_errors() {
        for code in [
            "23514", // check violation
            "23502", // not null violation
            "23503", // foreign key violation
            "22P02", // invalid text representation
            "22003", // numeric value out of range
            "22001", // string data right truncation
            "22021", // character not in repertoire
            "22008", // datetime field overflow
            "21000", // cardinality violation
            "P0001", // RAISE in a trigger
            "54000", // program limit (index row too large)
            "44000", // WITH CHECK OPTION violation
        ] {
            assert_eq!(class(code), ErrorClass::Data, "{code}");
        }
    }

    #[test]
    fn what_the_operator_must_fix_is_fatal() {
        for code in [
            "28P01", "28000", // wrong password, no such role / not allowed by pg_hba
            "3D000", // database does not exist
            "42501", // insufficient privilege
            "42P01", "42703", // table or column missing: a schema we do not know
            "3F000", // schema missing
            "57P04", // database dropped
            "XX001", "XX002", // corrupted data or index
        ] {
            assert_eq!(class(code), ErrorClass::Fatal, "{code}");
        }
    }

    #[test]
    fn errors_without_a_server_answer_follow_their_kind() {
        assert_eq!(StoreError::Config("x".into()).class(), ErrorClass::Fatal);
        assert_eq!(StoreError::SchemaTooNew { found: 9, known: 3 }.class(), ErrorClass::Fatal);
        assert_eq!(
            StoreError::SchemaTooNew { found: 9, known: 3 }.fatal_cause(),
            Some("the schema is newer than this citygauge")
        );
        let timeout = deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait);
        assert_eq!(StoreError::Pool(timeout).class(), ErrorClass::Transient);
        assert_eq!(StoreError::ChangePayload("x".into()).class(), ErrorClass::Data);
        assert_eq!(StoreError::ChangePayload("x".into()).fatal_cause(), None);
    }
}
