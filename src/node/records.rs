//! Conversions between sessions and their stored records.

use crate::session::{Session, SessionError};
use crate::store::{ChainState, SessionRecord};

pub(super) fn session_parts(s: &Session) -> ([u8; 16], ChainState, ChainState) {
    let chain = |(k, seq): (zeroize::Zeroizing<[u8; 32]>, u64)| ChainState {
        chain_key: zeroize::Zeroizing::new(k.to_vec()),
        seq,
    };
    (s.id(), chain(s.send_chain()), chain(s.recv_chain()))
}

pub(super) fn restore(rec: &SessionRecord) -> Result<Session, SessionError> {
    Session::from_chains(
        rec.session_id,
        (&rec.send.chain_key, rec.send.seq),
        (&rec.recv.chain_key, rec.recv.seq),
    )
}
