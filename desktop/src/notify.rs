//! Desktop notifications (freedesktop, over D-Bus; pure Rust). They name the
//! sender only, never what was written. Shown from a thread of their own so
//! a slow or missing notification service never holds up the window.

/// Shows notifications, or nothing when disabled.
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    /// A notifier; `enabled` false shows nothing (tests, `--no-notifications`).
    pub fn new(enabled: bool) -> Self {
        Notifier { enabled }
    }

    /// Shows `text` (already safe: it names a contact only).
    pub fn show(&self, text: &str) {
        if !self.enabled {
            return;
        }
        let text = text.to_owned();
        std::thread::spawn(move || {
            if let Err(e) = notify_rust::Notification::new()
                .appname("Umbra")
                .summary("Umbra")
                .body(&text)
                .show()
            {
                tracing::debug!("no desktop notification: {e}");
            }
        });
    }
}
