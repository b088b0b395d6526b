//! No panic reaches the user as a frozen page: the hook reports it where it can be seen. In
//! the worker it becomes a `Panicked` message (the page starts a fresh worker); on the page
//! it becomes a banner asking for a reload, since a panicked wasm instance cannot go on.

use crate::protocol::FromWorker;

pub fn install(in_worker: bool) {
    std::panic::set_hook(Box::new(move |info| {
        let message = format!("Hearth hit an internal error: {info}");
        web_sys::console::error_1(&message.clone().into());
        if in_worker {
            crate::worker::post(&FromWorker::Panicked { message });
        } else {
            show_banner(&message);
        }
    }));
}

fn show_banner(message: &str) {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else { return };
    let Ok(banner) = doc.create_element("div") else { return };
    banner.set_class_name("fatal");
    banner.set_attribute("role", "alert").ok();
    banner.set_attribute("data-testid", "fatal").ok();
    banner.set_text_content(Some(&format!("{message}. Reload the page to continue; your conversations are saved.")));
    if let Some(body) = doc.body() {
        body.append_child(&banner).ok();
    }
}
