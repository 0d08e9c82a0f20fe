//! What every open-data route shares: which sensors are published, the
//! options of the bulk downloads, catalogue and fair use, and their state.
//!
//! A sensor is open data when the registry marks it `public` and it is
//! `active`: pending (unconfirmed) and retired sensors are left out as well
//! as the ones a city keeps to itself (a company's own meters). Every
//! open-data query (SensorThings, downloads, catalogue coverage) filters
//! with [`PUBLIC_SENSORS_PREDICATE`] or [`public_sensors`], so the rule lives
//! in one place.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::metrics::Metrics;
use crate::QueryError;

/// The condition on `sensors` columns that makes a sensor open data.
pub const PUBLIC_SENSORS_PREDICATE: &str = "public AND status = 'active'";

/// [`PUBLIC_SENSORS_PREDICATE`] on the `sensors` row aliased `alias`
/// (`public_sensors("s")` is `s.public AND s.status = 'active'`), for joins
/// where a bare `status` could become ambiguous.
pub fn public_sensors(alias: &str) -> String {
    format!("{alias}.public AND {alias}.status = 'active'")
}

/// Options of the open-data routes (downloads, catalogue, fair use); the
/// SensorThings API shares the fair-use ones.
#[derive(Debug, Clone, clap::Args)]
pub struct OpenDataConfig {
    /// Directory where the per-day files of closed days are kept (default:
    /// `citygauge-opendata-<hash of the database URL>` in the system's
    /// temporary directory, so two databases never share files).
    #[arg(long, env = "CITYGAUGE_OPENDATA_CACHE_DIR")]
    pub opendata_cache_dir: Option<PathBuf>,
    /// How long a cached closed day is served before its readings are
    /// counted again (late data shows up in its file at most this late).
    #[arg(long, env = "CITYGAUGE_OPENDATA_CACHE_RECHECK_S", default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub opendata_cache_recheck_s: u64,
    /// Statement timeout while one day's file is read out of the database (a
    /// whole day of a large fleet takes longer than an API query).
    #[arg(long, env = "CITYGAUGE_OPENDATA_DOWNLOAD_TIMEOUT_MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub opendata_download_timeout_ms: u64,
    /// Day files generated (or today's streamed) at once; more get 503 with Retry-After.
    #[arg(long, env = "CITYGAUGE_OPENDATA_DOWNLOADS_MAX_CONCURRENT", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub opendata_downloads_max_concurrent: u32,
    /// Requests a minute one client address may make to `/opendata/` and
    /// `/sta/` (a token bucket: a minute's worth may come at once).
    #[arg(long, env = "CITYGAUGE_OPENDATA_REQUESTS_PER_MINUTE_PER_IP", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..))]
    pub opendata_requests_per_minute_per_ip: u32,
    /// Client addresses (and API keys) whose buckets are remembered at once;
    /// beyond, idle ones are forgotten and new ones share one bucket.
    #[arg(long, env = "CITYGAUGE_OPENDATA_RATE_LIMIT_CLIENTS_MAX", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub opendata_rate_limit_clients_max: u32,
    /// Proxies (IP addresses, comma-separated) whose `X-Forwarded-For` is
    /// believed; from anyone else the header is ignored.
    #[arg(long, env = "CITYGAUGE_OPENDATA_TRUSTED_PROXIES", value_delimiter = ',')]
    pub opendata_trusted_proxies: Vec<IpAddr>,
    /// How long an API key lookup is remembered (a revocation takes effect
    /// within this; 0: every request asks the database).
    #[arg(long, env = "CITYGAUGE_OPENDATA_KEY_CACHE_S", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub opendata_key_cache_s: u64,
    /// Base URL of the open-data routes as the public reaches them, for the
    /// absolute links of the catalogue (default: from the request's `Host`).
    #[arg(long, env = "CITYGAUGE_OPENDATA_PUBLIC_URL")]
    pub opendata_public_url: Option<String>,
    /// The publishing agency (NDC 提供機關, DCAT dct:publisher).
    #[arg(long, env = "CITYGAUGE_OPENDATA_PUBLISHER", default_value = "Kaohsiung City Government (citygauge demo)")]
    pub opendata_publisher: String,
    /// The publishing agency's name in Chinese.
    #[arg(long, env = "CITYGAUGE_OPENDATA_PUBLISHER_ZH", default_value = "高雄市政府（citygauge 示範）")]
    pub opendata_publisher_zh: String,
    /// Contact person or office for the datasets.
    #[arg(long, env = "CITYGAUGE_OPENDATA_CONTACT_NAME", default_value = "Open data service desk")]
    pub opendata_contact_name: String,
    /// Contact e-mail for the datasets.
    #[arg(long, env = "CITYGAUGE_OPENDATA_CONTACT_EMAIL", default_value = "opendata@example.org")]
    pub opendata_contact_email: String,
}

impl OpenDataConfig {
    pub fn cache_dir(&self, database_url: &str) -> PathBuf {
        self.opendata_cache_dir.clone().unwrap_or_else(|| {
            use sha2::Digest;
            let hash = hex::encode(sha2::Sha256::digest(database_url.as_bytes()));
            std::env::temp_dir().join(format!("citygauge-opendata-{}", &hash[..12]))
        })
    }

    pub fn validate(&self) -> Result<(), QueryError> {
        if let Some(url) = &self.opendata_public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(QueryError::Config(format!("--opendata-public-url `{url}` must start with http(s)://")));
            }
        }
        if !self.opendata_contact_email.contains('@') {
            return Err(QueryError::Config(format!(
                "--opendata-contact-email `{}` is not an e-mail address",
                self.opendata_contact_email
            )));
        }
        Ok(())
    }
}

/// The open-data routes' state, one per service.
#[derive(Debug)]
pub struct OpenData {
    pub config: OpenDataConfig,
    pub fair_use: crate::fair_use::FairUse,
    pub downloads: crate::downloads_api::Downloads,
    pub catalog: crate::catalog_api::CoverageCache,
    pub metrics: OpenDataMetrics,
}

impl OpenData {
    pub fn new(config: &OpenDataConfig, database_url: &str, metrics: &Metrics) -> Result<OpenData, QueryError> {
        config.validate()?;
        let metrics = OpenDataMetrics::new(metrics)?;
        Ok(OpenData {
            fair_use: crate::fair_use::FairUse::new(config),
            downloads: crate::downloads_api::Downloads::new(config, database_url)?,
            catalog: crate::catalog_api::CoverageCache::default(),
            config: config.clone(),
            metrics,
        })
    }
}

/// `citygauge_opendata_*`, in the service's registry.
#[derive(Debug, Clone)]
pub struct OpenDataMetrics {
    /// Requests refused with 429, by `client` (`ip` or `key`).
    pub rate_limited: prometheus::IntCounterVec,
    /// Day files served, by `result`: `hit` (cached file), `generated`
    /// (read out of the database and cached), `stream` (today, not cached),
    /// `not_modified` (304).
    pub downloads: prometheus::IntCounterVec,
}

impl OpenDataMetrics {
    fn new(metrics: &Metrics) -> Result<OpenDataMetrics, QueryError> {
        let rate_limited = prometheus::IntCounterVec::new(
            prometheus::Opts::new("citygauge_opendata_rate_limited_total", "Open-data requests refused with 429."),
            &["client"],
        )
        .map_err(|e| QueryError::Internal(e.to_string()))?;
        let downloads = prometheus::IntCounterVec::new(
            prometheus::Opts::new("citygauge_opendata_downloads_total", "Open-data day files served, by result."),
            &["result"],
        )
        .map_err(|e| QueryError::Internal(e.to_string()))?;
        for client in ["ip", "key"] {
            rate_limited.with_label_values(&[client]);
        }
        for result in ["hit", "generated", "stream", "not_modified"] {
            downloads.with_label_values(&[result]);
        }
        // A second service in one process (tests) has a registry of its own.
        for collector in
            [Box::new(rate_limited.clone()) as Box<dyn prometheus::core::Collector>, Box::new(downloads.clone())]
        {
            metrics.registry.register(collector).map_err(|e| QueryError::Internal(e.to_string()))?;
        }
        Ok(OpenDataMetrics { rate_limited, downloads })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        open_data: OpenDataConfig,
    }

    #[test]
    fn defaults_are_valid_and_mistakes_name_the_option() {
        let config = Cli::try_parse_from(["x"]).unwrap().open_data;
        config.validate().unwrap();
        assert_ne!(config.cache_dir("host=a dbname=x"), config.cache_dir("host=a dbname=y"), "databases apart");
        let err = |args: &[&str]| {
            let argv = std::iter::once("x").chain(args.iter().copied());
            match Cli::try_parse_from(argv) {
                Err(e) => e.to_string(),
                Ok(cli) => cli.open_data.validate().unwrap_err().to_string(),
            }
        };
        assert!(err(&["--opendata-public-url", "data.example.tw"]).contains("--opendata-public-url"));
        assert!(err(&["--opendata-contact-email", "nobody"]).contains("--opendata-contact-email"));
        assert!(err(&["--opendata-trusted-proxies", "10.0.0.0/8"]).contains("--opendata-trusted-proxies"));
        assert!(err(&["--opendata-requests-per-minute-per-ip", "0"]).contains("--opendata-requests-per-minute-per-ip"));
        assert_eq!(public_sensors("s"), "s.public AND s.status = 'active'");
    }
}
