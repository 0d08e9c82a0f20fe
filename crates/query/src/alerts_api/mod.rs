//! The alert API: list and filter alerts, their events and CAP messages,
//! the Atom feed, operator actions, silences, rules, subscriptions, replay.
//!
//! (Skeleton: the helper that owns this module fills it in; `subscriptions`
//! belongs to the webhook helper.)

pub mod subscriptions;

use axum::Router;

use crate::AppState;

/// Every alert route.
pub fn routes() -> Router<AppState> {
    Router::new().merge(subscriptions::routes())
}
