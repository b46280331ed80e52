//! A scripted fake of the daemon's control socket for the window's tests: a
//! real Unix socket at `<dir>/control.sock`, served by threads that answer
//! with scripted replies, push scripted events to subscribed connections and
//! record every request received.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::Harness;
use umbra_control::proto::{
    ApiError, ClientMessage, ContactView, DirectoryView, ErrorCode, Event, MessageView, Reply,
    Request, RequestView, ServerMessage, StatusView, TorView, TransferView,
};
use umbra_desktop::daemon::Umbra;
use umbra_desktop::{App, Options};

/// How a fake daemon answers.
pub type Script = dyn Fn(&Request) -> Result<Reply, ApiError> + Send + Sync;

/// A fake daemon.
pub struct FakeDaemon {
    pub dir: tempfile::TempDir,
    received: Arc<Mutex<Vec<Request>>>,
    subscribers: Arc<Mutex<Vec<Arc<Mutex<UnixStream>>>>>,
}

/// A fixed "now" for the scripted data: 2026-12-07 12:00 UTC.
pub const NOW: u64 = 1_796_644_800;
pub const FP_BOB: &str = "0123456789abcdef0123456789abcdef01234567";
pub const FP_CAROL: &str = "89abcdef0123456789abcdef0123456789abcdef";
pub const FP_DAVE: &str = "fedcba9876543210fedcba9876543210fedcba98";

impl FakeDaemon {
    /// A fake daemon in a new data directory, answering with `script`.
    pub fn start(script: Box<Script>) -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDaemon {
            dir,
            received: Arc::default(),
            subscribers: Arc::default(),
        };
        fake.listen(Arc::from(script));
        fake
    }

    /// A data directory with nothing listening yet ([`FakeDaemon::listen`]).
    pub fn idle() -> FakeDaemon {
        FakeDaemon {
            dir: tempfile::tempdir().unwrap(),
            received: Arc::default(),
            subscribers: Arc::default(),
        }
    }

    /// A fake daemon with [`standard`] answers.
    pub fn standard() -> FakeDaemon {
        FakeDaemon::start(Box::new(standard))
    }

    /// Starts serving in `self.dir` (again).
    pub fn listen(&self, script: Arc<Script>) {
        let listener = UnixListener::bind(umbra_control::socket_path(self.dir.path())).unwrap();
        let received = self.received.clone();
        let subscribers = self.subscribers.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (received, subscribers, script) =
                    (received.clone(), subscribers.clone(), script.clone());
                std::thread::spawn(move || serve(conn, &received, &subscribers, &*script));
            }
        });
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Pushes `e` to every subscribed connection.
    pub fn push(&self, e: Event) {
        let line = serde_json::to_string(&ServerMessage::Event(e)).unwrap();
        for s in self.subscribers.lock().unwrap().iter() {
            let mut w = s.lock().unwrap();
            let _ = writeln!(w, "{line}");
        }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Request> {
        self.received.lock().unwrap().clone()
    }

    /// Whether a request matching `pred` arrived.
    pub fn got(&self, pred: impl Fn(&Request) -> bool) -> bool {
        self.received().iter().any(pred)
    }

    /// Number of subscribed connections.
    pub fn subscribed(&self) -> usize {
        self.subscribers.lock().unwrap().len()
    }
}

fn serve(
    conn: UnixStream,
    received: &Mutex<Vec<Request>>,
    subscribers: &Mutex<Vec<Arc<Mutex<UnixStream>>>>,
    script: &Script,
) {
    let writer = Arc::new(Mutex::new(conn.try_clone().unwrap()));
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let msg: ClientMessage = serde_json::from_str(&line).expect("the window sent valid JSON");
        assert_eq!(msg.v, umbra_control::proto::VERSION);
        received.lock().unwrap().push(msg.cmd.clone());
        let (ok, error) = if msg.cmd == Request::Subscribe {
            subscribers.lock().unwrap().push(writer.clone());
            (Some(Reply::Done), None)
        } else {
            match script(&msg.cmd) {
                Ok(r) => (Some(r), None),
                Err(e) => (None, Some(e)),
            }
        };
        let reply = ServerMessage::Reply {
            id: msg.id,
            ok,
            error,
        };
        let mut w = writer.lock().unwrap();
        writeln!(w, "{}", serde_json::to_string(&reply).unwrap()).unwrap();
    }
}

pub fn tor_direct() -> TorView {
    TorView {
        network: "direct".into(),
        bootstrap_percent: 100,
        ready: true,
        onion_service: "not_applicable".into(),
        summary: "direct".into(),
        vanguards: String::new(),
    }
}

pub fn contact(name: &str, fp: &str, online: bool, verified: bool, unread: u64) -> ContactView {
    ContactView {
        username: name.into(),
        fingerprint: fp.into(),
        verified,
        state: "accepted".into(),
        session: true,
        online,
        last_seen: Some(NOW - 3600),
        unread,
        queued: 0,
        problem: None,
    }
}

pub fn msg(id: &str, dir: &str, seq: u64, body: &str, state: &str, t: u64) -> MessageView {
    MessageView {
        id: id.into(),
        direction: dir.into(),
        seq,
        sent_at: t,
        received_at: (dir == "in").then_some(t),
        body: body.into(),
        state: state.into(),
    }
}

pub fn transfer(id: &str, name: &str, state: &str, media: &str) -> TransferView {
    TransferView {
        id: id.into(),
        username: "@bob".into(),
        direction: "in".into(),
        name: name.into(),
        size: 2 << 20,
        media: media.into(),
        state: state.into(),
        done: 0,
        sha256: "00".repeat(32),
        reason: None,
        path: None,
        stored: state == "completed",
        chunks_sent: 0,
        created_at: NOW - 60,
    }
}

/// The conversation with @bob: yesterday and today, every delivery state.
pub fn bob_history() -> Vec<MessageView> {
    vec![
        msg(
            "m1",
            "in",
            1,
            "Hi Alice, are you there?",
            "received",
            NOW - 86_400 - 600,
        ),
        msg("m2", "out", 1, "Yes! Here.", "read", NOW - 86_400 - 500),
        msg(
            "m3",
            "in",
            2,
            "Evil \u{202e}gpj.exe\u{1b}[2J and\ttab\nsecond line",
            "received",
            NOW - 900,
        ),
        msg("m4", "out", 2, "Delivered one", "delivered", NOW - 800),
        msg("m5", "out", 3, "Sent one", "sent", NOW - 700),
        msg("m6", "out", 4, "Queued one", "queued", NOW - 600),
    ]
}

/// Standard answers: alice, with contacts bob (online, verified) and carol
/// (offline, 2 unread), a request from dave whose key changed, and carol in
/// the directory.
pub fn standard(r: &Request) -> Result<Reply, ApiError> {
    Ok(match r {
        Request::Status => Reply::Status(StatusView {
            version: "0.1.0".into(),
            username: "@alice".into(),
            fingerprint: "aa".repeat(20),
            handshaker: None,
            tor: tor_direct(),
            contacts: 2,
            pending_requests: 1,
            started_at: NOW,
        }),
        Request::Contacts => Reply::Contacts(vec![
            contact("@bob", FP_BOB, true, true, 0),
            contact("@carol", FP_CAROL, false, false, 2),
        ]),
        Request::Requests => Reply::Requests(vec![RequestView {
            username: "@dave".into(),
            fingerprint: FP_DAVE.into(),
            note: "It's Dave from the \u{202e}workshop".into(),
            received_at: NOW - 100,
            key_changed: true,
            rekey: false,
        }]),
        Request::History { username, .. } if username == "@bob" => Reply::History(bob_history()),
        Request::History { .. } => Reply::History(vec![]),
        Request::Files { .. } => Reply::Transfers(vec![]),
        Request::Search { .. } => Reply::Directory(vec![DirectoryView {
            username: "@carol".into(),
            fingerprint: FP_CAROL.into(),
            is_contact: false,
            key_differs: false,
        }]),
        Request::Send { text, .. } => Reply::Message(msg("new", "out", 5, text, "queued", NOW)),
        Request::Verify { username, .. } if username == "@bob" => {
            Reply::Contact(contact("@bob", FP_BOB, true, true, 0))
        }
        Request::Verify { .. } => Reply::Contact(contact("@carol", FP_CAROL, false, true, 2)),
        Request::Request { username, .. } => {
            let mut c = contact(username, FP_CAROL, false, false, 0);
            c.state = "requested".into();
            c.session = false;
            Reply::Contact(c)
        }
        Request::Accept { .. } => Reply::Contact(contact("@dave", FP_DAVE, false, false, 0)),
        Request::AcceptFile { id } => Reply::Transfer(transfer(id, "photo.png", "active", "image")),
        Request::SaveFile { id, path } => {
            let mut t = transfer(id, "photo.png", "completed", "image");
            t.path = Some(path.clone());
            Reply::Transfer(t)
        }
        Request::MarkRead { .. } | Request::Reject { .. } | Request::End { .. } => Reply::Done,
        Request::CancelFile { id } => {
            Reply::Transfer(transfer(id, "photo.png", "cancelled", "image"))
        }
        _ => {
            return Err(ApiError::new(ErrorCode::BadRequest, "not scripted"));
        }
    })
}

/// A harness with the window for `data_dir` (and `umbra` = `bin`).
pub fn harness_with(data_dir: &Path, bin: &Path, size: egui::Vec2) -> Harness<'static, App> {
    let opts = Options {
        umbra: Umbra {
            bin: bin.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            config: None,
        },
        notifications: false,
    };
    let ctx = egui::Context::default();
    let mut app = App::new(opts, &ctx).unwrap();
    app.set_now(NOW);
    Harness::builder()
        .with_size(size)
        .build_ui_state(|ui, app: &mut App| app.ui(ui), app)
}

/// A harness on `fake`.
pub fn harness(fake: &FakeDaemon) -> Harness<'static, App> {
    harness_with(
        &fake.data_dir(),
        Path::new("/nonexistent/umbra"),
        egui::vec2(1000.0, 700.0),
    )
}

/// Steps `h` until `done` holds (bounded: 10 s).
pub fn wait(h: &mut Harness<'_, App>, what: &str, done: impl Fn(&Harness<'_, App>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        h.step();
        if done(h) {
            // One more frame so the result is laid out.
            h.run_ok();
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Steps `h` until `fake` received a request matching `pred`.
pub fn wait_request(
    h: &mut Harness<'_, App>,
    fake: &FakeDaemon,
    what: &str,
    pred: impl Fn(&Request) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fake.got(&pred) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; received {:?}",
            fake.received()
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    h.run_ok();
}

/// Whether a node whose label contains `text` is shown.
pub fn shows(h: &Harness<'_, App>, text: &str) -> bool {
    use egui_kittest::kittest::Queryable;
    h.query_all_by_label_contains(text).next().is_some()
}

/// The main window connected to `fake`, with the contact list loaded.
pub fn connected(fake: &FakeDaemon) -> Harness<'static, App> {
    let mut h = harness(fake);
    wait(&mut h, "the contact list", |h| shows(h, "@carol"));
    h
}
