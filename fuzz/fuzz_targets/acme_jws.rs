//! Fuzz target `acme_jws`: see `certdock::acme::fuzz::fuzz_jws` (the corpus replay test calls it too).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certdock::acme::fuzz::fuzz_jws(data));
