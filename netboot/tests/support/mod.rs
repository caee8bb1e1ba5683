//! What the real-socket test files share: root, names, images, and a server
//! that runs in a namespace until told to stop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use netboot::image::Catalog;
use netboot::link::Link;
use netboot::run::{serve, ServeEnd, ServeOptions};
use netboot::server::{Event, Limits, Server};
use sha2::{Digest, Sha256};

/// These tests make network namespaces and raw sockets: they need root.
pub fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|v| v.split_whitespace().next().unwrap().to_owned())
        })
        .unwrap();
    assert_eq!(
        uid, "0",
        "the real-socket tests need root (network namespaces and raw sockets)"
    );
}

/// A lab prefix unique to this process and test (`file` tells the test
/// files apart, `tag` the tests).
pub fn prefix(file: char, tag: &str) -> String {
    format!("{file}{}{tag}", std::process::id() % 100_000)
}

/// A deterministic image of `len` bytes.
pub fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

pub fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Makes boot image `name` in `dir` from `raw`, compressed or not.
pub fn image_file(dir: &Path, name: &str, raw: &[u8], compress: bool) -> PathBuf {
    let input = dir.join(format!("{name}.raw"));
    let out = dir.join(name);
    std::fs::write(&input, raw).unwrap();
    let spec = bootimage::ImageSpec {
        compression: compress.then_some(6),
        ..bootimage::ImageSpec::default()
    };
    bootimage::make_image(&input, &out, &spec, &|_| {}).unwrap();
    out
}

/// Serves `image` to every sled on `link` until `stop`; returns the events.
pub fn serve_image(link: &mut dyn Link, image: &Path, stop: &AtomicBool) -> Vec<Event> {
    let mut c = Catalog::new();
    let i = c.add_file("img", image).unwrap();
    c.set_default(Some(i));
    let mut server = Server::new(link.mac(), c, Limits::default());
    let opts = ServeOptions {
        stop: Some(stop),
        timeout: Some(Duration::from_secs(540)),
        ..ServeOptions::default()
    };
    let mut events = Vec::new();
    let end = serve(link, &mut server, &opts, &mut |e: &Event, _: &Server, _| {
        events.push(e.clone())
    })
    .unwrap();
    assert_eq!(end, ServeEnd::Stopped);
    events
}
