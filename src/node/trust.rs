//! Directory trust (PROTOCOL.md §5.6, §17.11): the binding key pinned for
//! each Handshaker address, and our own latest binding.
//!
//! A Handshaker's binding key is pinned on first use (the first
//! `register`, or the first request opened when upgrading from a client
//! without pins) and never taken from the Handshaker again: a changed key is
//! an error the user must confirm (`umbra register
//! --trust-new-handshaker-key`). Requests we receive are checked against
//! the pinned key only; requests we send carry our latest binding, which
//! every mailbox fetch refreshes.
//!
//! Both live in the encrypted store's settings: `handshaker_key <address>`
//! (64 hex digits) and [`OWN_BINDING_SETTING`] (the binding, hex).

use std::sync::Arc;

use crate::error::{ErrorKind, HasKind};
use crate::handshake::TrustAnchor;
use crate::handshaker_api::binding::{BindingError, BindingKey, SignedBinding};

use super::inner::Inner;
use super::{NodeError, NodeHandle};

/// Setting: the canonical address of the Handshaker in use.
pub const HANDSHAKER_SETTING: &str = "handshaker";
/// Setting: our latest binding from the Handshaker in use, hex.
pub const OWN_BINDING_SETTING: &str = "own_binding";

/// A binding closer than this to its expiry is refreshed before it goes
/// into a request: a request may wait in the mailbox, but the recipient
/// checks the binding at the request's signature time, so only the time
/// between our check and our signature matters.
const REFRESH_MARGIN_SECS: u64 = 3600;

/// The settings key of the pin for `address`.
pub fn pin_setting(address: &str) -> String {
    format!("handshaker_key {address}")
}

/// Why a Handshaker's binding key or our binding cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// No Handshaker is configured.
    #[error("no Handshaker is configured")]
    NoHandshaker,
    /// The Handshaker publishes no binding key.
    #[error(
        "this Handshaker does not sign registrations (it is older than this client); \
         connection requests need its signed binding"
    )]
    NoBindingKey,
    /// The Handshaker's key differs from the pinned one.
    #[error(
        "the Handshaker's signing key changed since it was first used (pinned {pinned}, \
         now {offered}); if its operator announced the change, run \
         `umbra register --trust-new-handshaker-key`"
    )]
    KeyChanged {
        /// The pinned key, hex.
        pinned: String,
        /// The key the Handshaker publishes now, hex.
        offered: String,
    },
    /// The pin in the store does not parse.
    #[error("the pinned Handshaker key in the store is damaged")]
    DamagedPin,
    /// The Handshaker gave no binding of our name that holds.
    #[error(
        "the Handshaker gave no valid signed binding of your name ({0}); \
         run `umbra register` again"
    )]
    NoOwnBinding(BindingError),
}

impl HasKind for TrustError {
    fn kind(&self) -> ErrorKind {
        match self {
            TrustError::NoHandshaker => ErrorKind::NotFound,
            TrustError::NoBindingKey | TrustError::NoOwnBinding(_) => ErrorKind::Protocol,
            TrustError::KeyChanged { .. } => ErrorKind::BadSignature,
            TrustError::DamagedPin => ErrorKind::Internal,
        }
    }
}

/// What pinning a Handshaker key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// Nothing was pinned for the address: the key is now.
    First,
    /// The same key was pinned already.
    Same,
    /// Another key was pinned; the caller allowed the change.
    Replaced,
}

impl NodeHandle {
    /// Pins `key` as the binding key of the Handshaker at `address`
    /// (canonical). A different pinned key is [`TrustError::KeyChanged`]
    /// unless `replace`.
    pub async fn pin_handshaker_key(
        &self,
        address: &str,
        key: &BindingKey,
        replace: bool,
    ) -> Result<Pinned, NodeError> {
        self.inner.pin(address, key, replace).await
    }

    /// Keeps `binding` (hex, from a `register` answer) as ours if it holds
    /// under the key pinned for `address`.
    pub async fn remember_binding(&self, address: &str, binding: &str) -> Result<(), NodeError> {
        let key = self
            .inner
            .pinned(address)
            .await?
            .ok_or(TrustError::NoHandshaker)?;
        let anchor = TrustAnchor {
            address: address.to_owned(),
            key,
        };
        self.inner.remember_binding(&anchor, binding).await
    }
}

impl Inner {
    /// [`NodeHandle::pin_handshaker_key`].
    async fn pin(
        &self,
        address: &str,
        key: &BindingKey,
        replace: bool,
    ) -> Result<Pinned, NodeError> {
        let setting = pin_setting(address);
        let offered = key.to_hex();
        self.store
            .run(move |s| -> Result<Pinned, NodeError> {
                let pinned = s.setting(&setting)?;
                let outcome = match pinned {
                    None => Pinned::First,
                    Some(p) if p == offered => return Ok(Pinned::Same),
                    Some(_) if replace => Pinned::Replaced,
                    Some(pinned) => {
                        return Err(TrustError::KeyChanged { pinned, offered }.into());
                    }
                };
                s.set_setting(&setting, &offered)?;
                Ok(outcome)
            })
            .await?
    }

    /// The pinned key of the Handshaker in use; pinned now from its
    /// `/v1/info` if nothing is pinned for its address yet (first use).
    pub(super) async fn anchor(&self) -> Result<TrustAnchor, NodeError> {
        let mailbox = self.mailbox.clone().ok_or(TrustError::NoHandshaker)?;
        let address = mailbox.address().ok_or(TrustError::NoHandshaker)?;
        if let Some(key) = self.pinned(&address).await? {
            return Ok(TrustAnchor { address, key });
        }
        let key = mailbox
            .binding_key()
            .await?
            .ok_or(TrustError::NoBindingKey)?;
        // A concurrent first use may have pinned meanwhile: never replace.
        self.pin(&address, &key, false).await?;
        tracing::info!("pinned the Handshaker's binding key on first use");
        Ok(TrustAnchor { address, key })
    }

    async fn pinned(&self, address: &str) -> Result<Option<BindingKey>, NodeError> {
        let setting = pin_setting(address);
        let hex = self.store.run(move |s| s.setting(&setting)).await??;
        hex.map(|h| BindingKey::from_hex(&h).map_err(|_| TrustError::DamagedPin.into()))
            .transpose()
    }

    /// Verifies `hex` as our binding under `anchor` (its key and address,
    /// our name and key, valid now) and stores it.
    pub(super) async fn remember_binding(
        &self,
        anchor: &TrustAnchor,
        hex: &str,
    ) -> Result<(), NodeError> {
        let binding = self.check_own(&anchor.key, &anchor.address, hex)?;
        let encoded = binding
            .encode()
            .map_err(TrustError::NoOwnBinding)
            .map(hex::encode)?;
        self.store
            .run(move |s| s.set_setting(OWN_BINDING_SETTING, &encoded))
            .await??;
        Ok(())
    }

    fn check_own(
        &self,
        key: &BindingKey,
        address: &str,
        hex_text: &str,
    ) -> Result<SignedBinding, TrustError> {
        let bytes = hex::decode(hex_text)
            .map_err(|_| TrustError::NoOwnBinding(BindingError::Malformed("hex")))?;
        let binding = SignedBinding::decode(&bytes).map_err(TrustError::NoOwnBinding)?;
        binding
            .check(
                key,
                self.identity.username(),
                &self.identity.fingerprint(),
                address,
                crate::time::now_secs(),
            )
            .map_err(TrustError::NoOwnBinding)?;
        Ok(binding)
    }

    /// Our binding for a request we are about to sign: the stored one if it
    /// holds for a while yet, else one fresh from a mailbox fetch.
    pub(super) async fn own_binding(self: &Arc<Self>) -> Result<SignedBinding, NodeError> {
        let anchor = self.anchor().await?;
        let mut last = BindingError::Malformed("none received yet");
        for attempt in 0..2 {
            if attempt == 1 {
                // A poll stores the binding that comes with the fetch.
                super::poller::poll_mailbox(self).await?;
            }
            let stored = self.store.run(|s| s.setting(OWN_BINDING_SETTING)).await??;
            let Some(hex_text) = stored else { continue };
            match self.check_own(&anchor.key, &anchor.address, &hex_text) {
                Ok(b)
                    if b.binding.expires_at
                        > crate::time::now_secs().saturating_add(REFRESH_MARGIN_SECS) =>
                {
                    return Ok(b);
                }
                Ok(_) => last = BindingError::Expired,
                Err(TrustError::NoOwnBinding(e)) => last = e,
                Err(e) => return Err(e.into()),
            }
        }
        Err(TrustError::NoOwnBinding(last).into())
    }
}
