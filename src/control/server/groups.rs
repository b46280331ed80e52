//! Group commands of the control API (docs/CONTROL.md "Groups"), and group
//! events for subscribers.

use super::*;

/// Maps a node group event to an API event.
pub(super) async fn group_event(
    _node: &NodeHandle,
    _group: [u8; 32],
    _event: node::GroupEvent,
) -> ApiResult<Option<Event>> {
    Ok(None)
}
