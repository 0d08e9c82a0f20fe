// What the browser scripts (browser.mjs, alerts.mjs) share: their
// environment, the line protocol with the Rust test that runs them, and a
// Chromium page to drive, closed and cleaned up when the steps end.
//
//   script -> "citygauge-browser: <line>"   said with `say`
//   rust   -> "<line>"                      read with `nextLine`
//   script -> "citygauge-browser: done"     everything passed (`run`)
//   exit 0 when everything passed, 1 with the reason on stderr otherwise.

import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { chromium } from "playwright-core";

/** An environment variable; `fallback` when unset, an error without one. */
export const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};

// Chromium on a closed network: no sandbox (root), no GPU, and none of the
// background connections to Google that the network refuses.
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

/** Tells the Rust side something. */
export const say = (line) => process.stdout.write(`citygauge-browser: ${line}\n`);

/**
 * Opens Chromium (CITYGAUGE_CHROMIUM, default /usr/bin/chromium) with a
 * throwaway profile on one 1600x900 en-US page in Taipei's time zone, after
 * removing `failureShot` (from an earlier run) from `artifacts`. Returns the
 * page; `live` (waits for an expression, polling), `nextLine` (the Rust
 * side's next line on stdin), `problems` (page errors) and `run`, which runs
 * the steps: "done" when they pass with no page errors, else a screenshot to
 * `failureShot`, the reason on stderr and exit code 1; then closes it all.
 */
export async function openChromium({ artifacts, failureShot }) {
  const stdin = createInterface({ input: process.stdin });
  const lines = [];
  let waiting = null;
  stdin.on("line", (line) => (waiting ? (waiting(line), (waiting = null)) : lines.push(line)));
  const nextLine = () => (lines.length > 0 ? Promise.resolve(lines.shift()) : new Promise((resolve) => (waiting = resolve)));

  mkdirSync(artifacts, { recursive: true });
  rmSync(join(artifacts, failureShot), { force: true }); // from an earlier run
  const profile = mkdtempSync(join(tmpdir(), "citygauge-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: env("CITYGAUGE_CHROMIUM", "/usr/bin/chromium"),
    headless: true,
    args: FLAGS,
    viewport: { width: 1600, height: 900 },
    locale: "en-US",
    timezoneId: "Asia/Taipei",
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  const live = (expr, arg, timeout = 30_000) => page.waitForFunction(expr, arg, { timeout, polling: 50 });

  const run = async (steps) => {
    try {
      await steps();
      if (problems.length > 0) throw new Error(problems.join("\n"));
      say("done");
    } catch (error) {
      await page.screenshot({ path: join(artifacts, failureShot) }).catch(() => {});
      process.stderr.write(`${error.stack ?? error}\n${problems.join("\n")}\n`);
      process.exitCode = 1;
    } finally {
      stdin.close();
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    }
  };
  return { page, live, nextLine, problems, run };
}
