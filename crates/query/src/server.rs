//! The service's state, router, start-up and ordered shutdown.
//!
//! Start: build the pool and the empty cache, start the change-stream
//! listener (which loads the cache, then follows the stream), the registry
//! refresh and the district outlines; serve at once (`/readyz` turns ready
//! when the cache is built). Stop: stream clients get `event: shutdown` and
//! their streams end; in-flight requests finish (axum graceful shutdown); the
//! background tasks stop last.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use citygauge_store::Database;
use deadpool_postgres::{Pool, Timeouts};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::compression::CompressionLayer;
use tracing::{error, info, warn, Instrument};

use crate::cache::listen::{self, Listener};
use crate::cache::prepared::{Built, Prepared, Summaries};
use crate::cache::Cache;
use crate::config::QueryConfig;
use crate::health_api::Health;
use crate::metrics::Metrics;
use crate::stream_api::hub::Hub;
use crate::{
    districts_api, health_api, map_api, openapi, overview_api, sensors_api, series_api, stream_api, web, QueryError,
};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub cache: Arc<Cache>,
    pub summaries: Arc<Summaries>,
    pub hub: Arc<Hub>,
    pub pool: Pool,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub outlines: Arc<RwLock<Option<Arc<Prepared>>>>,
    pub stream_slots: Arc<Semaphore>,
    pub db_slots: Arc<Semaphore>,
    pub cache_slots: Arc<Semaphore>,
    /// Cancelled first at shutdown: stream clients say goodbye and end.
    pub stream_stop: CancellationToken,
    pub tasks: TaskTracker,
    pub sse_coalesce: Duration,
    pub sse_heartbeat: Duration,
    pub web_dir: PathBuf,
    /// The alerting options (public URL for CAP links, replay limits...).
    pub alerting: Arc<crate::alerting::AlertingConfig>,
    /// The city's time zone (CAP times carry its offset).
    pub timezone: chrono_tz::Tz,
    /// Raw (and 1-minute rollup) retention by kind; absent: no limit.
    pub raw_retention: Arc<std::collections::HashMap<citygauge_domain::Kind, chrono::Duration>>,
    /// Bulk downloads, catalogue and fair use of the open-data routes.
    pub open_data: Arc<crate::open_data::OpenData>,
}

impl AppState {
    /// 503 until the cache is built.
    pub fn ready(&self) -> Result<(), QueryError> {
        if self.cache.is_built() {
            Ok(())
        } else {
            Err(QueryError::Unavailable("cache not built yet".into()))
        }
    }
}

/// Connections of the alerting tasks (warm-up reads, webhook claims, MQTT
/// outbox), apart from the API's `--pool-max-size`.
const ALERTING_POOL_SIZE: u32 = 4;

/// Pool connections carry the statement timeout, so one heavy query cannot
/// hold a connection (and a slot) for long.
fn pool(config: &QueryConfig, max_size: u32) -> Result<(Pool, Database), QueryError> {
    let database = config.database.database().map_err(|e| QueryError::Config(e.to_string()))?;
    let mut pg = database.config.clone();
    pg.connect_timeout(Duration::from_secs(5))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(15))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3);
    if pg.get_application_name().is_none() {
        pg.application_name("citygauge-query");
    }
    let listen_config = database.with_config(pg.clone());
    pg.options(format!("-c statement_timeout={}", config.statement_timeout_ms));
    let manager = database.with_config(pg).manager();
    // A request waits briefly for a connection, then gets 503 + Retry-After
    // instead of piling up behind a busy pool.
    let pool = Pool::builder(manager)
        .max_size(max_size as usize)
        .timeouts(Timeouts {
            wait: Some(Duration::from_millis(config.pool_wait_ms)),
            create: Some(Duration::from_secs(5)),
            recycle: Some(Duration::from_secs(5)),
        })
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| QueryError::Config(e.to_string()))?;
    Ok((pool, listen_config))
}

/// The running service minus its HTTP listener: what tests drive with
/// `Router::oneshot`.
#[derive(Debug)]
pub struct Service {
    pub state: AppState,
    background: CancellationToken,
}

impl Service {
    /// Validates the configuration and starts the background tasks.
    pub async fn start(config: QueryConfig) -> Result<Service, QueryError> {
        config.validate()?;
        let (pool, listen_config) = pool(&config, config.pool_max_size)?;
        let metrics = Metrics::new();
        let health = Arc::new(Health::default());
        let cache = Arc::new(Cache::new(config.timezone()?, config.stale_factor, config.wet_min_cm));
        let hub = Arc::new(Hub::new(config.sse_replay_events as usize));
        let outlines_file = match &config.districts_file {
            Some(path) => Some(Arc::new(Prepared::json(&districts_api::outlines::from_file(path)?, true))),
            None => None,
        };
        let state = AppState {
            cache: cache.clone(),
            summaries: Arc::default(),
            hub: hub.clone(),
            pool: pool.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            outlines: Arc::new(RwLock::new(outlines_file)),
            stream_slots: Arc::new(Semaphore::new(config.sse_max_clients as usize)),
            // More database requests at once than connections would only queue for one.
            db_slots: Arc::new(Semaphore::new(config.db_routes_max_concurrent.min(config.pool_max_size) as usize)),
            cache_slots: Arc::new(Semaphore::new(config.cache_routes_max_concurrent as usize)),
            stream_stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            sse_coalesce: Duration::from_millis(config.sse_coalesce_ms),
            sse_heartbeat: Duration::from_secs(config.sse_heartbeat_s),
            web_dir: config.web_dir.clone(),
            raw_retention: Arc::new(config.raw_retention()),
            alerting: Arc::new(config.alerting.clone()),
            timezone: config.timezone()?,
            open_data: Arc::new(crate::open_data::OpenData::new(
                &config.open_data,
                &config.database.database_url,
                &metrics,
            )?),
        };
        let background = CancellationToken::new();
        if !config.alerting.alerts_disabled {
            // The alerting tasks have connections of their own: a warm-up or
            // a burst of deliveries never takes the API's, nor the reverse.
            let (pool, _) = self::pool(&config, ALERTING_POOL_SIZE)?;
            let evaluator = crate::alerting::evaluator::EvaluatorContext {
                pool: pool.clone(),
                database: listen_config.clone(),
                config: state.alerting.clone(),
                timezone: state.timezone,
                metrics: metrics.clone(),
            };
            let stop = background.clone();
            supervise(&state, "alert_evaluator", crate::alerting::evaluator::run(evaluator, stop), &background);
            let (db, listen, config, stop) =
                (pool.clone(), listen_config.clone(), state.alerting.clone(), background.clone());
            supervise(
                &state,
                "webhook_delivery",
                crate::alerting::delivery::run(db, listen, config, metrics.clone(), stop),
                &background,
            );
            let (db, listen, config, stop) =
                (pool.clone(), listen_config.clone(), state.alerting.clone(), background.clone());
            supervise(
                &state,
                "alert_mqtt",
                crate::alerting::mqtt::run(db, listen, config, metrics.clone(), stop),
                &background,
            );
        }
        let sta_mqtt = start_sta_mqtt(&config, &state, &background)?;
        let registry_changed = Arc::new(Notify::new());
        let listener = Listener {
            database: listen_config,
            pool: pool.clone(),
            cache: cache.clone(),
            hub,
            metrics,
            health: health.clone(),
            registry_changed: registry_changed.clone(),
            sta_mqtt,
        };
        supervise(&state, "change_stream", listener.run(background.clone()), &background);
        supervise(
            &state,
            "registry_refresh",
            listen::refresh_registry(
                pool.clone(),
                cache.clone(),
                registry_changed,
                Duration::from_secs(config.registry_refresh_s),
                background.clone(),
            ),
            &background,
        );
        let (summaries, stop) = (state.summaries.clone(), background.clone());
        supervise(&state, "summaries", crate::cache::prepared::keep_built(summaries, cache.clone(), stop), &background);
        if state.outlines.read().unwrap_or_else(|e| e.into_inner()).is_none() {
            let (outlines, stop) = (state.outlines.clone(), background.clone());
            supervise(&state, "district_outlines", derive_outlines(pool, cache, outlines, stop), &background);
        }
        Ok(Service { state, background })
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Waits until the cache is built (tests; `run` serves meanwhile).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), QueryError> {
        let deadline = Instant::now() + timeout;
        while !self.state.cache.is_built() {
            if Instant::now() >= deadline {
                return Err(QueryError::Unavailable(format!("the cache was not built within {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Ends the streams (each client gets `shutdown`), then the background tasks.
    pub async fn stop(self) {
        self.state.stream_stop.cancel();
        self.background.cancel();
        self.state.tasks.close();
        self.state.tasks.wait().await;
    }
}

/// Starts the SensorThings MQTT publisher when `--sta-mqtt-url` is set;
/// its queue is what the change stream feeds. Links start like the HTTP
/// API's: `--opendata-public-url`, else the service's public URL.
fn start_sta_mqtt(
    config: &QueryConfig,
    state: &AppState,
    stop: &CancellationToken,
) -> Result<Option<Arc<crate::sta_mqtt::Outbox>>, QueryError> {
    let Some(broker) = config.sta_mqtt.broker()? else { return Ok(None) };
    let metrics = crate::sta_mqtt::StaMqttMetrics::new(&state.metrics)?;
    let outbox = Arc::new(crate::sta_mqtt::Outbox::new(
        config.sta_mqtt.sta_mqtt_queue_readings as usize,
        metrics.dropped.clone(),
    ));
    let root = config
        .open_data
        .opendata_public_url
        .clone()
        .or_else(|| config.alerting.alerts_public_url.clone())
        .unwrap_or_else(|| format!("http://{}", config.query_http_listen));
    let task = crate::sta_mqtt::run(outbox.clone(), state.cache.clone(), broker, root, metrics, stop.clone());
    supervise(state, "sta_mqtt", task, stop);
    Ok(Some(outbox))
}

/// Runs a background task; every one runs until `stop`, so one that ends
/// before (or panics) is logged and makes `/readyz` not ready.
fn supervise<F>(state: &AppState, name: &'static str, task: F, stop: &CancellationToken)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let handle = tokio::spawn(task.instrument(tracing::info_span!("task", name)));
    let (health, stop) = (state.health.clone(), stop.clone());
    state.tasks.spawn(async move {
        match handle.await {
            Ok(()) if stop.is_cancelled() => {}
            Ok(()) => {
                error!(task = name, "background task ended unexpectedly");
                health.task_failed(name);
            }
            Err(e) => {
                error!(task = name, error = %e, "background task panicked");
                health.task_failed(name);
            }
        }
    });
}

/// Derives the district outlines once the cache is built, and again
/// (debounced) whenever the registry's sensors are placed, moved or retired.
async fn derive_outlines(
    pool: Pool,
    cache: Arc<Cache>,
    outlines: Arc<RwLock<Option<Arc<Prepared>>>>,
    stop: CancellationToken,
) {
    let mut located = cache.located.subscribe();
    // After the first cache load, so a database that is still starting is
    // waited for once, by the listener.
    while !cache.is_built() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.cancelled() => return,
        }
    }
    loop {
        located.mark_unchanged();
        let mut backoff = Duration::from_secs(1);
        loop {
            let result = async {
                let mut client = pool.get().await?;
                districts_api::outlines::derive(&mut client).await
            }
            .await;
            match result {
                Ok(value) => {
                    let count = value["features"].as_array().map_or(0, Vec::len);
                    let prepared = Arc::new(Prepared::json(&value, true));
                    *outlines.write().unwrap_or_else(|e| e.into_inner()) = Some(prepared);
                    info!(districts = count, "district outlines derived from the registry");
                    break;
                }
                Err(error) => warn!(%error, "district outlines: derivation failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
        tokio::select! {
            changed = located.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
        // Sensors are imported and placed in bursts.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Every summary at `now`, serialised (see `cache::prepared`): the cache's
/// read lock is held only while the per-sensor figures are derived.
pub fn build_summaries(cache: &Cache, now: chrono::DateTime<Utc>) -> Built {
    let version = cache.version();
    let snapshot = crate::cache::derive::snapshot(cache, now);
    let mut overview = overview_api::compute(&snapshot, cache.ingest_figures(now));
    // `as_of` only moves with the clock: left out of the tag.
    let as_of = std::mem::take(&mut overview.as_of);
    let key = serde_json::to_value(&overview).unwrap_or_default();
    overview.as_of = as_of;
    let overview = Prepared::json_keyed(&overview, &key, false);
    let items = districts_api::summary::all(&snapshot);
    let district = items.iter().map(|summary| (summary.district.clone(), Prepared::json(summary, false))).collect();
    let list = districts_api::DistrictList { as_of: crate::cache::view::rfc3339(now), items };
    let districts = Prepared::json_keyed(&list, &list.items, true);
    let (features, layers) = map_api::layers(&snapshot);
    // The names first: `list` takes the cache's read lock itself.
    let names: Vec<String> = cache.read().districts.iter().cloned().collect();
    let district_sensors = names
        .into_iter()
        .map(|name| {
            let page = sensors_api::list(cache, &sensors_api::SensorFilter::district_page(&name), now);
            (name, Prepared::json_keyed(&page, &page.untimed(), false))
        })
        .collect();
    Built { version, overview, districts, district, district_sensors, map: layers.into_iter().collect(), features }
}

/// Load shedding: a route group takes a slot or answers 503 at once.
async fn limit(State(slots): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    match slots.try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => QueryError::Overloaded { retry_after: Duration::from_secs(1) }.into_response(),
    }
}

/// Request count and latency per matched route template.
async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => path.as_str().to_string(),
        None if request.uri().path().starts_with("/api/") => "/api/unmatched".to_string(),
        None => "static".to_string(),
    };
    let start = Instant::now();
    let response = next.run(request).await;
    metrics.request_duration.with_label_values(&[&route]).observe(start.elapsed().as_secs_f64());
    metrics.requests.with_label_values(&[&route, response.status().as_str()]).inc();
    response
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let cached = Router::new()
        .route("/api/v1/sensors", get(sensors_api::list_handler))
        .route("/api/v1/sensors/{id}", get(sensors_api::one_handler))
        .route("/api/v1/districts", get(districts_api::list_handler))
        .route("/api/v1/districts/{name}", get(districts_api::one_handler))
        .route("/api/v1/districts/{name}/sensors", get(districts_api::sensors_handler))
        .route("/api/v1/overview", get(overview_api::handler))
        .route("/api/v1/map/sensors.geojson", get(map_api::sensors_handler))
        .route("/api/v1/map/districts.geojson", get(map_api::districts_handler))
        .route_layer(middleware::from_fn_with_state(state.cache_slots.clone(), limit));
    let db = series_api::routes().route_layer(middleware::from_fn_with_state(state.db_slots.clone(), limit));
    Router::new()
        .merge(cached)
        .merge(db)
        .merge(crate::sta_api::routes().route_layer(middleware::from_fn_with_state(state.db_slots.clone(), limit)))
        .merge(crate::catalog_api::routes().route_layer(middleware::from_fn_with_state(state.db_slots.clone(), limit)))
        // Day files hold a generation slot of their own (`--opendata-downloads-max-concurrent`).
        .merge(crate::downloads_api::routes())
        .merge(crate::alerts_api::routes())
        // The stream's own limit is its client count (held for the connection's life).
        .route("/api/v1/stream", get(stream_api::handler))
        .route("/api/v1/openapi.json", get(openapi::json_handler))
        .route("/api/docs", get(openapi::docs_handler))
        .route("/healthz", get(health_api::healthz))
        .route("/readyz", get(health_api::readyz))
        .route("/metrics", get(health_api::metrics))
        .route("/", get(web::index))
        .route("/public", get(web::public))
        .fallback(web::fallback)
        // Rate limits and CORS on `/opendata/` and `/sta/`, by path, so every
        // open-data group gets them however it is merged above.
        .layer(middleware::from_fn_with_state(state.clone(), crate::fair_use::middleware))
        .layer(middleware::from_fn_with_state(state.metrics.clone(), track))
        .layer(CompressionLayer::new())
        .with_state(state)
}

/// Runs the service on `listener` until `shutdown`, then stops in order.
pub async fn run(
    mut config: QueryConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), QueryError> {
    let addr = listener.local_addr()?;
    // Links in CAP documents, the Atom feed and webhook bodies are absolute.
    if config.alerting.alerts_public_url.is_none() {
        config.alerting.alerts_public_url = Some(format!("http://{addr}"));
    }
    let service = Service::start(config).await?;
    let app = service.router();
    service.state.health.listening.store(true, Ordering::SeqCst);
    info!(%addr, "query: serving the API, the stream and the control room");
    let stream_stop = service.state.stream_stop.clone();
    // The peer's address is the open-data rate limit's client.
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            info!("query: shutting down; closing streams, finishing requests");
            // Streams end first, or graceful shutdown would wait for them forever.
            stream_stop.cancel();
        })
        .await;
    service.state.health.listening.store(false, Ordering::SeqCst);
    service.stop().await;
    info!("query: stopped");
    served.map_err(QueryError::Io)
}
