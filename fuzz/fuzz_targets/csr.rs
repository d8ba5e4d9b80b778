//! Fuzz target `csr`: see `certdock::fuzzing::fuzz_csr` (the corpus replay test calls it too).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certdock::fuzzing::fuzz_csr(data));
