//! Every option of `citygauge ingest`, as flags and `CITYGAUGE_*` variables
//! (the binary layers an optional TOML file under both).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use citygauge_domain::decode::{DeviceProfileConfig, DeviceProfiles};
use citygauge_domain::normalise::SourceBindings;
use citygauge_domain::quality::QualityConfig;
use citygauge_domain::{DomainError, Kind, NormaliseConfig};
use citygauge_store::{BackendPreference, StoreConfig};

use crate::IngestError;

/// MQTT protocol version to speak to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MqttProtocol {
    /// MQTT 3.1.1.
    #[value(name = "3.1.1")]
    V311,
    /// MQTT 5: session expiry, receive maximum and maximum packet size are
    /// negotiated, so the broker never sends more than the daemon accepts.
    #[value(name = "5")]
    V5,
}

/// Time-series backend for a new database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    Auto,
    Timescaledb,
    Native,
}

/// Where the database is, and how a new one is set up: every subcommand that
/// opens the database takes these.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection, libpq `key=value` string or `postgres://` URL.
    #[arg(
        long,
        env = "CITYGAUGE_DATABASE_URL",
        default_value = "host=127.0.0.1 port=5432 user=postgres dbname=citygauge",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Time-series backend of a new database.
    #[arg(long, env = "CITYGAUGE_TIMESERIES_BACKEND", value_enum, default_value = "auto")]
    pub timeseries_backend: BackendChoice,
}

impl DatabaseArgs {
    pub fn store_config(&self) -> StoreConfig {
        let mut store = StoreConfig::new(&self.database_url);
        store.backend = match self.timeseries_backend {
            BackendChoice::Auto => BackendPreference::Auto,
            BackendChoice::Timescaledb => BackendPreference::TimescaleDb,
            BackendChoice::Native => BackendPreference::Native,
        };
        store
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct IngestConfig {
    /// Broker address, `mqtt://host:port`.
    #[arg(long, env = "CITYGAUGE_MQTT_URL", default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt_url: String,
    /// Client id; keep it stable so the broker keeps the session (and queued
    /// QoS 1 messages) across restarts. Each daemon needs its own.
    #[arg(long, env = "CITYGAUGE_MQTT_CLIENT_ID", default_value = "citygauge-ingest")]
    pub mqtt_client_id: String,
    #[arg(long, env = "CITYGAUGE_MQTT_PROTOCOL", value_enum, default_value = "5")]
    pub mqtt_protocol: MqttProtocol,
    /// Topic filters to subscribe to, comma-separated.
    #[arg(
        long,
        env = "CITYGAUGE_MQTT_TOPICS",
        value_delimiter = ',',
        default_value = "city/#,application/+/device/+/event/up,v3/+/devices/+/up"
    )]
    pub mqtt_topics: Vec<String>,
    /// Subscribe through the shared subscription `$share/<group>/<filter>`, so
    /// several daemons split one stream.
    #[arg(long, env = "CITYGAUGE_MQTT_SHARED_GROUP")]
    pub mqtt_shared_group: Option<String>,
    #[arg(long, env = "CITYGAUGE_MQTT_USERNAME")]
    pub mqtt_username: Option<String>,
    #[arg(long, env = "CITYGAUGE_MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
    #[arg(long, env = "CITYGAUGE_MQTT_KEEP_ALIVE_S", default_value_t = 30)]
    pub mqtt_keep_alive_s: u64,
    /// How long the broker keeps the session while the daemon is away (MQTT 5).
    #[arg(long, env = "CITYGAUGE_MQTT_SESSION_EXPIRY_S", default_value_t = 7 * 24 * 3600)]
    pub mqtt_session_expiry_s: u32,
    /// Unacknowledged QoS 1 messages the broker may send at once (MQTT 5).
    /// Acks wait for a commit, so this must cover a few batches; it also
    /// bounds the daemon's memory (times the message size).
    #[arg(long, env = "CITYGAUGE_MQTT_RECEIVE_MAXIMUM", default_value_t = 4_096)]
    pub mqtt_receive_maximum: u16,
    /// Largest MQTT packet accepted. Keep it at least the broker's own
    /// `max_packet_size` (4 MiB in deploy/mosquitto.conf): with MQTT 5 the
    /// broker withholds larger packets from this session, with 3.1.1 they
    /// break the connection. Payloads over `max_payload_bytes` are rejected
    /// with a reason either way.
    #[arg(long, env = "CITYGAUGE_MQTT_MAX_PACKET_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub mqtt_max_packet_bytes: u32,
    /// Longest wait between reconnect attempts (backoff doubles up to it).
    #[arg(long, env = "CITYGAUGE_MQTT_RECONNECT_MAX_MS", default_value_t = 5_000)]
    pub mqtt_reconnect_max_ms: u64,

    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Batches written concurrently (each on its own connection).
    #[arg(long, env = "CITYGAUGE_WRITERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub writers: u16,
    /// A batch is written when it holds this many rows...
    #[arg(long, env = "CITYGAUGE_BATCH_MAX_ROWS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_max_rows: u32,
    /// ...or when its first message is this old.
    #[arg(long, env = "CITYGAUGE_FLUSH_INTERVAL_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_interval_ms: u64,
    /// Messages queued between the MQTT poll loop and the decoder. At least
    /// `mqtt_receive_maximum`, so the poll loop never waits on it and keeps
    /// the connection alive (pings, acks) while the database is slow.
    #[arg(long, env = "CITYGAUGE_INBOUND_QUEUE_MESSAGES", default_value_t = 4_096, value_parser = clap::value_parser!(u32).range(1..))]
    pub inbound_queue_messages: u32,
    /// Larger payloads are rejected (reason `oversized`).
    #[arg(long, env = "CITYGAUGE_MAX_PAYLOAD_BYTES", default_value_t = 256 * 1024)]
    pub max_payload_bytes: usize,
    /// How much of a rejected payload is kept in `rejected_messages`.
    #[arg(long, env = "CITYGAUGE_REJECTED_PAYLOAD_MAX_BYTES", default_value_t = 64 * 1024)]
    pub rejected_payload_max_bytes: usize,
    /// IANA zone for timestamps sent without an offset.
    #[arg(long, env = "CITYGAUGE_CITY_TIMEZONE", default_value = "Asia/Taipei")]
    pub city_timezone: String,
    /// Topic prefix of the platform's own formats (`{prefix}/{kind}/{sensor_id}`).
    #[arg(long, env = "CITYGAUGE_TOPIC_PREFIX", default_value = "city")]
    pub topic_prefix: String,
    /// Readings stamped further ahead of the receive time are flagged `bad`
    /// (`future_ts`); rain counter values are refused (they would move the
    /// gauge's counter state ahead of its genuine values).
    #[arg(long, env = "CITYGAUGE_FUTURE_TOLERANCE_S", default_value_t = 300)]
    pub future_tolerance_s: u64,
    /// Readings stamped further ahead of the receive time are refused
    /// (`timestamp_out_of_window`). The default, a day, keeps a logger with a
    /// wrong time zone (at most 14 h off) flagged rather than lost, and stays
    /// inside the partitions made ahead.
    #[arg(long, env = "CITYGAUGE_MAX_FUTURE_S", default_value_t = 86_400)]
    pub max_future_s: u64,
    /// Readings stamped more than this many days before their receipt are
    /// refused (`timestamp_out_of_window`): a logger uploading a month offline
    /// is welcome, older history is an import, and a clock reading 1970 or a
    /// year typo must not make partitions for nothing.
    #[arg(long, env = "CITYGAUGE_MAX_BACKFILL_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub max_backfill_days: u32,
    /// The spike test trusts a new level after this many consecutive readings
    /// that agree with each other (so one wild value flags at most this many
    /// minus one genuine readings).
    #[arg(long, env = "CITYGAUGE_SPIKE_REBASELINE_AFTER", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub spike_rebaseline_after: u32,
    /// URN prefixes that precede a sensor id in SenML names, comma-separated
    /// (`urn:dev:city:kh-aq-0201:pm2_5` is sensor `kh-aq-0201`).
    #[arg(long, env = "CITYGAUGE_SENML_URN_PREFIXES", value_delimiter = ',', default_value = "urn:dev:city:")]
    pub senml_urn_prefixes: Vec<String>,
    /// Topics bound to the sensors they may write, comma-separated
    /// `<topic filter>=<id or prefix*> ...` (`city/senml/gw-7=kh-aq-* kh-wl-0001`);
    /// records a bound topic may not write are refused (`source_not_allowed`).
    #[arg(long, env = "CITYGAUGE_SENML_SOURCES", value_delimiter = ',')]
    pub senml_sources: Vec<String>,
    /// How often the sensor registry is reloaded from the database.
    #[arg(long, env = "CITYGAUGE_REGISTRY_REFRESH_S", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub registry_refresh_s: u64,
    /// Retention per kind, `kind=days` (comma-separated); kinds not named are kept forever.
    #[arg(long, env = "CITYGAUGE_RETENTION_DAYS", value_delimiter = ',', value_parser = parse_retention)]
    pub retention_days: Vec<(Kind, u32)>,
    /// Native partitioning: days of partitions made ahead.
    #[arg(long, env = "CITYGAUGE_PARTITION_PREMAKE_DAYS", default_value_t = 7)]
    pub partition_premake_days: u32,
    /// How often partitions and retention are maintained.
    #[arg(long, env = "CITYGAUGE_MAINTENANCE_INTERVAL_S", default_value_t = 3_600, value_parser = clap::value_parser!(u64).range(1..))]
    pub maintenance_interval_s: u64,
    /// Address of `/metrics`, `/healthz`, `/readyz` (port 0 picks a free port).
    #[arg(long, env = "CITYGAUGE_HTTP_LISTEN", default_value = "127.0.0.1:9464")]
    pub http_listen: SocketAddr,
    /// Bounds the whole shutdown: from the stop signal, how long to keep
    /// trying to store and acknowledge what was received. Batches not
    /// committed by then stay unacknowledged, and the broker redelivers them.
    #[arg(long, env = "CITYGAUGE_SHUTDOWN_TIMEOUT_S", default_value_t = 30)]
    pub shutdown_timeout_s: u64,
    /// `statement_timeout` of every database connection the daemon uses
    /// (0: the server's setting): a statement that would hang fails, is
    /// counted and retried.
    #[arg(long, env = "CITYGAUGE_DB_STATEMENT_TIMEOUT_MS", default_value_t = 60_000)]
    pub db_statement_timeout_ms: u64,
    /// `lock_timeout` of every database connection the daemon uses (0: the
    /// server's setting): a write waiting behind someone's lock fails, is
    /// counted and retried, rather than stalling the stream unseen.
    #[arg(long, env = "CITYGAUGE_DB_LOCK_TIMEOUT_MS", default_value_t = 10_000)]
    pub db_lock_timeout_ms: u64,
    /// How long partition DDL (native backend) waits for its locks before
    /// giving up until its next try; writers queue behind it at most this
    /// long. Keep it well under `db_lock_timeout_ms`.
    #[arg(long, env = "CITYGAUGE_DB_DDL_LOCK_TIMEOUT_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub db_ddl_lock_timeout_ms: u64,
    /// `/readyz` reports not ready once a batch has been failing (or hanging)
    /// this long without being stored.
    #[arg(long, env = "CITYGAUGE_NOT_READY_AFTER_WRITE_FAILURES_S", default_value_t = 10)]
    pub not_ready_after_write_failures_s: u64,
    /// LoRaWAN field maps per device profile; set in the TOML file's
    /// `[lorawan.profiles.<name>]` tables (see deploy/citygauge.toml).
    #[arg(skip)]
    pub device_profiles: BTreeMap<String, DeviceProfileConfig>,
}

fn parse_retention(s: &str) -> Result<(Kind, u32), String> {
    let (kind, days) = s.split_once('=').ok_or_else(|| format!("`{s}` is not kind=days"))?;
    let kind: Kind = kind.trim().parse().map_err(|e: DomainError| e.to_string())?;
    let days: u32 =
        days.trim().trim_end_matches('d').parse().map_err(|_| format!("`{days}` is not a number of days"))?;
    if days == 0 {
        return Err("retention must be at least 1 day".into());
    }
    Ok((kind, days))
}

/// Host and port of an `mqtt://host:port` URL.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), IngestError> {
    let bad = |why: &str| IngestError::Config(format!("--mqtt-url `{url}`: {why}"));
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| bad("expected mqtt://host:port (TLS is not supported yet)"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad("the port is not a number"))?),
        None => (rest, 1883),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

impl IngestConfig {
    /// Checks what clap cannot and builds the parts other crates take.
    pub fn normalise_config(&self) -> Result<NormaliseConfig, IngestError> {
        let tz = self.city_timezone.parse().map_err(|_| {
            IngestError::Config(format!("--city-timezone `{}` is not an IANA time zone", self.city_timezone))
        })?;
        let profiles =
            DeviceProfiles::compile(&self.device_profiles).map_err(|e| IngestError::Config(e.to_string()))?;
        if self.max_future_s < self.future_tolerance_s {
            return Err(IngestError::Config(format!(
                "--max-future-s ({}) must be at least --future-tolerance-s ({}): readings between the two are kept, flagged future_ts",
                self.max_future_s, self.future_tolerance_s
            )));
        }
        let senml_sources = SourceBindings::parse(&self.senml_sources).map_err(|e| match e {
            DomainError::InvalidValue { problem, .. } => IngestError::Config(format!("--senml-sources {problem}")),
            other => IngestError::Config(other.to_string()),
        })?;
        let seconds =
            |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000).min(i64::MAX / 1000));
        Ok(NormaliseConfig {
            topic_prefix: self.topic_prefix.clone(),
            tz,
            max_payload_bytes: self.max_payload_bytes,
            profiles,
            quality: QualityConfig {
                future_tolerance: seconds(self.future_tolerance_s),
                max_backfill: chrono::Duration::days(i64::from(self.max_backfill_days)),
                max_future: seconds(self.max_future_s),
                spike_rebaseline_after: self.spike_rebaseline_after,
            },
            urn_prefixes: self
                .senml_urn_prefixes
                .iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            senml_sources,
        })
    }

    pub fn store_config(&self) -> StoreConfig {
        let mut store = self.database.store_config();
        // Writers, plus one for the registry refresh and maintenance.
        store.pool_max_size = usize::from(self.writers) + 2;
        store.partition_premake_days = self.partition_premake_days;
        let timeout = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        store.statement_timeout = timeout(self.db_statement_timeout_ms);
        store.lock_timeout = timeout(self.db_lock_timeout_ms);
        store.ddl_lock_timeout = Duration::from_millis(self.db_ddl_lock_timeout_ms);
        store.retention =
            self.retention_days.iter().map(|(kind, days)| (*kind, chrono::Duration::days(i64::from(*days)))).collect();
        store
    }

    /// The topic filters as subscribed, shared-subscription prefix included.
    pub fn subscriptions(&self) -> Vec<String> {
        self.mqtt_topics
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(|t| match &self.mqtt_shared_group {
                Some(group) => format!("$share/{group}/{t}"),
                None => t.to_string(),
            })
            .collect()
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    /// Fails on what is wrong before anything starts.
    pub fn validate(&self) -> Result<(), IngestError> {
        parse_mqtt_url(&self.mqtt_url)?;
        self.normalise_config()?;
        if self.mqtt_protocol == MqttProtocol::V5 && self.inbound_queue_messages < u32::from(self.mqtt_receive_maximum)
        {
            return Err(IngestError::Config(format!(
                "--inbound-queue-messages ({}) must be at least --mqtt-receive-maximum ({}), or a slow database stalls the MQTT connection",
                self.inbound_queue_messages, self.mqtt_receive_maximum
            )));
        }
        if self.subscriptions().is_empty() {
            return Err(IngestError::Config("--mqtt-topics names no topic filter".into()));
        }
        if self.db_lock_timeout_ms > 0 && self.db_ddl_lock_timeout_ms >= self.db_lock_timeout_ms {
            return Err(IngestError::Config(format!(
                "--db-ddl-lock-timeout-ms ({}) must be less than --db-lock-timeout-ms ({}): writers queued behind partition DDL would time out first",
                self.db_ddl_lock_timeout_ms, self.db_lock_timeout_ms
            )));
        }
        if let Some(group) = &self.mqtt_shared_group {
            if group.is_empty() || group.contains(['/', '+', '#']) {
                return Err(IngestError::Config(format!("--mqtt-shared-group `{group}` must not contain / + #")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ingest: IngestConfig,
    }

    #[test]
    fn defaults_are_valid_and_shared_groups_wrap_filters() {
        let cli = Cli::try_parse_from(["x", "--mqtt-shared-group", "ingest"]).unwrap();
        cli.ingest.validate().unwrap();
        assert_eq!(cli.ingest.subscriptions()[0], "$share/ingest/city/#");
    }

    #[test]
    fn mistakes_name_the_option() {
        let err = |args: &[&str]| {
            let mut argv = vec!["x"];
            argv.extend_from_slice(args);
            match Cli::try_parse_from(argv) {
                Err(e) => e.to_string(),
                Ok(cli) => cli.ingest.validate().unwrap_err().to_string(),
            }
        };
        assert!(err(&["--mqtt-url", "http://x"]).contains("--mqtt-url"));
        assert!(err(&["--city-timezone", "Mars/Olympus"]).contains("--city-timezone"));
        assert!(err(&["--batch-max-rows", "0"]).contains("--batch-max-rows"));
        assert!(err(&["--retention-days", "lava=3"]).contains("--retention-days"));
        assert!(err(&["--mqtt-protocol", "4"]).contains("--mqtt-protocol"));
        assert!(err(&["--max-future-s", "60"]).contains("--max-future-s"));
        assert!(err(&["--max-backfill-days", "0"]).contains("--max-backfill-days"));
        assert!(err(&["--senml-sources", "city/senml/gw-7"]).contains("--senml-sources"));
        assert!(err(&["--senml-sources", "city/#/x=kh-aq-*"]).contains("--senml-sources"));
        assert!(err(&["--db-ddl-lock-timeout-ms", "0"]).contains("--db-ddl-lock-timeout-ms"));
        assert!(err(&["--db-lock-timeout-ms", "500"]).contains("--db-ddl-lock-timeout-ms"));
    }

    #[test]
    fn database_timeouts_reach_every_connection() {
        let store = Cli::try_parse_from(["x"]).unwrap().ingest.store_config();
        assert_eq!(store.statement_timeout, Some(Duration::from_secs(60)));
        assert_eq!(store.lock_timeout, Some(Duration::from_secs(10)));
        assert_eq!(store.ddl_lock_timeout, Duration::from_secs(1));
        let store = Cli::try_parse_from(["x", "--db-statement-timeout-ms", "0", "--db-lock-timeout-ms", "0"])
            .unwrap()
            .ingest
            .store_config();
        assert_eq!((store.statement_timeout, store.lock_timeout), (None, None), "0: the server's setting");
    }

    #[test]
    fn window_spike_and_senml_options_reach_the_normaliser() {
        let cli = Cli::try_parse_from([
            "x",
            "--max-backfill-days",
            "7",
            "--max-future-s",
            "600",
            "--spike-rebaseline-after",
            "5",
            "--senml-urn-prefixes",
            "urn:dev:city:,urn:dev:org:32473-",
            "--senml-sources",
            "city/senml/gw-7=kh-aq-* kh-wl-0001,city/senml/gw-8=kh-rg-*",
        ])
        .unwrap();
        let config = cli.ingest.normalise_config().unwrap();
        assert_eq!(config.quality.max_backfill, chrono::Duration::days(7));
        assert_eq!(config.quality.max_future, chrono::Duration::seconds(600));
        assert_eq!(config.quality.spike_rebaseline_after, 5);
        assert_eq!(config.urn_prefixes, ["urn:dev:city:", "urn:dev:org:32473-"]);
        let allowed = config.senml_sources.for_topic("city/senml/gw-8").unwrap();
        assert!(allowed.permits(&config.senml_sources, "kh-rg-0001"));
        assert!(!allowed.permits(&config.senml_sources, "kh-aq-0001"));

        let defaults = Cli::try_parse_from(["x"]).unwrap().ingest.normalise_config().unwrap();
        assert_eq!(defaults.quality.max_backfill, chrono::Duration::days(30));
        assert_eq!(defaults.urn_prefixes, ["urn:dev:city:"]);
        assert!(defaults.senml_sources.is_empty());
    }

    #[test]
    fn mqtt_urls() {
        assert_eq!(parse_mqtt_url("mqtt://127.0.0.1:1884").unwrap(), ("127.0.0.1".into(), 1884));
        assert_eq!(parse_mqtt_url("mqtt://broker").unwrap(), ("broker".into(), 1883));
        assert!(parse_mqtt_url("mqtts://broker").is_err());
    }
}
