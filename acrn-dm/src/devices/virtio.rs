//! The legacy virtio-pci transport (virtio 0.9.5, "transitional" device IDs 0x1000 + n) and
//! split virtqueues at a guest page frame, shared by the virtio devices.
//!
//! Register block in I/O BAR 0 (no MSI-X): host features @0, guest features @4, queue PFN @8,
//! queue size @0xC, queue select @0xE, queue notify @0x10, status @0x12, ISR @0x13 (read clears),
//! device configuration from @0x14. Interrupts are INTx (level, lowered by reading the ISR).

use super::pci::{Bar, BarKind, ConfigSpace, PciFunction, PciId, CMD_INTX_DISABLE};
use crate::memory::GuestMemory;
use std::sync::Arc;

/// Size of the legacy register BAR.
pub const BAR_SIZE: u32 = 64;
/// Descriptors per queue.
pub const QUEUE_SIZE: u16 = 256;
const DEVICE_CONFIG: u64 = 0x14;

/// Descriptor flag: another descriptor follows.
pub const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer.
pub const DESC_F_WRITE: u16 = 2;

/// One descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Guest-physical address.
    pub addr: u64,
    /// Length.
    pub len: u32,
    /// `DESC_F_*`.
    pub flags: u16,
    /// Next index when `DESC_F_NEXT`.
    pub next: u16,
}

impl Desc {
    /// Whether the device may write it.
    pub fn writable(&self) -> bool {
        self.flags & DESC_F_WRITE != 0
    }
}

/// A descriptor chain taken from the available ring; empty when the guest's chain was unusable
/// (out of guest memory, a loop, an index out of range), which is still returned to the guest.
#[derive(Clone, Debug)]
pub struct Chain {
    /// Head index (the used-ring id).
    pub head: u16,
    /// The descriptors.
    pub descs: Vec<Desc>,
}

/// A split virtqueue in legacy layout.
#[derive(Clone, Debug, Default)]
pub struct Queue {
    pfn: u32,
    last_avail: u16,
    used_idx: u16,
}

impl Queue {
    /// Whether the driver set the queue up.
    pub fn ready(&self) -> bool {
        self.pfn != 0
    }

    fn addrs(&self) -> (u64, u64, u64) {
        let n = u64::from(QUEUE_SIZE);
        let desc = u64::from(self.pfn) << 12;
        let avail = desc + 16 * n;
        let used = (avail + 6 + 2 * n).next_multiple_of(4096);
        (desc, avail, used)
    }

    /// Whether the guest made a chain available.
    pub fn has_avail(&self, mem: &GuestMemory) -> bool {
        let (_, avail, _) = self.addrs();
        self.ready()
            && mem
                .read_u16(avail + 2)
                .is_ok_and(|idx| idx != self.last_avail)
    }

    /// Takes the next available chain.
    pub fn pop(&mut self, mem: &GuestMemory) -> Option<Chain> {
        if !self.has_avail(mem) {
            return None;
        }
        let (table, avail, _) = self.addrs();
        let slot = u64::from(self.last_avail % QUEUE_SIZE);
        let head = mem.read_u16(avail + 4 + 2 * slot).ok()?;
        self.last_avail = self.last_avail.wrapping_add(1);
        let mut descs = Vec::new();
        let mut i = head;
        loop {
            let Some(d) = read_desc(mem, table, i) else {
                descs.clear();
                break;
            };
            descs.push(d);
            if d.flags & DESC_F_NEXT == 0 {
                break;
            }
            if descs.len() >= usize::from(QUEUE_SIZE) {
                descs.clear(); // a loop
                break;
            }
            i = d.next;
        }
        Some(Chain { head, descs })
    }

    /// Returns chain `head` to the guest with `len` bytes written.
    pub fn push(&mut self, mem: &GuestMemory, head: u16, len: u32) {
        let (_, _, used) = self.addrs();
        let elem = used + 4 + 8 * u64::from(self.used_idx % QUEUE_SIZE);
        let mut e = [0u8; 8];
        e[0..4].copy_from_slice(&u32::from(head).to_le_bytes());
        e[4..8].copy_from_slice(&len.to_le_bytes());
        if mem.write(elem, &e).is_err() {
            return;
        }
        self.used_idx = self.used_idx.wrapping_add(1);
        // The element must be visible before the index that publishes it.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        let _ = mem.write(used + 2, &self.used_idx.to_le_bytes());
    }
}

fn read_desc(mem: &GuestMemory, table: u64, i: u16) -> Option<Desc> {
    if i >= QUEUE_SIZE {
        return None;
    }
    let mut b = [0u8; 16];
    mem.read(table + 16 * u64::from(i), &mut b).ok()?;
    Some(Desc {
        addr: u64::from_le_bytes(b[0..8].try_into().ok()?),
        len: u32::from_le_bytes(b[8..12].try_into().ok()?),
        flags: u16::from_le_bytes([b[12], b[13]]),
        next: u16::from_le_bytes([b[14], b[15]]),
    })
}

/// What a virtio device provides to the transport.
pub trait VirtioDevice: Send {
    /// Virtio device type (2 block, 3 console, ...): the PCI subsystem ID.
    fn device_type(&self) -> u16;
    /// The transitional PCI device ID (0x1001 block, 0x1003 console, ...).
    fn pci_device_id(&self) -> u16;
    /// PCI class code.
    fn class(&self) -> u32;
    /// Feature bits offered.
    fn features(&self) -> u32;
    /// Number of queues.
    fn num_queues(&self) -> usize;
    /// The device-specific configuration bytes.
    fn config(&self) -> Vec<u8>;
    /// The driver notified `queue`; returns whether used buffers were returned.
    fn notify(&mut self, queue: usize, queues: &mut [Queue], mem: &GuestMemory) -> bool;
    /// Input from the device's host backend (consoles); returns whether used buffers were
    /// returned.
    fn input(&mut self, _bytes: &[u8], _queues: &mut [Queue], _mem: &GuestMemory) -> bool {
        false
    }
    /// Device reset by the driver.
    fn reset(&mut self) {}
}

/// A virtio device on legacy virtio-pci.
pub struct VirtioPci<D: VirtioDevice> {
    cfg: ConfigSpace,
    mem: Arc<GuestMemory>,
    /// The device.
    pub dev: D,
    queues: Vec<Queue>,
    guest_features: u32,
    queue_sel: u16,
    status: u8,
    isr: u8,
    intx: bool,
    intx_change: Option<bool>,
}

impl<D: VirtioDevice> VirtioPci<D> {
    /// `dev` with its registers at `io_base` and INTx line `irq_line`.
    pub fn new(dev: D, mem: Arc<GuestMemory>, io_base: u16, irq_line: u8) -> Self {
        let mut cfg = ConfigSpace::new(PciId {
            vendor: 0x1AF4,
            device: dev.pci_device_id(),
            class: dev.class(),
            revision: 0,
            subsys_vendor: 0x1AF4,
            subsys: dev.device_type(),
        });
        cfg.set_bar(
            0,
            Bar {
                kind: BarKind::Io,
                size: BAR_SIZE,
            },
            u32::from(io_base),
        );
        cfg.set_intx(1, irq_line);
        let queues = vec![Queue::default(); dev.num_queues()];
        Self {
            cfg,
            mem,
            dev,
            queues,
            guest_features: 0,
            queue_sel: 0,
            status: 0,
            isr: 0,
            intx: false,
            intx_change: None,
        }
    }

    fn set_intx(&mut self, level: bool) {
        let level = level && self.cfg.command() & CMD_INTX_DISABLE == 0;
        if level != self.intx {
            self.intx = level;
            self.intx_change = Some(level);
        }
    }

    fn interrupt(&mut self, used: bool) {
        if used {
            self.isr |= 1;
            self.set_intx(true);
        }
    }

    fn reset(&mut self) {
        self.guest_features = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.isr = 0;
        self.queues.iter_mut().for_each(|q| *q = Queue::default());
        self.dev.reset();
        self.set_intx(false);
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(usize::from(self.queue_sel))
    }

    fn reg_read(&mut self, off: u64, size: u8) -> u64 {
        match (off, size) {
            (0x00, 4) => u64::from(self.dev.features()),
            (0x04, 4) => u64::from(self.guest_features),
            (0x08, 4) => self.selected().map_or(0, |q| u64::from(q.pfn)),
            (0x0C, 2) => self.selected().map_or(0, |_| u64::from(QUEUE_SIZE)),
            (0x0E, 2) => u64::from(self.queue_sel),
            (0x12, 1) => u64::from(self.status),
            (0x13, 1) => {
                let isr = self.isr;
                self.isr = 0;
                self.set_intx(false);
                u64::from(isr)
            }
            (o, s) if o >= DEVICE_CONFIG => {
                let c = self.dev.config();
                let start = (o - DEVICE_CONFIG) as usize;
                let end = start + usize::from(s);
                if end > c.len() || !matches!(s, 1 | 2 | 4) {
                    return u64::MAX;
                }
                let mut v = [0u8; 8];
                v[..usize::from(s)].copy_from_slice(&c[start..end]);
                u64::from_le_bytes(v)
            }
            _ => u64::MAX,
        }
    }

    fn reg_write(&mut self, off: u64, size: u8, value: u64) {
        match (off, size) {
            (0x04, 4) => self.guest_features = value as u32 & self.dev.features(),
            (0x08, 4) => {
                if let Some(q) = self.selected() {
                    *q = Queue {
                        pfn: value as u32,
                        ..Queue::default()
                    };
                }
            }
            (0x0E, 2) => self.queue_sel = value as u16,
            (0x10, 2) => {
                let q = value as usize;
                if q < self.queues.len() && self.queues[q].ready() {
                    let used = self.dev.notify(q, &mut self.queues, &self.mem);
                    self.interrupt(used);
                }
            }
            (0x12, 1) => {
                if value == 0 {
                    self.reset();
                } else {
                    self.status = value as u8;
                }
            }
            _ => {}
        }
    }
}

impl<D: VirtioDevice> PciFunction for VirtioPci<D> {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.cfg
    }
    fn bar_read(&mut self, bar: usize, offset: u64, size: u8) -> u64 {
        if bar == 0 {
            self.reg_read(offset, size)
        } else {
            u64::MAX
        }
    }
    fn bar_write(&mut self, bar: usize, offset: u64, size: u8, value: u64) {
        if bar == 0 {
            self.reg_write(offset, size, value);
        }
    }
    fn take_intx(&mut self) -> Option<bool> {
        // INTx disable may have been set since the line went up.
        if self.intx && self.cfg.command() & CMD_INTX_DISABLE != 0 {
            self.intx = false;
            self.intx_change = Some(false);
        }
        self.intx_change.take()
    }
    fn poll(&mut self) {
        let mut used = false;
        for q in 0..self.queues.len() {
            if self.queues[q].ready() {
                used |= self.dev.notify(q, &mut self.queues, &self.mem);
            }
        }
        self.interrupt(used);
    }
    fn host_input(&mut self, bytes: &[u8]) {
        let used = self.dev.input(bytes, &mut self.queues, &self.mem);
        self.interrupt(used);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A guest-side driver for tests: builds descriptor chains in guest memory.

    use super::*;

    /// Queue `q` of a device lives at `base + q * 64 KiB`.
    pub struct Driver {
        pub mem: Arc<GuestMemory>,
        pub base: u64,
        next_desc: Vec<u16>,
        avail_idx: Vec<u16>,
    }

    impl Driver {
        pub fn new(mem: Arc<GuestMemory>, base: u64, queues: usize) -> Self {
            Self {
                mem,
                base,
                next_desc: vec![0; queues],
                avail_idx: vec![0; queues],
            }
        }

        pub fn queue_gpa(&self, q: usize) -> u64 {
            self.base + (q as u64) * 0x1_0000
        }

        /// Resets and sets up every queue of `dev` the way Linux's legacy driver does.
        pub fn init<F: PciFunction + ?Sized>(&self, dev: &mut F) {
            dev.bar_write(0, 0x12, 1, 0);
            dev.bar_write(0, 0x12, 1, 1 | 2);
            let f = dev.bar_read(0, 0x00, 4);
            dev.bar_write(0, 0x04, 4, f);
            for q in 0..self.next_desc.len() {
                dev.bar_write(0, 0x0E, 2, q as u64);
                assert_eq!(dev.bar_read(0, 0x0C, 2), u64::from(QUEUE_SIZE));
                dev.bar_write(0, 0x08, 4, self.queue_gpa(q) >> 12);
            }
            dev.bar_write(0, 0x12, 1, 1 | 2 | 4);
        }

        fn put_desc(&mut self, q: usize, d: Desc) -> u16 {
            let i = self.next_desc[q];
            self.next_desc[q] += 1;
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&d.addr.to_le_bytes());
            b[8..12].copy_from_slice(&d.len.to_le_bytes());
            b[12..14].copy_from_slice(&d.flags.to_le_bytes());
            b[14..16].copy_from_slice(&d.next.to_le_bytes());
            self.mem
                .write(self.queue_gpa(q) + 16 * u64::from(i), &b)
                .unwrap();
            i
        }

        /// Posts a chain of `(addr, len, device_writes)` buffers; returns its head.
        pub fn post(&mut self, q: usize, bufs: &[(u64, u32, bool)]) -> u16 {
            let first = self.next_desc[q];
            for (k, (addr, len, w)) in bufs.iter().enumerate() {
                let last = k + 1 == bufs.len();
                let flags = if last { 0 } else { DESC_F_NEXT } | if *w { DESC_F_WRITE } else { 0 };
                let next = self.next_desc[q] + 1;
                self.put_desc(
                    q,
                    Desc {
                        addr: *addr,
                        len: *len,
                        flags,
                        next,
                    },
                );
            }
            self.publish(q, first);
            first
        }

        /// Makes descriptor `head` available.
        pub fn publish(&mut self, q: usize, head: u16) {
            let avail = self.queue_gpa(q) + 16 * u64::from(QUEUE_SIZE);
            let slot = avail + 4 + 2 * u64::from(self.avail_idx[q] % QUEUE_SIZE);
            self.mem.write(slot, &head.to_le_bytes()).unwrap();
            self.avail_idx[q] += 1;
            self.mem
                .write(avail + 2, &self.avail_idx[q].to_le_bytes())
                .unwrap();
        }

        /// Writes a raw descriptor (for malformed chains).
        pub fn raw_desc(&mut self, q: usize, d: Desc) -> u16 {
            self.put_desc(q, d)
        }

        fn used(&self, q: usize) -> u64 {
            let avail = self.queue_gpa(q) + 16 * u64::from(QUEUE_SIZE);
            (avail + 6 + 2 * u64::from(QUEUE_SIZE)).next_multiple_of(4096)
        }

        pub fn used_idx(&self, q: usize) -> u16 {
            self.mem.read_u16(self.used(q) + 2).unwrap()
        }

        /// Used element `i`: (head, len).
        pub fn used_elem(&self, q: usize, i: u16) -> (u32, u32) {
            let e = self.used(q) + 4 + 8 * u64::from(i);
            (
                self.mem.read_u32(e).unwrap(),
                self.mem.read_u32(e + 4).unwrap(),
            )
        }
    }
}
