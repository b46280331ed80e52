//! How the control server reports failures: node, store and Handshaker
//! errors mapped to API error codes with one-sentence messages and hints,
//! and the parsing of user input whose errors are hints (fingerprints,
//! mistyped contact names).

use super::*;

/// A fingerprint as people paste it: 40 hex digits, any case, spaces
/// anywhere, gpg's `0x` prefix allowed. Returns upper-case hex.
pub(super) fn parse_fingerprint(input: &str) -> ApiResult<String> {
    let compact: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = compact
        .strip_prefix("0x")
        .or_else(|| compact.strip_prefix("0X"))
        .unwrap_or(&compact);
    if digits.len() != 40 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        let what = if digits.chars().all(|c| c.is_ascii_hexdigit()) {
            format!("got {} digits", digits.chars().count())
        } else {
            "got other characters".to_owned()
        };
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("not a fingerprint: 40 hex digits expected ({what})"),
        )
        .hint("give all 40 digits as they read them to you; spaces and a 0x prefix are fine"));
    }
    Ok(digits.to_ascii_uppercase())
}

/// The contact name closest to a mistyped `name`, if one is close enough
/// to be a typo: one edit (a swapped pair counts as one) for short names,
/// two from six characters on.
pub(super) fn did_you_mean<'a>(
    name: &str,
    contacts: impl Iterator<Item = &'a str>,
) -> Option<String> {
    let bare = |n: &str| n.trim_start_matches('@').to_ascii_lowercase();
    let want = bare(name);
    let allowed = if want.chars().count() >= 6 { 2 } else { 1 };
    contacts
        .map(|c| (strsim::osa_distance(&want, &bare(c)), c))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| at(c))
}

/// [`node_err`] for `send`, with hints that fit the contact's state.
pub(super) fn send_err(c: &Contact, e: NodeError) -> ApiError {
    let name = at(&c.username);
    match (&e, c.state) {
        (NodeError::NoSession, ContactState::Requested) => ApiError::new(
            ErrorCode::NoSession,
            format!("{name} has not accepted your connection request yet"),
        )
        .hint(format!(
            "messages can be sent once they accept (`umbra contacts` shows it); \
             there is no need to request again. To take it back: umbra cancel-request {name}"
        )),
        (NodeError::NoSession, ContactState::Incoming) => ApiError::new(
            ErrorCode::NoSession,
            format!("{name} asked to connect and you have not accepted yet"),
        )
        .hint(format!("umbra accept {name} (see `umbra requests`)")),
        (NodeError::NoSession, _) => ApiError::new(
            ErrorCode::NoSession,
            format!("there is no conversation with {name} (it was ended, or never started)"),
        )
        .hint(format!("start a new one: umbra request {name}")),
        (NodeError::Invalid { reason, .. }, _) if *reason == node::MESSAGE_TOO_LONG => node_err(e)
            .hint(format!(
                "send it as a file instead: umbra send-file {name} FILE"
            )),
        _ => node_err(e),
    }
}

pub(super) fn not_registered(name: &Username) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("{name} is not registered at this Handshaker"),
    )
    .hint("check the spelling, or `umbra search PREFIX`")
}

fn key_changed(name: &Username) -> ApiError {
    ApiError::new(
        ErrorCode::KeyChanged,
        format!("the key of {name} differs from the one you pinned for them"),
    )
    .hint(
        "this can be an impersonation attempt: verify the new fingerprint with them out of \
         band, then repeat with --allow-key-change",
    )
}

pub(super) fn hs_err(e: HandshakerClientError) -> ApiError {
    tracing::info!(kind = ?e.kind(), "Handshaker call failed");
    let code = match &e {
        HandshakerClientError::BadAddress { .. } | HandshakerClientError::InvalidInput { .. } => {
            ErrorCode::BadRequest
        }
        HandshakerClientError::Io { .. } => ErrorCode::Network,
        _ => ErrorCode::Handshaker,
    };
    let err = ApiError::new(code, e.to_string());
    match code {
        ErrorCode::Network => {
            err.hint("the Handshaker may be offline or Tor still starting; try again")
        }
        _ => err,
    }
}

/// [`node_err`], naming `name` (with the out-of-band hint) on a key change.
pub(super) fn node_err_for(name: &Username) -> impl FnOnce(NodeError) -> ApiError + '_ {
    move |e| {
        match e {
        NodeError::KeyChanged => key_changed(name),
        NodeError::AlreadyConnected => ApiError::new(
            ErrorCode::AlreadyConnected,
            format!("you already have a conversation with {name}"),
        )
        .hint(format!(
            "a new request would replace it with new keys; if that is what you want: umbra request {name} --rekey"
        )),
        NodeError::NoSession => node_err(NodeError::NoSession).hint(format!(
            "there is no conversation with {name} yet: umbra request {name}"
        )),
        e => node_err(e),
    }
    }
}

pub(super) fn node_err(e: NodeError) -> ApiError {
    let code = match &e {
        NodeError::NoSession => ErrorCode::NoSession,
        NodeError::KeyChanged => ErrorCode::KeyChanged,
        NodeError::AlreadyConnected => ErrorCode::AlreadyConnected,
        NodeError::NotFound { .. } => ErrorCode::NotFound,
        NodeError::Invalid { .. } => ErrorCode::BadRequest,
        NodeError::ShuttingDown => ErrorCode::ShuttingDown,
        NodeError::File(_) | NodeError::Group(_) => ErrorCode::BadRequest,
        NodeError::Store(s) => {
            tracing::warn!(kind = ?s.kind(), "store operation failed");
            ErrorCode::Store
        }
        NodeError::JoinRefused => ErrorCode::BadRequest,
        NodeError::Mailbox(_)
        | NodeError::Transport(_)
        | NodeError::Stream { .. }
        | NodeError::Unreachable { .. } => ErrorCode::Network,
        NodeError::Trust(_) => ErrorCode::Handshaker,
        NodeError::Handshake(_) | NodeError::Session(_) | NodeError::Peer(_) => match e.kind() {
            ErrorKind::InvalidInput => ErrorCode::BadRequest,
            _ => ErrorCode::Handshaker,
        },
        _ => ErrorCode::Internal,
    };
    let err = ApiError::new(code, e.to_string());
    match code {
        ErrorCode::NoSession => err
            .hint("a conversation starts when a connection request is accepted (`umbra request`)"),
        ErrorCode::Network => err.hint("it is retried automatically; check `umbra status`"),
        _ => err,
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::{did_you_mean, parse_fingerprint};

    #[test]
    fn fingerprints_are_parsed_as_people_paste_them() {
        let hex = "54A871ED39C1F133E9B3FC37E7758643A8ED018A";
        for ok in [
            hex.to_owned(),
            hex.to_lowercase(),
            format!("0x{hex}"),
            format!("0X{}", hex.to_lowercase()),
            "54A8 71ED 39C1 F133 E9B3  FC37 E775 8643 A8ED 018A".to_owned(),
        ] {
            assert_eq!(parse_fingerprint(&ok).unwrap(), hex, "{ok}");
        }
        for (bad, why) in [
            ("54A8", "got 4 digits"),
            ("zzzz", "other characters"),
            ("", "got 0 digits"),
            (&format!("{hex}0"), "got 41 digits"),
            (&format!("0x0x{hex}"), "other characters"),
        ] {
            let e = parse_fingerprint(bad).unwrap_err();
            assert_eq!(e.code, super::ErrorCode::BadRequest);
            assert!(e.message.starts_with("not a fingerprint"), "{bad}: {e:?}");
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn did_you_mean_suggests_only_near_names() {
        let contacts = ["dave", "@carol", "@bob", "@margaret"];
        let guess = |n| did_you_mean(n, contacts.iter().copied());
        assert_eq!(guess("@daev").as_deref(), Some("@dave"));
        assert_eq!(guess("@bbo").as_deref(), Some("@bob"));
        assert_eq!(guess("carl").as_deref(), Some("@carol"));
        assert_eq!(guess("@DAVE").as_deref(), Some("@dave"));
        assert_eq!(guess("@margrat").as_deref(), Some("@margaret"));
        assert_eq!(guess("@zoe"), None);
        assert_eq!(guess("@dan"), None);
        assert_eq!(did_you_mean("@dave", std::iter::empty()), None);
    }
}
