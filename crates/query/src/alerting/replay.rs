//! `citygauge alerts replay` (and `POST /api/v1/alerts/replay`): the live
//! engine over a past period's stored readings, notifying no one.
//!
//! The engine is warmed up silently on the readings before `from` exactly as
//! the live evaluator warms up after a restart ([`history::HistoryPlan`]:
//! per kind the longest window its rules read, at least [`WARMUP`], the
//! sewer rules' days for sewer lines), and runs on through the period via
//! the same path (`history::run_engine` -> `citygauge_alerts::engine::run`,
//! ticking every few seconds of reading time as the live clock does). Every
//! decision in `[from, to]` is returned with its time, level and the
//! readings behind it. Silences and hand resolutions are operator actions,
//! not rules: a replay shows what the rules alone would have done.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use citygauge_alerts::engine::Input;
use citygauge_alerts::{AlertKey, Change, Decision, Engine, Evidence, RuleId, RuleSet, Severity};
use citygauge_ingest::config::DatabaseArgs;
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};

use crate::alerting::history::{self, RulesSource};
use crate::QueryError;

/// Options of `citygauge alerts replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Start of the period (RFC 3339).
    #[arg(long)]
    pub from: chrono::DateTime<chrono::Utc>,
    /// End of the period (RFC 3339).
    #[arg(long)]
    pub to: chrono::DateTime<chrono::Utc>,
    /// Rules to try (TOML); default: the rule set in force.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Output: a table for people, or JSON.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReplayFormat,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayFormat {
    Text,
    Json,
}

/// The longest period one replay covers.
pub const MAX_PERIOD: Duration = Duration::days(31);
/// The least history before `from` the engine is warmed up on, silently
/// (as the live default `--alerts-warmup-hours 25`); kinds whose rules read
/// further back get more ([`history::HistoryPlan`]).
pub const WARMUP: Duration = Duration::hours(25);
/// The live evaluator's default tick (`--alerts-tick-ms 5000`).
pub const DEFAULT_TICK_S: i64 = 5;

/// What the engine would have decided over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Where the warm-up started: the earliest reading read (at least 25 h
    /// before `from`; days before it when sewer lines are registered).
    pub warmup_from: DateTime<Utc>,
    /// Which rules ran.
    pub rules_source: RulesSource,
    /// The rules' time zone (the city's), for showing times.
    pub timezone: String,
    /// Readings the engine read, warm-up included.
    pub readings: u64,
    /// Alerts the engine held open at `from` (raised during the warm-up).
    pub open_at_start: Vec<Entry>,
    /// Every decision in `[from, to]`, in order.
    pub entries: Vec<Entry>,
    /// Alerts still open at `to`.
    pub open_at_end: usize,
}

/// One decision of a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub rule: RuleId,
    pub subject: String,
    pub change: Change,
    pub grade: u8,
    pub level: String,
    pub severity: Severity,
    pub headline_en: String,
    pub headline_zh: String,
    pub sensor_id: Option<String>,
    pub district: Option<String>,
    pub value: Option<f64>,
    pub unit: Option<String>,
    pub lead_time_s: Option<i64>,
    /// The readings the decision rests on.
    pub evidence: Vec<Evidence>,
    /// For `suppressed`: the health alert that made the readings suspect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
}

impl Entry {
    fn of(d: &Decision) -> Entry {
        let s = &d.state;
        Entry {
            at: d.at,
            rule: d.key.rule,
            subject: d.key.subject.clone(),
            change: d.change,
            grade: s.grade,
            level: s.level.clone(),
            severity: s.severity,
            headline_en: s.headline_en.clone(),
            headline_zh: s.headline_zh.clone(),
            sensor_id: s.sensor_id.clone(),
            district: s.district.clone(),
            value: s.value,
            unit: s.unit.clone(),
            lead_time_s: s.lead_time_s,
            evidence: s.evidence.clone(),
            suppressed_by: s.details.get("suppressed_by").and_then(|v| v.as_str()).map(str::to_string),
        }
    }
}

/// Checks a requested period: `from < to`, at most [`MAX_PERIOD`].
pub fn check_period(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), QueryError> {
    if to <= from {
        return Err(QueryError::invalid("to", "must be after `from`"));
    }
    if to - from > MAX_PERIOD {
        return Err(QueryError::invalid("to", format!("a replay covers at most {} days", MAX_PERIOD.num_days())));
    }
    Ok(())
}

/// Replays `[from, to]` with `rules` (default: the rule set in force),
/// ticking as the live evaluator does by default.
pub async fn replay(
    pool: &Pool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rules: Option<RuleSet>,
) -> Result<Timeline, QueryError> {
    replay_ticking(pool, from, to, rules, DEFAULT_TICK_S).await
}

/// [`replay`] with the engine's clock ticking every `tick_s` seconds.
pub async fn replay_ticking(
    pool: &Pool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rules: Option<RuleSet>,
    tick_s: i64,
) -> Result<Timeline, QueryError> {
    check_period(from, to)?;
    let client = pool.get().await?;
    let (rules, rules_source) = match rules {
        Some(rules) => {
            rules.validate()?;
            (rules, RulesSource::Given)
        }
        None => history::rules_in_force(&**client, None, false).await?,
    };
    let sensors = history::sensors(&**client, &rules).await?;
    drop(client);
    let timezone = rules.timezone.clone();
    let plan = history::HistoryPlan::new(&rules, &sensors, WARMUP, from);
    let warmup_from = plan.start();
    let ran = history::run_engine(Engine::new(rules, sensors), pool, &plan, to, tick_s, None).await?;
    let mut engine = ran.engine;
    let mut decisions = ran.decisions;
    // The clock runs on to the end of the period, as it would have live.
    if engine.now().is_none_or(|now| now < to) {
        decisions.extend(engine.apply(&Input::Tick(to)));
    }
    let mut open: BTreeMap<AlertKey, &Decision> = BTreeMap::new();
    let mut entries = Vec::new();
    for d in &decisions {
        if d.at >= from && d.at <= to {
            entries.push(Entry::of(d));
        } else if d.at < from {
            match d.change {
                Change::Resolved => {
                    open.remove(&d.key);
                }
                Change::Suppressed => {}
                _ => {
                    open.insert(d.key.clone(), d);
                }
            }
        }
    }
    Ok(Timeline {
        from,
        to,
        warmup_from,
        rules_source,
        timezone,
        readings: ran.readings,
        open_at_start: open.values().map(|d| Entry::of(d)).collect(),
        entries,
        open_at_end: engine.active().len(),
    })
}

/// A small pool for the command line.
pub fn pool(database: &DatabaseArgs) -> Result<Pool, QueryError> {
    let database = database.database().map_err(|e| QueryError::Config(e.to_string()))?;
    let mut pg = database.config.clone();
    pg.connect_timeout(StdDuration::from_secs(10));
    if pg.get_application_name().is_none() {
        pg.application_name("citygauge-alerts-replay");
    }
    let manager = database.with_config(pg).manager();
    Pool::builder(manager)
        .max_size(2)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| QueryError::Config(e.to_string()))
}

/// `citygauge alerts replay`: the timeline, rendered for stdout.
pub async fn command(args: ReplayArgs) -> Result<String, QueryError> {
    let rules = match &args.rules {
        Some(path) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| QueryError::Config(format!("--rules {}: {e}", path.display())))?;
            Some(
                RuleSet::from_toml(&text)
                    .map_err(|e| QueryError::Config(format!("--rules {}: {e}", path.display())))?,
            )
        }
        None => None,
    };
    let pool = pool(&args.database)?;
    let timeline = replay(&pool, args.from, args.to, rules).await?;
    Ok(match args.format {
        ReplayFormat::Json => {
            serde_json::to_string_pretty(&timeline).map_err(|e| QueryError::Internal(e.to_string()))? + "\n"
        }
        ReplayFormat::Text => text(&timeline),
    })
}

/// The timeline as a table for people, times in the city's zone.
pub fn text(timeline: &Timeline) -> String {
    let tz: chrono_tz::Tz = timeline.timezone.parse().unwrap_or(chrono_tz::Asia::Taipei);
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S%:z").to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replay {} .. {} ({} rules, {} readings, warm-up from {})",
        local(timeline.from),
        local(timeline.to),
        timeline.rules_source.as_str(),
        timeline.readings,
        local(timeline.warmup_from)
    );
    let row = |out: &mut String, e: &Entry, change: &str| {
        let value = match (e.value, &e.unit) {
            (Some(v), Some(u)) => format!("{v:.2} {u}"),
            (Some(v), None) => format!("{v:.2}"),
            _ => String::new(),
        };
        let lead = e.lead_time_s.map(|s| format!(" (next level in {} min)", s / 60)).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<25}  {:<12} {:<20} {:<24} {:>5} {:<22} {:>14}  {}{lead}",
            local(e.at),
            change,
            e.rule.as_str(),
            e.subject,
            e.grade,
            e.level,
            value,
            e.headline_en
        );
    };
    let _ = writeln!(
        out,
        "{:<25}  {:<12} {:<20} {:<24} {:>5} {:<22} {:>14}  headline",
        "time", "change", "rule", "subject", "grade", "level", "value"
    );
    for e in &timeline.open_at_start {
        row(&mut out, e, "open before");
    }
    for e in &timeline.entries {
        row(&mut out, e, e.change.as_str());
    }
    let _ = writeln!(
        out,
        "{} decisions; {} alerts open at the start, {} at the end",
        timeline.entries.len(),
        timeline.open_at_start.len(),
        timeline.open_at_end
    );
    out
}
