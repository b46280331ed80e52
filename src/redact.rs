//! Redaction of identifiers in logs, by type rather than by discipline.
//!
//! Wrap an onion address, username, fingerprint, message id or path in
//! [`Sensitive`] before it can reach a `tracing` macro: its `Display` and
//! `Debug` print `[scrubbed]`. Code that needs the value (the UI, the CLI's
//! own output) calls [`Sensitive::expose`] explicitly.

use std::fmt;

/// A value that must never appear in a log line.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Sensitive(value)
    }
    /// The wrapped value, for deliberate, user-facing use only.
    pub fn expose(&self) -> &T {
        &self.0
    }
    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Sensitive(value)
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[scrubbed]")
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[scrubbed]")
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Sensitive::new("exampleonionaddress.onion");
        assert_eq!(
            format!("{s} {s:?} {s:#?}"),
            "[scrubbed] [scrubbed] [scrubbed]"
        );
        assert_eq!(*s.expose(), "exampleonionaddress.onion");
    }
}
