//! A parallel encoder for one standard zlib stream (RFC 1950), in the way
//! pigz does it.
//!
//! The input is cut into fixed [`BLOCK`]-byte blocks (the cut depends only on
//! the input, never on the thread count or the machine). Each block is
//! deflated on its own, primed with the 32 KiB before it as a dictionary so
//! that matches still reach back across the cut, and ends with a sync flush
//! (an empty stored block) so that the pieces concatenate on byte
//! boundaries. A final empty fixed-Huffman block and the Adler-32 of all the
//! input, combined from per-block sums, close the stream. Any inflater
//! decodes the result, and the bytes are the same for any thread count.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;
use std::thread;

use flate2::{Compress, Compression, FlushCompress};

/// Input bytes per independently deflated block.
pub const BLOCK: usize = 1 << 20;
/// Deflate's window: how far back a match can reach.
const WINDOW: usize = 32 * 1024;
/// The final block: BFINAL=1, fixed Huffman codes, end-of-block at once.
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];

/// The two-byte zlib header for `level` (32 KiB window, no dictionary,
/// FLEVEL as zlib sets it, FCHECK so that the pair is a multiple of 31).
pub fn header(level: u32) -> [u8; 2] {
    let cmf = 0x78u8;
    let flevel: u8 = match level {
        0 | 1 => 0,
        2..=5 => 1,
        6 => 2,
        _ => 3,
    };
    let flg = flevel << 6;
    let fcheck = 31 - ((cmf as u16 * 256 + flg as u16) % 31) as u8;
    [cmf, flg | (fcheck % 31)]
}

const ADLER_MOD: u64 = 65521;

/// The Adler-32 of `a ++ b`, given the sums of `a` and of `b` (which is
/// `len_b` bytes long). With A = 1 + sum of bytes and B = sum of the running
/// A values: A(ab) = A(a) + A(b) - 1 and B(ab) = B(a) + B(b) + len_b * (A(a) - 1).
pub fn adler32_combine(a: u32, b: u32, len_b: u64) -> u32 {
    let (a1, b1) = ((a & 0xffff) as u64, (a >> 16) as u64);
    let (a2, b2) = ((b & 0xffff) as u64, (b >> 16) as u64);
    let sum1 = (a1 + a2 + ADLER_MOD - 1) % ADLER_MOD;
    let sum2 = (b1 + b2 + (len_b % ADLER_MOD) * ((a1 + ADLER_MOD - 1) % ADLER_MOD)) % ADLER_MOD;
    (sum1 | (sum2 << 16)) as u32
}

struct Job {
    index: u64,
    data: Vec<u8>,
    len: usize,
    dict: Vec<u8>,
}

struct Done {
    index: u64,
    out: Vec<u8>,
    adler: u32,
    len: usize,
}

/// Deflates one block: raw deflate primed with `dict`, sync-flushed. A new
/// compressor each time: a reset one can carry state from the block before
/// (zlib-rs at level 1 does), and the bytes must depend only on the block
/// and its dictionary, never on which worker ran it.
fn deflate_block(level: u32, dict: &[u8], data: &[u8]) -> io::Result<Vec<u8>> {
    let c = &mut Compress::new(Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 16 + 1024);
    let mut pos = 0;
    loop {
        let before = c.total_in();
        c.compress_vec(&data[pos..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        pos += (c.total_in() - before) as usize;
        // The flush is complete once deflate stops short of the buffer's end.
        if pos == data.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(out.capacity().max(4096));
    }
}

/// Why [`compress`] failed: the input callback's error, or writing.
#[derive(Debug)]
pub enum Failed<E> {
    Input(E),
    Output(io::Error),
}

/// Compresses the blocks `next_block` fills into `out` on `threads` worker
/// threads. `next_block` fills the whole buffer it is given except at the
/// end of input, and returns how many bytes it filled (0 at the end); it
/// runs on the calling thread, so it may hash and report progress. Returns
/// `out` and the number of bytes written. Memory: about `4 * threads`
/// blocks, whatever the input size.
pub fn compress<W: Write + Send, E: Send>(
    level: u32,
    threads: usize,
    mut next_block: impl FnMut(&mut [u8]) -> Result<usize, E>,
    out: W,
) -> Result<(W, u64), Failed<E>> {
    let threads = threads.max(1);
    let depth = 2 * threads + 2;
    let (pool_tx, pool_rx) = sync_channel::<Vec<u8>>(depth);
    for _ in 0..depth {
        pool_tx
            .send(vec![0u8; BLOCK])
            .expect("the pool holds depth buffers");
    }
    let (job_tx, job_rx) = sync_channel::<Job>(depth);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = sync_channel::<io::Result<Done>>(depth);

    thread::scope(|s| {
        let writer = s.spawn(move || write_in_order(level, done_rx, out));
        for _ in 0..threads {
            let (job_rx, done_tx, pool_tx) = (&job_rx, done_tx.clone(), pool_tx.clone());
            s.spawn(move || loop {
                let job = match job_rx.lock() {
                    Ok(rx) => match rx.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    },
                    Err(_) => return,
                };
                let data = &job.data[..job.len];
                let result = deflate_block(level, &job.dict, data).map(|out| {
                    let mut a = simd_adler32::Adler32::new();
                    a.write(data);
                    Done {
                        index: job.index,
                        out,
                        adler: a.finish(),
                        len: job.len,
                    }
                });
                let failed = result.is_err();
                if done_tx.send(result).is_err() || failed {
                    return;
                }
                let _ = pool_tx.send(job.data);
            });
        }
        drop((done_tx, pool_tx));

        // Read on this thread; hand blocks to the workers.
        let mut read_result = Ok(());
        let mut tail: Vec<u8> = Vec::new();
        for index in 0.. {
            // No buffer comes back once every worker has stopped.
            let Ok(mut buf) = pool_rx.recv() else { break };
            let len = match next_block(&mut buf) {
                Ok(0) => break,
                Ok(len) => len,
                Err(e) => {
                    read_result = Err(e);
                    break;
                }
            };
            let dict = std::mem::replace(&mut tail, buf[len.saturating_sub(WINDOW)..len].to_vec());
            let job = Job {
                index,
                data: buf,
                len,
                dict,
            };
            if job_tx.send(job).is_err() {
                break;
            }
        }
        drop(job_tx);
        let written = match writer.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        read_result.map_err(Failed::Input)?;
        written.map_err(Failed::Output)
    })
}

/// Writes the header, the blocks in index order, the final block and the
/// combined Adler-32.
fn write_in_order<W: Write>(
    level: u32,
    done: Receiver<io::Result<Done>>,
    mut out: W,
) -> io::Result<(W, u64)> {
    out.write_all(&header(level))?;
    let mut written = 2u64;
    let mut adler = 1u32;
    let mut next = 0u64;
    let mut waiting = BTreeMap::new();
    for d in done.iter() {
        let d = d?;
        waiting.insert(d.index, d);
        while let Some(d) = waiting.remove(&next) {
            out.write_all(&d.out)?;
            written += d.out.len() as u64;
            adler = adler32_combine(adler, d.adler, d.len as u64);
            next += 1;
        }
    }
    if !waiting.is_empty() {
        return Err(io::Error::other("a compression worker stopped early"));
    }
    out.write_all(&FINAL_EMPTY_BLOCK)?;
    out.write_all(&adler.to_be_bytes())?;
    written += (FINAL_EMPTY_BLOCK.len() + 4) as u64;
    Ok((out, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_valid_and_match_zlib() {
        assert_eq!(header(1), [0x78, 0x01]);
        assert_eq!(header(6), [0x78, 0x9c]);
        assert_eq!(header(9), [0x78, 0xda]);
        for l in 1..=9 {
            let h = header(l);
            assert_eq!((h[0] as u16 * 256 + h[1] as u16) % 31, 0);
        }
    }

    #[test]
    fn adler_combine_matches_a_direct_sum() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let sum = |d: &[u8]| {
            let mut a = simd_adler32::Adler32::new();
            a.write(d);
            a.finish()
        };
        for cut in [0, 1, 5551, 65521, 99_999, 100_000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                adler32_combine(sum(a), sum(b), b.len() as u64),
                sum(&data),
                "{cut}"
            );
        }
    }
}
