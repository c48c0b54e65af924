#![no_main]
//! See `videostore_fuzzing::page_token`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| videostore_fuzzing::page_token(data));
