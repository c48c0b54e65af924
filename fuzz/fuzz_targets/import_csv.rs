#![no_main]
//! See `videostore_fuzzing::import_csv`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| videostore_fuzzing::import_csv(data));
