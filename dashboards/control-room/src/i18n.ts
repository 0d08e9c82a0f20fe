// Plain-language labels for citizens, in Traditional Chinese (Taiwan) and
// English. Each label says what a person needs to know ("Flooded 12 cm",
// "River: warning level 2"), never a raw figure without meaning.

import type { Kind, State, Values } from "./types";

export type Lang = "zh-TW" | "en";

export interface Bi {
  "zh-TW": string;
  en: string;
}

const bi = (zh: string, en: string): Bi => ({ "zh-TW": zh, en });

export const KIND_NAMES: Record<Kind, Bi> = {
  rainfall: bi("雨量", "Rain"),
  water_level: bi("水位", "Water level"),
  flood_depth: bi("道路淹水", "Road flooding"),
  air_quality: bi("空氣品質", "Air quality"),
  streetlight: bi("路燈", "Streetlights"),
};

export const UI = {
  title: bi("高雄市 即時城市資訊", "Kaohsiung city now"),
  layers: bi("圖層", "Layers"),
  legend: bi("圖例", "Legend"),
  noData: bi("暫無資料", "No recent data"),
  updated: bi("更新時間", "Updated"),
  live: bi("即時", "Live"),
  offline: bi("連線中斷，重新連線中", "Connection lost, reconnecting"),
  rivers: bi("河川", "Rivers"),
  roads: bi("道路", "Roads"),
  air: bi("空氣", "Air"),
  riversCalm: bi("河川水位正常", "Rivers normal"),
  roadsDry: bi("道路無積水", "No road flooding"),
  clickHint: bi("點選地圖上的圓點查看說明", "Tap a dot on the map for details"),
};

/** The control room's alerts panel. */
export const ALERTS_UI = {
  title: bi("警戒中", "Active alerts"),
  none: bi("目前沒有警戒", "No active alerts"),
  token: bi("操作員權杖", "Operator token"),
  signIn: bi("登入", "Sign in"),
  signOut: bi("登出", "Sign out"),
  signedIn: bi("操作員已登入", "Operator signed in"),
  signInFirst: bi("請先以操作員權杖登入", "Sign in with an operator token first"),
  acknowledge: bi("確認", "Acknowledge"),
  resolve: bi("解除", "Resolve"),
  reason: bi("解除原因", "Reason for resolving"),
  confirm: bi("送出", "Submit"),
  cancel: bi("取消", "Cancel"),
  since: bi("發布", "since"),
  lead: bi("預估到達", "lead time"),
  timeline: bi("事件紀錄", "Timeline"),
  suppressedBy: bi("因感測器異常而抑制：", "suppressed, sensor suspect: "),
  rejected: bi("權杖無效或權限不足", "token rejected"),
  acknowledged: bi("已確認", "acknowledged"),
  open: bi("未確認", "open"),
  resolved: bi("已解除", "resolved"),
  language: bi("English", "中文"),
};

const SEVERITY: Record<string, Bi> = {
  Extreme: bi("極嚴重", "Extreme"),
  Severe: bi("嚴重", "Severe"),
  Moderate: bi("中度", "Moderate"),
  Minor: bi("輕微", "Minor"),
  Unknown: bi("未知", "Unknown"),
};

export function severityWords(severity: string): Bi {
  return SEVERITY[severity] ?? bi(severity, severity);
}

const EVENTS: Record<string, Bi> = {
  raised: bi("發布", "raised"),
  escalated: bi("升級", "escalated"),
  deescalated: bi("降級", "de-escalated"),
  updated: bi("更新", "updated"),
  acknowledged: bi("確認", "acknowledged"),
  resolved: bi("解除", "resolved"),
  notified: bi("已通知", "notified"),
  suppressed: bi("抑制", "suppressed"),
  note: bi("備註", "note"),
  silenced: bi("靜音", "silenced"),
};

export function eventWords(kind: string): Bi {
  return EVENTS[kind] ?? bi(kind, kind);
}

const AQI: Record<string, Bi> = {
  good: bi("良好", "good"),
  moderate: bi("普通", "moderate"),
  unhealthy_sensitive: bi("對敏感族群不健康", "unhealthy for sensitive groups"),
  unhealthy: bi("對所有族群不健康", "unhealthy"),
  very_unhealthy: bi("非常不健康", "very unhealthy"),
  hazardous: bi("危害", "hazardous"),
};

const RIVER: Record<string, Bi> = {
  normal: bi("正常", "normal"),
  warning_3: bi("三級警戒", "warning level 3"),
  warning_2: bi("二級警戒", "warning level 2"),
  warning_1: bi("一級警戒", "warning level 1"),
};

const RAIN: Record<string, Bi> = {
  heavy: bi("大雨", "heavy rain"),
  extremely_heavy: bi("豪雨", "extremely heavy rain"),
  torrential: bi("大豪雨", "torrential rain"),
  extremely_torrential: bi("超大豪雨", "extremely torrential rain"),
};

/** Kaohsiung's districts in Chinese; other names are shown as given. */
const DISTRICTS_ZH: Record<string, string> = {
  Daliao: "大寮區", Dashe: "大社區", Fengshan: "鳳山區", Gangshan: "岡山區", Gushan: "鼓山區", Lingya: "苓雅區",
  Linyuan: "林園區", Nanzi: "楠梓區", Niaosong: "鳥松區", Qianjin: "前金區", Qianzhen: "前鎮區", Qijin: "旗津區",
  Renwu: "仁武區", Sanmin: "三民區", Xiaogang: "小港區", Xinxing: "新興區", Yancheng: "鹽埕區", Zuoying: "左營區",
};

export function districtName(name: string, lang: Lang): string {
  return lang === "zh-TW" ? (DISTRICTS_ZH[name] ?? name) : name;
}

export function t(text: Bi, lang: Lang): string {
  return text[lang];
}

/** The one-line plain-language label of a sensor for citizens. */
export function plainLabel(
  kind: Kind,
  subkind: string | null,
  state: State,
  level: string | null,
  value: number | null,
  values: Values | null,
): Bi {
  const name = KIND_NAMES[kind];
  if (state === "stale" || state === "no_data" || level === null) {
    return bi(`${name["zh-TW"]} ${UI.noData["zh-TW"]}`, `${name.en}: ${UI.noData.en.toLowerCase()}`);
  }
  switch (kind) {
    case "flood_depth": {
      const cm = Math.round(value ?? numberIn(values, "depth_cm") ?? 0);
      if (cm <= 0 || level === "normal") return bi("道路無積水", "Road not flooded");
      return bi(`淹水 ${cm} 公分`, `Flooded ${cm} cm`);
    }
    case "water_level": {
      if (subkind === "river") {
        const l = RIVER[level] ?? RIVER.normal;
        return bi(`河川水位 ${l["zh-TW"]}`, `River: ${l.en}`);
      }
      const what = subkind === "sewer" ? bi("下水道水位", "Sewer") : bi("排水溝水位", "Drain");
      return level === "high"
        ? bi(`${what["zh-TW"]} 偏高`, `${what.en}: running high`)
        : bi(`${what["zh-TW"]} 正常`, `${what.en}: normal`);
    }
    case "air_quality": {
      const c = AQI[level] ?? bi("未知", "unknown");
      return bi(`空氣品質 ${c["zh-TW"]}`, `Air: ${c.en}`);
    }
    case "streetlight":
      if (level === "fault") return bi("路燈 故障", "Streetlight: out of order");
      return level === "on" ? bi("路燈 亮", "Streetlight: on") : bi("路燈 關", "Streetlight: off");
    case "rainfall": {
      if (RAIN[level]) return bi(`雨量 ${RAIN[level]["zh-TW"]}`, `Rain: ${RAIN[level].en}`);
      const mm = value ?? 0;
      if (mm <= 0) return bi("目前無雨", "No rain");
      if (mm < 2.5) return bi("小雨", "Light rain");
      return bi("中雨", "Moderate rain");
    }
  }
}

/** Plain words for an AQI category, for summaries. */
export function aqiWords(category: string | null): Bi {
  return (category && AQI[category]) || bi("未知", "unknown");
}

export function riverWords(level: string): Bi {
  return RIVER[level] ?? RIVER.normal;
}

function numberIn(values: Values | null, key: string): number | null {
  const v = values?.[key];
  return typeof v === "number" ? v : null;
}

const STORAGE_KEY = "citygauge.lang";

/** The language chosen before, else the browser's preference. */
export function initialLang(): Lang {
  const stored = localStorage.getItem(STORAGE_KEY);
  if (stored === "en" || stored === "zh-TW") return stored;
  return navigator.language.toLowerCase().startsWith("zh") ? "zh-TW" : "en";
}

export function rememberLang(lang: Lang): void {
  localStorage.setItem(STORAGE_KEY, lang);
}
