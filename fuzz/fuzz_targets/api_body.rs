//! Fuzz target `api_body`: see `certdock::fuzzing::fuzz_api_body` (the corpus replay test calls it too).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certdock::fuzzing::fuzz_api_body(data));
