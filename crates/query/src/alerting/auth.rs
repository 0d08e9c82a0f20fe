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
use tokio_postgres::GenericClient;

use crate::credentials::{self, holder};
use crate::{AppState, QueryError};

/// Where tokens live and what the CLI calls them.
const TOKENS: credentials::Kind = credentials::Kind { table: "operator_tokens", what: "token" };

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
    credentials::sha256(token).to_vec()
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

/// Stores a new token for `name` with `role` (`operator` or `admin`) and
/// returns it: the only time it exists outside its holder's hands.
pub async fn create_token(client: &impl GenericClient, name: &str, role: &str) -> Result<String, QueryError> {
    let name = holder(name)?;
    if role != "operator" && role != "admin" {
        return Err(QueryError::invalid("role", format!("`{role}` is not operator or admin")));
    }
    // Unprefixed: tokens handed out before keys existed look the same.
    let token = credentials::new_secret("");
    client
        .execute(
            "INSERT INTO operator_tokens (name, role, token_sha256) VALUES ($1, $2, $3)",
            &[&name, &role, &token_hash(&token)],
        )
        .await?;
    Ok(token)
}

/// Revokes every live token of `name`; returns how many.
pub async fn revoke_tokens(client: &impl GenericClient, name: &str) -> Result<u64, QueryError> {
    TOKENS.revoke(client, name).await
}

/// `citygauge alerts token create|revoke`: what to print.
pub async fn run_token_command(command: TokenCommand) -> Result<String, QueryError> {
    match &command {
        TokenCommand::Create { name, role, database } => {
            let (_store, client) = credentials::migrated_client(database).await?;
            let token = create_token(&**client, name, role).await?;
            Ok(format!("{token}\n"))
        }
        TokenCommand::Revoke { name, database } => TOKENS.revoke_command(database, name).await,
    }
}
