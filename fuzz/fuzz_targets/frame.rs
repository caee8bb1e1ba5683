//! See `bootimage_fuzz::frame`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bootimage_fuzz::frame(data));
