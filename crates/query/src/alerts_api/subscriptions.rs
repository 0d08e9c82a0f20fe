//! Webhook subscriptions (admin): create, list, show with its delivery log,
//! update, delete, re-enable.
//!
//! (Skeleton: the helper that owns this file fills it in.)

use axum::Router;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
