//! Runs every committed fuzz input — crash reproducers in `fuzz/regressions/<target>/` and the
//! seed corpora in `fuzz/corpus/<target>/` — through the same property the fuzz target checks
//! (`otrs_exporter::fuzzing`), on stable Rust, in the ordinary test suite.

use std::path::Path;

#[test]
fn committed_fuzz_inputs_still_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for (name, check) in otrs_exporter::fuzzing::TARGETS {
        for dir in ["regressions", "corpus"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for e in entries.flatten() {
                let data = std::fs::read(e.path()).unwrap();
                let path = e.path();
                let result = std::panic::catch_unwind(|| check(&data));
                assert!(result.is_ok(), "{name}: {} fails again", path.display());
                ran += 1;
            }
        }
    }
    assert!(
        ran > 0,
        "no committed fuzz inputs found under {}",
        root.display()
    );
}
