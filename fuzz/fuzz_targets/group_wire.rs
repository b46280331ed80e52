//! See `umbra_proto::fuzzing::group_wire` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| umbra_proto::fuzzing::group_wire(data));
