//! Measurements (ignored by default; `cargo test -p umbra-desktop --release
//! --test measure -- --ignored --nocapture`): frame time of the conversation
//! with 10,000 messages while scrolling, and the process's resident memory,
//! in the test harness (layout and tessellation, no GPU).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Instant;

use eframe::egui;
use egui_kittest::kittest::Queryable;
use support::*;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn frame_time_with_10000_messages() {
    let fake = FakeDaemon::standard();
    let mut h = connected(&fake);
    h.get_by_label_contains("@bob, online").click();
    wait(&mut h, "bob's history", |h| shows(h, "Here."));
    let idle = rss_kib();
    let mut base = scroll_frames(&mut h);
    let base_med = percentile(&mut base, 0.5);
    let conv = h
        .state_mut()
        .model_mut()
        .conversations
        .get_mut("@bob")
        .unwrap();
    conv.messages = (0..10_000u64)
        .map(|i| {
            let dir = if i % 3 == 0 { "out" } else { "in" };
            let body = format!(
                "message {i}: {}",
                "lorem ipsum dolor sit amet ".repeat((i % 5 + 1) as usize)
            );
            msg(
                &format!("x{i}"),
                dir,
                i,
                &body,
                "read",
                NOW - 10_000 * 60 + i * 60,
            )
        })
        .collect();
    h.run_ok();
    let full = rss_kib();
    let mut times = scroll_frames(&mut h);
    let med = percentile(&mut times, 0.5);
    let p95 = percentile(&mut times, 0.95);
    let max = percentile(&mut times, 1.0);
    println!(
        "10,000 messages: frame time median {med:.1} ms, p95 {p95:.1} ms, max {max:.1} ms \
         (6 messages: median {base_med:.1} ms); RSS {idle} KiB with the standard \
         conversation, {full} KiB with 10,000 messages"
    );
}

/// Steps 120 frames while the wheel scrolls up and down; their times in ms.
fn scroll_frames(h: &mut egui_kittest::Harness<'_, umbra_desktop::App>) -> Vec<f64> {
    let mut times = Vec::new();
    for i in 0..120 {
        let delta = if i % 40 < 20 { -120.0 } else { 120.0 };
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, delta),
            modifiers: egui::Modifiers::NONE,
            phase: egui::TouchPhase::Move,
        });
        let t = Instant::now();
        h.step();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times
}
