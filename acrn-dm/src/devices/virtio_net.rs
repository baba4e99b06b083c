//! virtio-net (device type 1) on a host tap interface: queue 0 receives frames read from the
//! tap, queue 1 transmits to it. Legacy 10-byte `virtio_net_hdr` (no offloads, no mergeable
//! buffers), a MAC address (`VIRTIO_NET_F_MAC`) derived from `mac_seed` and the VM name.

use super::virtio::{Queue, VirtioDevice, QUEUE_SIZE};
use crate::memory::GuestMemory;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

const RX: usize = 0;
const TX: usize = 1;
const F_MAC: u32 = 1 << 5;
/// The legacy header without mergeable receive buffers.
pub const NET_HDR_LEN: usize = 10;
/// The largest header + frame sent (a 64 KiB frame without offloads); larger chains are
/// dropped rather than gathered.
pub const MAX_TX_FRAME: usize = NET_HDR_LEN + 65_536;
/// Frames kept while the guest has no receive buffers; beyond it frames are dropped, as a NIC
/// does.
pub const MAX_PENDING_FRAMES: usize = 256;

/// The network device.
pub struct VirtioNet {
    tap: Box<dyn Write + Send>,
    mac: [u8; 6],
    pending: VecDeque<Vec<u8>>,
}

/// A locally administered unicast MAC from `seed` (ACRN derives it with MD5 of the seed and
/// the VM name; this uses FNV-1a, so the address differs from ACRN's for the same seed).
pub fn mac_from_seed(seed: &str) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    let b = h.to_le_bytes();
    // ACRN's OUI 00:16:3E keeps the address recognisable.
    [0x00, 0x16, 0x3E, b[0], b[1], b[2]]
}

/// Opens tap interface `name` (`IFF_TAP | IFF_NO_PI`), non-blocking.
pub fn open_tap(name: &str) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    let n = name.len().min(libc::IFNAMSIZ - 1);
    req.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReq lays out (40 bytes).
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setting O_NONBLOCK on our own descriptor.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    Ok(f)
}

impl VirtioNet {
    /// A NIC sending the guest's frames to `tap`.
    pub fn new(tap: Box<dyn Write + Send>, mac: [u8; 6]) -> Self {
        Self {
            tap,
            mac,
            pending: VecDeque::new(),
        }
    }

    fn deliver(&mut self, queues: &mut [Queue], mem: &GuestMemory) -> bool {
        let mut used = false;
        while let Some(frame) = self.pending.front() {
            let Some(chain) = queues[RX].pop(mem) else {
                break;
            };
            // Header (all zero: no offloads) then the frame, across the writable buffers.
            let mut data = vec![0u8; NET_HDR_LEN];
            data.extend_from_slice(frame);
            let mut off = 0;
            for d in chain.descs.iter().filter(|d| d.writable()) {
                let take = (d.len as usize).min(data.len() - off);
                if mem.write(d.addr, &data[off..off + take]).is_err() {
                    break;
                }
                off += take;
                if off == data.len() {
                    break;
                }
            }
            // A frame that does not fit the buffers is dropped, the buffers returned empty.
            let len = if off == data.len() { off as u32 } else { 0 };
            queues[RX].push(mem, chain.head, len);
            self.pending.pop_front();
            used = true;
        }
        used
    }
}

impl VirtioDevice for VirtioNet {
    fn device_type(&self) -> u16 {
        1
    }
    fn pci_device_id(&self) -> u16 {
        0x1000
    }
    fn class(&self) -> u32 {
        0x02_00_00
    }
    fn features(&self) -> u32 {
        F_MAC
    }
    fn num_queues(&self) -> usize {
        2
    }
    fn config(&self) -> Vec<u8> {
        let mut c = self.mac.to_vec();
        c.extend_from_slice(&[0, 0]); // status (no VIRTIO_NET_F_STATUS)
        c
    }
    fn notify(&mut self, queue: usize, queues: &mut [Queue], mem: &GuestMemory) -> bool {
        match queue {
            TX => {
                let mut used = false;
                for _ in 0..QUEUE_SIZE {
                    let Some(chain) = queues[TX].pop(mem) else {
                        break;
                    };
                    let mut frame = Vec::new();
                    for d in chain.descs.iter().filter(|d| !d.writable()) {
                        let too_big = frame.len() + d.len as usize > MAX_TX_FRAME;
                        let Some(buf) = (!too_big)
                            .then(|| mem.read_vec(d.addr, d.len.into()).ok())
                            .flatten()
                        else {
                            frame.clear();
                            break;
                        };
                        frame.extend_from_slice(&buf);
                    }
                    if frame.len() > NET_HDR_LEN {
                        // One write per frame: a tap takes a frame per write. A full host
                        // queue drops the frame, as a wire would.
                        let _ = self.tap.write(&frame[NET_HDR_LEN..]);
                    }
                    queues[TX].push(mem, chain.head, 0);
                    used = true;
                }
                used
            }
            RX => self.deliver(queues, mem),
            _ => false,
        }
    }
    fn input(&mut self, frame: &[u8], queues: &mut [Queue], mem: &GuestMemory) -> bool {
        if self.pending.len() < MAX_PENDING_FRAMES {
            self.pending.push_back(frame.to_vec());
        }
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
    struct Frames(Arc<Mutex<Vec<Vec<u8>>>>);
    impl Write for Frames {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmit_receive_and_mac() {
        let mem = Arc::new(GuestMemory::heap(128 << 20));
        let frames = Frames::default();
        let mac = mac_from_seed("00:16:3e:12:34:56-POST_STD_VM1");
        assert_eq!(mac[..3], [0x00, 0x16, 0x3E]);
        assert_ne!(mac, mac_from_seed("another"));
        let net = VirtioNet::new(Box::new(frames.clone()), mac);
        let mut dev = VirtioPci::new(net, mem.clone(), 0x2080, 18);
        assert_eq!(dev.config().read(0, 4), 0x1000_1AF4);
        assert_eq!(dev.config().read(0x0A, 2), 0x0200);
        assert_eq!(dev.bar_read(0, 0, 4) as u32 & F_MAC, F_MAC);
        let got: Vec<u8> = (0..6).map(|i| dev.bar_read(0, 0x14 + i, 1) as u8).collect();
        assert_eq!(got, mac);
        let mut g = Driver::new(mem.clone(), 0x10_0000, 2);
        g.init(&mut dev);

        // Transmit: header and frame in separate buffers, as Linux does.
        mem.write(0x30_0000, &[0; NET_HDR_LEN]).unwrap();
        mem.write(0x30_1000, b"ETHERNET-FRAME").unwrap();
        g.post(
            TX,
            &[
                (0x30_0000, NET_HDR_LEN as u32, false),
                (0x30_1000, 14, false),
            ],
        );
        dev.bar_write(0, 0x10, 2, TX as u64);
        assert_eq!(&*frames.0.lock().unwrap(), &[b"ETHERNET-FRAME".to_vec()]);
        assert_eq!(g.used_idx(TX), 1);

        // Receive: queued until a buffer is posted, then header + frame.
        dev.host_input(b"incoming");
        g.post(RX, &[(0x40_0000, 1526, true)]);
        dev.bar_write(0, 0x10, 2, RX as u64);
        assert_eq!(g.used_elem(RX, 0), (0, (NET_HDR_LEN + 8) as u32));
        let mut b = vec![0u8; NET_HDR_LEN + 8];
        mem.read(0x40_0000, &mut b).unwrap();
        assert_eq!(&b[NET_HDR_LEN..], b"incoming");
        assert!(b[..NET_HDR_LEN].iter().all(|x| *x == 0));

        // An oversized transmit chain is dropped and still returned.
        g.post(
            TX,
            &[
                (0x30_0000, NET_HDR_LEN as u32, false),
                (0x50_0000, 70_000, false),
            ],
        );
        dev.bar_write(0, 0x10, 2, TX as u64);
        assert_eq!(frames.0.lock().unwrap().len(), 1);
        assert_eq!(g.used_idx(TX), 2);

        // A frame larger than the posted buffer is dropped, the buffer returned empty.
        g.post(RX, &[(0x40_1000, 16, true)]);
        dev.host_input(&[7u8; 100]);
        assert_eq!(g.used_elem(RX, 1), (1, 0));
    }
}
