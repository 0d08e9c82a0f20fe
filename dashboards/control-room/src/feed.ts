// The live list: notable sensor changes and alert events, newest first.

import { figure, levelText } from "./describe";
import { cityTime, el } from "./dom";
import type { Change, SensorView } from "./sensors";
import type { AlertEvent } from "./types";

const MAX_ITEMS = 80;

export interface FeedItem {
  at: Date;
  tone: string;
  title: string;
  detail: string;
  sensorId: string | null;
}

export class Feed {
  readonly items: FeedItem[] = [];

  constructor(
    private readonly list: HTMLElement,
    private readonly onSensor: (id: string) => void,
  ) {}

  change(change: Change): void {
    const { sensor, before } = change;
    const moved = before.level !== sensor.level ? `${levelText(before.level)} → ${levelText(sensor.level)}` : `${before.state} → ${sensor.state}`;
    this.add({
      at: new Date(change.reading.ts),
      tone: toneOf(sensor.state, sensor.level),
      title: `${sensor.name ?? sensor.id}`,
      detail: `${figure(sensor)} · ${moved}`,
      sensorId: sensor.id,
    });
  }

  /** A sensor already in a notable state when the page opened. */
  current(sensor: SensorView): void {
    this.add({
      at: sensor.ts ? new Date(sensor.ts) : new Date(),
      tone: toneOf(sensor.state, sensor.level),
      title: sensor.name ?? sensor.id,
      detail: `${figure(sensor)} · ${levelText(sensor.level)} (at page load)`,
      sensorId: sensor.id,
    });
  }

  alert(alert: AlertEvent): void {
    const text = (key: string) => (typeof alert[key] === "string" || typeof alert[key] === "number" ? String(alert[key]) : null);
    const severity = (text("severity") ?? "info").toLowerCase();
    const headline = text("headline") ?? text("message") ?? text("title") ?? text("event") ?? JSON.stringify(alert).slice(0, 160);
    const where = [text("district"), text("sensor_id")].filter(Boolean).join(" · ");
    const when = text("ts") ?? text("time") ?? text("onset") ?? text("sent");
    const parsed = when ? new Date(when) : new Date();
    this.add({
      at: Number.isNaN(parsed.getTime()) ? new Date() : parsed,
      tone: `alert sev-${severity.replace(/[^a-z0-9_-]/g, "")}`,
      title: `⚠ ${headline}`,
      detail: [text("event"), severity, where].filter(Boolean).join(" · "),
      sensorId: text("sensor_id"),
    });
  }

  private add(item: FeedItem): void {
    this.items.unshift(item);
    if (this.items.length > MAX_ITEMS) this.items.pop();
    const row = el(
      "li",
      { class: `feed-item ${item.tone}` },
      el("span", { class: "feed-time" }, cityTime(item.at)),
      el("span", { class: "feed-title" }, item.title),
      el("span", { class: "feed-detail" }, item.detail),
    );
    if (item.sensorId) {
      const id = item.sensorId;
      row.classList.add("clickable");
      row.addEventListener("click", () => this.onSensor(id));
    }
    this.list.prepend(row);
    while (this.list.children.length > MAX_ITEMS) this.list.lastElementChild?.remove();
  }
}

function toneOf(state: string, level: string | null): string {
  if (state === "alerting" || level === "warning_1" || level === "severe" || level === "fault" || level === "hazardous" || level === "very_unhealthy")
    return "alarm";
  if (level === "warning_2" || level === "alert" || level === "high" || level === "unhealthy" || level === "torrential" || level === "extremely_torrential")
    return "warn";
  if (level === "warning_3" || level === "wet" || level === "unhealthy_sensitive" || level === "heavy" || level === "extremely_heavy") return "watch";
  if (state === "stale" || state === "no_data") return "quiet";
  return "calm";
}
