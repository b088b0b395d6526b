// The engine's Web Worker: the same wasm module as the page. Its `main` sees a worker
// global scope and starts the engine side (crates/hearth-web/src/worker), which posts
// {type: "Booted"} once it listens; the page queues requests until then.
import init from "./hearth-web.js";

init().catch((e) => {
  postMessage({ type: "Error", kind: "other", message: `The engine failed to start: ${e}`, id: null });
});
