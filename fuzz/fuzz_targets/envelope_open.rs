//! See `umbra_proto::fuzzing::envelope_open` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umbra_proto::fuzzing::envelope_open(data));
