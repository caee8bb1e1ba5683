//! Broadcast cohorts (`bootserver --broadcast`), simulated in virtual time
//! on a shared 1 GbE segment: every scenario checks every sled's SHA-256,
//! the console lines the sleds printed, and the cohort invariant (no sled
//! ever drops a broadcast DATA frame: nothing is broadcast that a sled in
//! transfer is not waiting for).

use std::time::Duration;

use netboot::image::{Catalog, ServedImage};
use netboot::pace::Rate;
use netboot::server::{Event, Limits, Server};
use netboot::sim::{Faults, Sim, Topology};
use netboot::sled::{HashMemo, Outcome, Sled};
use netboot::wire::Mac;
use sha2::{Digest, Sha256};

const SERVER: Mac = Mac([2, 0, 0, 0, 0, 0xfe]);
const SEGMENT: Topology = Topology::Segment { rate: Rate::GBIT };

fn sled_mac(i: usize) -> Mac {
    Mac([2, 0, 0, 0, (i >> 8) as u8 + 1, i as u8])
}

fn image(len: usize, seed: u64) -> Vec<u8> {
    netboot::sim::rack::test_image(len as u64, seed)
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn limits() -> Limits {
    Limits {
        broadcast: true,
        rate: Some(Rate::GBIT),
        ..Limits::default()
    }
}

/// A broadcasting server with `images`; sled `i` gets `images[pick(i)]`.
fn server(images: &[Vec<u8>], sleds: usize, pick: impl Fn(usize) -> usize) -> Server {
    server_with(images, sleds, pick, limits())
}

fn server_with(
    images: &[Vec<u8>],
    sleds: usize,
    pick: impl Fn(usize) -> usize,
    limits: Limits,
) -> Server {
    let mut c = Catalog::new();
    let idx: Vec<usize> = images
        .iter()
        .enumerate()
        .map(|(k, img)| c.add(ServedImage::from_memory(&format!("img{k}"), img.clone()).unwrap()))
        .collect();
    for i in 0..sleds {
        c.assign(sled_mac(i), idx[pick(i)]);
    }
    Server::new(SERVER, c, limits)
}

/// The sleds share a hash memo, as `sledsim`'s do.
fn sim(images: &[Vec<u8>], n: usize, pick: impl Fn(usize) -> usize + Copy, faults: Faults) -> Sim {
    let memo = HashMemo::shared();
    let sleds = (0..n)
        .map(|i| {
            Sled::new(sled_mac(i), sha(&images[pick(i)]))
                .keep_image()
                .with_hash_memo(memo.clone())
        })
        .collect();
    Sim::new(server(images, n, pick), sleds, faults, 7).on(SEGMENT)
}

fn assert_booted(sim: &Sim, i: usize, img: &[u8]) {
    let s = &sim.sleds[i];
    match s.outcome() {
        Some(Outcome::Booted { server, bytes, .. }) => {
            assert_eq!(*server, SERVER);
            assert_eq!(*bytes, img.len() as u64);
        }
        other => panic!("sled {i}: {other:?}"),
    }
    assert_eq!(
        sha(s.image().expect("kept")),
        sha(img),
        "sled {i}: bytes differ"
    );
}

/// The invariant, as the sleds saw it.
fn assert_no_stray_broadcast(sim: &Sim) {
    for (i, s) in sim.sleds.iter().enumerate() {
        assert_eq!(s.stats.data_dropped_broadcast, 0, "sled {i}: {:?}", s.stats);
    }
}

fn cohorts(sim: &Sim) -> Vec<(u64, usize)> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            Event::Cohort { cohort, sleds, .. } => Some((*cohort, *sleds)),
            _ => None,
        })
        .collect()
}

/// When each sled was offered and finished, and in which cohort.
fn offer_of(sim: &Sim, mac: Mac) -> Option<u64> {
    sim.events.iter().find_map(|e| match e {
        Event::Offer { mac: m, cohort, .. } if *m == mac => *cohort,
        _ => None,
    })
}

fn elapsed(sim: &Sim, i: usize) -> Duration {
    match sim.sleds[i].outcome() {
        Some(Outcome::Booted { elapsed, .. }) => *elapsed,
        other => panic!("sled {i}: {other:?}"),
    }
}

#[test]
fn thirty_two_sleds_boot_in_one_cohort_with_every_frame_sent_once() {
    let img = image(2 << 20, 1);
    let mut sim = sim(std::slice::from_ref(&img), 32, |_| 0, Faults::default());
    assert!(
        sim.run_to_completion(Duration::from_secs(60)),
        "{:?}",
        sim.now
    );
    for i in 0..32 {
        assert_booted(&sim, i, &img);
        assert_eq!(
            sim.sleds[i].stats.data_dropped, 0,
            "sled {i}: console lines"
        );
        assert_eq!(offer_of(&sim, sled_mac(i)), Some(1));
    }
    assert_eq!(cohorts(&sim), vec![(1, 32)]);
    // Every frame once for the whole rack: 2048 DATA frames (and the last
    // batch's empty ones: none here, the image is whole batches).
    assert_eq!(sim.data_sent, 2048);
    // Each sled's transfer takes about one sled's time alone (2 MiB at
    // 1 Gbit/s: 18 ms of wire), not 32 of them.
    for i in 0..32 {
        assert!(
            elapsed(&sim, i) < Duration::from_millis(40),
            "{:?}",
            elapsed(&sim, i)
        );
    }
    let done = sim.events.iter().find_map(|e| match e {
        Event::CohortDone {
            booted,
            left,
            broadcast,
            unicast,
            ..
        } => Some((*booted, *left, *broadcast, *unicast)),
        _ => None,
    });
    assert_eq!(done, Some((32, 0, 2048, 0)));
}

/// With 0.1 % loss each way a member that lost a frame (or whose READ was
/// lost) gets its batch again by unicast (the adaptive resend, spaced and
/// cancelled by its next READ: at most a batch of console lines, 128, per
/// loss, half of that on average) or the frames it asks for again; the
/// others wait. A sled of a 4 MiB boot loses about 4 frames: the bound is
/// 100 lines per MiB on average (400; measured 254, as unicast pays) and
/// ten losses' worth, 1280, for the unluckiest sled (measured 609). No
/// broadcast frame is ever dropped.
#[test]
fn thirty_two_sleds_through_loss_each_way() {
    let img = image(4 << 20, 2);
    let mut sim = sim(
        std::slice::from_ref(&img),
        32,
        |_| 0,
        Faults::each_way(0.001, 0.0),
    );
    assert!(
        sim.run_to_completion(Duration::from_secs(120)),
        "{:?}",
        sim.now
    );
    for i in 0..32 {
        assert_booted(&sim, i, &img);
    }
    assert_no_stray_broadcast(&sim);
    let lines: Vec<u64> = sim.sleds.iter().map(|s| s.stats.data_dropped).collect();
    let most = lines.iter().copied().max().unwrap();
    let total: u64 = lines.iter().sum();
    assert!(most <= 1280, "console lines per sled: {lines:?}");
    assert!(total <= 400 * 32, "console lines per sled: {lines:?}");
    assert!(total > 0, "loss costs some console lines: {lines:?}");
    assert_eq!(cohorts(&sim), vec![(1, 32)]);
}

#[test]
fn a_late_sled_waits_quietly_and_boots_in_the_next_cohort() {
    let img = image(8 << 20, 3);
    let mut sim = sim(std::slice::from_ref(&img), 9, |_| 0, Faults::default());
    // Sled 8 powers on after cohort 1's OFFERs (4.5 s), during its transfer.
    sim.power_on_at(8, Duration::from_millis(4_520));
    assert!(
        sim.run_to_completion(Duration::from_secs(60)),
        "{:?}",
        sim.now
    );
    for i in 0..9 {
        assert_booted(&sim, i, &img);
        assert_eq!(
            sim.sleds[i].stats.data_dropped, 0,
            "sled {i}: console lines"
        );
    }
    assert_eq!(cohorts(&sim), vec![(1, 8), (2, 1)]);
    assert_eq!(offer_of(&sim, sled_mac(8)), Some(2));
    assert!(sim
        .events
        .iter()
        .any(|e| matches!(e, Event::Waiting { mac, .. } if *mac == sled_mac(8))));
    // It was in discovery while cohort 1 was broadcast: it took nothing.
    let late = &sim.sleds[8];
    assert_eq!(late.stats.data_taken, 8 << 10);
    // Cohort 2 began only when cohort 1 was done.
    let pos = |f: &dyn Fn(&Event) -> bool| sim.events.iter().position(f).unwrap();
    let done1 = pos(&|e| matches!(e, Event::CohortDone { cohort: 1, .. }));
    let offer2 = pos(&|e| {
        matches!(
            e,
            Event::Offer {
                cohort: Some(2),
                ..
            }
        )
    });
    assert!(done1 < offer2);
}

#[test]
fn two_images_make_two_cohorts_one_after_the_other() {
    let images = [image(2 << 20, 4), image(3 << 20, 5)];
    let pick = |i: usize| i % 2;
    let mut sim = sim(&images, 16, pick, Faults::default());
    assert!(
        sim.run_to_completion(Duration::from_secs(60)),
        "{:?}",
        sim.now
    );
    for i in 0..16 {
        assert_booted(&sim, i, &images[pick(i)]);
        assert_eq!(
            sim.sleds[i].stats.data_dropped, 0,
            "sled {i}: console lines"
        );
    }
    assert_eq!(cohorts(&sim), vec![(1, 8), (2, 8)]);
    // Never two cohorts in transfer: every FINISHED of cohort 1 comes
    // before the first OFFER of cohort 2.
    let last_fin1 = sim
        .events
        .iter()
        .rposition(|e| {
            matches!(
                e,
                Event::Finished {
                    cohort: Some(1),
                    ..
                }
            )
        })
        .unwrap();
    let first_offer2 = sim
        .events
        .iter()
        .position(|e| {
            matches!(
                e,
                Event::Offer {
                    cohort: Some(2),
                    ..
                }
            )
        })
        .unwrap();
    assert!(last_fin1 < first_offer2);
    // Each image's frames went once.
    assert_eq!(sim.data_sent, (2 << 10) + (3 << 10));
}

#[test]
fn a_member_that_dies_mid_transfer_does_not_stop_the_others() {
    let img = image(16 << 20, 6);
    let mut sim = sim(std::slice::from_ref(&img), 8, |_| 0, Faults::default());
    // Let cohort 1 start its transfer, then unplug sled 3.
    assert!(!sim.run_until(Duration::from_millis(4_560), |_| false));
    assert!(sim.sleds[3].progress().0 > 0, "sled 3 has started");
    sim.unplug(3);
    let others_done = |s: &Sim| {
        (0..8)
            .filter(|&i| i != 3)
            .all(|i| s.sleds[i].outcome().is_some())
    };
    assert!(
        sim.run_until(Duration::from_secs(60), others_done),
        "{:?}",
        sim.now
    );
    for i in (0..8).filter(|&i| i != 3) {
        assert_booted(&sim, i, &img);
        assert_eq!(
            sim.sleds[i].stats.data_dropped, 0,
            "sled {i}: console lines"
        );
    }
    assert!(sim.sleds[3].outcome().is_none());
    // The others did not wait for it past MEMBER_SILENCE (5 s), let alone
    // the idle timeout (60 s): the cohort waited for its repairs until
    // waiting cost more than unicast, then served the others by unicast.
    assert!(sim.now < Duration::from_secs(12), "{:?}", sim.now);
    assert!(sim
        .events
        .iter()
        .any(|e| matches!(e, Event::CohortUnicast { cohort: 1, .. })));
    // And it leaves after MEMBER_SILENCE.
    let left = |s: &Sim| {
        s.events
            .iter()
            .any(|e| matches!(e, Event::Left { mac, cohort: 1, .. } if *mac == sled_mac(3)))
    };
    assert!(
        sim.run_until(Duration::from_secs(12), left),
        "{:?}",
        sim.now
    );
}

#[test]
fn a_server_restart_mid_transfer_resumes_the_cohort() {
    let img = image(8 << 20, 7);
    let mut sim = sim(std::slice::from_ref(&img), 8, |_| 0, Faults::default());
    assert!(!sim.run_until(Duration::from_millis(4_530), |_| false));
    sim.stop_server();
    assert!(!sim.run_until(Duration::from_millis(4_800), |_| false));
    sim.start_server(server(std::slice::from_ref(&img), 8, |_| 0));
    assert!(
        sim.run_to_completion(Duration::from_secs(60)),
        "{:?}",
        sim.now
    );
    for i in 0..8 {
        assert_booted(&sim, i, &img);
    }
    assert_no_stray_broadcast(&sim);
}

#[test]
fn unknown_macs_are_refused_and_broadcast_is_off_by_default() {
    let img = image(1 << 20, 8);
    let mut c = Catalog::new();
    let i = c.add(ServedImage::from_memory("img", img.clone()).unwrap());
    c.assign(sled_mac(0), i);
    let server = Server::new(SERVER, c, limits());
    let sleds = (0..2)
        .map(|i| Sled::new(sled_mac(i), sha(&img)).keep_image())
        .collect();
    let mut sim = Sim::new(server, sleds, Faults::default(), 3).on(SEGMENT);
    let first = |s: &Sim| s.sleds[0].outcome().is_some();
    assert!(sim.run_until(Duration::from_secs(30), first));
    assert_booted(&sim, 0, &img);
    assert!(sim.sleds[1].outcome().is_none());
    assert!(!sim
        .events
        .iter()
        .any(|e| matches!(e, Event::Offer { mac, .. } if *mac == sled_mac(1))));
    assert!(!Limits::default().broadcast);
}

/// A flood of HELLOs from 10,000 MACs: the lobby stays within
/// `max-sessions`, the fake members (they never READ) leave their cohort
/// after 1.5 s, and the real sled boots.
#[test]
fn a_hello_flood_from_ten_thousand_macs_does_not_stop_a_real_sled() {
    let img = image(1 << 20, 9);
    let limits = Limits {
        max_sessions: 64,
        ..limits()
    };
    let mut c = Catalog::new();
    let i = c.add(ServedImage::from_memory("img", img.clone()).unwrap());
    c.set_default(Some(i));
    let server = Server::new(SERVER, c, limits);
    let sled = Sled::new(sled_mac(0), sha(&img)).keep_image();
    let mut sim = Sim::new(server, vec![sled], Faults::default(), 5).on(SEGMENT);
    let mut out = netboot::Outbox::new();
    for k in 0..10_000u32 {
        let b = k.to_be_bytes();
        let mac = Mac([6, 0, b[0], b[1], b[2], b[3]]);
        out.push(
            Mac::BROADCAST,
            mac,
            &netboot::wire::Repr::Hello { text: b"x" },
        );
    }
    for f in out.frames() {
        sim.inject_to_server(f);
    }
    let booted = |s: &Sim| s.sleds[0].outcome().is_some();
    assert!(
        sim.run_until(Duration::from_secs(60), booted),
        "{:?}",
        sim.now
    );
    assert_booted(&sim, 0, &img);
    let waiting = sim.server.as_ref().unwrap().cohorts().unwrap().waiting();
    assert!(waiting <= 64, "{waiting}");
    assert!(sim.server.as_ref().unwrap().sessions().count() <= 64);
}

#[test]
fn sleds_sharing_a_hash_memo_verify_images_that_share_a_prefix() {
    // Unicast, all at once: the memo's entries are taken for the shared
    // first megabyte, and the last batch, where the images differ, is
    // hashed per image. Each sled's SHA-256 is its own image's.
    let a = image(2 << 20, 11);
    let mut b = a.clone();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    let images = [a, b];
    let pick = |i: usize| i % 2;
    let mut sim = sim(&images, 6, pick, Faults::default());
    sim.server = Some(server_with(
        &images,
        6,
        pick,
        Limits {
            broadcast: false,
            ..limits()
        },
    ));
    assert!(sim.run_to_completion(Duration::from_secs(60)));
    for i in 0..6 {
        assert_booted(&sim, i, &images[pick(i)]);
    }
}

/// With loss, a cohort waits for every member's repair (a blind search
/// for the lost frame, half a batch of console lines at the sled's pace)
/// before its next broadcast: with 8 sleds and 1 % loss nearly every
/// batch has one. Once that waiting costs more than sending each batch to
/// every member would, the cohort hands its members to unicast sessions.
/// Its transfer then takes little longer than a unicast server's: 1.4
/// times here, against 3.2 times when it kept waiting.
#[test]
fn a_cohort_that_waits_more_than_unicast_would_turns_unicast() {
    let img = image(8 << 20, 12);
    let faults = Faults::each_way(0.01, 0.0);
    let mut cohort = sim(std::slice::from_ref(&img), 8, |_| 0, faults.clone());
    assert!(cohort.run_to_completion(Duration::from_secs(300)));
    let mut unicast = sim(std::slice::from_ref(&img), 8, |_| 0, faults);
    unicast.server = Some(server_with(
        std::slice::from_ref(&img),
        8,
        |_| 0,
        Limits {
            broadcast: false,
            ..limits()
        },
    ));
    assert!(unicast.run_to_completion(Duration::from_secs(300)));
    for i in 0..8 {
        assert_booted(&cohort, i, &img);
        assert_booted(&unicast, i, &img);
    }
    assert_no_stray_broadcast(&cohort);
    assert!(cohort
        .events
        .iter()
        .any(|e| matches!(e, Event::CohortUnicast { cohort: 1, .. })));
    let window = limits().cohort_window;
    let transfer = cohort.now.saturating_sub(window);
    assert!(
        transfer < unicast.now * 3 / 2,
        "cohort {:?} (less its {window:?} window) against unicast {:?}",
        cohort.now,
        unicast.now
    );
}

/// A READ from a sled without a session joins the cohort in transfer (a
/// server restart mid-boot). Spoofed READs from 200 MACs mid-transfer join
/// too, and each is a member the cohort waits for: it waits until waiting
/// costs more than unicast would, then hands the real sleds to their
/// sessions, and the impostors leave when silent. The real sleds boot, no
/// broadcast frame is dropped, and sessions stay within their limit.
#[test]
fn a_read_flood_from_many_macs_does_not_stop_a_cohort() {
    let img = image(8 << 20, 13);
    let mut c = Catalog::new();
    let i = c.add(ServedImage::from_memory("img", img.clone()).unwrap());
    c.set_default(Some(i));
    let limits = Limits {
        max_sessions: 128,
        ..limits()
    };
    let server = Server::new(SERVER, c, limits);
    let sleds = (0..8)
        .map(|i| Sled::new(sled_mac(i), sha(&img)).keep_image())
        .collect();
    let mut sim = Sim::new(server, sleds, Faults::default(), 6).on(SEGMENT);
    // The cohort's transfer is under way.
    assert!(!sim.run_until(Duration::from_millis(4_560), |_| false));
    assert!(sim.sleds[0].progress().0 > 0);
    let mut out = netboot::Outbox::new();
    for k in 0..200u32 {
        let b = k.to_be_bytes();
        let mac = Mac([6, 0, b[0], b[1], b[2], b[3]]);
        let mut offsets = [0u64; 128];
        for (j, o) in offsets.iter_mut().enumerate() {
            *o = j as u64 * 1024;
        }
        out.push(
            SERVER,
            mac,
            &netboot::wire::Repr::Read(netboot::wire::Read {
                count: 128,
                offsets,
            }),
        );
    }
    for f in out.frames() {
        sim.inject_to_server(f);
    }
    let booted = |s: &Sim| s.sleds.iter().all(|s| s.outcome().is_some());
    assert!(
        sim.run_until(Duration::from_secs(30), booted),
        "{:?}",
        sim.now
    );
    for i in 0..8 {
        assert_booted(&sim, i, &img);
    }
    assert_no_stray_broadcast(&sim);
    assert!(sim.server.as_ref().unwrap().sessions().count() <= 128);
    // Impostors joined, up to the session limit (measured: 120), and the
    // cohort stopped waiting for them.
    let joined = sim
        .events
        .iter()
        .filter(|e| matches!(e, Event::Resumed { .. }))
        .count();
    assert!(joined > 100, "{joined}");
    assert!(sim
        .events
        .iter()
        .any(|e| matches!(e, Event::CohortUnicast { cohort: 1, .. })));
}

/// An image file replaced on disk mid-transfer: the cohort in transfer
/// keeps the image it was offered (its sleds verify it), and sleds that
/// come later get the new one, in a cohort of their own.
#[test]
fn an_image_replaced_mid_transfer_serves_the_next_cohort() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (image(4 << 20, 14), image(4 << 20, 15));
    let file = |name: &str, raw: &[u8]| {
        let r = dir.path().join(format!("{name}.raw"));
        std::fs::write(&r, raw).unwrap();
        let out = dir.path().join(format!("{name}.img"));
        bootimage::make_image(&r, &out, &bootimage::ImageSpec::default(), &|_| {}).unwrap();
        out
    };
    let path = file("os", &old);
    let staged = file("next", &new);
    let mut c = Catalog::new();
    let i = c.add_file("os", &path).unwrap();
    c.set_default(Some(i));
    let server = Server::new(SERVER, c, limits());
    let sleds = (0..8)
        .map(|i| {
            let want = if i < 4 { &old } else { &new };
            Sled::new(sled_mac(i), sha(want)).keep_image()
        })
        .collect();
    let mut sim = Sim::new(server, sleds, Faults::default(), 8).on(SEGMENT);
    for i in 4..8 {
        sim.power_on_at(i, Duration::from_secs(30));
    }
    // Cohort 1 (the old image) is under way: the file is replaced, as a
    // build replaces it (rename), and the server reloads it.
    assert!(!sim.run_until(Duration::from_millis(4_560), |_| false));
    assert!(sim.sleds[0].progress().0 > 0);
    std::fs::rename(&staged, &path).unwrap();
    let server = sim.server.as_mut().unwrap();
    server.refresh_images();
    server.catalog_mut().settle();
    server.refresh_images();
    assert!(sim.run_until(Duration::from_secs(60), |s| s
        .sleds
        .iter()
        .all(|s| s.outcome().is_some())));
    for i in 0..8 {
        assert_booted(&sim, i, if i < 4 { &old } else { &new });
    }
    assert_no_stray_broadcast(&sim);
    assert_eq!(cohorts(&sim), vec![(1, 4), (2, 4)]);
}
