//! Text from others, made safe to show (SECURITY-2026-11 L5).
//!
//! Messages, notes, file names and a Handshaker's error texts come from
//! people we do not control. A carriage return or escape sequence can
//! overwrite or fake what a terminal shows; bidirectional overrides (U+202E)
//! can show `exe.jpg` for `gpj.exe` in any front end. Every front end (CLI,
//! terminal UI, desktop window) shows peer text through [`neutralize`] (one
//! line) or [`neutralize_multiline`] (message bodies): C0 and C1 controls and
//! bidi formatting characters become U+FFFD (`�`), visibly.

use std::borrow::Cow;

/// The replacement shown for a neutralised character.
pub const REPLACEMENT: char = '\u{FFFD}';

/// Bidirectional formatting characters (marks, embeddings, overrides,
/// isolates, the Arabic letter mark), which reorder what follows them.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// Whether `c` must not be shown from untrusted text: a C0 or C1 control
/// (DEL included) or a bidi formatting character.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// `s` with every unsafe character (line breaks and tabs included) replaced
/// by U+FFFD: for text shown on one line.
pub fn neutralize(s: &str) -> Cow<'_, str> {
    replace_where(s, is_unsafe)
}

/// `s` with every unsafe character except line feed and tab replaced by
/// U+FFFD: for a message body shown over several lines.
pub fn neutralize_multiline(s: &str) -> Cow<'_, str> {
    replace_where(s, |c| c != '\n' && c != '\t' && is_unsafe(c))
}

fn replace_where(s: &str, bad: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&bad) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| if bad(c) { REPLACEMENT } else { c })
            .collect(),
    )
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn one_line_and_multiline() {
        let evil = "a\u{1b}]52;c;x\u{7}\r\nb\u{202e}gpj.exe\tc\u{85}";
        let one = neutralize(evil);
        assert!(!one.chars().any(is_unsafe), "{one:?}");
        assert_eq!(one.matches(REPLACEMENT).count(), 7);
        let multi = neutralize_multiline(evil);
        assert!(multi.contains('\n') && multi.contains('\t'));
        assert!(!multi.contains('\r') && !multi.contains('\u{202e}'));
        assert!(!multi.contains('\u{1b}') && !multi.contains('\u{85}'));
        assert!(matches!(neutralize("plain text ü"), Cow::Borrowed(_)));
    }
}
