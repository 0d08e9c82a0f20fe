// Drives the control room and the public map in Debian's headless Chromium
// (playwright-core, no browser download). Run by tests/control_room_browser.rs,
// which owns the services and the data; talks to it over stdout/stdin:
//
//   script -> "citygauge-browser: publish"   the page is live; publish the reading now
//   script -> "citygauge-browser: ok ..."     a check passed
//   exit 0 when everything passed, 1 with the reason on stderr otherwise.
//
// Environment: CITYGAUGE_URL (the query service), CITYGAUGE_SENSOR (a sensor
// that gets the distinctive reading), CITYGAUGE_FIELD / CITYGAUGE_VALUE (that
// reading's column and value), CITYGAUGE_PENDING (a pending sensor the public
// map must not show; optional), CITYGAUGE_ARTIFACTS (screenshot directory),
// CITYGAUGE_CHROMIUM (default /usr/bin/chromium), CITYGAUGE_LIVE_TIMEOUT_MS
// (how soon the reading must show, default 2000).

import { join } from "node:path";

import { env, openChromium, say } from "./launch.mjs";

const base = env("CITYGAUGE_URL").replace(/\/$/, "");
const sensor = env("CITYGAUGE_SENSOR");
const field = env("CITYGAUGE_FIELD");
const value = Number(env("CITYGAUGE_VALUE"));
const pending = process.env.CITYGAUGE_PENDING || null;
const artifacts = env("CITYGAUGE_ARTIFACTS");
const liveTimeout = Number(env("CITYGAUGE_LIVE_TIMEOUT_MS", "2000"));

const { page, live, nextLine, run } = await openChromium({ artifacts, failureShot: "failure.png" });

/** Zooms the map onto a sensor and clicks its marker like a person would. */
async function clickSensor(id) {
  await page.evaluate((id) => window.__citygauge.focus(id), id);
  await page.waitForTimeout(400); // the zoom animation
  const point = await page.evaluate((id) => window.__citygauge.point(id), id);
  if (!point) throw new Error(`no marker for ${id}`);
  await page.mouse.click(point.x, point.y);
}

/** Waits for a popup label matching `pattern` (a closing popup may linger while it fades). */
async function popupText(pattern) {
  const found = await live(
    (source) => [...document.querySelectorAll(".popup-label")].map((e) => e.textContent ?? "").find((t) => new RegExp(source).test(t)),
    pattern.source,
    10_000,
  ).catch(async () => {
    const seen = await page.locator(".popup-label").allInnerTexts();
    throw new Error(`no popup label like ${pattern}; saw ${JSON.stringify(seen)}`);
  });
  return found.jsonValue();
}

await run(async () => {
  // 1. The control room shows the demo city's sensors.
  await page.goto(`${base}/`, { waitUntil: "domcontentloaded" });
  await live(() => window.__citygauge?.ready && window.__citygauge.markers() > 0 && window.__citygauge.stream()?.connected);
  const markers = await page.evaluate(() => window.__citygauge.markers());
  say(`ok control room shows ${markers} sensors`);
  if (pending && !(await page.evaluate((id) => Boolean(window.__citygauge.sensor(id)), pending))) {
    throw new Error(`the control room does not show the pending sensor ${pending}`);
  }

  // 2. A reading published now shows up without a reload.
  await page.evaluate(() => (window.__notReloaded = true));
  say("publish");
  await nextLine(); // the Rust side has published
  const started = Date.now();
  await live(
    ([id, field, value]) => window.__notReloaded === true && window.__citygauge.sensor(id)?.values?.[field] === value,
    [sensor, field, value],
    liveTimeout,
  ).catch(() => {
    throw new Error(`the reading ${field}=${value} of ${sensor} did not show within ${liveTimeout} ms`);
  });
  const feed = await page.locator("#feed").innerText();
  if (!feed.includes(String(value))) throw new Error(`the live list does not mention ${value}: ${feed.slice(0, 300)}`);
  say(`ok live reading shown after ${Date.now() - started} ms`);

  // 3. Clicking the sensor opens its chart, with data.
  await clickSensor(sensor);
  await live(([id]) => window.__citygauge.chartSensor() === id && window.__citygauge.chartPoints() > 0, [sensor]);
  const points = await page.evaluate(() => window.__citygauge.chartPoints());
  say(`ok chart of ${sensor} has ${points} values`);

  // Dragging across the chart zooms: the page asks /series for that range.
  const before = await page.evaluate(() => window.__citygauge.chartLoaded());
  const over = await page.locator("#chart .u-over").boundingBox();
  await page.mouse.move(over.x + over.width * 0.55, over.y + over.height / 2);
  await page.mouse.down();
  await page.mouse.move(over.x + over.width + 5, over.y + over.height / 2, { steps: 5 });
  await page.mouse.up();
  await live(
    ([loads, span]) => {
      const now = window.__citygauge.chartLoaded();
      return now.loads > loads && now.to - now.from < span / 2 && window.__citygauge.chartPoints() > 0;
    },
    [before.loads, before.to - before.from],
  );
  const zoomed = await page.evaluate(() => window.__citygauge.chartLoaded());
  say(`ok zoomed chart reloaded ${Math.round((zoomed.to - zoomed.from) / 60)} min`);
  await page.evaluate(() => window.__citygauge.fitCity());
  await page.mouse.move(1, 1); // no hover tooltip in the picture
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(artifacts, "control-room.png") });

  // 4. The public map: no pending sensors, plain words.
  await page.goto(`${base}/public`, { waitUntil: "domcontentloaded" });
  await live(() => window.__citygauge?.ready && window.__citygauge.markers() > 0);
  if (pending && (await page.evaluate((id) => Boolean(window.__citygauge.sensor(id)), pending))) {
    throw new Error(`the public map shows the pending sensor ${pending}`);
  }
  await page.locator('[data-lang="en"]').click();
  await clickSensor(sensor);
  const cm = Math.round(value);
  const en = await popupText(new RegExp(`^Flooded ${cm} cm$`));
  // The city's own language last, for the screenshot.
  await page.locator('[data-lang="zh-TW"]').click();
  await clickSensor(sensor);
  const zh = await popupText(new RegExp(`^淹水 ${cm} 公分$`));
  say(`ok public map labels: ${zh} / ${en}`);
  await page.evaluate(() => window.__citygauge.fitCity());
  await page.mouse.move(1, 1);
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(artifacts, "public.png") });
});
