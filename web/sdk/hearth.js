// Hearth's JavaScript API: OpenAI-style chat completions on the visitor's own GPU.
//
//   import { createEngine } from "./sdk/hearth.js";
//   const engine = await createEngine({ model: "smollm2-135m-instruct-q4_1" });
//   const r = await engine.chat.completions.create({ messages, max_tokens: 64 });
//
// The engine runs in its own Web Worker (the app's wasm, no UI): downloads are resumable and
// sha256-checked into the same IndexedDB store as the app, and requests are read and answered
// by the same Rust code as `hearth serve` (hearth_model::openai). Every file this module needs
// sits beside it (worker, wasm, catalog), found through import.meta.url, so a site can copy
// this folder to its own origin. Types: hearth.d.ts.

const HERE = import.meta.url;

/** An error shaped like OpenAI's: `status`, `type`, `code`, `param`, `message`. */
export class HearthAPIError extends Error {
  constructor(status, error) {
    super(error?.message ?? `Hearth error ${status}`);
    this.name = "HearthAPIError";
    this.status = status;
    this.type = error?.type ?? null;
    this.code = error?.code ?? null;
    this.param = error?.param ?? null;
    this.error = error ?? null;
  }
}

const apiError = (status, code, message, type = "invalid_request_error") =>
  new HearthAPIError(status, { message, type, code, param: null });

const abortError = () => new DOMException("The request was aborted.", "AbortError");

/** The worker and its events, by request id. */
class Connection {
  constructor(onFatal) {
    this.worker = new Worker(new URL("./worker.js", HERE), { type: "module", name: "hearth-engine" });
    this.listeners = new Set();
    this.requests = new Map(); // request id → its handler
    this.worker.onmessage = (e) => {
      const ev = e.data;
      if (ev && typeof ev.request_id === "number") {
        this.requests.get(ev.request_id)?.(ev);
        if (ev.type === "ChatEnded") this.ended(ev);
        return;
      }
      for (const listener of [...this.listeners]) listener(ev);
    };
    this.pending = new Set(); // rejecters of `until` calls still waiting
    this.fatal = (err) => {
      for (const reject of [...this.pending]) reject(err);
      onFatal(err);
    };
    this.worker.onerror = (e) => {
      e.preventDefault?.();
      this.fatal(apiError(500, "engine_error", `the engine worker failed: ${e.message ?? e}`, "server_error"));
    };
    this.ended = () => {};
  }

  post(msg) {
    this.worker.postMessage({ msg });
  }

  /** Resolves with the first event `pick` maps to something other than undefined. */
  until(pick, onEvent) {
    return new Promise((resolve, reject) => {
      const stop = () => {
        this.listeners.delete(listener);
        this.pending.delete(fail);
      };
      const fail = (err) => {
        stop();
        reject(err);
      };
      const listener = (ev) => {
        onEvent?.(ev);
        let out;
        try {
          out = pick(ev);
        } catch (err) {
          return fail(err);
        }
        if (out !== undefined) {
          stop();
          resolve(out);
        }
      };
      this.listeners.add(listener);
      this.pending.add(fail);
    });
  }
}

/** The kind of a worker error, as the API's error code. */
const CODES = {
  no_web_gpu: [503, "no_webgpu"],
  device_lost: [503, "device_lost"],
  out_of_memory: [507, "out_of_memory"],
  quota: [507, "insufficient_storage"],
  no_storage: [507, "insufficient_storage"],
  network: [502, "download_failed"],
  corrupt: [502, "download_failed"],
  bad_model: [400, "invalid_model"],
};

const workerError = (ev) => {
  const [status, code] = CODES[ev.kind] ?? [500, "engine_error"];
  return apiError(status, code, ev.message, status >= 500 ? "server_error" : "invalid_request_error");
};

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The catalog entry for `model`: a catalog id, or `{ url, sha256, name? }`. */
async function entryFor(model, modelBaseUrl) {
  const catalogUrl = new URL("./catalog.json", HERE);
  if (typeof model === "string") {
    const catalog = await (await fetch(catalogUrl)).json();
    const entry = catalog.models.find((m) => m.id === model);
    if (!entry) {
      const ids = catalog.models.map((m) => m.id).join(", ");
      throw apiError(404, "model_not_found", `no model ${JSON.stringify(model)} in the catalog (${ids})`);
    }
    // Catalog URLs are relative to the app, which holds this folder as sdk/.
    return { ...entry, url: new URL(entry.url, modelBaseUrl ?? new URL("../", HERE)).href };
  }
  const { url, sha256 } = model ?? {};
  if (typeof url !== "string" || !/^[0-9a-f]{64}$/i.test(sha256 ?? "")) {
    throw apiError(400, "invalid_value", "model must be a catalog id or { url, sha256 } (sha256 as 64 hex digits)");
  }
  const href = new URL(url, modelBaseUrl ?? document.baseURI).href;
  const file = decodeURIComponent(new URL(href).pathname.split("/").pop() || "model.gguf");
  const slug = file.toLowerCase().replace(/[^a-z0-9._-]/g, "-").slice(0, 100);
  // Named by the file's own hash: the same bytes from any address are one stored model.
  return {
    id: `url-${slug}-${sha256.toLowerCase().slice(0, 8)}`,
    name: model.name ?? file.replace(/\.gguf$/, ""),
    url: href,
    size: null,
    sha256: sha256.toLowerCase(),
    quant: "?",
    params: "",
    context_length: 4096,
    license: "unknown",
    license_url: "",
    source: href,
    gpu_memory: 0,
    default_context: 2048,
    verified: false,
    notes: "",
  };
}

/**
 * Starts an engine with one model: downloads it (or finds it stored), checks its sha256,
 * loads it onto the GPU. Rejects with a HearthAPIError (`no_webgpu`, `model_not_found`, ...).
 */
export async function createEngine(options = {}) {
  const { model, context, onProgress, modelBaseUrl } = options;
  const entry = await entryFor(model, modelBaseUrl);
  let fatal = null;
  const failAll = new Set();
  const conn = new Connection((err) => {
    fatal = err;
    for (const fail of [...failAll]) fail(err);
  });
  const failOn = (ev) => {
    if (ev?.type === "Error" && (ev.id == null || ev.id === entry.id)) throw workerError(ev);
    if (ev?.type === "Panicked") throw apiError(500, "engine_error", ev.message, "server_error");
  };
  try {
    await conn.until((ev) => (ev?.type === "Booted" ? true : failOn(ev)));
    conn.post({ type: "Init" });
    const adapter = await conn.until((ev) => {
      if (ev?.type !== "Ready") return failOn(ev);
      if (!ev.adapter) throw apiError(503, "no_webgpu", ev.error ?? "this browser has no WebGPU", "server_error");
      return ev.adapter;
    });
    const stored = await conn.until((ev) => (ev?.type === "Stored" ? ev.models : failOn(ev)));
    const have = stored.find((m) => m.id === entry.id && m.complete);
    if (!have) {
      conn.post({ type: "Download", entry });
      await conn.until(
        (ev) => (ev?.type === "Downloaded" && ev.id === entry.id ? true : failOn(ev)),
        (ev) => {
          if (ev?.type === "Progress" && ev.id === entry.id) {
            onProgress?.({ phase: ev.phase, loaded: ev.done, total: ev.total, bytesPerSecond: ev.bytes_per_sec });
          }
        },
      );
    }
    if (entry.sha256) {
      conn.post({ type: "ListStored" });
      const now = await conn.until((ev) => (ev?.type === "Stored" ? ev.models : failOn(ev)));
      const sha = now.find((m) => m.id === entry.id)?.sha256;
      if (sha !== entry.sha256) {
        throw apiError(502, "download_failed", `the stored model's sha256 is ${sha}, not ${entry.sha256}`, "server_error");
      }
    }
    conn.post({ type: "Load", id: entry.id, context: context ?? entry.default_context });
    const info = await conn.until(
      (ev) => (ev?.type === "Loaded" ? ev.info : failOn(ev)),
      (ev) => {
        if (ev?.type === "Progress" && ev.id === entry.id && ev.phase === "loading") {
          onProgress?.({ phase: "loading", loaded: ev.done, total: ev.total, bytesPerSecond: ev.bytes_per_sec });
        }
      },
    );
    return new Engine(conn, entry, info, adapter, () => fatal, failAll);
  } catch (err) {
    conn.worker.terminate();
    throw err;
  }
}

class Engine {
  constructor(conn, entry, info, adapter, fatal, failAll) {
    this.model = entry.id;
    this.info = { ...info, adapter };
    this._conn = conn;
    this._fatal = fatal;
    this._failAll = failAll;
    this._nextId = 1;
    this._ended = new Map(); // request id → its ChatEnded numbers, for `requestStats`
    conn.ended = (ev) => {
      this._ended.set(ev.request_id, { decoded: ev.decoded, decodedAtAbort: ev.decoded_at_abort ?? null });
      if (this._ended.size > 256) this._ended.delete(this._ended.keys().next().value);
      const waiters = [...this._waiters];
      this._waiters.clear();
      for (const waiter of waiters) waiter();
    };
    this._waiters = new Set();
    // A worker that panics, or stops answering (killed by the browser, say), cannot go on:
    // every request fails, and so do later ones.
    const die = (message) => {
      if (this._fatal()) return;
      const err = apiError(500, "engine_error", `the engine stopped: ${message}`, "server_error");
      this._fatal = () => err;
      clearInterval(this._heartbeat);
      for (const fail of [...failAll]) fail(err);
      for (const waiter of [...this._waiters]) waiter();
    };
    conn.fatal = (err) => die(err.message);
    // The worker answers pings straight from its message handler, busy or not. Only a ping
    // left unanswered for 30 s counts (timers of a hidden tab may be throttled to a minute).
    let seq = 0;
    let waiting = null; // [seq, sent at] of the ping not answered yet
    conn.listeners.add((ev) => {
      if (ev?.type === "Panicked") die(ev.message);
      if (ev?.type === "Pong" && waiting && ev.seq === waiting[0]) waiting = null;
    });
    this._heartbeat = setInterval(() => {
      if (!waiting) {
        waiting = [++seq, performance.now()];
        return conn.post({ type: "Ping", seq });
      }
      if (performance.now() - waiting[1] > 30000) die("it did not answer for 30 s");
    }, 5000);
    this.chat = { completions: { create: (body, opts) => this._create(body, opts) } };
    this.models = {
      list: async () => ({
        object: "list",
        data: [{ id: this.model, object: "model", created: 0, owned_by: "hearth", hearth: { context: info.context } }],
      }),
    };
  }

  /** How a request ended in the worker: tokens decoded, and when its abort arrived. */
  async requestStats(requestId) {
    while (!this._ended.has(requestId)) {
      if (this._fatal()) return null;
      await new Promise((resolve) => this._waiters.add(resolve));
    }
    return this._ended.get(requestId);
  }

  /** Frees the GPU and stops the worker; later calls reject. */
  async unload() {
    clearInterval(this._heartbeat);
    this._conn.worker.terminate();
    const err = apiError(503, "model_not_loaded", "the engine was unloaded", "server_error");
    this._fatal = () => err;
    for (const fail of [...this._failAll]) fail(err);
  }

  /**
   * OpenAI's `chat.completions.create`. Without `stream`, resolves with a `chat.completion`;
   * with it, with an async iterable of `chat.completion.chunk`s. `{ signal }` aborts: the
   * promise or the iterator rejects with an AbortError, and the engine stops after the token
   * in flight. `break` out of a `for await` aborts too.
   */
  _create(body, { signal } = {}) {
    if (this._fatal()) return Promise.reject(this._fatal());
    if (signal?.aborted) return Promise.reject(abortError());
    let text;
    try {
      text = JSON.stringify(body);
    } catch (e) {
      return Promise.reject(apiError(400, "invalid_value", `the request is not JSON: ${e.message}`));
    }
    const requestId = this._nextId++;
    const stream = body?.stream === true;
    const chunks = []; // received, not yet taken by the iterator
    let wake = null; // the iterator's pending next()
    let failure = null;
    let aborted = false;
    let finished = false;
    let resolveStart, rejectStart;
    const started = new Promise((res, rej) => ((resolveStart = res), (rejectStart = rej)));
    const notify = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    // How a request ends, either way: no more events, fatal errors or aborts for it.
    const settle = () => {
      finished = true;
      this._conn.requests.delete(requestId);
      this._failAll.delete(fail);
      signal?.removeEventListener("abort", abort);
      notify();
    };
    const fail = (err) => {
      if (finished) return;
      failure = err;
      rejectStart(err);
      settle();
    };
    const abort = () => {
      if (finished) return;
      aborted = true;
      this._conn.post({ type: "Abort", request_id: requestId });
      fail(abortError());
    };
    signal?.addEventListener("abort", abort, { once: true });
    this._failAll.add(fail);
    this._conn.requests.set(requestId, (ev) => {
      if (finished) return;
      switch (ev.type) {
        case "ChatError":
          return fail(
            new HearthAPIError(ev.status, { message: ev.message, type: ev.kind, code: ev.code, param: ev.param ?? null }),
          );
        case "ChatCompletion":
          resolveStart(JSON.parse(ev.json));
          return settle();
        case "ChatChunk":
          chunks.push(JSON.parse(ev.json));
          resolveStart();
          return notify();
        case "ChatEnded":
          resolveStart();
          return settle();
      }
    });
    this._conn.post({ type: "Chat", request_id: requestId, body: text });
    if (!stream) return started;
    const iterator = {
      requestId,
      next: async () => {
        for (;;) {
          // An abort ends the stream at once; an engine error after the chunks received.
          if (failure && (aborted || !chunks.length)) throw failure;
          if (chunks.length) return { value: chunks.shift(), done: false };
          if (finished) return { value: undefined, done: true };
          await new Promise((resolve) => (wake = resolve));
        }
      },
      return: async () => {
        abort();
        failure = null; // `break` is not an error
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    return started.then(() => iterator);
  }
}
