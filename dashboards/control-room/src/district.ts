// The district panel of the control room (`/api/v1/districts/{name}`).

import { el, num } from "./dom";
import { riverWords } from "./i18n";
import type { DistrictSummary } from "./types";

function row(label: string, value: string, tone = ""): HTMLElement {
  return el("div", { class: `kv ${tone}` }, el("span", { class: "k" }, label), el("span", { class: "v" }, value));
}

export function renderDistrict(box: HTMLElement, d: DistrictSummary, onSensor: (id: string) => void): void {
  const s = d.sensors.by_state;
  const rain = (w: string) => {
    const r = d.rain[w as keyof DistrictSummary["rain"]];
    if (!r || typeof r !== "object") return "–";
    return `max ${num(r.max_mm)} mm · mean ${num(r.mean_mm)} mm (${r.gauges_reporting}/${r.gauges})`;
  };
  const river = d.river
    ? `${num(d.river.level_m, 2)} m · ${num((d.river.fraction_of_warning ?? 0) * 100, 0)}% of warning 3 · ${d.river.warning_level ? riverWords(`warning_${d.river.warning_level}`).en : "normal"}`
    : "no river gauge";
  const rf = d.road_flooding;
  const lights = d.streetlights;
  const wet = (rf?.items ?? []).slice(0, 6).map((item) => {
    const link = el("li", { class: "clickable" }, `${item.sensor_id}: ${num(item.depth_cm)} cm`);
    link.addEventListener("click", () => onSensor(item.sensor_id));
    return link;
  });
  box.replaceChildren(
    el("h2", {}, d.district, el("span", { class: "muted" }, ` · ${d.sensors.total} sensors`)),
    row("States", `${s.ok ?? 0} ok · ${s.stale ?? 0} stale · ${s.no_data ?? 0} silent · ${s.alerting ?? 0} alerting`),
    row("Rain 10 min", rain("10m")),
    row("Rain 1 h", rain("1h"), d.rain.class && d.rain.class !== "none" ? "warn" : ""),
    row("Rain 3 h", rain("3h")),
    row("Rain 24 h", rain("24h")),
    row("Highest river", river, d.river?.warning_level ? "warn" : ""),
    row("Road flooding", rf ? `${rf.wet} of ${rf.sensors} wet · max ${num(rf.max_depth_cm)} cm` : "no road sensors", rf && rf.wet > 0 ? "watch" : ""),
    el("ul", { class: "wet-list" }, ...wet),
    row("Air", d.air ? `AQI ${num(d.air.aqi, 0)} · ${(d.air.category ?? "no data").replace(/_/g, " ")} · worst ${d.air.worst_sensor ?? "–"}` : "no station"),
    row(
      "Streetlights",
      lights ? `${lights.on} on · ${lights.off} off · ${lights.faulty} faulty · ${num(lights.energy_today_kwh, 0)} kWh today` : "none",
      lights && lights.faulty > 0 ? "watch" : "",
    ),
  );
}
