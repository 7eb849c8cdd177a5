#![no_main]
// The entry is shared with the unit tests (tests/fuzz_corpus.rs): vramzip::fuzz::manifest.
libfuzzer_sys::fuzz_target!(|data: &[u8]| vramzip::fuzz::manifest(data));
