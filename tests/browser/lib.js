// lib.js - what the browser tests share: Debian's Chromium under
// playwright-core (nothing is downloaded), arguments, checks, the run's
// bounds, page logs, and reading the pixels of a screenshot (decoded by the
// browser itself: no PNG library).
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const {chromium} = require("playwright-core");

const CHROMIUM = process.env.TIPCAST_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--autoplay-policy=no-user-gesture-required",
  // Pages in background tabs run at full speed: a test with several pages
  // open at once (features.test.js) must not have its taps and waits slowed.
  "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];
// Bound on every wait.
const STEP_TIMEOUT_MS = 10000;

// --name value pairs; `required` names the ones that must be there.
function parseArgs(argv, usage, required, defaults) {
  const out = Object.assign({}, defaults);
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--") || i + 1 >= argv.length) {
      console.error("usage: " + usage);
      process.exit(2);
    }
    out[a.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = argv[++i];
  }
  for (const k of required) {
    if (!out[k]) {
      console.error("usage: " + usage);
      process.exit(2);
    }
  }
  return out;
}

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
  console.log("ok: " + what);
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Opens a browser; `body(context, log)` runs the test. On failure every
// open page is saved as <out>/<prefix>-failure-N.png and the last lines of
// the log are printed. Exits 0 (PASS) or 1.
async function runTest({out, prefix, totalMs, viewport}, body) {
  const log = [];
  const timer = setTimeout(() => {
    console.error(`FAIL: the browser test took longer than ${totalMs} ms`);
    console.error(log.slice(-80).join("\n"));
    process.exit(1);
  }, totalMs);
  fs.mkdirSync(out, {recursive: true});
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tipcast-chromium-"));
  let context = null;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: viewport || {width: 1280, height: 860},
      timeout: STEP_TIMEOUT_MS * 3,
    });
    await body(context, log);
  } catch (e) {
    console.error("FAIL: " + (e && e.stack ? e.stack : e));
    if (context) {
      const pages = context.pages();
      for (let i = 0; i < pages.length; i++) {
        await pages[i].screenshot({path: path.join(out, `${prefix}-failure-${i + 1}.png`)}).catch(() => {});
      }
    }
    console.error("--- browser log (last 80 lines) ---\n" + log.slice(-80).join("\n"));
    process.exit(1);
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, {recursive: true, force: true});
  }
  clearTimeout(timer);
  console.log("PASS");
}

// A new page whose console, errors and WebSocket frames go to the log as
// [name ...] lines.
async function newPage(context, name, log) {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("console", (m) => log.push(`[${name} console.${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => log.push(`[${name} pageerror] ${e.message}`));
  page.on("websocket", (ws) => {
    ws.on("framesent", (f) => log.push(`[${name} ws>] ${String(f.payload).slice(0, 300)}`));
    ws.on("framereceived", (f) => log.push(`[${name} ws<] ${String(f.payload).slice(0, 300)}`));
    ws.on("close", () => log.push(`[${name} ws closed]`));
  });
  return page;
}

// What a PNG holds, decoded by the browser in `page` (any page; a data:
// image does not taint the canvas), counted there (only the figures cross
// over): {width, height, corners: the RGBA of the four corners (inset by 2
// pixels), distinct: how many distinct colours a grid of samples (every
// 8th pixel both ways) holds, opaque: how many of those samples have
// alpha > 0}.
async function pngPixels(page, png) {
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = "data:image/png;base64," + b64;
    await img.decode();
    const c = document.createElement("canvas");
    const w = c.width = img.naturalWidth;
    const h = c.height = img.naturalHeight;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, w, h).data;
    const at = (x, y) => Array.from(d.subarray((y * w + x) * 4, (y * w + x) * 4 + 4));
    const colours = new Set();
    let opaque = 0;
    for (let y = 0; y < h; y += 8) {
      for (let x = 0; x < w; x += 8) {
        const i = (y * w + x) * 4;
        colours.add(d[i] + "," + d[i + 1] + "," + d[i + 2] + "," + d[i + 3]);
        if (d[i + 3] > 0) opaque++;
      }
    }
    return {width: w, height: h, distinct: colours.size, opaque,
      corners: [at(2, 2), at(w - 3, 2), at(2, h - 3), at(w - 3, h - 3)]};
  }, Buffer.from(png).toString("base64"));
}

module.exports = {STEP_TIMEOUT_MS, check, newPage, parseArgs, pngPixels, runTest, sleep};
