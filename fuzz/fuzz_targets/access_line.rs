//! The access-log line parser and the route normalizer on arbitrary lines: never panic, and an
//! The property lives in `otrs_exporter::fuzzing::access_line`, shared with the regression test.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otrs_exporter::fuzzing::access_line(data));
