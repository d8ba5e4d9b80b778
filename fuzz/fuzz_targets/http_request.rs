//! Fuzz target `http_request`: see `certdock::api::fuzz::fuzz_request_head` (the corpus replay test calls it too).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certdock::api::fuzz::fuzz_request_head(data));
