//! virtio-blk (device type 2) on a raw image file: read, write, flush and get-id requests,
//! served synchronously when the guest notifies the queue.

use super::virtio::{Chain, Queue, VirtioDevice, QUEUE_SIZE};
use crate::memory::GuestMemory;
use std::fs::File;
use std::os::unix::fs::FileExt;

const SECTOR: u64 = 512;

const F_SEG_MAX: u32 = 1 << 2;
const F_RO: u32 = 1 << 5;
const F_BLK_SIZE: u32 = 1 << 6;
const F_FLUSH: u32 = 1 << 9;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

/// The serial number GET_ID returns.
pub const DEVICE_ID: &[u8] = b"ACRN-DM-VIRTIO-BLK";

/// The block device.
pub struct VirtioBlk {
    disk: File,
    read_only: bool,
    capacity_sectors: u64,
}

impl VirtioBlk {
    /// A device on `disk`.
    pub fn new(disk: File, read_only: bool) -> std::io::Result<Self> {
        let len = disk.metadata()?.len();
        Ok(Self {
            disk,
            read_only,
            capacity_sectors: len / SECTOR,
        })
    }

    /// Serves one request; returns the bytes written into guest buffers (status included).
    fn serve(&mut self, chain: &Chain, mem: &GuestMemory) -> u32 {
        let d = &chain.descs;
        let (Some(hdr), Some(status)) = (d.first(), d.last()) else {
            return 0;
        };
        if d.len() < 2 || hdr.len < 16 || !status.writable() || status.len < 1 {
            return 0;
        }
        let mut h = [0u8; 16];
        if mem.read(hdr.addr, &mut h).is_err() {
            return 0;
        }
        let kind = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
        let sector = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let (st, written) = self.execute(kind, sector, &d[1..d.len() - 1], mem);
        if mem.write(status.addr, &[st]).is_err() {
            return written;
        }
        written + 1
    }

    fn execute(
        &mut self,
        kind: u32,
        sector: u64,
        data: &[super::virtio::Desc],
        mem: &GuestMemory,
    ) -> (u8, u32) {
        let total: u64 = data.iter().map(|d| u64::from(d.len)).sum();
        let in_range = sector
            .checked_mul(SECTOR)
            .and_then(|off| off.checked_add(total))
            .is_some_and(|end| end <= self.capacity_sectors * SECTOR);
        match kind {
            T_IN => {
                if !in_range || data.iter().any(|d| !d.writable()) {
                    return (S_IOERR, 0);
                }
                let mut off = sector * SECTOR;
                let mut written = 0u32;
                for d in data {
                    if mem.check(d.addr, d.len.into()).is_err() {
                        return (S_IOERR, written);
                    }
                    let mut buf = vec![0u8; d.len as usize];
                    if self.disk.read_exact_at(&mut buf, off).is_err()
                        || mem.write(d.addr, &buf).is_err()
                    {
                        return (S_IOERR, written);
                    }
                    off += u64::from(d.len);
                    written += d.len;
                }
                (S_OK, written)
            }
            T_OUT => {
                if self.read_only || !in_range {
                    return (S_IOERR, 0);
                }
                let mut off = sector * SECTOR;
                for d in data {
                    let Ok(buf) = mem.read_vec(d.addr, d.len.into()) else {
                        return (S_IOERR, 0);
                    };
                    if self.disk.write_all_at(&buf, off).is_err() {
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
                let Some(d) = data.first().filter(|d| d.writable()) else {
                    return (S_IOERR, 0);
                };
                let mut id = [0u8; 20];
                id[..DEVICE_ID.len()].copy_from_slice(DEVICE_ID);
                let n = (d.len as usize).min(20);
                match mem.write(d.addr, &id[..n]) {
                    Ok(()) => (S_OK, n as u32),
                    Err(_) => (S_IOERR, 0),
                }
            }
            _ => (S_UNSUPP, 0),
        }
    }
}

impl VirtioDevice for VirtioBlk {
    fn device_type(&self) -> u16 {
        2
    }
    fn pci_device_id(&self) -> u16 {
        0x1001
    }
    fn class(&self) -> u32 {
        0x01_80_00
    }
    fn features(&self) -> u32 {
        F_SEG_MAX | F_BLK_SIZE | F_FLUSH | if self.read_only { F_RO } else { 0 }
    }
    fn num_queues(&self) -> usize {
        1
    }
    fn config(&self) -> Vec<u8> {
        let mut c = vec![0u8; 24];
        c[0..8].copy_from_slice(&self.capacity_sectors.to_le_bytes());
        c[12..16].copy_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes()); // seg_max
        c[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes()); // blk_size
        c
    }
    fn notify(&mut self, queue: usize, queues: &mut [Queue], mem: &GuestMemory) -> bool {
        let Some(q) = queues.get_mut(queue).filter(|_| queue == 0) else {
            return false;
        };
        let mut used = false;
        // At most one queue's worth per notify, so a guest cannot keep us here forever.
        for _ in 0..QUEUE_SIZE {
            let Some(chain) = q.pop(mem) else { break };
            let len = self.serve(&chain, mem);
            q.push(mem, chain.head, len);
            used = true;
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::super::pci::PciFunction;
    use super::super::virtio::testing::Driver;
    use super::super::virtio::{Desc, VirtioPci, DESC_F_NEXT};
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::sync::Arc;

    const Q: u64 = 0x10_0000;
    const BUF: u64 = 0x20_0000;

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

    fn setup(ro: bool) -> (VirtioPci<VirtioBlk>, Driver, File) {
        let mut img = tempfile();
        let mut data = vec![0u8; 64 * 512];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i / 512) as u8;
        }
        img.write_all(&data).unwrap();
        let mem = Arc::new(GuestMemory::heap(128 << 20));
        let blk = VirtioBlk::new(img.try_clone().unwrap(), ro).unwrap();
        let dev = VirtioPci::new(blk, mem.clone(), 0x2000, 16);
        (dev, Driver::new(mem, Q, 1), img)
    }

    /// Posts header + data + status; returns the status byte's address.
    fn request(
        g: &mut Driver,
        n: u64,
        kind: u32,
        sector: u64,
        data: &[(u64, u32)],
        w: bool,
    ) -> u64 {
        let hdr = BUF + 0x10_0000 + 64 * n;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        g.mem.write(hdr, &h).unwrap();
        let status = hdr + 32;
        g.mem.write(status, &[0xFF]).unwrap();
        let mut bufs = vec![(hdr, 16, false)];
        bufs.extend(data.iter().map(|(a, l)| (*a, *l, w)));
        bufs.push((status, 1, true));
        g.post(0, &bufs);
        status
    }

    fn byte(g: &Driver, at: u64) -> u8 {
        let mut b = [0u8];
        g.mem.read(at, &mut b).unwrap();
        b[0]
    }

    #[test]
    fn registers_and_config() {
        let (mut dev, _, _) = setup(true);
        assert_eq!(dev.config().read(0, 4), 0x1001_1AF4);
        assert_eq!(dev.config().read(0x2E, 2), 2, "subsystem: block");
        assert_eq!(dev.config().read(0x0A, 2), 0x0180);
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
        assert_eq!(dev.bar_read(0, 0x2C, 4), u64::MAX, "past the config");
        dev.bar_write(0, 0x0E, 2, 1);
        assert_eq!(dev.bar_read(0, 0x0C, 2), 0, "only queue 0 exists");
    }

    #[test]
    fn read_write_flush_id_through_the_queue() {
        let (mut dev, mut g, mut img) = setup(false);
        g.init(&mut dev);
        let s1 = request(&mut g, 0, T_IN, 3, &[(BUF, 512), (BUF + 4096, 512)], true);
        dev.bar_write(0, 0x10, 2, 0);
        assert_eq!(byte(&g, s1), S_OK);
        let mut b = vec![0u8; 512];
        g.mem.read(BUF, &mut b).unwrap();
        assert!(b.iter().all(|x| *x == 3));
        g.mem.read(BUF + 4096, &mut b).unwrap();
        assert!(b.iter().all(|x| *x == 4));
        assert_eq!(g.used_elem(0, 0), (0, 1025));
        assert_eq!(g.used_idx(0), 1);
        // The interrupt is raised, and reading the ISR lowers it.
        assert_eq!(dev.take_intx(), Some(true));
        assert_eq!(dev.bar_read(0, 0x13, 1), 1);
        assert_eq!(dev.bar_read(0, 0x13, 1), 0);
        assert_eq!(dev.take_intx(), Some(false));

        g.mem.write(BUF + 8192, &[0xAB; 512]).unwrap();
        let s2 = request(&mut g, 1, T_OUT, 10, &[(BUF + 8192, 512)], false);
        let s3 = request(&mut g, 2, T_FLUSH, 0, &[], false);
        let s4 = request(&mut g, 3, T_GET_ID, 0, &[(BUF + 12288, 20)], true);
        let s5 = request(&mut g, 4, T_IN, 63, &[(BUF, 1024)], true);
        let s6 = request(&mut g, 5, 99, 0, &[], false);
        dev.bar_write(0, 0x10, 2, 0);
        let st: Vec<u8> = [s2, s3, s4, s5, s6].iter().map(|s| byte(&g, *s)).collect();
        assert_eq!(st, [S_OK, S_OK, S_OK, S_IOERR, S_UNSUPP]);
        let mut disk = vec![0u8; 512];
        img.seek(SeekFrom::Start(10 * 512)).unwrap();
        img.read_exact(&mut disk).unwrap();
        assert!(disk.iter().all(|x| *x == 0xAB));
        let mut id = vec![0u8; DEVICE_ID.len()];
        g.mem.read(BUF + 12288, &mut id).unwrap();
        assert_eq!(id, DEVICE_ID);
        assert_eq!(g.used_idx(0), 6);
    }

    #[test]
    fn polling_serves_requests_without_a_notify() {
        let (mut dev, mut g, _) = setup(false);
        g.init(&mut dev);
        let s = request(&mut g, 0, T_IN, 2, &[(BUF, 512)], true);
        dev.poll();
        assert_eq!(byte(&g, s), S_OK);
        assert_eq!(dev.take_intx(), Some(true));
        dev.bar_read(0, 0x13, 1);
        dev.take_intx();
        dev.poll();
        assert_eq!(dev.take_intx(), None, "nothing new, no interrupt");
    }

    #[test]
    fn read_only_disks_refuse_writes() {
        let (mut dev, mut g, _) = setup(true);
        g.init(&mut dev);
        let s = request(&mut g, 0, T_OUT, 0, &[(BUF, 512)], false);
        dev.bar_write(0, 0x10, 2, 0);
        assert_eq!(byte(&g, s), S_IOERR);
    }

    #[test]
    fn malformed_chains_do_not_panic() {
        let (mut dev, mut g, _) = setup(false);
        g.init(&mut dev);
        let bad = request(&mut g, 0, T_IN, 0, &[(0xFFFF_F000_0000, 512)], true);
        // A descriptor that chains to itself.
        let d = g.raw_desc(
            0,
            Desc {
                addr: BUF,
                len: 16,
                flags: DESC_F_NEXT,
                next: 3,
            },
        );
        assert_eq!(d, 3);
        g.publish(0, d);
        dev.bar_write(0, 0x10, 2, 0);
        assert_eq!(byte(&g, bad), S_IOERR);
        assert_eq!(g.used_idx(0), 2, "both were returned to the guest");
        assert_eq!(g.used_elem(0, 1), (3, 0));
        // Reset clears the queue.
        dev.bar_write(0, 0x12, 1, 0);
        assert_eq!(dev.bar_read(0, 0x08, 4), 0);
    }
}
