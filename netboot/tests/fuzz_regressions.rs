//! The fuzz targets' checks in `cargo test`: every saved regression input
//! in `fuzz/regressions/TARGET/`, then a seeded sample of random and
//! mutated inputs, so that the fuzzers' properties are tested on every run,
//! not only when someone fuzzes.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::Path;

use netboot::sim::Rng;

fn regressions(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut v = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().is_some_and(|n| n != ".keep") {
            v.push(std::fs::read(p).unwrap());
        }
    }
    v
}

/// Seeds: real inputs of each kind, for mutation.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifests = [root.join("../config/images/demo.toml")];
    checks::seeds(target, &root.join("../../shared/vectors"), &manifests)
        .unwrap()
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect()
}

#[test]
fn fuzz_checks_hold_on_regressions_and_a_seeded_sample() {
    let mut rng = Rng::new(0x5eed);
    for (target, check) in checks::TARGETS {
        for input in regressions(target) {
            check(&input);
        }
        let seeds = seeds(target);
        let rounds = if target == "server" || target == "verify" {
            300
        } else {
            3000
        };
        for i in 0..rounds {
            let mut input = seeds[i % seeds.len()].clone();
            // A few random byte changes, a cut, or random bytes outright.
            match rng.below(4) {
                0 => input = (0..rng.below(2000)).map(|_| rng.next_u64() as u8).collect(),
                1 => input.truncate(rng.below(input.len() as u64 + 1) as usize),
                _ => {
                    for _ in 0..1 + rng.below(8) {
                        if !input.is_empty() {
                            let at = rng.below(input.len() as u64) as usize;
                            input[at] = rng.next_u64() as u8;
                        }
                    }
                }
            }
            check(&input);
        }
    }
}
