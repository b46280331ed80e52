//! Connection requests from the command line: `request`, `requests`,
//! `accept`, `reject`, `cancel-request`.

use std::io::Write;

use super::GlobalArgs;
use super::common::{
    Result, call, grouped, json, print_contact_reply, print_done, progress_note, reply, when,
};
use crate::control::proto::{Reply, Request, RequestView};

/// `umbra request @user [--note TEXT]`.
pub(crate) fn request(
    global: &GlobalArgs,
    username: String,
    note: Option<String>,
    allow_key_change: bool,
    rekey: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if !global.json {
        progress_note(
            "sending the request through the Handshaker (proof of work, a few seconds)...",
        );
    }
    let c = reply!(
        global,
        Request::Request {
            username,
            note: note.unwrap_or_default(),
            allow_key_change,
            rekey,
        },
        Reply::Contact
    );
    print_contact_reply(
        global,
        out,
        &c,
        "Connection request sent to",
        "Compare the fingerprint with them over another channel; you can chat once they accept.",
    )
}

/// `umbra requests`.
pub(crate) fn requests(global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let list = reply!(global, Request::Requests, Reply::Requests);
    if global.json {
        return json(out, &list);
    }
    if list.is_empty() {
        writeln!(out, "no pending connection requests")?;
    }
    for r in &list {
        print_request(out, r)?;
    }
    Ok(())
}

fn print_request(out: &mut dyn Write, r: &RequestView) -> Result<()> {
    writeln!(out, "{}  ({})", r.username, when(r.received_at))?;
    writeln!(out, "  fingerprint  {}", grouped(&r.fingerprint))?;
    if !r.note.is_empty() {
        writeln!(out, "  note         {}", r.note.escape_debug())?;
    }
    if r.key_changed {
        writeln!(
            out,
            "  WARNING      this key differs from the one you pinned for {}",
            r.username
        )?;
    }
    if r.rekey {
        writeln!(
            out,
            "  re-key       already your contact: accepting replaces your conversation's keys"
        )?;
    }
    Ok(())
}

/// `umbra accept @user`.
pub(crate) fn accept(
    global: &GlobalArgs,
    username: String,
    allow_key_change: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let c = reply!(
        global,
        Request::Accept {
            username,
            allow_key_change,
        },
        Reply::Contact
    );
    print_contact_reply(
        global,
        out,
        &c,
        "Accepted",
        "The answer goes directly to their onion service; messages can be sent now.",
    )
}

/// `umbra cancel-request @user`.
pub(crate) fn cancel_request(
    global: &GlobalArgs,
    username: String,
    out: &mut dyn Write,
) -> Result<()> {
    let name = username.clone();
    call(global, Request::CancelRequest { username })?;
    print_done(
        global,
        out,
        "cancelled",
        &name,
        &format!(
            "Cancelled your request to {name}: its keys are erased, so it can no longer be accepted"
        ),
    )
}

/// `umbra reject @user`.
pub(crate) fn reject(
    global: &GlobalArgs,
    username: String,
    notify: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let name = username.clone();
    call(global, Request::Reject { username, notify })?;
    if global.json {
        return json(out, &serde_json::json!({"rejected": name}));
    }
    writeln!(out, "Rejected the request from {name}")?;
    Ok(())
}
