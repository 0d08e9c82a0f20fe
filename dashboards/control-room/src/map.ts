// The city map: district outlines and one canvas-drawn circle per sensor
// (canvas, not DOM markers, so ten thousand stay fast), a layer per kind.

import * as L from "leaflet";
import "leaflet/dist/leaflet.css";

import { lookOf } from "./classify";
import type { TileConfig } from "./config";
import type { SensorView } from "./sensors";
import type { DistrictFeature, FeatureCollection, Kind } from "./types";
import { KINDS } from "./types";

export interface MapOptions {
  tiles: TileConfig | null;
  /** Tooltip HTML for a sensor, computed when shown. */
  describe: (sensor: SensorView) => string;
  onSensor: (sensor: SensorView) => void;
  onDistrict: (name: string) => void;
  kindLabel: (kind: Kind) => string;
  /** The label drawn on a district (default: its name). */
  districtLabel?: (name: string) => string;
}

export class CityMap {
  readonly map: L.Map;
  private readonly renderer = L.canvas({ padding: 0.3, tolerance: 4 });
  private readonly groups = new Map<Kind, L.LayerGroup>();
  private readonly markers = new Map<string, L.CircleMarker>();
  private districts: L.GeoJSON | null = null;
  private selected: L.CircleMarker | null = null;
  private toggles: HTMLElement | null = null;

  constructor(
    container: HTMLElement,
    private readonly options: MapOptions,
  ) {
    this.map = L.map(container, {
      preferCanvas: true,
      renderer: this.renderer,
      zoomSnap: 0.25,
      attributionControl: Boolean(options.tiles?.attribution),
      worldCopyJump: false,
    }).setView([22.63, 120.31], 12);
    if (options.tiles) {
      L.tileLayer(options.tiles.url, { attribution: options.tiles.attribution, maxZoom: options.tiles.maxZoom }).addTo(this.map);
    }
    for (const kind of KINDS) this.groups.set(kind, L.layerGroup().addTo(this.map));
    this.addToggles();
  }

  setDistricts(collection: FeatureCollection<DistrictFeature>): void {
    this.districts?.remove();
    this.districts = L.geoJSON(collection as GeoJSON.FeatureCollection, {
      style: () => ({ color: "#4f7396", weight: 1.2, opacity: 0.9, fillColor: "#16324d", fillOpacity: 0.18 }),
      onEachFeature: (feature, layer) => {
        const name = (feature.properties as { district?: string })?.district ?? "";
        layer.bindTooltip(this.districtLabel(name), { permanent: true, direction: "center", className: "district-label", interactive: false });
        layer.on("click", () => this.options.onDistrict(name));
        layer.on("mouseover", () => (layer as L.Path).setStyle({ fillOpacity: 0.32 }));
        layer.on("mouseout", () => (layer as L.Path).setStyle({ fillOpacity: 0.18 }));
      },
    });
    this.districts.addTo(this.map);
    this.districts.bringToBack();
    this.fitCity();
  }

  /** Draws every sensor anew (initial load, or after the stream's `reset`). */
  setSensors(sensors: SensorView[]): void {
    for (const group of this.groups.values()) group.clearLayers();
    this.markers.clear();
    this.selected = null;
    // Calm markers first, loud ones drawn over them.
    const ordered = [...sensors].sort((a, b) => Number(this.look(a).loud) - Number(this.look(b).loud));
    for (const sensor of ordered) {
      const look = this.look(sensor);
      const marker = L.circleMarker([sensor.lat, sensor.lon], {
        renderer: this.renderer,
        radius: look.radius,
        fillColor: look.fill,
        fillOpacity: 0.95,
        color: look.stroke,
        weight: 1,
      });
      marker.bindTooltip(() => this.options.describe(sensor), { direction: "top", offset: [0, -4], className: "sensor-tip" });
      marker.on("click", () => {
        marker.closeTooltip();
        this.select(sensor.id);
        this.options.onSensor(sensor);
      });
      this.groups.get(sensor.kind)?.addLayer(marker);
      this.markers.set(sensor.id, marker);
    }
    if (!this.districts && sensors.length > 0) {
      this.map.fitBounds(L.latLngBounds(sensors.map((s) => [s.lat, s.lon] as [number, number])), { padding: [10, 10] });
    }
  }

  /** Recolours one sensor after a live update. */
  update(sensor: SensorView): void {
    const marker = this.markers.get(sensor.id);
    if (!marker) return;
    const look = this.look(sensor);
    marker.setStyle({ fillColor: look.fill, color: marker === this.selected ? "#ffffff" : look.stroke, weight: marker === this.selected ? 3 : 1 });
    marker.setRadius(look.radius);
    if (look.loud) marker.bringToFront();
    if (marker.isTooltipOpen()) marker.setTooltipContent(this.options.describe(sensor));
  }

  select(id: string | null): void {
    if (this.selected) this.selected.setStyle({ color: "#0b0f14", weight: 1 });
    this.selected = id ? (this.markers.get(id) ?? null) : null;
    this.selected?.setStyle({ color: "#ffffff", weight: 3 }).bringToFront();
  }

  markerCount(): number {
    return this.markers.size;
  }

  fillOf(id: string): string | null {
    return (this.markers.get(id)?.options.fillColor as string | undefined) ?? null;
  }

  /** The marker's position in page pixels (for the browser test's click). */
  pagePoint(id: string): { x: number; y: number } | null {
    const marker = this.markers.get(id);
    if (!marker) return null;
    const point = this.map.latLngToContainerPoint(marker.getLatLng());
    const box = this.map.getContainer().getBoundingClientRect();
    return { x: box.left + point.x, y: box.top + point.y };
  }

  focus(id: string, zoom = 16): void {
    const marker = this.markers.get(id);
    if (marker) this.map.setView(marker.getLatLng(), zoom, { animate: false });
  }

  fitCity(): void {
    const bounds = this.districts?.getBounds();
    if (bounds?.isValid()) this.map.fitBounds(bounds, { padding: [10, 10], animate: false });
  }

  /** Re-labels the layer toggles and districts (language switch). */
  relabel(): void {
    this.districts?.eachLayer((layer) => {
      const name = ((layer as L.GeoJSON).feature as GeoJSON.Feature | undefined)?.properties?.district;
      if (typeof name === "string") layer.setTooltipContent(this.districtLabel(name));
    });
    this.toggles?.querySelectorAll<HTMLElement>("[data-kind-label]").forEach((el) => {
      el.textContent = this.options.kindLabel(el.dataset.kindLabel as Kind);
    });
  }

  private districtLabel(name: string): string {
    return this.options.districtLabel?.(name) ?? name;
  }

  private look(sensor: SensorView) {
    return lookOf(sensor.kind, sensor.subkind, sensor.state, sensor.level, sensor.value);
  }

  private addToggles(): void {
    const control = new L.Control({ position: "topright" });
    control.onAdd = () => {
      const box = L.DomUtil.create("div", "layer-toggles");
      L.DomEvent.disableClickPropagation(box);
      for (const kind of KINDS) {
        const label = L.DomUtil.create("label", `toggle kind-${kind}`, box);
        const input = L.DomUtil.create("input", "", label) as HTMLInputElement;
        input.type = "checkbox";
        input.checked = true;
        input.dataset.kind = kind;
        const text = L.DomUtil.create("span", "", label);
        text.dataset.kindLabel = kind;
        text.textContent = this.options.kindLabel(kind);
        input.addEventListener("change", () => {
          const group = this.groups.get(kind)!;
          if (input.checked) group.addTo(this.map);
          else group.remove();
        });
      }
      this.toggles = box;
      return box;
    };
    control.addTo(this.map);
  }
}
