//! See `umbra::fuzzing::control_line` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umbra::fuzzing::control_line(data));
