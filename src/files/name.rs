//! Sanitising file names offered by peers (PROTOCOL.md §14.1).
//!
//! A name from the network is display text, never a path. [`sanitize`] turns it into a
//! single, harmless path component that is only ever joined to a directory the user chose.

use crate::limits::MAX_FILE_NAME;

// Bidirectional formatting characters can disguise an extension
// (`photo\u{202e}gpj.exe` shows as `photoexe.jpg`).
use crate::terminal::is_bidi_control;

/// A safe single path component for an untrusted `name`: no separators, no NUL or
/// control or bidi characters, no leading/trailing dots or spaces (so never `.` or
/// `..`), at most [`MAX_FILE_NAME`] bytes (the extension is kept when cutting), never
/// empty (`file`).
pub fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter_map(|c| match c {
            '/' | '\\' | '\0' => Some('_'),
            c if c.is_control() || is_bidi_control(c) => None,
            c => Some(c),
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let mut out = cut(trimmed, MAX_FILE_NAME);
    if out.is_empty() {
        out = "file".to_owned();
    }
    out
}

/// Cuts `s` to at most `max` bytes at a character boundary, keeping a short extension.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let ext = s
        .rfind('.')
        .map(|i| &s[i..])
        .filter(|e| e.len() <= 16 && e.len() < max / 2)
        .unwrap_or("");
    let mut end = max - ext.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let stem = s[..end].trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    format!("{stem}{ext}")
}

/// A name not taken in `dir`: `name`, then `stem (1).ext`, `stem (2).ext`, …
pub fn unused_in(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    (1..10_000)
        .map(|n| dir.join(format!("{stem} ({n}){ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_names() {
        assert_eq!(sanitize("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(sanitize(".."), "file");
        assert_eq!(sanitize("."), "file");
        assert_eq!(sanitize(""), "file");
        assert_eq!(sanitize("  .hidden  "), "hidden");
        assert_eq!(sanitize("a\\b\0c"), "a_b_c");
        assert_eq!(sanitize("bell\x07\x1b[31mred"), "bell[31mred");
        assert_eq!(sanitize("photo\u{202e}gpj.exe"), "photogpj.exe");
        assert_eq!(sanitize("voice note.ogg"), "voice note.ogg");
        assert_eq!(sanitize("Ünïcödé 写真.png"), "Ünïcödé 写真.png");
        let long = format!("{}.jpeg", "é".repeat(300));
        let s = sanitize(&long);
        assert!(s.len() <= MAX_FILE_NAME && s.ends_with(".jpeg"), "{s}");
    }

    #[test]
    fn unused_names() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(unused_in(d.path(), "a.txt"), d.path().join("a.txt"));
        std::fs::write(d.path().join("a.txt"), b"x").unwrap();
        assert_eq!(unused_in(d.path(), "a.txt"), d.path().join("a (1).txt"));
        std::fs::write(d.path().join("a (1).txt"), b"x").unwrap();
        assert_eq!(unused_in(d.path(), "a.txt"), d.path().join("a (2).txt"));
        assert_eq!(unused_in(d.path(), "noext"), d.path().join("noext"));
    }

    proptest! {
        #[test]
        fn always_one_safe_component(name in any::<String>()) {
            let s = sanitize(&name);
            prop_assert!(!s.is_empty() && s.len() <= MAX_FILE_NAME);
            prop_assert!(!s.contains('/') && !s.contains('\\') && !s.contains('\0'));
            prop_assert!(!s.chars().any(|c| c.is_control() || is_bidi_control(c)));
            prop_assert!(s != "." && s != ".." && !s.starts_with('.'));
            let p = std::path::Path::new(&s);
            prop_assert_eq!(p.components().count(), 1);
            prop_assert!(matches!(p.components().next(), Some(std::path::Component::Normal(_))));
            // Idempotent.
            prop_assert_eq!(sanitize(&s), s.clone());
        }
    }
}
