// The map legend: what each colour means, per kind.

import * as L from "leaflet";

import { AQI_COLOURS, GREY } from "./classify";
import { el } from "./dom";
import type { Lang } from "./i18n";

type Entry = [string, string, string]; // colour, en, zh-TW

const GROUPS: { en: string; zh: string; entries: Entry[] }[] = [
  {
    en: "River",
    zh: "河川",
    entries: [
      ["#3fa7ff", "normal", "正常"],
      ["#ffd60a", "warning 3", "三級警戒"],
      ["#ff8c1a", "warning 2", "二級警戒"],
      ["#ff2d2d", "warning 1", "一級警戒"],
    ],
  },
  {
    en: "Road flooding",
    zh: "道路淹水",
    entries: [
      ["#2f9e6e", "dry", "無積水"],
      ["#ffd60a", "wet", "積水"],
      ["#ff8c1a", "alert", "注意"],
      ["#ff2d2d", "severe", "嚴重"],
    ],
  },
  {
    en: "Rain (1 h)",
    zh: "雨量",
    entries: [
      ["#2d5f86", "none", "無雨"],
      ["#70c3ff", "light–moderate", "小雨至中雨"],
      ["#ffd60a", "heavy", "大雨"],
      ["#ff2d2d", "torrential", "大豪雨"],
    ],
  },
  {
    en: "Air (AQI)",
    zh: "空氣品質",
    entries: [
      [AQI_COLOURS.good, "good", "良好"],
      [AQI_COLOURS.moderate, "moderate", "普通"],
      [AQI_COLOURS.unhealthy_sensitive, "sensitive", "敏感族群"],
      [AQI_COLOURS.unhealthy, "unhealthy", "不健康"],
    ],
  },
  {
    en: "Streetlights",
    zh: "路燈",
    entries: [
      ["#ffd36b", "on", "亮"],
      ["#41536a", "off", "關"],
      ["#ff3fa4", "fault", "故障"],
    ],
  },
];

export class Legend {
  private box: HTMLElement | null = null;

  constructor(map: L.Map, private lang: Lang) {
    const control = new L.Control({ position: "bottomleft" });
    control.onAdd = () => {
      this.box = L.DomUtil.create("div", "legend");
      L.DomEvent.disableClickPropagation(this.box);
      this.render();
      return this.box;
    };
    control.addTo(map);
  }

  setLang(lang: Lang): void {
    this.lang = lang;
    this.render();
  }

  private render(): void {
    if (!this.box) return;
    const zh = this.lang === "zh-TW";
    const groups = GROUPS.map((g) =>
      el(
        "div",
        { class: "legend-group" },
        el("div", { class: "legend-title" }, zh ? g.zh : g.en),
        ...g.entries.map(([colour, en, zhText]) => swatch(colour, zh ? zhText : en)),
      ),
    );
    groups.push(el("div", { class: "legend-group" }, swatch(GREY, zh ? "暫無資料" : "no recent data")));
    this.box.replaceChildren(...groups);
  }
}

function swatch(colour: string, text: string): HTMLElement {
  const dot = el("span", { class: "dot" });
  dot.style.background = colour;
  return el("div", { class: "legend-row" }, dot, text);
}
