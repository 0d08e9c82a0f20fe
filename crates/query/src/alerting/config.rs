//! Options of the alerting part of `citygauge query`.

use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct AlertingConfig {
    /// Do not run the alert evaluator and notifiers in this process (the
    /// alert API still answers). By default every replica runs them: one
    /// evaluates at a time (a PostgreSQL advisory lock), another takes over
    /// within `--alerts-leader-poll-ms` when it dies.
    #[arg(long, env = "CITYGAUGE_ALERTS_DISABLED")]
    pub alerts_disabled: bool,
    /// Rule set to install when the database holds none (e.g.
    /// deploy/alert-rules.toml); later changes go through the admin API.
    #[arg(long, env = "CITYGAUGE_ALERT_RULES_FILE")]
    pub alert_rules_file: Option<PathBuf>,
    /// How often the evaluator's clock ticks (silence, windows sliding, dusk).
    #[arg(long, env = "CITYGAUGE_ALERTS_TICK_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub alerts_tick_ms: u64,
    /// The least hours of stored readings the evaluator replays at start to
    /// rebuild its windows. Each kind gets at least this, more when its rules
    /// read further back (24 h 15 min of rain; for sewer lines, the sediment
    /// fit's days of daily minima: 8 days by default).
    #[arg(long, env = "CITYGAUGE_ALERTS_WARMUP_HOURS", default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=720))]
    pub alerts_warmup_hours: u32,
    /// How often a standby replica tries to take the evaluation lease.
    #[arg(long, env = "CITYGAUGE_ALERTS_LEADER_POLL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub alerts_leader_poll_ms: u64,
    /// Public base URL of this service, for links in CAP documents, the
    /// Atom feed and webhook bodies (default: http://<query-http-listen>).
    #[arg(long, env = "CITYGAUGE_ALERTS_PUBLIC_URL")]
    pub alerts_public_url: Option<String>,
    /// Timeout of one webhook request.
    #[arg(long, env = "CITYGAUGE_WEBHOOK_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=120_000))]
    pub webhook_timeout_ms: u64,
    /// Attempts per delivery before it is given up (`failed`).
    #[arg(long, env = "CITYGAUGE_WEBHOOK_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub webhook_max_attempts: u32,
    /// First retry delay; doubles per attempt, with full jitter.
    #[arg(long, env = "CITYGAUGE_WEBHOOK_BACKOFF_BASE_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub webhook_backoff_base_ms: u64,
    /// Longest retry delay.
    #[arg(long, env = "CITYGAUGE_WEBHOOK_BACKOFF_MAX_MS", default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub webhook_backoff_max_ms: u64,
    /// Consecutive failed deliveries after which a subscription is disabled
    /// (shown as such; an admin re-enables it).
    #[arg(long, env = "CITYGAUGE_WEBHOOK_DISABLE_AFTER_FAILURES", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_disable_after_failures: u32,
    /// Webhook requests in flight at once.
    #[arg(long, env = "CITYGAUGE_WEBHOOK_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub webhook_concurrency: u32,
    /// Broker to publish alert changes to (`mqtt://host:port`); none: no MQTT.
    #[arg(long, env = "CITYGAUGE_ALERTS_MQTT_URL")]
    pub alerts_mqtt_url: Option<String>,
    /// Topic prefix of published alerts (`<prefix>/<rule>/<subject>`).
    #[arg(long, env = "CITYGAUGE_ALERTS_MQTT_TOPIC_PREFIX", default_value = "city/alerts")]
    pub alerts_mqtt_topic_prefix: String,
}
