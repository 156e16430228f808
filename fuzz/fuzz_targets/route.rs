//! Route normalization on arbitrary method, URI and Referer: never panics, labels are short and
//! The property lives in `otrs_exporter::fuzzing::route`, shared with the regression test.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otrs_exporter::fuzzing::route(data));
