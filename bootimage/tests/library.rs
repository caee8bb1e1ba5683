//! The library: the verifier's precise errors on damaged images, and round
//! trips over random sizes, names and compression.

use std::fs;
use std::path::Path;

use bootimage::header::{Flags, Header, Version, HEADER_LEN};
use bootimage::{make_image, make_image_from, Error, Image, ImageSpec};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn noop(_: u64) {}

/// Deterministic, somewhat compressible bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 7 < 3 {
                (i / 64) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

fn make(dir: &Path, raw: &[u8], spec: &ImageSpec) -> Vec<u8> {
    let input = dir.join("in.raw");
    let output = dir.join("out.img");
    fs::write(&input, raw).unwrap();
    make_image(&input, &output, spec, &noop).unwrap();
    fs::read(output).unwrap()
}

fn verify_bytes(dir: &Path, img: &[u8]) -> Result<(), Error> {
    let path = dir.join("check.img");
    fs::write(&path, img).unwrap();
    Image::open(&path)?.verify(&noop)
}

fn err_text(dir: &Path, img: &[u8]) -> String {
    verify_bytes(dir, img)
        .unwrap_err()
        .to_string()
        .replace(&format!("{}/", dir.display()), "")
}

fn compressed_spec() -> ImageSpec {
    ImageSpec {
        compression: Some(6),
        ..ImageSpec::default()
    }
}

#[test]
fn verifier_names_what_is_wrong_with_a_plain_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let raw = data(10_000, 1);
    let good = make(d, &raw, &ImageSpec::default());
    assert!(verify_bytes(d, &good).is_ok());

    let mut bad = good.clone();
    bad[0] = 0x76;
    assert_eq!(
        err_text(d, &bad),
        "check.img: bad magic 0x1deb0076 (expected 0x1deb0075)"
    );
    let mut bad = good.clone();
    bad[4] = 9;
    assert_eq!(
        err_text(d, &bad),
        "check.img: unknown header version 9 (known: 1, 2)"
    );
    let mut bad = good.clone();
    bad[8] = 0x82;
    assert_eq!(
        err_text(d, &bad),
        "check.img: unknown flag bits 0x82 in flags 0x82 (known: 0x1)"
    );
    assert_eq!(
        err_text(d, &good[..2000]),
        "check.img: header is truncated: 2000 bytes, need 4096"
    );
    assert_eq!(
        err_text(d, &good[..good.len() - 10]),
        "check.img: payload is truncated: header says 10000 bytes of data, the file holds 9990"
    );
    let mut long = good.clone();
    long.extend_from_slice(b"junk");
    assert_eq!(
        err_text(d, &long),
        "check.img: 4 bytes of trailing data after the 10000-byte payload"
    );
    let mut bad = good.clone();
    bad[4096 + 5] ^= 0xff;
    let actual = bootimage::header::hex(&Sha256::digest(&bad[4096..]));
    let expected = bootimage::header::hex(&Sha256::digest(&raw));
    assert_eq!(
        err_text(d, &bad),
        format!("check.img: checksum mismatch: header says {expected}, image hashes to {actual}")
    );
    let mut bad = good.clone();
    bad[16..24].copy_from_slice(&0u64.to_le_bytes());
    assert_eq!(err_text(d, &bad), "check.img: data size is 0");
    let mut bad = good.clone();
    bad[16..24].copy_from_slice(&9999u64.to_le_bytes());
    assert_eq!(
        err_text(d, &bad),
        "check.img: data size 9999 differs from image size 10000 in an uncompressed image"
    );
    let mut bad = good.clone();
    bad[32..40].copy_from_slice(&4096u64.to_le_bytes());
    assert_eq!(
        err_text(d, &bad),
        "check.img: image size 10000 is larger than target size 4096"
    );
}

#[test]
fn verifier_names_what_is_wrong_with_a_compressed_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let raw = data(50_000, 2);
    let good = make(d, &raw, &compressed_spec());
    assert!(verify_bytes(d, &good).is_ok());
    let h = Header::parse(&good).unwrap();
    assert!(h.flags.compressed());
    let ds = h.data_size;

    // Garbage inside the payload, after the stream ends.
    let mut bad = good.clone();
    bad.extend_from_slice(&[0xee; 3]);
    bad[16..24].copy_from_slice(&(ds + 3).to_le_bytes());
    assert_eq!(
        err_text(d, &bad),
        format!(
            "check.img: trailing garbage after the zlib stream: the stream ends at payload byte {ds}, data size is {}",
            ds + 3
        )
    );
    // Bytes after the payload.
    let mut bad = good.clone();
    bad.extend_from_slice(&[0xee; 3]);
    assert_eq!(
        err_text(d, &bad),
        format!("check.img: 3 bytes of trailing data after the {ds}-byte payload")
    );
    // A file cut short.
    assert_eq!(
        err_text(d, &good[..good.len() - 100]),
        format!(
            "check.img: payload is truncated: header says {ds} bytes of data, the file holds {}",
            ds - 100
        )
    );
    // A data size that cuts the stream short.
    let mut bad = good[..good.len() - 100].to_vec();
    bad[16..24].copy_from_slice(&(ds - 100).to_le_bytes());
    assert_eq!(
        err_text(d, &bad),
        format!(
            "check.img: zlib stream does not end within the {}-byte payload",
            ds - 100
        )
    );
    // Corrupt deflate data.
    let mut bad = good.clone();
    bad[4096] = 0x00;
    assert!(
        err_text(d, &bad).starts_with("check.img: zlib stream is corrupt near payload byte"),
        "{}",
        err_text(d, &bad)
    );
    // Image size in the header smaller, then larger, than what inflates.
    let mut bad = good.clone();
    bad[24..32].copy_from_slice(&40_000u64.to_le_bytes());
    assert_eq!(
        err_text(d, &bad),
        "check.img: image size mismatch: header says 40000 bytes, payload inflates to more"
    );
    let mut bad = good.clone();
    bad[24..32].copy_from_slice(&60_000u64.to_le_bytes());
    assert_eq!(
        err_text(d, &bad),
        "check.img: image size mismatch: header says 60000 bytes, payload holds 50000"
    );
}

#[test]
fn version_1_images_are_read_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let raw = data(9000, 3);
    let mut h = Header::plain(9000, 1 << 20, Sha256::digest(&raw).into());
    h.version = Version::V1;
    let mut img = h.emit().to_vec();
    img.extend_from_slice(&raw);
    verify_bytes(dir.path(), &img).unwrap();
    let parsed = Header::parse(&img).unwrap();
    assert_eq!(parsed.version, Version::V1);
    assert_eq!(parsed.flags, Flags::empty());
    img[HEADER_LEN] ^= 1;
    assert!(err_text(dir.path(), &img).contains("checksum mismatch"));
}

#[test]
fn names_with_nul_are_refused() {
    let e = ImageSpec::default()
        .with_names("rpool", "a\0b")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "image name \"a\\0b\" contains a NUL byte at offset 1"
    );
}

#[test]
fn streaming_input_limits_are_checked_at_the_end_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.img");
    let e = make_image_from(
        &[][..],
        Path::new("<pipe>"),
        &out,
        &ImageSpec::default(),
        &noop,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "<pipe>: input is empty");
    let spec = ImageSpec {
        target_size: 8192,
        ..compressed_spec()
    };
    let e =
        make_image_from(&data(9000, 1)[..], Path::new("<pipe>"), &out, &spec, &noop).unwrap_err();
    assert_eq!(
        e.to_string(),
        "<pipe>: image size 9000 is larger than target size 8192"
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A reader that fails part way, as a disk or pipe can.
struct Failing(usize);

impl std::io::Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("device went away"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(1);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn a_read_error_midway_leaves_the_old_output_intact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.img");
    fs::write(&out, b"old").unwrap();
    for spec in [ImageSpec::default(), compressed_spec()] {
        let e = make_image_from(Failing(3 << 20), Path::new("/dev/sdz"), &out, &spec, &noop)
            .unwrap_err();
        assert_eq!(e.to_string(), "/dev/sdz: read: device went away");
        assert_eq!(fs::read(&out).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

#[test]
fn checksum_file_is_the_raw_digest() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("csum");
    bootimage::write_checksum_file(&p, &[0xa5; 32]).unwrap();
    assert_eq!(fs::read(&p).unwrap(), [0xa5; 32]);
    // Overwrites atomically.
    bootimage::write_checksum_file(&p, &[0x5a; 32]).unwrap();
    assert_eq!(fs::read(&p).unwrap(), [0x5a; 32]);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trip(
        len in 4096usize..200_000,
        seed in any::<u64>(),
        name in "[a-z0-9/_-]{0,127}",
        dataset in "[a-z0-9/_-]{1,127}",
        level in proptest::option::of(1u32..=9),
        extra_target in 0u64..1 << 30,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let raw = data(len, seed);
        let spec = ImageSpec {
            target_size: len as u64 + extra_target,
            compression: level,
            ..ImageSpec::default()
        }
        .with_names(&dataset, &name)
        .unwrap();
        let img = make(dir.path(), &raw, &spec);
        let h = Header::parse(&img).unwrap();
        prop_assert_eq!(h.image_size, len as u64);
        prop_assert_eq!(h.data_size, (img.len() - HEADER_LEN) as u64);
        prop_assert_eq!(h.image_name.as_str(), name.as_str());
        prop_assert_eq!(h.dataset.as_str(), dataset.as_str());
        prop_assert_eq!(h.target_size, spec.target_size);
        prop_assert_eq!(h.sha256, <[u8; 32]>::from(Sha256::digest(&raw)));
        prop_assert_eq!(h.flags.compressed(), level.is_some());
        let payload = if level.is_some() {
            miniz_oxide::inflate::decompress_to_vec_zlib(&img[HEADER_LEN..]).unwrap()
        } else {
            img[HEADER_LEN..].to_vec()
        };
        prop_assert_eq!(payload, raw);
        prop_assert!(verify_bytes(dir.path(), &img).is_ok());
        prop_assert_eq!(Header::parse(&h.emit()).unwrap(), h);
    }

    #[test]
    fn parsing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let _ = Header::parse(&bytes);
    }

    #[test]
    fn parsing_near_valid_headers_never_panics(
        idx in 0usize..HEADER_LEN, val in any::<u8>(), version in 0u32..4,
    ) {
        let mut b = Header::plain(4096, 4096, [1; 32]).emit();
        b[4..8].copy_from_slice(&version.to_le_bytes());
        b[idx] = val;
        if let Ok(h) = Header::parse(&b) {
            let _ = h.check();
            let _ = bootimage::report::header_lines(&h);
        }
    }
}
