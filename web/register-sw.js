// The app shell works offline after the first visit (web/sw.js). A file, not an inline
// script: the Content-Security-Policy allows no inline script but Trunk's loader.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("./sw.js").catch((e) => console.warn("no offline support:", e));
}
