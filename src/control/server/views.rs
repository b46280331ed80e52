//! Stored records and node state as control API views.

use super::*;

pub(super) async fn contacts(ctx: &Context) -> ApiResult<Vec<ContactView>> {
    let all = ctx.node.contacts().await.map_err(node_err)?;
    let mut out = Vec::with_capacity(all.len());
    for c in &all {
        out.push(contact_view(ctx, c).await?);
    }
    Ok(out)
}

pub(super) async fn contact_view(ctx: &Context, c: &Contact) -> ApiResult<ContactView> {
    let id = c.id;
    let node::ContactSummary {
        session,
        unread,
        queued,
    } = ctx.node.contact_summary(id).await.map_err(node_err)?;
    Ok(ContactView {
        username: at(&c.username),
        fingerprint: c.fingerprint.clone(),
        verified: c.verified,
        state: c.state.as_str().to_owned(),
        session,
        online: ctx.node.is_connected(id),
        last_seen: c.last_seen,
        unread,
        queued,
        problem: ctx.node.trouble(id).map(|t| {
            match t {
                node::Trouble::SessionMismatch => "session_mismatch",
                _ => "unreachable",
            }
            .to_owned()
        }),
    })
}

pub(super) fn request_view(r: node::ReceivedRequest) -> RequestView {
    RequestView {
        username: at(&r.from),
        fingerprint: r.fingerprint.to_hex(),
        note: r.note,
        received_at: r.received_at,
        key_changed: r.key_changed,
        rekey: r.rekey,
    }
}

/// `@name` for display.
pub fn at(name: &str) -> String {
    format!("@{}", name.trim_start_matches('@'))
}

/// The API view of a stored message.
pub fn message_view(m: &Message) -> MessageView {
    MessageView {
        id: hex::encode(m.msg_id),
        direction: m.direction.as_str().to_owned(),
        seq: m.seq,
        sent_at: m.sent_at,
        received_at: m.received_at,
        body: m.body.clone(),
        state: m.state.as_str().to_owned(),
    }
}

/// The API view of a transfer.
pub fn transfer_view(c: &Contact, t: &FileTransfer) -> TransferView {
    let done = (t.have_count.saturating_mul(u64::from(t.chunk_size))).min(t.size);
    TransferView {
        id: hex::encode(t.transfer_id),
        username: at(&c.username),
        direction: t.direction.as_str().to_owned(),
        name: t.name.clone(),
        size: t.size,
        media: t.media.as_str().to_owned(),
        state: t.state.as_str().to_owned(),
        done: if t.state == TransferState::Completed {
            t.size
        } else {
            done
        },
        sha256: hex::encode(t.sha256),
        reason: t.reason.map(|r| files::reason::describe(r).to_owned()),
        path: t.local_path.clone(),
        stored: t.part_file.is_some() && t.state == TransferState::Completed,
        chunks_sent: t.chunks_sent,
        created_at: t.created_at,
    }
}
