//! Text from outside, made safe to quote and checked for bytes that have no
//! business in it.
//!
//! Every status message and log line that repeats what a caller sent uses
//! [`excerpt`]: at most [`EXCERPT_CHARS`] characters, `{:?}`-escaped (so a
//! newline cannot forge a log line and a 10 000-character input cannot blow
//! a client's metadata limit), with `…` when cut. Every string field a
//! service stores goes through [`check`] (or [`check_line`]), which refuses
//! NUL and other control characters.

use std::fmt;

/// The most characters of an input a message quotes.
pub const EXCERPT_CHARS: usize = 64;

/// `input` as a short, escaped quotation: `"abc\r\n…"`-style, never longer
/// than [`EXCERPT_CHARS`] characters of the input (plus escapes and quotes).
pub fn excerpt(input: &str) -> String {
    Excerpt(input).to_string()
}

/// `input` cut to at most `max_chars` characters (`…` when cut), unescaped:
/// for messages built by a library that quote caller input inside a longer
/// explanation (a JSON parser's error, say) and go where the text is escaped
/// anyway, such as a JSON response body.
pub fn clipped(input: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match input.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &input[..cut]).into(),
        None => input.into(),
    }
}

/// [`excerpt`] as a `Display`, for log fields (`%Excerpt(&input)`).
#[derive(Debug, Clone, Copy)]
pub struct Excerpt<'a>(pub &'a str);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(EXCERPT_CHARS) {
            Some((cut, _)) => write!(f, "{:?}…", &self.0[..cut]),
            None => write!(f, "{:?}", self.0),
        }
    }
}

/// Why a text field was refused; the message names the field and quotes an
/// excerpt of the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must not contain control characters such as NUL or line breaks (got {value})")]
pub struct ControlCharacters {
    /// The field.
    pub field: String,
    /// An [`excerpt`] of the value.
    pub value: String,
}

/// Refuses `value` if it holds any control character (NUL, CR, LF, TAB, …):
/// for names, addresses, ids — one-line text.
pub fn check_line(field: &str, value: &str) -> Result<(), ControlCharacters> {
    refuse(field, value, false)
}

/// Refuses `value` if it holds NUL or a control character other than line
/// breaks and tabs: for free text such as descriptions.
pub fn check(field: &str, value: &str) -> Result<(), ControlCharacters> {
    refuse(field, value, true)
}

fn refuse(field: &str, value: &str, breaks_allowed: bool) -> Result<(), ControlCharacters> {
    if has_control(value, breaks_allowed) {
        return Err(ControlCharacters {
            field: field.to_owned(),
            value: excerpt(value),
        });
    }
    Ok(())
}

/// Whether `value` holds a control character (Unicode's `Cc`: U+0000–U+001F,
/// U+007F–U+009F), line breaks and tabs aside if `breaks_allowed`.
/// Read byte by byte, not decoded: every stored row's text goes through
/// here when read. In UTF-8 the C1 controls are `C2 80`–`C2 9F`, and `C2`
/// only ever begins a character.
fn has_control(value: &str, breaks_allowed: bool) -> bool {
    let bytes = value.as_bytes();
    bytes.iter().enumerate().any(|(at, byte)| match byte {
        b'\n' | b'\r' | b'\t' => !breaks_allowed,
        0..=0x1f | 0x7f => true,
        0xc2 => matches!(bytes.get(at + 1), Some(0x80..=0x9f)),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_escaped_and_marked_when_cut() {
        assert_eq!(excerpt("abc"), "\"abc\"");
        assert_eq!(excerpt("a\r\nb\0"), "\"a\\r\\nb\\0\"");
        let long = "x".repeat(10_000);
        let quoted = excerpt(&long);
        assert_eq!(quoted, format!("\"{}\"…", "x".repeat(EXCERPT_CHARS)));
        // Cut on a character boundary, never inside one.
        let wide = "é".repeat(100);
        assert!(excerpt(&wide).ends_with("\"…"));
        assert_eq!(excerpt(&wide).chars().filter(|&c| c == 'é').count(), 64);
    }

    #[test]
    fn control_characters_are_refused_with_an_excerpt() {
        assert!(check_line("name", "Ewan Valentine").is_ok());
        for bad in ["Eve\r\nBcc: spy@example.com", "nul\0", "tab\t", "\u{7f}"] {
            let error = check_line("name", bad).expect_err(bad);
            assert!(error.to_string().starts_with("name must not"), "{error}");
            assert!(!error.to_string().contains('\n'));
        }
        assert!(check("description", "two\nlines\tok").is_ok());
        assert!(check("description", "nul\0").is_err());
        let error = check("description", &format!("{}\0", "y".repeat(5000))).unwrap_err();
        assert!(error.to_string().len() < 200, "{error}");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The byte scan finds exactly the characters Unicode calls
        /// control characters, C1 ones (two bytes in UTF-8) included.
        #[test]
        fn the_byte_scan_agrees_with_char_is_control(
            input in "(\\PC|\\p{Cc}|[\u{80}-\u{9f}\u{a0}-\u{ff}])*"
        ) {
            prop_assert_eq!(check_line("f", &input).is_err(), input.chars().any(char::is_control));
            let breaks = |c: char| c.is_control() && !matches!(c, '\n' | '\r' | '\t');
            prop_assert_eq!(check("f", &input).is_err(), input.chars().any(breaks));
        }

        /// An excerpt is bounded and one line, whatever the input.
        #[test]
        fn excerpts_are_bounded_and_one_line(input in any::<String>()) {
            let quoted = excerpt(&input);
            // 64 characters, each escaped to at most `\u{10ffff}` (10 bytes), quotes and ellipsis.
            prop_assert!(quoted.len() <= EXCERPT_CHARS * 10 + 8, "{}", quoted.len());
            prop_assert!(!quoted.chars().any(char::is_control), "{quoted:?}");
            let _ = check("field", &input);
            let _ = check_line("field", &input);
        }
    }
}
