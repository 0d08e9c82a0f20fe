//! The webhook delivery worker (see alerting/mod.rs).
//!
//! (Skeleton: the helper that owns this file fills it in.)

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::alerting::AlertingConfig;

/// Delivers pending webhook deliveries until `stop`.
pub async fn run(pool: Pool, config: Arc<AlertingConfig>, stop: CancellationToken) {
    let _ = (pool, config);
    stop.cancelled().await;
}
