//! The real run loops (`serve`, `run_sleds`) over the in-memory hub: no
//! sockets, no privileges, seeded loss and duplication on the hub.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use netboot::image::{Catalog, ServedImage};
use netboot::link::mem::{Hub, HubFaults};
use netboot::run::{run_sleds, serve, ServeEnd, ServeOptions, SledFaults};
use netboot::server::{Event, Limits, Server};
use netboot::sled::{Outcome, Sled};
use netboot::wire::Mac;
use sha2::{Digest, Sha256};

#[test]
fn sleds_boot_over_the_in_memory_hub_with_loss() {
    let img: Vec<u8> = (0..(2 << 20) + (128 << 10))
        .map(|i| (i * 13 / 7) as u8)
        .collect();
    let sum: [u8; 32] = Sha256::digest(&img).into();
    let hub = Hub::new(
        HubFaults {
            loss: 0.01,
            duplicate: 0.01,
        },
        42,
    );
    let mut server_link = hub.attach(Mac([2, 0, 0, 0, 0, 0xfe]), false);
    let mut sled_link = hub.attach(Mac([2, 0, 0, 0, 1, 0]), true);
    let stop = AtomicBool::new(false);
    let events = std::thread::scope(|s| {
        let server = s.spawn(|| {
            let mut c = Catalog::new();
            let i = c.add(ServedImage::from_memory("img", img.clone()).unwrap());
            c.set_default(Some(i));
            let mut server = Server::new(Mac([2, 0, 0, 0, 0, 0xfe]), c, Limits::default());
            let opts = ServeOptions {
                stop: Some(&stop),
                timeout: Some(Duration::from_secs(60)),
                ..ServeOptions::default()
            };
            let mut events = Vec::new();
            let end = serve(
                &mut server_link,
                &mut server,
                &opts,
                &mut |e: &Event, _: &Server, _| events.push(e.clone()),
            )
            .unwrap();
            assert_eq!(end, ServeEnd::Stopped);
            events
        });
        let mut sleds: Vec<Sled> = (0..3)
            .map(|i| Sled::new(Mac([2, 0, 0, 0, 1, i]), sum).keep_image())
            .collect();
        let done = run_sleds(
            &mut sled_link,
            &mut sleds,
            &SledFaults::default(),
            Duration::from_secs(60),
            &mut |_, _| {},
        )
        .unwrap();
        assert!(done);
        for s in &sleds {
            assert!(
                matches!(s.outcome(), Some(Outcome::Booted { .. })),
                "{:?}",
                s.outcome()
            );
            let got: [u8; 32] = Sha256::digest(s.image().unwrap()).into();
            assert_eq!(got, sum);
        }
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap()
    });
    assert!(events.iter().any(|e| matches!(e, Event::Offer { .. })));
}
