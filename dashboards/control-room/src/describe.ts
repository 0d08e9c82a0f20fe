// Operator-facing descriptions of sensors: exact figures with units.

import { ago, esc, num } from "./dom";
import type { SensorView } from "./sensors";
import type { Kind } from "./types";

const UNITS: Record<Kind, string> = {
  rainfall: "mm in 1 h",
  water_level: "m",
  flood_depth: "cm",
  air_quality: "AQI",
  streetlight: "W",
};

export function levelText(level: string | null): string {
  return level === null ? "no reading" : level.replace(/_/g, " ");
}

/** The primary figure with its unit, e.g. "2.41 m". */
export function figure(sensor: SensorView): string {
  if (sensor.value === null || sensor.value === undefined) return "–";
  return `${num(sensor.value, sensor.kind === "water_level" ? 2 : 1)} ${sensor.unit ?? UNITS[sensor.kind]}`;
}

export function sensorTooltip(sensor: SensorView): string {
  const name = esc(sensor.name ?? sensor.id);
  const zh = sensor.name_zh ? `<div class="tip-zh">${esc(sensor.name_zh)}</div>` : "";
  return (
    `<div class="tip-name">${name}</div>${zh}` +
    `<div class="tip-line"><b>${esc(figure(sensor))}</b> · ${esc(levelText(sensor.level))}</div>` +
    `<div class="tip-meta">${esc(sensor.id)} · ${esc(sensor.state)} · ${esc(ago(sensor.age_s))}</div>`
  );
}
