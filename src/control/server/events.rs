//! Node events mapped to control API events for subscribers.

use super::*;

/// Maps node events to API events (reading names and messages from the
/// store) and publishes them on `out` until the node's bus closes.
pub async fn forward_events(node: NodeHandle, out: broadcast::Sender<Event>) {
    let mut rx = node.events();
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                let _ = out.send(Event::Lagged { missed });
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match map_event(&node, ev).await {
            Ok(Some(e)) => {
                let _ = out.send(e);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(code = ?e.code, "could not map a node event"),
        }
    }
}

pub(super) async fn name_of(node: &NodeHandle, id: ContactId) -> ApiResult<Contact> {
    node.contact(id)
        .await
        .map_err(node_err)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "contact"))
}

pub(super) async fn map_event(node: &NodeHandle, ev: node::Event) -> ApiResult<Option<Event>> {
    Ok(Some(match ev {
        node::Event::MessageReceived {
            contact, message, ..
        } => {
            let c = name_of(node, contact).await?;
            let m = node
                .message(message)
                .await
                .map_err(node_err)?
                .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "message"))?;
            Event::Message {
                username: at(&c.username),
                message: message_view(&m),
            }
        }
        node::Event::DeliveryChanged {
            contact,
            upto,
            state,
        } => Event::Delivery {
            username: at(&name_of(node, contact).await?.username),
            upto,
            state: state.as_str().to_owned(),
        },
        node::Event::MessageFailed { contact, message } => {
            let c = name_of(node, contact).await?;
            let m = node.message(message).await.map_err(node_err)?;
            Event::MessageFailed {
                username: at(&c.username),
                id: m.map(|m| hex::encode(m.msg_id)).unwrap_or_default(),
            }
        }
        node::Event::PresenceChanged {
            contact, online, ..
        } => {
            let c = name_of(node, contact).await?;
            Event::Presence {
                username: at(&c.username),
                online,
                last_seen: c.last_seen,
            }
        }
        node::Event::RequestReceived { request_id, .. } => {
            let Some(r) = node
                .requests()
                .await
                .map_err(node_err)?
                .into_iter()
                .find(|r| r.request_id == *request_id.expose())
            else {
                return Ok(None);
            };
            Event::Request(request_view(r))
        }
        node::Event::RequestAnswered { contact, accepted } => Event::RequestAnswered {
            username: at(&name_of(node, contact).await?.username),
            accepted,
        },
        node::Event::SessionEnded { contact, by_peer } => Event::SessionEnded {
            username: at(&name_of(node, contact).await?.username),
            by_peer,
        },
        node::Event::FileOffered {
            contact, transfer, ..
        } => {
            let c = name_of(node, contact).await?;
            let Some(t) = node.transfer(transfer).await.map_err(node_err)? else {
                return Ok(None);
            };
            Event::FileOffered(transfer_view(&c, &t))
        }
        node::Event::FileProgress {
            contact,
            transfer,
            done,
            size,
        } => Event::FileProgress {
            id: hex::encode(transfer),
            username: at(&name_of(node, contact).await?.username),
            done,
            size,
        },
        node::Event::FileCompleted {
            contact, transfer, ..
        } => {
            let c = name_of(node, contact).await?;
            let Some(t) = node.transfer(transfer).await.map_err(node_err)? else {
                return Ok(None);
            };
            Event::FileCompleted(transfer_view(&c, &t))
        }
        node::Event::FileCancelled {
            contact,
            transfer,
            reason,
            by_peer,
        } => Event::FileCancelled {
            id: hex::encode(transfer),
            username: at(&name_of(node, contact).await?.username),
            reason: files::reason::describe(reason).to_owned(),
            by_peer,
        },
        node::Event::Group { group, event } => {
            return super::groups::group_event(node, group, event).await;
        }
    }))
}
