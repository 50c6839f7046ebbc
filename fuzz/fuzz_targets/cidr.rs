#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keybroker_fuzz::cidr(data));
