//! virtio-blk over legacy virtio-pci (virtio 0.9.5 / "transitional" device 1AF4:1001): one
//! I/O BAR with the legacy register block, one split virtqueue at a guest page frame, INTx
//! interrupts. The backend is a raw image file. Requests are served synchronously when the guest
//! writes the queue-notify register.

use super::pci::{Bar, BarKind, ConfigSpace, PciFunction, PciId, CMD_INTX_DISABLE};
use crate::memory::GuestMemory;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Size of the legacy register BAR.
pub const BAR_SIZE: u32 = 64;
/// Descriptors in the queue.
pub const QUEUE_SIZE: u16 = 256;
const SECTOR: u64 = 512;

const F_SEG_MAX: u32 = 1 << 2;
const F_RO: u32 = 1 << 5;
const F_BLK_SIZE: u32 = 1 << 6;
const F_FLUSH: u32 = 1 << 9;

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

/// The serial number GET_ID returns.
pub const DEVICE_ID: &[u8] = b"ACRN-DM-VIRTIO-BLK";

#[derive(Clone, Copy, Debug)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// A virtio-blk function.
pub struct VirtioBlk {
    cfg: ConfigSpace,
    mem: Arc<GuestMemory>,
    disk: File,
    read_only: bool,
    capacity_sectors: u64,
    guest_features: u32,
    queue_pfn: u32,
    queue_sel: u16,
    status: u8,
    isr: u8,
    last_avail: u16,
    used_idx: u16,
    intx: bool,
    intx_change: Option<bool>,
}

impl VirtioBlk {
    /// A device on `disk` whose register BAR is at `io_base`, INTx line `irq_line`.
    pub fn new(
        mem: Arc<GuestMemory>,
        disk: File,
        read_only: bool,
        io_base: u16,
        irq_line: u8,
    ) -> std::io::Result<Self> {
        let len = disk.metadata()?.len();
        let mut cfg = ConfigSpace::new(PciId {
            vendor: 0x1AF4,
            device: 0x1001,
            class: 0x01_80_00,
            revision: 0,
            subsys_vendor: 0x1AF4,
            subsys: 2,
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
        Ok(Self {
            cfg,
            mem,
            disk,
            read_only,
            capacity_sectors: len / SECTOR,
            guest_features: 0,
            queue_pfn: 0,
            queue_sel: 0,
            status: 0,
            isr: 0,
            last_avail: 0,
            used_idx: 0,
            intx: false,
            intx_change: None,
        })
    }

    fn host_features(&self) -> u32 {
        F_SEG_MAX | F_BLK_SIZE | F_FLUSH | if self.read_only { F_RO } else { 0 }
    }

    fn device_config(&self) -> [u8; 24] {
        let mut c = [0u8; 24];
        c[0..8].copy_from_slice(&self.capacity_sectors.to_le_bytes());
        c[12..16].copy_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes()); // seg_max
        c[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes()); // blk_size
        c
    }

    fn reset(&mut self) {
        self.guest_features = 0;
        self.queue_pfn = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.isr = 0;
        self.last_avail = 0;
        self.used_idx = 0;
        self.set_intx(false);
    }

    fn set_intx(&mut self, level: bool) {
        let level = level && self.cfg.command() & CMD_INTX_DISABLE == 0;
        if level != self.intx {
            self.intx = level;
            self.intx_change = Some(level);
        }
    }

    fn queue_addrs(&self) -> (u64, u64, u64) {
        let n = u64::from(QUEUE_SIZE);
        let desc = u64::from(self.queue_pfn) << 12;
        let avail = desc + 16 * n;
        let used = (avail + 6 + 2 * n).next_multiple_of(4096);
        (desc, avail, used)
    }

    /// Serves every available request; returns how many were completed.
    pub fn process_queue(&mut self) -> usize {
        if self.queue_pfn == 0 {
            return 0;
        }
        let (desc, avail, used) = self.queue_addrs();
        let Ok(avail_idx) = self.mem.read_u16(avail + 2) else {
            return 0;
        };
        let mut done = 0;
        // At most one queue's worth per notify, so a guest cannot keep us here forever.
        while self.last_avail != avail_idx && done < usize::from(QUEUE_SIZE) {
            let slot = u64::from(self.last_avail % QUEUE_SIZE);
            let Ok(head) = self.mem.read_u16(avail + 4 + 2 * slot) else {
                break;
            };
            let written = self.serve_chain(desc, head);
            let elem = used + 4 + 8 * u64::from(self.used_idx % QUEUE_SIZE);
            let mut e = [0u8; 8];
            e[0..4].copy_from_slice(&u32::from(head).to_le_bytes());
            e[4..8].copy_from_slice(&written.to_le_bytes());
            if self.mem.write(elem, &e).is_err() {
                break;
            }
            self.used_idx = self.used_idx.wrapping_add(1);
            // The element must be visible before the index that publishes it.
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            if self
                .mem
                .write(used + 2, &self.used_idx.to_le_bytes())
                .is_err()
            {
                break;
            }
            self.last_avail = self.last_avail.wrapping_add(1);
            done += 1;
        }
        if done > 0 {
            self.isr |= 1;
            self.set_intx(true);
        }
        done
    }

    fn read_desc(&self, table: u64, i: u16) -> Option<Desc> {
        if i >= QUEUE_SIZE {
            return None;
        }
        let mut b = [0u8; 16];
        self.mem.read(table + 16 * u64::from(i), &mut b).ok()?;
        Some(Desc {
            addr: u64::from_le_bytes(b[0..8].try_into().ok()?),
            len: u32::from_le_bytes(b[8..12].try_into().ok()?),
            flags: u16::from_le_bytes([b[12], b[13]]),
            next: u16::from_le_bytes([b[14], b[15]]),
        })
    }

    /// Serves one request; returns the bytes written into guest buffers.
    fn serve_chain(&mut self, table: u64, head: u16) -> u32 {
        let mut chain = Vec::new();
        let mut i = head;
        loop {
            let Some(d) = self.read_desc(table, i) else {
                return 0;
            };
            chain.push(d);
            if d.flags & DESC_F_NEXT == 0 {
                break;
            }
            if chain.len() >= usize::from(QUEUE_SIZE) {
                return 0; // a loop
            }
            i = d.next;
        }
        let (Some(hdr), Some(status)) = (chain.first().copied(), chain.last().copied()) else {
            return 0;
        };
        if chain.len() < 2 || hdr.len < 16 || status.flags & DESC_F_WRITE == 0 || status.len < 1 {
            return 0;
        }
        let mut h = [0u8; 16];
        if self.mem.read(hdr.addr, &mut h).is_err() {
            return 0;
        }
        let kind = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
        let sector = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let data = &chain[1..chain.len() - 1];
        let (st, written) = self.execute(kind, sector, data);
        if self.mem.write(status.addr, &[st]).is_err() {
            return written;
        }
        written + 1
    }

    fn execute(&mut self, kind: u32, sector: u64, data: &[Desc]) -> (u8, u32) {
        let total: u64 = data.iter().map(|d| u64::from(d.len)).sum();
        let in_range = |len: u64| {
            sector
                .checked_mul(SECTOR)
                .and_then(|off| off.checked_add(len))
                .is_some_and(|end| end <= self.capacity_sectors * SECTOR)
        };
        match kind {
            T_IN => {
                if !in_range(total) || data.iter().any(|d| d.flags & DESC_F_WRITE == 0) {
                    return (S_IOERR, 0);
                }
                let mut off = sector * SECTOR;
                let mut written = 0u32;
                for d in data {
                    let mut buf = vec![0u8; d.len as usize];
                    if self.disk.read_exact_at(&mut buf, off).is_err()
                        || self.mem.write(d.addr, &buf).is_err()
                    {
                        return (S_IOERR, written);
                    }
                    off += u64::from(d.len);
                    written += d.len;
                }
                (S_OK, written)
            }
            T_OUT => {
                if self.read_only || !in_range(total) {
                    return (S_IOERR, 0);
                }
                let mut off = sector * SECTOR;
                for d in data {
                    let mut buf = vec![0u8; d.len as usize];
                    if self.mem.read(d.addr, &mut buf).is_err()
                        || self.disk.write_all_at(&buf, off).is_err()
                    {
                        return (S_IOERR, 0);
                    }
                    off += u64::from(d.len);
                }
                (S_OK, 0)
            }
            T_FLUSH => match self.disk.sync_data() {
                Ok(()) => (S_OK, 0),
                Err(_) => (S_IOERR, 0),
            },
            T_GET_ID => {
                let Some(d) = data.first().filter(|d| d.flags & DESC_F_WRITE != 0) else {
                    return (S_IOERR, 0);
                };
                let mut id = [0u8; 20];
                id[..DEVICE_ID.len()].copy_from_slice(DEVICE_ID);
                let n = (d.len as usize).min(20);
                match self.mem.write(d.addr, &id[..n]) {
                    Ok(()) => (S_OK, n as u32),
                    Err(_) => (S_IOERR, 0),
                }
            }
            _ => (S_UNSUPP, 0),
        }
    }

    fn reg_read(&mut self, off: u64, size: u8) -> u64 {
        match (off, size) {
            (0x00, 4) => u64::from(self.host_features()),
            (0x04, 4) => u64::from(self.guest_features),
            (0x08, 4) => u64::from(self.queue_pfn),
            (0x0C, 2) => u64::from(if self.queue_sel == 0 { QUEUE_SIZE } else { 0 }),
            (0x0E, 2) => u64::from(self.queue_sel),
            (0x12, 1) => u64::from(self.status),
            (0x13, 1) => {
                let isr = self.isr;
                self.isr = 0;
                self.set_intx(false);
                u64::from(isr)
            }
            (o, s) if o >= 0x14 && o + u64::from(s) <= 0x14 + 24 => {
                let c = self.device_config();
                let start = (o - 0x14) as usize;
                let mut v = [0u8; 8];
                v[..s as usize].copy_from_slice(&c[start..start + s as usize]);
                u64::from_le_bytes(v)
            }
            _ => u64::MAX,
        }
    }

    fn reg_write(&mut self, off: u64, size: u8, value: u64) {
        match (off, size) {
            (0x04, 4) => self.guest_features = value as u32 & self.host_features(),
            (0x08, 4) if self.queue_sel == 0 => {
                self.queue_pfn = value as u32;
                self.last_avail = 0;
                self.used_idx = 0;
            }
            (0x0E, 2) => self.queue_sel = value as u16,
            (0x10, 2) if value == 0 => {
                self.process_queue();
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

impl PciFunction for VirtioBlk {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};

    const Q: u64 = 0x10_0000; // queue at 1 MiB
    const BUF: u64 = 0x20_0000;

    struct Guest {
        mem: Arc<GuestMemory>,
        next_desc: u16,
        avail_idx: u16,
    }

    impl Guest {
        fn desc(&mut self, addr: u64, len: u32, flags: u16) -> u16 {
            let i = self.next_desc;
            self.next_desc += 1;
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&addr.to_le_bytes());
            b[8..12].copy_from_slice(&len.to_le_bytes());
            b[12..14].copy_from_slice(&flags.to_le_bytes());
            b[14..16].copy_from_slice(&(i + 1).to_le_bytes());
            self.mem.write(Q + 16 * u64::from(i), &b).unwrap();
            i
        }
        /// Posts a request: header, data buffers, status.
        fn request(&mut self, kind: u32, sector: u64, data: &[(u64, u32)], write: bool) -> u64 {
            let hdr = BUF + 0x10_0000 + 64 * u64::from(self.avail_idx);
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&sector.to_le_bytes());
            self.mem.write(hdr, &h).unwrap();
            let head = self.desc(hdr, 16, DESC_F_NEXT);
            for (addr, len) in data {
                self.desc(
                    *addr,
                    *len,
                    DESC_F_NEXT | if write { DESC_F_WRITE } else { 0 },
                );
            }
            let status = hdr + 32;
            self.mem.write(status, &[0xFF]).unwrap();
            self.desc(status, 1, DESC_F_WRITE);
            let avail = Q + 16 * u64::from(QUEUE_SIZE);
            let slot = avail + 4 + 2 * u64::from(self.avail_idx % QUEUE_SIZE);
            self.mem.write(slot, &head.to_le_bytes()).unwrap();
            self.avail_idx += 1;
            self.mem
                .write(avail + 2, &self.avail_idx.to_le_bytes())
                .unwrap();
            status
        }
        fn status(&self, at: u64) -> u8 {
            let mut b = [0u8];
            self.mem.read(at, &mut b).unwrap();
            b[0]
        }
        fn used(&self, i: u16) -> (u32, u32) {
            let avail = Q + 16 * u64::from(QUEUE_SIZE);
            let used = (avail + 6 + 2 * u64::from(QUEUE_SIZE)).next_multiple_of(4096);
            let e = used + 4 + 8 * u64::from(i);
            (
                self.mem.read_u32(e).unwrap(),
                self.mem.read_u32(e + 4).unwrap(),
            )
        }
        fn used_idx(&self) -> u16 {
            let avail = Q + 16 * u64::from(QUEUE_SIZE);
            let used = (avail + 6 + 2 * u64::from(QUEUE_SIZE)).next_multiple_of(4096);
            self.mem.read_u16(used + 2).unwrap()
        }
    }

    fn setup(ro: bool) -> (VirtioBlk, Guest, File) {
        let mut img = tempfile();
        let mut data = vec![0u8; 64 * 512];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i / 512) as u8;
        }
        img.write_all(&data).unwrap();
        let mem = Arc::new(GuestMemory::heap(128 << 20));
        let dev = VirtioBlk::new(mem.clone(), img.try_clone().unwrap(), ro, 0x2000, 16).unwrap();
        (
            dev,
            Guest {
                mem,
                next_desc: 0,
                avail_idx: 0,
            },
            img,
        )
    }

    fn tempfile() -> File {
        let path = std::env::temp_dir().join(format!(
            "acrn-dm-blk-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    fn driver_init(dev: &mut VirtioBlk) {
        dev.bar_write(0, 0x12, 1, 0);
        dev.bar_write(0, 0x12, 1, 1 | 2);
        let f = dev.bar_read(0, 0x00, 4);
        dev.bar_write(0, 0x04, 4, f);
        dev.bar_write(0, 0x0E, 2, 0);
        assert_eq!(dev.bar_read(0, 0x0C, 2), u64::from(QUEUE_SIZE));
        dev.bar_write(0, 0x08, 4, Q >> 12);
        dev.bar_write(0, 0x12, 1, 1 | 2 | 4);
    }

    #[test]
    fn registers_and_config() {
        let (mut dev, _, _) = setup(true);
        assert_eq!(dev.config().read(0, 4), 0x1001_1AF4);
        assert_eq!(dev.config().read(0x2E, 2), 2, "subsystem: block");
        assert_eq!(dev.config().read(0x3D, 1), 1, "INTA");
        assert_eq!(dev.config().read(0x3C, 1), 16);
        let f = dev.bar_read(0, 0, 4) as u32;
        assert_eq!(f & F_RO, F_RO);
        assert_eq!(
            dev.bar_read(0, 0x14, 4),
            64,
            "capacity in sectors (low half)"
        );
        assert_eq!(dev.bar_read(0, 0x18, 4), 0);
        assert_eq!(dev.bar_read(0, 0x28, 4), 512, "blk_size");
        assert_eq!(dev.bar_read(0, 0x40, 4), u64::MAX);
        dev.bar_write(0, 0x0E, 2, 1);
        assert_eq!(dev.bar_read(0, 0x0C, 2), 0, "only queue 0 exists");
    }

    #[test]
    fn read_write_flush_id_through_the_queue() {
        let (mut dev, mut g, mut img) = setup(false);
        driver_init(&mut dev);
        // Read sectors 3..5 into two buffers.
        let s1 = g.request(T_IN, 3, &[(BUF, 512), (BUF + 4096, 512)], true);
        dev.bar_write(0, 0x10, 2, 0);
        assert_eq!(g.status(s1), S_OK);
        let mut b = vec![0u8; 512];
        g.mem.read(BUF, &mut b).unwrap();
        assert!(b.iter().all(|x| *x == 3));
        g.mem.read(BUF + 4096, &mut b).unwrap();
        assert!(b.iter().all(|x| *x == 4));
        assert_eq!(g.used(0), (0, 1025));
        assert_eq!(g.used_idx(), 1);
        // The interrupt is raised, and reading the ISR lowers it.
        assert_eq!(dev.take_intx(), Some(true));
        assert_eq!(dev.bar_read(0, 0x13, 1), 1);
        assert_eq!(dev.bar_read(0, 0x13, 1), 0);
        assert_eq!(dev.take_intx(), Some(false));

        // Write sector 10, flush, get the id, and an out-of-range read.
        g.mem.write(BUF + 8192, &[0xAB; 512]).unwrap();
        let s2 = g.request(T_OUT, 10, &[(BUF + 8192, 512)], false);
        let s3 = g.request(T_FLUSH, 0, &[], false);
        let s4 = g.request(T_GET_ID, 0, &[(BUF + 12288, 20)], true);
        let s5 = g.request(T_IN, 63, &[(BUF, 1024)], true);
        let s6 = g.request(99, 0, &[], false);
        dev.bar_write(0, 0x10, 2, 0);
        assert_eq!(
            [
                g.status(s2),
                g.status(s3),
                g.status(s4),
                g.status(s5),
                g.status(s6)
            ],
            [S_OK, S_OK, S_OK, S_IOERR, S_UNSUPP]
        );
        let mut disk = vec![0u8; 512];
        img.seek(SeekFrom::Start(10 * 512)).unwrap();
        img.read_exact(&mut disk).unwrap();
        assert!(disk.iter().all(|x| *x == 0xAB));
        let mut id = vec![0u8; DEVICE_ID.len()];
        g.mem.read(BUF + 12288, &mut id).unwrap();
        assert_eq!(id, DEVICE_ID);
        assert_eq!(g.used_idx(), 6);
    }

    #[test]
    fn read_only_disks_refuse_writes() {
        let (mut dev, mut g, _) = setup(true);
        driver_init(&mut dev);
        let s = g.request(T_OUT, 0, &[(BUF, 512)], false);
        dev.bar_write(0, 0x10, 2, 0);
        assert_eq!(g.status(s), S_IOERR);
    }

    #[test]
    fn malformed_chains_do_not_panic() {
        let (mut dev, mut g, _) = setup(false);
        driver_init(&mut dev);
        // A descriptor pointing outside guest memory and a looping chain.
        let bad = g.request(T_IN, 0, &[(0xFFFF_F000_0000, 512)], true);
        let d = g.desc(BUF, 16, DESC_F_NEXT);
        g.mem
            .write(Q + 16 * u64::from(d) + 14, &d.to_le_bytes())
            .unwrap();
        let avail = Q + 16 * u64::from(QUEUE_SIZE);
        g.mem
            .write(avail + 4 + 2 * u64::from(g.avail_idx), &d.to_le_bytes())
            .unwrap();
        g.avail_idx += 1;
        g.mem.write(avail + 2, &g.avail_idx.to_le_bytes()).unwrap();
        dev.bar_write(0, 0x10, 2, 0);
        assert_eq!(g.status(bad), S_IOERR);
        assert_eq!(g.used_idx(), 2, "both were returned to the guest");
        // Reset clears the queue.
        dev.bar_write(0, 0x12, 1, 0);
        assert_eq!(dev.bar_read(0, 0x08, 4), 0);
    }
}
