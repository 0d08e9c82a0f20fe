//! What the evaluator (and `alerts replay`) load from the database: the
//! registry as the engine sees it, the rule set in force, silences, the
//! alerts held open, and stored readings in time order for warm-up and replay.
//!
//! How far back the warm-up reads is per kind ([`HistoryPlan`]): each kind's
//! longest rule window ([`RuleSet::warmup_for`]), never less than the
//! configured minimum, and the long history of the sewer rules (days of
//! daily minima) only for sewer lines and the rain gauges of their districts.
//!
//! Readings are read window by window (a few minutes of every table per
//! query) and handed to the engine on a blocking thread through a small
//! channel, so a long period streams through [`citygauge_alerts::engine::run`]
//! in bounded memory while the next window is being read, and the engine sees
//! one uninterrupted input sequence (its clock's ticks interleave exactly as
//! over an in-memory list).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use citygauge_alerts::engine::{Input, Silence};
use citygauge_alerts::{AlertKey, AlertState, Decision, Engine, Observation, RuleId, RuleSet, Sensor};
use citygauge_domain::kind::FieldType;
use citygauge_domain::{Field, Kind, QualityLevel, SensorStatus};
use deadpool_postgres::Pool;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;
use tracing::{debug, info, warn};

use crate::QueryError;

/// The stretch of readings one query reads.
const WINDOW: Duration = Duration::minutes(15);
/// The stretch one query reads while only the long histories (sewer lines
/// and their districts' rain gauges) are being read: a few sensors' readings.
const LONG_WINDOW: Duration = Duration::hours(1);
/// Windows read ahead of the engine.
const READ_AHEAD: usize = 2;
/// Bulk reads run once per warm-up or replay; they get more than API time.
const LOAD_STATEMENT_TIMEOUT: &str = "300s";
/// `composite.radius_m` when the rule set does not say (the family's default).
const DEFAULT_RIVER_RADIUS_M: f64 = 3_000.0;

/// The active sensors as the engine sees them. Road flood sensors without an
/// explicit `installation.river_station` get the nearest active river gauge
/// within `composite.radius_m` (PostGIS distance on the spheroid), for the
/// composite diagnosis.
pub async fn sensors(client: &impl GenericClient, rules: &RuleSet) -> Result<Vec<Sensor>, QueryError> {
    // The registry as the cache loads it (one reading of the rows for both).
    let mut sensors: Vec<Sensor> = crate::cache::load::registry(client)
        .await?
        .into_iter()
        .filter(|meta| meta.status == SensorStatus::Active)
        .map(|meta| Sensor {
            id: meta.id,
            kind: Some(meta.kind),
            subkind: meta.subkind,
            name: meta.name,
            name_zh: meta.name_zh,
            district: meta.district,
            lon: meta.lon,
            lat: meta.lat,
            thresholds: meta.thresholds,
            installation: meta.installation,
            expected_interval_s: meta.expected_interval_s,
        })
        .collect();
    let nearest = client
        .query(
            "SELECT f.id, r.id
               FROM sensors f
              CROSS JOIN LATERAL (
                    SELECT g.id FROM sensors g
                     WHERE g.kind = 'water_level' AND g.subkind = 'river' AND g.status = 'active'
                       AND g.location IS NOT NULL
                       AND ST_DWithin(g.location::geography, f.location::geography, $1)
                     ORDER BY ST_Distance(g.location::geography, f.location::geography), g.id
                     LIMIT 1) r
              WHERE f.kind = 'flood_depth' AND f.status = 'active' AND f.location IS NOT NULL
                AND NOT (f.installation ? 'river_station')",
            &[&river_radius_m(rules)],
        )
        .await?;
    let nearest: BTreeMap<String, String> = nearest.into_iter().map(|r| (r.get(0), r.get(1))).collect();
    for sensor in &mut sensors {
        if let Some(station) = nearest.get(&sensor.id) {
            sensor.installation.insert("river_station".into(), Value::from(station.clone()));
        }
    }
    Ok(sensors)
}

/// How far a road sensor's river gauge may be (`composite.radius_m`).
pub fn river_radius_m(rules: &RuleSet) -> f64 {
    Some(rules.composite.radius_m).filter(|r| r.is_finite() && *r > 0.0).unwrap_or(DEFAULT_RIVER_RADIUS_M)
}

/// Where the rules in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RulesSource {
    /// The latest `alert_rule_sets` row.
    Database,
    /// `--alert-rules-file` (installed as the first row by the live evaluator).
    File,
    /// The platform's defaults.
    Defaults,
    /// Given by the caller (a replay trying other rules).
    Given,
}

impl RulesSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RulesSource::Database => "database",
            RulesSource::File => "file",
            RulesSource::Defaults => "defaults",
            RulesSource::Given => "given",
        }
    }
}

/// The rule set in force: the latest `alert_rule_sets` row; else the rules
/// file, which the live evaluator (`install`) records as the first row
/// (`changed_by 'file'`); else the defaults. A stored row that no longer
/// validates is reported and the file or defaults used instead.
pub async fn rules_in_force(
    client: &impl GenericClient,
    file: Option<&Path>,
    install: bool,
) -> Result<(RuleSet, RulesSource), QueryError> {
    let row = client.query_opt("SELECT id, rules FROM alert_rule_sets ORDER BY id DESC LIMIT 1", &[]).await?;
    if let Some(row) = &row {
        match RuleSet::from_json(row.get(1)) {
            Ok(rules) => return Ok((rules, RulesSource::Database)),
            Err(error) => {
                let id: i64 = row.get(0);
                warn!(%error, rule_set = id, "alerts: the stored rule set does not validate; using the file or defaults")
            }
        }
    }
    let Some(path) = file else { return Ok((RuleSet::default(), RulesSource::Defaults)) };
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| QueryError::Config(format!("--alert-rules-file {}: {e}", path.display())))?;
    let rules = RuleSet::from_toml(&text)
        .map_err(|e| QueryError::Config(format!("--alert-rules-file {}: {e}", path.display())))?;
    if install && row.is_none() {
        // Only when no row exists, so two leaders in turn never install it twice.
        let inserted = client
            .execute(
                "INSERT INTO alert_rule_sets (rules, changed_by, note)
                 SELECT $1, 'file', $2 WHERE NOT EXISTS (SELECT 1 FROM alert_rule_sets)",
                &[&rules.to_json(), &format!("installed from {}", path.display())],
            )
            .await?;
        if inserted > 0 {
            info!(file = %path.display(), "alerts: rules file installed as the rule set in force");
        }
    }
    Ok((rules, RulesSource::File))
}

/// Silences in force now.
pub async fn silences(client: &impl GenericClient) -> Result<Vec<Silence>, QueryError> {
    let rows = client
        .query(
            "SELECT rule, subject, until FROM alert_silences
              WHERE cancelled_at IS NULL AND starts_at <= now() AND until > now()",
            &[],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let rule: Option<String> = row.get(0);
            let rule = match rule {
                Some(name) => Some(RuleId::parse(&name)?),
                None => None,
            };
            Some(Silence { rule, subject: row.get(1), until: row.get(2) })
        })
        .collect())
}

/// The alerts the database holds open (open or acknowledged), by key, with
/// the engine's state from `details`.
pub async fn open_alerts(client: &impl GenericClient) -> Result<BTreeMap<AlertKey, AlertState>, QueryError> {
    let rows = client.query("SELECT id, rule, subject, details FROM alerts WHERE state <> 'resolved'", &[]).await?;
    let mut open = BTreeMap::new();
    for row in rows {
        let id: i64 = row.get(0);
        let Some(rule) = RuleId::parse(row.get(1)) else {
            warn!(alert_id = id, "alerts: open alert of an unknown rule ignored");
            continue;
        };
        match serde_json::from_value::<AlertState>(row.get(3)) {
            Ok(state) => {
                open.insert(AlertKey { rule, subject: row.get(2) }, state);
            }
            Err(error) => warn!(alert_id = id, %error, "alerts: open alert with unreadable details ignored"),
        }
    }
    Ok(open)
}

/// An alert an operator resolved by hand.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorResolution {
    pub key: AlertKey,
    pub at: DateTime<Utc>,
    pub grade: u8,
}

/// Keys whose latest alert (resolved since `since`) an operator resolved by
/// hand, with no alert of the key open now.
pub async fn operator_resolutions(
    client: &impl GenericClient,
    since: DateTime<Utc>,
) -> Result<Vec<OperatorResolution>, QueryError> {
    let rows = client
        .query(
            "SELECT rule, subject, resolved_at, grade FROM (
                    SELECT DISTINCT ON (a.rule, a.subject) a.rule, a.subject, a.resolved_at, a.grade, a.resolved_by
                      FROM alerts a
                     WHERE a.state = 'resolved' AND a.resolved_at >= $1
                       AND NOT EXISTS (SELECT 1 FROM alerts o
                                        WHERE o.rule = a.rule AND o.subject = a.subject AND o.state <> 'resolved')
                     ORDER BY a.rule, a.subject, a.resolved_at DESC, a.id DESC) latest
              WHERE resolved_by <> 'engine'",
            &[&since],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let rule = RuleId::parse(row.get(0))?;
            let grade: i16 = row.get(3);
            Some(OperatorResolution {
                key: AlertKey { rule, subject: row.get(1) },
                at: row.get(2),
                grade: u8::try_from(grade).unwrap_or(0),
            })
        })
        .collect())
}

/// The key and the open alert id of `alert_id`'s (rule, subject), if an
/// alert of that key is open now.
pub async fn key_of(client: &impl GenericClient, alert_id: i64) -> Result<Option<(AlertKey, bool)>, QueryError> {
    let row = client
        .query_opt(
            "SELECT a.rule, a.subject,
                    EXISTS (SELECT 1 FROM alerts o WHERE o.rule = a.rule AND o.subject = a.subject
                               AND o.state <> 'resolved')
               FROM alerts a WHERE a.id = $1",
            &[&alert_id],
        )
        .await?;
    Ok(row.and_then(|row| Some((AlertKey { rule: RuleId::parse(row.get(0))?, subject: row.get(1) }, row.get(2)))))
}

/// The stored history of one kind a run reads: every sensor's readings after
/// `from`; before that, back to `long`'s start, only the readings of the
/// sensors `long` names.
#[derive(Debug, Clone, PartialEq)]
pub struct KindHistory {
    pub kind: Kind,
    pub from: DateTime<Utc>,
    pub long: Option<(DateTime<Utc>, Vec<String>)>,
}

impl KindHistory {
    /// The earliest reading of this kind read.
    pub fn start(&self) -> DateTime<Utc> {
        self.long.as_ref().map_or(self.from, |(from, _)| *from)
    }
}

/// What a warm-up reads of each kind before `at` (where the evaluator
/// resumes, or where a replay's period starts): the longest window the rules
/// read ([`RuleSet::warmup_for`]), never less than `minimum`
/// (`--alerts-warmup-hours`), so the engine's windows, confirmations and
/// alerts stand where they stood live.
///
/// The sewer rules fit days of daily minima (`sewer.sediment.days`, the
/// night baseline's `odd_hours.baseline_days`) but read only water-level
/// sensors of subkind `sewer`: those lines get the long history, the other
/// water-level gauges their own windows (rate of rise, health). A line's
/// days count as dry from its district's rain (the last hour, then
/// `dry_after_rain_h` hours), so the rain gauges of the lines' districts are
/// read back that much further than the lines.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPlan {
    pub kinds: Vec<KindHistory>,
}

impl HistoryPlan {
    pub fn new(rules: &RuleSet, sensors: &[Sensor], minimum: Duration, at: DateTime<Utc>) -> HistoryPlan {
        let window = |kind: Kind| rules.warmup_for(kind).max(minimum);
        let of_kind = |kind: Kind| sensors.iter().filter(move |s| s.kind == Some(kind));
        let sewers: Vec<&Sensor> =
            of_kind(Kind::WaterLevel).filter(|s| s.subkind.as_deref() == Some("sewer")).collect();
        let water_from = at - water_level_warmup_without_sewer(rules).max(minimum);
        let sewer_from = at - window(Kind::WaterLevel);
        let sewer_long = (!sewers.is_empty() && sewer_from < water_from)
            .then(|| (sewer_from, sewers.iter().map(|s| s.id.clone()).collect::<Vec<_>>()));
        let rain_from = at - window(Kind::Rainfall);
        let rain_long = sewer_long.as_ref().and_then(|(sewer_from, _)| {
            let districts: HashSet<&str> = sewers.iter().filter_map(|s| s.district.as_deref()).collect();
            let gauges: Vec<String> = of_kind(Kind::Rainfall)
                .filter(|g| g.district.as_deref().is_some_and(|d| districts.contains(d)))
                .map(|g| g.id.clone())
                .collect();
            let from = *sewer_from - rain_lead(rules);
            (!gauges.is_empty() && from < rain_from).then_some((from, gauges))
        });
        let kinds = Kind::ALL
            .into_iter()
            .map(|kind| match kind {
                Kind::WaterLevel => KindHistory { kind, from: water_from, long: sewer_long.clone() },
                Kind::Rainfall => KindHistory { kind, from: rain_from, long: rain_long.clone() },
                _ => KindHistory { kind, from: at - window(kind), long: None },
            })
            .collect();
        HistoryPlan { kinds }
    }

    /// The earliest reading read.
    pub fn start(&self) -> DateTime<Utc> {
        self.kinds.iter().map(KindHistory::start).min().unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The earliest time from which every sensor of some kind is read.
    fn full_from(&self) -> DateTime<Utc> {
        self.kinds.iter().map(|k| k.from).min().unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    pub fn kind(&self, kind: Kind) -> Option<&KindHistory> {
        self.kinds.iter().find(|k| k.kind == kind)
    }
}

/// The city-wide rules and each override merged over them.
fn rule_sets(rules: &RuleSet) -> impl Iterator<Item = RuleSet> + '_ {
    std::iter::once(rules.clone()).chain((0..rules.overrides.len()).filter_map(|i| rules.effective_by_overrides(&[i])))
}

/// [`RuleSet::warmup_for`] of water levels without the sewer rules' days:
/// the rate-of-rise window and the health windows (as `warmup_for` counts
/// them), over the city-wide rules and every override.
fn water_level_warmup_without_sewer(rules: &RuleSet) -> Duration {
    let seconds = Duration::seconds;
    rule_sets(rules)
        .map(|r| {
            let h = &r.health;
            seconds(r.water_level.rate.window_s)
                .max(seconds(h.flatline.min_duration_s))
                .max(seconds(h.spike.window_s))
                .max(seconds(h.flatline.rain_window_s) + seconds(h.default_interval_s))
        })
        .max()
        .unwrap_or_else(Duration::zero)
        .min(rules.warmup_for(Kind::WaterLevel))
}

/// How much earlier than the sewer lines their districts' rain gauges are
/// read: a line's reading is wet when the district rained in the last hour
/// (complete with a gauge's first interval and lateness, which
/// `warmup_for(Rainfall)` adds to its 24 h), and stays wet
/// `dry_after_rain_h` hours after.
fn rain_lead(rules: &RuleSet) -> Duration {
    let hour = (rules.warmup_for(Kind::Rainfall) - Duration::hours(23)).max(Duration::hours(1));
    let dry_after = rule_sets(rules).map(|r| r.sewer.dry_after_rain_h).max().unwrap_or(0);
    hour + Duration::hours(dry_after.max(0))
}

/// The readings `plan` reads with `from < ts <= to`, in time order (by time,
/// kind, sensor).
pub async fn readings(
    client: &impl GenericClient,
    plan: &HistoryPlan,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Observation>, QueryError> {
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&from, &to];
    let mut parts = Vec::new();
    for k in &plan.kinds {
        if to <= k.start() {
            continue;
        }
        let mut only = String::new();
        if from < k.from {
            params.push(&k.from);
            let n = params.len();
            match &k.long {
                Some((long_from, ids)) => {
                    params.push(long_from);
                    params.push(ids);
                    only = format!(" AND (ts > ${n} OR (ts > ${} AND sensor_id = ANY(${})))", n + 1, n + 2);
                }
                None => only = format!(" AND ts > ${n}"),
            }
        }
        parts.push(format!(
            "SELECT '{table}'::text AS k, sensor_id, ts, quality, coalesce(quality_reasons, '{{}}') AS qr,
                    jsonb_strip_nulls(to_jsonb(t) - 'sensor_id' - 'ts' - 'quality' - 'quality_reasons') AS x
               FROM {table} t WHERE ts > $1 AND ts <= $2{only}",
            table = k.kind.as_str()
        ));
    }
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("{} ORDER BY ts, k, sensor_id", parts.join(" UNION ALL "));
    let rows = client.query(&sql, &params).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(kind) = Kind::from_str(row.get(0)) else { continue };
        let quality = match row.get::<_, &str>(3) {
            "suspect" => QualityLevel::Suspect,
            "bad" => QualityLevel::Bad,
            _ => QualityLevel::Good,
        };
        out.push(Observation {
            sensor_id: row.get(1),
            kind,
            ts: row.get(2),
            quality,
            quality_reasons: row.get(4),
            values: canonical_values(row.get(5)),
        });
    }
    Ok(out)
}

/// Column values typed as the change stream types them (floats as floats,
/// `interval_s` an integer, `lamp_on` a bool, `fault` a string), so an
/// observation read back equals the one the live evaluator heard.
fn canonical_values(x: Value) -> Map<String, Value> {
    let Value::Object(map) = x else { return Map::new() };
    map.into_iter()
        .filter_map(|(name, value)| {
            let value = match Field::from_column(&name).map(Field::field_type) {
                Some(FieldType::Float) => value.as_f64().and_then(serde_json::Number::from_f64).map(Value::Number)?,
                Some(FieldType::Int) => Value::from(value.as_i64()?),
                _ => value,
            };
            Some((name, value))
        })
        .collect()
}

/// An observation from the change stream.
pub fn observation(r: citygauge_store::changes::ChangedReading) -> Observation {
    Observation {
        sensor_id: r.sensor_id,
        kind: r.kind,
        ts: r.ts,
        quality: r.quality,
        quality_reasons: r.quality_reasons,
        values: r.values,
    }
}

/// What running the engine over a stored period left.
#[derive(Debug)]
pub struct Ran {
    pub engine: Engine,
    /// Every decision, in order (nothing was stored or sent).
    pub decisions: Vec<Decision>,
    /// Readings fed.
    pub readings: u64,
    /// `(kind, sensor, ts)` of the readings fed with `ts >= remember_from`
    /// (the live evaluator skips them if the change stream repeats them).
    pub seen: HashSet<(Kind, String, DateTime<Utc>)>,
}

/// Runs `engine` over the stored readings `plan` reads up to `to` (`ts <=
/// to`) through [`citygauge_alerts::engine::run`], ticking every `tick_s` of
/// reading time as live, on a blocking thread while the next window is read.
pub async fn run_engine(
    engine: Engine,
    pool: &Pool,
    plan: &HistoryPlan,
    to: DateTime<Utc>,
    tick_s: i64,
    remember_from: Option<DateTime<Utc>>,
) -> Result<Ran, QueryError> {
    let (tx, mut rx) = mpsc::channel::<Vec<Observation>>(READ_AHEAD);
    let worker = tokio::task::spawn_blocking(move || {
        let mut engine = engine;
        let mut count = 0u64;
        let mut seen = HashSet::new();
        let inputs = std::iter::from_fn(|| rx.blocking_recv()).flatten().map(|obs| {
            count += 1;
            if remember_from.is_some_and(|t| obs.ts >= t) {
                seen.insert((obs.kind, obs.sensor_id.clone(), obs.ts));
            }
            Input::Reading(obs)
        });
        let decisions = citygauge_alerts::engine::run(&mut engine, inputs, tick_s);
        Ran { engine, decisions, readings: count, seen }
    });
    let read = async {
        let mut client = pool.get().await?;
        let tx_db = client.transaction().await?;
        tx_db.batch_execute(&format!("SET LOCAL statement_timeout = '{LOAD_STATEMENT_TIMEOUT}'")).await?;
        let full_from = plan.full_from();
        let mut start = plan.start();
        while start < to {
            let end = if start < full_from { (start + LONG_WINDOW).min(full_from) } else { start + WINDOW };
            let end = end.min(to);
            let batch = readings(&*tx_db, plan, start, end).await?;
            if !batch.is_empty() && tx.send(batch).await.is_err() {
                break;
            }
            start = end;
        }
        tx_db.commit().await?;
        Ok::<(), QueryError>(())
    };
    let read = read.await;
    drop(tx);
    let ran = worker.await.map_err(|e| QueryError::Internal(format!("alert engine: {e}")))?;
    read?;
    debug!(readings = ran.readings, decisions = ran.decisions.len(), "alerts: engine ran over stored readings");
    Ok(ran)
}
