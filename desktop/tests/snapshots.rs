//! Image snapshots of the main screens, light and dark, rendered in
//! software with wgpu on Mesa's lavapipe (Vulkan on the CPU): compared with
//! the reviewed PNGs in `tests/snapshots/` (`UPDATE_SNAPSHOTS=1` rewrites
//! them; the differing image is left beside them as `*.diff.png`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use eframe::egui::{self, Key};
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use support::*;
use umbra_desktop::App;

/// Whether a software Vulkan driver is installed (`mesa-vulkan-drivers`,
/// scripts/install-deps.sh installs it).
fn lavapipe() -> bool {
    let dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];
    let found = dirs.iter().any(|d| {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().starts_with("lvp_icd"))
            })
            .unwrap_or(false)
    });
    if !found {
        eprintln!(
            "\n\n*** SKIPPED: no lavapipe Vulkan driver (apt-get install mesa-vulkan-drivers, \
             or run scripts/install-deps.sh); the window's snapshots were NOT compared ***\n"
        );
    }
    found
}

/// Lavapipe renders the same on every machine, but font hinting and
/// blending may differ by a hair between Mesa versions: a few hundred
/// pixels may differ slightly; a changed layout differs in thousands.
fn options() -> SnapshotOptions {
    SnapshotOptions::new()
        .threshold(1.0)
        .failed_pixel_count_threshold(400)
}

fn snap(h: &mut Harness<'_, App>, name: &str, dark: bool) {
    h.ctx.set_theme(if dark {
        egui::Theme::Dark
    } else {
        egui::Theme::Light
    });
    h.run_ok();
    h.snapshot_options(
        format!("{name}_{}", if dark { "dark" } else { "light" }),
        &options(),
    );
}

#[test]
fn main_screens_light_and_dark() {
    if !lavapipe() {
        return;
    }
    let fake = FakeDaemon::standard();
    let mut h = harness_with(
        &fake.data_dir(),
        std::path::Path::new("/nonexistent/umbra"),
        egui::vec2(860.0, 560.0),
    );
    wait(&mut h, "the contact list", |h| shows(h, "@carol"));
    h.get_by_label_contains("@bob, online").click();
    wait(&mut h, "bob's history", |h| shows(h, "Here."));
    fake.push(umbra_control::proto::Event::FileOffered(transfer(
        "t1",
        "photo.png",
        "offered",
        "image",
    )));
    wait(&mut h, "the offer", |h| shows(h, "Accept photo.png"));
    h.remove_cursor();
    for dark in [false, true] {
        snap(&mut h, "conversation", dark);
    }
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::R);
    wait(&mut h, "the requests", |h| shows(h, "Accept @dave"));
    for dark in [false, true] {
        snap(&mut h, "requests", dark);
    }
}

#[test]
fn first_run_screen() {
    if !lavapipe() {
        return;
    }
    let fake = FakeDaemon::idle();
    let mut h = harness_with(
        &fake.data_dir(),
        std::path::Path::new("/nonexistent/umbra"),
        egui::vec2(700.0, 460.0),
    );
    wait(&mut h, "the first-run screen", |h| {
        h.state().screen() == &umbra_desktop::Screen::FirstRun
    });
    snap(&mut h, "first_run", false);
}
