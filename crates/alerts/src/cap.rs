//! CAP 1.2 documents (OASIS Common Alerting Protocol) for alert messages,
//! written with quick-xml.
//!
//! (Skeleton: the helper that owns this file fills it in.)

use crate::model::Message;
use crate::AlertError;

/// The CAP 1.2 XML document for `message`.
pub fn render(message: &Message) -> Result<String, AlertError> {
    let _ = message;
    Err(AlertError::Document("CAP rendering is not written yet".into()))
}
