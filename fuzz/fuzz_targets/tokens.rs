#![no_main]
//! See `videostore_fuzzing::tokens`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| videostore_fuzzing::tokens(data));
