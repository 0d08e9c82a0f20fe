//! The Atom feed of active alerts (one entry per alert, linking its CAP document).
//!
//! (Skeleton: the helper that owns this file fills it in.)

use crate::model::Message;
use crate::AlertError;

/// The Atom feed whose entries are the latest message of each active alert.
/// `base_url` is the service's public URL (entries link `{base_url}/api/v1/alerts/{id}.cap`).
pub fn feed(
    base_url: &str,
    updated: chrono::DateTime<chrono::FixedOffset>,
    latest: &[Message],
) -> Result<String, AlertError> {
    let _ = (base_url, updated, latest);
    Err(AlertError::Document("the Atom feed is not written yet".into()))
}
