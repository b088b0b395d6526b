//! Hearth in the browser. One wasm binary plays two parts: on the page it is the Yew chat UI
//! ([`app`]); in a Web Worker (`web/worker.js` imports the same module) it is the engine
//! ([`worker`]): downloads into IndexedDB, the GPU model, generation. The UI thread only
//! renders; the two talk through the typed messages of [`protocol`].

// Natively this crate is built only for its unit tests (markdown, the UI reducer): the entry
// points that reach everything else run in the browser.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod app;
mod bridge;
mod embed;
mod markdown;
mod native;
mod panic;
mod protocol;
mod resume;
mod store;
mod worker;

fn main() {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let in_worker = js_sys::global().dyn_into::<web_sys::DedicatedWorkerGlobalScope>().is_ok();
        panic::install(in_worker);
        if in_worker {
            worker::start();
        } else {
            app::start();
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        eprintln!("hearth-web runs in a browser: `cargo xtask serve`, then open the address it prints.");
        std::process::exit(2);
    }
}
