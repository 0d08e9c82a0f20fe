// Drives the control room's alerts panel in Debian's headless Chromium
// (playwright-core). Run by tests/control_room_alerts_browser.rs, which owns
// the services and the data; talks to it over stdout/stdin:
//
//   script -> "citygauge-browser: raise"      the page is live; make the alert happen now
//   rust   -> "published"                     the readings that cross the level are on the broker
//   script -> "citygauge-browser: alert <id>" the alert the evaluator raised, as the page shows it
//   script -> "citygauge-browser: ok ..."     a check passed
//   exit 0 when everything passed, 1 with the reason on stderr otherwise.
//
// Environment: CITYGAUGE_URL, CITYGAUGE_TOKEN (an operator token),
// CITYGAUGE_ARTIFACTS (screenshots), CITYGAUGE_CHROMIUM (default
// /usr/bin/chromium), CITYGAUGE_ALERT_RULE / CITYGAUGE_ALERT_SUBJECT (the
// alert to expect), CITYGAUGE_ALERT_LEVEL / CITYGAUGE_ALERT_SEVERITY (what
// its row must say), CITYGAUGE_LIVE_TIMEOUT_MS (how soon after the readings
// it must show, default 20000: ingest, the evaluator and the stream on a
// busy 2-core machine).

import { join } from "node:path";

import { env, openChromium, say } from "./launch.mjs";

const base = env("CITYGAUGE_URL").replace(/\/$/, "");
const token = env("CITYGAUGE_TOKEN");
const artifacts = env("CITYGAUGE_ARTIFACTS");
const rule = env("CITYGAUGE_ALERT_RULE");
const subject = env("CITYGAUGE_ALERT_SUBJECT");
const level = env("CITYGAUGE_ALERT_LEVEL");
const severity = env("CITYGAUGE_ALERT_SEVERITY");
const liveTimeout = Number(env("CITYGAUGE_LIVE_TIMEOUT_MS", "20000"));

const { page, live, nextLine, run } = await openChromium({ artifacts, failureShot: "alerts-failure.png" });

await run(async () => {
  await page.goto(`${base}/`, { waitUntil: "domcontentloaded" });
  // English labels whatever the profile says.
  await page.evaluate(() => localStorage.setItem("citygauge.lang", "en"));
  await page.reload({ waitUntil: "domcontentloaded" });
  await live(() => window.__citygauge?.ready && window.__citygauge.stream()?.connected);
  await page.evaluate(() => (window.__notReloaded = true));
  const before = await page.evaluate(() => window.__citygauge.alertList());
  if (before.some((a) => a.rule === rule && a.subject === subject)) {
    throw new Error(`a ${rule} alert for ${subject} is already shown`);
  }
  say(`ok control room live with ${before.length} active alerts`);

  // 1. The readings cross the level; the evaluator's alert appears without a reload.
  say("raise");
  const answer = await nextLine();
  if (answer !== "published") throw new Error(`unexpected answer ${answer}`);
  const started = Date.now();
  const shown = await live(
    ({ rule, subject }) =>
      window.__notReloaded === true &&
      window.__citygauge.alertList().find((a) => a.rule === rule && a.subject === subject && a.state === "open")?.id,
    { rule, subject },
    liveTimeout,
  ).catch(async () => {
    throw new Error(
      `no open ${rule} alert for ${subject} within ${liveTimeout} ms; panel: ${await page.locator("#alerts").innerText()}`,
    );
  });
  const id = Number(await shown.jsonValue());
  say(`alert ${id}`);
  const row = `.alert-row[data-alert-id="${id}"]`;
  const text = await page.locator(row).innerText();
  if (!text.toLowerCase().includes(level) || !text.includes(severity)) {
    throw new Error(`the alert row lacks its level (${level}) and severity (${severity}): ${text}`);
  }
  say(`ok alert ${id} shown ${Date.now() - started} ms after the readings were published`);

  // 2. Its timeline, and its sensor highlighted on the map.
  await page.locator(`${row} .alert-headline`).click();
  await page.locator(`#alert-timeline[data-alert-id="${id}"] li[data-kind="raised"]`).waitFor({ timeout: 5000 });
  say("ok timeline shows the raise");

  // 3. Acknowledging needs the operator token, entered once.
  await page.locator("#operator-token").fill(token);
  await page.locator("#operator-sign-in").click();
  await page.locator(`${row} button[data-action="acknowledge"]`).click();
  await live((id) => window.__citygauge.alertList().some((a) => a.id === id && a.state === "acknowledged"), id, 5000).catch(
    async () => {
      throw new Error(`alert ${id} not acknowledged; panel: ${await page.locator("#alerts").innerText()}`);
    },
  );
  await page.locator(`#alert-timeline li[data-kind="acknowledged"]`).waitFor({ timeout: 5000 });
  const stored = await page.evaluate(() => localStorage.getItem("citygauge.operator_token"));
  if (stored !== token) throw new Error("the token was not kept for the next visit");
  say(`ok alert ${id} acknowledged`);
  await page.screenshot({ path: join(artifacts, "control-room-alerts.png") });
});
