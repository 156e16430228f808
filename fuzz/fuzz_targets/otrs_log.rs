//! OTRS log lines (File and SysLog backend): never panic, and lines written from fuzzed fields
//! parse back to those fields. The property lives in `otrs_exporter::fuzzing::otrs_log`,
//! shared with the regression test.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otrs_exporter::fuzzing::otrs_log(data));
