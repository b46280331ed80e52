//! See `umbra::fuzzing::backup` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umbra::fuzzing::backup(data));
