//! The start-up screens: connecting, unlock (start the daemon), Tor
//! bootstrap progress, first run (create an identity) and its fingerprint.

use eframe::egui::{self, RichText};

use crate::app::{App, Screen};

/// A labelled single-line field; the label names it for screen readers.
/// A password field keeps no undo history: egui's undoer would otherwise
/// hold copies of the passphrase.
pub(crate) fn field(
    ui: &mut egui::Ui,
    label: &str,
    text: &mut String,
    password: bool,
) -> egui::Response {
    let r = ui
        .horizontal(|ui| {
            let l = ui.label(label);
            ui.add(
                egui::TextEdit::singleline(text)
                    .password(password)
                    .desired_width(260.0),
            )
            .labelled_by(l.id)
        })
        .inner;
    if password {
        use egui::text_edit::TextEditState;
        if let Some(mut state) = TextEditState::load(ui.ctx(), r.id) {
            state.clear_undoer();
            state.store(ui.ctx(), r.id);
        }
    }
    r
}

/// A block of form rows, centred as a whole (rows keep their own layout).
fn centered<R>(ui: &mut egui::Ui, add: impl FnOnce(&mut egui::Ui) -> R) -> R {
    const WIDTH: f32 = 400.0;
    let pad = ((ui.available_width() - WIDTH) / 2.0).max(0.0);
    ui.horizontal(|ui| {
        ui.add_space(pad);
        ui.vertical(|ui| {
            ui.set_width(WIDTH);
            add(ui)
        })
        .inner
    })
    .inner
}

pub(crate) fn error_banner(app: &mut App, ui: &mut egui::Ui) {
    if let Some(e) = app.error.clone() {
        ui.horizontal_wrapped(|ui| {
            ui.colored_label(ui.visuals().error_fg_color, format!("⚠ {e}"));
            if ui.small_button("Dismiss").clicked() {
                app.error = None;
            }
        });
    }
}

/// Draws the start-up screen `screen`.
pub fn screen(app: &mut App, ui: &mut egui::Ui, screen: &Screen) {
    let ctx = ui.ctx().clone();
    egui::CentralPanel::default().show(ui, |ui| {
        ui.vertical_centered(|ui| {
            ui.add_space(40.0);
            ui.heading("Umbra");
            ui.add_space(16.0);
            error_banner(app, ui);
            ui.add_space(8.0);
            match screen {
                Screen::Connecting => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Connecting to the Umbra daemon…");
                    });
                }
                Screen::Unlock => unlock(app, ui, &ctx),
                Screen::Starting(pct, what) => {
                    ui.label(format!(
                        "Starting Umbra for {}",
                        app.opts.umbra.data_dir.display()
                    ));
                    ui.add_space(8.0);
                    let p = pct.unwrap_or(0);
                    ui.add(
                        egui::ProgressBar::new(f32::from(p) / 100.0)
                            .text(format!("{what}: {p}%"))
                            .desired_width(360.0),
                    );
                    ui.label("This takes a few seconds to a minute the first time.");
                }
                Screen::FirstRun => first_run(app, ui, &ctx),
                Screen::Creating => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Creating your identity (OpenPGP key and encrypted store)…");
                    });
                }
                Screen::Created(fp) => {
                    ui.label("Your identity is ready. Its fingerprint:");
                    ui.add_space(6.0);
                    ui.label(
                        RichText::new(crate::format::grouped(fp))
                            .monospace()
                            .size(18.0),
                    );
                    ui.add_space(6.0);
                    ui.label(
                        "Read it to your contacts over another channel (in person, a call) \
                         so they can check it is really you.",
                    );
                    ui.add_space(10.0);
                    if ui.button("Start Umbra").clicked() {
                        let pass = app.form.created.take().unwrap_or_default();
                        app.start_daemon(pass, &ctx);
                    }
                }
                Screen::Main => {}
            }
        });
    });
}

fn unlock(app: &mut App, ui: &mut egui::Ui, ctx: &egui::Context) {
    ui.label(format!(
        "Umbra is not running for {}.",
        app.opts.umbra.data_dir.display()
    ));
    ui.label("Enter your passphrase to start it. It goes to the daemon and is not kept here.");
    ui.add_space(8.0);
    let r = centered(ui, |ui| {
        field(ui, "Passphrase", &mut app.form.passphrase, true)
    });
    if !r.has_focus() && app.form.passphrase.is_empty() && app.error.is_none() {
        r.request_focus();
    }
    let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    if (ui.button("Start Umbra").clicked() || enter) && !app.form.passphrase.is_empty() {
        let fresh = crate::app::StartForm::default().passphrase;
        let pass = std::mem::replace(&mut app.form.passphrase, fresh);
        app.start_daemon(pass, ctx);
    }
}

fn first_run(app: &mut App, ui: &mut egui::Ui, ctx: &egui::Context) {
    ui.label("Welcome. Create your identity to start.");
    ui.label(
        "Your username is how others find you (3–32 characters: a–z, 0–9 and _, \
         starting with a letter).",
    );
    ui.add_space(8.0);
    field(ui, "Username", &mut app.form.name, false);
    field(ui, "Passphrase", &mut app.form.passphrase, true);
    let r = field(ui, "Passphrase again", &mut app.form.confirm, true);
    ui.label(
        "The passphrase encrypts everything on this computer. Without it nothing \
         can be opened again: write it down somewhere safe.",
    );
    let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    if ui.button("Create identity").clicked() || enter {
        app.create_identity(ctx);
    }
}
