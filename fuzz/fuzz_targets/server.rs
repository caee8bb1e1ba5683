//! See `bootimage_fuzz::server`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bootimage_fuzz::server(data));
