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
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    let z = std::fs::read(vectors.join("small-z.img")).unwrap();
    match target {
        "header" => vec![z[..4096].to_vec()],
        "verify" => vec![z],
        "frame" | "server" => {
            let mut offsets = [0u64; 128];
            for (i, o) in offsets.iter_mut().enumerate() {
                *o = i as u64 * 1024;
            }
            let mut read = Vec::new();
            let r = netboot::wire::Repr::Read(netboot::wire::Read {
                count: 128,
                offsets,
            });
            read.resize(r.buffer_len(), 0);
            r.emit(&mut netboot::wire::Packet::new_unchecked(&mut read[..]));
            if target == "frame" {
                vec![read]
            } else {
                // A HELLO record then a READ record, from sled 1.
                let mut s = vec![0x81, 0, 2];
                s.extend_from_slice(b"\x1d\xe1\x23\x45\x00\x00\x90\x01\x00\x00\x00\x00");
                s.extend_from_slice(&[1, 1, (read.len() / 6) as u8]);
                s.extend_from_slice(&read);
                vec![s]
            }
        }
        _ => vec![std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/images/demo.toml"),
        )
        .unwrap()],
    }
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
