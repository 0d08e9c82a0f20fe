// The query service's responses (Contract 3 of the API), as the page reads
// them. Fields the page does not use are left out; everything that may be
// absent or null is typed so.

export type Kind = "rainfall" | "water_level" | "flood_depth" | "air_quality" | "streetlight";

export const KINDS: readonly Kind[] = ["rainfall", "water_level", "flood_depth", "air_quality", "streetlight"];

export type State = "ok" | "stale" | "alerting" | "pending" | "retired" | "no_data";

export type Values = Record<string, number | boolean | string | null>;

/** What the map layer and `/api/v1/sensors/{id}` both say of a sensor. */
export interface SensorBase {
  id: string;
  kind: Kind;
  subkind: string | null;
  name: string | null;
  name_zh: string | null;
  district: string | null;
  status: string;
  state: State;
  level: string | null;
}

/** Properties of one feature of `/api/v1/map/sensors.geojson`. */
export interface SensorProps extends SensorBase {
  ts: string | null;
  age_s: number | null;
  quality: string | null;
  value: number | null;
  unit: string | null;
  values: Values | null;
}

export interface PointFeature<P> {
  type: "Feature";
  geometry: { type: "Point"; coordinates: [number, number] };
  properties: P;
}

export interface FeatureCollection<F> {
  type: "FeatureCollection";
  features: F[];
}

/** `/api/v1/districts.geojson` outlines: any polygon geometry. */
export interface DistrictFeature {
  type: "Feature";
  geometry: GeoJSON.Geometry;
  properties: { district: string };
}

/** `/api/v1/sensors/{id}` */
export interface Sensor extends SensorBase {
  lon: number;
  lat: number;
  thresholds: Record<string, number> | null;
  expected_interval_s: number | null;
  latest: {
    ts: string;
    age_s: number;
    quality: string;
    quality_reasons: string[];
    values: Values;
  } | null;
}

/** `/api/v1/sensors/{id}/series` */
export interface Series {
  sensor_id: string;
  kind: Kind;
  from: string;
  to: string;
  step_s: number | null;
  source: string;
  agg: string;
  t: number[];
  columns: Record<string, (number | null)[]>;
}

export interface ByState {
  [state: string]: number;
}

export interface RainWindow {
  max_mm: number | null;
  max_sensor: string | null;
  mean_mm: number | null;
  gauges: number;
  gauges_reporting: number;
}

/** `/api/v1/districts/{name}` */
export interface DistrictSummary {
  district: string;
  sensors: { total: number; by_state: ByState };
  rain: { "10m"?: RainWindow; "1h"?: RainWindow; "3h"?: RainWindow; "24h"?: RainWindow; class?: string | null };
  river: { sensor_id: string; level_m: number | null; fraction_of_warning: number | null; warning_level: number | null } | null;
  road_flooding: {
    sensors: number;
    wet: number;
    max_depth_cm: number | null;
    max_sensor: string | null;
    items: { sensor_id: string; depth_cm: number; ts: string }[];
  } | null;
  air: { aqi: number | null; category: string | null; worst_sensor: string | null; stations: number } | null;
  streetlights: { total: number; on: number; off: number; faulty: number; no_data: number; energy_today_kwh: number | null } | null;
}

/** `/api/v1/overview` */
export interface Overview {
  as_of: string;
  sensors: { total: number; by_state: ByState };
  rain: { max_1h_mm: number | null; max_1h_sensor: string | null; max_24h_mm: number | null; max_24h_sensor: string | null; class: string | null };
  rivers: { stations: number; warning_3: number; warning_2: number; warning_1: number };
  roads: { sensors: number; wet: number; alert: number; severe: number };
  air: { aqi_max: number | null; worst_sensor: string | null; category: string | null };
  streetlights: { total: number; on: number; off: number; faulty: number };
  ingest: { readings_last_minute: number; last_reading_at: string | null };
}

/** One element of an SSE `readings` event. */
export interface StreamReading {
  sensor_id: string;
  kind: Kind;
  district: string | null;
  ts: string;
  quality: string;
  values: Values;
  state: State;
  level: string | null;
}

/** An SSE `alert` event: whatever the alert engine sends; read defensively. */
export type AlertEvent = Record<string, unknown>;

/** One alert of `/api/v1/alerts` (the fields the panel reads). */
export interface Alert {
  id: number;
  rule: string;
  subject: string;
  class: string;
  state: "open" | "acknowledged" | "resolved";
  status: string;
  grade: number;
  level: string;
  severity: string;
  sensor_id: string | null;
  district: string | null;
  headline_en: string;
  headline_zh: string;
  raised_at: string;
  updated_at: string;
  acknowledged_at: string | null;
  acknowledged_by: string | null;
  ack_note: string | null;
  resolved_at: string | null;
  resolved_by: string | null;
  resolve_reason: string | null;
  lead_time_s: number | null;
  value: number | null;
  unit: string | null;
}

/** One event of an alert's timeline. */
export interface AlertHistoryEvent {
  id: number;
  at: string;
  kind: string;
  grade: number | null;
  level: string | null;
  actor: string;
  note: string | null;
  details: Record<string, unknown> | null;
}

/** `/api/v1/alerts/{id}` */
export interface AlertDetail extends Alert {
  events: AlertHistoryEvent[];
}
