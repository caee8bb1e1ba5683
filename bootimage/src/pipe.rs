//! Overlapping a producer (reading, inflating) with a consumer (hashing,
//! writing) on two threads, through a fixed set of recycled buffers, so that
//! memory stays bounded whatever the image size.

use std::cell::RefCell;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

/// A buffer of fixed size holding `len` valid bytes.
pub(crate) struct Chunk {
    pub buf: Vec<u8>,
    pub len: usize,
}

impl Chunk {
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The producer's end: take an empty buffer, fill it, send it.
pub(crate) trait Sink {
    /// An empty buffer, once the consumer has finished with one; `None`
    /// when the consumer has stopped, and the producer should too.
    fn take(&self) -> Option<Vec<u8>>;
    /// Hands `len` bytes of `buf` to the consumer; `false` when the consumer
    /// has stopped.
    fn send(&self, buf: Vec<u8>, len: usize) -> bool;
}

/// The producer's end of [`overlap`], across threads.
pub(crate) struct Feed {
    free: Receiver<Vec<u8>>,
    full: SyncSender<Chunk>,
}

impl Sink for Feed {
    fn take(&self) -> Option<Vec<u8>> {
        self.free.recv().ok()
    }

    fn send(&self, buf: Vec<u8>, len: usize) -> bool {
        self.full.send(Chunk { buf, len }).is_ok()
    }
}

/// A consumer of chunks.
type Consume<'a, E> = &'a mut dyn FnMut(&[u8]) -> Result<(), E>;

/// The producer's end of [`serial`]: the consumer runs inside `send`.
struct Direct<'a, E> {
    consume: RefCell<Consume<'a, E>>,
    failed: RefCell<Option<E>>,
    spare: RefCell<Option<Vec<u8>>>,
    size: usize,
}

impl<E> Sink for Direct<'_, E> {
    fn take(&self) -> Option<Vec<u8>> {
        if self.failed.borrow().is_some() {
            return None;
        }
        Some(
            self.spare
                .borrow_mut()
                .take()
                .unwrap_or_else(|| vec![0u8; self.size]),
        )
    }

    fn send(&self, buf: Vec<u8>, len: usize) -> bool {
        let r = (self.consume.borrow_mut())(&buf[..len]);
        *self.spare.borrow_mut() = Some(buf);
        match r {
            Ok(()) => true,
            Err(e) => {
                *self.failed.borrow_mut() = Some(e);
                false
            }
        }
    }
}

/// [`overlap`] on one thread, for producers that cannot move to another
/// (a reader borrowed from an archive).
pub(crate) fn serial<T, E>(
    size: usize,
    produce: impl FnOnce(&dyn Sink) -> Result<T, E>,
    mut consume: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<T, E> {
    let direct = Direct {
        consume: RefCell::new(&mut consume),
        failed: RefCell::new(None),
        spare: RefCell::new(None),
        size,
    };
    let produced = produce(&direct);
    match direct.failed.into_inner() {
        Some(e) => Err(e),
        None => produced,
    }
}

/// Runs `produce` on a new thread and `consume` on this one, with `depth`
/// buffers of `size` bytes between them. The first error wins: a consumer
/// error stops the producer (its `take` and `send` fail) and is returned; a
/// producer error ends the consumer's input and is returned.
pub(crate) fn overlap<T: Send, E: Send>(
    size: usize,
    depth: usize,
    produce: impl FnOnce(&dyn Sink) -> Result<T, E> + Send,
    mut consume: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<T, E> {
    let (free_tx, free_rx) = sync_channel(depth);
    for _ in 0..depth {
        free_tx
            .send(vec![0u8; size])
            .expect("the channel holds depth buffers");
    }
    let (full_tx, full_rx) = sync_channel(depth);
    thread::scope(|s| {
        let producer = s.spawn(move || {
            let feed = Feed {
                free: free_rx,
                full: full_tx,
            };
            produce(&feed)
        });
        let mut failed = None;
        for chunk in full_rx.iter() {
            if let Err(e) = consume(chunk.data()) {
                failed = Some(e);
                break;
            }
            // The producer may have finished; then nobody needs it back.
            let _ = free_tx.send(chunk.buf);
        }
        drop(full_rx);
        drop(free_tx);
        let produced = match producer.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match failed {
            Some(e) => Err(e),
            None => produced,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_every_byte_in_order() {
        let mut seen = Vec::new();
        let total = overlap(
            7,
            2,
            |feed| {
                let mut n = 0u8;
                for len in [7, 7, 3, 0, 5] {
                    let mut b = feed.take().unwrap();
                    for x in &mut b[..len] {
                        *x = n;
                        n += 1;
                    }
                    assert!(feed.send(b, len));
                }
                Ok::<_, ()>(n)
            },
            |d| {
                seen.extend_from_slice(d);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(total, 22);
        assert_eq!(seen, (0..22).collect::<Vec<u8>>());
    }

    #[test]
    fn a_consumer_error_stops_the_producer() {
        let r = overlap(
            4,
            2,
            |feed| {
                let mut sent = 0;
                while let Some(b) = feed.take() {
                    if !feed.send(b, 4) {
                        break;
                    }
                    sent += 1;
                }
                Ok(sent)
            },
            |_| Err("full disk"),
        );
        assert_eq!(r, Err("full disk"));
    }

    #[test]
    fn serial_passes_every_byte_and_stops_on_a_consumer_error() {
        let mut seen = Vec::new();
        let n = serial(
            3,
            |feed| {
                let mut sent = 0;
                for i in 0..4u8 {
                    let mut b = feed.take().unwrap();
                    b[..3].copy_from_slice(&[i; 3]);
                    assert!(feed.send(b, 3));
                    sent += 1;
                }
                Ok::<_, ()>(sent)
            },
            |d| {
                seen.extend_from_slice(d);
                Ok(())
            },
        );
        assert_eq!(n, Ok(4));
        assert_eq!(seen, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
        let r: Result<(), &str> = serial(
            3,
            |feed| {
                while let Some(b) = feed.take() {
                    if !feed.send(b, 1) {
                        break;
                    }
                }
                Ok(())
            },
            |_| Err("stop"),
        );
        assert_eq!(r, Err("stop"));
    }

    #[test]
    fn a_producer_error_is_returned() {
        let mut calls = 0;
        let r: Result<(), &str> = overlap(
            4,
            2,
            |feed| {
                let b = feed.take().unwrap();
                feed.send(b, 4);
                Err("bad read")
            },
            |_| {
                calls += 1;
                Ok(())
            },
        );
        assert_eq!(r, Err("bad read"));
        assert_eq!(calls, 1);
    }
}
