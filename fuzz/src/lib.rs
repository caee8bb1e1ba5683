//! The fuzz targets' checks, as plain functions: the libFuzzer targets in
//! `fuzz_targets/` call them, and so does the workspace's
//! `netboot/tests/fuzz_regressions.rs`, which replays every input saved in
//! `fuzz/regressions/TARGET/` (crashes found become regression tests that
//! way) and a seeded random sample, in `cargo test`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bootimage::Header;
use netboot::image::{Catalog, ServedImage};
use netboot::server::{Limits, Server};
use netboot::wire::{Mac, Packet, Repr, ETHERTYPE};
use netboot::Outbox;

/// A target's check.
pub type Check = fn(&[u8]);

/// The targets, by name.
pub const TARGETS: [(&str, Check); 5] = [
    ("header", header),
    ("verify", verify),
    ("frame", frame),
    ("server", server),
    ("manifest", manifest),
];

/// Any bytes: `Header::parse` returns a value or an error, never panics; a
/// value emits and parses back to itself, and its checks and report never
/// panic.
pub fn header(data: &[u8]) {
    if let Ok(h) = Header::parse(data) {
        let _ = h.check();
        let _ = bootimage::report::header_lines(&h);
        let _ = bootimage::report::header_json(&h, None);
        assert_eq!(Header::parse(&h.emit()).as_ref(), Ok(&h));
    }
}

/// Any file: the verifier says what is wrong (or that all is well) and
/// never panics, whatever the header claims and the payload holds.
pub fn verify(data: &[u8]) {
    let path = Path::new("fuzz.img");
    let mut reader = data;
    let Ok(header) = bootimage::read_header(&mut reader, path) else {
        return;
    };
    // Keep each run short: inflating is bounded by image_size.
    if header.image_size > 64 << 20 {
        return;
    }
    let _ = bootimage::verify_payload_serial(&header, reader, path, &|_| {});
}

/// Any Ethernet payload: `Repr::parse` returns a frame or an error, never
/// panics; a frame emits and parses back to itself.
pub fn frame(data: &[u8]) {
    if let Ok(repr) = Repr::parse(data) {
        if let Repr::Read(r) = &repr {
            assert!(r.requested().count() <= 129);
        }
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(Repr::parse(&buf), Ok(repr));
    }
}

const SERVER: Mac = Mac([2, 0, 0, 0, 0, 0xfe]);

/// Any sequence of frames from any of a few MACs, at any times: the server
/// state machine never panics and never keeps more sessions than its
/// limit, unicast and with broadcast cohorts. Each record is [MAC
/// selector, time step, length / 6, bytes].
pub fn server(data: &[u8]) {
    server_with(data, false);
    server_with(data, true);
}

fn server_with(data: &[u8], broadcast: bool) {
    let mut c = Catalog::new();
    let img: Vec<u8> = (0..(1 << 20) + (128 << 10)).map(|i| i as u8).collect();
    let i = c.add(ServedImage::from_memory("img", img).expect("a servable size"));
    c.assign(Mac([2, 0, 0, 0, 0, 1]), i);
    c.assign(Mac([2, 0, 0, 0, 0, 2]), i);
    let limits = Limits {
        max_sessions: 3,
        broadcast,
        ..Limits::default()
    };
    let mut server = Server::new(SERVER, c, limits);
    let mut out = Outbox::new();
    let mut now = Duration::ZERO;
    let mut rest = data;
    while rest.len() >= 3 {
        let (sel, step, len) = (rest[0], rest[1], rest[2] as usize * 6);
        rest = &rest[3..];
        let len = len.min(rest.len());
        let (body, tail) = rest.split_at(len);
        rest = tail;
        now += Duration::from_millis(step as u64 * 37);
        let src = Mac([2, 0, 0, 0, 0, sel % 8]);
        let dst = if sel & 0x80 != 0 {
            Mac::BROADCAST
        } else {
            SERVER
        };
        let mut frame = Vec::with_capacity(14 + body.len());
        frame.extend_from_slice(&dst.0);
        frame.extend_from_slice(&src.0);
        frame.extend_from_slice(&ETHERTYPE.to_be_bytes());
        frame.extend_from_slice(body);
        server.handle(now, &frame, &mut out);
        server.poll(now, &mut out);
        assert!(server.sessions().count() <= 3);
        out.clear();
        let _ = server.drain_events();
    }
}

/// Any text: the manifest parser returns a manifest or an error naming the
/// file, never panics.
pub fn manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = bootimage_build::Manifest::parse(Path::new("fuzz/m.toml"), text) {
            assert!(e.to_string().starts_with("fuzz/m.toml: "), "{e}");
        }
    }
}

/// Seed inputs for `target`, by name: real images from `vectors` (the
/// golden vectors), real frames, and the `manifests` given. `cargo xtask
/// fuzz` starts from them; the regression test mutates them.
pub fn seeds(
    target: &str,
    vectors: &Path,
    manifests: &[PathBuf],
) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    match target {
        "header" | "verify" => {
            for v in ["small-plain.img", "small-z.img"] {
                let mut bytes = std::fs::read(vectors.join(v))?;
                if target == "header" {
                    bytes.truncate(bootimage::header::HEADER_LEN);
                }
                out.push((v.to_owned(), bytes));
            }
        }
        "frame" | "server" => {
            // A dense READ for the first batch, as the client sends it.
            let mut offsets = [0u64; 128];
            for (i, o) in offsets.iter_mut().enumerate() {
                *o = i as u64 * 1024;
            }
            let r = Repr::Read(netboot::wire::Read {
                count: 128,
                offsets,
            });
            let mut read = vec![0u8; r.buffer_len()];
            r.emit(&mut Packet::new_unchecked(&mut read[..]));
            let hello = Repr::Hello { text: b"" };
            let mut hi = vec![0u8; hello.buffer_len()];
            hello.emit(&mut Packet::new_unchecked(&mut hi[..]));
            if target == "frame" {
                out.push(("read".into(), read));
                out.push(("hello".into(), hi));
            } else {
                // Records (see `server`): a broadcast HELLO, then a READ,
                // both from sled 1.
                let mut s = vec![0x81, 0, (hi.len() / 6) as u8];
                s.extend_from_slice(&hi[..hi.len() / 6 * 6]);
                s.extend_from_slice(&[1, 1, (read.len() / 6) as u8]);
                s.extend_from_slice(&read[..read.len() / 6 * 6]);
                out.push(("hello-read".into(), s));
            }
        }
        _ => {
            for m in manifests {
                let name = m
                    .file_name()
                    .map_or_else(|| "manifest".into(), |n| n.to_string_lossy().into_owned());
                out.push((name, std::fs::read(m)?));
            }
        }
    }
    Ok(out)
}
