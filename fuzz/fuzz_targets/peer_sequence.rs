//! See `umbra::fuzzing::peer_sequence` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umbra::fuzzing::peer_sequence(data));
