// The control room (index.html): map, overview bar, sensor and district
// panels, the live list; kept current by the stream without reloading.

import "./style.css";

import { AlertsPanel } from "./alerts";
import { api, untilLoaded } from "./api";
import { isLoud } from "./classify";
import { loadConfig } from "./config";
import { expose, mapViews } from "./debug";
import { renderDistrict } from "./district";
import { sensorTooltip } from "./describe";
import { byId, cityTime } from "./dom";
import { Feed } from "./feed";
import { KIND_NAMES } from "./i18n";
import { Legend } from "./legend";
import { CityMap } from "./map";
import { keepOverview } from "./overview";
import { SensorPanel } from "./panel";
import { isNotable, SensorStore } from "./sensors";
import { openStream, type StreamStats } from "./stream";
import type { StreamReading } from "./types";

async function main(): Promise<void> {
  const config = await loadConfig();
  const store = new SensorStore();
  const detail = byId("detail");
  const panel = new SensorPanel(detail);
  const feed = new Feed(byId("feed"), (id) => openSensor(id));
  let stream: StreamStats | null = null;

  const openSensor = (id: string) => {
    const sensor = store.get(id);
    if (!sensor) return;
    map.select(id);
    void panel.show(sensor);
  };
  const openDistrict = async (name: string) => {
    panel.close();
    map.select(null);
    try {
      renderDistrict(detail, await api.district(name), openSensor);
    } catch (error) {
      detail.textContent = `District ${name}: ${(error as Error).message}`;
    }
  };

  const map = new CityMap(byId("map"), {
    tiles: config.tiles,
    describe: sensorTooltip,
    onSensor: (sensor) => openSensor(sensor.id),
    onDistrict: (name) => void openDistrict(name),
    kindLabel: (kind) => KIND_NAMES[kind].en,
  });
  new Legend(map.map, "en");

  const loadSensors = async () => {
    store.load(await api.sensorsGeojson());
    map.setSensors(store.all());
    document.body.dataset.sensors = String(map.markerCount());
  };
  const refreshSensors = async () => {
    const changed = store.refresh(await api.sensorsGeojson());
    if (changed === null) await loadSensors();
    else changed.forEach((sensor) => map.update(sensor));
  };
  const refreshOverview = keepOverview(byId("overview"));
  const alerts = new AlertsPanel(byId("alerts"), {
    onSelect: (sensorId) => {
      map.select(sensorId);
      if (sensorId) map.focus(sensorId, 15);
    },
  });
  const debug = expose({
    page: "control-room",
    ready: false,
    readings: 0,
    alerts: 0,
    ...mapViews(map, store),
    chartSensor: () => panel.sensorId(),
    chartPoints: () => panel.points(),
    chartLoaded: () => panel.loaded(),
    feed: () => feed.items.map((i) => `${i.title} ${i.detail}`),
    alertList: () => alerts.shown(),
    stream: () => stream,
  });

  api.districtsGeojson().then(
    (districts) => map.setDistricts(districts),
    (error) => console.warn("no district outlines", error),
  );
  // The stream opens before the first load, its readings held until the
  // map has loaded, so nothing committed in between is missed (readings
  // older than what the load brought are ignored by the store).
  let held: StreamReading[] | null = [];
  const applyReadings = (readings: StreamReading[]) => {
    for (const reading of readings) {
      debug.readings++;
      const change = store.apply(reading);
      if (!change) continue;
      map.update(change.sensor);
      panel.push(reading);
      if (isNotable(change)) feed.change(change);
    }
  };
  const live = byId("live");
  stream = openStream({
    readings: (readings) => (held ? held.push(...readings) : applyReadings(readings)),
    alert: (alert) => {
      debug.alerts++;
      feed.alert(alert);
      alerts.onEvent(alert);
    },
    reset: () => {
      void alerts.reload().catch(() => {});
      void loadSensors();
      void refreshOverview();
    },
    status: (connected) => {
      live.textContent = connected ? "LIVE" : "reconnecting…";
      live.className = connected ? "live on" : "live off";
    },
  });

  await untilLoaded(loadSensors, (error) => (live.textContent = `waiting for the service: ${error.message}`));
  // After the stream opened, so an alert raised meanwhile is in one or the other.
  await untilLoaded(() => alerts.reload(), (error) => console.warn("alerts not loaded yet", error));
  // The list starts with what is notable now, newest on top.
  store
    .all()
    .filter((s) => isLoud(s.state, s.level))
    .sort((a, b) => (a.ts ?? "").localeCompare(b.ts ?? ""))
    .slice(-20)
    .forEach((s) => feed.current(s));
  applyReadings(held);
  held = null;
  // The service rebuilds the layer at most once a second; one more look
  // soon after start closes that gap, then a slow refresh catches sensors
  // going stale without a reading to say so.
  setTimeout(() => void refreshSensors().catch(() => {}), 3_000);
  setInterval(() => void refreshSensors().catch(() => {}), 60_000);
  const clock = byId("clock");
  const tick = () => (clock.textContent = `${cityTime(new Date())} Taipei`);
  tick();
  setInterval(tick, 1000);
  debug.ready = true;
}

main().catch((error: Error) => {
  byId("detail").textContent = `The control room could not start: ${error.message}`;
  console.error(error);
});
