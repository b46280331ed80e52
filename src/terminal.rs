//! Text from others, made safe for a terminal (SECURITY-2026-11 L5).
//!
//! Messages, notes, file names and a Handshaker's error texts come from
//! people we do not control. Printed raw, an escape sequence can retitle the
//! window, rewrite the clipboard (OSC 52), clear the screen or fake earlier
//! lines; a carriage return can overwrite what was printed; bidirectional
//! overrides (U+202E) can show `exe.jpg` for `gpj.exe`. Everything the CLI
//! prints goes through [`SafeWriter`], and the TUI renders peer text through
//! [`neutralize`]: C0 and C1 controls and bidi formatting characters become
//! U+FFFD (`�`), visibly. The character rules live in `umbra_control::text`,
//! shared with the desktop window.

use std::io::{self, Write};

pub use umbra_control::text::{REPLACEMENT, is_bidi_control, is_unsafe, neutralize};

/// Whether `c` may pass through [`SafeWriter`]: anything safe, plus line
/// feeds and tabs (the CLI's own layout).
fn passes_writer(c: char) -> bool {
    c == '\n' || c == '\t' || !is_unsafe(c)
}

/// A writer that neutralises unsafe characters in UTF-8 text on its way to
/// `W` (a terminal): controls other than line feed and tab, and bidi
/// formatting characters, become U+FFFD; so do invalid UTF-8 bytes. A
/// character split across writes is held until it is complete.
pub struct SafeWriter<W: Write> {
    inner: W,
    /// An incomplete UTF-8 sequence from the end of the last write (≤ 3 bytes).
    pending: Vec<u8>,
}

impl<W: Write> SafeWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        SafeWriter {
            inner,
            pending: Vec::new(),
        }
    }

    fn emit(&mut self, text: &str) -> io::Result<()> {
        if text.chars().all(passes_writer) {
            return self.inner.write_all(text.as_bytes());
        }
        let cleaned: String = text
            .chars()
            .map(|c| if passes_writer(c) { c } else { REPLACEMENT })
            .collect();
        self.inner.write_all(cleaned.as_bytes())
    }
}

impl<W: Write> Write for SafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(buf);
        let mut rest: &[u8] = &bytes;
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    self.emit(text)?;
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // The prefix is valid UTF-8 by construction.
                    self.emit(std::str::from_utf8(valid).unwrap_or_default())?;
                    match e.error_len() {
                        Some(n) => {
                            self.emit(&REPLACEMENT.to_string())?;
                            rest = &after[n..];
                        }
                        None => {
                            // Incomplete at the end: wait for the rest.
                            self.pending = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for SafeWriter<W> {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.pending.clear();
            let _ = self.emit(&REPLACEMENT.to_string());
            let _ = self.inner.flush();
        }
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn through_writer(chunks: &[&[u8]]) -> String {
        let mut out = Vec::new();
        {
            let mut w = SafeWriter::new(&mut out);
            for c in chunks {
                w.write_all(c).unwrap();
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_returns_and_overrides_never_pass() {
        let hostile =
            "\u{1b}]0;pwned\u{7}\u{1b}]52;c;ZWNobyBoaQ==\u{7}\r\u{9b}2J photo\u{202e}gpj.exe";
        let one_line = neutralize(hostile);
        assert!(!one_line.chars().any(is_unsafe), "{one_line:?}");
        assert!(one_line.contains("pwned") && one_line.contains("photo"));
        let written = through_writer(&[hostile.as_bytes(), b"\nnext\tline\n"]);
        assert!(!written.contains('\u{1b}') && !written.contains('\r'));
        assert!(!written.contains('\u{9b}') && !written.contains('\u{202e}'));
        assert!(
            written.ends_with("\nnext\tline\n"),
            "own layout kept: {written:?}"
        );
        assert!(matches!(
            neutralize("plain text, é and 🦀"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(neutralize("a\nb"), "a\u{FFFD}b");
    }

    #[test]
    fn split_and_invalid_utf8() {
        let crab = "🦀".as_bytes();
        assert_eq!(through_writer(&[&crab[..1], &crab[1..3], &crab[3..]]), "🦀");
        assert_eq!(through_writer(&[b"a\xffb"]), "a\u{FFFD}b");
        assert_eq!(through_writer(&[b"end", &crab[..2]]), "end\u{FFFD}");
    }

    proptest! {
        #[test]
        fn chunking_never_matters_and_nothing_unsafe_passes(
            text in "\\PC{0,40}|[\\x00-\\x7f\\u{80}-\\u{9f}\\u{202a}-\\u{202e}é🦀]{0,40}",
            cut in 0usize..200,
        ) {
            let bytes = text.as_bytes();
            let cut = cut.min(bytes.len());
            let whole = through_writer(&[bytes]);
            let split = through_writer(&[&bytes[..cut], &bytes[cut..]]);
            prop_assert_eq!(&whole, &split);
            prop_assert!(whole.chars().all(passes_writer));
        }
    }
}
