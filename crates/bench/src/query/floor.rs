//! The bare-SQL floor: the service's answers computed by PostgreSQL alone,
//! as pgbench scripts, from the raw tables and the registry (latest values
//! per sensor, state against the expected interval, level against the
//! thresholds, AQI from PM2.5/PM10, rain windows summed from the readings)
//! and built into the same JSON documents with `json_build_object`.
//!
//! Latest readings are found per sensor with an index probe (`LATERAL ...
//! ORDER BY ts DESC LIMIT 1` on the `(sensor_id, ts)` key) within the last
//! two days, so that only the newest day partitions are touched (see
//! [`latest`] for the access path per kind). Parallel query is off for the
//! database (`max_parallel_workers_per_gather = 0`): with two cores and many
//! concurrent clients, workers only add their start-up time.

use citygauge_domain::aqi;

/// Readings that count (the rollups' and the service's rule).
const USABLE: &str = "quality IN ('good', 'suspect')";

/// The per-sensor latest reading of `source` (a relation with the columns of
/// `sensors`), with the rain windows of rain gauges and, with `values`, each
/// reading's non-null values as a JSON object. One branch per kind, each
/// with the access path that measured fastest for it: an index probe per
/// sensor where sensors hold many rows in the window (water levels with
/// history, air stations every 10 minutes), one `DISTINCT ON` pass over the
/// window where they hold few (lamps, road sensors); rain gauges get a probe
/// for the latest reading and a range scan of their day for the windows.
fn latest(source: &str, values: bool) -> String {
    let v = |json: &str| if values { format!(", {json} AS vals") } else { String::new() };
    let vals = if values { ", l.vals" } else { "" };
    let nulls = "NULL::float8 AS r10m, NULL::float8 AS r1h, NULL::float8 AS r3h, NULL::float8 AS r24h";
    let no_lamp = "NULL::bool AS lamp_on, NULL::text AS fault, NULL::float8 AS pm25, NULL::float8 AS pm10, NULL::float8 AS energy_today";
    // Two days back, and no partition made ahead of time.
    let window = "ts > now() - interval '2 days' AND ts < now() + interval '1 day'";
    let sensor = |kind: &str, join: &str| {
        format!(
            "SELECT s.id, s.kind, s.subkind, s.name, s.installation->>'name_zh' AS name_zh, s.district, s.status,
         ST_X(s.location) AS lon, ST_Y(s.location) AS lat, s.thresholds,
         coalesce((s.installation->>'cadence_s')::int, 600) AS cadence_s,
         l.ts, l.quality, l.quality_reasons, l.v, l.r10m, l.r1h, l.r3h, l.r24h, l.lamp_on, l.fault, l.pm25, l.pm10,
         l.energy_today{vals}
    FROM {source} s LEFT JOIN {join} WHERE s.kind = '{kind}'"
        )
    };
    let probe = |select: &str, table: &str| {
        format!("LATERAL (SELECT {select} FROM {table} WHERE sensor_id = s.id AND {window} ORDER BY ts DESC LIMIT 1) l ON true")
    };
    let newest = |select: &str, table: &str| {
        format!(
            "(SELECT DISTINCT ON (sensor_id) sensor_id, {select} FROM {table} WHERE {window} ORDER BY sensor_id, ts DESC) l
           ON l.sensor_id = s.id"
        )
    };
    let branches = [
        sensor(
            "water_level",
            &probe(&format!("ts, quality, quality_reasons, level_m AS v, {nulls}, {no_lamp}{}", v("jsonb_build_object('level_m', level_m)")), "water_level"),
        ),
        sensor(
            "air_quality",
            &probe(
                &format!(
                    "ts, quality, quality_reasons, pm2_5_ugm3 AS v, {nulls}, NULL::bool AS lamp_on, NULL::text AS fault,
                     pm2_5_ugm3 AS pm25, pm10_ugm3 AS pm10, NULL::float8 AS energy_today{}",
                    v("jsonb_strip_nulls(jsonb_build_object('pm2_5_ugm3', pm2_5_ugm3, 'pm10_ugm3', pm10_ugm3, 'o3_ppb', o3_ppb, \
                       'no2_ppb', no2_ppb, 'co_ppm', co_ppm, 'so2_ppb', so2_ppb, 'temp_c', temp_c, 'rh_pct', rh_pct))")
                ),
                "air_quality",
            ),
        ),
        sensor(
            "flood_depth",
            &newest(&format!("ts, quality, quality_reasons, depth_cm AS v, {nulls}, {no_lamp}{}", v("jsonb_build_object('depth_cm', depth_cm)")), "flood_depth"),
        ),
        sensor(
            "streetlight",
            &format!(
                "(SELECT DISTINCT ON (sensor_id) sensor_id, ts, quality, quality_reasons, power_w AS v, {nulls}, lamp_on, fault,
                    NULL::float8 AS pm25, NULL::float8 AS pm10,
                    energy_kwh - min(energy_kwh) FILTER (
                        WHERE ts >= date_trunc('day', now() AT TIME ZONE 'Asia/Taipei') AT TIME ZONE 'Asia/Taipei')
                      OVER (PARTITION BY sensor_id) AS energy_today{}
               FROM streetlight WHERE {window}
              ORDER BY sensor_id, ts DESC) l ON l.sensor_id = s.id",
                v("jsonb_strip_nulls(jsonb_build_object('lamp_on', lamp_on, 'dim_pct', dim_pct, 'power_w', power_w, \
                   'energy_kwh', energy_kwh, 'voltage_v', voltage_v, 'current_a', current_a, 'fault', fault))")
            ),
        ),
        sensor(
            "rainfall",
            &format!(
                "LATERAL (SELECT r.ts, r.quality, r.quality_reasons, w.r1h AS v, w.r10m, w.r1h, w.r3h, w.r24h, {no_lamp}{}
                 FROM (SELECT * FROM rainfall WHERE sensor_id = s.id AND {window} ORDER BY ts DESC LIMIT 1) r
                CROSS JOIN LATERAL (
                      SELECT sum(x.rain_mm) FILTER (WHERE x.ts > now() - interval '10 minutes') AS r10m,
                             sum(x.rain_mm) FILTER (WHERE x.ts > now() - interval '1 hour') AS r1h,
                             sum(x.rain_mm) FILTER (WHERE x.ts > now() - interval '3 hours') AS r3h, sum(x.rain_mm) AS r24h
                        FROM rainfall x WHERE x.sensor_id = s.id AND x.ts > now() - interval '24 hours'
                         AND x.ts < now() + interval '1 day' AND x.{USABLE}) w) l ON true",
                v("jsonb_strip_nulls(jsonb_build_object('rain_mm', r.rain_mm, 'interval_s', r.interval_s))")
            ),
        ),
    ];
    format!(
        "latest AS (
  {branches}
),
classified AS (
  SELECT *, {state} AS state, {level} AS level
    FROM (SELECT *, {aqi} AS aqi FROM latest) a
)",
        branches = branches.join("\n  UNION ALL\n  "),
        state = STATE,
        level = level(),
        aqi = aqi(),
    )
}

const STATE: &str = "CASE WHEN status = 'pending' THEN 'pending' WHEN status = 'retired' THEN 'retired' \
     WHEN ts IS NULL THEN 'no_data' WHEN now() - ts > make_interval(secs => cadence_s * 3) THEN 'stale' ELSE 'ok' END";

fn level() -> String {
    let t = |key: &str| format!("(thresholds->>'{key}')::float8");
    format!(
        "CASE kind
  WHEN 'water_level' THEN CASE WHEN v IS NULL THEN NULL
    WHEN thresholds ? 'warning_3_m' THEN CASE WHEN v >= {w1} THEN 'warning_1' WHEN v >= {w2} THEN 'warning_2'
                                               WHEN v >= {w3} THEN 'warning_3' ELSE 'normal' END
    WHEN v > {high} THEN 'high' ELSE 'normal' END
  WHEN 'flood_depth' THEN CASE WHEN v IS NULL THEN NULL WHEN v >= {severe} THEN 'severe' WHEN v >= {alert} THEN 'alert'
                               WHEN v > 0 THEN 'wet' ELSE 'normal' END
  WHEN 'air_quality' THEN {category}
  WHEN 'streetlight' THEN CASE WHEN fault IS NOT NULL THEN 'fault' WHEN lamp_on THEN 'on' WHEN NOT lamp_on THEN 'off' END
  WHEN 'rainfall' THEN {rain_class}
END",
        w1 = t("warning_1_m"),
        w2 = t("warning_2_m"),
        w3 = t("warning_3_m"),
        high = t("high_m"),
        severe = t("severe_cm"),
        alert = t("alert_cm"),
        category = category("aqi"),
        rain_class = RAIN_CLASS,
    )
}

const RAIN_CLASS: &str = "CASE WHEN r24h IS NULL THEN NULL WHEN r24h >= 500 THEN 'extremely_torrential' \
     WHEN r24h >= 350 OR r3h >= 200 THEN 'torrential' WHEN r24h >= 200 OR r3h >= 100 THEN 'extremely_heavy' \
     WHEN r24h >= 80 OR r1h >= 40 THEN 'heavy' ELSE 'none' END";

fn category(aqi: &str) -> String {
    format!(
        "CASE WHEN {aqi} IS NULL THEN NULL WHEN {aqi} <= 50 THEN 'good' WHEN {aqi} <= 100 THEN 'moderate' \
         WHEN {aqi} <= 150 THEN 'unhealthy_sensitive' WHEN {aqi} <= 200 THEN 'unhealthy' \
         WHEN {aqi} <= 300 THEN 'very_unhealthy' ELSE 'hazardous' END"
    )
}

/// The AQI: the higher of the PM2.5 and PM10 sub-indices, each a linear
/// interpolation in its band of the truncated concentration.
fn aqi() -> String {
    let sub = |column: &str, bands: &[aqi::Band], decimals: u32| {
        let c = format!("trunc({column}::numeric, {decimals})");
        let arms: Vec<String> = bands
            .iter()
            .map(|(c_lo, c_hi, i_lo, i_hi)| {
                format!(
                    "WHEN {c} <= {c_hi} THEN round(({i_hi} - {i_lo})::numeric / ({c_hi} - {c_lo}) * (greatest({c}, {c_lo}) - {c_lo}) + {i_lo})"
                )
            })
            .collect();
        format!("CASE WHEN {column} IS NULL OR {column} < 0 THEN NULL {} ELSE 500 END", arms.join(" "))
    };
    format!("greatest({}, {})::int", sub("pm25", &aqi::PM2_5, 1), sub("pm10", &aqi::PM10, 0))
}

/// `/api/v1/overview`.
pub fn overview() -> String {
    let counts =
        |table: &str| format!("(SELECT count(*) FROM {table} WHERE ts > now() - interval '1 minute' AND ts <= now())");
    format!(
        "WITH {latest}
SELECT json_build_object(
  'as_of', now(),
  'sensors', json_build_object('total', (SELECT count(*) FROM classified),
     'by_state', (SELECT json_object_agg(state, n) FROM (SELECT state, count(*) AS n FROM classified GROUP BY state) s)),
  'rain', (SELECT json_build_object('max_1h_mm', max(r1h), 'max_1h_sensor', (array_agg(id ORDER BY r1h DESC NULLS LAST))[1],
       'max_24h_mm', max(r24h), 'max_24h_sensor', (array_agg(id ORDER BY r24h DESC NULLS LAST))[1],
       'class', {max_class}) FROM classified WHERE kind = 'rainfall'),
  'rivers', (SELECT json_build_object('stations', count(*), 'warning_3', count(*) FILTER (WHERE level = 'warning_3'),
       'warning_2', count(*) FILTER (WHERE level = 'warning_2'), 'warning_1', count(*) FILTER (WHERE level = 'warning_1'))
       FROM classified WHERE kind = 'water_level' AND subkind = 'river'),
  'roads', (SELECT json_build_object('sensors', count(*), 'wet', count(*) FILTER (WHERE level = 'wet'),
       'alert', count(*) FILTER (WHERE level = 'alert'), 'severe', count(*) FILTER (WHERE level = 'severe'))
       FROM classified WHERE kind = 'flood_depth'),
  'air', (SELECT json_build_object('aqi_max', max(aqi), 'worst_sensor', (array_agg(id ORDER BY aqi DESC NULLS LAST))[1],
       'category', {max_category}) FROM classified WHERE kind = 'air_quality'),
  'streetlights', (SELECT json_build_object('total', count(*), 'on', count(*) FILTER (WHERE level = 'on'),
       'off', count(*) FILTER (WHERE level = 'off'), 'faulty', count(*) FILTER (WHERE level = 'fault'))
       FROM classified WHERE kind = 'streetlight'),
  'ingest', json_build_object('readings_last_minute', {rf} + {wl} + {fd} + {aq} + {sl},
       'last_reading_at', (SELECT max(ts) FROM classified)));\n",
        latest = latest("sensors", false),
        max_category = category("max(aqi)"),
        max_class = max_class(),
        rf = counts("rainfall"),
        wl = counts("water_level"),
        fd = counts("flood_depth"),
        aq = counts("air_quality"),
        sl = counts("streetlight"),
    )
}

/// The worst rain class among `classified`'s rows (none for no gauge).
fn max_class() -> String {
    let classes = "ARRAY['none', 'heavy', 'extremely_heavy', 'torrential', 'extremely_torrential']";
    format!("coalesce(({classes})[max(array_position({classes}, level)) FILTER (WHERE kind = 'rainfall')], 'none')")
}

/// One `DistrictSummary` per row of `classified`'s districts.
fn district_summary() -> String {
    format!(
        "SELECT district, json_build_object(
  'district', district,
  'sensors', json_build_object('total', count(*), 'by_state', json_build_object(
      'ok', count(*) FILTER (WHERE state = 'ok'), 'stale', count(*) FILTER (WHERE state = 'stale'),
      'no_data', count(*) FILTER (WHERE state = 'no_data'), 'pending', count(*) FILTER (WHERE state = 'pending'),
      'retired', count(*) FILTER (WHERE state = 'retired'))),
  'rain', json_build_object(
      '10m', json_build_object('max_mm', max(r10m), 'max_sensor', (array_agg(id ORDER BY r10m DESC NULLS LAST) FILTER (WHERE kind = 'rainfall'))[1],
             'mean_mm', avg(r10m), 'gauges', count(*) FILTER (WHERE kind = 'rainfall'), 'gauges_reporting', count(r10m)),
      '1h', json_build_object('max_mm', max(r1h), 'max_sensor', (array_agg(id ORDER BY r1h DESC NULLS LAST) FILTER (WHERE kind = 'rainfall'))[1],
             'mean_mm', avg(r1h), 'gauges', count(*) FILTER (WHERE kind = 'rainfall'), 'gauges_reporting', count(r1h)),
      '3h', json_build_object('max_mm', max(r3h), 'max_sensor', (array_agg(id ORDER BY r3h DESC NULLS LAST) FILTER (WHERE kind = 'rainfall'))[1],
             'mean_mm', avg(r3h), 'gauges', count(*) FILTER (WHERE kind = 'rainfall'), 'gauges_reporting', count(r3h)),
      '24h', json_build_object('max_mm', max(r24h), 'max_sensor', (array_agg(id ORDER BY r24h DESC NULLS LAST) FILTER (WHERE kind = 'rainfall'))[1],
             'mean_mm', avg(r24h), 'gauges', count(*) FILTER (WHERE kind = 'rainfall'), 'gauges_reporting', count(r24h)),
      'class', {max_class}),
  'river', (array_agg(json_build_object('sensor_id', id, 'level_m', v,
              'fraction_of_warning', v / nullif((thresholds->>'warning_3_m')::float8, 0),
              'warning_level', CASE level WHEN 'warning_1' THEN 1 WHEN 'warning_2' THEN 2 WHEN 'warning_3' THEN 3 END)
            ORDER BY v / nullif((thresholds->>'warning_3_m')::float8, 0) DESC NULLS LAST)
            FILTER (WHERE kind = 'water_level' AND subkind = 'river' AND v IS NOT NULL AND state <> 'stale'))[1],
  'river_stale', count(*) FILTER (WHERE kind = 'water_level' AND subkind = 'river' AND state = 'stale'),
  'road_flooding', json_build_object('sensors', count(*) FILTER (WHERE kind = 'flood_depth'),
      'wet', count(*) FILTER (WHERE kind = 'flood_depth' AND v > 0 AND state <> 'stale'),
      'stale', count(*) FILTER (WHERE kind = 'flood_depth' AND state = 'stale'),
      'max_depth_cm', max(v) FILTER (WHERE kind = 'flood_depth' AND state <> 'stale'),
      'max_sensor', (array_agg(id ORDER BY v DESC NULLS LAST) FILTER (WHERE kind = 'flood_depth'))[1],
      'items', coalesce(json_agg(json_build_object('sensor_id', id, 'depth_cm', v, 'ts', ts) ORDER BY v DESC)
                        FILTER (WHERE kind = 'flood_depth' AND v > 0), '[]')),
  'air', json_build_object('aqi', max(aqi) FILTER (WHERE state <> 'stale'),
      'stale', count(*) FILTER (WHERE kind = 'air_quality' AND state = 'stale'), 'worst_sensor', (array_agg(id ORDER BY aqi DESC NULLS LAST) FILTER (WHERE kind = 'air_quality'))[1],
      'stations', count(*) FILTER (WHERE kind = 'air_quality')),
  'streetlights', json_build_object('total', count(*) FILTER (WHERE kind = 'streetlight'),
      'on', count(*) FILTER (WHERE level = 'on' AND state <> 'stale'),
      'off', count(*) FILTER (WHERE level = 'off' AND state <> 'stale'),
      'faulty', count(*) FILTER (WHERE level = 'fault' AND state <> 'stale'),
      'stale', count(*) FILTER (WHERE kind = 'streetlight' AND state = 'stale'),
      'no_data', count(*) FILTER (WHERE kind = 'streetlight' AND ts IS NULL),
      'energy_today_kwh', sum(energy_today) FILTER (WHERE kind = 'streetlight'))) AS summary
  FROM classified GROUP BY district",
        max_class = max_class()
    )
}

/// `/api/v1/districts`: every district's summary.
pub fn districts() -> String {
    format!(
        "WITH {latest}
SELECT json_build_object('as_of', now(), 'items', json_agg(summary ORDER BY district)) FROM ({summary}) d;\n",
        latest = latest("sensors", false),
        summary = district_summary()
    )
}

/// pgbench lines choosing one of `districts` per transaction, as `:d`.
fn pick_district(districts: &[String]) -> (String, String) {
    let names: Vec<String> = districts.iter().map(|d| format!("'{}'", d.replace('\'', "''"))).collect();
    (format!("\\set d random(1, {})\n", districts.len()), format!("(ARRAY[{}])[:d]", names.join(", ")))
}

/// `/api/v1/districts/{name}`, the name drawn at random per transaction.
pub fn district(districts: &[String]) -> String {
    let (set, name) = pick_district(districts);
    format!(
        "{set}WITH {latest}
SELECT summary FROM ({summary}) d;\n",
        latest = latest(&format!("(SELECT * FROM sensors WHERE district = {name})"), false),
        summary = district_summary()
    )
}

/// One sensor as the API's `Sensor` object (list items) or as map feature properties.
fn sensor_json(feature: bool) -> String {
    let latest = "CASE WHEN ts IS NULL THEN NULL ELSE json_build_object('ts', ts, 'age_s', extract(epoch FROM now() - ts)::bigint,
        'quality', quality, 'quality_reasons', coalesce(quality_reasons, '{}'), 'values', vals) END";
    if feature {
        "json_build_object('type', 'Feature', 'geometry', json_build_object('type', 'Point', 'coordinates', json_build_array(lon, lat)),
   'properties', json_build_object('id', id, 'kind', kind, 'subkind', subkind, 'name', name, 'name_zh', name_zh,
     'district', district, 'status', status, 'state', state, 'level', level, 'ts', ts,
     'age_s', extract(epoch FROM now() - ts)::bigint, 'quality', quality,
     'value', CASE kind WHEN 'air_quality' THEN aqi ELSE v END,
     'unit', CASE kind WHEN 'rainfall' THEN 'mm' WHEN 'water_level' THEN 'm' WHEN 'flood_depth' THEN 'cm'
                       WHEN 'air_quality' THEN 'aqi' ELSE 'W' END,
     'values', vals))"
            .to_string()
    } else {
        format!(
            "json_build_object('id', id, 'kind', kind, 'subkind', subkind, 'name', name, 'name_zh', name_zh, 'district', district,
   'status', status, 'lon', lon, 'lat', lat, 'thresholds', thresholds, 'expected_interval_s', cadence_s,
   'state', state, 'level', level, 'latest', {latest})"
        )
    }
}

/// `/api/v1/districts/{name}/sensors`: the first page (100, by id) with the district's total.
pub fn district_sensors(districts: &[String]) -> String {
    let (set, name) = pick_district(districts);
    format!(
        "{set}WITH {latest}
SELECT json_build_object('total', (SELECT count(*) FROM sensors WHERE district = {name}), 'limit', 100, 'offset', 0,
       'items', coalesce(json_agg({item} ORDER BY id), '[]')) FROM classified;\n",
        latest = latest(&format!("(SELECT * FROM sensors WHERE district = {name} ORDER BY id LIMIT 100)"), true),
        item = sensor_json(false),
    )
}

/// `/api/v1/map/sensors.geojson`: every sensor, uncompressed (PostgreSQL
/// does not compress what it sends).
pub fn map_layer() -> String {
    format!(
        "WITH {latest}
SELECT json_build_object('type', 'FeatureCollection', 'features', json_agg({feature} ORDER BY id)) FROM classified;\n",
        latest = latest("sensors", true),
        feature = sensor_json(true),
    )
}

/// One sensor's level over the last `days`, `step_s` buckets: averaged from
/// the raw readings, or from the rollup `source` (`1m`, `1h`, `1d`).
pub fn series(sensor: &str, days: u32, step_s: i64, source: Option<&str>) -> String {
    let sensor = sensor.replace('\'', "''");
    let (table, time, value, filter) = match source {
        None => ("water_level".to_string(), "ts", "avg(level_m)", USABLE),
        Some(level) => {
            (format!("water_level_{level}"), "bucket", "sum(level_m_sum) / nullif(sum(level_m_n), 0)", "n > 0")
        }
    };
    format!(
        "SELECT json_build_object('t', json_agg(extract(epoch FROM b)::bigint ORDER BY b), 'columns',
       json_build_object('level_m', json_agg(v ORDER BY b)))
  FROM (SELECT date_bin(make_interval(secs => {step_s}), {time}, to_timestamp(0)) AS b, {value} AS v
          FROM {table} WHERE sensor_id = '{sensor}' AND {time} >= now() - interval '{days} days' AND {time} < now() AND {filter}
         GROUP BY 1) x;\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_pick_a_district_per_transaction() {
        let names = vec!["Sanmin".to_string(), "O'Hara".to_string()];
        let script = district(&names);
        assert!(script.starts_with("\\set d random(1, 2)\n"), "{script}");
        assert!(script.contains("(ARRAY['Sanmin', 'O''Hara'])[:d]"), "{script}");
        // pgbench takes one statement per script, ended by a semicolon.
        for script in [overview(), districts(), district_sensors(&names), map_layer(), series("a", 1, 60, Some("1h"))] {
            assert_eq!(script.matches(';').count(), 1, "{script}");
        }
    }

    #[test]
    fn aqi_bands_interpolate_truncated_concentrations() {
        let sql = aqi();
        assert!(
            sql.contains("WHEN trunc(pm25::numeric, 1) <= 12.4 THEN round((50 - 0)::numeric / (12.4 - 0)"),
            "{sql}"
        );
        assert!(sql.contains("trunc(pm10::numeric, 0)"), "{sql}");
    }
}
