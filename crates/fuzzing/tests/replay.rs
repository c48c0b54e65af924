//! Every fuzz target's seeds (`fuzz/seeds/<target>/`) and every input that once broke it
//! (`fuzz/regressions/<target>/`), run through its check on stable: a fixed bug stays fixed
//! without the fuzzer.

use std::{fs, path::Path};

#[test]
fn every_seed_and_regression_passes_its_check() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut seeds = 0;
    for (target, check) in videostore_fuzzing::TARGETS {
        let mut inputs = 0;
        for folder in ["seeds", "regressions"] {
            let Ok(entries) = fs::read_dir(fuzz.join(folder).join(target)) else { continue };
            for entry in entries {
                let path = entry.expect("a listable folder").path();
                let data = fs::read(&path).expect("a readable input");
                eprintln!("{target}: {}", path.display());
                check(&data);
                inputs += 1;
            }
        }
        assert!(inputs > 0, "fuzz target {target} has no seeds in fuzz/seeds/{target}/");
        seeds += inputs;
    }
    eprintln!("{seeds} inputs passed");
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for (target, _) in videostore_fuzzing::TARGETS {
        let source = fs::read_to_string(targets.join(format!("{target}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{target}.rs: {e}"));
        assert!(source.contains(&format!("videostore_fuzzing::{target}(")), "{target}");
    }
}
