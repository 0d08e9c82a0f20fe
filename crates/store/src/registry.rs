//! The `sensors` table: loading the registry snapshot the normaliser uses,
//! importing registry files, and recording when sensors were last heard.

use chrono::{DateTime, Utc};
use citygauge_domain::registry::file::SensorRecord;
use citygauge_domain::registry::RegistryEntry;
use citygauge_domain::{Registry, SensorInfo};
use serde_json::Value;
use tokio_postgres::Client;

use crate::StoreError;

/// The columns a registry entry is read from.
const ENTRY_COLUMNS: &str =
    "id, kind, status, (installation->>'bucket_mm')::float8, (installation->>'valid_min')::float8,
    (installation->>'valid_max')::float8, dev_eui, device_profile, installation->'aliases'";

/// Loads every sensor the normaliser may need to know about.
pub async fn load(client: &Client) -> Result<Registry, StoreError> {
    let rows = client.query(&format!("SELECT {ENTRY_COLUMNS} FROM sensors"), &[]).await?;
    let mut registry = Registry::default();
    registry.apply(entries(rows), usize::MAX);
    Ok(registry)
}

/// The registry as ingest holds it, and the watermark to ask for changes
/// from ([`changes`]).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub registry: Registry,
    pub watermark: DateTime<Utc>,
}

/// Loads what ingest needs: every active and retired sensor (retired ones
/// so that their data is refused, not registered anew) and at most
/// `max_pending` pending ones, the oldest first.
pub async fn snapshot(client: &Client, max_pending: usize) -> Result<Snapshot, StoreError> {
    let watermark = watermark(client).await?;
    let limit = i64::try_from(max_pending).unwrap_or(i64::MAX);
    let rows = client
        .query(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM sensors WHERE status <> 'pending'
                 UNION ALL
                 (SELECT {ENTRY_COLUMNS} FROM sensors WHERE status = 'pending' ORDER BY created_at, id LIMIT $1)"
            ),
            &[&limit],
        )
        .await?;
    let mut registry = Registry::default();
    registry.apply(entries(rows), max_pending);
    Ok(Snapshot { registry, watermark })
}

/// Sensors added or changed since a watermark, and the next watermark.
#[derive(Debug, Clone)]
pub struct Changes {
    pub entries: Vec<RegistryEntry>,
    pub watermark: DateTime<Utc>,
}

/// The sensors whose `updated_at` is at or past `since` (a trigger moves it
/// on every change of a column the registry reads, schema v4).
pub async fn changes(client: &Client, since: DateTime<Utc>) -> Result<Changes, StoreError> {
    let watermark = watermark(client).await?;
    let rows = client.query(&format!("SELECT {ENTRY_COLUMNS} FROM sensors WHERE updated_at >= $1"), &[&since]).await?;
    Ok(Changes { entries: entries(rows), watermark })
}

/// Where the next [`changes`] must start so that no change is missed:
/// `updated_at` is its transaction's start time, so a change committed after
/// this moment has an `updated_at` no earlier than the oldest transaction
/// open now (or now). Taken before the rows are read; a minute earlier
/// still, for transactions of other roles, whose start this role may not be
/// allowed to see. Rows changed within it are read again, which is cheap.
async fn watermark(client: &Client) -> Result<DateTime<Utc>, StoreError> {
    let row = client
        .query_one(
            "SELECT least(now(), (SELECT min(xact_start) FROM pg_stat_activity
                                 WHERE datname = current_database() AND backend_type = 'client backend'))
                    - interval '1 minute'",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

fn entries(rows: Vec<tokio_postgres::Row>) -> Vec<RegistryEntry> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        // The table's CHECK constraints keep kind and status to known values.
        let (Ok(kind), Ok(status)) = (row.get::<_, &str>(1).parse(), row.get::<_, &str>(2).parse()) else { continue };
        // Other names a device sends under (SenML URNs, vendor ids): see
        // `Registry::lookup_name`.
        let listed: Option<Value> = row.get(8);
        let sensor = SensorInfo {
            id: row.get(0),
            kind,
            status,
            bucket_mm: row.get(3),
            valid_min: row.get(4),
            valid_max: row.get(5),
            dev_eui: row.get(6),
            device_profile: row.get(7),
        };
        out.push(RegistryEntry { sensor, aliases: citygauge_domain::registry::file::aliases_of(listed.as_ref()) });
    }
    out
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
            "INSERT INTO sensors (id, kind, subkind, name, district, location, installation, thresholds, status, dev_eui, device_profile, public)
             VALUES ($1, $2, $3, $4, $5,
                     CASE WHEN $6::float8 IS NULL THEN NULL ELSE ST_SetSRID(ST_MakePoint($6, $7), 4326) END,
                     $8, $9, $10, $11, $12, $13)
             ON CONFLICT (id) DO UPDATE SET
                 kind = EXCLUDED.kind, subkind = EXCLUDED.subkind, name = EXCLUDED.name, district = EXCLUDED.district,
                 location = EXCLUDED.location, installation = EXCLUDED.installation, thresholds = EXCLUDED.thresholds,
                 status = EXCLUDED.status, dev_eui = EXCLUDED.dev_eui, device_profile = EXCLUDED.device_profile,
                 public = EXCLUDED.public,
                 updated_at = now()
             RETURNING (xmax = 0)",
        )
        .await?;
    let mut report = ImportReport::default();
    let mut changed: Vec<&str> = Vec::with_capacity(records.len());
    let mut superseded: Vec<String> = Vec::new();
    // In id order, as every statement that locks many sensor rows takes
    // them (writers' registrations, last-seen updates), so none deadlock.
    let mut ordered: Vec<&SensorRecord> = records.iter().collect();
    ordered.sort_by(|a, b| a.id.cmp(&b.id));
    for r in ordered {
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
                    &r.public,
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
            // Rows are locked in id order, as every other writer of many
            // sensor rows does, so two of them never deadlock (a daemon's
            // last flush at shutdown met its own periodic one).
            "WITH due AS (
                 SELECT s.id, v.ts FROM sensors s JOIN unnest($1::text[], $2::timestamptz[]) AS v(id, ts) ON s.id = v.id
                  WHERE s.last_seen IS NULL OR s.last_seen < v.ts - $3::text::interval OR s.first_seen IS NULL
                  ORDER BY s.id
                    FOR NO KEY UPDATE OF s)
             UPDATE sensors s SET last_seen = greatest(s.last_seen, due.ts), first_seen = coalesce(s.first_seen, due.ts)
               FROM due
              WHERE s.id = due.id",
            &[&ids, &ts, &LAST_SEEN_PRECISION],
        )
        .await?)
}
