//! Inbound peer connections (PROTOCOL.md §10, listener side): the capped
//! accept loop, the first frames, and the claim of the session (or a
//! file lane, or a group join stream: `group_links.rs`).

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::error::HasKind;
use crate::session::{SEALED_HEADER_LEN, SessionError};
use crate::transport::{BoxedStream, Listener};
use crate::wire::{self, Frame, PeerMessage};

use super::conn::Outcome;
use super::inner::Inner;
use super::peer::{self, PeerError, Side};
use super::records::restore;
use super::{NodeError, files};

pub(super) async fn accept_loop<L: Listener + 'static>(inner: Arc<Inner>, mut listener: L) {
    let permits = Arc::new(Semaphore::new(inner.config.max_inbound.max(1)));
    loop {
        let stream = tokio::select! {
            s = listener.accept() => s,
            _ = inner.shutdown.cancelled() => return,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(kind = ?e.kind(), "accepting a peer stream failed");
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("inbound connection cap reached; refusing a stream");
            continue;
        };
        let i = inner.clone();
        inner.spawn(async move {
            if let Err(e) = handle_inbound(&i, stream).await {
                tracing::debug!(kind = ?e.kind(), "inbound peer connection refused");
            }
            drop(permit);
        });
    }
}

pub(super) async fn next_frame<S: AsyncRead + AsyncWrite + Unpin>(
    inner: &Inner,
    framed: &mut Framed<S, LengthDelimitedCodec>,
) -> Result<Bytes, NodeError> {
    tokio::select! {
        f = tokio::time::timeout(inner.config.hello_timeout, framed.next()) => match f {
            Err(_) => Err(NodeError::Timeout { what: "first frame" }),
            Ok(None) => Err(NodeError::Stream { source: std::io::ErrorKind::UnexpectedEof.into() }),
            Ok(Some(Err(e))) => Err(NodeError::Stream { source: e }),
            Ok(Some(Ok(b))) => Ok(b.freeze()),
        },
        _ = inner.shutdown.cancelled() => Err(NodeError::ShuttingDown),
    }
}

/// Listener side of PROTOCOL.md §10: optional Envelope, then a Sealed Hello
/// for a known session. Refusals close the stream and send nothing.
pub(super) async fn handle_inbound(
    inner: &Arc<Inner>,
    stream: BoxedStream,
) -> Result<(), NodeError> {
    let mut framed = Framed::new(stream, wire::codec_with(inner.config.max_frame));
    let mut first = next_frame(inner, &mut framed).await?;
    if let Frame::GroupJoin(_) = Frame::decode(&first).map_err(PeerError::Wire)? {
        return super::group_links::serve_join(inner, framed, first).await;
    }
    if let Frame::Lane(body) = Frame::decode(&first).map_err(PeerError::Wire)? {
        let id = crate::files::lane_id(body).ok_or(NodeError::Invalid {
            what: "lane frame",
            reason: "truncated",
        })?;
        let entry = inner
            .lanes
            .take(id, inner.config.hello_timeout)
            .await
            .ok_or(NodeError::NotFound { what: "lane" })?;
        return files::receive_lane(entry, first, framed, inner.config.dead_after).await;
    }
    if let Frame::Envelope(env) = Frame::decode(&first).map_err(PeerError::Wire)? {
        let env = env.to_vec();
        // The Hello that follows proves which session the acceptor holds
        // now: an Accept is applied only if that Hello opens under its
        // session (a re-key may have replaced it meanwhile: §12.2).
        first = next_frame(inner, &mut framed).await?;
        inner.open_envelope(env, Some(&first)).await?;
    }
    let Frame::Sealed(_) = Frame::decode(&first).map_err(PeerError::Wire)? else {
        return Err(PeerError::Unexpected {
            what: "second envelope",
            state: peer::PeerState::AwaitingHello,
        }
        .into());
    };
    if first.len() < SEALED_HEADER_LEN {
        return Err(SessionError::Malformed.into());
    }
    let mut sid = [0u8; 16];
    sid.copy_from_slice(&first[2..18]);
    let found = inner
        .store
        .run(move |s| -> Result<_, crate::store::Error> {
            let Some(rec) = s.session(&sid)? else {
                return Ok(None);
            };
            let c = s.contact(rec.contact)?;
            Ok(c.map(|c| (rec, c.fingerprint)))
        })
        .await??;
    let Some((rec, peer_fpr)) = found else {
        return Err(SessionError::WrongSession.into());
    };
    // Prove possession of the session before disturbing any live connection:
    // open the Hello on a throw-away copy of the stored state.
    let mut trial = restore(&rec)?;
    let plaintext = trial.open(&first)?;
    if !matches!(
        PeerMessage::decode(&plaintext).map_err(PeerError::Wire)?,
        PeerMessage::Hello(_)
    ) {
        return Err(PeerError::Unexpected {
            what: "message before Hello",
            state: peer::PeerState::AwaitingHello,
        }
        .into());
    }
    drop(trial);
    let Some(claim) = inner.claim_inbound(rec.contact, &peer_fpr).await else {
        return Ok(()); // the peer's other connection wins the tie-break
    };
    let outcome = inner
        .run_conn(&mut framed, claim, Side::Listener, Some(first))
        .await;
    if let Outcome::Ended = outcome {
        inner.wake(rec.contact);
    }
    Ok(())
}
