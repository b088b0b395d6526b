//! Text from a model (its output, or strings from its file inside an error) shown on a
//! terminal: a control character could move the cursor, retitle the window or worse (an
//! escape sequence in a chat template's error, say). C0 and C1 controls other than newline
//! and tab are shown as visible stand-ins; `--json` output is not touched (JSON escapes them).

use std::borrow::Cow;
use std::io::IsTerminal;

/// `text` with C0 controls (and DEL) other than `\n` and `\t` as their Unicode control
/// pictures (ESC → ␛), and C1 controls (U+0080-U+009F) as U+FFFD.
pub fn clean(text: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.contains(bad) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| match c {
                c if !bad(c) => c,
                '\u{7f}' => '\u{2421}',
                c if (c as u32) < 0x20 => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
                _ => '\u{fffd}',
            })
            .collect(),
    )
}

/// [`clean`] where stdout is a terminal; as it is where it is a pipe or a file.
pub fn for_stdout(text: &str) -> Cow<'_, str> {
    if std::io::stdout().is_terminal() {
        clean(text)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible_and_text_stays() {
        assert_eq!(clean("plain text, ünïcödé, 日本\n\tand tabs"), "plain text, ünïcödé, 日本\n\tand tabs");
        assert!(matches!(clean("no controls"), Cow::Borrowed(_)));
        assert_eq!(clean("\u{1b}]0;title\u{7}"), "\u{241b}]0;title\u{2407}");
        assert_eq!(clean("a\rb\u{0}c\u{7f}"), "a\u{240d}b\u{2400}c\u{2421}");
        assert_eq!(clean("csi \u{9b}31m"), "csi \u{fffd}31m");
    }
}
