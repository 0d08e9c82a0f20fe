// `window.__citygauge`: what the page shows, for the browser test and for
// an operator's console. Read-only views of live state.

import type { CityMap } from "./map";
import type { SensorStore, SensorView } from "./sensors";
import type { StreamStats } from "./stream";

export interface DebugHandle {
  page: "control-room" | "public";
  ready: boolean;
  readings: number;
  alerts: number;
  markers(): number;
  sensor(id: string): SensorView | undefined;
  fill(id: string): string | null;
  point(id: string): { x: number; y: number } | null;
  /** Zooms the map onto a sensor. */
  focus(id: string): void;
  /** Shows the whole city again. */
  fitCity(): void;
  chartSensor(): string | null;
  chartPoints(): number;
  /** The chart's last loaded range (epoch seconds) and how many loads so far. */
  chartLoaded(): { from: number; to: number; loads: number } | null;
  feed(): string[];
  /** The alerts panel's rows, in order. */
  alertList?(): { id: number; state: string; rule: string; subject: string }[];
  stream(): StreamStats | null;
}

declare global {
  interface Window {
    __citygauge?: DebugHandle;
  }
}

export function expose(handle: DebugHandle): DebugHandle {
  window.__citygauge = handle;
  return handle;
}

/** The handle's views of the map and its sensors, the same on both pages. */
export function mapViews(
  map: CityMap,
  store: SensorStore,
): Pick<DebugHandle, "markers" | "sensor" | "fill" | "point" | "focus" | "fitCity"> {
  return {
    markers: () => map.markerCount(),
    sensor: (id) => store.get(id),
    fill: (id) => map.fillOf(id),
    point: (id) => map.pagePoint(id),
    focus: (id) => map.focus(id),
    fitCity: () => map.fitCity(),
  };
}
