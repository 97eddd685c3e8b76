//! libFuzzer entry of `optimystic_fuzz::frame` (its docs say what it checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| optimystic_fuzz::frame::run(data));
