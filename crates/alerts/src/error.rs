use thiserror::Error;

/// Everything the engine's configuration and documents can refuse.
#[derive(Debug, Error)]
pub enum AlertError {
    /// A rule change that does not validate; `field` is the dotted path of
    /// the offending setting (`water_level.margin_m`, `overrides[2].district`).
    #[error("invalid rule setting {field}: {reason}")]
    InvalidRule { field: String, reason: String },
    /// A rules document that is not valid TOML/JSON for the rule set.
    #[error("rules document: {0}")]
    RulesSyntax(String),
    /// A document (CAP, Atom) that could not be written.
    #[error("document: {0}")]
    Document(String),
}

impl AlertError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> AlertError {
        AlertError::InvalidRule { field: field.into(), reason: reason.into() }
    }
}
