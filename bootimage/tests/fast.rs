//! The fast paths keep every byte: the parallel zlib encoder gives one
//! standard stream, identical for every thread count, and sparse plain
//! output changes nothing but the disk space used.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bootimage::header::HEADER_LEN;
use bootimage::zlib::{compress, BLOCK};
use bootimage::{make_image, Header, Image, ImageSpec};

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Text-like runs and noise, so that every level has work to do.
            if (i / 4096) % 3 == 0 {
                b"the quick brown fox jumps over the lazy dog "[i % 44]
            } else if (i / 4096) % 3 == 1 {
                0
            } else {
                (x % 7) as u8
            }
        })
        .collect()
}

/// Compresses `input` with the parallel encoder, feeding it as a reader
/// would: full blocks except at the end.
fn zlib(input: &[u8], level: u32, threads: usize) -> Vec<u8> {
    let mut at = 0;
    let (out, written) = compress(
        level,
        threads,
        |buf: &mut [u8]| {
            let n = buf.len().min(input.len() - at);
            buf[..n].copy_from_slice(&input[at..at + n]);
            at += n;
            Ok::<_, ()>(n)
        },
        Vec::new(),
    )
    .unwrap();
    assert_eq!(written, out.len() as u64);
    out
}

fn inflate(stream: &[u8]) -> Vec<u8> {
    // miniz_oxide: an inflater independent of the zlib-rs encoder.
    miniz_oxide::inflate::decompress_to_vec_zlib(stream).expect("a valid zlib stream")
}

#[test]
fn every_level_and_thread_count_gives_the_same_standard_stream() {
    let sizes = [
        0,
        1,
        4096,
        BLOCK - 1,
        BLOCK,     // ends on a block boundary: an empty tail
        BLOCK + 1, // a one-byte last block
        3 * BLOCK + 12_345,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        let input = data(size, i as u64 + 1);
        for level in 1..=9 {
            let threads: &[usize] = if matches!(level, 1 | 6 | 9) {
                &[1, 2, 3, 5]
            } else {
                &[1, 4]
            };
            let reference = zlib(&input, level, threads[0]);
            assert_eq!(inflate(&reference), input, "size {size} level {level}");
            for &t in &threads[1..] {
                assert!(
                    zlib(&input, level, t) == reference,
                    "size {size} level {level}: {t} threads differ from 1"
                );
            }
        }
    }
}

#[test]
fn all_zero_input_compresses_and_round_trips() {
    let input = vec![0u8; 2 * BLOCK + 7];
    let one = zlib(&input, 9, 1);
    assert_eq!(one, zlib(&input, 9, 3));
    assert!(one.len() < 10_000, "{}", one.len());
    assert_eq!(inflate(&one), input);
}

#[test]
fn flate2_reads_the_stream_too() {
    use std::io::Read;
    let input = data(2 * BLOCK + 99, 7);
    let z = zlib(&input, 6, 2);
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(&z[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, input);
}

fn make(dir: &Path, raw: &[u8], spec: &ImageSpec, name: &str) -> Vec<u8> {
    let input = dir.join(format!("{name}.raw"));
    let output = dir.join(format!("{name}.img"));
    fs::write(&input, raw).unwrap();
    make_image(&input, &output, spec, &|_| {}).unwrap();
    Image::open(&output).unwrap().verify(&|_| {}).unwrap();
    fs::read(output).unwrap()
}

#[test]
fn images_are_byte_identical_for_every_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let raw = data(2 * BLOCK + 5000, 11);
    let mut images = Vec::new();
    for threads in [1, 2, 7] {
        let spec = ImageSpec {
            compression: Some(9),
            threads,
            ..ImageSpec::default()
        };
        images.push(make(dir.path(), &raw, &spec, &format!("t{threads}")));
    }
    assert!(images.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(inflate(&images[0][HEADER_LEN..]), raw);
}

#[test]
fn holes_change_neither_bytes_nor_checksum() {
    let dir = tempfile::tempdir().unwrap();
    // 8 MiB + 100 bytes, mostly zeros: data at the start, a few bytes in
    // the middle (not block aligned), and a zero tail that is not a whole
    // block.
    let mut raw = vec![0u8; 8 * BLOCK + 100];
    raw[..5000].fill(0xaa);
    raw[5 * BLOCK + 3] = 1;
    raw[6 * BLOCK - 1] = 2;
    let img = make(dir.path(), &raw, &ImageSpec::default(), "sparse");
    assert_eq!(&img[HEADER_LEN..], &raw[..]);
    let h = Header::parse(&img).unwrap();
    use sha2::Digest;
    assert_eq!(h.sha256, <[u8; 32]>::from(sha2::Sha256::digest(&raw)));
    // The zeros took no disk: a few 4 KiB blocks, not 8 MiB.
    let meta = fs::metadata(dir.path().join("sparse.img")).unwrap();
    assert_eq!(meta.len(), (HEADER_LEN + raw.len()) as u64);
    assert!(
        meta.blocks() * 512 < 256 * 1024,
        "{} bytes allocated",
        meta.blocks() * 512
    );
    // An all-zero image is all hole, and still exact.
    let zeros = vec![0u8; 3 * BLOCK];
    let img = make(dir.path(), &zeros, &ImageSpec::default(), "zeros");
    assert_eq!(&img[HEADER_LEN..], &zeros[..]);
}

/// The compressed bytes are pinned: a different machine (other CPU
/// features), thread count or a dependency update must not change them, or
/// OS builds stop being reproducible across build hosts.
#[test]
fn compressed_bytes_are_pinned() {
    use sha2::Digest;
    let input = data(3 * BLOCK + 12_345, 99);
    let mut got = Vec::new();
    for level in [1, 6, 9] {
        let z = zlib(&input, level, 2);
        got.push(format!(
            "{level}:{}:{}",
            z.len(),
            bootimage::header::hex(&sha2::Sha256::digest(&z))
        ));
    }
    assert_eq!(got, PINNED);
}

const PINNED: [&str; 3] = [
    "1:782552:3cda5a71879ac3866b5be30ca4496e6b2acc90cdf8f024e6cf7da0f8b0143310",
    "6:475671:59a1949e5d9fec3931ce616209b50bdf8f6cf0335ca32c48a73535d7596c67ea",
    "9:473941:2939d34dc4dc015aee590d8cce2309a54b4df67fd0407793de21ee8e33e12e1a",
];
