//! Fuzz target `names`: see `certdock::fuzzing::fuzz_names` (the corpus replay test calls it too).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certdock::fuzzing::fuzz_names(data));
