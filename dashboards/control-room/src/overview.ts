// The city overview bar of the control room (`/api/v1/overview`).

import { api } from "./api";
import { AQI_COLOURS } from "./classify";
import { ago, el, num } from "./dom";
import type { Overview } from "./types";

function tile(label: string, main: string, sub: string, tone = ""): HTMLElement {
  return el("div", { class: `tile ${tone}` }, el("div", { class: "tile-label" }, label), el("div", { class: "tile-main" }, main), el("div", { class: "tile-sub" }, sub));
}

export function renderOverview(box: HTMLElement, o: Overview): void {
  const s = o.sensors.by_state;
  const rivers = o.rivers.warning_1 ? "alarm" : o.rivers.warning_2 ? "warn" : o.rivers.warning_3 ? "watch" : "";
  const roads = o.roads.severe ? "alarm" : o.roads.alert ? "warn" : o.roads.wet ? "watch" : "";
  const rain = o.rain.class && o.rain.class !== "none" ? "warn" : "";
  const lastAge = o.ingest.last_reading_at ? (Date.now() - Date.parse(o.ingest.last_reading_at)) / 1000 : null;
  const air = tile("Air (worst AQI)", num(o.air.aqi_max, 0), (o.air.category ?? "no data").replace(/_/g, " "));
  const swatch = AQI_COLOURS[o.air.category ?? ""];
  if (swatch) air.style.setProperty("--swatch", swatch);
  box.replaceChildren(
    tile("Sensors", num(o.sensors.total, 0), `${s.ok ?? 0} ok · ${s.stale ?? 0} stale · ${s.no_data ?? 0} silent`, (s.alerting ?? 0) > 0 ? "alarm" : ""),
    tile("Rain, max 1 h", `${num(o.rain.max_1h_mm)} mm`, `24 h max ${num(o.rain.max_24h_mm)} mm${o.rain.max_1h_sensor ? ` · ${o.rain.max_1h_sensor}` : ""}`, rain),
    tile("Rivers", `${o.rivers.warning_3 + o.rivers.warning_2 + o.rivers.warning_1} / ${o.rivers.stations}`, `at warning: L1 ${o.rivers.warning_1} · L2 ${o.rivers.warning_2} · L3 ${o.rivers.warning_3}`, rivers),
    tile("Roads with water", `${o.roads.wet + o.roads.alert + o.roads.severe} / ${o.roads.sensors}`, `${o.roads.severe} severe · ${o.roads.alert} alert · ${o.roads.wet} wet`, roads),
    air,
    tile("Streetlights", `${num(o.streetlights.on, 0)} on`, `${o.streetlights.off} off · ${o.streetlights.faulty} faulty`, o.streetlights.faulty > 0 ? "watch" : ""),
    tile("Ingest", `${num(o.ingest.readings_last_minute, 0)}/min`, `last reading ${ago(lastAge)}`, lastAge !== null && lastAge > 900 ? "watch" : ""),
  );
}

/** Refreshes the bar now and every `everyMs` (the figures are cached server-side). */
export function keepOverview(box: HTMLElement, everyMs = 10_000): () => Promise<void> {
  const refresh = async () => {
    try {
      renderOverview(box, await api.overview());
      box.classList.remove("stale");
    } catch {
      box.classList.add("stale");
    }
  };
  void refresh();
  setInterval(() => void refresh(), everyMs);
  return refresh;
}
