//! The UI's handle on the engine worker: spawns `worker.js` (a module worker running this
//! same wasm), queues requests until the worker says it booted, and hands every event to a
//! callback.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::native::NativeBridge;
use crate::protocol::{FromWorker, ToWorker};

/// Where the UI's requests go: the engine worker in this browser, or `hearth serve`'s native
/// engine when the page came from it.
pub enum Bridge {
    Worker(WorkerBridge),
    Native(NativeBridge),
}

impl Bridge {
    pub fn send(&self, msg: &ToWorker) {
        match self {
            Bridge::Worker(w) => w.send(msg),
            Bridge::Native(n) => n.send(msg),
        }
    }

    /// A request with a `File` (a local import); the native engine refuses it.
    pub fn send_file(&self, msg: &ToWorker, file: &web_sys::File) {
        match self {
            Bridge::Worker(w) => w.send_file(msg, file),
            Bridge::Native(n) => n.send(msg),
        }
    }
}

/// How often the page asks the worker whether it is alive.
const PING_EVERY_MS: f64 = 5_000.0;
/// How often the heartbeat looks at the time.
const TICK_MS: u32 = 1_000;
/// A worker that has not answered a ping for this long is stuck: it is replaced.
pub const ANSWER_WITHIN_MS: f64 = 30_000.0;
/// A worker that has not booted after this long is replaced (a 5 MB wasm module compiles in
/// a few seconds even on slow machines).
const BOOT_WITHIN_MS: f64 = 60_000.0;

pub struct WorkerBridge {
    worker: web_sys::Worker,
    booted: Rc<Cell<bool>>,
    queue: Rc<RefCell<Vec<js_sys::Object>>>,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
    _heartbeat: gloo_timers::callback::Interval,
}

/// Calls `on_death` once, with why, however the worker is found dead.
#[derive(Clone)]
struct Death(Rc<Cell<bool>>, Rc<dyn Fn(String)>);

impl Death {
    fn report(&self, why: String) {
        if !self.0.replace(true) {
            (self.1)(why);
        }
    }
}

impl WorkerBridge {
    /// Starts the worker; `on_event` gets every message it sends. `on_death` is called once
    /// if it dies: its `error` event (a script that failed to start, or a wasm trap), its
    /// panic hook's `Panicked` message, or no answer to a ping for [`ANSWER_WITHIN_MS`].
    /// The caller then drops this bridge (terminating the worker) and spawns a new one.
    pub fn spawn(on_event: impl Fn(FromWorker) + 'static, on_death: impl Fn(String) + 'static) -> Result<Self, String> {
        let options = web_sys::WorkerOptions::new();
        options.set_type(web_sys::WorkerType::Module);
        let worker = web_sys::Worker::new_with_options("./worker.js", &options)
            .map_err(|e| format!("could not start the engine worker: {e:?}"))?;
        let booted = Rc::new(Cell::new(false));
        let queue: Rc<RefCell<Vec<js_sys::Object>>> = Rc::default();
        let on_event = Rc::new(on_event);
        let death = Death(Rc::default(), Rc::new(on_death));
        // (seq, sent at) of the ping awaiting its answer.
        let pending: Rc<Cell<Option<(u32, f64)>>> = Rc::default();

        let on_message = {
            let (worker, booted, queue, on_event) = (worker.clone(), booted.clone(), queue.clone(), on_event.clone());
            let (death, pending) = (death.clone(), pending.clone());
            Closure::<dyn FnMut(_)>::new(move |e: web_sys::MessageEvent| {
                let event: FromWorker = match serde_wasm_bindgen::from_value(e.data()) {
                    Ok(ev) => ev,
                    Err(err) => {
                        web_sys::console::error_1(&format!("unreadable worker message: {err}").into());
                        return;
                    }
                };
                match &event {
                    FromWorker::Booted if !booted.replace(true) => {
                        for msg in queue.borrow_mut().drain(..) {
                            let _ = worker.post_message(&msg);
                        }
                    }
                    FromWorker::Pong { seq } => {
                        if pending.get().is_some_and(|(s, _)| s == *seq) {
                            pending.set(None);
                        }
                        return;
                    }
                    FromWorker::Panicked { message } => return death.report(message.clone()),
                    _ => {}
                }
                on_event(event);
            })
        };
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let on_error = {
            let death = death.clone();
            Closure::<dyn FnMut(_)>::new(move |e: web_sys::Event| {
                let detail = e
                    .dyn_ref::<web_sys::ErrorEvent>()
                    .map(|e| e.message())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "its script failed".into());
                death.report(detail);
            })
        };
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let heartbeat = {
            let (worker, booted, started) = (worker.clone(), booted.clone(), now_ms());
            let (mut seq, mut last_ping, mut last_tick) = (0u32, f64::NEG_INFINITY, started);
            gloo_timers::callback::Interval::new(TICK_MS, move || {
                let now = now_ms();
                // A tick long overdue: the machine slept or the browser froze the page. Pongs
                // may be queued behind this tick: ask again rather than judge.
                let slept = now - last_tick > 5.0 * f64::from(TICK_MS);
                last_tick = now;
                if slept {
                    pending.set(None);
                    last_ping = f64::NEG_INFINITY;
                }
                if !booted.get() {
                    if now - started > BOOT_WITHIN_MS && !slept {
                        death.report(format!("it did not start within {} s", BOOT_WITHIN_MS / 1000.0));
                    }
                    return;
                }
                match pending.get() {
                    Some((_, sent)) if now - sent > ANSWER_WITHIN_MS => {
                        death.report(format!("it stopped answering for {} s", ANSWER_WITHIN_MS / 1000.0))
                    }
                    Some(_) => {}
                    None if now - last_ping < PING_EVERY_MS => {}
                    None => {
                        (seq, last_ping) = (seq.wrapping_add(1), now);
                        pending.set(Some((seq, now)));
                        let _ = worker.post_message(&envelope(&ToWorker::Ping { seq }, None));
                    }
                }
            })
        };
        // The worker as `window.__hearthWorker`, for the end-to-end tests (test builds only).
        #[cfg(feature = "test-hooks")]
        if let Some(w) = web_sys::window() {
            let _ = js_sys::Reflect::set(&w, &"__hearthWorker".into(), &worker);
        }
        Ok(WorkerBridge { worker, booted, queue, _on_message: on_message, _on_error: on_error, _heartbeat: heartbeat })
    }
    pub fn send(&self, msg: &ToWorker) {
        self.post(envelope(msg, None));
    }

    /// Sends `msg` with a `File` beside it (structured clone: the file is not read here).
    pub fn send_file(&self, msg: &ToWorker, file: &web_sys::File) {
        self.post(envelope(msg, Some(file)));
    }

    fn post(&self, envelope: js_sys::Object) {
        if self.booted.get() {
            let _ = self.worker.post_message(&envelope);
        } else {
            self.queue.borrow_mut().push(envelope);
        }
    }
}

impl Drop for WorkerBridge {
    fn drop(&mut self) {
        // Unhooked first: an event already queued must not reach the closures dropped next.
        self.worker.set_onmessage(None);
        self.worker.set_onerror(None);
        self.worker.terminate();
    }
}

/// Milliseconds on the page's monotonic clock (the wall clock can be changed under us).
fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or_else(js_sys::Date::now, |p| p.now())
}

/// `{ msg, file? }` on the wire.
fn envelope(msg: &ToWorker, file: Option<&web_sys::File>) -> js_sys::Object {
    let out = js_sys::Object::new();
    let value = serde_wasm_bindgen::to_value(msg).unwrap_or(JsValue::NULL);
    let _ = js_sys::Reflect::set(&out, &"msg".into(), &value);
    if let Some(f) = file {
        let _ = js_sys::Reflect::set(&out, &"file".into(), f);
    }
    out
}
