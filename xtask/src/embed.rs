//! The embeddable widget's page and headers.
//!
//! - [`page`]: `dist/embed.html`, made from the built `index.html` (the same wasm and loader,
//!   so the same script hash in its policy), marked as the widget, without the app's service
//!   worker and manifest;
//! - [`AllowList`]: who may embed it, from `embed-allow.json` (or `serve --embed-allow`), sent
//!   as the page's `frame-ancestors` (a `<meta>` policy cannot carry that directive, so it is
//!   a header only);
//! - [`headers`]: what `serve` adds to the widget's files so that it also works inside
//!   cross-origin-isolated hosts (COEP `require-corp` and CORP `cross-origin`).

use anyhow::{bail, Context, Result};

/// The `<meta>` that makes the wasm render the widget instead of the app.
pub const MARKER: &str = r#"<meta name="hearth-view" content="embed" />"#;

/// `embed.html` from the built `index.html` (before its policy is applied).
pub fn page(index: &str) -> Result<String> {
    let mut html = index.to_string();
    let Some(head) = html.find("<head>") else { bail!("index.html has no <head>") };
    html.insert_str(head + "<head>".len(), &format!("\n    {MARKER}"));
    // The app's service worker and install manifest are the app's, not the widget's.
    for line in
        [r#"<script src="register-sw.js" defer></script>"#, r#"<link rel="manifest" href="manifest.webmanifest" />"#]
    {
        if !html.contains(line) {
            bail!("index.html no longer has {line}: update xtask/src/embed.rs");
        }
        html = html.replace(line, "");
    }
    html = html.replacen("<title>Hearth</title>", "<title>Hearth chat</title>", 1);
    Ok(html)
}

/// Origins allowed to embed the widget; `["*"]` is any site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList(pub Vec<String>);

impl AllowList {
    /// From `embed-allow.json`'s text: `{"embedders": ["*"]}` or a list of origins.
    pub fn from_json(text: &str) -> Result<AllowList> {
        let v: serde_json::Value = serde_json::from_str(text).context("embed-allow.json is not JSON")?;
        let list = v
            .get("embedders")
            .and_then(|e| e.as_array())
            .context("embed-allow.json needs \"embedders\": a list of origins, or [\"*\"]")?;
        let origins = list.iter().map(|o| o.as_str().map(str::to_string)).collect::<Option<Vec<_>>>();
        AllowList::new(origins.context("embed-allow.json: every embedder is a string")?)
    }

    /// From `serve --embed-allow a,b`.
    pub fn from_flag(value: &str) -> Result<AllowList> {
        AllowList::new(value.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
    }

    /// Each entry is `*` or an origin (`scheme://host[:port]`, nothing else): it goes into a
    /// header, so nothing that could end or extend one is let through.
    fn new(origins: Vec<String>) -> Result<AllowList> {
        if origins.is_empty() {
            bail!("the embed allow-list is empty: list origins, or \"*\" for any site");
        }
        for o in &origins {
            let o = o.trim_end_matches('/');
            let valid = o == "*"
                || o.split_once("://").is_some_and(|(scheme, rest)| {
                    matches!(scheme, "http" | "https")
                        && !rest.is_empty()
                        && rest.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
                });
            if !valid {
                bail!("{o:?} is not an origin (like https://docs.example.com) or \"*\"");
            }
        }
        Ok(AllowList(origins.into_iter().map(|o| o.trim_end_matches('/').to_string()).collect()))
    }

    /// The `frame-ancestors` directive.
    pub fn frame_ancestors(&self) -> String {
        format!("frame-ancestors {}", self.0.join(" "))
    }

    /// `embed-allow.json` as the widget reads it.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "embedders": self.0 }).to_string()
    }
}

/// The widget's files: the page, its worker, the JS glue, the wasm.
pub fn is_widget_file(name: &str) -> bool {
    matches!(name, "embed.html" | "worker.js" | "hearth-web.js" | "hearth-web_bg.wasm")
}

/// Headers for a file named `name` (the last path segment): every file may be loaded by
/// another origin's page (CORP `cross-origin`); the widget's own files also carry COEP
/// `require-corp`, which a cross-origin-isolated host needs of its frames.
pub fn headers(name: &str) -> Vec<(&'static str, String)> {
    let mut out = vec![("Cross-Origin-Resource-Policy", "cross-origin".to_string())];
    if is_widget_file(name) {
        out.push(("Cross-Origin-Embedder-Policy", "require-corp".to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "<!doctype html>\n<html>\n  <head>\n    <title>Hearth</title>\n    \
        <link rel=\"manifest\" href=\"manifest.webmanifest\" />\n  </head>\n  <body>\n    \
        <script src=\"register-sw.js\" defer></script>\n  </body>\n</html>\n";

    #[test]
    fn the_page_is_the_app_marked_without_its_service_worker() {
        let html = page(INDEX).unwrap();
        assert!(html.contains(MARKER) && html.find(MARKER) < html.find("<title>"));
        assert!(!html.contains("register-sw.js") && !html.contains("manifest"));
        assert!(html.contains("<title>Hearth chat</title>"));
        // An index.html that changed shape is an error, not a silent widget with a service worker.
        assert!(page(&INDEX.replace(" defer", "")).is_err());
    }

    #[test]
    fn allow_lists() {
        let any = AllowList::from_json(r#"{"embedders": ["*"]}"#).unwrap();
        assert_eq!(any.frame_ancestors(), "frame-ancestors *");
        let two = AllowList::from_flag("http://localhost:8081, https://docs.example.com/").unwrap();
        assert_eq!(two.frame_ancestors(), "frame-ancestors http://localhost:8081 https://docs.example.com");
        assert_eq!(two.to_json(), r#"{"embedders":["http://localhost:8081","https://docs.example.com"]}"#);
        for bad in [
            "https://a.example; script-src *",
            "https://a.example\r\nSet-Cookie: x=1",
            "a.example",
            "javascript://x",
            "'self'",
            "",
        ] {
            assert!(AllowList::from_flag(bad).is_err(), "{bad:?}");
        }
        assert!(AllowList::from_json(r#"{"embedders": []}"#).is_err());
        assert!(AllowList::from_json(r#"{"embedders": [1]}"#).is_err());
        assert!(AllowList::from_json(r#"["*"]"#).is_err());
    }

    #[test]
    fn widget_files_carry_coep_and_everything_corp() {
        assert!(headers("embed.html").iter().any(|(k, v)| *k == "Cross-Origin-Embedder-Policy" && v == "require-corp"));
        assert!(headers("worker.js").len() == 2 && headers("hearth-web_bg.wasm").len() == 2);
        assert_eq!(headers("index.html"), vec![("Cross-Origin-Resource-Policy", "cross-origin".to_string())]);
    }
}
