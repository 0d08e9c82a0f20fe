//! The in-process cache the hot routes read: the registry, every sensor's
//! latest reading, the last 24 h of rain per gauge, the last 12 h of PM2.5
//! and PM10 per air station (MOENV's AQI is a 12 h/4 h moving average) and
//! each lamp's meter at the start of the day. Built from the database at
//! start, then kept current by the change stream ([`listen`]); requests
//! never query the database.

pub mod derive;
pub mod listen;
pub mod load;
pub mod prepared;
pub mod view;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use citygauge_domain::aqi::{self, PmReading};
use citygauge_domain::rain_window::RainInterval;
use citygauge_domain::{Kind, QualityLevel, SensorStatus};
use citygauge_store::changes::ChangedReading;
use serde_json::{Map, Value};

/// What the registry says about a sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorMeta {
    pub id: String,
    pub kind: Kind,
    pub subkind: Option<String>,
    pub name: Option<String>,
    pub name_zh: Option<String>,
    pub district: Option<String>,
    pub status: SensorStatus,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub thresholds: Map<String, Value>,
    pub installation: Map<String, Value>,
    /// `installation.cadence_s`, or [`DEFAULT_INTERVAL_S`].
    pub expected_interval_s: i64,
    /// `sensors.public`: open data may show it (when also active).
    pub public: bool,
    /// `sensors.sta_id`: its SensorThings Thing id.
    pub sta_id: Option<i64>,
}

/// Expected reporting interval of a sensor whose registry entry names none.
pub const DEFAULT_INTERVAL_S: i64 = 600;
/// Readings stamped further ahead than this are not taken as "latest" (they
/// are flagged `future_ts` by ingest and would otherwise stick forever).
pub const FUTURE_SLACK_S: i64 = 300;
/// Rain kept per gauge: the longest window plus a margin.
const RAIN_KEEP: Duration = Duration::minutes(24 * 60 + 15);
/// Particulates kept per air station: MOENV's long window plus a margin.
pub const AIR_KEEP: Duration = Duration::minutes(aqi::LONG_HOURS as i64 * 60 + 15);

/// The later of two timed values.
fn newer(a: Option<(DateTime<Utc>, f64)>, b: (DateTime<Utc>, f64)) -> Option<(DateTime<Utc>, f64)> {
    match a {
        Some(a) if a.0 >= b.0 => Some(a),
        _ => Some(b),
    }
}

/// The start of the city's current day, in UTC.
pub fn local_midnight(now: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
    use chrono::TimeZone;
    let day = now.with_timezone(&tz).date_naive();
    tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now - Duration::hours(24))
}

impl SensorMeta {
    /// A sensor heard before the registry refresh told about it.
    pub fn placeholder(id: &str, kind: Kind) -> SensorMeta {
        SensorMeta {
            id: id.to_string(),
            kind,
            subkind: None,
            name: None,
            name_zh: None,
            district: None,
            status: SensorStatus::Pending,
            lon: None,
            lat: None,
            thresholds: Map::new(),
            installation: Map::new(),
            expected_interval_s: DEFAULT_INTERVAL_S,
            // Unknown to the registry: never open data until it says so.
            public: false,
            sta_id: None,
        }
    }

    /// Open data may show it: the rule of [`crate::open_data::PUBLIC_SENSORS_PREDICATE`].
    pub fn is_open_data(&self) -> bool {
        self.public && self.status == SensorStatus::Active
    }

    pub fn threshold(&self, key: &str) -> Option<f64> {
        self.thresholds.get(key).and_then(Value::as_f64)
    }
}

/// A sensor's newest reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub ts: DateTime<Utc>,
    pub quality: QualityLevel,
    pub quality_reasons: Vec<String>,
    /// Non-null columns by canonical name.
    pub values: Map<String, Value>,
}

impl Latest {
    pub fn number(&self, column: &str) -> Option<f64> {
        self.values.get(column).and_then(Value::as_f64)
    }
}

/// One sensor in the cache.
#[derive(Debug, Clone)]
pub struct Entry {
    pub meta: Arc<SensorMeta>,
    /// Shared, so a summary build snapshots it without copying the values.
    pub latest: Option<Arc<Latest>>,
    /// Rain gauges: interval readings of the last 24 h by time (a redelivered
    /// reading replaces itself instead of counting twice); `bad` ones left out.
    pub rain: BTreeMap<DateTime<Utc>, (f64, Option<i64>)>,
    /// Air stations: (PM2.5, PM10) readings of the last 12 h by time, kept
    /// the same way, for the AQI's moving averages.
    pub air: BTreeMap<DateTime<Utc>, (Option<f64>, Option<f64>)>,
    /// Streetlights' energy meter (see [`Entry::energy_today`]): the newest
    /// reading before the city's last midnight, the newest reading, and the
    /// smallest reading of a day (for lamps first heard after midnight).
    pub meter_before: Option<(DateTime<Utc>, f64)>,
    pub meter_last: Option<(DateTime<Utc>, f64)>,
    pub meter_day_min: Option<(NaiveDate, f64)>,
    /// `sensors.last_seen` at load: a sensor silent for longer than the
    /// latest-reading lookback is still `stale`, not `no_data`.
    pub last_seen: Option<DateTime<Utc>>,
}

impl Entry {
    pub fn new(meta: Arc<SensorMeta>) -> Entry {
        Entry {
            meta,
            latest: None,
            rain: BTreeMap::new(),
            air: BTreeMap::new(),
            meter_before: None,
            meter_last: None,
            meter_day_min: None,
            last_seen: None,
        }
    }

    /// Takes one meter reading (any order, duplicates harmless).
    pub fn note_meter(&mut self, ts: DateTime<Utc>, kwh: f64, now: DateTime<Utc>, tz: chrono_tz::Tz) {
        let cut = local_midnight(now, tz);
        // Once the newest reading is from before midnight, it is the day's baseline candidate.
        if let Some(last) = self.meter_last.filter(|(t, _)| *t < cut) {
            self.meter_before = newer(self.meter_before, last);
        }
        if ts < cut {
            self.meter_before = newer(self.meter_before, (ts, kwh));
        } else {
            let day = ts.with_timezone(&tz).date_naive();
            self.meter_day_min = match self.meter_day_min {
                Some((d, min)) if d == day => Some((d, min.min(kwh))),
                _ => Some((day, kwh)),
            };
        }
        self.meter_last = newer(self.meter_last, (ts, kwh));
    }

    /// The meter's advance since the city's midnight: from the last reading
    /// before midnight, or (a lamp first heard today) the day's smallest.
    /// `None` when the lamp has not reported today or its meter went back.
    pub fn energy_today(&self, now: DateTime<Utc>, tz: chrono_tz::Tz) -> Option<f64> {
        let cut = local_midnight(now, tz);
        let today = now.with_timezone(&tz).date_naive();
        let (last_ts, last) = self.meter_last?;
        if last_ts < cut {
            return None;
        }
        let before = [self.meter_before, self.meter_last].into_iter().flatten().filter(|(t, _)| *t < cut);
        let baseline = before
            .max_by_key(|(t, _)| *t)
            .map(|(_, kwh)| kwh)
            .or(self.meter_day_min.filter(|(d, _)| *d == today).map(|(_, kwh)| kwh))?;
        (last >= baseline).then_some(last - baseline)
    }

    /// Keeps one air reading's particulates (any order; a redelivered reading
    /// replaces itself) and forgets what fell out of the long window.
    pub fn note_air(&mut self, ts: DateTime<Utc>, pm2_5: Option<f64>, pm10: Option<f64>, now: DateTime<Utc>) {
        if pm2_5.is_some() || pm10.is_some() {
            self.air.insert(ts, (pm2_5, pm10));
        }
        // Pruned in place, like the rain.
        let keep_from = now - AIR_KEEP;
        while self.air.first_key_value().is_some_and(|(ts, _)| *ts < keep_from) {
            self.air.pop_first();
        }
    }

    /// The station's kept particulate readings, oldest first, without copying them.
    pub fn pm_readings(&self) -> impl Iterator<Item = PmReading> + '_ {
        self.air.iter().map(|(ts, (pm2_5, pm10))| PmReading { ts: *ts, pm2_5_ugm3: *pm2_5, pm10_ugm3: *pm10 })
    }

    /// The gauge's kept readings, oldest first, without copying them.
    pub fn rain_intervals(&self) -> impl Iterator<Item = RainInterval> + '_ {
        self.rain.iter().map(|(ts, (mm, interval))| RainInterval { ts: *ts, rain_mm: *mm, interval_s: *interval })
    }
}

/// Everything the cache holds, swapped or updated under one lock.
#[derive(Debug, Default)]
pub struct CacheData {
    pub sensors: BTreeMap<String, Entry>,
    pub districts: BTreeSet<String>,
}

impl CacheData {
    /// Whether `metas` says anything the cache does not already hold (a
    /// periodic refresh that finds nothing new must not count as a change).
    pub fn registry_differs(&self, metas: &[SensorMeta]) -> bool {
        let ids: BTreeSet<&str> = metas.iter().map(|m| m.id.as_str()).collect();
        metas.iter().any(|m| self.sensors.get(&m.id).is_none_or(|e| e.meta.as_ref() != m))
            // An entry `set_registry` would drop (kept: heard, not yet registered).
            || self.sensors.iter().any(|(id, e)| {
                let kept = ids.contains(id.as_str()) || (e.meta.status == SensorStatus::Pending && e.latest.is_some());
                !kept
            })
    }

    /// Replaces the registry, keeping what is known of the sensors' readings.
    pub fn set_registry(&mut self, metas: Vec<SensorMeta>) {
        let mut old = std::mem::take(&mut self.sensors);
        self.districts = metas.iter().filter_map(|m| m.district.clone()).collect();
        for meta in metas {
            let entry = match old.remove(&meta.id) {
                Some(mut entry) if entry.meta.kind == meta.kind => {
                    entry.meta = Arc::new(meta);
                    entry
                }
                _ => Entry::new(Arc::new(meta)),
            };
            self.sensors.insert(entry.meta.id.clone(), entry);
        }
        // Sensors heard but not yet in the registry snapshot stay.
        for (id, entry) in old {
            if entry.meta.status == SensorStatus::Pending && entry.latest.is_some() {
                self.sensors.insert(id, entry);
            }
        }
    }

    /// Applies one committed reading. Returns whether it became the sensor's
    /// latest (an older reading arriving late only feeds the rain windows and
    /// the air averages).
    pub fn apply(&mut self, r: &ChangedReading, now: DateTime<Utc>, tz: chrono_tz::Tz) -> bool {
        let entry = self
            .sensors
            .entry(r.sensor_id.clone())
            .or_insert_with(|| Entry::new(Arc::new(SensorMeta::placeholder(&r.sensor_id, r.kind))));
        if entry.meta.kind != r.kind {
            return false; // ingest refuses kind contradictions; be safe anyway
        }
        if r.ts > now + Duration::seconds(FUTURE_SLACK_S) {
            return false;
        }
        if r.kind == Kind::Rainfall && r.quality != QualityLevel::Bad {
            if let Some(mm) = r.values.get("rain_mm").and_then(Value::as_f64) {
                entry.rain.insert(r.ts, (mm, r.values.get("interval_s").and_then(Value::as_i64)));
            }
            // Pruned in place: the map stays small and nothing is reallocated.
            let keep_from = now - RAIN_KEEP;
            while entry.rain.first_key_value().is_some_and(|(ts, _)| *ts < keep_from) {
                entry.rain.pop_first();
            }
        }
        if r.kind == Kind::AirQuality && r.quality != QualityLevel::Bad {
            let pm = |column: &str| r.values.get(column).and_then(Value::as_f64);
            entry.note_air(r.ts, pm("pm2_5_ugm3"), pm("pm10_ugm3"), now);
        }
        if r.kind == Kind::Streetlight && r.quality != QualityLevel::Bad {
            if let Some(kwh) = r.values.get("energy_kwh").and_then(Value::as_f64) {
                entry.note_meter(r.ts, kwh, now, tz);
            }
        }
        if entry.latest.as_ref().is_some_and(|l| l.ts > r.ts) {
            return false;
        }
        entry.latest = Some(Arc::new(Latest {
            ts: r.ts,
            quality: r.quality,
            quality_reasons: r.quality_reasons.clone(),
            values: r.values.clone(),
        }));
        true
    }
}

/// The cache plus what tells readers whether it changed.
#[derive(Debug)]
pub struct Cache {
    data: RwLock<CacheData>,
    /// Bumped on every change; summaries are rebuilt when it moved.
    version: AtomicU64,
    built: AtomicBool,
    pub tz: chrono_tz::Tz,
    pub stale_factor: f64,
    /// Flood depths below this (cm) count as a dry road, not `wet`: sensors
    /// read a few millimetres of spray or noise on a dry day.
    pub wet_min_cm: f64,
    /// Readings applied per second over the last minute (second, count).
    rate: Mutex<VecDeque<(i64, u64)>>,
    last_reading_at: Mutex<Option<DateTime<Utc>>>,
    /// A fingerprint of where the registry's sensors are (id, district,
    /// place, retired or not): district outlines are re-derived when it moves.
    pub located: tokio::sync::watch::Sender<u64>,
}

impl Cache {
    pub fn new(tz: chrono_tz::Tz, stale_factor: f64, wet_min_cm: f64) -> Cache {
        Cache {
            data: RwLock::new(CacheData::default()),
            version: AtomicU64::new(0),
            built: AtomicBool::new(false),
            tz,
            stale_factor,
            wet_min_cm,
            rate: Mutex::new(VecDeque::new()),
            last_reading_at: Mutex::new(None),
            located: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, CacheData> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the data under the write lock and marks the cache changed.
    pub fn update<T>(&self, f: impl FnOnce(&mut CacheData) -> T) -> T {
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut data);
        self.version.fetch_add(1, Ordering::SeqCst);
        out
    }

    /// Like [`Cache::update`], but the version moves only if `f` says it
    /// changed something.
    pub fn update_if(&self, f: impl FnOnce(&mut CacheData) -> bool) -> bool {
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        let changed = f(&mut data);
        if changed {
            self.version.fetch_add(1, Ordering::SeqCst);
        }
        changed
    }

    /// Replaces everything (start, or after the change stream reconnected).
    pub fn replace(&self, data: CacheData) {
        self.update(|d| *d = data);
        self.built.store(true, Ordering::SeqCst);
        self.note_located();
    }

    /// Recomputes [`Cache::located`]; wakes its watchers only if it moved.
    pub fn note_located(&self) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for entry in self.read().sensors.values() {
            let m = &entry.meta;
            if let (Some(lon), Some(lat), Some(district)) = (m.lon, m.lat, &m.district) {
                (&m.id, district, lon.to_bits(), lat.to_bits(), m.status == SensorStatus::Retired).hash(&mut hasher);
            }
        }
        let fingerprint = hasher.finish();
        self.located.send_if_modified(|old| std::mem::replace(old, fingerprint) != fingerprint);
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    pub fn is_built(&self) -> bool {
        self.built.load(Ordering::SeqCst)
    }

    /// Counts readings that came through the change stream (overview figures).
    pub fn note_readings(&self, count: u64, newest: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        let second = now.timestamp();
        let mut rate = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        match rate.back_mut() {
            Some((s, n)) if *s == second => *n += count,
            _ => rate.push_back((second, count)),
        }
        while rate.front().is_some_and(|(s, _)| *s <= second - 60) {
            rate.pop_front();
        }
        drop(rate);
        if let Some(newest) = newest {
            let mut last = self.last_reading_at.lock().unwrap_or_else(|e| e.into_inner());
            *last = (*last).max(Some(newest));
        }
    }

    /// Readings received in the last 60 s, and the newest reading's time.
    pub fn ingest_figures(&self, now: DateTime<Utc>) -> (u64, Option<DateTime<Utc>>) {
        let rate = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        let count = rate.iter().filter(|(s, _)| *s > now.timestamp() - 60).map(|(_, n)| n).sum();
        (count, *self.last_reading_at.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_last_reading_at(&self, at: Option<DateTime<Utc>>) {
        *self.last_reading_at.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_registry_refresh_that_finds_nothing_new_changes_nothing() {
        let meta = |id: &str, district: &str| SensorMeta {
            district: Some(district.into()),
            status: SensorStatus::Active,
            ..SensorMeta::placeholder(id, Kind::WaterLevel)
        };
        let cache = Cache::new(chrono_tz::Asia::Taipei, 3.0, 1.0);
        let metas = vec![meta("kh-wl-0001", "Sanmin"), meta("kh-wl-0002", "Gushan")];
        cache.update(|d| d.set_registry(metas.clone()));
        let version = cache.version();
        assert!(!cache.read().registry_differs(&metas));
        assert!(!cache.update_if(|d| d.registry_differs(&metas)));
        assert_eq!(cache.version(), version, "an unchanged registry leaves the summaries alone");
        assert!(cache.read().registry_differs(&[meta("kh-wl-0001", "Sanmin"), meta("kh-wl-0002", "Lingya")]));
        assert!(cache.read().registry_differs(&metas[..1]), "a sensor removed");
    }

    #[test]
    fn energy_today_starts_from_the_last_reading_before_midnight() {
        let tz = chrono_tz::Asia::Taipei;
        let local = |d: u32, h: u32, m: u32| tz.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap().with_timezone(&Utc);
        let now = local(30, 6, 0);
        let mut lamp = Entry::new(Arc::new(SensorMeta::placeholder("kh-sl-000001", Kind::Streetlight)));
        lamp.note_meter(local(29, 23, 50), 100.0, now, tz);
        lamp.note_meter(local(30, 0, 10), 100.2, now, tz);
        lamp.note_meter(local(30, 6, 0), 101.0, now, tz);
        assert!((lamp.energy_today(now, tz).unwrap() - 1.0).abs() < 1e-9, "00:00-00:10 counts too");
        // A late reading from before midnight is the better baseline.
        lamp.note_meter(local(29, 23, 55), 100.1, now, tz);
        assert!((lamp.energy_today(now, tz).unwrap() - 0.9).abs() < 1e-9);

        // First heard today, readings out of order: the day's smallest.
        let mut new = Entry::new(Arc::new(SensorMeta::placeholder("kh-sl-000002", Kind::Streetlight)));
        new.note_meter(local(30, 5, 0), 5.0, now, tz);
        new.note_meter(local(30, 6, 0), 5.5, now, tz);
        new.note_meter(local(30, 1, 0), 4.8, now, tz);
        assert!((new.energy_today(now, tz).unwrap() - 0.7).abs() < 1e-9);

        // The day rolls over: yesterday's newest reading becomes the baseline.
        let tomorrow = local(30, 0, 30) + Duration::days(1);
        assert_eq!(new.energy_today(tomorrow, tz), None, "not heard since midnight");
        new.note_meter(local(30, 0, 20) + Duration::days(1), 5.9, tomorrow, tz);
        assert!((new.energy_today(tomorrow, tz).unwrap() - 0.4).abs() < 1e-9);
    }
}
