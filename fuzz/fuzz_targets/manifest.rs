//! See `bootimage_fuzz::manifest`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bootimage_fuzz::manifest(data));
