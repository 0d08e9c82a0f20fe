//! District outlines for the map: from the configured GeoJSON file, or
//! derived from where the registry's sensors are (at start, and again when
//! sensors are placed, moved or retired).
//!
//! Derivation (PostGIS): Voronoi cells around the sensors (thinned to one
//! point per ~200 m cell and district, so 200,000 streetlights cost no more
//! than a few thousand points), each cell given the district of the sensor in
//! it, unioned per district and clipped to the sensors' hull buffered by
//! about a kilometre. Borders then run halfway between neighbouring
//! districts' sensors: not the legal boundary, but a faithful picture of
//! which sensors belong together.

use std::path::Path;

use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::QueryError;

/// The thinned points, in a temporary table with a spatial index so that
/// matching each Voronoi cell to its point is an index probe, not a scan of
/// every point per cell.
const POINTS_SQL: &str = "
CREATE TEMP TABLE outline_pts ON COMMIT DROP AS
    SELECT DISTINCT ON (district, ST_SnapToGrid(location, 0.002)) district, location
      FROM sensors
     WHERE location IS NOT NULL AND district IS NOT NULL AND status <> 'retired';
CREATE INDEX ON outline_pts USING gist (location);
ANALYZE outline_pts";

const DERIVE_SQL: &str = "
WITH hull AS (
    SELECT ST_Buffer(ST_ConvexHull(ST_Collect(location)), 0.01) AS g FROM outline_pts
),
cells AS (
    SELECT (ST_Dump(ST_VoronoiPolygons(ST_Collect(location), 0.0, (SELECT g FROM hull)))).geom AS cell FROM outline_pts
),
owned AS (
    SELECT DISTINCT ON (c.cell) p.district, c.cell
      FROM cells c JOIN outline_pts p ON c.cell && p.location AND ST_Intersects(c.cell, p.location)
     ORDER BY c.cell, p.district
)
SELECT district,
       ST_AsGeoJSON(ST_SimplifyPreserveTopology(ST_Intersection(ST_Union(cell), (SELECT g FROM hull)), 0.0003), 5)::jsonb
  FROM owned
 GROUP BY district
 ORDER BY district";

/// Outlines derived from the registry, as a FeatureCollection (one
/// transaction; its longer statement timeout ends with it).
pub async fn derive(client: &mut Client) -> Result<Value, QueryError> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL statement_timeout = '120s'").await?;
    tx.batch_execute(POINTS_SQL).await?;
    let rows = tx.query(DERIVE_SQL, &[]).await?;
    tx.commit().await?;
    let features: Vec<Value> = rows
        .iter()
        .map(|row| {
            let district: String = row.get(0);
            let geometry: Value = row.get(1);
            json!({"type": "Feature", "id": district, "geometry": geometry, "properties": {"district": district}})
        })
        .collect();
    Ok(json!({"type": "FeatureCollection", "features": features}))
}

/// Outlines from a file: a FeatureCollection whose features carry a
/// `district` property (other properties are dropped).
pub fn from_file(path: &Path) -> Result<Value, QueryError> {
    let bad = |why: String| QueryError::Config(format!("--districts-file {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let features =
        value.get("features").and_then(Value::as_array).ok_or_else(|| bad("not a GeoJSON FeatureCollection".into()))?;
    let mut out = Vec::with_capacity(features.len());
    for (i, f) in features.iter().enumerate() {
        let district = f
            .pointer("/properties/district")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("feature {i} has no string property `district`")))?;
        let geometry = f.get("geometry").cloned().ok_or_else(|| bad(format!("feature {i} has no geometry")))?;
        out.push(
            json!({"type": "Feature", "id": district, "geometry": geometry, "properties": {"district": district}}),
        );
    }
    Ok(json!({"type": "FeatureCollection", "features": out}))
}
