//! The live evaluator (see alerting/mod.rs).
//!
//! (Skeleton: the helper that owns this file fills it in.)

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::alerting::AlertingConfig;

/// What the evaluator needs from the service.
#[derive(Debug, Clone)]
pub struct EvaluatorContext {
    pub pool: Pool,
    /// For the dedicated connection that holds the lease and listens.
    pub database: tokio_postgres::Config,
    pub config: Arc<AlertingConfig>,
    pub timezone: chrono_tz::Tz,
}

/// Runs until `stop`: waits for the lease, then evaluates.
pub async fn run(context: EvaluatorContext, stop: CancellationToken) {
    let _ = context;
    stop.cancelled().await;
}
