//! Operator and admin bearer tokens, stored as SHA-256 hashes
//! (`operator_tokens`), the extractors that check them, and
//! `citygauge alerts token`.
//!
//! A handler that takes an [`Operator`] needs any valid token; one that
//! takes an [`Admin`] needs the `admin` role (rules, subscriptions). The
//! token's holder is recorded on every action taken with it.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use citygauge_ingest::config::DatabaseArgs;
use sha2::{Digest, Sha256};

use crate::{AppState, QueryError};

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

/// The holder of a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub admin: bool,
}

/// The holder of a valid `admin` token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin(pub Operator);

/// The stored form of a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Operator, QueryError> {
        let token = bearer(parts).ok_or(QueryError::Unauthorized)?;
        let client = state.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT name, role FROM operator_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
                &[&token_hash(token)],
            )
            .await?
            .ok_or(QueryError::Unauthorized)?;
        let role: String = row.get(1);
        Ok(Operator { name: row.get(0), admin: role == "admin" })
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, QueryError> {
        let operator = Operator::from_request_parts(parts, state).await?;
        if operator.admin {
            Ok(Admin(operator))
        } else {
            Err(QueryError::Forbidden("this needs an admin token".into()))
        }
    }
}
