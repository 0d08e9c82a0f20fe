// One sensor's chart (uPlot). Dragging across it zooms: the page asks
// `/series` for the new range with as many points as the chart is wide, so
// the service answers from raw readings or the rollup the range needs.
// Double-click returns to the chosen range.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import { api } from "./api";
import { chartSpec, type ChartSpec } from "./classify";
import type { Kind, Series, StreamReading } from "./types";

export const RANGES: { label: string; seconds: number }[] = [
  { label: "6 h", seconds: 6 * 3600 },
  { label: "24 h", seconds: 24 * 3600 },
  { label: "7 d", seconds: 7 * 86400 },
  { label: "30 d", seconds: 30 * 86400 },
  { label: "1 y", seconds: 365 * 86400 },
];

const COLOURS = ["#4fc3ff", "#ffb84f", "#9dff7a", "#ff6bd6"];
const CITY_TZ = "Asia/Taipei";

export interface ChartTarget {
  id: string;
  kind: Kind;
  thresholds: Record<string, number> | null;
}

export class SensorChart {
  private plot: uPlot | null = null;
  private target: ChartTarget | null = null;
  private spec: ChartSpec | null = null;
  private rangeSeconds = RANGES[1].seconds;
  /** The shown range ends now, so live readings extend it. */
  private live = true;
  private stepS: number | null = null;
  private inflight: AbortController | null = null;
  private data: uPlot.AlignedData = [[]];
  /** The range of the last load, epoch seconds (the browser test reads it). */
  loaded: { from: number; to: number; loads: number } = { from: 0, to: 0, loads: 0 };
  /** Called after each load with what came back (source, step, points). */
  onLoad: (info: string) => void = () => {};

  private readonly resize = new ResizeObserver(() => this.plot?.setSize(this.size()));

  constructor(private readonly container: HTMLElement) {
    this.resize.observe(container);
  }

  /** Shows a sensor over the current range button's span, ending now. */
  show(target: ChartTarget): Promise<void> {
    this.target = target;
    this.spec = chartSpec(target.kind);
    this.build();
    return this.loadRecent(this.rangeSeconds);
  }

  loadRecent(seconds: number): Promise<void> {
    this.rangeSeconds = seconds;
    const to = new Date();
    return this.load(new Date(to.getTime() - seconds * 1000), to, true);
  }

  csvUrl(): string | null {
    if (!this.target || !this.spec) return null;
    const to = new Date();
    const from = new Date(to.getTime() - this.rangeSeconds * 1000);
    return api.seriesCsvUrl(this.target.id, { from, to, points: this.width(), agg: this.spec.agg, columns: this.spec.columns });
  }

  /** Non-null values currently plotted (the browser test reads it). */
  points(): number {
    let n = 0;
    for (let i = 1; i < this.data.length; i++) for (const v of this.data[i]) if (v !== null && v !== undefined) n++;
    return n;
  }

  /** Extends the live chart with a reading of its sensor (into the current bucket, if bucketed). */
  push(reading: StreamReading): void {
    if (!this.plot || !this.spec || !this.live || reading.sensor_id !== this.target?.id) return;
    const ts = Date.parse(reading.ts) / 1000;
    const t = this.stepS ? Math.floor(ts / this.stepS) * this.stepS : ts;
    const xs = this.data[0] as number[];
    const last = xs.length - 1;
    const values = this.spec.columns.map((c) => (typeof reading.values[c] === "number" ? (reading.values[c] as number) : null));
    if (last >= 0 && xs[last] === t) {
      values.forEach((v, i) => {
        if (v !== null) (this.data[i + 1] as (number | null)[])[last] = v;
      });
    } else if (last < 0 || t > xs[last]) {
      xs.push(t);
      values.forEach((v, i) => (this.data[i + 1] as (number | null)[]).push(v));
    } else {
      return;
    }
    this.plot.setData(this.data);
  }

  destroy(): void {
    this.resize.disconnect();
    this.inflight?.abort();
    this.plot?.destroy();
    this.plot = null;
    this.target = null;
  }

  private async load(from: Date, to: Date, live: boolean): Promise<void> {
    if (!this.target || !this.spec) return;
    this.inflight?.abort();
    const controller = new AbortController();
    this.inflight = controller;
    const id = this.target.id;
    const spec = this.spec;
    try {
      const series = await api.series(id, { from, to, points: this.width(), agg: spec.agg, columns: spec.columns }, controller.signal);
      if (controller.signal.aborted || this.target?.id !== id) return;
      this.live = live;
      this.loaded = { from: from.getTime() / 1000, to: to.getTime() / 1000, loads: this.loaded.loads + 1 };
      this.stepS = series.step_s;
      this.data = toAligned(series, spec.columns);
      this.plot?.setData(this.data, false);
      this.plot?.setScale("x", { min: from.getTime() / 1000, max: to.getTime() / 1000 });
      const step = series.step_s ? `${formatStep(series.step_s)} ${series.agg}` : "every reading";
      this.onLoad(`${series.source === "raw" ? "raw" : `rollup ${series.source}`} · ${step} · ${this.points()} values`);
    } catch (error) {
      if (!controller.signal.aborted) this.onLoad(`could not load: ${(error as Error).message}`);
    }
  }

  private build(): void {
    this.plot?.destroy();
    this.container.replaceChildren();
    const spec = this.spec!;
    const thresholds = thresholdLines(this.target!);
    const options: uPlot.Options = {
      ...this.size(),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), CITY_TZ),
      cursor: { drag: { x: true, y: false, setScale: false } },
      legend: { live: true },
      scales: {
        x: { time: true },
        // Keep the warning levels in view: how far below them matters.
        y: { range: (_u, min, max) => yRange(min, max, thresholds) },
      },
      axes: [
        { stroke: "#9fb3c8", grid: { stroke: "#1f2c3a" }, ticks: { stroke: "#2a3a4c" }, values: timeLabels },
        { stroke: "#9fb3c8", grid: { stroke: "#1f2c3a" }, ticks: { stroke: "#2a3a4c" }, label: spec.unit, size: 56 },
      ],
      series: [
        {},
        ...spec.columns.map((column, i) => ({
          label: columnLabel(column),
          stroke: COLOURS[i % COLOURS.length],
          width: 1.5,
          fill: i === 0 ? "rgba(79,195,255,0.12)" : undefined,
          spanGaps: false,
          paths: spec.bars ? uPlot.paths.bars!({ size: [0.8, 40] }) : undefined,
          points: { size: 4 },
        })),
      ],
      hooks: {
        setSelect: [(u) => this.zoomTo(u)],
        draw: [(u) => drawThresholds(u, thresholds)],
        ready: [(u) => u.over.addEventListener("dblclick", () => void this.loadRecent(this.rangeSeconds))],
      },
    };
    this.data = [[], ...spec.columns.map(() => [])];
    this.plot = new uPlot(options, this.data, this.container);
  }

  private zoomTo(u: uPlot): void {
    if (u.select.width < 5) return;
    const from = u.posToVal(u.select.left, "x");
    const to = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    void this.load(new Date(from * 1000), new Date(to * 1000), false);
  }

  private width(): number {
    return Math.max(100, this.container.clientWidth || 600);
  }

  private size(): { width: number; height: number } {
    return { width: this.width(), height: Math.max(160, (this.container.clientHeight || 240) - 40) };
  }
}

const DAY_FMT = new Intl.DateTimeFormat("en-GB", { timeZone: CITY_TZ, month: "numeric", day: "numeric" });
const TIME_FMT = new Intl.DateTimeFormat("en-GB", { timeZone: CITY_TZ, hour: "2-digit", minute: "2-digit", hour12: false });

/** Tick labels in the city's time, 24-hour: times within two days, dates beyond. */
function timeLabels(u: uPlot, splits: number[]): string[] {
  const min = u.scales.x.min ?? 0;
  const max = u.scales.x.max ?? 0;
  const format = max - min > 2 * 86400 ? DAY_FMT : TIME_FMT;
  return splits.map((ts) => format.format(new Date(ts * 1000)));
}

/** "pm2_5_ugm3" -> "PM2.5 (ug/m3)" style labels for the legend. */
function columnLabel(column: string): string {
  const known: Record<string, string> = {
    rain_mm: "rain (mm)",
    level_m: "level (m)",
    depth_cm: "depth (cm)",
    pm2_5_ugm3: "PM2.5 (µg/m³)",
    pm10_ugm3: "PM10 (µg/m³)",
    power_w: "power (W)",
  };
  return known[column] ?? column;
}

function toAligned(series: Series, columns: string[]): uPlot.AlignedData {
  return [series.t, ...columns.map((c) => series.columns[c] ?? series.t.map(() => null))];
}

function yRange(min: number | null, max: number | null, lines: Line[]): uPlot.Range.MinMax {
  const values = [min, max, ...lines.map((l) => l.value)].filter((v): v is number => v !== null && Number.isFinite(v));
  if (values.length === 0) return [0, 1];
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const pad = (hi - lo || Math.abs(hi) || 1) * 0.08;
  return [lo >= 0 && lo - pad < 0 ? 0 : lo - pad, hi + pad];
}

function formatStep(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

interface Line {
  value: number;
  colour: string;
  label: string;
}

/** Warning levels worth a line on the chart, from the registry's thresholds. */
function thresholdLines(target: ChartTarget): Line[] {
  const t = target.thresholds ?? {};
  const known: [string, string, string][] = [
    ["warning_3_m", "#ffd60a", "warning 3"],
    ["warning_2_m", "#ff8c1a", "warning 2"],
    ["warning_1_m", "#ff2d2d", "warning 1"],
    ["high_m", "#ff8c1a", "high"],
    ["alert_cm", "#ff8c1a", "alert"],
    ["severe_cm", "#ff2d2d", "severe"],
  ];
  return known.filter(([key]) => typeof t[key] === "number").map(([key, colour, label]) => ({ value: t[key], colour, label }));
}

function drawThresholds(u: uPlot, lines: Line[]): void {
  const ctx = u.ctx;
  const { left, width, top, height } = u.bbox;
  ctx.save();
  ctx.setLineDash([6, 4]);
  ctx.lineWidth = 1;
  ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
  for (const line of lines) {
    const y = u.valToPos(line.value, "y", true);
    if (y < top || y > top + height) continue;
    ctx.strokeStyle = line.colour;
    ctx.fillStyle = line.colour;
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(left + width, y);
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText(line.label, left + width - 4, y - 3);
  }
  ctx.restore();
}
