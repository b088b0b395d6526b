//! Markdown → HTML for assistant replies (CommonMark + tables, strikethrough, task lists).
//!
//! A model's output is untrusted text, so the event stream is filtered before pulldown-cmark
//! writes HTML:
//! - raw HTML (block and inline) becomes plain text: it is escaped, never rendered;
//! - links keep only http(s) and mailto destinations and open in a new tab with
//!   `rel="noopener noreferrer"`; any other destination (javascript:, data:, relative) leaves
//!   just the link text;
//! - images become their alt text (no remote fetches from a reply: they could track the reader);
//! - fenced code gets a wrapper with `data-lang` and a copy button, whose click the message
//!   component handles by delegation.
//!
//! Every piece of HTML produced here is either written by pulldown-cmark (which escapes text)
//! or built below from escaped values, which is why the UI may insert it unchecked.

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};

/// A reply split into the model's reasoning and its answer: models with a thinking mode
/// (Qwen3, SmolLM3, DeepSeek-R1 distills) open their reply with `<think>…</think>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// What was inside `<think>`, trimmed; `None` when the reply does not open with it.
    pub thinking: Option<&'a str>,
    /// `</think>` has come (while streaming, the reasoning may still be going on).
    pub thought: bool,
    /// The rest: what the person asked for, and what Copy copies.
    pub answer: &'a str,
}

/// Splits `text` at its leading `<think>…</think>` block, if it has one (leading whitespace
/// allowed, as the templates leave a newline before it). A reply that mentions the tags
/// later is all answer.
pub fn split_thinking(text: &str) -> Reply<'_> {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let Some(rest) = text.trim_start().strip_prefix(OPEN) else {
        return Reply { thinking: None, thought: false, answer: text };
    };
    match rest.find(CLOSE) {
        Some(end) => {
            Reply { thinking: Some(rest[..end].trim()), thought: true, answer: rest[end + CLOSE.len()..].trim_start() }
        }
        None => Reply { thinking: Some(rest.trim()), thought: false, answer: "" },
    }
}

pub fn to_html(md: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut events: Vec<Event<'_>> = Vec::new();
    // Links cannot nest in CommonMark, so one flag says whether the open one was kept.
    let mut link_kept = false;
    for event in Parser::new_ext(md, options) {
        match event {
            Event::Html(raw) | Event::InlineHtml(raw) => events.push(Event::Text(raw)),
            Event::Start(Tag::Link { dest_url, title, .. }) => {
                link_kept = safe_link(&dest_url);
                if link_kept {
                    let title = if title.is_empty() { String::new() } else { format!(" title=\"{}\"", attr(&title)) };
                    events.push(Event::InlineHtml(CowStr::from(format!(
                        "<a href=\"{}\"{title} rel=\"noopener noreferrer\" target=\"_blank\">",
                        attr(&dest_url)
                    ))));
                }
            }
            Event::End(TagEnd::Link) => {
                if link_kept {
                    events.push(Event::InlineHtml(CowStr::Borrowed("</a>")));
                }
                link_kept = false;
            }
            Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => {}
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match &kind {
                    CodeBlockKind::Fenced(info) => language(info),
                    CodeBlockKind::Indented => String::new(),
                };
                let label = if lang.is_empty() { "code".to_string() } else { lang.clone() };
                let class = if lang.is_empty() { String::new() } else { format!(" class=\"language-{lang}\"") };
                events.push(Event::InlineHtml(CowStr::from(format!(
                    "<div class=\"code-block\" data-lang=\"{lang}\"><div class=\"code-head\">\
                     <span class=\"code-lang\">{label}</span>\
                     <button type=\"button\" class=\"copy-code\" aria-label=\"Copy code\">Copy</button></div>\
                     <pre><code{class}>"
                ))));
            }
            Event::End(TagEnd::CodeBlock) => {
                events.push(Event::InlineHtml(CowStr::Borrowed("</code></pre></div>\n")));
            }
            Event::Start(Tag::Table(aligns)) => {
                events.push(Event::InlineHtml(CowStr::Borrowed("<div class=\"table-wrap\">")));
                events.push(Event::Start(Tag::Table(aligns)));
            }
            Event::End(TagEnd::Table) => {
                events.push(Event::End(TagEnd::Table));
                events.push(Event::InlineHtml(CowStr::Borrowed("</div>\n")));
            }
            other => events.push(other),
        }
    }
    let mut out = String::with_capacity(md.len() * 3 / 2 + 64);
    pulldown_cmark::html::push_html(&mut out, events.into_iter());
    out
}

/// Only destinations that cannot run script or reach into the app.
fn safe_link(dest: &str) -> bool {
    let d = dest.trim_start().to_ascii_lowercase();
    d.starts_with("http://") || d.starts_with("https://") || d.starts_with("mailto:")
}

/// The first word of a fence's info string, reduced to characters safe in an attribute.
fn language(info: &str) -> String {
    let word = info.split_whitespace().next().unwrap_or("");
    word.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '.' | '#')).take(32).collect()
}

/// Escapes a value for a double-quoted HTML attribute.
fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{split_thinking, to_html, Reply};

    #[test]
    fn a_leading_think_block_is_split_from_the_answer() {
        let r = split_thinking("\n<think>\nThe user wants 2+2.\n</think>\n\nIt is **4**.");
        assert_eq!(r, Reply { thinking: Some("The user wants 2+2."), thought: true, answer: "It is **4**." });
        // Still streaming the reasoning: no answer yet.
        let r = split_thinking("<think>Let me see");
        assert_eq!(r, Reply { thinking: Some("Let me see"), thought: false, answer: "" });
        // Qwen3 with thinking off: an empty block, then the answer.
        let r = split_thinking("<think>\n\n</think>\n\nHello!");
        assert_eq!(r, Reply { thinking: Some(""), thought: true, answer: "Hello!" });
        // Tags later in a reply are text, not reasoning.
        let text = "Use <think> tags like this: <think>x</think>";
        assert_eq!(split_thinking(text), Reply { thinking: None, thought: false, answer: text });
        assert_eq!(split_thinking(""), Reply { thinking: None, thought: false, answer: "" });
    }

    #[test]
    fn raw_html_is_escaped() {
        let html = to_html("Hi <script>alert(1)</script>\n\n<div onclick=\"x()\">block</div>\n");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<div onclick"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("&lt;div onclick="), "{html}");
    }

    #[test]
    fn fenced_block_has_language_and_copy_button() {
        let html = to_html("```rust\nfn main() { let a = 1 < 2; }\n```\n");
        assert!(html.contains("data-lang=\"rust\""), "{html}");
        assert!(html.contains("class=\"language-rust\""), "{html}");
        assert!(html.contains("class=\"copy-code\""), "{html}");
        assert!(html.contains("1 &lt; 2"), "{html}");
        assert!(html.contains("</code></pre></div>"), "{html}");
    }

    #[test]
    fn hostile_language_is_reduced() {
        let html = to_html("```\"><img src=x onerror=alert(1)>\nx\n```\n");
        assert!(!html.contains("<img"), "{html}");
    }

    #[test]
    fn javascript_link_is_neutralised() {
        let html = to_html("[click](javascript:alert(1)) and [data](data:text/html,hi) and [rel](/etc)");
        assert!(!html.contains("<a"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("click"), "{html}");
    }

    #[test]
    fn safe_links_open_in_a_new_tab() {
        let html = to_html("[site](https://example.com/a?b=1&c=\"2\") <mailto:me@example.com>");
        assert!(html.contains("href=\"https://example.com/a?b=1&amp;c=&quot;2&quot;\""), "{html}");
        assert!(html.contains("rel=\"noopener noreferrer\" target=\"_blank\""), "{html}");
        assert!(html.contains("href=\"mailto:me@example.com\""), "{html}");
    }

    #[test]
    fn images_become_text() {
        let html = to_html("![a cat](https://tracker.example/pixel.png)");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("a cat"), "{html}");
    }

    #[test]
    fn table_renders() {
        let html = to_html("| a | b |\n|---|:-:|\n| 1 | 2 |\n");
        assert!(html.contains("<div class=\"table-wrap\"><table>"), "{html}");
        assert!(html.contains("<th>a</th>"), "{html}");
        assert!(html.contains("<td style=\"text-align: center\">2</td>"), "{html}");
        assert!(html.contains("</table>\n</div>"), "{html}");
    }

    #[test]
    fn strikethrough_and_tasks() {
        let html = to_html("~~old~~\n\n- [x] done\n- [ ] todo\n");
        assert!(html.contains("<del>old</del>"), "{html}");
        assert!(html.contains("type=\"checkbox\""), "{html}");
    }

    #[test]
    fn streaming_partial_fence_renders_as_open_code() {
        let html = to_html("Here:\n\n```python\ndef f(x):\n    return x <");
        assert!(html.contains("<p>Here:</p>"), "{html}");
        assert!(html.contains("data-lang=\"python\""), "{html}");
        assert!(html.contains("return x &lt;"), "{html}");
        // The block is closed even though the fence is not.
        assert!(html.trim_end().ends_with("</code></pre></div>"), "{html}");
    }
}
