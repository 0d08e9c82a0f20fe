use citygauge_store::StoreError;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database refuses the daemon at start in a way retrying cannot
    /// fix: named by its option, so the operator knows where to look.
    #[error("--database-url (CITYGAUGE_DATABASE_URL): {cause}: {error}")]
    Database { cause: &'static str, error: StoreError },
    /// A task of the daemon failed or ended before shutdown.
    #[error("the {task} task stopped: {cause}")]
    Task { task: &'static str, cause: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl IngestError {
    /// A database error that stops the daemon, with what to fix.
    pub(crate) fn database(error: StoreError) -> IngestError {
        let cause = error.fatal_cause().unwrap_or("the database refuses a statement this daemon needs");
        IngestError::Database { cause, error }
    }
}
