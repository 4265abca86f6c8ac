//! The API server's limits on text the operator writes, the one way text is cut to fit, and
//! the one way text from the outside world (names in manifests, certificate subjects and SANs,
//! DNS labels) is made harmless before a person's terminal or `kubectl describe` shows it.
//!
//! The sinks (condition messages, Event notes, `check`'s table) call [`escape_and_truncate`]
//! or [`escape_controls`]; the evidence in status is escaped where it is built.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A condition's `message` (metav1.Condition: maxLength 32768 bytes).
pub const MAX_CONDITION_MESSAGE: usize = 32768;
/// An Event's `note` (events.k8s.io/v1: at most 1 KiB).
pub const MAX_EVENT_NOTE: usize = 1024;

/// Whether `c` must not reach a terminal as it is: C0 controls (ESC, CR, LF, NUL, TAB...), DEL,
/// C1 controls (U+0080..U+009F, e.g. U+009B, a one-character CSI), the Unicode line and paragraph
/// separators, and the invisible formatting characters that reorder or hide text (bidi
/// embeddings, overrides and isolates such as U+202E, zero-width characters, the BOM).
pub fn is_hostile(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// `text` with every [`is_hostile`] character written as a visible escape, in Rust's notation:
/// `\n`, `\r`, `\t`, `\0`, `\x1b` for the other C0 controls and DEL, `\u{202e}` for the rest.
/// Everything else, backslashes included, is kept as it is, so that escaping twice changes
/// nothing (messages are built from evidence that is already escaped, then escaped at the sink).
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hostile) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if is_hostile(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_hostile(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// What a sink writes: `text` escaped, then cut to `max_bytes` (escaping first, so that the
/// limit holds for what is written).
pub fn escape_and_truncate(text: &str, max_bytes: usize) -> String {
    truncate(&escape_controls(text), max_bytes)
}

/// `text` cut to at most `max_bytes` bytes (the API counts bytes, not characters), on a
/// character boundary and not inside an escape written by [`escape_controls`], ending in "..."
/// when something was cut.
pub fn truncate(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut end = max_bytes.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // An escape is at most 10 bytes (`\u{10ffff}`): one that starts shortly before the cut and
    // would end after it is left out whole.
    let window = end.saturating_sub(10);
    if let Some(i) = text[window..end].rfind('\\').map(|i| window + i)
        && i + escape_len(&text[i..]) > end
    {
        end = i;
    }
    format!("{}...", &text[..end])
}

/// Length in bytes of the escape `\...` that `text` starts with (1 when it is none).
fn escape_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    match bytes.get(1) {
        Some(b'n' | b'r' | b't' | b'0') => 2,
        Some(b'x') if bytes.len() >= 4 && bytes[2..4].iter().all(u8::is_ascii_hexdigit) => 4,
        Some(b'x') => usize::MAX,
        Some(b'u') if bytes.get(2) == Some(&b'{') => text
            .find('}')
            .filter(|close| text[3..*close].bytes().all(|b| b.is_ascii_hexdigit()))
            .map_or(usize::MAX, |close| close + 1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("", 0), "");
    }

    #[test]
    fn long_text_fits_in_bytes_on_a_char_boundary() {
        // "é" is two bytes: a character count would let this overflow the byte limit twice over.
        let long = "é".repeat(MAX_EVENT_NOTE);
        let cut = truncate(&long, MAX_EVENT_NOTE);
        assert!(cut.len() <= MAX_EVENT_NOTE, "{} bytes", cut.len());
        assert!(cut.ends_with("..."));
        assert_eq!(
            cut.len(),
            MAX_EVENT_NOTE - 1,
            "1021 bytes of é are 510 whole characters"
        );
        let ascii = truncate(&"x".repeat(5000), MAX_EVENT_NOTE);
        assert_eq!(ascii.len(), MAX_EVENT_NOTE);
    }

    #[test]
    fn tiny_limits_do_not_panic() {
        assert_eq!(truncate("abcdef", 2), "...");
    }

    #[test]
    fn controls_and_bidi_overrides_are_escaped_visibly() {
        assert_eq!(
            escape_controls("www\x1b[31m.shop\r\n\0\t\x7f\u{9b}2J\u{202e}elpmaxe"),
            "www\\x1b[31m.shop\\r\\n\\0\\t\\x7f\\u{9b}2J\\u{202e}elpmaxe"
        );
        for c in [
            '\u{1}', '\u{1f}', '\u{80}', '\u{85}', '\u{9f}', '\u{61c}', '\u{200b}', '\u{200e}',
            '\u{200f}', '\u{2028}', '\u{2029}', '\u{202a}', '\u{202d}', '\u{2066}', '\u{2069}',
            '\u{feff}',
        ] {
            let escaped = escape_controls(&c.to_string()).into_owned();
            assert!(escaped.starts_with('\\'), "{c:?} -> {escaped}");
            assert!(!escaped.chars().any(is_hostile), "{c:?} -> {escaped}");
        }
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in [
            "www.shop.example",
            "CN=Bücher GmbH, O=例え",
            "a\\b \"c\" {d}",
            "",
        ] {
            assert!(matches!(escape_controls(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        let once = escape_controls("a\x1bb\u{202e}c\\x1b").into_owned();
        assert_eq!(escape_controls(&once), once);
    }

    #[test]
    fn the_limit_holds_after_escaping() {
        // Each ESC grows to four bytes: cutting before escaping would overflow the limit.
        let hostile = "\x1b".repeat(MAX_EVENT_NOTE);
        let note = escape_and_truncate(&hostile, MAX_EVENT_NOTE);
        assert!(note.len() <= MAX_EVENT_NOTE, "{} bytes", note.len());
        assert!(note.ends_with("\\x1b..."), "whole escapes only: {note}");
        assert!(!note.chars().any(is_hostile));
        let bidi = "\u{202e}".repeat(MAX_CONDITION_MESSAGE);
        let message = escape_and_truncate(&bidi, MAX_CONDITION_MESSAGE);
        assert!(message.len() <= MAX_CONDITION_MESSAGE);
        assert!(message.ends_with("\\u{202e}..."), "whole escapes only");
    }

    #[test]
    fn a_cut_never_splits_an_escape() {
        // "ab\u{202e}" escaped is "ab\\u{202e}" (10 bytes): every limit that would cut inside
        // the escape leaves it out whole.
        let escaped = escape_controls("ab\u{202e}cd").into_owned();
        for max in 3..escaped.len() {
            let cut = truncate(&escaped, max);
            assert!(cut.len() <= max, "{max}: {cut}");
            let kept = cut.strip_suffix("...").unwrap_or(&cut);
            assert!(
                !kept.contains('\\') || kept.contains("\\u{202e}"),
                "{max}: {cut}"
            );
        }
    }
}
