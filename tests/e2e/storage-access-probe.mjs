// A probe for issue 12 (the widget), not part of the test suite: does this Chromium give a
// cross-site iframe IndexedDB, and grant the Storage Access API for it (CDP
// Browser.setPermission, requestStorageAccess({ indexedDB: true }) after a click)?
// Run: node tests/e2e/storage-access-probe.mjs   (EXTRA="--disable-features=X" for flags)
// Seen on 2026-12-07, Chromium 156.0.8078.129 headless: a cross-site frame gets no
// IndexedDB at all ("The user denied permission to access the database") unless
// --disable-features=TrackingProtection3pcd; setPermission refuses storage-access ("can't be
// granted in current context"); requestStorageAccess is refused (NotAllowedError).
// Spike: does headless Chromium grant the Storage Access API's unpartitioned IndexedDB to a
// cross-site iframe after CDP Browser.setPermission({name: "storage-access"})?
import http from "node:http";
import { chromium } from "playwright-core";

const frame = `<!doctype html><script>
async function put(db, v) { return new Promise((res, rej) => { const o = indexedDB.open(db, 1); o.onupgradeneeded = () => o.result.createObjectStore("s"); o.onsuccess = () => { const t = o.result.transaction("s", "readwrite"); t.objectStore("s").put(v, "k"); t.oncomplete = () => res(true); t.onerror = () => rej(t.error); }; o.onerror = () => rej(o.error); }); }
async function get(idb, db) { return new Promise((res, rej) => { const o = idb.open(db, 1); o.onupgradeneeded = () => o.result.createObjectStore("s"); o.onsuccess = () => { const t = o.result.transaction("s"); const r = t.objectStore("s").get("k"); r.onsuccess = () => res(r.result ?? null); r.onerror = () => rej(r.error); }; o.onerror = () => rej(o.error); }); }
window.put = put; window.get = get;
</script><p>frame</p>`;
const host = (frameUrl) => `<!doctype html><iframe id=f src="${frameUrl}" allow="storage-access"></iframe>`;
const srv = http.createServer((req, res) => {
  res.setHeader("Content-Type", "text/html");
  if (req.url.startsWith("/host")) return res.end(host(`http://hearth.test:${port}/frame`));
  res.end(frame);
});
await new Promise((r) => srv.listen(0, "127.0.0.1", r));
const port = srv.address().port;
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "hearth-probe-")), {
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless=new", `--host-resolver-rules=MAP *.test 127.0.0.1`, ...(process.env.EXTRA ? process.env.EXTRA.split(" ") : [])],
});
const browser = { version: () => ctx.browser()?.version() ?? "persistent", close: () => ctx.close() };
const page = ctx.pages()[0] ?? (await ctx.newPage());
// 1. First-party visit to hearth.test: write a value.
await page.goto(`http://hearth.test:${port}/frame`);
await page.evaluate(() => window.put("probe", "first-party"));
// 2. Embedded on site.test.
await page.goto(`http://site.test:${port}/host`);
const f = page.frames().find((x) => x.url().includes("/frame"));
await f.waitForFunction(() => window.get);
const before = await f.evaluate(() => window.get(indexedDB, "probe").catch((e) => "error: " + e));
const cdp = await ctx.newCDPSession(page);
let perm = "not tried";
try {
  await cdp.send("Browser.setPermission", { permission: { name: "storage-access" }, setting: "granted", origin: `http://hearth.test:${port}`, embeddedOrigin: `http://hearth.test:${port}` });
  perm = "setPermission ok (origin+embeddedOrigin)";
} catch (e) {
  perm = "setPermission failed: " + e.message;
  try {
    await cdp.send("Browser.setPermission", { permission: { name: "storage-access" }, setting: "granted", origin: `http://site.test:${port}`, embeddedOrigin: `http://hearth.test:${port}` });
    perm += "; ok with origin=site";
  } catch (e2) { perm += "; also " + e2.message; }
}
for (const [name, origin, embedded] of [["storage-access", `http://site.test:${port}`, `http://hearth.test:${port}`], ["top-level-storage-access", `http://site.test:${port}`, `http://hearth.test:${port}`]]) {
  try { await cdp.send("Browser.setPermission", { permission: { name }, setting: "granted", origin, embeddedOrigin: embedded }); perm += `; ${name} ok`; } catch (e) { perm += `; ${name}: ${e.message.slice(-50)}`; }
}
await f.click("p"); // a user gesture in the frame
const result = await f.evaluate(async () => {
  const out = { hasAPI: typeof document.requestStorageAccess === "function", hasFor: typeof document.requestStorageAccessFor };
  try {
    const handle = await document.requestStorageAccess({ indexedDB: true });
    out.granted = true;
    out.handleHasIDB = !!handle?.indexedDB;
    out.value = handle?.indexedDB ? await window.get(handle.indexedDB, "probe") : null;
  } catch (e) { out.granted = false; out.error = String(e); }
  try { out.hasStorageAccess = await document.hasStorageAccess(); } catch (e) { out.hasStorageAccess = String(e); }
  return out;
});
console.log(JSON.stringify({ chromium: browser.version(), before, perm, result }, null, 1));
await browser.close();
srv.close();
