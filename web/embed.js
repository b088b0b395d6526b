// Hearth's embeddable chat: one tag puts a private chat on any page.
//
//   <script src="https://<hearth origin>/embed.js" data-model="smollm2-135m-instruct-q4_1"
//           data-title="Ask our docs" data-system="You answer questions about …" async></script>
//
// Attributes (all optional): data-model (a catalog id), data-title, data-system (the site's
// instructions to the model, shown to the visitor as such), data-theme (light, dark, auto),
// data-position (bottom-right, bottom-left), data-greeting.
//
// This script only draws a launcher button (in a shadow root, for CSS isolation; it is not a
// security boundary) and, on the first click, opens an iframe on Hearth's origin. The chat,
// the model and the engine live in that iframe: this page can configure it, open and close
// it, and read nothing of the conversation. Before the click it loads nothing else from
// Hearth, creates no iframe and does not touch WebGPU.
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script || !script.src) return;
  const PROTOCOL = "hearth-embed/1";
  const hearth = new URL(script.src);
  const origin = hearth.origin;
  const data = script.dataset;
  const config = {};
  for (const key of ["model", "title", "system", "greeting"]) if (data[key]) config[key] = data[key];
  if (["light", "dark", "auto"].includes(data.theme)) config.theme = data.theme;
  const left = data.position === "bottom-left";
  const label = data.title || "Chat";

  const host = document.createElement("div");
  host.setAttribute("data-hearth-embed", "");
  const root = host.attachShadow({ mode: "open" });
  const side = left ? "left" : "right";
  root.innerHTML = `<style>
  :host { all: initial; }
  .launcher { position: fixed; bottom: 20px; ${side}: 20px; z-index: 2147483000; display: flex; align-items: center;
    gap: 8px; padding: 12px 18px; border: 0; border-radius: 999px; background: #c2410c; color: #fff;
    font: 600 15px/1.2 system-ui, sans-serif; box-shadow: 0 6px 24px rgba(0,0,0,.25); cursor: pointer; }
  .launcher:focus-visible { outline: 3px solid #fdba74; outline-offset: 2px; }
  .panel { position: fixed; bottom: 84px; ${side}: 20px; z-index: 2147483000; width: min(400px, calc(100vw - 40px));
    height: min(640px, calc(100vh - 110px)); border: 0; border-radius: 14px; background: #111;
    box-shadow: 0 12px 40px rgba(0,0,0,.35); }
  .panel[hidden] { display: none; }
</style><button class="launcher" type="button" aria-expanded="false"><svg width="18" height="18" viewBox="0 0 24 24"
  aria-hidden="true"><path fill="currentColor" d="M12 2c1 3 4 4.5 4 8.5a4 4 0 0 1-8 0c0-2 1-3 1-3s.5 2 2 2c0-3-1-5 1-7.5zM5 14a7 7 0 0 0 14 0c0 4.5-3 8-7 8s-7-3.5-7-8z"/></svg><span></span></button>`;
  const button = root.querySelector(".launcher");
  button.querySelector("span").textContent = label;
  let frame = null;
  let port = null;
  let open = false;

  const setOpen = (next) => {
    open = next;
    if (frame) frame.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (port) port.postMessage({ hearth: PROTOCOL, type: open ? "open" : "close" });
  };

  // The widget says `ready` (to this page's origin only) once its UI is up; the answer is
  // the configuration and a private channel. A reloaded frame says `ready` again.
  window.addEventListener("message", (e) => {
    if (!frame || e.source !== frame.contentWindow || e.origin !== origin) return;
    const msg = e.data;
    if (!msg || msg.hearth !== PROTOCOL || msg.type !== "ready") return;
    if (port) port.close();
    const channel = new MessageChannel();
    port = channel.port1;
    port.onmessage = (ev) => {
      const m = ev.data;
      if (m && m.hearth === PROTOCOL && m.type === "state" && m.open === false) setOpen(false);
    };
    frame.contentWindow.postMessage({ hearth: PROTOCOL, type: "connect", config }, origin, [channel.port2]);
  });

  button.addEventListener("click", () => {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.className = "panel";
      const src = new URL("embed.html", hearth);
      src.searchParams.set("embed", "script");
      src.searchParams.set("host", location.origin);
      frame.src = src.href;
      // Never sandboxed: a sandboxed frame has no storage for models.
      frame.allow = "clipboard-write; cross-origin-storage";
      frame.title = `${label} (Hearth: runs on your device)`;
      frame.hidden = true;
      root.appendChild(frame);
    }
    setOpen(!open);
  });

  const attach = () => document.body.appendChild(host);
  if (document.body) attach();
  else document.addEventListener("DOMContentLoaded", attach, { once: true });
})();
