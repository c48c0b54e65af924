#![no_main]
//! See `videostore_fuzzing::search`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| videostore_fuzzing::search(data));
