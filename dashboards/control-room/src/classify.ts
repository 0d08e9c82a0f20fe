// How a sensor looks: colour by kind, state and level, and what its chart
// plots. Pure functions, no DOM.

import type { Kind, State } from "./types";

export const GREY = "#5d6675";
const RETIRED = "#353b45";

/** Taiwan AQI category colours (MOENV's scale). */
export const AQI_COLOURS: Record<string, string> = {
  good: "#00e400",
  moderate: "#ffff00",
  unhealthy_sensitive: "#ff7e00",
  unhealthy: "#ff0000",
  very_unhealthy: "#8f3f97",
  hazardous: "#7e0023",
};

const RIVER: Record<string, string> = {
  normal: "#3fa7ff",
  warning_3: "#ffd60a",
  warning_2: "#ff8c1a",
  warning_1: "#ff2d2d",
};

const FLOOD: Record<string, string> = {
  normal: "#2f9e6e",
  wet: "#ffd60a",
  alert: "#ff8c1a",
  severe: "#ff2d2d",
};

/** Rain classes of the CWA above "none". */
const RAIN_CLASS: Record<string, string> = {
  heavy: "#ffd60a",
  extremely_heavy: "#ff8c1a",
  torrential: "#ff2d2d",
  extremely_torrential: "#d14bff",
};

const LIGHT: Record<string, string> = { on: "#ffd36b", off: "#41536a", fault: "#ff3fa4" };

export interface Look {
  fill: string;
  stroke: string;
  radius: number;
  /** Drawn on top of calmer markers (alerting, warnings). */
  loud: boolean;
}

/** The colour of a sensor on the map. `value` is the kind's primary figure (rain: 1 h mm). */
export function colourOf(kind: Kind, subkind: string | null, state: State, level: string | null, value: number | null): string {
  if (state === "retired") return RETIRED;
  if (state === "stale" || state === "no_data" || state === "pending") return GREY;
  switch (kind) {
    case "water_level":
      if (subkind === "river") return RIVER[level ?? "normal"] ?? RIVER.normal;
      return level === "high" ? "#ff8c1a" : "#35c6c6";
    case "flood_depth":
      return FLOOD[level ?? "normal"] ?? FLOOD.normal;
    case "air_quality":
      return AQI_COLOURS[level ?? ""] ?? GREY;
    case "streetlight":
      return LIGHT[level ?? ""] ?? GREY;
    case "rainfall":
      if (level && RAIN_CLASS[level]) return RAIN_CLASS[level];
      return rainShade(value ?? 0);
  }
}

/** Below the CWA's heavy-rain class: darker to brighter blue by 1 h mm. */
function rainShade(mm1h: number): string {
  if (mm1h <= 0) return "#2d5f86";
  if (mm1h < 2.5) return "#4f9fd6";
  if (mm1h < 10) return "#70c3ff";
  return "#a8e1ff";
}

const LOUD_LEVELS = new Set([
  "warning_3", "warning_2", "warning_1", "high", "alert", "severe", "fault",
  "unhealthy", "very_unhealthy", "hazardous", "heavy", "extremely_heavy", "torrential", "extremely_torrential",
]);

export function isLoud(state: State, level: string | null): boolean {
  return state === "alerting" || (level !== null && LOUD_LEVELS.has(level) && state !== "stale" && state !== "no_data");
}

export function lookOf(kind: Kind, subkind: string | null, state: State, level: string | null, value: number | null): Look {
  const loud = isLoud(state, level);
  const base = kind === "streetlight" ? 2.5 : kind === "water_level" && subkind === "river" ? 7 : 5;
  return {
    fill: colourOf(kind, subkind, state, level, value),
    stroke: state === "alerting" ? "#ff2d2d" : state === "pending" ? "#c6a6ff" : "#0b0f14",
    radius: loud ? base + 2 : base,
    loud,
  };
}

/** What a sensor's chart plots, and how its buckets aggregate. */
export interface ChartSpec {
  columns: string[];
  agg: string;
  unit: string;
  bars: boolean;
}

export function chartSpec(kind: Kind): ChartSpec {
  switch (kind) {
    case "rainfall":
      return { columns: ["rain_mm"], agg: "sum", unit: "mm", bars: true };
    case "water_level":
      return { columns: ["level_m"], agg: "avg", unit: "m", bars: false };
    case "flood_depth":
      // Peaks matter for flooding: a bucket shows its deepest reading.
      return { columns: ["depth_cm"], agg: "max", unit: "cm", bars: false };
    case "air_quality":
      return { columns: ["pm2_5_ugm3", "pm10_ugm3"], agg: "avg", unit: "µg/m³", bars: false };
    case "streetlight":
      return { columns: ["power_w"], agg: "avg", unit: "W", bars: false };
  }
}

/** The kind's primary figure from a reading's values, when the reading alone tells it. */
export function primaryFromValues(kind: Kind, values: Record<string, unknown>): number | null {
  const pick = (key: string) => (typeof values[key] === "number" ? (values[key] as number) : null);
  switch (kind) {
    case "water_level":
      return pick("level_m");
    case "flood_depth":
      return pick("depth_cm");
    case "streetlight":
      return pick("power_w");
    default:
      // Rain's figure is a 1 h sum and air's an index: not in one reading.
      return null;
  }
}
