//! What the Handshaker and its clients must agree on (design-v1 "Handshaker
//! HTTP API v1"): the JSON bodies and signed statements ([`wire`]), the
//! proof-of-work stamps ([`pow`]), the signed registration bindings
//! ([`binding`]) and the canonical Handshaker address
//! ([`HandshakerAddress`]).
//!
//! A Handshaker address is canonicalised and that canonical string is signed
//! into every proof, so a proof made for one Handshaker cannot be replayed to
//! another: the server canonicalises its own public address with the same
//! code the client uses for the address it is configured with.

pub mod binding;
pub mod pow;
pub mod wire;

use std::fmt;

use crate::error::{ErrorKind, HasKind};

/// A Handshaker address that [`HandshakerAddress::parse`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Handshaker address: {reason} (use http://host:port or <56 chars>.onion)")]
pub struct AddressError {
    /// What is wrong.
    pub reason: &'static str,
}

impl HasKind for AddressError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

/// A canonical Handshaker address.
///
/// * `http://host:port` (port required, no path): canonical form is the
///   lower-cased `http://host:port`.
/// * `<base32>.onion` (optionally with `http://` and `:port`): canonical
///   form is the lower-cased `<base32>.onion`.
#[derive(Clone, PartialEq, Eq)]
pub struct HandshakerAddress {
    canonical: String,
    host: String,
    port: u16,
    onion: bool,
}

impl HandshakerAddress {
    /// Parses and canonicalises `input`.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let bad = |reason| AddressError { reason };
        let lower = input.trim().to_ascii_lowercase();
        let (had_scheme, rest) = match lower.strip_prefix("http://") {
            Some(r) => (true, r),
            None => (false, lower.as_str()),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.is_empty() {
            return Err(bad("no path allowed"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, Some(p.parse::<u16>().map_err(|_| bad("bad port"))?))
            }
            _ => (rest, None),
        };
        if host.ends_with(".onion") {
            let label = host.trim_end_matches(".onion");
            if label.len() != 56 || !label.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(bad("not a v3 onion service address"));
            }
            return Ok(HandshakerAddress {
                canonical: host.to_string(),
                host: host.to_string(),
                port: port.unwrap_or(crate::wire::PEER_PORT),
                onion: true,
            });
        }
        if !had_scheme {
            return Err(bad("missing http:// scheme"));
        }
        let port = port.ok_or_else(|| bad("missing port"))?;
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        Ok(HandshakerAddress {
            canonical: format!("http://{host}:{port}"),
            host: host.to_string(),
            port,
            onion: false,
        })
    }

    /// The canonical string signed into proofs.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// Host name (IP literal, DNS name or `.onion`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this is an onion service address.
    pub fn is_onion(&self) -> bool {
        self.onion
    }
}

impl fmt::Debug for HandshakerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandshakerAddress([scrubbed])")
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn addresses() {
        let a = HandshakerAddress::parse("HTTP://127.0.0.1:8080/").unwrap();
        assert_eq!(a.as_str(), "http://127.0.0.1:8080");
        assert!(!a.is_onion());
        let onion = format!("{}.onion", "a".repeat(56));
        let b = HandshakerAddress::parse(&format!("http://{}:80", onion.to_uppercase())).unwrap();
        assert_eq!(b.as_str(), onion);
        assert_eq!(b.port(), 80);
        // Without a port, an onion address is dialled on the peer port.
        assert_eq!(HandshakerAddress::parse(&onion).unwrap().port(), 7400);
        assert!(HandshakerAddress::parse("127.0.0.1:80").is_err());
        assert!(HandshakerAddress::parse("http://host").is_err());
        assert!(HandshakerAddress::parse("http://h:1/x").is_err());
        assert!(HandshakerAddress::parse("short.onion").is_err());
    }
}
