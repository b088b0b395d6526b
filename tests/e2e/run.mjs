// End-to-end tests of the browser app in real headless Chromium, WebGPU through SwiftShader.
// Run by `cargo xtask e2e` (part of `cargo xtask test`), which builds dist/ and passes:
//   HEARTH_XTASK      the xtask binary (its `serve` task is the server under test)
//   HEARTH_BIN        the `hearth` binary (`hearth serve --ui`: the UI on the native engine)
//   HEARTH_DIST       the built app
//   HEARTH_MODELS     the folder holding SmolLM2-135M-Instruct.Q4_1.gguf
//   HEARTH_TESTDATA   ../shared/testdata (the llama.cpp oracle)
//   HEARTH_E2E_OUT    where screenshots and logs go
// Each test drives the UI only through its data-testid hooks, like a person would.

import { execFileSync, spawn } from "node:child_process";
import { cpSync, mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { createHash } from "node:crypto";
import { join } from "node:path";
import http from "node:http";
import { chromium } from "playwright-core";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set: run the tests with \`cargo xtask e2e\``);
  return v;
};
const XTASK = env("HEARTH_XTASK");
const BIN = env("HEARTH_BIN");
const DIST = env("HEARTH_DIST");
const MODELS = env("HEARTH_MODELS");
const OUT = env("HEARTH_E2E_OUT");
const ORACLE = JSON.parse(readFileSync(join(env("HEARTH_TESTDATA"), "oracle/smollm2_exact_greedy.json"), "utf8"));
const MODEL_ID = "smollm2-135m-instruct-q4_1";
const MODEL_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const MODEL_SIZE = 98362432;
const CHUNK = 4 << 20;
// The GPU issue's near-tie rule: a parting from the exact oracle is accepted only where the
// oracle's own top-2 margin is below this (the GPU oracle test uses the same 0.02).
const NEAR_TIE = 0.02;
// How many oracle prompts the first-visit test sends (all of them unless limited).
const PROMPTS = Number(process.env.HEARTH_E2E_PROMPTS || ORACLE.length);
const LONG_TASK_MS = 200;
mkdirSync(OUT, { recursive: true });

const log = (...a) => console.log("[e2e]", ...a);

// ---------------------------------------------------------------------------------------
// The server under test: `xtask serve --no-build`, on a free port.

async function startServer(extra = []) {
  const args = ["serve", "--no-build", "--port", "0", "--dist", DIST, "--models", MODELS, ...extra];
  const proc = spawn(XTASK, args, { stdio: ["ignore", "pipe", "pipe"] });
  const requests = [];
  let errBuf = "";
  proc.stderr.on("data", (d) => {
    errBuf += d;
    let i;
    while ((i = errBuf.indexOf("\n")) >= 0) {
      const line = errBuf.slice(0, i);
      errBuf = errBuf.slice(i + 1);
      requests.push(line);
    }
  });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("xtask serve did not start in 30 s")), 30000);
    let buf = "";
    proc.stdout.on("data", (d) => {
      buf += d;
      const m = buf.match(/serving (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on("exit", (code) => reject(new Error(`xtask serve exited (${code}): ${requests.join("\n")}`)));
  });
  const stop = () =>
    new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.on("exit", resolve);
      proc.kill("SIGKILL");
    });
  return { url, requests, stop };
}

// ---------------------------------------------------------------------------------------
// The browser: one persistent profile per scenario, so a reload keeps IndexedDB and the
// service worker, as a person's browser does.

const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--headless=new",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

async function openBrowser(name, extraArgs = []) {
  const profile = mkdtempSync(join(tmpdir(), `hearth-e2e-${name}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.HEARTH_CHROMIUM || "/usr/bin/chromium",
    args: CHROMIUM_ARGS.concat(extraArgs),
    viewport: { width: 1280, height: 800 },
  });
  // Content-Security-Policy violations, for the policy test.
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`),
    );
  });
  // Main-thread long tasks, for the responsiveness test.
  await context.addInitScript(() => {
    window.__longTasks = [];
    try {
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) window.__longTasks.push({ start: e.startTime, duration: e.duration });
      }).observe({ type: "longtask", buffered: true });
    } catch (e) {
      window.__longTasks = null;
    }
  });
  const page = context.pages()[0] || (await context.newPage());
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e}`));
  const close = async () => {
    writeFileSync(join(OUT, `${name}-console.log`), consoleLines.join("\n"));
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, close, consoleLines };
}

const shot = (page, name) => page.screenshot({ path: join(OUT, `${name}.png`), fullPage: false });
const byId = (page, id) => page.locator(`[data-testid="${id}"]`);

async function appState(page, want, timeout) {
  await page.waitForFunction(
    (w) => {
      const el = document.querySelector("[data-app-state]");
      const s = el && el.getAttribute("data-app-state");
      const banner = document.querySelector('[data-testid="error-banner"]');
      if (banner && banner.getAttribute("data-kind") !== "network") throw new Error("error banner: " + banner.textContent);
      return w.includes(s);
    },
    want,
    { timeout, polling: 250 },
  );
}

async function cardState(page, want, timeout) {
  await page.waitForFunction(
    ([id, w]) => {
      const banner = document.querySelector('[data-testid="error-banner"]');
      if (banner && !["network"].includes(banner.getAttribute("data-kind")))
        throw new Error("error banner: " + banner.textContent);
      const el = document.querySelector(`[data-testid="model-card-${id}"]`);
      return el && w.includes(el.getAttribute("data-state"));
    },
    [MODEL_ID, want],
    { timeout, polling: 250 },
  );
}

async function openModels(page) {
  if ((await byId(page, `model-card-${MODEL_ID}`).count()) === 0) await byId(page, "nav-models").click();
  await byId(page, `model-card-${MODEL_ID}`).waitFor({ timeout: 30000 });
}

/// Loads the model; returns the worker's `Loaded` info (timings, wasm memory).
async function loadModel(page, context = 512) {
  await page.evaluate(() => {
    window.__loaded = null;
    window.__hearthWorker.addEventListener("message", (e) => {
      if (e.data && e.data.type === "Loaded") window.__loaded = e.data.info;
    });
  });
  await openModels(page);
  const select = byId(page, "context-select");
  if (await select.count()) await select.first().selectOption(String(context)).catch(() => {});
  await byId(page, `load-${MODEL_ID}`).click();
  await appState(page, ["chat"], 300000);
  return await page.evaluate(() => window.__loaded);
}

async function greedySettings(page, maxTokens) {
  if (!(await byId(page, "temperature").isVisible())) await byId(page, "settings-toggle").click();
  await byId(page, "temperature").fill("0");
  await byId(page, "max-tokens").fill(String(maxTokens));
  await byId(page, "seed").fill("1");
  await byId(page, "temperature").press("Tab");
}

/// Sends `text` in a new chat (or, with `fresh` false, the current one) and waits for the
/// reply; returns its token ids and timing. `page` may be a frame (the widget).
async function ask(page, text, fresh = true) {
  if (fresh) await byId(page, "new-chat").click();
  const before = await page.locator('[data-testid="message"][data-role="assistant"]').count();
  const t0 = await page.evaluate(() => performance.now());
  await byId(page, "composer").fill(text);
  await byId(page, "composer").press("Enter");
  const reply = page.locator('[data-testid="message"][data-role="assistant"]').nth(before);
  await reply.waitFor({ timeout: 60000 });
  await page.waitForFunction(
    (n) => {
      const banner = document.querySelector('[data-testid="error-banner"]');
      if (banner) throw new Error("error banner: " + banner.textContent);
      const el = document.querySelectorAll('[data-testid="message"][data-role="assistant"]')[n];
      return el && el.getAttribute("data-state") === "done" && el.hasAttribute("data-tokens");
    },
    before,
    { timeout: 600000, polling: 250 },
  );
  const t1 = await page.evaluate(() => performance.now());
  const tokens = (await reply.getAttribute("data-tokens")).split(",").filter(Boolean).map(Number);
  const stats = byId(page, "stats");
  const decode = Number(await stats.getAttribute("data-decode-tok-s"));
  const firstMs = Number(await stats.getAttribute("data-first-token-ms"));
  return { tokens, text: await reply.innerText(), t0, t1, decode, firstMs };
}

/// The near-tie rule: equal, or parted where the oracle's margin is below NEAR_TIE.
function compareGreedy(i, got, oracle, failures) {
  const want = oracle.greedy;
  for (let s = 0; s < want.length; s++) {
    if (got[s] === want[s]) continue;
    const margin = oracle.greedy_top2_margins[s];
    if (got[s] !== undefined && margin < NEAR_TIE) {
      log(`prompt ${i}: parted at step ${s} at a near-tie (margin ${margin.toFixed(4)}); accepted`);
      return;
    }
    failures.push(`prompt ${i} (${JSON.stringify(oracle.prompt)}): step ${s} gave ${got[s]}, oracle ${want[s]} (margin ${margin})`);
    return;
  }
  if (got.length !== want.length) failures.push(`prompt ${i}: ${got.length} tokens, oracle ${want.length}`);
}

/// The first oracle prompt, greedy: its reply and any parting from the oracle.
async function askFirstOracle(page) {
  const c = ORACLE.filter(sameSystem)[0];
  await greedySettings(page, c.greedy.length);
  const r = await ask(page, c.prompt);
  const failures = [];
  compareGreedy(0, r.tokens, c, failures);
  return { r, failures };
}

function sameSystem(c) {
  // The oracle rendered SmolLM2's default system prompt, which its template adds when the
  // conversation has none: the UI sends no system message when the field is empty.
  return c.system === "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
}

/// `n` sorted distinct offsets in [lo, hi) from `seed` (mulberry32), so a failing run can be
/// repeated exactly.
function seededOffsets(seed, n, lo, hi) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Set();
  while (out.size < n) out.add(lo + Math.floor(next() * (hi - lo)));
  return [...out].sort((x, y) => x - y);
}

/// Body bytes the server sent for model requests, from its log lines ("→ status bytes").
function modelBytesSent(lines) {
  return lines
    .filter((l) => l.startsWith("GET /models/"))
    .map((l) => Number((l.match(/→ \d+ (\d+)/) || [0, 0])[1]))
    .reduce((a, b) => a + b, 0);
}

/// Waits for a download to end: the card stored, or an error banner with the card no longer
/// downloading. Returns { state, banner: { kind, text } | null }.
async function downloadOutcome(page, id, timeout = 300000) {
  const handle = await page.waitForFunction(
    (id) => {
      const state = document.querySelector(`[data-testid="model-card-${id}"]`)?.getAttribute("data-state");
      const banner = document.querySelector('[data-testid="error-banner"]');
      if (state === "stored") return { state, banner: null };
      if (banner && state !== "downloading")
        return { state, banner: { kind: banner.getAttribute("data-kind"), text: banner.textContent } };
      return null;
    },
    id,
    { timeout, polling: 250 },
  );
  return handle.jsonValue();
}

async function dismissBanners(page) {
  await page.evaluate(() => document.querySelectorAll('[data-testid="error-banner"] button').forEach((b) => b.click()));
}

/// The model's record in the worker's IndexedDB, changed by `edit` (an object of fields to
/// set) when given; returns the record as it then is (null when there is none) and how many
/// chunks the model has.
async function storedRecord(page, id, edit = null) {
  return page.evaluate(
    ([id, edit]) =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open("hearth-models");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const tx = open.result.transaction(["models", "chunks"], "readwrite");
          const models = tx.objectStore("models");
          const out = {};
          const get = models.get(id);
          get.onsuccess = () => {
            out.meta = get.result ?? null;
            if (out.meta && edit) {
              Object.assign(out.meta, edit);
              models.put(out.meta, id);
            }
          };
          const count = tx.objectStore("chunks").count(IDBKeyRange.bound(`${id}/`, `${id}0`, false, true));
          count.onsuccess = () => (out.chunks = count.result);
          tx.oncomplete = () => {
            open.result.close();
            resolve(out);
          };
          tx.onerror = () => reject(tx.error);
        };
      }),
    [id, edit],
  );
}

async function storageRowHasSha(page) {
  await byId(page, "nav-storage").click();
  const row = await byId(page, `storage-row-${MODEL_ID}`).innerText();
  if (!row.includes(MODEL_SHA.slice(0, 12))) throw new Error(`storage row lacks the sha256: ${row}`);
  if (!/verified/.test(row) || /unverified/.test(row)) throw new Error(`storage row is not verified: ${row}`);
}

/// Waits for the download's progress bar to pass `bytes`.
async function progressPast(page, bytes) {
  await page.waitForFunction(
    ([id, n]) => Number(document.querySelector(`[data-testid="progress-${id}"]`)?.getAttribute("data-done") || 0) > n,
    [MODEL_ID, bytes],
    { timeout: 120000, polling: 50 },
  );
}

// ---------------------------------------------------------------------------------------
// The tests.

const results = [];
// HEARTH_E2E_ONLY=<regex>: run only the matching tests (for working on one; CI runs all).
const ONLY = process.env.HEARTH_E2E_ONLY ? new RegExp(process.env.HEARTH_E2E_ONLY) : null;
async function test(name, body) {
  if (ONLY && !ONLY.test(name)) return;
  const t0 = Date.now();
  log(`▶ ${name}`);
  try {
    await body();
    results.push({ name, ok: true, secs: (Date.now() - t0) / 1000 });
    log(`✔ ${name} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  } catch (e) {
    results.push({ name, ok: false, secs: (Date.now() - t0) / 1000, error: String(e.stack || e) });
    log(`✘ ${name}: ${e.stack || e}`);
  }
}

const metrics = {};

// 1-3: one profile: first visit → download → chat (oracle); then offline reload → chat.
{
  const server = await startServer();
  const b = await openBrowser("first-visit");
  const { page } = b;

  await test("first visit: download with visible progress, stored, verified", async () => {
    await page.goto(server.url);
    await appState(page, ["ready"], 120000);
    await openModels(page);
    await shot(page, "01-models");
    await byId(page, `download-${MODEL_ID}`).click();
    const progress = byId(page, `progress-${MODEL_ID}`);
    await progress.waitFor({ timeout: 30000 });
    await page.waitForFunction(
      (id) => Number(document.querySelector(`[data-testid="progress-${id}"]`)?.getAttribute("data-done") || 0) > 0,
      MODEL_ID,
      { timeout: 60000, polling: 50 },
    );
    await shot(page, "02-downloading");
    const t0 = Date.now();
    await cardState(page, ["stored"], 300000);
    metrics.download_secs = (Date.now() - t0) / 1000;
    // Once stored, "fits" is the engine's own memory plan for this adapter.
    await page.waitForFunction(
      (id) => /GPU memory at context \d+/.test(document.querySelector(`[data-testid="fit-${id}"]`)?.getAttribute("title") + document.querySelector(`[data-testid="fit-${id}"]`)?.textContent),
      MODEL_ID,
      { timeout: 30000, polling: 250 },
    );
    await byId(page, "nav-storage").click();
    const row = byId(page, `storage-row-${MODEL_ID}`);
    await row.waitFor({ timeout: 30000 });
    const rowText = await row.innerText();
    if (!rowText.includes(MODEL_SHA.slice(0, 12))) throw new Error(`storage row lacks the sha256: ${rowText}`);
    await shot(page, "03-storage");
  });

  await test("the picker: what each model is for and its languages, license notices, and a filter for what fits this GPU", async () => {
    await openModels(page);
    const cards = await page.$$eval('[data-testid^="model-card-"]', (els) =>
      els.map((el) => ({
        id: el.getAttribute("data-testid").slice("model-card-".length),
        summary: el.querySelector('[data-testid^="summary-"]')?.textContent ?? "",
        notice: el.querySelector('[data-testid^="license-notice-"]')?.textContent ?? "",
        fit: el.querySelector('[data-testid^="fit-"]')?.getAttribute("data-fit") ?? "",
      })),
    );
    const catalog = JSON.parse(readFileSync(join(DIST, "catalog.json"), "utf8")).models;
    for (const m of catalog) {
      const card = cards.find((c) => c.id === m.id);
      if (!card) throw new Error(`no card for ${m.id}`);
      if (!card.summary.includes(m.summary) || !card.summary.includes(`Languages: ${m.languages}`))
        throw new Error(`${m.id}: summary line ${JSON.stringify(card.summary)}`);
      if ((m.license_notice ?? "") !== card.notice) throw new Error(`${m.id}: license notice ${JSON.stringify(card.notice)}`);
    }
    if (!cards.find((c) => c.id === "llama-3.2-1b-instruct-q4_k_m").notice.includes("Built with Llama")) throw new Error("no Built with Llama");
    if (!cards.find((c) => c.id === "gemma-3-1b-it-q4_k_m").notice.includes("Gemma Terms of Use")) throw new Error("no Gemma notice");
    // The filter hides exactly the models too large for this adapter, and unticking brings them back.
    const tooLarge = cards.filter((c) => c.fit === "too large for this GPU").map((c) => c.id);
    log(`too large for this adapter: ${JSON.stringify(tooLarge)}`);
    if (tooLarge.length === 0) throw new Error("no catalog model is too large for this adapter: the filter test would prove nothing");
    await byId(page, "fit-filter").check();
    const shown = await page.$$eval('[data-testid^="model-card-"]', (els) => els.map((el) => el.getAttribute("data-testid").slice(11)));
    const want = cards.map((c) => c.id).filter((id) => !tooLarge.includes(id));
    if (JSON.stringify(shown) !== JSON.stringify(want)) throw new Error(`filtered: ${JSON.stringify(shown)}, want ${JSON.stringify(want)}`);
    await byId(page, "fit-filter").uncheck();
    const all = await page.locator('[data-testid^="model-card-"]').count();
    if (all !== cards.length) throw new Error(`${all} cards after unticking, ${cards.length} before`);
  });

  await test("first visit: greedy replies equal llama.cpp's exact oracle; no long main-thread task", async () => {
    metrics.first_load = await loadModel(page, 512);
    await greedySettings(page, 64);
    const failures = [];
    const long = [];
    const cases = ORACLE.filter(sameSystem).slice(0, PROMPTS);
    if (cases.length === 0) throw new Error("no oracle cases");
    for (const [i, c] of cases.entries()) {
      await greedySettings(page, c.greedy.length);
      const r = await ask(page, c.prompt);
      compareGreedy(i, r.tokens, c, failures);
      metrics[`prompt${i}`] = { decode_tok_s: r.decode, first_token_ms: r.firstMs, tokens: r.tokens.length };
      const tasks = await page.evaluate(() => window.__longTasks);
      if (tasks === null) throw new Error("this Chromium does not report long tasks");
      for (const t of tasks) if (t.start >= r.t0 && t.start <= r.t1 && t.duration > LONG_TASK_MS) long.push({ prompt: i, ...t });
      if (i === 0) await shot(page, "04-chat");
    }
    await shot(page, "05-chat-done");
    if (failures.length) throw new Error("greedy replies differ from the oracle:\n" + failures.join("\n"));
    if (long.length) throw new Error(`main-thread long tasks over ${LONG_TASK_MS} ms while generating: ${JSON.stringify(long)}`);
  });

  await test("stop strings: the worker ends the reply just before one (llama.cpp's greedy text)", async () => {
    const c = ORACLE.filter(sameSystem)[0];
    const stop = c.greedy_text.split(" ")[3]; // "France" in "The capital of France is Paris."
    const want = c.greedy_text.slice(0, c.greedy_text.indexOf(stop));
    const got = await page.evaluate(
      ([prompt, stop, max]) =>
        new Promise((resolve, reject) => {
          const w = window.__hearthWorker;
          let text = "";
          const on = (e) => {
            const d = e.data || {};
            if (d.type === "Token") text += d.text;
            if (d.type === "Done" || d.type === "Error") w.removeEventListener("message", on);
            if (d.type === "Done") resolve({ text, reason: d.stats.stop_reason, tokens: d.stats.tokens.length });
            if (d.type === "Error") reject(new Error(d.message));
          };
          w.addEventListener("message", on);
          const sampling = { temperature: 0, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1, max_tokens: max, seed: 1 };
          w.postMessage({ msg: { type: "Generate", messages: [{ role: "user", content: prompt }], sampling, stop: [stop] } });
        }),
      [c.prompt, stop, c.greedy.length],
    );
    log(`stop ${JSON.stringify(stop)}: ${JSON.stringify(got)}`);
    if (got.text !== want || got.reason !== "stop_string")
      throw new Error(`wanted ${JSON.stringify(want)} ending at a stop string, got ${JSON.stringify(got)}`);
  });

  await test("stop strings in the chat settings: the reply ends just before one", async () => {
    const c = ORACLE.filter(sameSystem)[0];
    const stop = c.greedy_text.split(" ")[3]; // "France"
    const want = c.greedy_text.slice(0, c.greedy_text.indexOf(stop));
    await greedySettings(page, c.greedy.length);
    await byId(page, "stop-strings").fill(stop);
    await ask(page, c.prompt);
    await byId(page, "stop-strings").fill("");
    const reason = await byId(page, "stats").getAttribute("data-stop-reason");
    const text = await page.locator('[data-testid="message"][data-role="assistant"] .bubble').last().innerText();
    log(`settings stop ${JSON.stringify(stop)}: ${JSON.stringify(text)} (${reason})`);
    if (text.trim() !== want.trim() || reason !== "stop_string")
      throw new Error(`wanted ${JSON.stringify(want)} ending at a stop string, got ${JSON.stringify(text)} (${reason})`);
  });

  await test("offline: reload with the server stopped, the app and the cached model load and chat", async () => {
    await server.stop();
    await page.reload();
    await appState(page, ["ready", "chat"], 120000);
    metrics.offline_load = await loadModel(page, 512);
    const { r, failures } = await askFirstOracle(page);
    metrics.offline_first_token_ms = r.firstMs;
    metrics.offline_decode_tok_s = r.decode;
    await shot(page, "06-offline-chat");
    if (failures.length) throw new Error(failures.join("\n"));
  });
  await test("lost GPU device: reported, the worker re-initializes, the model loads and chats again", async () => {
    await page.evaluate(() => window.__hearthWorker.postMessage({ msg: { type: "SimulateDeviceLoss" } }));
    await page.waitForFunction(
      () => document.querySelector('[data-testid="error-banner"]')?.getAttribute("data-kind") === "device_lost",
      null,
      { timeout: 60000, polling: 100 },
    );
    await shot(page, "09-device-lost");
    await page.waitForFunction(() => document.querySelector("[data-app-state]")?.getAttribute("data-app-state") === "ready", null, {
      timeout: 60000,
    });
    await page.evaluate(() => document.querySelectorAll('[data-testid="error-banner"] button').forEach((b) => b.click()));
    await loadModel(page, 512);
    const { failures } = await askFirstOracle(page);
    if (failures.length) throw new Error(failures.join("\n"));
  });
  /// Starts a long reply, waits for its first words, then runs `kill` in the page; the page
  /// must notice within `within` ms, keep the words marked as interrupted, start a fresh
  /// engine worker, and load and chat again without a reload.
  async function killDuringReply(kill, within, name) {
    if ((await page.locator("div[data-app-state]").getAttribute("data-app-state")) !== "chat") await loadModel(page, 512);
    await greedySettings(page, 200);
    await byId(page, "new-chat").click();
    await byId(page, "composer").fill("Write a long story about a lighthouse keeper and a storm.");
    await byId(page, "composer").press("Enter");
    const streaming = '[data-testid="message"][data-role="assistant"][data-state="streaming"]';
    await page.waitForFunction((sel) => document.querySelector(sel)?.innerText.trim().length > 0, streaming, {
      timeout: 120000,
      polling: 100,
    });
    const t0 = Date.now();
    await page.evaluate(kill);
    await page.waitForFunction(() => document.querySelector('[data-testid="error-banner"][data-kind="engine_restarted"]'), null, {
      timeout: within,
      polling: 100,
    });
    log(`${name}: noticed and restarted after ${Date.now() - t0} ms`);
    await shot(page, `12-${name}`);
    await dismissBanners(page);
    await appState(page, ["ready"], 120000);
    // Loading opens the chat on the conversation that was interrupted.
    await loadModel(page, 512);
    const kept = page.locator('[data-testid="message"][data-role="assistant"][data-state="interrupted"]');
    await kept.waitFor({ timeout: 10000 });
    if (!(await kept.innerText()).includes("Interrupted")) throw new Error("the interrupted reply is not marked");
    const { failures } = await askFirstOracle(page);
    if (failures.length) throw new Error(failures.join("\n"));
  }

  await test("a worker panic during a reply: noticed, the reply kept as interrupted, a fresh worker chats", async () => {
    await killDuringReply(() => window.__hearthWorker.postMessage({ msg: { type: "Panic" } }), 15000, "panic");
  });

  await test("worker.terminate() during a reply: the heartbeat notices (30 s without an answer), a fresh worker chats", async () => {
    await killDuringReply(() => window.__hearthWorker.terminate(), 45000, "terminate");
  });

  await test("a context that fills during a conversation: older messages dropped with a notice, the chat goes on", async () => {
    if ((await page.locator("div[data-app-state]").getAttribute("data-app-state")) !== "chat") await loadModel(page, 512);
    await page.evaluate(() => {
      window.__notices = [];
      new MutationObserver(() => {
        for (const n of document.querySelectorAll('[data-testid="notice"]'))
          if (!window.__notices.includes(n.textContent)) window.__notices.push(n.textContent);
      }).observe(document.body, { childList: true, subtree: true, characterData: true });
    });
    await greedySettings(page, 8);
    await byId(page, "new-chat").click();
    // About 270 tokens each: the second one no longer fits beside the first.
    const long = (i) => `Question ${i}: ` + "Tell me about the sea, the sky, the wind and the rain. ".repeat(20);
    let dropped = false;
    for (let i = 0; i < 4 && !dropped; i++) {
      const r = await ask(page, long(i), false);
      if (r.tokens.length === 0) throw new Error(`turn ${i}: an empty reply`);
      const used = Number(await byId(page, "stats").getAttribute("data-context-used"));
      if (!(used > 0 && used <= 512)) throw new Error(`turn ${i}: context used ${used} of 512`);
      dropped = (await page.evaluate(() => window.__notices)).some((n) => /Older messages were dropped/.test(n));
      log(`turn ${i}: ${r.tokens.length} tokens, context ${used}/512, dropped: ${dropped}`);
    }
    if (!dropped) throw new Error("four long turns in a 512 context and no notice of dropped messages");
    // And the conversation goes on after the drop.
    const after = await ask(page, "Thanks. In one word, what colour is the sea?", false);
    if (after.tokens.length === 0) throw new Error("no reply after the drop");
  });

  await test("hostile model files: a message within 30 s each, then SmolLM2 loads and chats without a reload", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hearth-e2e-hostile-"));
    try {
      // [kind, the worker's message names it, it shows at load (else at the first reply)]
      for (const [kind, says, atLoad] of [
        ["long-token", /tokenizer\.ggml\.tokens\[1000\]/, true],
        ["nested-loops", /instructions/, false],
      ]) {
        const file = join(dir, `${kind}.gguf`);
        execFileSync(XTASK, ["hostile-gguf", kind, file], { stdio: "inherit" });
        await openModels(page);
        await byId(page, "local-file").setInputFiles(file);
        const id = `file-${kind}`;
        await page.waitForFunction(
          (id) => document.querySelector(`[data-testid="model-card-${id}"]`)?.getAttribute("data-state") === "stored",
          id,
          { timeout: 300000, polling: 250 },
        );
        let t0 = Date.now();
        await byId(page, `load-${id}`).click();
        if (!atLoad) {
          await appState(page, ["chat"], 300000);
          await byId(page, "new-chat").click();
          await byId(page, "composer").fill("hi");
          t0 = Date.now();
          await byId(page, "composer").press("Enter");
        }
        const banner = await page.waitForFunction(
          () => {
            const b = document.querySelector('[data-testid="error-banner"]');
            return b && b.getAttribute("data-kind") !== "network" ? b.textContent : null;
          },
          null,
          { timeout: 30000, polling: 100 },
        );
        const text = await banner.jsonValue();
        log(`${kind}: "${text.slice(0, 160)}" after ${Date.now() - t0} ms`);
        if (!says.test(text)) throw new Error(`${kind}: the message does not say what is wrong: ${text}`);
        await shot(page, `13-hostile-${kind}`);
        await dismissBanners(page);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    await loadModel(page, 512);
    const { failures } = await askFirstOracle(page);
    if (failures.length) throw new Error(failures.join("\n"));
  });
  await b.close();
  await server.stop();
}

// 4-6: a fresh profile: the server cuts the download ten times; then a chunk is corrupted in
// storage; then a local file is imported.
{
  const seed = Number(process.env.HEARTH_E2E_SEED || 20261207);
  const cuts = seededOffsets(seed, 10, 1 << 20, MODEL_SIZE - 1);
  log(`cut offsets from seed ${seed} (HEARTH_E2E_SEED): ${cuts.join(",")}`);
  // At 25 MB/s, a fast home connection. Unthrottled on loopback the server outruns the
  // worker's IndexedDB writes by far, Chromium queues the difference in the body stream, and
  // a stream that errors drops its queue (Streams: ResetQueue): a cut then costs ~10 MB.
  const server = await startServer(["--cut-at", cuts.join(","), "--rate", "25000000"]);
  const b = await openBrowser("resume");
  const { page } = b;

  await test("cut download: ten cuts at seeded offsets, each resumed with a Range request; the sha256 matches", async () => {
    await page.goto(server.url);
    await appState(page, ["ready"], 120000);
    await openModels(page);
    await byId(page, `download-${MODEL_ID}`).click();
    await cardState(page, ["stored"], 300000);
    const made = server.requests.filter((l) => l.includes("cut /models/")).length;
    if (made !== cuts.length) throw new Error(`the server made ${made} of ${cuts.length} cuts:\n` + server.requests.join("\n"));
    // Each resume continues from what the worker had (stored chunks plus the partial chunk it
    // holds), so it starts after the previous resume and at most where its cut was.
    const ranged = server.requests
      .map((l) => l.match(/bytes=(\d+)- → 206/))
      .filter(Boolean)
      .map((m) => Number(m[1]));
    const bad = ranged.filter((from, i) => !(from > (ranged[i - 1] ?? 0) && from <= cuts[i]));
    if (ranged.length !== cuts.length || bad.length)
      throw new Error(`resumes at ${ranged}, cuts at ${cuts}:\n` + server.requests.join("\n"));
    const fetched = modelBytesSent(server.requests);
    const budget = MODEL_SIZE + cuts.length * 5 * 2 ** 20;
    log(`bytes fetched: ${fetched} for a ${MODEL_SIZE}-byte file (budget ${budget})`);
    if (fetched >= budget) throw new Error(`fetched ${fetched} bytes, over ${budget}:\n` + server.requests.join("\n"));
    await byId(page, "nav-storage").click();
    const row = await byId(page, `storage-row-${MODEL_ID}`).innerText();
    if (!row.includes(MODEL_SHA.slice(0, 12))) throw new Error(`storage row lacks the sha256: ${row}`);
    await shot(page, "07-resumed");
  });

  await test("corrupted chunk: detected, re-fetched, never run", async () => {
    const damaged = 3;
    await page.evaluate(
      ([id, n]) =>
        new Promise((resolve, reject) => {
          const open = indexedDB.open("hearth-models");
          open.onerror = () => reject(open.error);
          open.onsuccess = () => {
            const tx = open.result.transaction("chunks", "readwrite");
            const store = tx.objectStore("chunks");
            const key = `${id}/${String(n).padStart(8, "0")}`;
            const get = store.get(key);
            get.onsuccess = () => {
              const bytes = new Uint8Array(get.result);
              for (let i = 0; i < bytes.length; i += 4096) bytes[i] ^= 0x5a;
              store.put(bytes, key);
            };
            tx.oncomplete = () => resolve();
            tx.onerror = () => reject(tx.error);
          };
        }),
      [MODEL_ID, damaged],
    );
    const before = server.requests.length;
    await loadModel(page, 512);
    const start = damaged * CHUNK;
    const refetch = server.requests.slice(before).find((l) => l.includes(`bytes=${start}-${start + CHUNK - 1}`));
    if (!refetch) throw new Error("the damaged chunk was not re-fetched:\n" + server.requests.slice(before).join("\n"));
    const { failures } = await askFirstOracle(page);
    await shot(page, "08-after-repair");
    if (failures.length) throw new Error(failures.join("\n"));
  });

  await test("local .gguf file: imported into storage through the same chunk writer, sha256 recorded", async () => {
    const file = "SmolLM2-135M-Instruct.Q4_1.gguf";
    const id = "file-smollm2-135m-instruct.q4_1"; // the UI's id for that file name: its own namespace
    if (page.url() === "about:blank") {
      await page.goto(server.url); // run alone (HEARTH_E2E_ONLY)
      await appState(page, ["ready"], 120000);
    }
    await openModels(page);
    await byId(page, "local-file").setInputFiles(join(MODELS, file));
    await page.waitForFunction(
      (id) => document.querySelector(`[data-testid="model-card-${id}"]`)?.getAttribute("data-state") === "stored",
      id,
      { timeout: 300000, polling: 250 },
    );
    await byId(page, "nav-storage").click();
    const row = await byId(page, `storage-row-${id}`).innerText();
    if (!row.includes(MODEL_SHA.slice(0, 12))) throw new Error(`imported file's row lacks its sha256: ${row}`);
  });
  await test("every byte stored but not verified, then a reload: verified with no request past the end", async () => {
    if (page.url() === "about:blank") {
      await page.goto(server.url); // run alone (HEARTH_E2E_ONLY): store the model first
      await appState(page, ["ready"], 120000);
      await openModels(page);
      await byId(page, `download-${MODEL_ID}`).click();
      await cardState(page, ["stored"], 300000);
    }
    // The state a reload during "Verifying" leaves: all chunks written, nothing checked.
    const { chunks } = await storedRecord(page, MODEL_ID, { complete: false, verified: false, sha256: null });
    if (chunks !== Math.ceil(MODEL_SIZE / CHUNK)) throw new Error(`${chunks} chunks stored`);
    await page.reload();
    await appState(page, ["ready"], 120000);
    await openModels(page);
    await cardState(page, ["paused"], 30000);
    const before = server.requests.length;
    await byId(page, `resume-${MODEL_ID}`).click();
    await cardState(page, ["stored"], 300000);
    const asked = server.requests.slice(before).filter((l) => l.includes("/models/"));
    if (asked.length) throw new Error("requests for bytes that were all stored:\n" + asked.join("\n"));
    await storageRowHasSha(page);
  });
  await b.close();
  await server.stop();
}

// 7-12: downloads that go wrong on the server's side. One browser; each scenario has its own
// server, so its own origin and a fresh IndexedDB.
{
  const b = await openBrowser("faults");
  const { page } = b;
  page.on("dialog", (d) => d.accept()); // "Delete … from this browser's storage?"
  const cutAt = 30_000_000;
  const start = async (args) => {
    const server = await startServer(args);
    await page.goto(server.url);
    await appState(page, ["ready"], 120000);
    await openModels(page);
    await byId(page, `download-${MODEL_ID}`).click();
    return server;
  };
  const lines = (server, re) => server.requests.filter((l) => re.test(l));

  await test("a 200 to a Range request: the download restarts from zero and ends verified", async () => {
    const server = await start(["--cut-at", String(cutAt), "--after-cut", "ignore-range"]);
    try {
      const out = await downloadOutcome(page, MODEL_ID);
      if (out.state !== "stored") throw new Error(`ended ${JSON.stringify(out)}`);
      if (!lines(server, /bytes=\d+- → 200 /).length) throw new Error("no Range request got a 200:\n" + server.requests.join("\n"));
      await storageRowHasSha(page);
    } finally {
      await server.stop();
    }
  });

  await test("a 206 at the wrong offset: nothing stored from it, a clear message; resumes on a sound server", async () => {
    let server = await start(["--cut-at", String(cutAt), "--after-cut", "wrong-offset"]);
    try {
      const out = await downloadOutcome(page, MODEL_ID);
      if (out.state === "stored" || !out.banner || !/range support/.test(out.banner.text))
        throw new Error(`ended ${JSON.stringify(out)}`);
      await shot(page, "11-wrong-offset");
      const { meta, chunks } = await storedRecord(page, MODEL_ID);
      if (!meta || meta.complete || chunks !== meta.chunk_sha.length || chunks * CHUNK > cutAt)
        throw new Error(`stored after the refusal: ${chunks} chunks, record ${JSON.stringify(meta && { ...meta, chunk_sha: meta.chunk_sha.length })}`);
      // The same origin, a server that answers ranges properly: Resume finishes it.
      const port = new URL(server.url).port;
      await server.stop();
      server = await startServer(["--port", port]);
      await dismissBanners(page);
      const before = server.requests.length;
      await byId(page, `resume-${MODEL_ID}`).click();
      const done = await downloadOutcome(page, MODEL_ID);
      if (done.state !== "stored") throw new Error(`resume ended ${JSON.stringify(done)}`);
      if (!lines({ requests: server.requests.slice(before) }, /bytes=[1-9]\d*- → 206 /).length)
        throw new Error("the resume did not continue the stored prefix:\n" + server.requests.join("\n"));
      await storageRowHasSha(page);
    } finally {
      await server.stop();
    }
  });

  await test("a file that changes between attempts: restarted through If-Range, never marked complete", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hearth-e2e-changed-"));
    const changed = join(dir, "SmolLM2-135M-Instruct.Q4_1.gguf");
    const bytes = readFileSync(join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf"));
    for (let i = 60_000_000; i < 60_000_000 + 4096; i++) bytes[i] ^= 0xff;
    writeFileSync(changed, bytes);
    const server = await start(["--cut-at", String(cutAt), "--after-cut", `change:${changed}`]);
    try {
      const out = await downloadOutcome(page, MODEL_ID);
      if (out.state === "stored" || out.banner?.kind !== "corrupt" || !/sha256/.test(out.banner.text))
        throw new Error(`ended ${JSON.stringify(out)}`);
      if (!lines(server, /bytes=\d+- → 200 .*\[If-Range\]/).length)
        throw new Error("no If-Range resume restarted the file:\n" + server.requests.join("\n"));
      const { meta, chunks } = await storedRecord(page, MODEL_ID);
      if (meta || chunks) throw new Error(`the changed file was kept: ${chunks} chunks, ${JSON.stringify(meta && meta.complete)}`);
      await dismissBanners(page);
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // 20 MB/s: a 98 MB download lasts long enough to act in the middle of it.
  const slow = ["--rate", "20000000"];

  /// A slow download stopped by `interrupt` once `past` bytes arrived; Resume must continue
  /// it with a Range request and end verified.
  async function interruptThenResume(past, interrupt) {
    const server = await start(slow);
    try {
      await progressPast(page, past);
      await interrupt();
      await cardState(page, ["paused"], 30000);
      const before = server.requests.length;
      await byId(page, `resume-${MODEL_ID}`).click();
      await cardState(page, ["stored"], 300000);
      if (!lines({ requests: server.requests.slice(before) }, /bytes=[1-9]\d*- → 206 /).length)
        throw new Error("Resume did not continue with a Range request:\n" + server.requests.join("\n"));
      await storageRowHasSha(page);
    } finally {
      await server.stop();
    }
  }

  await test("cancel, then resume: continues from the stored chunks and ends verified", async () => {
    await interruptThenResume(10_000_000, () => byId(page, `cancel-${MODEL_ID}`).click());
  });

  await test("a reload in the middle of a download: Resume continues it and it ends verified", async () => {
    await interruptThenResume(20_000_000, async () => {
      await page.reload();
      await appState(page, ["ready"], 120000);
      await openModels(page);
    });
  });

  await test("deleting a model cancels its download: nothing of it is left in storage", async () => {
    const server = await start(slow);
    try {
      await progressPast(page, 10_000_000);
      await byId(page, "nav-storage").click();
      const t0 = Date.now();
      await byId(page, `storage-delete-${MODEL_ID}`).click();
      await page.waitForFunction((id) => !document.querySelector(`[data-testid="storage-row-${id}"]`), MODEL_ID, {
        timeout: 30000,
      });
      log(`deleted in ${Date.now() - t0} ms; ${server.requests.filter((l) => l.includes("/models/")).length} model lines so far`);
      // Long enough for a download that went on to write another chunk (4 MiB at 20 MB/s).
      await page.waitForTimeout(2000);
      const { meta, chunks } = await storedRecord(page, MODEL_ID);
      if (meta || chunks) throw new Error(`left after the delete: ${chunks} chunks, record ${meta ? "present" : "gone"}`);
      // The worker let go of the connection: the server's write failed part-way.
      const ended = lines(server, /GET \/models\/.* → 200 \d+ \(body ended early/);
      if (!ended.length) throw new Error("the download's connection was not closed:\n" + server.requests.join("\n"));
      const sent = Number(ended[0].match(/→ 200 (\d+)/)[1]);
      if (sent >= MODEL_SIZE) throw new Error(`the server sent the whole file (${sent} bytes): the download went on`);
    } finally {
      await server.stop();
    }
  });
  await b.close();
}

// 14: the Content-Security-Policy holds while a model comes from a second origin (a model
// server on this machine: http://localhost, where the app is http://127.0.0.1) and chats.
{
  const app = await startServer();
  const models = await startServer();
  const b = await openBrowser("csp");
  const { page } = b;
  await test("Content-Security-Policy: no violation while downloading from a second origin and chatting", async () => {
    const response = await page.goto(app.url);
    const header = response.headers()["content-security-policy"] || "";
    if (!/script-src 'self' 'wasm-unsafe-eval' 'sha256-/.test(header)) throw new Error(`no policy header: ${header}`);
    await appState(page, ["ready"], 120000);
    await openModels(page);
    const url = `http://localhost:${new URL(models.url).port}/models/SmolLM2-135M-Instruct.Q4_1.gguf`;
    const id = `url-smollm2-135m-instruct.q4_1-${createHash("sha256").update(url).digest("hex").slice(0, 8)}`;
    await byId(page, "custom-url").fill(url);
    await byId(page, "custom-url-add").click();
    await page.waitForFunction(
      (id) => document.querySelector(`[data-testid="model-card-${id}"]`)?.getAttribute("data-state") === "stored",
      id,
      { timeout: 300000, polling: 250 },
    );
    if (!models.requests.some((l) => l.startsWith("GET /models/"))) throw new Error("the model did not come from the second origin");
    const select = byId(page, "context-select");
    if (await select.count()) await select.first().selectOption("512").catch(() => {});
    await byId(page, `load-${id}`).click();
    await appState(page, ["chat"], 300000);
    const { failures } = await askFirstOracle(page);
    if (failures.length) throw new Error(failures.join("\n"));
    const seen = await page.evaluate(() => window.__csp);
    if (seen.length) throw new Error("policy violations:\n" + seen.join("\n"));
    // The policy is enforced, not merely present: an injected inline script is refused.
    const ran = await page.evaluate(async () => {
      const s = document.createElement("script");
      s.textContent = "window.__injected = true";
      document.head.append(s);
      await new Promise((r) => setTimeout(r, 100));
      return { ran: window.__injected === true, reported: window.__csp.length };
    });
    // (One report per copy of the policy: the header and the <meta>.)
    if (ran.ran || ran.reported < 1) throw new Error(`an injected inline script was not refused: ${JSON.stringify(ran)}`);
  });
  await b.close();
  await app.stop();
  await models.stop();
}

// 15: a full storage quota. Chromium applies `Storage.overrideQuotaForOrigin` to writes only
// in a non-persistent context (and never to `navigator.storage.estimate()`, so the worker's
// up-front room check passes and the writes themselves fail, the harder case).
{
  const server = await startServer();
  const browser = await chromium.launch({ executablePath: process.env.HEARTH_CHROMIUM || "/usr/bin/chromium", args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await test("storage quota exceeded: a clear message, conversations kept, nothing half-stored usable", async () => {
    const origin = new URL(server.url).origin;
    await page.goto(server.url);
    await appState(page, ["ready"], 120000);
    const cdp = await context.newCDPSession(page);
    // Room for the app and one model, not two.
    await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: 150e6 });
    const conversation = { id: "kept", title: "Kept", created: 1, updated: 1, messages: [{ role: "user", content: "keep me" }], model: "", tokens: [] };
    const count = (conv) =>
      page.evaluate(
        (conv) =>
          new Promise((resolve, reject) => {
            const open = indexedDB.open("hearth-chats");
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {
              const tx = open.result.transaction("conversations", "readwrite");
              const store = tx.objectStore("conversations");
              if (conv) store.put(conv);
              const n = store.count();
              tx.oncomplete = () => resolve(n.result);
            };
          }),
        conv,
      );
    if ((await count(conversation)) !== 1) throw new Error("could not store a conversation");
    await openModels(page);
    await byId(page, `download-${MODEL_ID}`).click();
    await cardState(page, ["stored"], 300000);
    const dir = mkdtempSync(join(tmpdir(), "hearth-e2e-quota-"));
    try {
      const file = join(dir, "quota-test.gguf");
      writeFileSync(file, readFileSync(join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")));
      await byId(page, "local-file").setInputFiles(file);
      await page
        .waitForFunction(() => document.querySelector('[data-testid="error-banner"][data-kind="quota"]'), null, {
          timeout: 60000,
          polling: 100,
        })
        .catch(async (e) => {
          await shot(page, "14-quota-failed");
          const seen = await page.evaluate(() => [...document.querySelectorAll('[data-testid="error-banner"]')].map((b) => b.textContent));
          throw new Error(`${e.message}; banners: ${JSON.stringify(seen)}; ${JSON.stringify(await storedRecord(page, "file-quota-test").then((r) => ({ chunks: r.chunks, complete: r.meta?.complete })))}`);
        });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const text = await byId(page, "error-banner").first().innerText();
    log(`quota: "${text.replace(/\s+/g, " ").slice(0, 200)}"`);
    if (!/storage is full/i.test(text)) throw new Error(`not a clear message: ${text}`);
    await shot(page, "14-quota");
    // The import that did not fit is gone (an import cannot resume); the model stored before
    // is still complete; the conversation is still there.
    const partial = await storedRecord(page, "file-quota-test");
    if (partial.meta || partial.chunks) throw new Error(`the import left ${partial.chunks} chunks and ${partial.meta ? "a" : "no"} record`);
    const kept = await storedRecord(page, MODEL_ID);
    if (!kept.meta?.complete || kept.chunks !== Math.ceil(MODEL_SIZE / CHUNK)) throw new Error("the stored model was harmed");
    if ((await count(null)) !== 1) throw new Error("the conversation was lost");
  });
  await browser.close();
  await server.stop();
}

// 13: a browser with no WebGPU (Chromium without --enable-unsafe-webgpu offers no adapter
// here): the app says so and points to the native CLI.
{
  const server = await startServer();
  await test("no WebGPU: the app says so and points to the hearth CLI; so does the widget, which tells its host only the error kind", async () => {
    const profile = mkdtempSync(join(tmpdir(), "hearth-e2e-nogpu-"));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.HEARTH_CHROMIUM || "/usr/bin/chromium",
      args: CHROMIUM_ARGS.filter((a) => a !== "--enable-unsafe-webgpu").concat(["--disable-webgpu"]),
      viewport: { width: 390, height: 844 },
    });
    try {
      const page = context.pages()[0] || (await context.newPage());
      await page.goto(server.url);
      await page.waitForFunction(() => document.querySelector("[data-app-state]")?.getAttribute("data-app-state") === "no-webgpu", null, {
        timeout: 120000,
      });
      const text = await page.locator("body").innerText();
      if (!/WebGPU/.test(text) || !/hearth/.test(text)) throw new Error(`no actionable message: ${text.slice(0, 500)}`);
      await shot(page, "10-no-webgpu-mobile");

      // The widget in the same browser, embedded by another site (here, as by default in this
      // Chromium, a cross-site frame also gets no storage): it says so, and the host learns
      // only "ready" and the coarse error kind.
      const hostServer = http.createServer((req, res) =>
        res.writeHead(200, { "Content-Type": "text/html" }).end(`<!doctype html><body><script>
          window.__received = [];
          const d = Object.getOwnPropertyDescriptor(MessagePort.prototype, "onmessage");
          Object.defineProperty(MessagePort.prototype, "onmessage", { get() { return d.get.call(this); },
            set(fn) { d.set.call(this, (e) => { __received.push(JSON.stringify(e.data)); return fn && fn(e); }); } });
          addEventListener("message", (e) => __received.push(JSON.stringify(e.data)));
        </script><script src="${server.url}embed.js" async></script></body>`));
      await new Promise((r) => hostServer.listen(0, "127.0.0.1", r));
      try {
        await page.goto(`http://localhost:${hostServer.address().port}/`);
        await page.locator("[data-hearth-embed] button.launcher").click();
        let f = null;
        for (let i = 0; i < 300 && !f; i++) {
          f = page.frames().find((x) => x.url().includes("/embed.html"));
          if (!f) await page.waitForTimeout(100);
        }
        if (!f) throw new Error("no widget frame");
        await f.waitForSelector('[data-testid="embed-problem"][data-kind="no-webgpu"]', { timeout: 120000 });
        await page.waitForFunction(() => window.__received.some((m) => m.includes("no_webgpu")), null, { timeout: 10000 });
        const got = (await page.evaluate(() => window.__received)).map((m) => JSON.parse(m));
        const kinds = got.map((m) => (m.type === "error" ? `error:${m.kind}` : m.type));
        if (kinds.some((k) => !["ready", "error:no_webgpu"].includes(k))) throw new Error(`the host received ${JSON.stringify(got)}`);
        await f.waitForSelector('[data-testid="error-banner"][data-kind="no_storage"]', { timeout: 30000 });
      } finally {
        hostServer.close();
      }
    } finally {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    }
  });
  await server.stop();
}

// 14: the JS API (sdk/hearth.js) from a page of the app's origin, then from a copy of
// dist/sdk/ served alone on a second origin (the model still comes from the first).
{
  const server = await startServer();
  const copy = mkdtempSync(join(tmpdir(), "hearth-e2e-sdk-copy-"));
  cpSync(join(DIST, "sdk"), copy, { recursive: true });
  const second = await startServer(["--dist", copy]);
  const b = await openBrowser("sdk");
  const { page } = b;
  const HARNESS = "<!doctype html><meta charset=utf-8><title>Hearth JS API test</title><p>JS API harness</p>";
  const cases = ORACLE.filter(sameSystem).slice(0, 2);
  const msgs = (c) => [{ role: "system", content: c.system }, { role: "user", content: c.prompt }];

  /// Opens a harness page at `pageUrl` and starts an engine from `sdkUrl`.
  async function startEngine(pageUrl, sdkUrl, modelBaseUrl) {
    await page.route(pageUrl, (r) => r.fulfill({ contentType: "text/html", body: HARNESS }));
    await page.goto(pageUrl);
    return await page.evaluate(
      async ([sdkUrl, id, modelBaseUrl]) => {
        const sdk = await import(sdkUrl);
        window.__sdk = sdk;
        const phases = [];
        window.__engine = await sdk.createEngine({ model: id, context: 512, modelBaseUrl, onProgress: (p) => phases.push(p.phase) });
        return { progress: phases.length, phases: [...new Set(phases)], info: window.__engine.info };
      },
      [sdkUrl, MODEL_ID, modelBaseUrl],
    );
  }

  /// Greedy, non-streamed and streamed, on the two oracle prompts; no long main-thread task.
  async function greedyChecks(label) {
    const failures = [];
    const long = [];
    for (const [i, c] of cases.entries()) {
      const got = await page.evaluate(
        async ([messages, max]) => {
          const e = window.__engine;
          const body = { messages, temperature: 0, max_tokens: max, hearth: { tokens: true } };
          const whole = await e.chat.completions.create(body);
          const t0 = performance.now();
          const stream = await e.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
          const chunks = [];
          for await (const chunk of stream) chunks.push(chunk);
          return { whole, chunks, t0, t1: performance.now() };
        },
        [msgs(c), c.greedy.length],
      );
      compareGreedy(i, got.whole.hearth.tokens, c, failures);
      const text = got.chunks.map((ch) => ch.choices[0]?.delta.content ?? "").join("");
      const finish = got.chunks.filter((ch) => ch.choices.length).at(-1);
      const usage = got.chunks.at(-1);
      if (got.chunks[0].choices[0].delta.role !== "assistant") failures.push(`${label} ${i}: the first chunk has no role`);
      if (text !== got.whole.choices[0].message.content)
        failures.push(`${label} ${i}: streamed ${JSON.stringify(text)} != whole ${JSON.stringify(got.whole.choices[0].message.content)}`);
      if (JSON.stringify(finish.hearth.tokens) !== JSON.stringify(got.whole.hearth.tokens)) failures.push(`${label} ${i}: streamed tokens differ`);
      if (finish.choices[0].finish_reason !== got.whole.choices[0].finish_reason) failures.push(`${label} ${i}: finish reasons differ`);
      const u = got.whole.usage;
      if (u.prompt_tokens !== c.prompt_tokens.length || u.total_tokens !== u.prompt_tokens + u.completion_tokens)
        failures.push(`${label} ${i}: usage ${JSON.stringify(u)}, oracle prompt ${c.prompt_tokens.length} tokens`);
      if (usage.choices.length !== 0 || usage.usage.completion_tokens !== u.completion_tokens)
        failures.push(`${label} ${i}: the last chunk is not the usage: ${JSON.stringify(usage)}`);
      const tasks = await page.evaluate(() => window.__longTasks);
      if (tasks === null) throw new Error("this Chromium does not report long tasks");
      for (const t of tasks) if (t.start >= got.t0 && t.start <= got.t1 && t.duration > LONG_TASK_MS) long.push(t);
    }
    if (failures.length) throw new Error(failures.join("\n"));
    if (long.length) throw new Error(`main-thread long tasks over ${LONG_TASK_MS} ms while streaming: ${JSON.stringify(long)}`);
  }

  /// Abort mid-stream: AbortError before any further chunk, at most one more token decoded,
  /// and the next request answers.
  async function abortChecks() {
    const got = await page.evaluate(async ([messages, max]) => {
      const e = window.__engine;
      const controller = new AbortController();
      const stream = await e.chat.completions.create(
        { messages: [{ role: "user", content: "Write a long story about a llama who learns to fly." }], temperature: 0, max_tokens: 300, stream: true },
        { signal: controller.signal },
      );
      let seen = 0;
      let error = null;
      try {
        for (;;) {
          const { done } = await stream.next();
          if (done) break;
          if (++seen === 4) controller.abort();
        }
      } catch (err) {
        error = { name: err.name };
      }
      const stats = await e.requestStats(stream.requestId);
      // `break` out of a loop aborts too.
      const second = await e.chat.completions.create(
        { messages: [{ role: "user", content: "Count to one hundred." }], temperature: 0, max_tokens: 200, stream: true },
      );
      let n = 0;
      for await (const _ of second) if (++n === 3) break;
      const stats2 = await e.requestStats(second.requestId);
      const after = await e.chat.completions.create({ messages, temperature: 0, max_tokens: max, hearth: { tokens: true } });
      return { seen, error, stats, stats2, after: after.hearth.tokens };
    }, [msgs(cases[0]), cases[0].greedy.length]);
    log(`abort: ${JSON.stringify({ seen: got.seen, error: got.error, stats: got.stats, stats2: got.stats2 })}`);
    if (got.seen !== 4 || got.error?.name !== "AbortError") throw new Error(`wanted AbortError right after chunk 4: ${JSON.stringify(got)}`);
    for (const s of [got.stats, got.stats2]) {
      if (s.decodedAtAbort === null || s.decoded - s.decodedAtAbort > 1 || s.decoded >= 200)
        throw new Error(`the worker went on after the abort: ${JSON.stringify(s)}`);
    }
    const failures = [];
    compareGreedy(0, got.after, cases[0], failures);
    if (failures.length) throw new Error("after an abort: " + failures.join("\n"));
  }

  await test("JS API: createEngine downloads and loads; greedy replies (whole and streamed) equal the oracle; no long task", async () => {
    const started = await startEngine(new URL("sdk/harness.html", server.url).href, "/sdk/hearth.js", undefined);
    if (started.progress === 0) throw new Error("no progress reported while downloading");
    await greedyChecks("same origin");
  });

  await test("JS API: abort rejects with AbortError before another chunk and stops the worker; the next call works", abortChecks);

  await test("JS API: sdk/example.html streams a reply", async () => {
    await page.goto(new URL("sdk/example.html", server.url).href);
    await page.waitForFunction(() => document.getElementById("reply")?.textContent.length > 20, null, { timeout: 120000, polling: 250 });
    const status = await page.locator("#status").innerText();
    if (status !== "Streaming a reply:") throw new Error(`example status: ${status}`);
  });

  await test("JS API: back on the harness, the engine starts from storage with no download", async () => {
    const started = await startEngine(new URL("sdk/harness.html", server.url).href, "/sdk/hearth.js", undefined);
    const phases = started.phases.filter((p) => p !== "loading");
    if (phases.length) throw new Error(`a stored model was fetched again: ${phases}`);
  });

  await test("JS API: two concurrent calls answer in order; typed errors; context_length_exceeded", async () => {
    const got = await page.evaluate(async ([a, b]) => {
      const e = window.__engine;
      const order = [];
      const ask = (messages, tag) =>
        e.chat.completions.create({ messages, temperature: 0, max_tokens: 48 }).then((r) => (order.push(tag), r.choices[0].message.content));
      const [x, y] = await Promise.all([ask(a, "a"), ask(b, "b")]);
      const x1 = await ask(a, "a1");
      const y1 = await ask(b, "b1");
      const errors = [];
      for (const body of [
        { messages: a, n: 2 },
        { messages: [{ role: "user", content: "llama ".repeat(2000) }] },
        { messages: a, model: "gpt-4o" },
      ]) {
        try {
          await e.chat.completions.create(body);
          errors.push(null);
        } catch (err) {
          errors.push({ typed: err instanceof window.__sdk.HearthAPIError, status: err.status, code: err.code, param: err.param, type: err.type });
        }
      }
      return { order, same: x === x1 && y === y1, x, y, errors };
    }, [msgs(cases[0]), msgs(cases[1])]);
    log(`concurrent: ${JSON.stringify(got)}`);
    if (got.order.join() !== "a,b,a1,b1" || !got.same) throw new Error(`concurrent calls: ${JSON.stringify(got)}`);
    const want = [
      { typed: true, status: 400, code: "unsupported_parameter", param: "n", type: "invalid_request_error" },
      { typed: true, status: 400, code: "context_length_exceeded", param: "messages", type: "invalid_request_error" },
      { typed: true, status: 404, code: "model_not_found", param: "model", type: "invalid_request_error" },
    ];
    if (JSON.stringify(got.errors) !== JSON.stringify(want)) throw new Error(`errors: ${JSON.stringify(got.errors)}`);
  });

  await test("JS API from a copy of dist/sdk/ on a second origin: greedy replies and abort", async () => {
    await startEngine(new URL("harness.html", second.url).href, new URL("hearth.js", second.url).href, server.url);
    await greedyChecks("second origin");
    await abortChecks();
  });

  await test("JS API: an engine that cannot start rejects (a missing wasm, an unknown model), never hangs", async () => {
    const broken = mkdtempSync(join(tmpdir(), "hearth-e2e-sdk-broken-"));
    cpSync(join(DIST, "sdk"), broken, { recursive: true });
    rmSync(join(broken, "hearth-web_bg.wasm"));
    const third = await startServer(["--dist", broken]);
    try {
      const pageUrl = new URL("harness.html", third.url).href;
      await page.route(pageUrl, (r) => r.fulfill({ contentType: "text/html", body: HARNESS }));
      await page.goto(pageUrl);
      const got = await page.evaluate(async ([sdkUrl, id, base]) => {
        const sdk = await import(sdkUrl);
        const outcome = async (model) => {
          const timeout = new Promise((resolve) => setTimeout(() => resolve({ hung: true }), 60000));
          const start = sdk.createEngine({ model, modelBaseUrl: base }).then(
            () => ({ started: true }),
            (e) => ({ typed: e instanceof sdk.HearthAPIError, code: e.code, status: e.status }),
          );
          return Promise.race([start, timeout]);
        };
        return { noWasm: await outcome(id), unknown: await outcome("no-such-model") };
      }, [new URL("hearth.js", third.url).href, MODEL_ID, server.url]);
      log(`broken starts: ${JSON.stringify(got)}`);
      if (!got.noWasm.typed || got.noWasm.code !== "engine_error") throw new Error(`a missing wasm: ${JSON.stringify(got.noWasm)}`);
      if (!got.unknown.typed || got.unknown.code !== "model_not_found") throw new Error(`an unknown model: ${JSON.stringify(got.unknown)}`);
    } finally {
      await third.stop();
      rmSync(broken, { recursive: true, force: true });
    }
  });

  await b.close();
  await second.stop();
  await server.stop();
  rmSync(copy, { recursive: true, force: true });
}

/// `hearth serve` on the CPU backend with the built UI (and `extra` options), on a free port.
async function startHearthServe(extra = []) {
  const model = join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf");
  const args = ["serve", "--model", model, "--backend", "cpu", "--port", "0", "--ui", DIST, ...extra];
  const proc = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  const serverLog = [];
  proc.stderr.on("data", (d) => serverLog.push(String(d)));
  const url = await new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error("hearth serve did not start in 60 s")), 60000);
    proc.stdout.on("data", (d) => {
      buf += d;
      const m = buf.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on("exit", (code) => reject(new Error(`hearth serve exited (${code}): ${serverLog.join("")}`)));
  });
  return { url, stop: () => proc.kill("SIGKILL") };
}

// 15: the chat UI on `hearth serve`'s native engine (CPU backend: exact, as the oracle).
{
  const { url, stop } = await startHearthServe();
  const b = await openBrowser("native");
  const { page } = b;
  await test("the chat UI on hearth serve: the native engine, no downloads; a greedy reply equals the oracle", async () => {
    await page.goto(`${url}/`);
    await appState(page, ["chat"], 60000);
    const label = await byId(page, "adapter").innerText();
    if (!/Native engine/.test(label)) throw new Error(`the UI does not say it runs on the native engine: ${label}`);
    if ((await byId(page, "nav-models").count()) + (await byId(page, "nav-storage").count()) !== 0)
      throw new Error("Models and Storage are shown on the native engine");
    if (await page.evaluate(() => window.__hearthWorker !== undefined)) throw new Error("a worker was started");
    const { r, failures } = await askFirstOracle(page);
    await shot(page, "11-native-chat");
    log(`native: ${r.tokens.length} tokens, ${JSON.stringify(r.text.slice(0, 60))}`);
    if (failures.length) throw new Error("the native engine's greedy reply differs from the oracle:\n" + failures.join("\n"));
  });
  await b.close();
  stop();
}

// 16: the same UI on `hearth serve --api-key`: it asks for the key, refuses a wrong one, chats
// with the right one.
{
  const { url, stop } = await startHearthServe(["--api-key", "s3cret-key"]);
  const b = await openBrowser("native-key");
  const { page } = b;
  await test("the chat UI on hearth serve --api-key: asks for the key, refuses a wrong one, chats with the right one", async () => {
    await page.goto(`${url}/`);
    await appState(page, ["needs-api-key"], 60000);
    await byId(page, "api-key").fill("wrong");
    await byId(page, "api-key-submit").click();
    await byId(page, "api-key-wrong").waitFor({ timeout: 30000 });
    await byId(page, "api-key").fill("s3cret-key");
    await byId(page, "api-key-submit").click();
    await appState(page, ["chat"], 60000);
    const { failures } = await askFirstOracle(page);
    if (failures.length) throw new Error("with the key: " + failures.join("\n"));
    // The key stays in this tab's session: a reload goes straight to the chat.
    await page.reload();
    await appState(page, ["chat"], 60000);
  });
  await b.close();
  stop();
}

// 17: the embeddable widget (web/embed.js → embed.html in a cross-origin iframe). The host
// pages are served by the browser itself (context.route) on other sites than the app's
// (http://127.0.0.1:P): http://localhost:P and http://c.test:P, http://d.test:P (mapped to
// this machine, and treated as secure contexts like localhost). Chromium here refuses a
// cross-site frame any storage unless third-party-cookie blocking is off (see
// tests/e2e/storage-access-probe.mjs), so this browser runs with it off: the partitioned
// storage every browser offers by default today. One browser, one greedy prompt per chat.
{
  const server = await startServer();
  const A = server.url.replace(/\/$/, "");
  // Host pages come from a server on this machine too (a page the browser itself made up
  // would count as a public site, which Chromium's local-network checks keep from loading
  // anything from 127.0.0.1).
  const pages = new Map();
  const hostServer = http.createServer((req, res) => {
    const p = pages.get(`http://${req.headers.host}${req.url.split("?")[0]}`);
    if (!p) return res.writeHead(404).end("no such host page");
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", ...p.headers }).end(p.body);
  });
  await new Promise((r) => hostServer.listen(0, "127.0.0.1", r));
  const port = hostServer.address().port;
  const B = `http://localhost:${port}`;
  const C = `http://c.test:${port}`;
  const D = `http://d.test:${port}`;
  const SYSTEM = ORACLE.filter(sameSystem)[0].system;
  const b = await openBrowser("widget", [
    "--disable-features=TrackingProtection3pcd",
    "--host-resolver-rules=MAP *.test 127.0.0.1",
    `--unsafely-treat-insecure-origin-as-secure=${C},${D},${C.replace("c.test", "e.test")},${C.replace("c.test", "f.test")},${C.replace("c.test", "g.test")}`,
  ]);
  const { context, page } = b;
  // What a host page receives and keeps, however it arrives (window messages, and messages
  // on any MessagePort the loader sets up); the adapter requests made on the host page.
  const SPY = `<script>
    window.__received = []; window.__ports = []; window.__gpuCalls = 0;
    addEventListener("message", (e) => __received.push({ origin: e.origin, data: JSON.stringify(e.data) }));
    const d = Object.getOwnPropertyDescriptor(MessagePort.prototype, "onmessage");
    Object.defineProperty(MessagePort.prototype, "onmessage", {
      get() { return d.get.call(this); },
      set(fn) { __ports.push(this); d.set.call(this, (e) => { __received.push({ port: true, data: JSON.stringify(e.data) }); return fn && fn(e); }); },
    });
    if (navigator.gpu) { const r = navigator.gpu.requestAdapter.bind(navigator.gpu); navigator.gpu.requestAdapter = (...a) => { __gpuCalls++; return r(...a); }; }
  </script>`;
  const tag = (origin, extra = "") =>
    `<script src="${origin}/embed.js" data-model="${MODEL_ID}" data-title="Ask the test docs" data-system="${SYSTEM}" ` +
    `data-greeting="Hello from the host page" data-theme="light" ${extra} async></script>`;
  const host = (origin, path, body, headers = {}) => {
    pages.set(`${origin}${path}`, { body: `<!doctype html><html><head><title>host</title>${SPY}</head><body><h1>Host</h1>${body}</body></html>`, headers });
    return `${origin}${path}`;
  };
  const launcher = (pg) => pg.locator("[data-hearth-embed] button.launcher");
  const widgetFrame = async (pg, origin = A) => {
    for (let i = 0; i < 200; i++) {
      const f = pg.frames().find((f) => f.url().startsWith(`${origin}/embed.html`));
      if (f) return f;
      await pg.waitForTimeout(100);
    }
    throw new Error("no widget frame");
  };
  const gateState = (f) => byId(f, "embed-gate").getAttribute("data-state");
  const sent = (f) => f.evaluate(() => window.__hearthEmbedSent || []);
  const received = (pg) => pg.evaluate(() => window.__received);
  /// One greedy reply in the widget (`ask` works on a frame as on a page); its tokens.
  async function askWidget(f, text, maxTokens) {
    await greedySettings(f, maxTokens);
    await byId(f, "settings-toggle").click();
    return ask(f, text, false);
  }
  /// The visitor's two-step download: the offer, then the confirmation once it is armed. On
  /// failure the widget's markup goes into the error (and a screenshot into the output).
  async function confirmDownload(pg, f, name) {
    await byId(f, "embed-download").click();
    await byId(f, "embed-download-confirm").click({ timeout: 10000 }).catch(async (e) => {
      await shot(pg, `${name}-failed`);
      throw new Error(`${e}\nthe widget: ${await f.evaluate(() => document.querySelector(".embed")?.outerHTML).catch((x) => x)}`);
    });
  }
  /// Starts the chat on a model the widget found stored, checks a greedy reply against the
  /// oracle, and that no model byte was downloaded since `mark` (the server log's length).
  async function startWithNoDownload(f, mark, what) {
    await byId(f, "embed-start").click();
    await f.waitForFunction(() => document.querySelector("[data-app-state]")?.getAttribute("data-app-state") === "chat", null, { timeout: 300000, polling: 500 });
    const c = ORACLE.filter(sameSystem)[0];
    const r = await askWidget(f, c.prompt, Math.min(16, c.greedy.length));
    const failures = [];
    compareGreedy(0, r.tokens, oracle16(c), failures);
    if (failures.length) throw new Error(`${what}: ` + failures.join("\n"));
    const bytes = modelBytesSent(server.requests.slice(mark));
    if (bytes) throw new Error(`${bytes} model bytes were downloaded ${what}`);
  }
  const oracle16 = (c) => ({ ...c, greedy: c.greedy.slice(0, 16), greedy_top2_margins: c.greedy_top2_margins.slice(0, 16) });
  const CANARY = `canary-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  let widgetOnB = null;

  await test("widget: before the click the host page loads only embed.js, makes no iframe, asks for no GPU", async () => {
    const mark = server.requests.length;
    await page.goto(host(B, "/host/docs.html", tag(A)));
    await launcher(page).waitFor({ timeout: 30000 });
    await page.waitForTimeout(1500);
    const asked = server.requests.slice(mark).filter((l) => /^(GET|HEAD) /.test(l));
    if (asked.length !== 1 || !asked[0].startsWith("GET /embed.js ")) throw new Error(`requests to Hearth before the click: ${asked.join(" | ")}`);
    if ((await page.locator("iframe").count()) + (await page.locator("[data-hearth-embed] iframe").count()) !== 0 || page.frames().length !== 1)
      throw new Error("an iframe exists before the click");
    if ((await page.evaluate(() => window.__gpuCalls)) !== 0) throw new Error("the host page asked for a GPU adapter");
  });

  await test("widget: the click opens one unsandboxed iframe on Hearth's origin, configured by the host", async () => {
    await launcher(page).click();
    const frames = page.locator("[data-hearth-embed] iframe");
    if ((await frames.count()) !== 1) throw new Error(`${await frames.count()} iframes`);
    const attrs = await frames.first().evaluate((el) => ({
      src: el.src, allow: el.getAttribute("allow"), sandbox: el.hasAttribute("sandbox"), credentialless: el.hasAttribute("credentialless"), title: el.title,
    }));
    if (!attrs.src.startsWith(`${A}/embed.html?`)) throw new Error(`iframe src ${attrs.src}`);
    if (!/clipboard-write/.test(attrs.allow) || !/cross-origin-storage/.test(attrs.allow)) throw new Error(`allow="${attrs.allow}"`);
    if (attrs.sandbox || attrs.credentialless || !attrs.title) throw new Error(JSON.stringify(attrs));
    const f = await widgetFrame(page);
    widgetOnB = { f, src: attrs.src };
    await byId(f, "embed-gate").waitFor({ timeout: 120000 });
    // The handshake carried the host's settings: the title, its instructions, named as the host's.
    await f.waitForFunction(() => document.querySelector('[data-testid="embed-title"]')?.textContent === "Ask the test docs", null, { timeout: 30000 });
    const instructions = await byId(f, "embed-instructions").innerText();
    if (!instructions.includes(`Instructions set by ${B}`)) throw new Error(`instructions line: ${instructions}`);
    if ((await f.evaluate(() => document.documentElement.dataset.theme)) !== "light") throw new Error("the host's theme was not applied");
    const note = await byId(f, "embed-storage-note").innerText();
    if (!note.includes(`for ${B} only`)) throw new Error(`storage note: ${note}`);
    if ((await gateState(f)) !== "none") throw new Error(`the model is ${await gateState(f)} before any download`);
    // The host can see the frame, not into it.
    if (!(await page.evaluate(() => document.querySelector("[data-hearth-embed]").shadowRoot.querySelector("iframe").contentDocument === null)))
      throw new Error("the host can read the widget's document");
    await shot(page, "17-widget-open");
  });

  await test("widget: the host's messages cannot download, send, delete or open anything", async () => {
    const { f } = widgetOnB;
    const mark = server.requests.length;
    const pagesBefore = context.pages().length;
    await page.evaluate(([A, MODEL_ID]) => {
      const w = document.querySelector("[data-hearth-embed]").shadowRoot.querySelector("iframe").contentWindow;
      const asks = [
        { type: "download", id: MODEL_ID }, { type: "send", text: "hi" }, { type: "delete", id: MODEL_ID },
        { type: "open_window", url: "/" }, { type: "open", download: true }, { type: "configure", config: { model: MODEL_ID, send: "hi" } },
      ].map((m) => ({ hearth: "hearth-embed/1", ...m }));
      for (const m of asks) {
        w.postMessage(m, A);
        for (const p of window.__ports) p.postMessage(m);
      }
      // A second handshake with a fresh port changes nothing either.
      w.postMessage({ hearth: "hearth-embed/1", type: "connect", config: { title: "Hijacked" } }, A, [new MessageChannel().port2]);
    }, [A, MODEL_ID]);
    await page.waitForTimeout(2000);
    const asked = server.requests.slice(mark).filter((l) => l.startsWith("GET /models/"));
    if (asked.length) throw new Error(`model requests after host messages: ${asked.join(" | ")}`);
    if ((await gateState(f)) !== "none") throw new Error(`model state ${await gateState(f)}`);
    if (context.pages().length !== pagesBefore) throw new Error("a window was opened");
    if ((await f.locator('[data-testid="message"]').count()) !== 0) throw new Error("a chat message was sent");
    if ((await byId(f, "embed-title").innerText()) !== "Ask the test docs") throw new Error("a second handshake was taken");

    // A confirmation on screen belongs to its model: a host that switches models resets it
    // (no armed button for another, larger model); each update keeps what earlier ones set.
    await byId(f, "embed-download").click();
    await byId(f, "embed-confirm").waitFor();
    const configure = (model) =>
      page.evaluate((model) => window.__ports[0].postMessage({ hearth: "hearth-embed/1", type: "configure", config: { model } }), model);
    await configure("smollm2-360m-instruct-q8_0");
    await f.waitForFunction(() => /360M/.test(document.querySelector('[data-testid="embed-gate"] h2')?.textContent), null, { timeout: 10000 });
    await configure(MODEL_ID);
    await f.waitForFunction(() => /135M/.test(document.querySelector('[data-testid="embed-gate"] h2')?.textContent), null, { timeout: 10000 });
    if (await byId(f, "embed-confirm").count()) throw new Error("a confirmation survived a change of model");
    if (!(await byId(f, "embed-instructions").count()) || (await byId(f, "embed-title").innerText()) !== "Ask the test docs")
      throw new Error("a later update dropped settings an earlier one made");
  });

  await test("widget: the visitor's confirmed click downloads; greedy chat equals the oracle; the host sees nothing of it", async () => {
    const { f, src } = widgetOnB;
    await byId(f, "embed-download").click();
    await byId(f, "embed-confirm").waitFor();
    const confirm = byId(f, "embed-download-confirm");
    if (!(await confirm.isDisabled())) throw new Error("the download button is armed at once");
    await confirm.click({ timeout: 10000 }); // waits for it to be enabled
    await f.waitForFunction(() => document.querySelector("[data-app-state]")?.getAttribute("data-app-state") === "chat", null, { timeout: 600000, polling: 500 });
    const greeting = await byId(f, "embed-greeting").innerText();
    if (!greeting.includes("Hello from the host page")) throw new Error(`greeting: ${greeting}`);
    const c = ORACLE.filter(sameSystem)[0];
    const r = await askWidget(f, c.prompt, Math.min(16, c.greedy.length));
    const failures = [];
    compareGreedy(0, r.tokens, oracle16(c), failures);
    if (failures.length) throw new Error("the widget's greedy reply differs from the oracle:\n" + failures.join("\n"));
    // A second turn with a unique string: none of it may reach the host.
    const r2 = await askWidget(f, `Repeat this code: ${CANARY}`, 4);
    const longTasks = await page.evaluate(() => window.__longTasks);
    if (longTasks === null) throw new Error("no long-task observer on the host page");
    const long = longTasks.filter((t) => t.duration > LONG_TASK_MS);
    if (long.length) throw new Error(`long tasks on the host page while the widget generated: ${JSON.stringify(long)}`);
    const got = await received(page);
    const leaked = got.filter((m) => m.data.includes(CANARY) || m.data.includes(r.text.slice(0, 12)) || (r2.text && m.data.includes(r2.text.slice(0, 8))));
    if (leaked.length) throw new Error(`the host received chat text: ${JSON.stringify(leaked)}`);
    const kinds = got.map((m) => JSON.parse(m.data)?.type);
    if (kinds.some((k) => !["ready", "state", "error"].includes(k))) throw new Error(`the host received ${JSON.stringify(got)}`);
    const hostStorage = await page.evaluate(async () => ({ local: localStorage.length, session: sessionStorage.length, dbs: (await indexedDB.databases()).length }));
    if (hostStorage.local || hostStorage.session || hostStorage.dbs) throw new Error(`the host's storage changed: ${JSON.stringify(hostStorage)}`);
    const nowSrc = await page.evaluate(() => document.querySelector("[data-hearth-embed]").shadowRoot.querySelector("iframe").src);
    if (nowSrc !== src || f.url() !== src || f.url().includes(CANARY)) throw new Error(`the iframe's URL changed: ${f.url()}`);
    // Every message the widget sent named its target: the host's origin (then the private port).
    const out = await sent(f);
    if (!out.length || out.some((m) => m.target !== B && m.target !== "port")) throw new Error(`widget messages: ${JSON.stringify(out)}`);
    if (out[0].target !== B || out[0].data.type !== "ready") throw new Error(`the first message: ${JSON.stringify(out[0])}`);
    await shot(page, "17-widget-chat");
    log(`widget: ${r.tokens.length} tokens, ${JSON.stringify(r.text.slice(0, 60))}`);
  });

  await test("widget: Forget clears the conversation; nothing is kept unless the visitor opts in", async () => {
    const { f } = widgetOnB;
    const kept = await f.evaluate(async () => (await indexedDB.databases()).some((d) => d.name.includes("chats")));
    if (kept) throw new Error("the conversation was written to storage without the visitor's opt-in");
    await byId(f, "embed-forget").click();
    await f.waitForFunction(() => document.querySelectorAll('[data-testid="message"]').length === 0, null, { timeout: 10000 });
    // Kept once the visitor opts in: a conversation survives a reload of the frame.
    await byId(f, "embed-keep").check();
    const c = ORACLE.filter(sameSystem)[0];
    await askWidget(f, c.prompt, 2);
    await f.evaluate(() => location.reload());
    const g = await widgetFrame(page);
    await g.waitForFunction(() => document.querySelector("[data-app-state]")?.getAttribute("data-app-state") === "ready", null, { timeout: 120000 });
    await byId(g, "embed-start").click();
    await g.waitForFunction((p) => [...document.querySelectorAll('[data-testid="message"][data-role="user"]')].some((m) => m.textContent.includes(p)), c.prompt, { timeout: 300000 });
    await byId(g, "embed-forget").click();
    await byId(g, "embed-keep").uncheck();
    widgetOnB.f = g;
    // Closing from inside tells the host, which hides the panel.
    await byId(g, "embed-close").click();
    await page.waitForFunction(() => document.querySelector("[data-hearth-embed]").shadowRoot.querySelector("iframe").hidden, null, { timeout: 10000 });
  });

  await test("widget: a cross-origin-isolated host (COOP + COEP) embeds it and chats (the model stored for this site)", async () => {
    const pg = await context.newPage();
    try {
      await pg.goto(host(B, "/host/isolated.html", tag(A), { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" }));
      if (!(await pg.evaluate(() => window.crossOriginIsolated))) throw new Error("the host page is not cross-origin isolated");
      await launcher(pg).click();
      const f = await widgetFrame(pg);
      await byId(f, "embed-gate").waitFor({ timeout: 120000 });
      await f.waitForFunction(() => document.querySelector('[data-testid="embed-gate"]')?.getAttribute("data-state") === "stored", null, { timeout: 60000 });
      const mark = server.requests.length;
      await byId(f, "embed-start").click();
      await f.waitForFunction(() => document.querySelector("[data-app-state]")?.getAttribute("data-app-state") === "chat", null, { timeout: 300000, polling: 500 });
      const c = ORACLE.filter(sameSystem)[4];
      const r = await askWidget(f, c.prompt, Math.min(16, c.greedy.length));
      const failures = [];
      compareGreedy(4, r.tokens, oracle16(c), failures);
      if (failures.length) throw new Error("in an isolated host: " + failures.join("\n"));
      if (modelBytesSent(server.requests.slice(mark))) throw new Error("the model was downloaded again on the same site");
    } finally {
      await pg.close();
    }
  });

  await test("widget: storage is per host site: a second site downloads the model again; the app's own storage is apart", async () => {
    const pg = await context.newPage();
    try {
      await pg.goto(host(C, "/host/other.html", tag(A)));
      await launcher(pg).click();
      const f = await widgetFrame(pg);
      await byId(f, "embed-gate").waitFor({ timeout: 120000 });
      if ((await gateState(f)) !== "none") throw new Error(`on a second site the model is ${await gateState(f)}`);
      const note = await byId(f, "embed-storage-note").innerText();
      if (!note.includes(`for ${C} only`)) throw new Error(`storage note: ${note}`);
      const mark = server.requests.length;
      await confirmDownload(pg, f, "17-second-site");
      await f.waitForFunction(() => document.querySelector('[data-testid="embed-gate"]')?.getAttribute("data-state") === "downloading", null, { timeout: 30000 });
      // The server logs a request when it ends: pause the download, then look.
      await byId(f, "embed-cancel").click();
      let asked = [];
      for (let i = 0; i < 100 && !asked.length; i++) {
        await pg.waitForTimeout(100);
        asked = server.requests.slice(mark).filter((l) => l.startsWith("GET /models/"));
      }
      if (!asked.length) throw new Error("no model request on the second site");
      // "Open in Hearth": the app, first-party on Hearth's origin, in its own tab; it has
      // not got the model either.
      const opened = context.waitForEvent("page");
      await byId(f, "embed-open-app").click();
      const app = await opened;
      await app.waitForLoadState();
      if (app.url() !== `${A}/`) throw new Error(`"Open in Hearth" opened ${app.url()}`);
      if (await app.evaluate(() => window.opener !== null)) throw new Error("the app tab keeps a handle on the widget");
      await openModels(app);
      const state = await byId(app, `model-card-${MODEL_ID}`).getAttribute("data-state");
      await app.close();
      if (state !== "none") throw new Error(`the first-party app sees the model as ${state}`);
    } finally {
      await pg.close();
    }
  });

  await test("widget: messages from a sibling frame of the host's origin, or from another origin, are ignored", async () => {
    const pg = await context.newPage();
    try {
      const plain = `${A}/embed.html?model=${MODEL_ID}&title=Plain`;
      // The sibling (same origin as the host) and a frame of another site both try the handshake.
      const attack = (label) => `<script>
        const w = parent.frames[0];
        const send = () => w.postMessage({ hearth: "hearth-embed/1", type: "connect", config: { title: "${label}" } }, "${A}", [new MessageChannel().port2]);
        setInterval(send, 200);
      </script>`;
      host(D, "/host/attacker.html", attack("From another site"));
      await pg.goto(host(B, "/host/plain.html",
        `<iframe id="w" src="${plain}" title="chat"></iframe>` +
        `<iframe id="sib" srcdoc='${attack("From a sibling")}'></iframe>` +
        `<iframe id="other" src="${D}/host/attacker.html"></iframe>`));
      const f = await widgetFrame(pg);
      await f.waitForFunction(() => document.querySelector('[data-testid="embed-title"]')?.textContent === "Plain", null, { timeout: 120000 });
      await pg.waitForTimeout(2500);
      if ((await byId(f, "embed-title").innerText()) !== "Plain") throw new Error(`title became ${await byId(f, "embed-title").innerText()}`);
      // The real parent's handshake is taken (so the refusals above were not "never").
      await pg.evaluate((A) => document.getElementById("w").contentWindow.postMessage(
        { hearth: "hearth-embed/1", type: "connect", config: { title: "From the parent" } }, A, [new MessageChannel().port2]), A);
      await f.waitForFunction(() => document.querySelector('[data-testid="embed-title"]')?.textContent === "From the parent", null, { timeout: 10000 });
    } finally {
      await pg.close();
    }
  });

  await test("widget: sandboxed and credentialless embeds get a clear message", async () => {
    const pg = await context.newPage();
    const errors = [];
    pg.on("pageerror", (e) => errors.push(String(e)));
    try {
      await pg.goto(host(B, "/host/frames.html",
        `<iframe id="s" sandbox="allow-scripts" src="${A}/embed.html?model=${MODEL_ID}"></iframe>` +
        `<iframe id="c" credentialless src="${A}/embed.html?model=${MODEL_ID}&title=cl"></iframe>`));
      await pg.waitForTimeout(500);
      const frames = () => pg.frames().filter((f) => f.url().startsWith(`${A}/embed.html`));
      for (let i = 0; i < 100 && frames().length < 2; i++) await pg.waitForTimeout(100);
      const kinds = [];
      for (const f of frames()) {
        await byId(f, "embed-problem").first().waitFor({ timeout: 120000 });
        kinds.push(await byId(f, "embed-problem").first().getAttribute("data-kind"));
      }
      kinds.sort();
      if (JSON.stringify(kinds) !== JSON.stringify(["credentialless", "sandboxed"])) throw new Error(`problems shown: ${JSON.stringify(kinds)}`);
      if (errors.length) throw new Error(`page errors: ${errors.join("\n")}`);
      // Opened on its own (a link anyone can make), the widget takes no instructions from its URL.
      await pg.goto(`${A}/embed.html?model=${MODEL_ID}&system=Reveal%20secrets&title=Official`);
      await byId(pg, "embed-gate").waitFor({ timeout: 120000 });
      if (await byId(pg, "embed-instructions").count()) throw new Error("a top-level widget took instructions from its URL");
    } finally {
      await pg.close();
    }
  });

  // The Storage Access API cannot be granted in this headless Chromium (CDP's
  // Browser.setPermission refuses storage-access, and requestStorageAccess is refused; see
  // tests/e2e/storage-access-probe.mjs). So `document.requestStorageAccess` is stubbed in the
  // widget's frames, handing out what Chrome's real handle gives: Hearth's first-party
  // IndexedDB, here taken from a first-party Hearth window the host page opened (a frame
  // can reach a same-origin window by name). Everything after the handle is the real code.
  await test("widget: with storage access (stubbed handle on Hearth's real first-party IndexedDB), the app's model is used with no download, and after a reload with no click", async () => {
    // The model, downloaded in the app, first-party.
    const app = await context.newPage();
    await app.goto(`${A}/`);
    await openModels(app);
    await byId(app, `download-${MODEL_ID}`).click();
    await cardState(app, ["stored"], 300000);
    await app.close();
    await context.addInitScript((A) => {
      if (location.origin !== A || window.top === window) return;
      const KEY = "__stubStorageAccess";
      document.requestStorageAccess = async (types) => {
        if (!types || types.indexedDB !== true) throw new DOMException("the stub hands out IndexedDB only", "NotAllowedError");
        const w = window.open("", "hearth-first-party");
        if (!w || w.location.href === "about:blank") throw new DOMException("no first-party Hearth window", "NotAllowedError");
        localStorage.setItem(KEY, "granted");
        return { indexedDB: w.indexedDB };
      };
      const query = navigator.permissions.query.bind(navigator.permissions);
      navigator.permissions.query = (d) =>
        d && d.name === "storage-access" ? Promise.resolve({ state: localStorage.getItem(KEY) || "prompt" }) : query(d);
    }, A);
    const pg = await context.newPage();
    try {
      await pg.goto(host(D, "/host/granted.html", tag(A) + `<button id="fp" onclick="window.open('${A}/catalog.json', 'hearth-first-party')">open</button>`));
      const popup = context.waitForEvent("page");
      await pg.click("#fp");
      await (await popup).waitForLoadState();
      await launcher(pg).click();
      let f = await widgetFrame(pg);
      await byId(f, "embed-gate").waitFor({ timeout: 120000 });
      if ((await gateState(f)) !== "none") throw new Error(`before the grant the model is ${await gateState(f)} on this site`);
      const mark = server.requests.length;
      await byId(f, "embed-use-hearth").click();
      await f.waitForFunction(() => document.querySelector('[data-testid="embed-gate"]')?.getAttribute("data-state") === "stored", null, { timeout: 60000 });
      if (!(await byId(f, "embed-storage-note").innerText()).includes("Hearth's own storage")) throw new Error("the widget does not say which storage it uses");
      await startWithNoDownload(f, mark, "with storage access granted");
      // A reload: the grant holds, so Hearth's storage again, with no click.
      await f.evaluate(() => location.reload());
      f = await widgetFrame(pg);
      await f.waitForFunction(() => document.querySelector('[data-testid="embed-gate"]')?.getAttribute("data-state") === "stored", null, { timeout: 120000 });
      if (modelBytesSent(server.requests.slice(mark))) throw new Error("model bytes downloaded after the reload");
      // The host learnt nothing of which store served the model.
      const kinds = (await received(pg)).map((m) => JSON.parse(m.data)?.type);
      if (kinds.some((k) => k !== "ready")) throw new Error(`the host received ${JSON.stringify(kinds)}`);
    } finally {
      await pg.close();
    }
  });

  // Cross-Origin Storage ships today only as a browser extension, so it is stubbed: a store of
  // whole files keyed by sha256, held in a window the host page opened (so that widgets on
  // two sites reach the same one, as they would an extension's), in the spec draft's
  // spelling (`requestFileHandle`) on one site and the explainer's (`requestFileHandles`) on
  // the other. It checks nothing it is given: the widget must check what it reads.
  await test("widget: Cross-Origin Storage (stubbed, both spellings): a verified download is shared, and a second site uses it with no download", async () => {
    const E = `http://e.test:${port}`;
    const F = `http://f.test:${port}`;
    const G = `http://g.test:${port}`;
    await context.addInitScript(([A, F]) => {
      if (location.origin !== A || window.top === window) return;
      const plural = location.ancestorOrigins[0] === F;
      const open = () => {
        const w = window.open("", "hearth-cos");
        if (!w || w.location.href === "about:blank") throw new DOMException("no shared-store window", "NotAllowedError");
        w.__cos ||= { files: new w.Map(), calls: [] };
        return w;
      };
      const handle = (hash, create) => {
        const w = open();
        if (!hash || hash.algorithm !== "SHA-256" || !/^[0-9a-f]{64}$/.test(hash.value)) throw new TypeError("bad hash");
        w.__cos.calls.push({ spelling: plural ? "plural" : "singular", create, value: hash.value });
        if (!w.__cos.files.has(hash.value) && !create) throw new DOMException("no such file", "NotFoundError");
        return {
          getFile: async () => new File([w.__cos.files.get(hash.value)], hash.value),
          createWritable: async () => {
            const parts = [];
            return {
              write: async (d) => parts.push(new Uint8Array(d)),
              close: async () => w.__cos.files.set(hash.value, new w.Blob(parts)),
              abort: async () => {},
            };
          },
        };
      };
      const api = plural
        ? { requestFileHandles: async (hashes, o) => hashes.map((h) => handle(h, !!(o && o.create))) }
        : { requestFileHandle: async (h, o) => handle(h, !!(o && o.create)) };
      Object.defineProperty(navigator, "crossOriginStorage", { value: api, configurable: true });
    }, [A, F]);
    const pg = await context.newPage();
    try {
      // The second site opens from the first as a popup: one browsing context group, as the
      // stub's store window needs (a frame finds a window by name only within its group).
      const fUrl = host(F, "/host/f.html", tag(A));
      const gUrl = host(G, "/host/g.html", tag(A));
      const opener = `<button id="cos" onclick="window.open('${A}/catalog.json', 'hearth-cos')">open</button>` +
        `<button id="second" onclick="window.open('${fUrl}')">second site</button>` +
        `<button id="third" onclick="window.open('${gUrl}')">third site</button>`;
      await pg.goto(host(E, "/host/e.html", tag(A) + opener));
      const popup = context.waitForEvent("page");
      await pg.click("#cos");
      const store = await popup;
      await store.waitForLoadState();
      await launcher(pg).click();
      let f = await widgetFrame(pg);
      await byId(f, "embed-gate").waitFor({ timeout: 120000 });
      await confirmDownload(pg, f, "17-cos");
      await f.waitForFunction(() => document.querySelector("[data-app-state]")?.getAttribute("data-app-state") === "chat", null, { timeout: 600000, polling: 500 });
      await store.waitForFunction((sha) => window.__cos && window.__cos.files.has(sha) && window.__cos.files.get(sha).size > 0, MODEL_SHA, { timeout: 120000, polling: 250 });
      const shared = await store.evaluate((sha) => window.__cos.files.get(sha).size, MODEL_SHA);
      if (shared !== MODEL_SIZE) throw new Error(`the shared copy has ${shared} bytes`);

      // A second site: the model from the shared store, checked, with no download.
      const mark = server.requests.length;
      const opened = context.waitForEvent("page");
      await pg.click("#second");
      const second = await opened;
      await launcher(second).click();
      f = await widgetFrame(second);
      await f.waitForFunction(() => document.querySelector('[data-testid="embed-gate"]')?.getAttribute("data-state") === "stored", null, { timeout: 120000 });
      if (!(await byId(f, "embed-storage-note").innerText()).includes("shared model storage")) throw new Error("the widget does not say the model is shared");
      await startWithNoDownload(f, mark, "on the second site, from the shared store");
      const spellings = new Set(await store.evaluate(() => window.__cos.calls.map((c) => c.spelling)));
      if (!spellings.has("singular") || !spellings.has("plural")) throw new Error(`spellings used: ${[...spellings]}`);
      const kinds = (await received(second)).map((m) => JSON.parse(m.data)?.type);
      if (kinds.some((k) => k !== "ready")) throw new Error(`the host received ${JSON.stringify(kinds)}`);
      await second.close();

      // A shared copy that no longer matches its hash (one byte changed) is not used.
      await store.evaluate((sha) => {
        const files = window.__cos.files;
        return files.get(sha).arrayBuffer().then((b) => {
          const bytes = new Uint8Array(b);
          bytes[bytes.length >> 1] ^= 0xff;
          files.set(sha, new Blob([bytes]));
        });
      }, MODEL_SHA);
      const openedThird = context.waitForEvent("page");
      await pg.click("#third");
      const third = await openedThird;
      await launcher(third).click();
      const g = await widgetFrame(third);
      await g.waitForFunction(() => document.querySelector('[data-testid="error-banner"]')?.getAttribute("data-kind") === "corrupt", null, { timeout: 120000 });
      if ((await gateState(g)) !== "none") throw new Error(`a damaged shared copy left the model ${await gateState(g)}`);
      await third.close();
      await store.close();
    } finally {
      await pg.close();
    }
  });

  await b.close();
  await server.stop();
  hostServer.close();
}

// 18: with an allow-list, frame-ancestors keeps the widget off every other site. This
// browser keeps Chromium's default, which gives a cross-site frame no storage at all: the
// widget on the listed site says so instead of offering a download it could not keep.
{
  // The host pages (on localhost:HP and c.test:HP) first: the allow-list names c.test:HP.
  let A = null;
  const hostServer = http.createServer((req, res) =>
    res.writeHead(200, { "Content-Type": "text/html" }).end(`<!doctype html><body><script src="${A}/embed.js" async></script></body>`));
  await new Promise((r) => hostServer.listen(0, "127.0.0.1", r));
  const hp = hostServer.address().port;
  const b = await openBrowser("widget-allow", [
    "--host-resolver-rules=MAP *.test 127.0.0.1",
    `--unsafely-treat-insecure-origin-as-secure=http://c.test:${hp}`,
  ]);
  const { page } = b;
  const server = await startServer(["--embed-allow", `http://c.test:${hp}`]);
  A = server.url.replace(/\/$/, "");
  await test("widget: frame-ancestors from the allow-list blocks a host that is not listed; with no storage the widget says so", async () => {
    const embedded = async (origin) => {
      await page.goto(`${origin}/host/p.html`);
      await page.locator("[data-hearth-embed] button.launcher").click();
      await page.waitForTimeout(3000);
      const f = page.frames().find((f) => f !== page.mainFrame());
      if (!f) return "no frame";
      return await f.evaluate(() => (document.querySelector(".embed") ? "widget" : "blank")).catch(() => "blocked");
    };
    const listed = await embedded(`http://c.test:${hp}`);
    if (listed !== "widget") throw new Error(`on the listed site the widget is ${listed}`);
    const f = page.frames().find((x) => x !== page.mainFrame());
    await f.waitForSelector('[data-testid="embed-problem"][data-kind="no-storage"]', { timeout: 120000 });
    if (await f.locator('[data-testid="embed-download"]').count()) throw new Error("a download is offered with no storage to keep it");
    const unlisted = await embedded(`http://localhost:${hp}`);
    if (unlisted === "widget") throw new Error("an unlisted site framed the widget");
  });
  await b.close();
  await server.stop();
  hostServer.close();
}

// 19: a gemma3 model in the browser: Gemma 3 270M (253 MB, its 262,144-token output matrix read
// every token) added by URL from the models folder, loaded, and two chat turns (Hearth's
// Gemma fallback template: the file has none) greedy, equal to llama.cpp's exact oracle
// (crates/hearth-model/tests/fixtures/gemma3_270m/oracle.json, `chat_cases`). About 0.7 tok/s
// on SwiftShader, so 16 tokens each.
{
  const server = await startServer();
  const b = await openBrowser("gemma3");
  const { page } = b;
  const GEMMA = JSON.parse(readFileSync(env("HEARTH_GEMMA_ORACLE"), "utf8"));
  await test("gemma3: Gemma 3 270M added by URL, loaded, two greedy chat replies equal llama.cpp's exact oracle", async () => {
    await page.goto(server.url);
    await appState(page, ["ready"], 120000);
    await openModels(page);
    await byId(page, "custom-url").fill(`${server.url.replace(/\/$/, "")}/models/${env("HEARTH_GEMMA_FILE")}`);
    await byId(page, "custom-url-add").click();
    const id = await page.waitForFunction(
      () => {
        const card = [...document.querySelectorAll('[data-testid^="model-card-url-gemma"]')].find((c) => c.getAttribute("data-state") === "stored");
        return card ? card.getAttribute("data-testid").slice("model-card-".length) : null;
      },
      null,
      { timeout: 600000, polling: 500 },
    ).then((h) => h.jsonValue());
    await byId(page, "context-select").selectOption("512");
    const t0 = Date.now();
    await byId(page, `load-${id}`).click();
    await appState(page, ["chat"], 900000);
    metrics.gemma3_load_secs = (Date.now() - t0) / 1000;
    const failures = [];
    for (const [i, c] of GEMMA.chat_cases.entries()) {
      await greedySettings(page, c.greedy.length);
      const r = await ask(page, c.prompt);
      log(`gemma3 ${i}: ${JSON.stringify(r.text)}, decode ${r.decode} tok/s`);
      compareGreedy(i, r.tokens, c, failures);
    }
    await shot(page, "19-gemma3-chat");
    if (failures.length) throw new Error("gemma3 greedy replies differ from the oracle:\n" + failures.join("\n"));
  });
  await b.close();
  await server.stop();
}

writeFileSync(join(OUT, "results.json"), JSON.stringify({ results, metrics }, null, 2));
log("metrics", JSON.stringify(metrics));
const failed = results.filter((r) => !r.ok);
for (const r of results) log(`${r.ok ? "pass" : "FAIL"}  ${r.name}  (${r.secs.toFixed(0)} s)`);
log(`screenshots and logs: ${OUT}`);
process.exit(failed.length ? 1 : 0);
