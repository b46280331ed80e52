//! `umbra group …`: private groups (PROTOCOL.md §20) through the daemon's
//! control socket. Each subcommand sends one group request and prints the
//! reply as text or (`--json`) as one JSON object. Peer text (names,
//! topics, messages) is printed escaped so that it cannot drive the terminal.

use std::io::Write;

use clap::Subcommand;

use super::GlobalArgs;
use super::common::{Result, call, clock, grouped, json, progress_note, reply, unexpected};
use crate::control::proto::{GroupMessageView, GroupRequest, GroupView, Reply, Request};

/// `umbra group` subcommands. GROUP is the group's name, its id, or a unique
/// beginning of its id (6 or more hex digits); MEMBER is `@name` or a
/// fingerprint.
#[derive(Debug, Clone, Subcommand)]
pub enum GroupCommand {
    /// Create a group; you are its owner.
    Create {
        /// The group's name (1-64 bytes)
        #[arg(value_name = "NAME")]
        name: String,
        /// A topic shown to members
        #[arg(long, value_name = "TEXT", default_value = "")]
        topic: String,
        /// A discussion room: members can be read-only, admins delete for everyone
        #[arg(long)]
        room: bool,
        /// Members who join later may read earlier messages
        #[arg(long)]
        history: bool,
    },
    /// List your groups and invites.
    List,
    /// Invite a contact (owner or admin); they join when they accept.
    Invite {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
        /// The contact, e.g. @bob
        #[arg(value_name = "@USER")]
        user: String,
        /// The role offered
        #[arg(long, value_name = "ROLE", default_value = "member",
              value_parser = ["member", "admin", "read-only"])]
        role: String,
    },
    /// Accept a direct invite (its group id is in `umbra group list`), or
    /// join by an invite link.
    ///
    /// With a group id (64 hex digits) this accepts a contact's invite. With
    /// an invite link (umbra:group#…) it dials the group's owner over Tor
    /// (this can take a minute), proves you were given the link and becomes
    /// the owner's contact; you are in once the group's log arrives. A link
    /// on the command line may end up in your shell history: give `-` to
    /// paste it on standard input instead.
    Join {
        /// The group id from the invite, an invite link, or - (read the link from stdin)
        #[arg(value_name = "GROUP_ID|LINK|-")]
        group: String,
    },
    /// Invite links: anyone holding one can join (as member or read-only).
    #[command(subcommand)]
    Link(LinkCommand),
    /// Decline an invite.
    Decline {
        /// The group id from the invite (64 hex digits)
        #[arg(value_name = "GROUP_ID")]
        group: String,
    },
    /// List members, roles, and what waits for each.
    Members {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
    },
    /// Make a member an admin (owner only).
    Promote {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
        /// The member
        #[arg(value_name = "MEMBER")]
        member: String,
    },
    /// Make an admin a member, or a member read-only (--read-only).
    Demote {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
        /// The member
        #[arg(value_name = "MEMBER")]
        member: String,
        /// Make them read-only (they can read but not post)
        #[arg(long)]
        read_only: bool,
    },
    /// Remove a member: everyone stops delivering to them at once.
    Remove {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
        /// The member
        #[arg(value_name = "MEMBER")]
        member: String,
    },
    /// Leave a group (an owner transfers ownership or dissolves instead).
    Leave {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
    },
    /// Rename a group (owner or admin).
    Rename {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
        /// The new name
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Set the topic (owner or admin); an empty TEXT clears it.
    Topic {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
        /// The topic
        #[arg(value_name = "TEXT")]
        topic: String,
    },
    /// Make another member the owner; you become an admin.
    Transfer {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
        /// The new owner
        #[arg(value_name = "MEMBER")]
        member: String,
    },
    /// End the group for everyone (owner only; cannot be undone).
    Dissolve {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
    },
    /// Send a message to every member (queued for those offline).
    Send {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
        /// The message
        #[arg(value_name = "TEXT")]
        text: String,
    },
    /// Show a group's messages.
    History {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
        /// At most N messages (the newest; 1 to 1000)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
}

/// `umbra group link` subcommands (owner only).
#[derive(Debug, Clone, Subcommand)]
pub enum LinkCommand {
    /// Open an invite link and print it (only it) on standard output.
    ///
    /// Anyone holding the link can join while it is usable: send it over a
    /// channel you trust, keep --uses small and --expires short. The link
    /// is never logged and never goes through the Handshaker.
    Create {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
        /// How many people may join with it (1-100)
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u16).range(1..=100))]
        uses: u16,
        /// How long it stays usable: a number with s, m, h, d or w (e.g. 30m, 24h, 7d; at most 365d)
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
        expires: u64,
        /// Joiners are read-only (they can read but not post)
        #[arg(long)]
        read_only: bool,
    },
    /// List a group's invite links (uses, expiry, state; never the secret).
    List {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
    },
    /// Revoke an invite link: joins by it are refused from now on.
    Revoke {
        /// The group
        #[arg(value_name = "GROUP")]
        group: String,
        /// The link id from `umbra group link list` (or a unique beginning of 4+ digits)
        #[arg(value_name = "LINK_ID")]
        link: String,
    },
}

/// Parses `30s`, `15m`, `24h`, `7d`, `2w` into seconds (1 s to 365 days).
fn parse_duration(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30m, 24h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h, d or w")),
    };
    let secs = n.saturating_mul(mult);
    if secs == 0 || secs > 365 * 86_400 {
        return Err("a link lasts between 1 second and 365 days".into());
    }
    Ok(secs)
}

fn esc(s: &str) -> String {
    s.escape_debug().to_string()
}

fn print_group(out: &mut dyn Write, g: &GroupView) -> Result<()> {
    let mut flags = Vec::new();
    if g.room {
        flags.push("room");
    }
    if g.history {
        flags.push("history");
    }
    writeln!(
        out,
        "{}  {}  {} members  {}{}{}",
        &g.id[..12],
        esc(&g.name),
        g.members,
        g.role.as_deref().unwrap_or("not a member"),
        if g.status == "active" {
            String::new()
        } else {
            format!(" ({})", g.status)
        },
        if flags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", flags.join(", "))
        }
    )?;
    if !g.topic.is_empty() {
        writeln!(out, "    topic: {}", esc(&g.topic))?;
    }
    if let Some(w) = &g.warning {
        writeln!(out, "    warning: {w}")?;
    }
    Ok(())
}

fn print_message(out: &mut dyn Write, m: &GroupMessageView) -> Result<()> {
    let who = if m.mine { "me" } else { m.sender.as_str() };
    let body = match (&m.body, m.deleted) {
        (_, true) => "(deleted)".to_owned(),
        (Some(b), _) => b.lines().map(esc).collect::<Vec<_>>().join("\n    "),
        (None, _) => "(no text)".to_owned(),
    };
    let state = if m.mine {
        format!("  [{}]", m.state)
    } else {
        String::new()
    };
    writeln!(out, "{} {who}: {body}{state}", clock(m.sent_at))?;
    Ok(())
}

/// A request that changes the group: `done` from the owner, or the group
/// (a proposal waits for the owner).
fn change(global: &GlobalArgs, out: &mut dyn Write, req: GroupRequest, done: &str) -> Result<()> {
    let r = call(global, Request::Group(req))?;
    if global.json {
        return match r {
            Reply::Group(g) => json(out, &g),
            _ => json(out, &serde_json::json!({ "done": true })),
        };
    }
    match r {
        Reply::Done => writeln!(out, "{done}")?,
        Reply::Group(_) => writeln!(
            out,
            "asked the owner (only the owner appends changes); it applies once they countersign it"
        )?,
        _ => return Err(unexpected()),
    }
    Ok(())
}

/// `umbra group join LINK`.
fn join_link(global: &GlobalArgs, out: &mut dyn Write, link: String) -> Result<()> {
    if !link.starts_with(crate::group::invite::LINK_PREFIX) {
        return Err(super::CliError::Usage {
            message: "that is not an invite link".into(),
            hint: Some("an invite link starts with umbra:group#; paste all of it".into()),
        });
    }
    if !global.json {
        progress_note("dialling the group's owner (over Tor this can take a minute)…");
    }
    let j = reply!(
        global,
        Request::Group(GroupRequest::JoinLink { link }),
        Reply::GroupJoined
    );
    if global.json {
        return json(out, &j);
    }
    writeln!(
        out,
        "the owner accepted you; you are in once the group's log arrives ({}; umbra group list)",
        &j.group[..12]
    )?;
    Ok(())
}

/// Runs `umbra group link …`.
fn run_link(global: &GlobalArgs, cmd: LinkCommand, out: &mut dyn Write) -> Result<()> {
    use GroupRequest as G;
    match cmd {
        LinkCommand::Create {
            group,
            uses,
            expires,
            read_only,
        } => {
            let l = reply!(
                global,
                Request::Group(G::LinkCreate {
                    group,
                    uses: Some(uses),
                    expires_in: Some(expires),
                    role: Some(if read_only { "read-only" } else { "member" }.into()),
                }),
                Reply::GroupLink
            );
            if global.json {
                return json(out, &l);
            }
            // Only the link on stdout (to pipe or copy); the rest on stderr.
            writeln!(out, "{}", l.link)?;
            progress_note(&format!(
                "invite link {} for {} join(s), until {}; anyone holding it can join: \
                 send it over a channel you trust (revoke: umbra group link revoke GROUP {})",
                &l.id[..8],
                l.uses,
                clock(l.expires_at),
                &l.id[..8]
            ));
        }
        LinkCommand::List { group } => {
            let list = reply!(
                global,
                Request::Group(G::Links { group }),
                Reply::GroupLinks
            );
            if global.json {
                return json(out, &list);
            }
            if list.is_empty() {
                writeln!(out, "no invite links (umbra group link create GROUP)")?;
            }
            for l in &list {
                writeln!(
                    out,
                    "{}  {:9} {}/{} used  until {}  {}",
                    l.id,
                    l.role,
                    l.uses,
                    l.max_uses,
                    clock(l.expires_at),
                    l.state.replace('_', " ")
                )?;
            }
        }
        LinkCommand::Revoke { group, link } => change(
            global,
            out,
            G::LinkRevoke { group, link },
            "revoked; joins by this link are refused from now on",
        )?,
    }
    Ok(())
}

/// Runs `umbra group …`.
pub(crate) fn run(global: &GlobalArgs, cmd: GroupCommand, out: &mut dyn Write) -> Result<()> {
    use GroupCommand as C;
    use GroupRequest as G;
    match cmd {
        C::Create {
            name,
            topic,
            room,
            history,
        } => {
            let g = reply!(
                global,
                Request::Group(G::Create {
                    name,
                    topic,
                    room,
                    history
                }),
                Reply::Group
            );
            if global.json {
                return json(out, &g);
            }
            writeln!(out, "created group {} ({})", esc(&g.name), g.id)?;
            writeln!(
                out,
                "invite contacts with: umbra group invite {} @name",
                &g.id[..12]
            )?;
        }
        C::List => {
            let l = reply!(global, Request::Group(G::List), Reply::Groups);
            if global.json {
                return json(out, &l);
            }
            if l.groups.is_empty() && l.invites.is_empty() {
                writeln!(out, "no groups yet (umbra group create NAME)")?;
            }
            for g in &l.groups {
                print_group(out, g)?;
            }
            for i in l.invites.iter().filter(|i| i.state == "pending") {
                if i.incoming {
                    writeln!(
                        out,
                        "invite from {} to {} as {}: umbra group join {}",
                        i.username,
                        esc(&i.name),
                        i.role,
                        i.group
                    )?;
                } else {
                    writeln!(
                        out,
                        "invited {} to {} (waiting for their answer)",
                        i.username,
                        esc(&i.name)
                    )?;
                }
            }
        }
        C::Invite { group, user, role } => {
            let name = user.clone();
            change(
                global,
                out,
                G::Invite {
                    group,
                    username: user,
                    role: Some(role),
                },
                &format!("invited {name}; they join when they accept (umbra group join)"),
            )?;
        }
        C::Join { group } => {
            let arg = group.trim();
            let link = if arg == "-" {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                Some(line.trim().to_owned())
            } else if arg.starts_with(crate::group::invite::LINK_PREFIX) {
                Some(arg.to_owned())
            } else {
                None
            };
            match link {
                Some(link) => join_link(global, out, link)?,
                None => change(
                    global,
                    out,
                    G::Join { group },
                    "accepted; you are in once the group's log arrives (umbra group list)",
                )?,
            }
        }
        C::Link(cmd) => run_link(global, cmd, out)?,
        C::Decline { group } => change(global, out, G::Decline { group }, "declined")?,
        C::Members { group } => {
            let list = reply!(
                global,
                Request::Group(G::Members { group }),
                Reply::GroupMembers
            );
            if global.json {
                return json(out, &list);
            }
            for m in &list {
                let reach = if m.contact {
                    if m.queued > 0 {
                        format!("  ({} waiting for them)", m.queued)
                    } else {
                        String::new()
                    }
                } else {
                    "  (not your contact: reached through the owner)".to_owned()
                };
                writeln!(
                    out,
                    "{:10} {} ({}){reach}",
                    m.role,
                    esc(&m.username),
                    grouped(&m.fingerprint)
                )?;
            }
        }
        C::Promote { group, member } => change(
            global,
            out,
            G::SetRole {
                group,
                member,
                role: "admin".into(),
            },
            "promoted",
        )?,
        C::Demote {
            group,
            member,
            read_only,
        } => change(
            global,
            out,
            G::SetRole {
                group,
                member,
                role: if read_only { "read-only" } else { "member" }.into(),
            },
            "demoted",
        )?,
        C::Remove { group, member } => change(
            global,
            out,
            G::Remove { group, member },
            "removed; nobody delivers to them any more",
        )?,
        C::Leave { group } => change(global, out, G::Leave { group }, "left the group")?,
        C::Rename { group, name } => change(global, out, G::Rename { group, name }, "renamed")?,
        C::Topic { group, topic } => change(global, out, G::Topic { group, topic }, "topic set")?,
        C::Transfer { group, member } => change(
            global,
            out,
            G::Transfer { group, member },
            "ownership transferred; you are an admin now",
        )?,
        C::Dissolve { group } => change(global, out, G::Dissolve { group }, "dissolved")?,
        C::Send { group, text } => {
            let m = reply!(
                global,
                Request::Group(G::Send { group, text }),
                Reply::GroupMessage
            );
            if global.json {
                return json(out, &m);
            }
            writeln!(out, "group message #{} {}", m.seq, m.state)?;
        }
        C::History { group, limit } => {
            let list = reply!(
                global,
                Request::Group(G::History { group, limit }),
                Reply::GroupHistory
            );
            if global.json {
                return json(out, &list);
            }
            if list.is_empty() {
                writeln!(out, "no messages yet")?;
            }
            for m in &list {
                print_message(out, m)?;
            }
        }
    }
    Ok(())
}
