// The citizens' map (public.html): the same sensors without pending or
// retired ones and without operator tools, in plain words (zh-TW / en).

import "./style.css";
import "./public.css";

import * as L from "leaflet";

import { api, untilLoaded } from "./api";
import { loadConfig } from "./config";
import { expose, mapViews } from "./debug";
import { byId, el, esc } from "./dom";
import { aqiWords, districtName, initialLang, KIND_NAMES, plainLabel, rememberLang, t, UI, type Bi, type Lang } from "./i18n";
import { Legend } from "./legend";
import { CityMap } from "./map";
import { SensorStore, type SensorView } from "./sensors";
import { openStream, type StreamStats } from "./stream";
import type { Overview, SensorProps, StreamReading } from "./types";

const shown = (s: SensorProps) => s.status !== "pending" && s.status !== "retired" && s.state !== "pending" && s.state !== "retired";

let lang: Lang = initialLang();

function sensorName(s: SensorView): string {
  return (lang === "zh-TW" ? s.name_zh : s.name) ?? s.name ?? s.id;
}

function label(s: SensorView): Bi {
  return plainLabel(s.kind, s.subkind, s.state, s.level, s.value, s.values);
}

function describe(s: SensorView): string {
  return `<div class="tip-name">${esc(t(label(s), lang))}</div><div class="tip-meta">${esc(sensorName(s))}</div>`;
}

function cityNow(o: Overview): HTMLElement[] {
  const zh = lang === "zh-TW";
  const rivers = o.rivers.warning_1 + o.rivers.warning_2 + o.rivers.warning_3;
  const roads = o.roads.wet + o.roads.alert + o.roads.severe;
  const air = aqiWords(o.air.category);
  return [
    el("div", { class: rivers ? "now warn" : "now" }, rivers ? (zh ? `${rivers} 處河川水位達警戒` : `${rivers} river gauges at a warning level`) : t(UI.riversCalm, lang)),
    el("div", { class: roads ? "now warn" : "now" }, roads ? (zh ? `${roads} 處道路積水` : `${roads} roads with water`) : t(UI.roadsDry, lang)),
    el("div", { class: "now" }, zh ? `空氣品質 最差處：${air["zh-TW"]}` : `Air quality, worst area: ${air.en}`),
  ];
}

async function main(): Promise<void> {
  const config = await loadConfig();
  const store = new SensorStore();
  let stream: StreamStats | null = null;
  let overview: Overview | null = null;

  // The open popup follows the language switch and live readings.
  let popup: { sensor: SensorView; popup: L.Popup } | null = null;
  const refreshPopup = () => {
    if (!popup?.popup.isOpen()) return;
    const s = popup.sensor;
    popup.popup.setContent(`<div class="popup-label">${esc(t(label(s), lang))}</div><div class="popup-name">${esc(sensorName(s))}</div>`);
  };
  const map = new CityMap(byId("map"), {
    tiles: config.tiles,
    describe,
    onSensor: (s) => {
      popup = { sensor: s, popup: L.popup({ className: "plain-popup" }).setLatLng([s.lat, s.lon]).openOn(map.map) };
      refreshPopup();
    },
    onDistrict: () => {},
    kindLabel: (kind) => t(KIND_NAMES[kind], lang),
    districtLabel: (name) => districtName(name, lang),
  });
  const legend = new Legend(map.map, lang);
  const now = byId("city-now");

  const render = () => {
    document.documentElement.lang = lang;
    document.title = t(UI.title, lang);
    byId("title").textContent = t(UI.title, lang);
    byId("hint").textContent = t(UI.clickHint, lang);
    document.querySelectorAll<HTMLButtonElement>("[data-lang]").forEach((b) => b.classList.toggle("active", b.dataset.lang === lang));
    map.relabel();
    legend.setLang(lang);
    if (overview) now.replaceChildren(...cityNow(overview));
    refreshPopup();
  };
  document.querySelectorAll<HTMLButtonElement>("[data-lang]").forEach((button) =>
    button.addEventListener("click", () => {
      lang = button.dataset.lang === "en" ? "en" : "zh-TW";
      rememberLang(lang);
      render();
    }),
  );

  const loadSensors = async () => {
    store.load(await api.sensorsGeojson(), shown);
    map.setSensors(store.all());
    document.body.dataset.sensors = String(map.markerCount());
  };
  const refreshOverview = async () => {
    overview = await api.overview().catch(() => overview);
    render();
  };
  expose({
    page: "public",
    ready: false,
    readings: 0,
    alerts: 0,
    ...mapViews(map, store),
    chartSensor: () => null,
    chartPoints: () => 0,
    chartLoaded: () => null,
    feed: () => [],
    stream: () => stream,
  });
  api.districtsGeojson().then((d) => map.setDistricts(d), () => {});
  // As in the control room: the stream first, its readings held until the map has loaded.
  let held: StreamReading[] | null = [];
  const applyReadings = (readings: StreamReading[]) => {
    for (const reading of readings) {
      const change = store.apply(reading);
      if (!change) continue;
      map.update(change.sensor);
      if (popup?.sensor === change.sensor) refreshPopup();
    }
  };
  const refreshSensors = async () => {
    const changed = store.refresh(await api.sensorsGeojson(), shown);
    if (changed === null) return loadSensors();
    changed.forEach((sensor) => map.update(sensor));
    if (popup && changed.includes(popup.sensor)) refreshPopup();
  };
  const live = byId("live");
  stream = openStream({
    readings: (readings) => (held ? held.push(...readings) : applyReadings(readings)),
    alert: () => {},
    reset: () => void loadSensors(),
    status: (connected) => {
      live.textContent = connected ? t(UI.live, lang) : t(UI.offline, lang);
      live.className = connected ? "live on" : "live off";
    },
  });
  await untilLoaded(loadSensors, (error) => (byId("hint").textContent = error.message));
  applyReadings(held);
  held = null;
  setTimeout(() => void refreshSensors().catch(() => {}), 3_000);
  setInterval(() => void refreshSensors().catch(() => {}), 60_000);
  void refreshOverview();
  setInterval(() => void refreshOverview(), 30_000);
  render();
  window.__citygauge!.ready = true;
}

main().catch((error: Error) => {
  byId("hint").textContent = error.message;
  console.error(error);
});
