//! The crate's one error type. Every variant that comes from a query option
//! names the option and the byte position in its (percent-decoded) value, so
//! the server can answer `400` with a message a client author can act on:
//! `$filter at 23: expected ')' after the arguments of substringof`.

/// Why a query string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaError {
    /// The text does not follow the grammar.
    #[error("{option} at {pos}: {message}")]
    Syntax { option: &'static str, pos: usize, message: String },

    /// Well-formed, but operand or argument types do not fit, or the
    /// expression is not of the type its place needs (a `$filter` must be boolean).
    #[error("{option} at {pos}: {message}")]
    Type { option: &'static str, pos: usize, message: String },

    /// A documented limit ([`crate::limits`]) was exceeded.
    #[error("{option} at {pos}: {what} exceeds {limit} ({max})")]
    Limit { option: &'static str, pos: usize, what: String, limit: &'static str, max: u64 },

    /// The schema does not know a property or navigation path.
    #[error("{option} at {pos}: {message}")]
    UnknownProperty { option: &'static str, pos: usize, message: String },

    /// The query string itself could not be decoded (bad UTF-8, too long).
    #[error("query string: {0}")]
    QueryString(String),

    /// A `$`-option this server does not implement (`$apply`, `$search`...).
    #[error("unknown query option '{0}'")]
    UnknownOption(String),

    /// The same option twice at one level.
    #[error("query option {0} is given more than once")]
    DuplicateOption(String),
}

impl StaError {
    /// Byte position in the option's decoded value, when the error has one.
    pub fn position(&self) -> Option<usize> {
        match self {
            StaError::Syntax { pos, .. }
            | StaError::Type { pos, .. }
            | StaError::Limit { pos, .. }
            | StaError::UnknownProperty { pos, .. } => Some(*pos),
            _ => None,
        }
    }

    /// The query option the error is about (`$filter`, `$expand`...).
    pub fn option(&self) -> Option<&str> {
        match self {
            StaError::Syntax { option, .. }
            | StaError::Type { option, .. }
            | StaError::Limit { option, .. }
            | StaError::UnknownProperty { option, .. } => Some(option),
            StaError::UnknownOption(o) | StaError::DuplicateOption(o) => Some(o),
            StaError::QueryString(_) => None,
        }
    }
}

/// Result alias for the crate.
pub type Result<T, E = StaError> = std::result::Result<T, E>;
