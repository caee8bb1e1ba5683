//! An in-memory segment: links in one process exchange frames through a
//! hub, with optional seeded loss and duplication. The real run loops work
//! over it unchanged, without sockets or privileges.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Link, RecvBatch};
use crate::sim::Rng;
use crate::wire::{EthFrame, Mac};
use crate::Outbox;

struct Port {
    mac: Mac,
    promiscuous: bool,
    queue: Mutex<VecDeque<Vec<u8>>>,
    ready: Condvar,
}

/// Loss and duplication on the hub, per frame.
#[derive(Clone, Debug, Default)]
pub struct HubFaults {
    pub loss: f64,
    pub duplicate: f64,
}

/// The segment.
pub struct Hub {
    ports: Mutex<Vec<Arc<Port>>>,
    faults: HubFaults,
    rng: Mutex<Rng>,
}

impl Hub {
    pub fn new(faults: HubFaults, seed: u64) -> Arc<Hub> {
        Arc::new(Hub {
            ports: Mutex::new(Vec::new()),
            faults,
            rng: Mutex::new(Rng::new(seed)),
        })
    }

    /// A new link on the segment with address `mac`.
    pub fn attach(self: &Arc<Hub>, mac: Mac, promiscuous: bool) -> MemLink {
        let port = Arc::new(Port {
            mac,
            promiscuous,
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        });
        self.ports.lock().expect("hub lock").push(port.clone());
        MemLink {
            hub: self.clone(),
            port,
            name: format!("mem:{mac}"),
        }
    }

    fn deliver(&self, from: &Port, frame: &[u8]) {
        let Ok(eth) = EthFrame::parse(frame) else {
            return;
        };
        let copies = {
            let mut rng = self.rng.lock().expect("rng lock");
            if rng.chance(self.faults.loss) {
                0
            } else if rng.chance(self.faults.duplicate) {
                2
            } else {
                1
            }
        };
        let ports = self.ports.lock().expect("hub lock");
        for p in ports.iter() {
            if std::ptr::eq(&**p, from) {
                continue;
            }
            if p.promiscuous || eth.dst.is_broadcast() || eth.dst == p.mac {
                let mut q = p.queue.lock().expect("queue lock");
                for _ in 0..copies {
                    q.push_back(frame.to_vec());
                }
                p.ready.notify_one();
            }
        }
    }
}

/// One end on a [`Hub`].
pub struct MemLink {
    hub: Arc<Hub>,
    port: Arc<Port>,
    name: String,
}

impl Link for MemLink {
    fn mac(&self) -> Mac {
        self.port.mac
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize> {
        batch.clear();
        let deadline = Instant::now() + timeout;
        let mut q = self.port.queue.lock().expect("queue lock");
        while q.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(0);
            }
            q = self.port.ready.wait_timeout(q, left).expect("queue lock").0;
        }
        while let Some(buf) = batch.next_buf() {
            let Some(frame) = q.pop_front() else { break };
            let n = frame.len().min(buf.len());
            buf[..n].copy_from_slice(&frame[..n]);
            batch.commit(n);
        }
        Ok(batch.len())
    }

    fn sends_with(&self) -> &'static str {
        "memory"
    }

    fn send(&mut self, out: &Outbox) -> io::Result<()> {
        for f in out.frames() {
            self.hub.deliver(&self.port, f);
        }
        Ok(())
    }
}
