//! The UI's handle on the engine worker: spawns `worker.js` (a module worker running this
//! same wasm), queues requests until the worker says it booted, and hands every event to a
//! callback.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::protocol::{FromWorker, ToWorker};

pub struct WorkerBridge {
    worker: web_sys::Worker,
    booted: Rc<Cell<bool>>,
    queue: Rc<RefCell<Vec<js_sys::Object>>>,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

impl WorkerBridge {
    /// Starts the worker; `on_event` gets every message it sends (and an `Error` if the
    /// worker script itself fails to start).
    pub fn spawn(on_event: impl Fn(FromWorker) + 'static) -> Result<Self, String> {
        let options = web_sys::WorkerOptions::new();
        options.set_type(web_sys::WorkerType::Module);
        let worker = web_sys::Worker::new_with_options("./worker.js", &options)
            .map_err(|e| format!("could not start the engine worker: {e:?}"))?;
        let booted = Rc::new(Cell::new(false));
        let queue: Rc<RefCell<Vec<js_sys::Object>>> = Rc::default();
        let on_event = Rc::new(on_event);

        let on_message = {
            let (worker, booted, queue, on_event) = (worker.clone(), booted.clone(), queue.clone(), on_event.clone());
            Closure::<dyn FnMut(_)>::new(move |e: web_sys::MessageEvent| {
                let event: FromWorker = match serde_wasm_bindgen::from_value(e.data()) {
                    Ok(ev) => ev,
                    Err(err) => {
                        web_sys::console::error_1(&format!("unreadable worker message: {err}").into());
                        return;
                    }
                };
                if event == FromWorker::Booted && !booted.replace(true) {
                    for msg in queue.borrow_mut().drain(..) {
                        let _ = worker.post_message(&msg);
                    }
                }
                on_event(event);
            })
        };
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let on_error = Closure::<dyn FnMut(_)>::new(move |e: web_sys::Event| {
            let detail = e
                .dyn_ref::<web_sys::ErrorEvent>()
                .map(|e| e.message())
                .unwrap_or_else(|| "the engine worker failed to start".into());
            on_event(FromWorker::Error {
                kind: crate::protocol::ErrorKind::Other,
                message: format!("The engine worker stopped: {detail}. Reload the page."),
                id: None,
            });
        });
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        // The worker as `window.__hearthWorker`, for debugging and for the end-to-end tests'
        // `SimulateDeviceLoss` (the page's own scripts could reach it anyway).
        if let Some(w) = web_sys::window() {
            let _ = js_sys::Reflect::set(&w, &"__hearthWorker".into(), &worker);
        }
        Ok(WorkerBridge { worker, booted, queue, _on_message: on_message, _on_error: on_error })
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
        self.worker.terminate();
    }
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
