//! Property tests: every frame round-trips through emit and parse, on the
//! wire with Ethernet padding too, and no bytes make the parser panic.

use netboot::wire::{self, EthFrame, Mac, Offer, Packet, Read, Repr};
use proptest::prelude::*;

fn offer() -> impl Strategy<Value = Offer> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        proptest::collection::vec(any::<u8>(), 128),
    )
        .prop_map(|(ramdisk_size, data_size, sha256, d)| {
            let mut dataset = [0u8; 128];
            dataset.copy_from_slice(&d);
            Offer {
                ramdisk_size,
                data_size,
                sha256,
                dataset,
            }
        })
}

fn read() -> impl Strategy<Value = Read> {
    (0u64..=128, proptest::collection::vec(any::<u64>(), 128)).prop_map(|(count, o)| {
        let mut offsets = [0u64; 128];
        offsets.copy_from_slice(&o);
        Read { count, offsets }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn frames_round_trip(
        kind in 0u8..6,
        o in offer(),
        r in read(),
        offset in any::<u64>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..=1024),
        text in proptest::collection::vec(any::<u8>(), 0..200),
        src in any::<[u8; 6]>(),
    ) {
        let repr = match kind {
            0 => Repr::Hello { text: &text },
            1 => Repr::Offer(o),
            2 => Repr::Read(r),
            3 => Repr::Data { offset, bytes: &bytes },
            4 => Repr::Finished,
            _ => Repr::Reset,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        prop_assert_eq!(Repr::parse(&buf), Ok(repr));
        // As a whole Ethernet frame, padded to 60 bytes.
        let mut frame = Vec::new();
        wire::emit_frame(&mut frame, Mac::BROADCAST, Mac(src), &repr);
        prop_assert!(frame.len() >= wire::ETH_MIN_FRAME);
        let eth = EthFrame::parse(&frame).unwrap();
        prop_assert_eq!(eth.src, Mac(src));
        prop_assert_eq!(Repr::parse(eth.payload), Ok(repr));
    }

    #[test]
    fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
        if let Ok(Repr::Read(r)) = Repr::parse(&bytes) {
            prop_assert!(r.requested().count() <= 129);
        }
        let _ = EthFrame::parse(&bytes);
    }

    #[test]
    fn the_read_quirk_serves_every_nonzero_entry(r in read()) {
        let got: Vec<u64> = r.requested().collect();
        let nonzero: Vec<u64> = r.offsets.iter().copied().filter(|&o| o != 0).collect();
        for o in &nonzero {
            prop_assert!(got.contains(o));
        }
        prop_assert_eq!(got.contains(&0), (nonzero.len() as u64) < r.count);
    }
}
