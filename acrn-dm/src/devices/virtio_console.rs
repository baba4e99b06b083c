//! virtio-console (device type 3) with one port and no multiport feature: queue 0 receives
//! (host to guest), queue 1 transmits (guest to host). Linux makes it `hvc0`.

use super::virtio::{Queue, VirtioDevice};
use crate::memory::GuestMemory;
use std::collections::VecDeque;
use std::io::Write;

const RX: usize = 0;
const TX: usize = 1;
/// Input kept while the guest has no receive buffers posted; beyond it new input is dropped.
pub const MAX_PENDING: usize = 64 * 1024;

/// The console device.
pub struct VirtioConsole {
    out: Box<dyn Write + Send>,
    pending: VecDeque<u8>,
}

impl VirtioConsole {
    /// A console writing the guest's output to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out,
            pending: VecDeque::new(),
        }
    }

    /// Moves pending input into posted receive buffers.
    fn deliver(&mut self, queues: &mut [Queue], mem: &GuestMemory) -> bool {
        let mut used = false;
        while !self.pending.is_empty() {
            let Some(chain) = queues[RX].pop(mem) else {
                break;
            };
            let mut n = 0u32;
            for d in chain.descs.iter().filter(|d| d.writable()) {
                let take = (d.len as usize).min(self.pending.len());
                let bytes: Vec<u8> = self.pending.drain(..take).collect();
                if mem.write(d.addr, &bytes).is_err() {
                    break;
                }
                n += take as u32;
                if self.pending.is_empty() {
                    break;
                }
            }
            queues[RX].push(mem, chain.head, n);
            used = true;
        }
        used
    }
}

impl VirtioDevice for VirtioConsole {
    fn device_type(&self) -> u16 {
        3
    }
    fn pci_device_id(&self) -> u16 {
        0x1003
    }
    fn class(&self) -> u32 {
        0x07_80_00
    }
    fn features(&self) -> u32 {
        0
    }
    fn num_queues(&self) -> usize {
        2
    }
    fn config(&self) -> Vec<u8> {
        // cols, rows, max_nr_ports: meaningful only with features this device does not offer.
        vec![0; 8]
    }
    fn notify(&mut self, queue: usize, queues: &mut [Queue], mem: &GuestMemory) -> bool {
        match queue {
            TX => {
                let mut used = false;
                for _ in 0..super::virtio::QUEUE_SIZE {
                    let Some(chain) = queues[TX].pop(mem) else {
                        break;
                    };
                    for d in chain.descs.iter().filter(|d| !d.writable()) {
                        if let Ok(buf) = mem.read_vec(d.addr, d.len.into()) {
                            // A console that cannot be written must not stop the guest.
                            let _ = self.out.write_all(&buf);
                        }
                    }
                    let _ = self.out.flush();
                    queues[TX].push(mem, chain.head, 0);
                    used = true;
                }
                used
            }
            RX => self.deliver(queues, mem),
            _ => false,
        }
    }
    fn input(&mut self, bytes: &[u8], queues: &mut [Queue], mem: &GuestMemory) -> bool {
        let room = MAX_PENDING.saturating_sub(self.pending.len());
        self.pending.extend(&bytes[..bytes.len().min(room)]);
        self.deliver(queues, mem)
    }
    fn reset(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::pci::PciFunction;
    use super::super::virtio::testing::Driver;
    use super::super::virtio::VirtioPci;
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_input_and_interrupts() {
        let mem = Arc::new(GuestMemory::heap(128 << 20));
        let sink = Sink::default();
        let mut dev = VirtioPci::new(
            VirtioConsole::new(Box::new(sink.clone())),
            mem.clone(),
            0x2040,
            17,
        );
        assert_eq!(dev.config().read(0, 4), 0x1003_1AF4);
        assert_eq!(dev.config().read(0x2E, 2), 3);
        let mut g = Driver::new(mem.clone(), 0x10_0000, 2);
        g.init(&mut dev);

        // Guest output: two buffers in one chain.
        mem.write(0x30_0000, b"hello ").unwrap();
        mem.write(0x30_1000, b"world\n").unwrap();
        g.post(TX, &[(0x30_0000, 6, false), (0x30_1000, 6, false)]);
        dev.bar_write(0, 0x10, 2, TX as u64);
        assert_eq!(&*sink.0.lock().unwrap(), b"hello world\n");
        assert_eq!(g.used_idx(TX), 1);
        assert_eq!(dev.take_intx(), Some(true));
        dev.bar_read(0, 0x13, 1);
        assert_eq!(dev.take_intx(), Some(false));

        // Input before the guest posts buffers waits, then fills them in order.
        dev.host_input(b"ls -l\n");
        assert_eq!(dev.take_intx(), None);
        g.post(RX, &[(0x40_0000, 4, true)]);
        g.post(RX, &[(0x40_1000, 64, true)]);
        dev.bar_write(0, 0x10, 2, RX as u64);
        assert_eq!(g.used_elem(RX, 0), (0, 4));
        assert_eq!(g.used_elem(RX, 1), (1, 2));
        let mut b = [0u8; 4];
        mem.read(0x40_0000, &mut b).unwrap();
        assert_eq!(&b, b"ls -");
        let mut b = [0u8; 2];
        mem.read(0x40_1000, &mut b).unwrap();
        assert_eq!(&b, b"l\n");
        assert_eq!(dev.take_intx(), Some(true));

        // With a buffer already posted, input is delivered at once.
        dev.bar_read(0, 0x13, 1);
        dev.take_intx();
        g.post(RX, &[(0x40_2000, 16, true)]);
        dev.host_input(b"x");
        assert_eq!(g.used_elem(RX, 2), (2, 1));
        assert_eq!(dev.take_intx(), Some(true));
    }

    #[test]
    fn pending_input_is_bounded() {
        let mut c = VirtioConsole::new(Box::new(std::io::sink()));
        let mem = GuestMemory::heap(128 << 20);
        let mut queues = vec![Queue::default(), Queue::default()];
        c.input(&vec![b'a'; MAX_PENDING + 100], &mut queues, &mem);
        assert_eq!(c.pending.len(), MAX_PENDING);
    }
}
