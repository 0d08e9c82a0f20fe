//! The `sensors` table: loading the registry snapshot the normaliser uses,
//! importing registry files, and recording when sensors were last heard.

use chrono::{DateTime, Utc};
use citygauge_domain::registry::file::SensorRecord;
use citygauge_domain::{Registry, SensorInfo};
use serde_json::Value;
use tokio_postgres::Client;

use crate::StoreError;

/// Loads every sensor the normaliser may need to know about.
pub async fn load(client: &Client) -> Result<Registry, StoreError> {
    let rows = client
        .query(
            "SELECT id, kind, status, (installation->>'bucket_mm')::float8, (installation->>'valid_min')::float8,
                    (installation->>'valid_max')::float8, dev_eui, device_profile,
                    installation->'aliases'
               FROM sensors",
            &[],
        )
        .await?;
    let mut sensors = Vec::with_capacity(rows.len());
    let mut aliases: Vec<(String, String)> = Vec::new();
    for row in rows {
        // The table's CHECK constraints keep kind and status to known values.
        let (Ok(kind), Ok(status)) = (row.get::<_, &str>(1).parse(), row.get::<_, &str>(2).parse()) else { continue };
        // Other names a device sends under (SenML URNs, vendor ids): see
        // `Registry::lookup_name`.
        let id: String = row.get(0);
        let listed: Option<Value> = row.get(8);
        for alias in citygauge_domain::registry::file::aliases_of(listed.as_ref()) {
            aliases.push((alias, id.clone()));
        }
        sensors.push(SensorInfo {
            id,
            kind,
            status,
            bucket_mm: row.get(3),
            valid_min: row.get(4),
            valid_max: row.get(5),
            dev_eui: row.get(6),
            device_profile: row.get(7),
        });
    }
    let mut registry = Registry::new(sensors);
    for (alias, id) in aliases {
        registry.insert_alias(alias, id);
    }
    Ok(registry)
}

/// What an import changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub inserted: u64,
    pub updated: u64,
    /// Auto-registered pending sensors whose device EUI the file gave to a
    /// registered sensor; they are retired, their data stays under their id.
    pub superseded: u64,
}

/// Inserts or updates the records in one transaction: the file is the
/// operator's statement, so its values win.
pub async fn import(client: &mut Client, records: &[SensorRecord]) -> Result<ImportReport, StoreError> {
    let tx = client.transaction().await?;
    let supersede = tx
        .prepare(
            "UPDATE sensors SET dev_eui = NULL, status = 'retired', updated_at = now(),
                    installation = installation || jsonb_build_object('superseded_by', $2::text)
              WHERE dev_eui = $1 AND id <> $2 AND status = 'pending'
              RETURNING id",
        )
        .await?;
    let upsert = tx
        .prepare(
            "INSERT INTO sensors (id, kind, subkind, name, district, location, installation, thresholds, status, dev_eui, device_profile)
             VALUES ($1, $2, $3, $4, $5,
                     CASE WHEN $6::float8 IS NULL THEN NULL ELSE ST_SetSRID(ST_MakePoint($6, $7), 4326) END,
                     $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET
                 kind = EXCLUDED.kind, subkind = EXCLUDED.subkind, name = EXCLUDED.name, district = EXCLUDED.district,
                 location = EXCLUDED.location, installation = EXCLUDED.installation, thresholds = EXCLUDED.thresholds,
                 status = EXCLUDED.status, dev_eui = EXCLUDED.dev_eui, device_profile = EXCLUDED.device_profile,
                 updated_at = now()
             RETURNING (xmax = 0)",
        )
        .await?;
    let mut report = ImportReport::default();
    let mut changed: Vec<&str> = Vec::with_capacity(records.len());
    let mut superseded: Vec<String> = Vec::new();
    for r in records {
        if let Some(eui) = &r.dev_eui {
            let rows = tx.query(&supersede, &[eui, &r.id]).await?;
            report.superseded += rows.len() as u64;
            superseded.extend(rows.iter().map(|row| row.get::<_, String>(0)));
        }
        changed.push(&r.id);
        let (lon, lat) = (r.location.map(|l| l.0), r.location.map(|l| l.1));
        let installation = Value::Object(r.installation.clone());
        let thresholds = Value::Object(r.thresholds.clone());
        let row = tx
            .query_one(
                &upsert,
                &[
                    &r.id,
                    &r.kind.as_str(),
                    &r.subkind,
                    &r.name,
                    &r.district,
                    &lon,
                    &lat,
                    &installation,
                    &thresholds,
                    &r.status.as_str(),
                    &r.dev_eui,
                    &r.device_profile,
                ],
            )
            .await?;
        if row.get::<_, bool>(0) {
            report.inserted += 1;
        } else {
            report.updated += 1;
        }
    }
    if !records.is_empty() {
        changed.extend(superseded.iter().map(String::as_str));
        crate::writer::notify_sensors(&tx, &changed).await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// How far `last_seen` must move before its row is rewritten: rewriting every
/// sensor's row every few seconds would cost the database more than the
/// readings do (200,000 streetlights), and a minute is precise enough to tell
/// a silent sensor.
const LAST_SEEN_PRECISION: &str = "1 minute";

/// Records when sensors were heard (`first_seen` once, `last_seen` to a
/// minute's precision); informational, so written in bulk every few seconds
/// rather than in every batch's transaction.
pub async fn touch(client: &Client, seen: &[(String, DateTime<Utc>)]) -> Result<u64, StoreError> {
    if seen.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    let ts: Vec<DateTime<Utc>> = seen.iter().map(|(_, ts)| *ts).collect();
    Ok(client
        .execute(
            "UPDATE sensors s SET last_seen = greatest(s.last_seen, v.ts), first_seen = coalesce(s.first_seen, v.ts)
               FROM unnest($1::text[], $2::timestamptz[]) AS v(id, ts)
              WHERE s.id = v.id
                AND (s.last_seen IS NULL OR s.last_seen < v.ts - $3::text::interval OR s.first_seen IS NULL)",
            &[&ids, &ts, &LAST_SEEN_PRECISION],
        )
        .await?)
}
