//! Messages from the command line: `send`, `history`, and `chat` (two control
//! connections: one subscribed to events, one for sending).

use std::io::{BufRead, Write};

use super::GlobalArgs;
use super::common::{Result, clock, data_dir, json, load_config, reply, runtime, unexpected};
use super::err::CliError;
use crate::control::proto::{Event, MessageView, Reply, Request};
use crate::control::{Client, ClientError};

/// `umbra send @user TEXT`.
pub(crate) fn send(
    global: &GlobalArgs,
    username: String,
    text: String,
    out: &mut dyn Write,
) -> Result<()> {
    let m = reply!(global, Request::Send { username, text }, Reply::Message);
    if global.json {
        return json(out, &m);
    }
    writeln!(out, "message #{} {}", m.seq, m.state)?;
    Ok(())
}

fn print_message(out: &mut dyn Write, me: &str, them: &str, m: &MessageView) -> Result<()> {
    let who = if m.direction == "out" { me } else { them };
    let state = if m.direction == "out" {
        format!("  [{}]", m.state)
    } else {
        String::new()
    };
    // Peer text is printed escaped so it cannot drive the terminal; a
    // multi-line message keeps its lines, indented under the first.
    let body = m
        .body
        .lines()
        .map(|l| l.escape_debug().to_string())
        .collect::<Vec<_>>()
        .join("\n    ");
    writeln!(out, "{} {who}: {body}{state}", clock(m.sent_at))?;
    Ok(())
}

/// `umbra history @user [--search TEXT] [--limit N]`.
pub(crate) fn history(
    global: &GlobalArgs,
    username: String,
    search: Option<String>,
    limit: Option<u32>,
    out: &mut dyn Write,
) -> Result<()> {
    let them = crate::control::server::at(&username);
    let searched = search.is_some();
    let list = reply!(
        global,
        Request::History {
            username,
            limit,
            search,
        },
        Reply::History
    );
    if global.json {
        return json(out, &list);
    }
    if list.is_empty() {
        writeln!(
            out,
            "{}",
            if searched {
                "no messages match"
            } else {
                "no messages yet"
            }
        )?;
    }
    for m in &list {
        print_message(out, "me", &them, m)?;
    }
    Ok(())
}

/// `umbra chat @user`: history, then live messages; each input line is sent.
pub(crate) fn chat(global: &GlobalArgs, username: String, out: &mut dyn Write) -> Result<()> {
    let config = load_config(global)?;
    let dir = data_dir(global, &config)?;
    let them = crate::control::server::at(&username);
    let rt = runtime()?;
    let (mut events, mut cmds) = rt
        .block_on(async {
            let mut ev = Client::connect(&dir).await?;
            ev.subscribe().await?;
            let cmds = Client::connect(&dir).await?;
            Ok::<_, ClientError>((ev, cmds))
        })
        .map_err(CliError::control)?;
    let Reply::History(list) = rt
        .block_on(cmds.call(Request::History {
            username: username.clone(),
            limit: Some(20),
            search: None,
        }))
        .map_err(CliError::control)?
    else {
        return Err(unexpected());
    };
    writeln!(
        out,
        "chat with {them}: type a line and press Enter to send; /quit or Ctrl-D leaves"
    )?;
    for m in &list {
        print_message(out, "me", &them, m)?;
    }
    out.flush()?;
    let _ = rt.block_on(cmds.call(Request::MarkRead {
        username: username.clone(),
    }));
    // Input lines come from a blocking thread.
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    rt.block_on(async {
        loop {
            tokio::select! {
                line = line_rx.recv() => {
                    let Some(line) = line else { return Ok(()) };
                    let text = line.trim_end();
                    if text == "/quit" { return Ok(()); }
                    if text.is_empty() { continue; }
                    match cmds.call(Request::Send { username: username.clone(), text: text.to_owned() }).await {
                        Ok(Reply::Message(m)) => print_message(out, "me", &them, &m)?,
                        Ok(_) => return Err(unexpected()),
                        Err(ClientError::Api(e)) => {
                            writeln!(out, "! {}", e.message)?;
                            if let Some(h) = e.hint { writeln!(out, "! {h}")?; }
                        }
                        Err(e) => return Err(CliError::control(e)),
                    }
                    out.flush()?;
                }
                ev = events.next_event() => {
                    let Some(ev) = ev.map_err(CliError::control)? else {
                        writeln!(out, "! the daemon stopped")?;
                        return Ok(());
                    };
                    match ev {
                        Event::Message { username: u, message } if u == them => {
                            print_message(out, "me", &them, &message)?;
                            let _ = cmds.call(Request::MarkRead { username: username.clone() }).await;
                        }
                        Event::Delivery { username: u, upto, state } if u == them => {
                            writeln!(out, "  (messages up to #{upto} {state})")?;
                        }
                        Event::Presence { username: u, online, .. } if u == them => {
                            writeln!(out, "  ({them} is {})", if online { "online" } else { "offline" })?;
                        }
                        Event::SessionEnded { username: u, by_peer } if u == them => {
                            writeln!(out, "  (session ended{})", if by_peer { " by them" } else { "" })?;
                        }
                        Event::Message { username: u, .. } => {
                            writeln!(out, "  (new message from {u})")?;
                        }
                        _ => {}
                    }
                    out.flush()?;
                }
            }
        }
    })
}
