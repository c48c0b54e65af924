#![no_main]
//! See `videostore_fuzzing::account`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| videostore_fuzzing::account(data));
