//! `citygauge alerts replay`: the live engine over a past period's stored
//! readings, notifying no one.
//!
//! (Skeleton: the helper that owns this file fills it in.)

use std::path::PathBuf;

use citygauge_ingest::config::DatabaseArgs;

/// Options of `citygauge alerts replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Start of the period (RFC 3339).
    #[arg(long)]
    pub from: chrono::DateTime<chrono::Utc>,
    /// End of the period (RFC 3339).
    #[arg(long)]
    pub to: chrono::DateTime<chrono::Utc>,
    /// Rules to try (TOML); default: the rule set in force.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Output: a table for people, or JSON.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReplayFormat,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayFormat {
    Text,
    Json,
}
