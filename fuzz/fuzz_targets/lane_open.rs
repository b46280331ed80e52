//! See `umbra::fuzzing::lane_open` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umbra::fuzzing::lane_open(data));
