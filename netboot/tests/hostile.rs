//! Hostile or broken sleds, in virtual time: the server stays up, keeps its
//! memory bounded, keeps serving the well-behaved sled, and offers nothing
//! to MACs the configuration refuses.

use std::time::Duration;

use netboot::image::{Catalog, ServedImage};
use netboot::server::{Event, Limits, Server};
use netboot::sim::{Faults, Rng, Sim};
use netboot::sled::{Outcome, Sled};
use netboot::wire::{self, Mac, Repr};
use sha2::{Digest, Sha256};

const SERVER: Mac = Mac([2, 0, 0, 0, 0, 0xfe]);
const GOOD: Mac = Mac([2, 0, 0, 0, 1, 1]);

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 999) as u8).collect()
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn server(img: &[u8], default: bool, limits: Limits) -> Server {
    let mut c = Catalog::new();
    let i = c.add(ServedImage::from_memory("img", img.to_vec()).unwrap());
    c.assign(GOOD, i);
    if default {
        c.set_default(Some(i));
    }
    Server::new(SERVER, c, limits)
}

fn frame(src: Mac, dst: Mac, repr: &Repr<'_>) -> Vec<u8> {
    let mut f = Vec::new();
    wire::emit_frame(&mut f, dst, src, repr);
    f
}

fn hello(src: Mac) -> Vec<u8> {
    frame(src, Mac::BROADCAST, &Repr::Hello { text: b"Hello!" })
}

fn evil(i: u32) -> Mac {
    let b = i.to_be_bytes();
    Mac([0x06, 0xee, b[0], b[1], b[2], b[3]])
}

fn booted(sim: &Sim) -> Duration {
    match sim.sleds[0].outcome() {
        Some(Outcome::Booted { elapsed, .. }) => *elapsed,
        other => panic!("{other:?}"),
    }
}

#[test]
fn ten_thousand_hellos_from_ten_thousand_macs() {
    let img = image(2 << 20);
    let sled = Sled::new(GOOD, sha(&img));
    let mut sim = Sim::new(
        server(&img, true, Limits::default()),
        vec![sled],
        Faults::default(),
        1,
    );
    for i in 0..10_000 {
        sim.inject_to_server(&hello(evil(i)));
    }
    assert!(sim.run_to_completion(Duration::from_secs(60)));
    // The good sled booted, not locked out by the flood, and quickly.
    assert!(booted(&sim) < Duration::from_secs(5), "{:?}", booted(&sim));
    let server = sim.server.as_ref().unwrap();
    // Memory stays bounded: never more sessions than the limit.
    assert!(server.sessions().count() <= Limits::default().max_sessions);
    let offers = sim
        .events
        .iter()
        .filter(|e| matches!(e, Event::Offer { .. }))
        .count();
    assert!(offers > 1000, "{offers}");
}

#[test]
fn a_read_flood_for_random_offsets_from_one_mac() {
    let img = image(4 << 20);
    let sled = Sled::new(GOOD, sha(&img));
    let mut sim = Sim::new(
        server(&img, true, Limits::default()),
        vec![sled],
        Faults::default(),
        2,
    );
    let bad = evil(1);
    sim.inject_to_server(&hello(bad));
    let mut rng = Rng::new(3);
    for _ in 0..100_000 {
        let mut offsets = [0u64; 128];
        for _ in 0..8 {
            offsets[rng.below(128) as usize] = rng.next_u64();
        }
        sim.inject_to_server(&frame(
            bad,
            SERVER,
            &Repr::Read(wire::Read { count: 8, offsets }),
        ));
    }
    assert!(sim.run_to_completion(Duration::from_secs(60)));
    assert!(booted(&sim) < Duration::from_secs(5), "{:?}", booted(&sim));
    // Nearly all the flood was dropped by the re-request limit.
    let dropped = sim
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Ignored { mac, why } if *mac == bad => why
                .split(": ")
                .nth(1)
                .and_then(|w| w.split(' ').next())
                .and_then(|n| n.parse::<u64>().ok()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    assert!(dropped > 0, "{:?}", &sim.events[..5]);
    // The flood was 800,000 offsets; the server sent a small fraction.
    assert!(sim.frames < 200_000, "{} frames", sim.frames);
}

#[test]
fn every_malformed_shape_and_the_boot_goes_on() {
    let img = image(1 << 20);
    let sled = Sled::new(GOOD, sha(&img));
    let mut sim = Sim::new(
        server(&img, true, Limits::default()),
        vec![sled],
        Faults::default(),
        4,
    );
    let mut rng = Rng::new(5);
    let bad = evil(2);
    for i in 0..20_000u32 {
        // Random bytes after a valid Ethernet header, sometimes with our
        // magic and a real type, at every length up to a full frame.
        let len = rng.below(1500) as usize;
        let mut payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if i % 2 == 0 && len >= 12 {
            payload[..4].copy_from_slice(&wire::MAGIC.to_be_bytes());
            let kinds = [0x9001u32, 0x9102, 0x9003, 0x9104, 0x9005, 0x9106];
            payload[4..8].copy_from_slice(&kinds[i as usize % 6].to_be_bytes());
        }
        let mut f = Vec::new();
        f.extend_from_slice(&SERVER.0);
        f.extend_from_slice(&bad.0);
        f.extend_from_slice(&wire::ETHERTYPE.to_be_bytes());
        f.extend_from_slice(&payload);
        sim.inject_to_server(&f);
    }
    assert!(sim.run_to_completion(Duration::from_secs(60)));
    booted(&sim);
}

#[test]
fn a_sled_that_never_finishes_is_expired() {
    let img = image(1 << 20);
    let limits = Limits {
        idle_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let mut sim = Sim::new(server(&img, true, limits), vec![], Faults::default(), 6);
    let quiet = evil(3);
    sim.inject_to_server(&hello(quiet));
    let mut offsets = [0u64; 128];
    for (i, o) in offsets.iter_mut().enumerate() {
        *o = i as u64 * 1024;
    }
    sim.inject_to_server(&frame(
        quiet,
        SERVER,
        &Repr::Read(wire::Read {
            count: 128,
            offsets,
        }),
    ));
    sim.run_until(Duration::from_secs(10), |_| false);
    assert_eq!(sim.server.as_ref().unwrap().sessions().count(), 1);
    sim.run_until(Duration::from_secs(45), |_| false);
    assert_eq!(sim.server.as_ref().unwrap().sessions().count(), 0);
    assert!(sim
        .events
        .iter()
        .any(|e| matches!(e, Event::Expired { mac, .. } if *mac == quiet)));
}

#[test]
fn refused_macs_are_never_offered_anything() {
    let img = image(1 << 20);
    let sled = Sled::new(GOOD, sha(&img));
    let mut sim = Sim::new(
        server(&img, false, Limits::default()),
        vec![sled],
        Faults::default(),
        7,
    );
    for i in 0..1000 {
        sim.inject_to_server(&hello(evil(i)));
    }
    assert!(sim.run_to_completion(Duration::from_secs(60)));
    booted(&sim);
    let refused = sim
        .events
        .iter()
        .filter(|e| matches!(e, Event::Refused { .. }))
        .count();
    assert_eq!(refused, 1000);
    assert!(!sim
        .events
        .iter()
        .any(|e| matches!(e, Event::Offer { mac, .. } if *mac != GOOD)));
}

#[test]
fn when_every_session_is_booting_new_sleds_wait() {
    // Two sessions at most, both reading: a third sled gets nothing until
    // one ends, then boots.
    let img = image(1 << 20);
    let limits = Limits {
        max_sessions: 2,
        ..Limits::default()
    };
    let mut c = Catalog::new();
    let i = c.add(ServedImage::from_memory("img", img.clone()).unwrap());
    c.set_default(Some(i));
    let server = Server::new(SERVER, c, limits);
    let sleds = (0..3)
        .map(|i| Sled::new(Mac([2, 0, 0, 0, 2, i]), sha(&img)))
        .collect();
    let mut sim = Sim::new(server, sleds, Faults::default(), 8);
    assert!(sim.run_to_completion(Duration::from_secs(60)));
    for s in &sim.sleds {
        assert!(
            matches!(s.outcome(), Some(Outcome::Booted { .. })),
            "{:?}",
            s.outcome()
        );
    }
}
