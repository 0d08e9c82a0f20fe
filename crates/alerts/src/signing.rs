//! The webhook signature scheme: HMAC-SHA256 over `"{timestamp}.{body}"`.
//!
//! (Skeleton: the helper that owns this file fills it in.)
