//! Every option of `citygauge query`, as flags and `CITYGAUGE_*` variables
//! (the binary layers an optional TOML file under both).

use std::net::SocketAddr;
use std::path::PathBuf;

use citygauge_domain::Kind;
use citygauge_ingest::config::DatabaseArgs;

use crate::QueryError;

#[derive(Debug, Clone, clap::Args)]
pub struct QueryConfig {
    /// Address of the API, the control-room page, `/metrics`, `/healthz` and
    /// `/readyz` (port 0 picks a free port). Named apart from the ingest
    /// daemon's `--http-listen`, so one TOML file or environment can set both.
    #[arg(long, env = "CITYGAUGE_QUERY_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub query_http_listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Database connections for the routes that query it (series, CSV, start-up loads).
    #[arg(long, env = "CITYGAUGE_POOL_MAX_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub pool_max_size: u32,
    /// How long a database request waits for a free connection before it
    /// gets 503 with Retry-After.
    #[arg(long, env = "CITYGAUGE_POOL_WAIT_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub pool_wait_ms: u64,
    /// Longest a database statement may run before it is cancelled (the
    /// client gets 503 with Retry-After).
    #[arg(long, env = "CITYGAUGE_STATEMENT_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub statement_timeout_ms: u64,
    /// A sensor is `stale` when its latest reading is older than this many
    /// times its expected interval (`installation.cadence_s`).
    #[arg(long, env = "CITYGAUGE_STALE_FACTOR", default_value_t = 3.0)]
    pub stale_factor: f64,
    /// Flood depths below this many centimetres count as a dry road (sensor
    /// noise and spray), not `wet`.
    #[arg(long, env = "CITYGAUGE_WET_MIN_CM", default_value_t = 1.0)]
    pub wet_min_cm: f64,
    /// Concurrent `/api/v1/stream` clients; more get 503 with Retry-After.
    #[arg(long, env = "CITYGAUGE_SSE_MAX_CLIENTS", default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub sse_max_clients: u32,
    /// Change events kept for `Last-Event-ID` resume (each may carry many
    /// readings, hence the cap).
    #[arg(long, env = "CITYGAUGE_SSE_REPLAY_EVENTS", default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub sse_replay_events: u32,
    /// Seconds between heartbeat comments on an idle stream.
    #[arg(long, env = "CITYGAUGE_SSE_HEARTBEAT_S", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub sse_heartbeat_s: u64,
    /// How long a stream client's readings are gathered before they are sent
    /// as one event (coalescing keeps busy storms cheap for every screen).
    #[arg(long, env = "CITYGAUGE_SSE_COALESCE_MS", default_value_t = 150, value_parser = clap::value_parser!(u64).range(1..=5_000))]
    pub sse_coalesce_ms: u64,
    /// Concurrent requests on database routes (series, CSV); more get 503.
    /// At most `--pool-max-size` are let in.
    #[arg(long, env = "CITYGAUGE_DB_ROUTES_MAX_CONCURRENT", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub db_routes_max_concurrent: u32,
    /// Concurrent requests on cached routes (sensors, districts, overview, map); more get 503.
    #[arg(long, env = "CITYGAUGE_CACHE_ROUTES_MAX_CONCURRENT", default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..))]
    pub cache_routes_max_concurrent: u32,
    /// How often the sensor registry is reloaded (besides on change notifications).
    #[arg(long, env = "CITYGAUGE_REGISTRY_REFRESH_S", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub registry_refresh_s: u64,
    /// Raw retention per kind, `kind=days` (comma-separated), as given to
    /// ingest (the 1-minute rollup is kept as long): series reaching back
    /// further are answered from the hourly rollup. Kinds not named: no limit.
    #[arg(long, env = "CITYGAUGE_RETENTION_DAYS", value_delimiter = ',', value_parser = parse_retention)]
    pub retention_days: Vec<(Kind, u32)>,
    /// The built control-room page (`index.html`, `public.html`, assets).
    #[arg(long, env = "CITYGAUGE_WEB_DIR", default_value = "dashboards/control-room/dist")]
    pub web_dir: PathBuf,
    /// A GeoJSON FeatureCollection of district outlines (property `district`);
    /// without it outlines are derived from the sensors' places at start.
    #[arg(long, env = "CITYGAUGE_DISTRICTS_FILE")]
    pub districts_file: Option<PathBuf>,
    /// IANA zone of the city: when "today" starts for streetlight energy.
    #[arg(long, env = "CITYGAUGE_CITY_TIMEZONE", default_value = "Asia/Taipei")]
    pub city_timezone: String,
    #[command(flatten)]
    pub alerting: crate::alerting::AlertingConfig,
    #[command(flatten)]
    pub open_data: crate::open_data::OpenDataConfig,
    #[command(flatten)]
    pub sta_mqtt: crate::sta_mqtt::StaMqttConfig,
}

fn parse_retention(s: &str) -> Result<(Kind, u32), String> {
    let (kind, days) = s.split_once('=').ok_or_else(|| format!("`{s}` is not kind=days"))?;
    let kind: Kind = kind.trim().parse().map_err(|_| format!("`{kind}` is not a kind"))?;
    let days: u32 =
        days.trim().trim_end_matches('d').parse().map_err(|_| format!("`{days}` is not a number of days"))?;
    if days == 0 {
        return Err("retention must be at least 1 day".into());
    }
    Ok((kind, days))
}

impl QueryConfig {
    /// Raw retention by kind.
    pub fn raw_retention(&self) -> std::collections::HashMap<Kind, chrono::Duration> {
        self.retention_days.iter().map(|(kind, days)| (*kind, chrono::Duration::days(i64::from(*days)))).collect()
    }

    /// Fails on what is wrong before anything starts, naming the option.
    pub fn validate(&self) -> Result<(), QueryError> {
        self.timezone()?;
        self.open_data.validate()?;
        self.sta_mqtt.broker()?;
        if !(self.stale_factor.is_finite() && self.stale_factor >= 1.0) {
            return Err(QueryError::Config(format!(
                "--stale-factor {} must be a number of at least 1",
                self.stale_factor
            )));
        }
        if !(self.wet_min_cm.is_finite() && self.wet_min_cm >= 0.0) {
            return Err(QueryError::Config(format!("--wet-min-cm {} must be a number of at least 0", self.wet_min_cm)));
        }
        self.database.database().map_err(|e| QueryError::Config(e.to_string()))?;
        if let Some(file) = &self.districts_file {
            if !file.is_file() {
                return Err(QueryError::Config(format!("--districts-file {}: no such file", file.display())));
            }
        }
        Ok(())
    }

    pub fn timezone(&self) -> Result<chrono_tz::Tz, QueryError> {
        self.city_timezone.parse().map_err(|_| {
            QueryError::Config(format!("--city-timezone `{}` is not an IANA time zone", self.city_timezone))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        query: QueryConfig,
    }

    #[test]
    fn defaults_are_valid_and_mistakes_name_the_option() {
        Cli::try_parse_from(["x"]).unwrap().query.validate().unwrap();
        let err = |args: &[&str]| {
            let mut argv = vec!["x"];
            argv.extend_from_slice(args);
            match Cli::try_parse_from(argv) {
                Err(e) => e.to_string(),
                Ok(cli) => cli.query.validate().unwrap_err().to_string(),
            }
        };
        assert!(err(&["--city-timezone", "Mars/Olympus"]).contains("--city-timezone"));
        assert!(err(&["--stale-factor", "0.5"]).contains("--stale-factor"));
        assert!(err(&["--sse-max-clients", "0"]).contains("--sse-max-clients"));
        assert!(err(&["--sse-replay-events", "1000000"]).contains("--sse-replay-events"));
        assert!(err(&["--wet-min-cm=-1"]).contains("--wet-min-cm"));
        assert!(err(&["--retention-days", "lava=3"]).contains("--retention-days"));
        assert!(err(&["--districts-file", "/nonexistent.geojson"]).contains("--districts-file"));
    }
}
