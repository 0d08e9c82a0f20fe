// The sensor panel of the control room: who the sensor is, its latest
// reading, and its chart with range buttons and CSV export.

import { api } from "./api";
import { RANGES, SensorChart } from "./chart";
import { figure, levelText } from "./describe";
import { ago, el } from "./dom";
import type { SensorView } from "./sensors";
import type { StreamReading } from "./types";

export class SensorPanel {
  private chart: SensorChart | null = null;
  private sensor: SensorView | null = null;
  private summary: HTMLElement | null = null;

  constructor(private readonly box: HTMLElement) {}

  sensorId(): string | null {
    return this.sensor?.id ?? null;
  }

  points(): number {
    return this.chart?.points() ?? 0;
  }

  loaded(): { from: number; to: number; loads: number } | null {
    return this.chart?.loaded ?? null;
  }

  async show(sensor: SensorView): Promise<void> {
    this.close();
    this.sensor = sensor;
    this.summary = el("div", { class: "sensor-summary" });
    const info = el("div", { class: "chart-info muted" }, "loading…");
    const chartBox = el("div", { class: "chart", id: "chart" });
    const csv = el("a", { class: "button", href: "#", download: `${sensor.id}.csv` }, "CSV");
    const buttons = RANGES.map((range, i) => {
      const button = el("button", { class: i === 1 ? "button active" : "button", type: "button" }, range.label);
      button.addEventListener("click", () => {
        buttons.forEach((b) => b.classList.remove("active"));
        button.classList.add("active");
        void this.chart?.loadRecent(range.seconds);
      });
      return button;
    });
    csv.addEventListener("click", () => (csv.href = this.chart?.csvUrl() ?? "#"));
    this.box.replaceChildren(
      el("h2", {}, sensor.name ?? sensor.id),
      el("div", { class: "muted" }, [sensor.name_zh, sensor.id, sensor.kind + (sensor.subkind ? `/${sensor.subkind}` : ""), sensor.district].filter(Boolean).join(" · ")),
      this.summary,
      el("div", { class: "ranges" }, ...buttons, csv),
      chartBox,
      info,
      el("div", { class: "hint muted" }, "drag across the chart to zoom · double-click to go back"),
    );
    this.renderSummary();
    this.chart = new SensorChart(chartBox);
    this.chart.onLoad = (text) => (info.textContent = text);
    const registry = await api.sensor(sensor.id).catch(() => null);
    if (this.sensor !== sensor) return;
    await this.chart.show({ id: sensor.id, kind: sensor.kind, thresholds: registry?.thresholds ?? null });
  }

  push(reading: StreamReading): void {
    if (reading.sensor_id !== this.sensor?.id) return;
    this.renderSummary();
    this.chart?.push(reading);
  }

  close(): void {
    this.chart?.destroy();
    this.chart = null;
    this.sensor = null;
  }

  private renderSummary(): void {
    const s = this.sensor;
    if (!s || !this.summary) return;
    this.summary.replaceChildren(
      el("span", { class: "big" }, figure(s)),
      el("span", { class: `badge state-${s.state}` }, s.state.replace(/_/g, " ")),
      el("span", { class: "badge" }, levelText(s.level)),
      el("span", { class: "muted" }, s.ts ? `reading ${ago((Date.now() - Date.parse(s.ts)) / 1000)}` : "no reading yet"),
    );
  }
}
