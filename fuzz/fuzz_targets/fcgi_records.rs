//! The FastCGI record parser on arbitrary bytes, both the one-shot parser and the streaming
//! The property lives in `otrs_exporter::fuzzing::fcgi_records`, shared with the regression test.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otrs_exporter::fuzzing::fcgi_records(data));
