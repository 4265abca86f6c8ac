//! The API server's limits on text the operator writes, and the one way text is cut to fit.

/// A condition's `message` (metav1.Condition: maxLength 32768 bytes).
pub const MAX_CONDITION_MESSAGE: usize = 32768;
/// An Event's `note` (events.k8s.io/v1: at most 1 KiB).
pub const MAX_EVENT_NOTE: usize = 1024;

/// `text` cut to at most `max_bytes` bytes (the API counts bytes, not characters), on a
/// character boundary, ending in "..." when something was cut.
pub fn truncate(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut end = max_bytes.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
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
}
