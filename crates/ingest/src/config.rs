//! Every option of `citygauge ingest`, as flags and `CITYGAUGE_*` variables
//! (the binary layers an optional TOML file under both).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use citygauge_domain::decode::{DeviceProfileConfig, DeviceProfiles};
use citygauge_domain::normalise::{SourceBindings, UnknownSensors};
use citygauge_domain::quality::QualityConfig;
use citygauge_domain::{DomainError, Kind, NormaliseConfig};
use citygauge_store::{BackendPreference, ConnectOptions, Secret, SslMode, StoreConfig};

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

/// What a reading for a sensor the registry does not know becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownSensorsPolicy {
    /// Kept; the sensor is registered as `pending` for an operator (up to
    /// `max_pending_sensors`).
    Pending,
    /// Refused (`unknown_sensor`): only registered sensors write.
    Reject,
}

/// Time-series backend for a new database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    Auto,
    Timescaledb,
    Native,
}

/// Where the database is, and how a new one is set up: every subcommand that
/// opens the database takes these. Debug hides passwords.
#[derive(Clone, clap::Args)]
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
    /// TLS to the database when the URL has no `sslmode`: disable, prefer
    /// (TLS if the server offers it, certificate not checked), require
    /// (certificate checked only with a CA file), verify-ca, verify-full.
    #[arg(long, env = "CITYGAUGE_DATABASE_SSLMODE", value_parser = parse_sslmode)]
    pub database_sslmode: Option<SslMode>,
    /// PEM file of the CA that signed the database's certificate (like the
    /// URL's `sslrootcert`).
    #[arg(long, env = "CITYGAUGE_DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,
    /// Database password, overriding the URL's (better in the environment
    /// than on a command line).
    #[arg(long, env = "CITYGAUGE_DATABASE_PASSWORD", hide_env_values = true)]
    pub database_password: Option<Secret>,
    /// File holding the database password (a mounted secret).
    #[arg(long, env = "CITYGAUGE_DATABASE_PASSWORD_FILE", conflicts_with = "database_password")]
    pub database_password_file: Option<PathBuf>,
}

fn parse_sslmode(s: &str) -> Result<SslMode, String> {
    s.parse()
}

impl std::fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("database_url", &citygauge_store::redact(&self.database_url))
            .field("timeseries_backend", &self.timeseries_backend)
            .field("database_sslmode", &self.database_sslmode)
            .field("database_ca_file", &self.database_ca_file)
            .field("database_password", &self.database_password)
            .field("database_password_file", &self.database_password_file)
            .finish()
    }
}

impl DatabaseArgs {
    /// Settings for a database at `database_url`, everything else default.
    pub fn new(database_url: impl Into<String>) -> DatabaseArgs {
        DatabaseArgs {
            database_url: database_url.into(),
            timeseries_backend: BackendChoice::Auto,
            database_sslmode: None,
            database_ca_file: None,
            database_password: None,
            database_password_file: None,
        }
    }

    /// TLS and password settings besides the URL.
    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            sslmode: self.database_sslmode,
            ca_file: self.database_ca_file.clone(),
            password: self.database_password.clone(),
            password_file: self.database_password_file.clone(),
        }
    }

    /// Every connection setting, checked (files read): errors name the option.
    pub fn database(&self) -> Result<citygauge_store::Database, citygauge_store::StoreError> {
        citygauge_store::Database::new(&self.database_url, &self.connect_options())
    }

    pub fn store_config(&self) -> StoreConfig {
        let mut store = StoreConfig::new(&self.database_url);
        store.connect = self.connect_options();
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
    /// Broker address, `mqtt://host:port`, or `mqtts://host:port` for TLS
    /// (port 8883 by default).
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
    pub mqtt_password: Option<Secret>,
    /// File holding the MQTT password (a mounted secret).
    #[arg(long, env = "CITYGAUGE_MQTT_PASSWORD_FILE", conflicts_with = "mqtt_password")]
    pub mqtt_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the broker's certificate (`mqtts://`);
    /// without it the public (Mozilla) CAs are trusted.
    #[arg(long, env = "CITYGAUGE_MQTT_CA_FILE")]
    pub mqtt_ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for brokers that require one.
    #[arg(long, env = "CITYGAUGE_MQTT_CLIENT_CERT_FILE", requires = "mqtt_client_key_file")]
    pub mqtt_client_cert_file: Option<PathBuf>,
    /// PEM private key of `mqtt_client_cert_file`.
    #[arg(long, env = "CITYGAUGE_MQTT_CLIENT_KEY_FILE", requires = "mqtt_client_cert_file")]
    pub mqtt_client_key_file: Option<PathBuf>,
    /// Seconds between pings (at least 5). While `held_payload_budget_bytes`
    /// pauses reading no ping is sent: a pause longer than 1.5 times this
    /// loses the connection, which costs a redelivery, not a message.
    #[arg(long, env = "CITYGAUGE_MQTT_KEEP_ALIVE_S", default_value_t = 30)]
    pub mqtt_keep_alive_s: u64,
    /// How long the broker keeps the session while the daemon is away (MQTT 5).
    /// In a shared group the broker keeps queuing a dead member's share to its
    /// session this long (then Mosquitto drops it); with `orphan_takeover` a
    /// survivor drains it, so keep it long (an hour or more) there too.
    #[arg(long, env = "CITYGAUGE_MQTT_SESSION_EXPIRY_S", default_value_t = 7 * 24 * 3600)]
    pub mqtt_session_expiry_s: u32,
    /// Unacknowledged QoS 1 messages the broker may send at once (MQTT 5).
    /// Acks wait for a commit, so this must cover a few batches. (Memory is
    /// bounded in bytes by `held_payload_budget_bytes`.)
    #[arg(long, env = "CITYGAUGE_MQTT_RECEIVE_MAXIMUM", default_value_t = 4_096)]
    pub mqtt_receive_maximum: u16,
    /// Largest MQTT packet accepted. By default, with MQTT 5,
    /// `max_payload_bytes` plus 64 KiB for topic and properties: the broker
    /// withholds larger packets from this session (drops them for it) rather
    /// than the daemon reading them only to reject them. With 3.1.1 a larger
    /// packet breaks the connection (and comes again on the next), so there
    /// the default is the broker's own `max_packet_size` (4 MiB in
    /// deploy/mosquitto.conf) or more; keep it at least that. Payloads over
    /// `max_payload_bytes` that do arrive are rejected (`oversized`).
    #[arg(long, env = "CITYGAUGE_MQTT_MAX_PACKET_BYTES")]
    pub mqtt_max_packet_bytes: Option<u32>,
    /// Longest wait between reconnect attempts (backoff doubles up to it).
    #[arg(long, env = "CITYGAUGE_MQTT_RECONNECT_MAX_MS", default_value_t = 5_000)]
    pub mqtt_reconnect_max_ms: u64,
    /// In a shared group: each daemon announces itself (retained, with a will)
    /// under `mqtt_members_topic_prefix`, and when a member dies or stops, one
    /// survivor takes its session over and stores what the broker queued
    /// there (see README, "Shared subscriptions").
    #[arg(long, env = "CITYGAUGE_ORPHAN_TAKEOVER", default_value_t = true, action = clap::ArgAction::Set)]
    pub orphan_takeover: bool,
    /// A survivor leaves a taken-over session (to its expiry) once nothing
    /// has come on it for this long and everything received is stored and
    /// acknowledged.
    #[arg(long, env = "CITYGAUGE_ORPHAN_DRAIN_IDLE_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub orphan_drain_idle_ms: u64,
    /// Where members announce themselves: `<prefix>/<group>/<client id>`.
    #[arg(long, env = "CITYGAUGE_MQTT_MEMBERS_TOPIC_PREFIX", default_value = "citygauge/ingest/members")]
    pub mqtt_members_topic_prefix: String,

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
    /// Payload and topic bytes of messages held between receipt and commit.
    /// When they reach this, the daemon stops reading from the broker (TCP
    /// pushes back; the broker keeps the messages for the session) until
    /// commits release bytes. A message larger than this goes through alone.
    /// At least `max_payload_bytes`.
    #[arg(long, env = "CITYGAUGE_HELD_PAYLOAD_BUDGET_BYTES", default_value_t = 64 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub held_payload_budget_bytes: u64,
    /// How much of a rejected payload is kept in `rejected_messages`.
    #[arg(long, env = "CITYGAUGE_REJECTED_PAYLOAD_MAX_BYTES", default_value_t = 64 * 1024)]
    pub rejected_payload_max_bytes: usize,
    /// Days `rejected_messages` rows are kept (0: for ever); older rows are
    /// deleted by the maintenance task, in small batches.
    #[arg(long, env = "CITYGAUGE_REJECTED_RETENTION_DAYS", default_value_t = 30)]
    pub rejected_retention_days: u32,
    /// Rejected messages kept in `rejected_messages` per topic and reason per
    /// minute (0: all); the rest are counted in
    /// `citygauge_ingest_rejected_unsampled_total` and acknowledged.
    #[arg(long, env = "CITYGAUGE_REJECTED_SAMPLES_PER_TOPIC_PER_MINUTE", default_value_t = 10)]
    pub rejected_samples_per_topic_per_minute: u32,
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
    /// How often sensors added or changed in the database are read into the
    /// registry (only the changed rows; a full reload once an hour).
    #[arg(long, env = "CITYGAUGE_REGISTRY_REFRESH_S", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub registry_refresh_s: u64,
    /// A reading for a sensor the registry does not know: `pending` keeps it
    /// and registers the sensor as pending; `reject` refuses it (`unknown_sensor`).
    #[arg(long, env = "CITYGAUGE_UNKNOWN_SENSORS", value_enum, default_value = "pending")]
    pub unknown_sensors: UnknownSensorsPolicy,
    /// Once this many sensors are pending, readings for new ids are refused
    /// (`pending_sensors_full`) and nothing is registered, so a flood of new
    /// ids cannot grow the registry without bound.
    #[arg(long, env = "CITYGAUGE_MAX_PENDING_SENSORS", default_value_t = 1_000)]
    pub max_pending_sensors: usize,
    /// Retention per kind, `kind=days` (comma-separated); kinds not named are kept forever.
    #[arg(long, env = "CITYGAUGE_RETENTION_DAYS", value_delimiter = ',', value_parser = parse_retention)]
    pub retention_days: Vec<(Kind, u32)>,
    /// Native partitioning: days of partitions made ahead.
    #[arg(long, env = "CITYGAUGE_PARTITION_PREMAKE_DAYS", default_value_t = 7)]
    pub partition_premake_days: u32,
    /// How often partitions and retention are maintained.
    #[arg(long, env = "CITYGAUGE_MAINTENANCE_INTERVAL_S", default_value_t = 3_600, value_parser = clap::value_parser!(u64).range(1..))]
    pub maintenance_interval_s: u64,
    /// How often closed rollup buckets are materialised (native backend):
    /// the rollup views aggregate what is newer at query time.
    #[arg(long, env = "CITYGAUGE_ROLLUP_MATERIALISE_INTERVAL_S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub rollup_materialise_interval_s: u64,
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

/// Room in an MQTT packet for the topic (at most 65,535 bytes), packet id and
/// properties, beyond the payload.
const MAX_PACKET_OVERHEAD_BYTES: usize = 64 * 1024;
/// The broker's `max_packet_size` in deploy/mosquitto.conf.
const BROKER_MAX_PACKET_BYTES: u32 = 4 * 1024 * 1024;

/// Host and port of an `mqtt://host:port` URL (no TLS: the alert
/// publisher's broker, which has no TLS options).
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), IngestError> {
    match mqtt_endpoint(url)? {
        (host, port, false) => Ok((host, port)),
        (_, _, true) => Err(IngestError::Config(format!("`{url}`: expected mqtt://host:port (no TLS here)"))),
    }
}

/// Host, port and whether TLS is used, of an `mqtt://` or `mqtts://` URL.
pub fn mqtt_endpoint(url: &str) -> Result<(String, u16, bool), IngestError> {
    let bad = |why: &str| IngestError::Config(format!("--mqtt-url `{url}`: {why}"));
    let (rest, tls) = match url.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => (rest, false),
        Some(("mqtts" | "ssl", rest)) => (rest, true),
        _ => return Err(bad("expected mqtt://host:port or mqtts://host:port")),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !rest.ends_with(']') => {
            (host, port.parse::<u16>().map_err(|_| bad("the port is not a number"))?)
        }
        _ => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port, tls))
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
            unknown_sensors: match self.unknown_sensors {
                UnknownSensorsPolicy::Pending => UnknownSensors::Pending,
                UnknownSensorsPolicy::Reject => UnknownSensors::Reject,
            },
            max_pending_sensors: self.max_pending_sensors,
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
        store.rejected_retention =
            (self.rejected_retention_days > 0).then(|| chrono::Duration::days(i64::from(self.rejected_retention_days)));
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

    /// The largest MQTT packet the client accepts (`mqtt_max_packet_bytes`,
    /// or its default for the protocol).
    pub fn max_packet_bytes(&self) -> u32 {
        if let Some(bytes) = self.mqtt_max_packet_bytes {
            return bytes;
        }
        let follows_payload =
            u32::try_from(self.max_payload_bytes.saturating_add(MAX_PACKET_OVERHEAD_BYTES)).unwrap_or(u32::MAX);
        match self.mqtt_protocol {
            MqttProtocol::V5 => follows_payload,
            MqttProtocol::V311 => follows_payload.max(BROKER_MAX_PACKET_BYTES),
        }
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    /// The MQTT password, from the option or its file (trailing newline
    /// ignored).
    pub fn mqtt_password(&self) -> Result<Option<String>, IngestError> {
        match (&self.mqtt_password_file, &self.mqtt_password) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    IngestError::Config(format!("--mqtt-password-file {}: cannot read it: {e}", path.display()))
                })?;
                Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
            }
            (None, password) => Ok(password.as_ref().map(|p| p.expose().to_string())),
        }
    }

    /// The TLS client settings of an `mqtts://` URL (None for `mqtt://`).
    pub fn mqtt_tls(&self) -> Result<Option<rumqttc::tokio_rustls::rustls::ClientConfig>, IngestError> {
        let (_, _, tls) = mqtt_endpoint(&self.mqtt_url)?;
        if !tls {
            if self.mqtt_ca_file.is_some() || self.mqtt_client_cert_file.is_some() {
                return Err(IngestError::Config(
                    "--mqtt-ca-file and --mqtt-client-cert-file need an mqtts:// --mqtt-url".into(),
                ));
            }
            return Ok(None);
        }
        let files = citygauge_store::tls::TlsFiles {
            verify: citygauge_store::tls::Verify::Full,
            ca_file: self.mqtt_ca_file.clone(),
            ca_option: "--mqtt-ca-file",
            public_roots_by_default: true,
            client_cert: self.mqtt_client_cert_file.clone().zip(self.mqtt_client_key_file.clone()),
            client_option: "--mqtt-client-cert-file/--mqtt-client-key-file",
        };
        citygauge_store::tls::client_config(&files).map(Some).map_err(IngestError::Config)
    }

    /// Fails on what is wrong before anything starts.
    pub fn validate(&self) -> Result<(), IngestError> {
        self.mqtt_tls()?;
        self.mqtt_password()?;
        self.normalise_config()?;
        if self.mqtt_protocol == MqttProtocol::V5 && self.inbound_queue_messages < u32::from(self.mqtt_receive_maximum)
        {
            return Err(IngestError::Config(format!(
                "--inbound-queue-messages ({}) must be at least --mqtt-receive-maximum ({}), or a slow database stalls the MQTT connection",
                self.inbound_queue_messages, self.mqtt_receive_maximum
            )));
        }
        if self.held_payload_budget_bytes < self.max_payload_bytes as u64 {
            return Err(IngestError::Config(format!(
                "--held-payload-budget-bytes ({}) must be at least --max-payload-bytes ({}): the budget holds whole messages",
                self.held_payload_budget_bytes, self.max_payload_bytes
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
            if self.orphan_takeover {
                let prefix = &self.mqtt_members_topic_prefix;
                if prefix.is_empty() || prefix.contains(['+', '#']) || prefix.ends_with('/') {
                    return Err(IngestError::Config(format!(
                        "--mqtt-members-topic-prefix `{prefix}` must be a topic name (no + #, no trailing /)"
                    )));
                }
                if self.mqtt_client_id.is_empty() || self.mqtt_client_id.contains(['+', '#']) {
                    return Err(IngestError::Config(format!(
                        "--mqtt-client-id `{}` must not contain + or # with --orphan-takeover: it is part of a topic",
                        self.mqtt_client_id
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
