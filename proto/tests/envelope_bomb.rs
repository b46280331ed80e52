//! SECURITY-2026-11 M2: an OpenPGP compression bomb is refused before it is
//! inflated.
//!
//! Anyone who can deposit into a mailbox (one proof of work) or reach an
//! onion address can send an envelope. Here: a few KiB of deflate that
//! inflate to a 24 MiB literal packet, encrypted to the recipient, with no
//! valid signature (none is needed to reach the decompressor). Opening it
//! must allocate under 1 MiB. This test has its own binary because it
//! counts the process's allocations with a global allocator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sequoia_openpgp as openpgp;

use openpgp::packet::{Body, CompressedData, Literal, Packet};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::Marshal;
use openpgp::serialize::stream::{Armorer, Encryptor, Message, Recipient};
use openpgp::types::{CompressionAlgorithm, DataFormat};

use umbra_proto::envelope::{self, EnvelopeError, Freshness};
use umbra_proto::identity::{Identity, Username};

/// Counts the bytes currently allocated and the peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Allocation high-water mark above what was live when `f` started.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// An armored message encrypted to `recipient` whose plaintext is one
/// compressed data packet (`algo`) holding `inflated` bytes of raw packets.
fn encrypted_compressed(
    recipient: &openpgp::Cert,
    algo: CompressionAlgorithm,
    inflated: &[u8],
) -> Vec<u8> {
    let mut deflated = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    deflated.write_all(inflated).unwrap();
    let mut cd = CompressedData::new(algo);
    cd.set_body(Body::Unprocessed(deflated.finish().unwrap()));

    let policy = StandardPolicy::new();
    let recipients: Vec<Recipient> = recipient
        .with_policy(&policy, None)
        .unwrap()
        .keys()
        .for_transport_encryption()
        .map(|ka| Recipient::from(ka).set_key_handle(None).unwrap())
        .collect();
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    let message = Armorer::new(message).build().unwrap();
    let mut message = Encryptor::for_recipients(message, recipients)
        .build()
        .unwrap();
    Packet::from(cd).serialize(&mut message).unwrap();
    message.finalize().unwrap();
    sink
}

#[test]
fn a_compression_bomb_is_refused_before_it_is_inflated() {
    let bob = Identity::generate(&Username::parse("bob").unwrap()).unwrap();
    let mallory = Identity::generate(&Username::parse("mallory").unwrap()).unwrap();
    let bob_cert =
        openpgp::Cert::from_bytes(bob.public_cert().unwrap().to_armored().unwrap().as_bytes())
            .unwrap();
    let mallory_pub = mallory.public_cert().unwrap();

    // A literal packet of 24 MiB of zeros, deflated (zlib).
    let mut literal = Literal::new(DataFormat::Binary);
    literal.set_body(vec![0u8; 24 << 20]);
    let mut inner = Vec::new();
    Packet::from(literal).serialize(&mut inner).unwrap();
    let bomb = encrypted_compressed(&bob_cert, CompressionAlgorithm::Zlib, &inner);
    drop(inner);
    assert!(
        bomb.len() < 64 << 10,
        "the bomb is small on the wire: {} bytes",
        bomb.len()
    );

    let started = Instant::now();
    let (result, peak) =
        peak_during(|| envelope::open(&bomb, &bob, &mallory_pub, Freshness::default()));
    let elapsed = started.elapsed();
    println!(
        "compression bomb ({} bytes armored, 24 MiB inflated): refused in {elapsed:?}, peak {peak} bytes allocated",
        bomb.len()
    );
    assert!(
        matches!(result, Err(EnvelopeError::Compressed)),
        "refused as compressed, got {:?}",
        result.err()
    );
    assert!(peak < 1 << 20, "peak allocation {peak} bytes (limit 1 MiB)");

    // The unverified first pass over a mailbox request (PROTOCOL.md §5.6)
    // refuses it the same way.
    let (peeked, peak) = peak_during(|| envelope::peek(&bomb, &bob));
    assert!(
        matches!(peeked, Err(EnvelopeError::Compressed)),
        "peek refused it as compressed, got {:?}",
        peeked.err()
    );
    assert!(peak < 1 << 20, "peek: peak allocation {peak} bytes");
}
