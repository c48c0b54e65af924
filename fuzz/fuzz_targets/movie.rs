#![no_main]
//! See `videostore_fuzzing::movie`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| videostore_fuzzing::movie(data));
