//! The app's Content-Security-Policy. Trunk writes one inline module script (the loader that
//! instantiates the wasm), so the policy allows exactly that script by its sha256, computed
//! after the build ([`apply`]), and nothing else inline. `dist/index.html` carries the policy
//! as a `<meta>` for static hosts; `cargo xtask serve` sends the same one as a header.
//!
//! - `script-src 'self' 'wasm-unsafe-eval'` + the loader's hash: the app's own scripts and
//!   wasm, no inline or injected script, no `eval`;
//! - `worker-src 'self'`: the engine worker and the service worker;
//! - `connect-src 'self' https: http://localhost:* http://127.0.0.1:*`: the catalog's CDN
//!   (and its redirects) and custom model URLs, which are https, or a model server on this
//!   machine;
//! - `object-src 'none'; base-uri 'none'`.

use anyhow::{bail, Result};
use base64::Engine as _;
use sha2::{Digest, Sha256};

const META_START: &str = "<meta http-equiv=\"Content-Security-Policy\" content=\"";

/// The policy for a page whose inline scripts are `inline` (their exact text).
pub fn policy(inline: &[&str]) -> String {
    let hashes: String = inline
        .iter()
        .map(|s| {
            format!(" 'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s.as_bytes())))
        })
        .collect();
    format!(
        "script-src 'self' 'wasm-unsafe-eval'{hashes}; worker-src 'self'; \
         connect-src 'self' https: http://localhost:* http://127.0.0.1:*; object-src 'none'; base-uri 'none'"
    )
}

/// The text of every `<script>` without a `src`.
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else { break };
        let Some(close) = after.find("</script>") else { break };
        if !after[..open_end].contains(" src=") && close > open_end {
            out.push(&after[open_end + 1..close]);
        }
        rest = &after[close + "</script>".len()..];
    }
    out
}

/// `html` with its policy `<meta>` (first in `<head>`, so it covers every script after it)
/// set for the inline scripts it has now.
pub fn apply(html: &str) -> Result<String> {
    let html = remove_meta(html);
    let policy = policy(&inline_scripts(&html));
    let Some(head) = html.find("<head>") else { bail!("index.html has no <head>") };
    let at = head + "<head>".len();
    Ok(format!("{}\n    {META_START}{policy}\" />{}", &html[..at], &html[at..]))
}

fn remove_meta(html: &str) -> String {
    match html.find(META_START) {
        Some(start) => {
            let end = html[start..].find("/>").map_or(html.len(), |e| start + e + 2);
            let start = html[..start].trim_end_matches([' ', '\n']).len();
            format!("{}{}", &html[..start], &html[end..])
        }
        None => html.to_string(),
    }
}

/// The policy a page's `<meta>` carries, for the server to send as a header.
pub fn from_html(html: &str) -> Option<&str> {
    let start = html.find(META_START)? + META_START.len();
    let len = html[start..].find('"')?;
    Some(&html[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\" />\n\
        <script type=\"module\">alert(1)</script>\n    <script src=\"register-sw.js\"></script>\n  </head>\n\
        <body><script>\nimport x;\n</script></body>\n</html>\n";

    #[test]
    fn inline_scripts_are_allowed_by_hash_and_nothing_else() {
        let html = apply(PAGE).unwrap();
        let policy = from_html(&html).unwrap();
        // The hashes, from Python's hashlib and base64 (not from this code).
        assert!(policy.contains("'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"), "{policy}");
        assert!(policy.contains("'sha256-o8qrrgPw3zjsDsTwSjGoK+/LhuGQxgOVjobczd4hE/8='"), "{policy}");
        assert_eq!(policy.matches("'sha256-").count(), 2, "{policy}");
        for part in [
            "script-src 'self' 'wasm-unsafe-eval'",
            "worker-src 'self'",
            "connect-src 'self' https:",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(policy.contains(part), "{part}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline") && !policy.contains("'unsafe-eval'"));
        // Before every script, and applied twice it is still one policy.
        assert!(html.find(META_START).unwrap() < html.find("<script").unwrap());
        let again = apply(&html).unwrap();
        assert_eq!(again, html);
    }
}
