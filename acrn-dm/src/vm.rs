//! One VM's life, in ACRN's acrn-dm order (reference §6.2): devices, CREATE_VM, guest memory
//! (SET_MEMSEG), ACPI tables and the kernel in guest memory, the BSP's registers, the I/O
//! request client, START_VM, the request loop; and on every way out PAUSE, DESTROY_IOREQ_CLIENT,
//! DESTROY_VM ([`VmHandle`]'s drop).

use crate::acpi;
use crate::boot::{self, BootError};
use crate::cli::DmConfig;
use crate::devices::{InputSource, Platform, SetupError, Stdio};
use crate::ioreq::{self, IoHandler, IoreqPage, Stopped};
use crate::logger::{log, Level};
use crate::memory::{GuestMemory, OutOfRange};
use crate::vmm::{VmControl, VmHandle};
use acrn_abi::memory::{AcrnVmMemmap, ACRN_MEMMAP_RAM};
use acrn_abi::vm::{AcrnVmCreation, GuestFlags};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// CREATE_VM tries, and the pause between them, as ACRN's `vm_create`.
pub const CREATE_ATTEMPTS: u32 = 10;
/// See [`CREATE_ATTEMPTS`].
pub const CREATE_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(500);
/// `attr` of RAM mappings: read, write, execute (ACRN's `PROT_ALL`).
const MEM_PROT_ALL: u32 = 7;
/// `attr` of shared-memory mappings: read, write.
const MEM_PROT_RW: u32 = 3;
/// RAM is handed to the HSM in pieces of at least this size: Linux's HSM builds one region per
/// (compound) page of a call in one kmalloc'd batch, which must stay well under 4 MiB when the
/// memory is in 4 KiB pages (64 MiB: 16384 regions, 512 KiB).
pub const MEMSEG_CHUNK: u64 = 64 << 20;
/// Linux's HSM keeps at most 256 mappings per VM (`ACRN_MEM_MAPPING_MAX`); pieces grow past
/// [`MEMSEG_CHUNK`] so that RAM takes at most this many (leaving room for shared memory).
pub const MAX_RAM_MEMSEGS: u64 = 192;

/// Everything that stops a VM from being set up or run.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// No `--kernel`.
    #[error("no guest to boot: give --kernel BZIMAGE (OVMF is not supported)")]
    NoKernel,
    /// A boot file cannot be read.
    #[error("{what} {path}: {err}")]
    ReadFile {
        /// "kernel" or "ramdisk".
        what: &'static str,
        /// Path.
        path: PathBuf,
        /// Why.
        err: io::Error,
    },
    /// The devices cannot be built.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// Loading the kernel failed.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// An HSM call failed.
    #[error("{op}: {err}")]
    Hsm {
        /// The ioctl.
        op: &'static str,
        /// Its error.
        err: io::Error,
    },
    /// The hypervisor refused a pass-through device.
    #[error("-s {addr},passthru: {op}: {err}")]
    Passthru {
        /// Guest slot.
        addr: crate::cli::PciAddr,
        /// The ioctl.
        op: &'static str,
        /// Why.
        err: io::Error,
    },
    /// The hypervisor refused a device it emulates.
    #[error("-s {addr},{what}: CREATE_VDEV: {err} (does the scenario configure it for this VM?)")]
    Vdev {
        /// Guest slot.
        addr: crate::cli::PciAddr,
        /// The device.
        what: String,
        /// Why.
        err: io::Error,
    },
    /// The hypervisor created an unusable number of vCPUs.
    #[error("the hypervisor created {0} vCPUs; acrn-dm serves 1 to 16")]
    VcpuCount(u16),
    /// `--cpu_affinity` names a CPU the Service VM's MADT does not list.
    #[error(
        "--cpu_affinity: LAPIC ID {0} is not an enabled processor in the Service VM's MADT ({1})"
    )]
    UnknownLapic(u32, String),
    /// The Service VM's MADT cannot be read.
    #[error("--cpu_affinity: cannot read the Service VM's MADT {path}: {err}")]
    Madt {
        /// Path.
        path: PathBuf,
        /// Why.
        err: io::Error,
    },
    /// More memory than the Service VM has.
    #[error("-m: the VM asks for {want} MiB but the Service VM has only {have} MiB available")]
    NotEnoughMemory {
        /// MiB requested.
        want: u64,
        /// MiB available.
        have: u64,
    },
    /// A layout bug: a write outside guest RAM.
    #[error(transparent)]
    Memory(#[from] OutOfRange),
}

fn hsm(op: &'static str) -> impl FnOnce(io::Error) -> VmError {
    move |err| VmError::Hsm { op, err }
}

/// The kernel, ramdisk and command line, read before anything is created.
pub struct BootFiles {
    /// The kernel's path, for messages.
    pub kernel_name: String,
    /// bzImage bytes.
    pub kernel: Vec<u8>,
    /// Ramdisk bytes.
    pub ramdisk: Option<Vec<u8>>,
    /// Command line.
    pub cmdline: String,
}

impl BootFiles {
    /// Reads the files `cfg` names.
    pub fn read(cfg: &DmConfig) -> Result<Self, VmError> {
        let kernel_path = cfg.kernel.as_ref().ok_or(VmError::NoKernel)?;
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|err| VmError::ReadFile {
                what,
                path: path.to_path_buf(),
                err,
            })
        };
        let kernel_name = kernel_path.display().to_string();
        let kernel = read("kernel", kernel_path)?;
        // Refuse a file that is not a bzImage before anything is created.
        boot::SetupHeader::parse(&kernel_name, &kernel)?;
        Ok(Self {
            kernel_name,
            kernel,
            ramdisk: cfg
                .ramdisk
                .as_deref()
                .map(|p| read("ramdisk", p))
                .transpose()?,
            cmdline: cfg.bootargs.clone().unwrap_or_default(),
        })
    }
}

/// The guest flags ACRN's acrn-dm asks for: `--rtvm` makes a real-time VM with LAPIC
/// pass-through and polled I/O completion.
pub fn guest_flags(cfg: &DmConfig) -> GuestFlags {
    if cfg.rtvm {
        GuestFlags::RT
            | GuestFlags::LAPIC_PASSTHROUGH
            | GuestFlags::IO_COMPLETION_POLLING
            | GuestFlags::PMU_PASSTHROUGH
    } else {
        GuestFlags::empty()
    }
}

/// LAPIC IDs of the enabled processors in MADT order: index = pCPU number, as ACRN's
/// `parse_madt` numbers them.
pub fn madt_lapic_ids(madt: &[u8]) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut o = 44;
    while o + 2 <= madt.len() {
        let (kind, len) = (madt[o], madt[o + 1] as usize);
        if len < 2 || o + len > madt.len() {
            break;
        }
        match kind {
            0 if len >= 8 && madt[o + 4] & 1 != 0 => ids.push(u32::from(madt[o + 3])),
            9 if len >= 16 && madt[o + 8] & 1 != 0 => ids.push(u32::from_le_bytes(
                madt[o + 4..o + 8].try_into().expect("4 bytes"),
            )),
            _ => {}
        }
        o += len;
    }
    ids
}

/// The pCPU bitmap for `--cpu_affinity` LAPIC IDs given the Service VM's MADT.
pub fn affinity_bitmap(lapic_ids: &[u32], madt: &[u8]) -> Result<u64, VmError> {
    let known = madt_lapic_ids(madt);
    let mut bitmap = 0u64;
    for id in lapic_ids {
        let pcpu = known
            .iter()
            .position(|k| k == id)
            .filter(|p| *p < 64)
            .ok_or_else(|| VmError::UnknownLapic(*id, format!("it lists {known:?}")))?;
        bitmap |= 1 << pcpu;
    }
    Ok(bitmap)
}

/// Reads the Service VM's MADT and converts `--cpu_affinity` (0 = the VM's configured CPUs).
pub fn host_affinity(cfg: &DmConfig) -> Result<u64, VmError> {
    if cfg.cpu_affinity.is_empty() {
        return Ok(0);
    }
    let path = Path::new("/sys/firmware/acpi/tables/APIC");
    let madt = std::fs::read(path).map_err(|err| VmError::Madt {
        path: path.to_path_buf(),
        err,
    })?;
    affinity_bitmap(&cfg.cpu_affinity, &madt)
}

/// `MemAvailable` (plus free huge pages) from /proc/meminfo, in bytes.
pub fn available_memory(meminfo: &str) -> Option<u64> {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let avail = field("MemAvailable:")? * 1024;
    let huge = field("HugePages_Free:").unwrap_or(0) * field("Hugepagesize:").unwrap_or(0) * 1024;
    Some(avail + huge)
}

/// Refuses a size the Service VM cannot give (checked before anything is mapped or created).
pub fn check_memory(size: u64) -> Result<(), VmError> {
    let Some(have) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| available_memory(&m))
    else {
        return Ok(());
    };
    if size > have {
        return Err(VmError::NotEnoughMemory {
            want: size >> 20,
            have: have >> 20,
        });
    }
    Ok(())
}

/// The memory segments for SET_MEMSEG: RAM, read/write/execute, in [`MEMSEG_CHUNK`] pieces (or
/// larger ones for very large VMs, see [`MAX_RAM_MEMSEGS`]).
pub fn memsegs(mem: &GuestMemory) -> Vec<AcrnVmMemmap> {
    memsegs_of(&mem.ranges().collect::<Vec<_>>())
}

/// [`memsegs`] for `(guest-physical, host, length)` ranges.
pub fn memsegs_of(ranges: &[(u64, u64, u64)]) -> Vec<AcrnVmMemmap> {
    let total: u64 = ranges.iter().map(|(_, _, len)| len).sum();
    let chunk = MEMSEG_CHUNK.max(
        total
            .div_ceil(MAX_RAM_MEMSEGS)
            .next_multiple_of(MEMSEG_CHUNK),
    );
    let mut out = Vec::new();
    for &(gpa, host, len) in ranges {
        let mut off = 0;
        while off < len {
            let n = chunk.min(len - off);
            out.push(AcrnVmMemmap {
                r#type: ACRN_MEMMAP_RAM,
                attr: MEM_PROT_ALL,
                user_vm_pa: gpa + off,
                service_vm_pa: host + off,
                len: n,
            });
            off += n;
        }
    }
    out
}

/// Console plumbing.
pub struct Console {
    /// Writers for devices on stdio.
    pub stdio: Stdio,
    /// Whether to read host input (stdin, ptys) for the guest; off in tests.
    pub read_input: bool,
    /// Where host PCI functions are listed (`/sys/bus/pci/devices`).
    pub pci_sysfs: PathBuf,
}

/// Creates, boots and serves the VM until it stops; the VM is gone when this returns.
pub fn run<C: VmControl + ?Sized>(
    ctl: &C,
    cfg: &DmConfig,
    mem: Arc<GuestMemory>,
    boot_files: &BootFiles,
    cpu_affinity: u64,
    console: Console,
    stop: &AtomicBool,
) -> Result<Stopped, VmError> {
    let platform = Platform::build(cfg, mem.clone(), console.stdio, &console.pci_sysfs)?;
    let inputs = if console.read_input {
        platform.input_sources()
    } else {
        Vec::new()
    };
    let routes = platform.intx_routes();
    let page = IoreqPage::new();
    // Like the ioreq page, the monitor page must outlive the VM (the HSM keeps it pinned).
    let monitor_page = crate::monitor::MonitorPage::new();
    let mut cv = AcrnVmCreation {
        vm_flag: guest_flags(cfg).bits(),
        ioreq_buf: page.addr(),
        cpu_affinity,
        ..Default::default()
    };
    // The CLI checked the name's length and NULs.
    let named = cv.set_name(&cfg.vm_name);
    debug_assert!(named);
    let mut vm = VmHandle::create(ctl, &mut cv, CREATE_ATTEMPTS, CREATE_RETRY_DELAY)
        .map_err(hsm("CREATE_VM"))?;
    log(
        Level::Info,
        &format!(
            "VM {} ({}) created with {} vCPUs",
            cfg.vm_name, vm.vmid, vm.vcpus
        ),
    );
    if !(1..=acpi::MAX_VCPUS as u16).contains(&vm.vcpus) {
        return Err(VmError::VcpuCount(vm.vcpus));
    }
    for seg in memsegs(&mem) {
        ctl.set_memseg(&seg).map_err(hsm("SET_MEMSEG"))?;
    }
    for (gpa, host, len) in platform.shm_mappings() {
        let seg = AcrnVmMemmap {
            r#type: ACRN_MEMMAP_RAM,
            attr: MEM_PROT_RW,
            user_vm_pa: gpa,
            service_vm_pa: host,
            len,
        };
        ctl.set_memseg(&seg).map_err(hsm("SET_MEMSEG (ivshmem)"))?;
    }
    for pt in platform.passthrough() {
        vm.assign_pcidev(&pt.dev, pt.irq.as_ref())
            .map_err(|(op, err)| VmError::Passthru {
                addr: pt.addr,
                op,
                err,
            })?;
    }
    for d in platform.hv_vdevs() {
        ctl.create_vdev(&d.vdev).map_err(|err| VmError::Vdev {
            addr: d.addr,
            what: d.what.clone(),
            err,
        })?;
    }
    mem.write(acpi::ACPI_BASE, &acpi::build(vm.vcpus.into(), &routes))?;
    let layout = boot::load_linux(
        &mem,
        &boot_files.kernel_name,
        &boot_files.kernel,
        boot_files.ramdisk.as_deref(),
        &boot_files.cmdline,
        acpi::ACPI_BASE,
    )?;
    ctl.set_vcpu_regs(&boot::boot_regs(&layout))
        .map_err(hsm("SET_VCPU_REGS"))?;
    ctl.create_ioreq_client()
        .map_err(hsm("CREATE_IOREQ_CLIENT"))?;
    ctl.start_vm().map_err(hsm("START_VM"))?;
    log(Level::Info, &format!("VM {} started", cfg.vm_name));

    let platform: Mutex<Platform> = Mutex::new(platform);
    let handler: &Mutex<dyn IoHandler + Send> = &platform;
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        // Helper threads must not take SIGINT/SIGTERM: they have to interrupt ATTACH here.
        let blocked = SignalsBlocked::new();
        if !inputs.is_empty() {
            let (platform, done) = (&platform, &done);
            s.spawn(move || console_input(ctl, inputs, platform, done));
        }
        let done_ref = &done;
        s.spawn(move || stop_watcher(ctl, stop, done_ref));
        if let Some(setting) = cfg.intr_monitor {
            let monitor_page = &monitor_page;
            s.spawn(move || crate::monitor::run(ctl, monitor_page, setting, done_ref));
        }
        {
            let platform = &platform;
            s.spawn(move || pit_ticker(ctl, platform, done_ref));
        }
        if let Some(ns) = cfg.virtio_poll_ns {
            let platform = &platform;
            s.spawn(move || {
                virtio_poller(ctl, std::time::Duration::from_nanos(ns), platform, done_ref)
            });
        }
        drop(blocked);
        let r = ioreq::run(ctl, vm.vmid, &page, vm.vcpus.into(), handler, stop);
        done.store(true, Ordering::Release);
        r
    });
    let stopped = result.map_err(hsm("ATTACH_IOREQ_CLIENT"))?;
    drop(vm);
    // The pages must outlive the VM: the HSM unpins them when the VM is destroyed.
    drop(page);
    drop(monitor_page);
    Ok(stopped)
}

/// A signal that lands just before the loop enters ATTACH would leave it blocked while the guest
/// is idle; destroying the client makes ATTACH return (ENODEV) whenever `stop` is set.
fn stop_watcher<C: VmControl + ?Sized>(ctl: &C, stop: &AtomicBool, done: &AtomicBool) {
    while !done.load(Ordering::Acquire) {
        if stop.load(Ordering::Acquire) {
            let _ = ctl.destroy_ioreq_client();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Raises the PIT's channel-0 interrupts as they fall due, until `done`.
fn pit_ticker<C: VmControl + ?Sized>(ctl: &C, platform: &Mutex<Platform>, done: &AtomicBool) {
    loop {
        let wait = platform
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pit_tick();
        let handler: &Mutex<dyn IoHandler + Send> = platform;
        if let Err(e) = ioreq::flush_irqs(ctl, handler) {
            log(Level::Warning, &format!("SET_IRQLINE for the PIT: {e}"));
        }
        if !crate::monitor::sleep_unless(done, wait) {
            return;
        }
    }
}

/// `--virtio_poll`: serves the virtqueues every `period`, until `done`.
fn virtio_poller<C: VmControl + ?Sized>(
    ctl: &C,
    period: std::time::Duration,
    platform: &Mutex<Platform>,
    done: &AtomicBool,
) {
    while crate::monitor::sleep_unless(done, period) {
        platform
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .poll_devices();
        let handler: &Mutex<dyn IoHandler + Send> = platform;
        if let Err(e) = ioreq::flush_irqs(ctl, handler) {
            log(
                Level::Warning,
                &format!("SET_IRQLINE for a polled queue: {e}"),
            );
        }
    }
}

/// Feeds host input to the devices that take it, until `done`.
fn console_input<C: VmControl + ?Sized>(
    ctl: &C,
    mut sources: Vec<InputSource>,
    platform: &Mutex<Platform>,
    done: &AtomicBool,
) {
    // Large enough for a whole frame from a tap.
    let mut buf = vec![0u8; 65536];
    while !done.load(Ordering::Acquire) && !sources.is_empty() {
        let mut pfds: Vec<libc::pollfd> = sources
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a valid array of pollfds; 100 ms so `done` is seen promptly.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
        if n <= 0 {
            continue;
        }
        let mut closed = Vec::new();
        for (i, pfd) in pfds.iter().enumerate() {
            if pfd.revents & libc::POLLIN != 0 {
                // SAFETY: reading into our buffer from a polled descriptor.
                let got = unsafe { libc::read(pfd.fd, buf.as_mut_ptr().cast(), buf.len()) };
                if got > 0 {
                    platform
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .input(&sources[i].sinks, &buf[..got as usize]);
                    continue;
                }
                closed.push(i);
            } else if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                closed.push(i);
            }
        }
        // End of input (e.g. stdin at EOF) stops polling that descriptor only.
        for i in closed.into_iter().rev() {
            sources.remove(i);
        }
        let handler: &Mutex<dyn IoHandler + Send> = platform;
        if let Err(e) = ioreq::flush_irqs(ctl, handler) {
            log(
                Level::Warning,
                &format!("SET_IRQLINE for console input: {e}"),
            );
        }
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and threads it spawns) until dropped.
struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    fn new() -> Self {
        // SAFETY: plain sigset manipulation on local values.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            Self(old)
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restoring the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::{PM1A_CNT_ADDR, RESET_PORT};
    use crate::boot::tests::fake_bzimage;
    use crate::cli::{self, Command};
    use crate::ioreq::VmExit;
    use crate::vmm::fake::{Call, FakeHsm};
    use acrn_abi::ioreq::{
        IoRequestPayload, PciRequest, PioRequest, ACRN_IOREQ_TYPE_PCICFG, ACRN_IOREQ_TYPE_PORTIO,
    };
    use acrn_abi::irq::GsiOp;

    fn config(line: &str) -> DmConfig {
        let args: Vec<&str> = line.split_whitespace().collect();
        match cli::parse(&args).unwrap() {
            Command::Run(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    fn boot_files() -> BootFiles {
        BootFiles {
            kernel_name: "bzImage".into(),
            kernel: fake_bzimage(27, 0x1000, 0x100_0000),
            ramdisk: Some(vec![1; 4096]),
            cmdline: "console=ttyS0".into(),
        }
    }

    fn pio_write(port: u64, size: u64, value: u32) -> IoRequestPayload {
        IoRequestPayload {
            pio_request: PioRequest {
                direction: 1,
                reserved: 0,
                address: port,
                size,
                value,
            },
        }
    }

    fn pio(port: u16, size: u64, write: Option<u32>) -> (usize, u32, IoRequestPayload) {
        let p = IoRequestPayload {
            pio_request: PioRequest {
                direction: u32::from(write.is_some()),
                reserved: 0,
                address: port.into(),
                size,
                value: write.unwrap_or(0),
            },
        };
        (0, ACRN_IOREQ_TYPE_PORTIO, p)
    }

    fn cfg_access(
        dev: u32,
        reg: u32,
        size: u64,
        write: Option<u32>,
    ) -> (usize, u32, IoRequestPayload) {
        let p = IoRequestPayload {
            pci_request: PciRequest {
                direction: u32::from(write.is_some()),
                reserved: [0; 3],
                size,
                value: write.unwrap_or(0),
                bus: 0,
                dev,
                func: 0,
                reg,
            },
        };
        (0, ACRN_IOREQ_TYPE_PCICFG, p)
    }

    /// A guest's virtio-blk driver, step by step through I/O requests: the platform answers
    /// PCI configuration, the legacy registers, reads the disk into guest memory, and drives
    /// the INTx line through SET_IRQLINE.
    #[test]
    fn a_guest_reads_its_disk_through_the_request_loop() {
        use crate::devices::virtio::testing::Driver;
        let img = std::env::temp_dir().join(format!("acrn-dm-e2e-{}", std::process::id()));
        let mut disk = vec![0u8; 8 * 512];
        disk[512..1024].fill(0xC3);
        std::fs::write(&img, &disk).unwrap();
        let cfg = config(&format!(
            "-s 0:0,hostbridge -s 3,virtio-blk,{} vm",
            img.display()
        ));
        let mem = Arc::new(GuestMemory::heap(cfg.mem_size));
        // The request the guest will post: read sector 1 into 0x300000.
        let mut drv = Driver::new(mem.clone(), 0x20_0000, 1);
        let mut hdr = [0u8; 16];
        hdr[8] = 1;
        mem.write(0x31_0000, &hdr).unwrap();
        drv.post(
            0,
            &[
                (0x31_0000, 16, false),
                (0x30_0000, 512, true),
                (0x31_0100, 1, true),
            ],
        );

        let io = 0x2000;
        let hsm = FakeHsm::new(1);
        let script = [
            cfg_access(3, 0, 4, None),
            cfg_access(3, 0x10, 4, None),
            cfg_access(3, 4, 2, Some(1)),
            pio(io + 0x12, 1, Some(0)),
            pio(io + 0x12, 1, Some(3)),
            pio(io + 0x0E, 2, Some(0)),
            pio(io + 0x08, 4, Some(0x200)),
            pio(io + 0x12, 1, Some(7)),
            pio(io + 0x10, 2, Some(0)),
            pio(io + 0x13, 1, None),
            pio(PM1A_CNT_ADDR, 2, Some((5 << 10) | (1 << 13))),
        ];
        for step in script {
            hsm.batches.lock().unwrap().push_back(vec![step]);
        }
        let stop = AtomicBool::new(false);
        let out = run(&hsm, &cfg, mem.clone(), &boot_files(), 0, console(), &stop).unwrap();
        std::fs::remove_file(&img).unwrap();
        assert_eq!(out, Stopped::Guest(VmExit::PowerOff));

        let mut got = vec![0u8; 512];
        mem.read(0x30_0000, &mut got).unwrap();
        assert!(
            got.iter().all(|b| *b == 0xC3),
            "sector 1 is in guest memory"
        );
        let mut status = [0xFFu8];
        mem.read(0x31_0100, &mut status).unwrap();
        assert_eq!(status[0], 0, "VIRTIO_BLK_S_OK");
        assert_eq!(drv.used_idx(0), 1);
        let irqs: Vec<Call> = hsm
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Irq(..)))
            .collect();
        // Asserted (active low) by the completion, released by the ISR read.
        assert_eq!(
            irqs,
            [Call::Irq(16, GsiOp::SetLow), Call::Irq(16, GsiOp::SetHigh)]
        );
        assert_eq!(hsm.calls().last(), Some(&Call::Destroy));
    }

    fn console() -> Console {
        fn sink() -> Box<dyn std::io::Write + Send> {
            Box::new(io::sink())
        }
        Console {
            stdio: sink,
            read_input: false,
            pci_sysfs: PathBuf::from("/nonexistent-sysfs"),
        }
    }

    #[test]
    fn lifecycle_in_acrn_order_and_power_off_destroys_the_vm() {
        let hsm = FakeHsm::new(2);
        hsm.batches.lock().unwrap().push_back(vec![(
            1,
            ACRN_IOREQ_TYPE_PORTIO,
            pio_write(PM1A_CNT_ADDR.into(), 2, (5 << 10) | (1 << 13)),
        )]);
        let cfg = config(
            "-m 256M -s 0:0,hostbridge -s 1:0,lpc -l com1,stdio --rtvm --lapic_pt \
             -s 8,ivshmem,hv:/shm_region_0,2 vm1",
        );
        let mem = Arc::new(GuestMemory::heap(cfg.mem_size));
        let stop = AtomicBool::new(false);
        let out = run(
            &hsm,
            &cfg,
            mem.clone(),
            &boot_files(),
            0b1100,
            console(),
            &stop,
        )
        .unwrap();
        assert_eq!(out, Stopped::Guest(VmExit::PowerOff));
        let calls = hsm.calls();
        let rt = (GuestFlags::RT
            | GuestFlags::LAPIC_PASSTHROUGH
            | GuestFlags::IO_COMPLETION_POLLING
            | GuestFlags::PMU_PASSTHROUGH)
            .bits();
        let entry = boot::KERNEL_LOAD + 28 * 512;
        assert_eq!(
            calls,
            [
                Call::Create {
                    name: "vm1".into(),
                    flags: rt,
                    affinity: 0b1100
                },
                Call::Memseg {
                    gpa: 0,
                    len: 64 << 20
                },
                Call::Memseg {
                    gpa: 64 << 20,
                    len: 64 << 20
                },
                Call::Memseg {
                    gpa: 128 << 20,
                    len: 64 << 20
                },
                Call::Memseg {
                    gpa: 192 << 20,
                    len: 64 << 20
                },
                Call::Vdev {
                    slot: 8 << 3,
                    id: acrn_abi::device::VDEV_ID_IVSHMEM
                },
                Call::Regs(0, entry),
                Call::CreateClient,
                Call::Start,
                Call::Notify(1),
                Call::Pause,
                Call::DestroyClient,
                Call::Destroy,
            ]
        );
        // The ACPI tables are in guest memory at ACRN's address, with 2 vCPUs in the MADT.
        let mut sig = [0u8; 8];
        mem.read(acpi::ACPI_BASE, &mut sig).unwrap();
        assert_eq!(&sig, b"RSD PTR ");
        let madt = acpi::ACPI_BASE + 0x100;
        assert_eq!(mem.read_u32(madt + 4).unwrap(), 44 + 2 * 8 + 12 + 20 + 6);
    }

    #[test]
    fn reset_and_signals_end_the_run_with_the_vm_destroyed() {
        let hsm = FakeHsm::new(1);
        hsm.batches.lock().unwrap().push_back(vec![(
            0,
            ACRN_IOREQ_TYPE_PORTIO,
            pio_write(RESET_PORT.into(), 1, 6),
        )]);
        let cfg = config("--virtio_poll 1000000 vm");
        let stop = AtomicBool::new(false);
        let mem = Arc::new(GuestMemory::heap(cfg.mem_size));
        let out = run(&hsm, &cfg, mem.clone(), &boot_files(), 0, console(), &stop).unwrap();
        assert_eq!(out, Stopped::Guest(VmExit::Reset));
        assert_eq!(hsm.calls().last(), Some(&Call::Destroy));

        let hsm = FakeHsm::new(1);
        stop.store(true, Ordering::Release);
        let out = run(&hsm, &cfg, mem, &boot_files(), 0, console(), &stop).unwrap();
        assert_eq!(out, Stopped::Signal);
        assert_eq!(hsm.calls().last(), Some(&Call::Destroy));
    }

    #[test]
    fn failures_after_create_still_destroy_the_vm() {
        let hsm = FakeHsm {
            fail_memseg: true,
            ..FakeHsm::new(1)
        };
        let cfg = config("vm");
        let stop = AtomicBool::new(false);
        let mem = Arc::new(GuestMemory::heap(cfg.mem_size));
        let e = run(&hsm, &cfg, mem.clone(), &boot_files(), 0, console(), &stop).unwrap_err();
        assert!(e.to_string().starts_with("SET_MEMSEG"), "{e}");
        assert_eq!(hsm.calls().last(), Some(&Call::Destroy));

        // A kernel that does not fit fails after CREATE_VM too.
        let hsm = FakeHsm::new(1);
        let mut big = boot_files();
        big.kernel = fake_bzimage(27, 0x1000, 0x1000_0000);
        let e = run(&hsm, &cfg, mem.clone(), &big, 0, console(), &stop).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        assert_eq!(hsm.calls().last(), Some(&Call::Destroy));

        // Device errors come before anything is created.
        let hsm = FakeHsm::new(1);
        let cfg = config("-s 3,virtio-blk,/nonexistent/disk.img vm");
        let e = run(&hsm, &cfg, mem, &boot_files(), 0, console(), &stop).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/disk.img"), "{e}");
        assert!(hsm.calls().is_empty());
    }

    #[test]
    fn passthrough_is_assigned_and_given_back() {
        let root = std::env::temp_dir().join(format!("acrn-dm-vmpt-{}", std::process::id()));
        let host = crate::cli::PciAddr {
            bus: 0,
            dev: 0x1f,
            func: 3,
        };
        crate::devices::passthru::tests::fake_sysfs(&root, host, None);
        let hsm = FakeHsm::new(1);
        hsm.batches.lock().unwrap().push_back(vec![(
            0,
            ACRN_IOREQ_TYPE_PORTIO,
            pio_write(PM1A_CNT_ADDR.into(), 2, (5 << 10) | (1 << 13)),
        )]);
        // ACRN's scripts add enable_ptm for Ethernet controllers: this one has no PTM.
        let cfg = config("-s 6,passthru,00/1f/3,enable_ptm vm");
        let mem = Arc::new(GuestMemory::heap(cfg.mem_size));
        let stop = AtomicBool::new(false);
        let mut con = console();
        con.pci_sysfs = root.clone();
        run(&hsm, &cfg, mem, &boot_files(), 0, con, &stop).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let calls = hsm.calls();
        let phys = (0x1f << 3) | 3;
        let at = |c: &Call| calls.iter().position(|x| x == c).unwrap();
        let assign = at(&Call::Assign(6 << 3, phys));
        let intr = at(&Call::PtIntr(phys, 16, 19));
        let start = at(&Call::Start);
        let reset = at(&Call::ResetPtIntr(phys));
        let deassign = at(&Call::Deassign(6 << 3, phys));
        let destroy = at(&Call::Destroy);
        assert!(assign < intr && intr < start, "{calls:?}");
        assert!(
            start < reset && reset < deassign && deassign < destroy,
            "{calls:?}"
        );
    }

    #[test]
    fn a_signal_while_the_guest_is_idle_ends_a_blocked_attach() {
        let hsm = FakeHsm {
            block_when_idle: true,
            ..FakeHsm::new(1)
        };
        let cfg = config("vm");
        let mem = Arc::new(GuestMemory::heap(cfg.mem_size));
        let stop = AtomicBool::new(false);
        let out = std::thread::scope(|s| {
            let runner = s.spawn(|| run(&hsm, &cfg, mem, &boot_files(), 0, console(), &stop));
            std::thread::sleep(std::time::Duration::from_millis(100));
            stop.store(true, Ordering::Release);
            runner.join().unwrap()
        });
        assert_eq!(out.unwrap(), Stopped::Signal);
        assert_eq!(hsm.calls().last(), Some(&Call::Destroy));
    }

    #[test]
    fn create_is_retried_as_acrn_does() {
        use crate::vmm::VmHandle;
        let hsm = FakeHsm::new(1);
        *hsm.create_failures.lock().unwrap() = 2;
        let mut cv = AcrnVmCreation::default();
        let vm = VmHandle::create(&hsm, &mut cv, 3, std::time::Duration::ZERO).unwrap();
        assert_eq!(vm.vmid, 1);
        drop(vm);
        let creates = hsm
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Create { .. }))
            .count();
        assert_eq!(creates, 3);

        let hsm = FakeHsm::new(1);
        *hsm.create_failures.lock().unwrap() = 3;
        let e = VmHandle::create(&hsm, &mut cv, 3, std::time::Duration::ZERO)
            .err()
            .unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
        assert!(!hsm.calls().contains(&Call::Destroy), "nothing was created");
    }

    #[test]
    fn the_interrupt_storm_monitor_delays_and_restores() {
        let hsm = FakeHsm {
            block_when_idle: true,
            ..FakeHsm::new(1)
        };
        // Probe every second; the fake's IRQ 33 grows by 10^6 per probe, above 1000/s.
        let cfg = config("--intr_monitor 1000,1,5,50 vm");
        let mem = Arc::new(GuestMemory::heap(cfg.mem_size));
        let stop = AtomicBool::new(false);
        let out = std::thread::scope(|s| {
            let runner = s.spawn(|| run(&hsm, &cfg, mem, &boot_files(), 0, console(), &stop));
            std::thread::sleep(std::time::Duration::from_millis(2500));
            stop.store(true, Ordering::Release);
            runner.join().unwrap()
        });
        assert_eq!(out.unwrap(), Stopped::Signal);
        let monitor: Vec<Call> = hsm
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Call::IntrMonitor(..)))
            .collect();
        // Probe at 1 s and 2 s, storm: delay 5 ms, then back to 0 after 50 ms.
        assert_eq!(
            monitor[..4],
            [
                Call::IntrMonitor(0, 0),
                Call::IntrMonitor(0, 0),
                Call::IntrMonitor(1, 5),
                Call::IntrMonitor(1, 0)
            ]
        );
        assert_eq!(hsm.calls().last(), Some(&Call::Destroy));
    }

    #[test]
    fn too_many_vcpus_are_refused() {
        let hsm = FakeHsm::new(17);
        let cfg = config("vm");
        let stop = AtomicBool::new(false);
        let mem = Arc::new(GuestMemory::heap(cfg.mem_size));
        let e = run(&hsm, &cfg, mem, &boot_files(), 0, console(), &stop).unwrap_err();
        assert!(matches!(e, VmError::VcpuCount(17)));
        assert_eq!(hsm.calls().last(), Some(&Call::Destroy));
    }

    #[test]
    fn madt_lapic_numbering() {
        let mut madt = vec![0u8; 44];
        madt.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // pCPU0 = LAPIC 0
        madt.extend_from_slice(&[0, 8, 1, 2, 1, 0, 0, 0]); // pCPU1 = LAPIC 2
        madt.extend_from_slice(&[0, 8, 2, 4, 0, 0, 0, 0]); // disabled
        madt.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0]); // IOAPIC
        madt.extend_from_slice(&[9, 16, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0]); // x2APIC 6
        assert_eq!(madt_lapic_ids(&madt), [0, 2, 6]);
        assert_eq!(affinity_bitmap(&[2, 6], &madt).unwrap(), 0b110);
        let e = affinity_bitmap(&[4], &madt).unwrap_err().to_string();
        assert!(e.contains("LAPIC ID 4") && e.contains("[0, 2, 6]"), "{e}");
        // A truncated table does not panic.
        assert_eq!(madt_lapic_ids(&madt[..56]), [0]);
    }

    #[test]
    fn meminfo_parsing() {
        let m =
            "MemTotal: 1000 kB\nMemAvailable:  2048 kB\nHugePages_Free: 3\nHugepagesize: 2048 kB\n";
        assert_eq!(available_memory(m), Some(2048 * 1024 + 3 * 2048 * 1024));
        assert_eq!(available_memory("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn memsegs_cover_low_and_high_memory_in_chunks() {
        let mem = GuestMemory::heap((2u64 << 30) + (96 << 20));
        let segs = memsegs(&mem);
        assert_eq!(segs.len(), 32 + 2);
        assert!(segs
            .iter()
            .all(|s| s.r#type == ACRN_MEMMAP_RAM && s.attr == 7));
        let high: Vec<_> = segs.iter().filter(|s| s.user_vm_pa >= 1 << 32).collect();
        assert_eq!(high[0].user_vm_pa, 1 << 32);
        assert_eq!(high[0].len + high[1].len, 96 << 20);
        let total: u64 = segs.iter().map(|s| s.len).sum();
        assert_eq!(total, (2u64 << 30) + (96 << 20));
        // 32 GiB would need 512 pieces of 64 MiB: the pieces grow instead.
        let segs = memsegs_of(&[
            (0, 0x7000_0000_0000, 2 << 30),
            (1 << 32, 0x7000_8000_0000, 30 << 30),
        ]);
        assert!(segs.len() as u64 <= MAX_RAM_MEMSEGS, "{}", segs.len());
        assert_eq!(segs.iter().map(|s| s.len).sum::<u64>(), 32 << 30);
    }

    #[test]
    fn missing_files_are_named() {
        let e = BootFiles::read(&config("vm")).err().unwrap();
        assert!(matches!(e, VmError::NoKernel));
        let e = BootFiles::read(&config("--kernel /nonexistent/bzImage vm"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("kernel /nonexistent/bzImage"), "{e}");
        let junk = std::env::temp_dir().join(format!("acrn-dm-junk-{}", std::process::id()));
        std::fs::write(&junk, b"MZ not a kernel").unwrap();
        let e = BootFiles::read(&config(&format!("--kernel {} vm", junk.display())))
            .err()
            .unwrap();
        std::fs::remove_file(&junk).unwrap();
        assert!(e.to_string().contains("not a Linux bzImage"), "{e}");
    }
}
