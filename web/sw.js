// Hearth's service worker: keeps the app shell so a second visit works with no network.
//
// Network first, cache as the fallback: online, every shell file is fetched fresh (and the
// copy refreshed), so a new build is never hidden behind an old one; offline, the last copy
// is served. Model files are not touched: they live in IndexedDB, written by the engine
// worker, and a service-worker copy would only double them.
const CACHE = "hearth-shell-v2";
const SHELL = [
  "./",
  "index.html",
  "hearth-web.js",
  "hearth-web_bg.wasm",
  "worker.js",
  "register-sw.js",
  "style.css",
  "catalog.json",
  "icon.svg",
  "manifest.webmanifest",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL.map((p) => new Request(p, { cache: "reload" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function isModel(url) {
  return url.pathname.endsWith(".gguf") || url.pathname.includes("/models/");
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  // Models, and `hearth serve`'s API when it serves this app, are never cached here.
  if (request.method !== "GET" || url.origin !== self.location.origin || isModel(url) || url.pathname.startsWith("/v1/")) {
    return; // the browser's own handling
  }
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const response = await fetch(request, { cache: "no-cache" });
        if (response.ok && response.status === 200) {
          cache.put(request, response.clone());
        }
        return response;
      } catch (offline) {
        const cached =
          (await cache.match(request, { ignoreSearch: true })) ||
          (request.mode === "navigate" ? await cache.match("index.html") : undefined);
        if (cached) return cached;
        throw offline;
      }
    })(),
  );
});
