//! The embeddable widget's side of the host page (`embed.html` in a cross-origin iframe, put
//! there by `web/embed.js` or by a plain `<iframe>`): what the host may say, what the widget
//! tells it, and who counts as the host.
//!
//! The iframe is the security boundary. The host only configures (model, title, system prompt,
//! theme, greeting, open or close); nothing it sends can start a download, send or read a
//! message, delete anything or open a window. The widget tells the host only that it is
//! ready, that the visitor closed it, and a coarse error kind; never text, tokens, counts,
//! timings or cache state. (It never asks to be resized: the loader sizes the panel to the
//! viewport.)
//!
//! Handshake: the widget posts `ready` to `window.parent`, naming the host's origin as the
//! target (never `"*"`); the host answers on the window with `connect` and a transferred
//! `MessagePort`. The widget takes that message only from `window.parent`, from the expected
//! origin, and only if the deployment's allow-list (`embed-allow.json`) lists it; after that
//! it listens on the port alone, so no other frame can speak to it.

use serde::{Deserialize, Serialize};

/// Whether this page is the widget (`embed.html`, marked by a `<meta>` the build adds).
pub fn is_embed_page() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.query_selector(r#"meta[name="hearth-view"][content="embed"]"#).ok().flatten())
        .is_some()
}

/// Marks every message of this protocol (and its version).
pub const PROTOCOL: &str = "hearth-embed/1";

/// Longest accepted fields (characters); longer ones are cut.
const MAX_TITLE: usize = 80;
const MAX_GREETING: usize = 600;
const MAX_SYSTEM: usize = 4000;
const MAX_MODEL_ID: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThemeChoice {
    Light,
    Dark,
    /// The visitor's system preference.
    #[default]
    Auto,
}

/// What the host configures. Every field is optional; what is missing keeps its default. An
/// unknown field makes the whole message void (no smuggled request rides along).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedConfig {
    /// A catalog id.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// The host's instructions to the model, shown to the visitor as such.
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub theme: Option<ThemeChoice>,
    /// Shown in the empty chat; never sent to the model.
    #[serde(default)]
    pub greeting: Option<String>,
}

fn clean(text: Option<String>, max: usize) -> Option<String> {
    let text = text?;
    let text: String = text.trim().chars().filter(|c| !c.is_control() || *c == '\n').take(max).collect();
    (!text.is_empty()).then_some(text)
}

impl EmbedConfig {
    /// Trimmed, control characters dropped (but newlines), cut to their limits; a model id
    /// with characters no catalog id has is dropped.
    pub fn cleaned(self) -> EmbedConfig {
        EmbedConfig {
            model: clean(self.model, MAX_MODEL_ID)
                .filter(|m| m.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))),
            title: clean(self.title, MAX_TITLE).map(|t| t.replace('\n', " ")),
            system: clean(self.system, MAX_SYSTEM),
            theme: self.theme,
            greeting: clean(self.greeting, MAX_GREETING),
        }
    }

    /// From the iframe's query string (`embed.html?model=…&title=…`), for plain iframes.
    pub fn from_query(query: &str) -> EmbedConfig {
        let mut c = EmbedConfig::default();
        for (k, v) in form_pairs(query) {
            match k.as_str() {
                "model" => c.model = Some(v),
                "title" => c.title = Some(v),
                "system" => c.system = Some(v),
                "greeting" => c.greeting = Some(v),
                "theme" => {
                    c.theme = match v.as_str() {
                        "light" => Some(ThemeChoice::Light),
                        "dark" => Some(ThemeChoice::Dark),
                        "auto" => Some(ThemeChoice::Auto),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        c.cleaned()
    }

    /// `self` with the fields `other` sets.
    pub fn merged(mut self, other: EmbedConfig) -> EmbedConfig {
        let other = other.cleaned();
        self.model = other.model.or(self.model);
        self.title = other.title.or(self.title);
        self.system = other.system.or(self.system);
        self.theme = other.theme.or(self.theme);
        self.greeting = other.greeting.or(self.greeting);
        self
    }
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space), as `URLSearchParams` reads them.
pub fn form_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s).decode_utf8_lossy().into_owned()
    };
    query
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// A message from the host. Anything that does not parse as one of these is ignored, so a
/// host asking to download, send, delete or open gets nothing done.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum FromHost {
    /// On the window, with a transferred `MessagePort`: the handshake.
    Connect {
        hearth: String,
        #[serde(default)]
        config: EmbedConfig,
    },
    /// On the port: new settings.
    Configure {
        hearth: String,
        config: EmbedConfig,
    },
    /// On the port: the host's launcher opened or closed the panel.
    Open {
        hearth: String,
    },
    Close {
        hearth: String,
    },
}

impl FromHost {
    /// `None` for anything that is not a message of this protocol version.
    pub fn parse(json: &str) -> Option<FromHost> {
        let msg: FromHost = serde_json::from_str(json).ok()?;
        let version = match &msg {
            FromHost::Connect { hearth, .. }
            | FromHost::Configure { hearth, .. }
            | FromHost::Open { hearth }
            | FromHost::Close { hearth } => hearth,
        };
        (version == PROTOCOL).then_some(msg)
    }
}

/// Coarse error kinds the host may learn (to hide its launcher, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostErrorKind {
    NoWebgpu,
    /// A sandboxed or credentialless frame: models cannot be kept.
    UnsupportedFrame,
}

/// Everything the widget ever tells the host.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ToHost {
    /// The widget's UI is up (sent before, and whatever the result of, any model lookup).
    Ready,
    /// The visitor opened or closed the panel from inside.
    State {
        open: bool,
    },
    Error {
        kind: HostErrorKind,
    },
}

impl ToHost {
    pub fn to_json(self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("hearth".into(), PROTOCOL.into());
        }
        v.to_string()
    }
}

/// The deployment's allow-list (`embed-allow.json`): which sites may embed the widget. The
/// server sends the same list as the embed's `frame-ancestors`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AllowList {
    /// Origins (`https://docs.example.com`), or `"*"` for any.
    pub embedders: Vec<String>,
}

impl Default for AllowList {
    /// Any site may embed (and none may read: that holds whatever the list says).
    fn default() -> Self {
        AllowList { embedders: vec!["*".into()] }
    }
}

impl AllowList {
    pub fn allows(&self, origin: &str) -> bool {
        // Only a real origin: not an opaque one ("null", a sandboxed host), never "*".
        parse_origin(origin).is_some_and(|o| o == origin)
            && self.embedders.iter().any(|e| e == "*" || e.trim_end_matches('/') == origin)
    }
}

/// `text` if it is an http(s) origin as browsers write one (`https://host[:port]`, nothing
/// after it): the loader's `host=` claim is used as a `postMessage` target only if it is.
pub fn parse_origin(text: &str) -> Option<&str> {
    let (scheme, authority) = text.split_once("://")?;
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (inside, after) = v6.split_once(']')?;
            (!inside.is_empty() && inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':'), after)
        }
        None => {
            let end = authority.find(':').unwrap_or(authority.len());
            let host = &authority[..end];
            let ok = !host.is_empty()
                && host.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'));
            (ok, &authority[end..])
        }
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    (matches!(scheme, "http" | "https") && host_ok && port_ok).then_some(text)
}

/// Where the widget runs, as far as storage goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A normal cross-site frame: storage is partitioned by the top-level site.
    Embedded,
    /// Opened as a page of its own: Hearth's own storage.
    TopLevel,
    /// `sandbox` without `allow-same-origin`: an opaque origin, no storage at all.
    Sandboxed,
    /// A `credentialless` iframe: storage that is dropped when the page goes.
    Credentialless,
}

impl FrameKind {
    pub fn detect(origin: &str, credentialless: bool, top_level: bool) -> FrameKind {
        if origin == "null" {
            FrameKind::Sandboxed
        } else if credentialless {
            FrameKind::Credentialless
        } else if top_level {
            FrameKind::TopLevel
        } else {
            FrameKind::Embedded
        }
    }
}

/// The host's site as the visitor knows it: the origin without `https://`.
pub fn site_label(origin: &str) -> &str {
    origin.strip_prefix("https://").unwrap_or(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_messages_only_configure() {
        let c = FromHost::parse(
            r#"{"hearth":"hearth-embed/1","type":"connect","config":{"model":"m-1","title":" Ask ","system":"Be brief.","theme":"dark"}}"#,
        );
        let Some(FromHost::Connect { config, .. }) = c else { panic!("{c:?}") };
        let config = config.cleaned();
        assert_eq!(config.model.as_deref(), Some("m-1"));
        assert_eq!(config.title.as_deref(), Some("Ask"));
        assert_eq!(config.theme, Some(ThemeChoice::Dark));
        for json in [
            // What a host must not be able to ask for: not messages of this protocol.
            r#"{"hearth":"hearth-embed/1","type":"download","id":"m"}"#,
            r#"{"hearth":"hearth-embed/1","type":"send","text":"hi"}"#,
            r#"{"hearth":"hearth-embed/1","type":"delete","id":"m"}"#,
            r#"{"hearth":"hearth-embed/1","type":"open_window"}"#,
            // Extra fields are refused, not ignored: no smuggled action.
            r#"{"hearth":"hearth-embed/1","type":"open","download":true}"#,
            r#"{"hearth":"hearth-embed/1","type":"configure","config":{"model":"m","send":"x"}}"#,
            // Another version, or none.
            r#"{"hearth":"hearth-embed/2","type":"open"}"#,
            r#"{"type":"open"}"#,
            "not json",
            "[]",
        ] {
            assert_eq!(FromHost::parse(json), None, "{json}");
        }
        assert_eq!(
            FromHost::parse(r#"{"hearth":"hearth-embed/1","type":"close"}"#),
            Some(FromHost::Close { hearth: PROTOCOL.into() })
        );
    }

    #[test]
    fn config_is_cleaned_and_merged() {
        let c = EmbedConfig::from_query(
            "?model=smollm2-135m-instruct-q4_1&title=Ask+our%20docs&system=You+answer.%0ABriefly.&theme=nope&x=1",
        );
        assert_eq!(c.model.as_deref(), Some("smollm2-135m-instruct-q4_1"));
        assert_eq!(c.title.as_deref(), Some("Ask our docs"));
        assert_eq!(c.system.as_deref(), Some("You answer.\nBriefly."));
        assert_eq!(c.theme, None);
        // A model id with a path or markup in it is not a catalog id.
        assert_eq!(EmbedConfig::from_query("model=../x").model, None);
        assert_eq!(EmbedConfig::from_query("model=%3Cb%3E").model, None);
        let long = EmbedConfig { title: Some("t".repeat(500)), ..Default::default() }.cleaned();
        assert_eq!(long.title.map(|t| t.chars().count()), Some(MAX_TITLE));
        let merged = c.clone().merged(EmbedConfig { title: Some("New".into()), ..Default::default() });
        assert_eq!((merged.title.as_deref(), merged.model), (Some("New"), c.model));
        assert_eq!(EmbedConfig::from_query("title=%20%09%20").title, None);
    }

    #[test]
    fn the_widget_tells_the_host_little() {
        assert_eq!(ToHost::Ready.to_json(), r#"{"hearth":"hearth-embed/1","type":"ready"}"#);
        assert_eq!(
            ToHost::State { open: false }.to_json(),
            r#"{"hearth":"hearth-embed/1","open":false,"type":"state"}"#
        );
        assert_eq!(
            ToHost::Error { kind: HostErrorKind::NoWebgpu }.to_json(),
            r#"{"hearth":"hearth-embed/1","kind":"no_webgpu","type":"error"}"#
        );
    }

    #[test]
    fn origins() {
        for good in [
            "https://a.example",
            "http://localhost:8081",
            "http://127.0.0.1:9",
            "http://[::1]:80",
            "https://xn--bcher-kva.example",
        ] {
            assert_eq!(parse_origin(good), Some(good), "{good}");
        }
        for bad in [
            "*",
            "null",
            "",
            "https://",
            "https://a.example/",
            "https://a.example/x",
            "javascript:alert(1)",
            "https://A.example",
            "https://a.example:",
            "https://a.example:123456",
            "ftp://a.example",
            "https://a b",
            "https://a.example?x",
            "https://user@a.example",
        ] {
            assert_eq!(parse_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn allow_list() {
        let any = AllowList::default();
        assert!(any.allows("https://a.example") && !any.allows("null"));
        // Even a list open to every site never lets "*" (or a non-origin) through as a target.
        assert!(!any.allows("*") && !any.allows("https://a.example/path"));
        let list: AllowList =
            serde_json::from_str(r#"{"embedders":["https://a.example/","http://localhost:8081"]}"#).unwrap();
        assert!(list.allows("https://a.example") && list.allows("http://localhost:8081"));
        assert!(!list.allows("https://b.example") && !list.allows("http://localhost:8082"));
        assert!(!list.allows("https://a.example.evil"));
    }

    #[test]
    fn frame_kinds() {
        assert_eq!(FrameKind::detect("null", false, false), FrameKind::Sandboxed);
        assert_eq!(FrameKind::detect("null", true, true), FrameKind::Sandboxed);
        assert_eq!(FrameKind::detect("http://a", true, false), FrameKind::Credentialless);
        assert_eq!(FrameKind::detect("http://a", false, true), FrameKind::TopLevel);
        assert_eq!(FrameKind::detect("http://a", false, false), FrameKind::Embedded);
    }
}
