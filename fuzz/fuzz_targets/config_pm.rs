//! The Config.pm reader: never panics on arbitrary text, and a Config.pm generated from fuzzed
//! key/value pairs reads back the same values. The property lives in
//! `otrs_exporter::fuzzing::config_pm`, shared with the regression test.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otrs_exporter::fuzzing::config_pm(data));
