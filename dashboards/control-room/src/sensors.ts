// The page's model of every sensor on the map: loaded from the GeoJSON
// layer, then kept current by the stream.

import { primaryFromValues } from "./classify";
import type { FeatureCollection, PointFeature, SensorProps, State, StreamReading } from "./types";

export interface SensorView extends SensorProps {
  lon: number;
  lat: number;
}

/** What a stream reading changed, for the live list. */
export interface Change {
  sensor: SensorView;
  before: { state: State; level: string | null };
  reading: StreamReading;
}

export class SensorStore {
  readonly byId = new Map<string, SensorView>();

  /** Replaces everything; `keep` filters (the public page drops pending/retired). */
  load(collection: FeatureCollection<PointFeature<SensorProps>>, keep: (s: SensorProps) => boolean = () => true): void {
    this.byId.clear();
    for (const feature of collection.features) {
      const p = feature.properties;
      if (!p || !feature.geometry || !keep(p)) continue;
      const [lon, lat] = feature.geometry.coordinates;
      this.byId.set(p.id, { ...p, lon, lat });
    }
  }

  /**
   * Takes states from a fresh copy of the layer (sensors go stale without
   * any reading to say so). Returns the sensors that changed, or null when
   * sensors came or went and the map must be redrawn whole.
   */
  refresh(collection: FeatureCollection<PointFeature<SensorProps>>, keep: (s: SensorProps) => boolean = () => true): SensorView[] | null {
    const changed: SensorView[] = [];
    let seen = 0;
    for (const feature of collection.features) {
      const p = feature.properties;
      if (!p || !feature.geometry || !keep(p)) continue;
      const sensor = this.byId.get(p.id);
      if (!sensor) return null;
      seen++;
      // The layer is rebuilt every few seconds: never go back behind the stream.
      if (sensor.ts && (!p.ts || Date.parse(p.ts) < Date.parse(sensor.ts))) continue;
      if (sensor.state !== p.state || sensor.level !== p.level || sensor.value !== p.value) changed.push(sensor);
      Object.assign(sensor, p);
    }
    return seen === this.byId.size ? changed : null;
  }

  /** Applies a reading newer than what is known; returns the change, or null if unknown or older. */
  apply(reading: StreamReading): Change | null {
    const sensor = this.byId.get(reading.sensor_id);
    if (!sensor) return null;
    if (sensor.ts && Date.parse(reading.ts) < Date.parse(sensor.ts)) return null;
    const before = { state: sensor.state, level: sensor.level };
    sensor.ts = reading.ts;
    sensor.age_s = 0;
    sensor.quality = reading.quality;
    sensor.state = reading.state;
    sensor.level = reading.level;
    sensor.values = { ...(sensor.values ?? {}), ...reading.values };
    const value = primaryFromValues(sensor.kind, reading.values);
    if (value !== null) sensor.value = value;
    return { sensor, before, reading };
  }

  all(): SensorView[] {
    return [...this.byId.values()];
  }

  get(id: string): SensorView | undefined {
    return this.byId.get(id);
  }
}

/** Whether a change belongs in the live list: its state or level moved. */
export function isNotable(change: Change): boolean {
  const { before, sensor } = change;
  // Thousands of lamps switch at dusk and dawn: only faults are news.
  if (sensor.kind === "streetlight") return sensor.level === "fault" && before.level !== "fault";
  return before.level !== sensor.level || before.state !== sensor.state;
}
