//! Operator and admin bearer tokens (stored as SHA-256 hashes), the axum
//! extractor that checks them, and `citygauge alerts token`.
//!
//! (Skeleton: the helper that owns this file fills it in.)

use citygauge_ingest::config::DatabaseArgs;

/// `citygauge alerts token ...`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its hash is stored).
    Create {
        /// Who holds it (recorded on every action taken with it).
        #[arg(long)]
        name: String,
        /// `operator` (acknowledge, resolve, notes, silences) or `admin` (also rules, subscriptions).
        #[arg(long, default_value = "operator")]
        role: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke every token of a holder.
    Revoke {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}
