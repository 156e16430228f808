//! Exposition escaping round trip: any label value and help text rendered in the text format
//! The property lives in `otrs_exporter::fuzzing::label_escaping`, shared with the regression test.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otrs_exporter::fuzzing::label_escaping(data));
