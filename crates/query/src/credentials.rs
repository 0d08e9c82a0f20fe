//! What operator tokens (`citygauge alerts token`, [`crate::alerting::auth`])
//! and open-data API keys (`citygauge opendata key`, [`crate::fair_use::keys`])
//! share: the holder name rule, the random secret, its SHA-256 (the only
//! form stored), the migrated connection the commands use, and revoking
//! every live secret of a holder. Each keeps its own table, since a token
//! carries a role and a key a quota.

use citygauge_ingest::config::DatabaseArgs;
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use crate::QueryError;

/// The SHA-256 of a secret, as stored.
pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A new secret: `prefix` and 32 bytes from the OS-seeded generator, hex.
pub(crate) fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// A holder's name, as the CLI takes it: trimmed, 1 to 100 printable characters.
pub(crate) fn holder(name: &str) -> Result<&str, QueryError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(QueryError::invalid("name", "must be 1 to 100 printable characters"));
    }
    Ok(name)
}

/// A connection for a command, after migrating (the store is returned so
/// its pool outlives the connection).
pub(crate) async fn migrated_client(
    database: &DatabaseArgs,
) -> Result<(citygauge_store::Store, deadpool_postgres::Object), QueryError> {
    let store = citygauge_store::Store::new(database.store_config())?;
    store.migrate().await?;
    let client = store.client().await?;
    Ok((store, client))
}

/// One kind of secret: its table (with `name` and `revoked_at` columns) and
/// what the CLI calls it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    pub table: &'static str,
    pub what: &'static str,
}

impl Kind {
    /// Revokes every live secret of `name`; returns how many.
    pub async fn revoke(&self, client: &impl GenericClient, name: &str) -> Result<u64, QueryError> {
        let name = holder(name)?;
        let sql = format!("UPDATE {} SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", self.table);
        Ok(client.execute(sql.as_str(), &[&name]).await?)
    }

    /// `... revoke --name N`: what to print, or not found when nothing was live.
    pub async fn revoke_command(&self, database: &DatabaseArgs, name: &str) -> Result<String, QueryError> {
        let (_store, client) = migrated_client(database).await?;
        let revoked = self.revoke(&**client, name).await?;
        if revoked == 0 {
            return Err(QueryError::not_found(format!("a live {} of `{}`", self.what, name.trim())));
        }
        Ok(format!("revoked {revoked} {}(s) of {}\n", self.what, name.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_hex_and_names_are_checked() {
        let (a, b) = (new_secret("cgod_"), new_secret(""));
        assert!(a.starts_with("cgod_") && a.len() == 5 + 64, "{a}");
        assert!(b.len() == 64 && b.bytes().all(|c| c.is_ascii_hexdigit()), "{b}");
        assert_ne!(new_secret(""), b);
        assert_eq!(sha256("x"), sha256("x"));
        assert_eq!(holder("  Rain app ").unwrap(), "Rain app");
        assert!(holder(" ").is_err());
        assert!(holder("a\nb").is_err());
        assert!(holder(&"x".repeat(101)).is_err());
    }
}
