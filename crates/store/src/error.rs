use tokio_postgres::error::SqlState;

/// Everything that can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database connection pool: {0}")]
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
    /// Making a day partition failed; always worth retrying (a concurrent
    /// insert into the default partition, a lock), never the rows' fault.
    #[error("creating a partition: {}", describe(.0))]
    Partition(tokio_postgres::Error),
    /// A change-stream payload that is not what [`crate::changes`] sends.
    #[error("invalid change notification: {0}")]
    ChangePayload(String),
}

/// tokio-postgres shows a server error as just "db error"; the operator needs
/// the server's message and SQLSTATE to know what went wrong.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}: {})", e, db.code().code(), db.message()),
        None => e.to_string(),
    }
}

impl StoreError {
    /// Whether retrying the same work later can succeed: lost connections, a
    /// database restarting, lock or serialization conflicts. Data errors (a
    /// constraint or encoding violation) will fail again however often tried.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) | StoreError::Partition(_) => true,
            StoreError::Postgres(e) => match e.code() {
                None => true,
                Some(code) => {
                    let class = &code.code()[..2];
                    // 08 connection, 40 rollback (deadlock, serialization), 53 resources,
                    // 57 operator intervention (shutdown), 55 lock not available.
                    matches!(class, "08" | "40" | "53" | "57" | "55") || *code == SqlState::UNIQUE_VIOLATION
                }
            },
            _ => false,
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Postgres(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION))
    }
}
