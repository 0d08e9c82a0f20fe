// The alerts panel of the control room: active alerts, live (the list is
// loaded once, then each SSE `alert` event refetches the alert it names),
// most severe first; acknowledge and resolve with an operator token kept in
// localStorage; the selected alert's timeline, including why a hazard was
// suppressed; its sensor highlighted on the map.

import { api, ApiError } from "./api";
import { ago, cityTime, el } from "./dom";
import { ALERTS_UI, districtName, eventWords, initialLang, rememberLang, severityWords, t, type Lang } from "./i18n";
import type { Alert, AlertDetail, AlertEvent, AlertHistoryEvent } from "./types";

const TOKEN_KEY = "citygauge.operator_token";
const SEVERITY_RANK: Record<string, number> = { Extreme: 4, Severe: 3, Moderate: 2, Minor: 1, Unknown: 0 };

export interface AlertsPanelOptions {
  /** The alert's sensor, to highlight on the map (`null`: none). */
  onSelect: (sensorId: string | null) => void;
}

export class AlertsPanel {
  private readonly alerts = new Map<number, Alert>();
  private selected: number | null = null;
  private detail: AlertDetail | null = null;
  private resolving: number | null = null;
  private message = "";
  private lang: Lang = initialLang();
  /** Refetches in flight coalesce per alert. */
  private readonly pending = new Set<number>();

  constructor(
    private readonly box: HTMLElement,
    private readonly options: AlertsPanelOptions,
  ) {
    this.render();
  }

  /** The alert ids shown, in order (for the browser test). */
  shown(): { id: number; state: string; rule: string; subject: string }[] {
    return this.sorted().map((a) => ({ id: a.id, state: a.state, rule: a.rule, subject: a.subject }));
  }

  /** Loads the active alerts anew (start, the stream's `reset`). */
  async reload(): Promise<void> {
    const { items } = await api.activeAlerts();
    this.alerts.clear();
    for (const alert of items) this.alerts.set(alert.id, alert);
    if (this.selected !== null) await this.loadDetail(this.selected);
    this.render();
  }

  /** An SSE `alert` event: refetch the alert it names, or everything. */
  onEvent(event: AlertEvent): void {
    const id = typeof event.alert_id === "number" ? event.alert_id : null;
    if (id === null) {
      void this.reload().catch(() => {});
      return;
    }
    if (this.pending.has(id)) return;
    this.pending.add(id);
    api
      .alert(id)
      .then(
        (alert) => {
          this.upsert(alert);
          if (this.selected === id) this.detail = alert;
        },
        (error: Error) => {
          // Gone (or the API hiccuped): the list is the truth.
          if (error instanceof ApiError && error.status === 404) this.alerts.delete(id);
          else return this.reload();
        },
      )
      .catch(() => {})
      .finally(() => {
        this.pending.delete(id);
        this.render();
      });
  }

  private upsert(alert: Alert): void {
    if (alert.state === "resolved") this.alerts.delete(alert.id);
    else this.alerts.set(alert.id, alert);
  }

  private sorted(): Alert[] {
    return [...this.alerts.values()].sort(
      (a, b) =>
        (SEVERITY_RANK[b.severity] ?? 0) - (SEVERITY_RANK[a.severity] ?? 0) ||
        b.grade - a.grade ||
        b.raised_at.localeCompare(a.raised_at),
    );
  }

  private token(): string | null {
    return localStorage.getItem(TOKEN_KEY);
  }

  private async select(id: number | null): Promise<void> {
    this.selected = id;
    this.detail = null;
    this.options.onSelect(id === null ? null : (this.alerts.get(id)?.sensor_id ?? null));
    this.render();
    if (id !== null) {
      await this.loadDetail(id);
      this.render();
    }
  }

  private async loadDetail(id: number): Promise<void> {
    try {
      const detail = await api.alert(id);
      if (this.selected === id) this.detail = detail;
      this.upsert(detail);
    } catch (error) {
      this.message = (error as Error).message;
    }
  }

  private async act(id: number, action: (token: string) => Promise<Alert>): Promise<void> {
    const token = this.token();
    if (!token) {
      this.message = t(ALERTS_UI.signInFirst, this.lang);
      this.render();
      return;
    }
    try {
      this.upsert(await action(token));
      this.message = "";
      this.resolving = null;
      if (this.selected === id) await this.loadDetail(id);
    } catch (error) {
      const status = error instanceof ApiError ? error.status : 0;
      this.message = status === 401 || status === 403 ? t(ALERTS_UI.rejected, this.lang) : (error as Error).message;
    }
    this.render();
  }

  private render(): void {
    const L = this.lang;
    const alerts = this.sorted();
    const toggle = el("button", { class: "button small", type: "button", id: "alerts-lang" }, t(ALERTS_UI.language, L));
    toggle.addEventListener("click", () => {
      this.lang = this.lang === "en" ? "zh-TW" : "en";
      rememberLang(this.lang);
      this.render();
    });
    const list = el("ul", { id: "alert-list", class: "alert-list" });
    for (const alert of alerts) list.append(this.row(alert));
    if (alerts.length === 0) list.append(el("li", { class: "muted" }, t(ALERTS_UI.none, L)));
    const parts: HTMLElement[] = [
      el("h2", {}, `${t(ALERTS_UI.title, L)} `, el("span", { class: "muted", id: "alert-count" }, `(${alerts.length})`), " ", toggle),
      this.signIn(),
    ];
    if (this.message) parts.push(el("div", { class: "alert-message", id: "alert-message" }, this.message));
    parts.push(list);
    const timeline = this.timeline();
    if (timeline) parts.push(timeline);
    this.box.replaceChildren(...parts);
    this.box.dataset.alerts = String(alerts.length);
  }

  private signIn(): HTMLElement {
    const L = this.lang;
    if (this.token()) {
      const out = el("button", { class: "button small", type: "button", id: "operator-sign-out" }, t(ALERTS_UI.signOut, L));
      out.addEventListener("click", () => {
        localStorage.removeItem(TOKEN_KEY);
        this.render();
      });
      return el("div", { class: "operator", id: "operator" }, el("span", { class: "muted" }, t(ALERTS_UI.signedIn, L)), " ", out);
    }
    const input = el("input", { type: "password", id: "operator-token", placeholder: t(ALERTS_UI.token, L), autocomplete: "off" });
    const button = el("button", { class: "button small", type: "button", id: "operator-sign-in" }, t(ALERTS_UI.signIn, L));
    const save = () => {
      const value = input.value.trim();
      if (!value) return;
      localStorage.setItem(TOKEN_KEY, value);
      this.message = "";
      this.render();
    };
    button.addEventListener("click", save);
    input.addEventListener("keydown", (e) => e.key === "Enter" && save());
    return el("div", { class: "operator", id: "operator" }, input, " ", button);
  }

  private row(alert: Alert): HTMLElement {
    const L = this.lang;
    const headline = L === "zh-TW" ? alert.headline_zh : alert.headline_en;
    const since = (Date.now() - Date.parse(alert.raised_at)) / 1000;
    const facts = [
      alert.rule,
      alert.subject,
      alert.district ? districtName(alert.district, L) : null,
      `${t(ALERTS_UI.since, L)} ${cityTime(new Date(alert.raised_at))} (${ago(since)})`,
      alert.lead_time_s !== null ? `${t(ALERTS_UI.lead, L)} ${Math.round(alert.lead_time_s / 60)} min` : null,
    ].filter(Boolean);
    const state = alert.state === "acknowledged" ? ALERTS_UI.acknowledged : ALERTS_UI.open;
    const actions = el("div", { class: "alert-actions" });
    if (alert.state === "open") {
      const ack = el("button", { class: "button small ack", type: "button", "data-action": "acknowledge" }, t(ALERTS_UI.acknowledge, L));
      ack.addEventListener("click", (e) => {
        e.stopPropagation();
        void this.act(alert.id, (token) => api.acknowledge(alert.id, token));
      });
      actions.append(ack);
    }
    if (this.resolving === alert.id) {
      const reason = el("input", { type: "text", class: "resolve-reason", placeholder: t(ALERTS_UI.reason, L) });
      const submit = el("button", { class: "button small", type: "button", "data-action": "resolve-submit" }, t(ALERTS_UI.confirm, L));
      const cancel = el("button", { class: "button small", type: "button" }, t(ALERTS_UI.cancel, L));
      reason.addEventListener("click", (e) => e.stopPropagation());
      submit.addEventListener("click", (e) => {
        e.stopPropagation();
        const text = reason.value.trim();
        if (!text) return reason.focus();
        void this.act(alert.id, (token) => api.resolve(alert.id, token, text));
      });
      cancel.addEventListener("click", (e) => {
        e.stopPropagation();
        this.resolving = null;
        this.render();
      });
      actions.append(reason, submit, cancel);
    } else {
      const resolve = el("button", { class: "button small", type: "button", "data-action": "resolve" }, t(ALERTS_UI.resolve, L));
      resolve.addEventListener("click", (e) => {
        e.stopPropagation();
        this.resolving = alert.id;
        this.render();
      });
      actions.append(resolve);
    }
    const row = el(
      "li",
      {
        class: `alert-row severity-${alert.severity.toLowerCase()} state-${alert.state}${alert.id === this.selected ? " selected" : ""}`,
        "data-alert-id": String(alert.id),
        "data-state": alert.state,
      },
      el(
        "div",
        { class: "alert-head" },
        el("span", { class: `badge severity severity-${alert.severity.toLowerCase()}` }, t(severityWords(alert.severity), L)),
        el("span", { class: "badge level" }, alert.level),
        el("span", { class: "badge alert-state" }, t(state, L)),
      ),
      el("div", { class: "alert-headline" }, headline),
      el("div", { class: "muted alert-facts" }, facts.join(" · ")),
      actions,
    );
    row.addEventListener("click", () => void this.select(alert.id === this.selected ? null : alert.id));
    return row;
  }

  private timeline(): HTMLElement | null {
    const d = this.detail;
    if (this.selected === null || !d) return null;
    const L = this.lang;
    const items = [...d.events].sort((a, b) => a.at.localeCompare(b.at)).map((e) => this.event(e));
    return el(
      "div",
      { class: "alert-timeline", id: "alert-timeline", "data-alert-id": String(d.id) },
      el("h3", {}, `${t(ALERTS_UI.timeline, L)} #${d.id}`),
      el("ol", {}, ...items),
    );
  }

  private event(e: AlertHistoryEvent): HTMLElement {
    const L = this.lang;
    const suppressedBy = typeof e.details?.details === "object" && e.details?.details !== null
      ? (e.details.details as Record<string, unknown>).suppressed_by
      : e.details?.suppressed_by;
    const parts = [
      `${cityTime(new Date(e.at))} ${t(eventWords(e.kind), L)}`,
      e.level ? `${e.level}${e.grade !== null ? ` (${e.grade})` : ""}` : null,
      e.actor,
      e.note,
      typeof suppressedBy === "string" ? `${t(ALERTS_UI.suppressedBy, L)}${suppressedBy}` : null,
    ].filter(Boolean);
    return el("li", { class: `event event-${e.kind}`, "data-kind": e.kind }, parts.join(" · "));
  }
}
