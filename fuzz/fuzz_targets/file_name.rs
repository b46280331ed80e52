//! See `umbra::fuzzing::file_name` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umbra::fuzzing::file_name(data));
