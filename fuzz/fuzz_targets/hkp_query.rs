//! See `umbra_handshaker::fuzzing::hkp_query` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umbra_handshaker::fuzzing::hkp_query(data));
