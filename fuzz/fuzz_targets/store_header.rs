//! See `umbra::fuzzing::store_header` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umbra::fuzzing::store_header(data));
