//! The few browser calls the components make: fetch, localStorage, clipboard, dialogs, time.

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::state::Theme;
use crate::protocol::{Catalog, CatalogEntry};

pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

pub fn load_pref(key: &str) -> Option<String> {
    storage()?.get_item(key).ok().flatten()
}

pub fn save_pref(key: &str, value: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(key, value);
    }
}

/// The saved theme, else the system's preference.
pub fn initial_theme() -> Theme {
    match load_pref("hearth-theme").as_deref() {
        Some("light") => Theme::Light,
        Some("dark") => Theme::Dark,
        _ => system_theme(),
    }
}

/// The system's preference (`prefers-color-scheme`), dark unless it asks for light.
pub fn system_theme() -> Theme {
    let light = web_sys::window()
        .and_then(|w| w.match_media("(prefers-color-scheme: light)").ok().flatten())
        .is_some_and(|m| m.matches());
    if light {
        Theme::Light
    } else {
        Theme::Dark
    }
}

pub fn apply_theme(theme: Theme) {
    if let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.document_element()) {
        let _ = root.set_attribute("data-theme", theme.name());
    }
}

pub fn set_body_state(state: &str) {
    if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
        let _ = body.set_attribute("data-app-state", state);
    }
}

pub fn copy(text: &str) {
    if let Some(w) = web_sys::window() {
        let _ = w.navigator().clipboard().write_text(text);
    }
}

pub fn confirm(message: &str) -> bool {
    web_sys::window().and_then(|w| w.confirm_with_message(message).ok()).unwrap_or(false)
}

/// `catalog.json`, relative to the page.
pub async fn fetch_catalog() -> Result<Vec<CatalogEntry>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let resp = JsFuture::from(window.fetch_with_str("catalog.json"))
        .await
        .map_err(|e| format!("could not fetch the model catalog: {e:?}"))?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|_| "the catalog fetch returned no response")?;
    if !resp.ok() {
        return Err(format!("could not fetch the model catalog: HTTP {}", resp.status()));
    }
    let text = JsFuture::from(resp.text().map_err(|e| format!("{e:?}"))?)
        .await
        .map_err(|e| format!("could not read the model catalog: {e:?}"))?
        .as_string()
        .unwrap_or_default();
    let catalog: Catalog = serde_json::from_str(&text).map_err(|e| format!("the model catalog is malformed: {e}"))?;
    Ok(catalog.models)
}
