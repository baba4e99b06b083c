//! The emulated machine a board describes, the emulator command lines that boot an image on
//! it, and running them with the console streamed and a time limit.
//!
//! * AMD boards (CPU capability `svm`) boot in QEMU TCG `-cpu EPYC`, which emulates SVM with
//!   nested paging; Intel boards (`vmx`) boot in Bochs `model=tigerlake`, because QEMU TCG has
//!   no VMX. `run --emulator` overrides the choice.
//! * The machine size comes from the board: one emulated CPU per board pCPU, and RAM up to the
//!   board's highest RAM address rounded up to 128 MiB (qemu-epyc: 4 CPUs, 2 GiB;
//!   bochs-tigerlake: 4 CPUs, 1 GiB), so the hypervisor's check of the machine against its
//!   board passes.
//! * PCI functions of the board that QEMU emulates but q35 does not create by itself (by
//!   their IDs, [`QEMU_PCI_DEVICES`]) get their `-device`, at the board's address and on the
//!   bus the board puts them on: a bridge's `id=` names its secondary bus, which the devices
//!   behind it give as their `bus=`.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::board::{Bdf, Board, DeviceNode, IommuKind, NodeKind};

use super::ImageError;

/// Where the console transcript of the last run is kept, in the build directory.
pub const CONSOLE_LOG: &str = "console.log";
/// Bochs' files in the build directory.
pub const BOCHSRC: &str = "bochsrc";
pub const BOCHS_CMDS: &str = "bochs.cmds";
/// The bochsrc of a run with console input (COM1 on a socket).
const BOCHSRC_INPUT: &str = "bochsrc.input";
const BOCHS_COM1: &str = "com1.txt";
const BOCHS_LOG: &str = "bochs.log";
const BOCHS_OUT: &str = "bochs.out";
const QEMU_LOG: &str = "qemu.log";

const APT_HINT: &str = "apt-get install -y qemu-system-x86 bochs bochsbios vgabios grub-pc-bin xorriso mtools (or run scripts/setup.sh)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Emulator {
    Qemu,
    Bochs,
}

impl Emulator {
    pub fn name(self) -> &'static str {
        match self {
            Emulator::Qemu => "qemu",
            Emulator::Bochs => "bochs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Vendor {
    Amd,
    Intel,
}

/// The emulated machine for a board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    pub vendor: Vendor,
    pub cpus: usize,
    pub mem_mib: u64,
    /// QEMU runs all vCPUs on one host thread (`-accel tcg,thread=single`): set for scenarios
    /// with a Service VM, whose post-launched VMs wait on it for every I/O request. Round-robin
    /// TCG switches vCPUs at each PAUSE, so a request is served in microseconds; with a thread
    /// per vCPU on a small host each round trip waits for the host scheduler.
    pub single_thread_tcg: bool,
    /// The board's IOMMU ([`Board::iommu`]): QEMU gets its Intel IOMMU with 48-bit (4-level)
    /// second-level tables for VT-d, its AMD IOMMU for AMD-Vi.
    pub iommu: Option<IommuKind>,
    /// The values of QEMU's `-device` for the board's PCI functions that q35 does not create
    /// by itself ([`qemu_pci_devices`]), parents before the devices behind them.
    pub pci_devices: Vec<String>,
}

/// PCI devices QEMU emulates that its q35 machine does not create by itself, by vendor and
/// device ID: `run` adds each one the board lists.
pub const QEMU_PCI_DEVICES: &[(u16, u16, &str)] = &[
    // PCI Express to PCI bridge: conventional PCI slots behind a PCIe port.
    (0x1b36, 0x000e, "pcie-pci-bridge"),
    // QEMU's educational device: a conventional PCI function with MSI and DMA. Its default
    // 28-bit DMA mask would fold every address above 256 MiB into the first 256 MiB; a
    // device that reaches all addresses is what a guest's DMA must be confined against.
    (0x1234, 0x11e8, "edu,dma_mask=0xffffffffffffffff"),
];

/// The name QEMU gives the root bus of q35.
const Q35_ROOT_BUS: &str = "pcie.0";

/// QEMU's `-device` values for the board's functions listed in [`QEMU_PCI_DEVICES`]: each at
/// its device/function (`addr=DD.F`) on its bus (`bus=`), found by walking the device tree
/// from the host bridge's bus (q35's `pcie.0`). A function with a PCI bus below it gets an
/// `id=` (`bridge-BB.DD.F`, from its BDF) that QEMU gives its secondary bus, and the
/// functions on that bus follow it. Functions of other IDs (q35's own, or ones QEMU cannot
/// be told about) are left out, and so is whatever sits behind them.
pub fn qemu_pci_devices(board: &Board) -> Vec<String> {
    let mut out = Vec::new();
    let root = board
        .device_nodes()
        .find(|n| is_pci_bus(n) && n.address.unwrap_or(0) == 0);
    if let Some(root) = root {
        qemu_bus_devices(root, Q35_ROOT_BUS, &mut out);
    }
    out
}

fn is_pci_bus(n: &DeviceNode) -> bool {
    n.kind == NodeKind::Bus && n.bus_type.as_deref() == Some("pci")
}

/// The `-device` values for the known functions directly on `bus`, which QEMU calls `bus_id`,
/// and for those behind them.
fn qemu_bus_devices(bus: &DeviceNode, bus_id: &str, out: &mut Vec<String>) {
    let known: Vec<(&DeviceNode, Bdf, &str)> = bus
        .children
        .iter()
        .filter(|n| n.kind == NodeKind::Device)
        .filter_map(|n| {
            let (bdf, vendor, device) = (n.bdf?, n.vendor?, n.identifier?);
            let model = QEMU_PCI_DEVICES
                .iter()
                .find(|(v, d, _)| (*v, *d) == (vendor, device))?
                .2;
            Some((n, bdf, model))
        })
        .collect();
    for &(node, bdf, model) in &known {
        let mut arg = model.to_string();
        let secondary = node.children.iter().find(|c| is_pci_bus(c));
        let id = format!(
            "bridge-{:02x}.{:02x}.{:x}",
            bdf.bus, bdf.device, bdf.function
        );
        if secondary.is_some() {
            arg += &format!(",id={id}");
        }
        arg += &format!(",bus={bus_id},addr={:02x}.{:x}", bdf.device, bdf.function);
        // Function 0 of a slot whose other functions are emulated too.
        if bdf.function == 0
            && known
                .iter()
                .any(|(_, o, _)| o.device == bdf.device && o.function != 0)
        {
            arg += ",multifunction=on";
        }
        out.push(arg);
        if let Some(sec) = secondary {
            qemu_bus_devices(sec, &id, out);
        }
    }
}

impl Machine {
    pub fn of_board(board: &Board) -> Machine {
        let caps = |id: &str| {
            board
                .processors
                .models
                .iter()
                .any(|m| m.capabilities.iter().any(|c| c == id))
        };
        let vendor = if caps("svm") {
            Vendor::Amd
        } else if caps("vmx") {
            Vendor::Intel
        } else if board.legacy.cpu_brand.contains("AMD") {
            Vendor::Amd
        } else {
            Vendor::Intel
        };
        // The machine's memory size is its RAM: firmware leaves holes below 1 MiB and under
        // 4 GiB, and QEMU puts what does not fit below its PCI hole above 4 GiB.
        const STEP: u64 = 128 << 20;
        let mem = board.total_ram().div_ceil(STEP).max(1) * STEP;
        Machine {
            vendor,
            cpus: board.pcpus().len().max(1),
            mem_mib: mem >> 20,
            single_thread_tcg: false,
            iommu: board.iommu(),
            pci_devices: qemu_pci_devices(board),
        }
    }

    /// The emulator that can run a hypervisor on this vendor's CPU.
    pub fn default_emulator(&self) -> Emulator {
        match self.vendor {
            Vendor::Amd => Emulator::Qemu,
            Vendor::Intel => Emulator::Bochs,
        }
    }

    /// `qemu-system-x86_64` arguments that boot `iso`. `-no-reboot` makes a machine reset (a
    /// hypervisor triple fault, a guest's reboot passed through) end the run instead of
    /// looping through the BIOS.
    pub fn qemu_args(&self, iso: &Path) -> Vec<String> {
        let mem = if self.mem_mib.is_multiple_of(1024) {
            format!("{}G", self.mem_mib / 1024)
        } else {
            format!("{}M", self.mem_mib)
        };
        let cpu = match self.vendor {
            Vendor::Amd => "EPYC",
            // TCG has no VMX: this boots, but the hypervisor will find no virtualization.
            Vendor::Intel => "Skylake-Client",
        };
        let accel = if self.single_thread_tcg {
            "tcg,thread=single"
        } else {
            "tcg"
        };
        ["-machine", "q35", "-accel", accel, "-cpu", cpu, "-smp"]
            .iter()
            .map(|s| s.to_string())
            .chain([self.cpus.to_string(), "-m".into(), mem])
            .chain(
                [
                    "-nographic",
                    "-serial",
                    "stdio",
                    "-monitor",
                    "none",
                    "-no-reboot",
                    "-device",
                    "isa-debug-exit,iobase=0xf4,iosize=0x04",
                ]
                .iter()
                .map(|s| s.to_string()),
            )
            .chain(
                self.iommu
                    .map(|k| {
                        let dev = match k {
                            IommuKind::IntelVtd => "intel-iommu,aw-bits=48",
                            IommuKind::AmdVi => "amd-iommu",
                        };
                        ["-device".to_string(), dev.to_string()]
                    })
                    .into_iter()
                    .flatten(),
            )
            .chain(
                self.pci_devices
                    .iter()
                    .flat_map(|d| ["-device".to_string(), d.clone()]),
            )
            .chain(["-cdrom".to_string()])
            .chain([iso.display().to_string()])
            .collect()
    }

    /// A bochsrc that boots `iso` from CD with COM1 going to a file in `dir`.
    pub fn bochsrc(&self, iso: &Path, dir: &Path) -> String {
        let default = match self.vendor {
            Vendor::Intel => "tigerlake",
            // Bochs' ryzen model hangs Linux; zambezi has SVM with NPT and boots it.
            Vendor::Amd => "zambezi",
        };
        // ACRN_BOCHS_MODEL overrides the CPU model: Debian's Linux hangs on tigerlake even
        // without a hypervisor, and boots on corei7_skylake_x. Only a plain name is taken.
        let model = std::env::var("ACRN_BOCHS_MODEL")
            .ok()
            .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or_else(|| default.to_string());
        // `sound: driver=dummy`: Bochs 2.7 aborts with "buffer overflow detected" on a machine
        // without sound otherwise. The package has no nogui display; rfb without waiting for a
        // client is headless (it binds a TCP port in 5900-5949).
        format!(
            "megs: {mem}\n\
             romimage: file=/usr/share/bochs/BIOS-bochs-latest\n\
             vgaromimage: file=/usr/share/vgabios/vgabios.bin\n\
             cpu: model={model}, count=1:{cpus}:1, ips=200000000, reset_on_triple_fault=0\n\
             pci: enabled=1, chipset=i440fx\n\
             ata0-master: type=cdrom, path={iso}, status=inserted\n\
             boot: cdrom\n\
             display_library: rfb, options=\"timeout=0\"\n\
             com1: enabled=1, mode=file, dev={com1}\n\
             port_e9_hack: enabled=1\n\
             speaker: enabled=0\n\
             sound: driver=dummy\n\
             clock: sync=none, time0=local\n\
             log: {log}\n\
             panic: action=fatal\n\
             error: action=report\n\
             info: action=report\n\
             debug: action=ignore\n",
            mem = self.mem_mib,
            cpus = self.cpus,
            iso = iso.display(),
            com1 = dir.join(BOCHS_COM1).display(),
            log = dir.join(BOCHS_LOG).display(),
        )
    }
}

/// The command line that runs `emu` on the image in `dir`, as the manifest records it.
pub fn command_line(emu: Emulator, machine: &Machine, dir: &Path) -> Vec<String> {
    match emu {
        Emulator::Qemu => std::iter::once("qemu-system-x86_64".to_string())
            .chain(machine.qemu_args(&dir.join(super::ISO)))
            .collect(),
        Emulator::Bochs => vec![
            "bochs".into(),
            "-q".into(),
            "-f".into(),
            dir.join(BOCHSRC).display().to_string(),
            "-rc".into(),
            dir.join(BOCHS_CMDS).display().to_string(),
        ],
    }
}

/// The contents of the Bochs command file: leave the internal debugger's prompt at once.
pub const BOCHS_CMDS_TEXT: &str = "c\nquit\n";

/// Looks for a text (the power-off line, the shell prompt) in console output that arrives in
/// pieces.
struct Watch {
    needle: &'static [u8],
    tail: Vec<u8>,
    seen: bool,
}

impl Watch {
    fn new(needle: &'static str) -> Watch {
        Watch {
            needle: needle.as_bytes(),
            tail: Vec::new(),
            seen: false,
        }
    }

    fn power_off() -> Watch {
        Watch::new(acrn_static_config::POWER_OFF_LINE)
    }

    fn feed(&mut self, data: &[u8]) {
        if self.seen {
            return;
        }
        let needle = self.needle;
        self.tail.extend_from_slice(data);
        self.seen = self.tail.windows(needle.len()).any(|w| w == needle);
        let keep = self.tail.len().saturating_sub(needle.len());
        self.tail.drain(..keep);
    }
}

/// Pacing of `--console-input`: the hypervisor takes the UART's bytes every few milliseconds
/// of guest time and a 16550 holds 16, so bytes go one at a time with a gap, and each line
/// (or Ctrl+Space) gets time for the command to run before the next one arrives.
const INPUT_BYTE_GAP: Duration = Duration::from_millis(20);
const INPUT_LINE_GAP: Duration = Duration::from_millis(400);

/// Types `bytes` into the console once `go` fires (the shell's prompt was seen), then keeps
/// the console's input open until the run ends (`go`'s sender is dropped).
fn type_input(mut input: Box<dyn Write + Send>, bytes: Vec<u8>, go: mpsc::Receiver<()>) {
    if go.recv().is_err() {
        return;
    }
    for b in bytes {
        if input.write_all(&[b]).and_then(|_| input.flush()).is_err() {
            return;
        }
        std::thread::sleep(if matches!(b, b'\n' | b'\r' | 0) {
            INPUT_LINE_GAP
        } else {
            INPUT_BYTE_GAP
        });
    }
    let _ = go.recv();
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The hypervisor said every VM had stopped and switched the machine off; the emulator
    /// then exited with this status (Bochs reports its ACPI soft power-off as a failure).
    PoweredOff(Option<i32>),
    /// The emulator exited by itself with this status (`None`: killed by a signal). QEMU's
    /// isa-debug-exit gives `(value << 1) | 1`; Bochs exits 1 after the shutdown port.
    Exited(Option<i32>),
    /// The time limit was reached and the emulator was stopped.
    TimedOut,
    /// Writing the console failed (the reader went away); the emulator was stopped.
    OutputClosed,
}

fn require(tool: &str) -> Result<(), ImageError> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(ImageError::MissingTool {
            tool: tool.into(),
            hint: APT_HINT.into(),
        })
    }
}

/// Boots the image in `dir` (written by `build`) and copies the console to `out` (and to
/// `dir/console.log`) until the emulator exits or `timeout` passes. `input` is typed into the
/// console once the hypervisor shell shows its prompt (QEMU: its standard input; Bochs: COM1
/// over a local TCP connection instead of the file).
pub fn run(
    emu: Emulator,
    machine: &Machine,
    dir: &Path,
    timeout: Option<Duration>,
    input: Option<Vec<u8>>,
    out: &mut dyn Write,
) -> Result<RunOutcome, ImageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Io { path, source }
    };
    let log_path = dir.join(CONSOLE_LOG);
    let mut transcript = fs::File::create(&log_path).map_err(io(&log_path))?;
    let mut argv = command_line(emu, machine, dir);
    require(&argv[0])?;
    let mut cmd = Command::new(&argv[0]);
    let mut typing: Option<Box<dyn Write + Send>> = None;
    let mut console: Box<dyn ConsoleSource> = match emu {
        Emulator::Qemu => {
            let err = dir.join(QEMU_LOG);
            cmd.args(&argv[1..])
                .stdin(if input.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(fs::File::create(&err).map_err(io(&err))?);
            let mut child = spawn(&mut cmd, &argv[0])?;
            if let Some(stdin) = child.stdin.take() {
                typing = Some(Box::new(stdin));
            }
            let stdout = child.stdout.take().expect("stdout is piped");
            Box::new(PipeSource::new(child, stdout))
        }
        Emulator::Bochs => {
            for f in [
                "/usr/share/bochs/BIOS-bochs-latest",
                "/usr/share/vgabios/vgabios.bin",
            ] {
                if !Path::new(f).is_file() {
                    return Err(ImageError::MissingTool {
                        tool: f.into(),
                        hint: APT_HINT.into(),
                    });
                }
            }
            let com1 = dir.join(BOCHS_COM1);
            fs::write(&com1, b"").map_err(io(&com1))?;
            let bout = dir.join(BOCHS_OUT);
            let bout_file = fs::File::create(&bout).map_err(io(&bout))?;
            // Typing needs COM1 both ways: Bochs connects it to our listening socket.
            let listener = match input {
                Some(_) => {
                    let local = std::net::Ipv4Addr::LOCALHOST;
                    let l = std::net::TcpListener::bind((local, 0)).map_err(io(dir))?;
                    let port = l.local_addr().map_err(io(dir))?.port();
                    let rc_path = dir.join(BOCHSRC_INPUT);
                    let rc =
                        fs::read_to_string(dir.join(BOCHSRC)).map_err(io(&dir.join(BOCHSRC)))?;
                    fs::write(&rc_path, with_socket_com1(&rc, port)).map_err(io(&rc_path))?;
                    if let Some(f) = argv.iter().position(|a| a == "-f") {
                        argv[f + 1] = rc_path.display().to_string();
                    }
                    Some(l)
                }
                None => None,
            };
            // Bochs 2.7 aborts while reading its config under a UTF-8 locale.
            cmd.args(&argv[1..])
                .stdin(Stdio::null())
                .env("LANG", "C")
                .env("LC_ALL", "C")
                .stdout(bout_file.try_clone().map_err(io(&bout))?)
                .stderr(bout_file);
            let child = spawn(&mut cmd, &argv[0])?;
            match listener {
                Some(l) => {
                    let (source, writer) = connect_bochs_com1(child, l, dir)?;
                    typing = Some(writer);
                    Box::new(source)
                }
                None => Box::new(FileSource {
                    child,
                    path: com1,
                    offset: 0,
                }),
            }
        }
    };
    let (go, typed) = match (typing, input) {
        (Some(w), Some(bytes)) => {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || type_input(w, bytes, rx));
            (Some(tx), true)
        }
        _ => (None, false),
    };
    let mut prompt = Watch::new(acrn_static_config::SHELL_PROMPT);
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut power_off = Watch::power_off();
    let outcome = loop {
        let (data, exited) = console.poll(Duration::from_millis(50));
        if !data.is_empty() {
            power_off.feed(&data);
            if typed && !prompt.seen {
                prompt.feed(&data);
                if prompt.seen {
                    if let Some(go) = &go {
                        let _ = go.send(());
                    }
                }
            }
            let _ = transcript.write_all(&data);
            if out.write_all(&data).and_then(|_| out.flush()).is_err() {
                console.stop();
                break RunOutcome::OutputClosed;
            }
        }
        if let Some(status) = exited {
            // The emulator is gone: copy what is left of its console, then report.
            let rest = console.drain();
            power_off.feed(&rest);
            let _ = transcript.write_all(&rest);
            let _ = out.write_all(&rest).and_then(|_| out.flush());
            break if power_off.seen {
                RunOutcome::PoweredOff(status)
            } else {
                RunOutcome::Exited(status)
            };
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            console.stop();
            let rest = console.drain();
            let _ = transcript.write_all(&rest);
            let _ = out.write_all(&rest).and_then(|_| out.flush());
            break RunOutcome::TimedOut;
        }
    };
    Ok(outcome)
}

fn spawn(cmd: &mut Command, tool: &str) -> Result<Child, ImageError> {
    cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ImageError::MissingTool {
                tool: tool.into(),
                hint: APT_HINT.into(),
            }
        } else {
            ImageError::Io {
                path: PathBuf::from(tool),
                source: e,
            }
        }
    })
}

/// The console of a running emulator.
trait ConsoleSource {
    /// New console bytes (waiting up to `wait`), and the exit status once the emulator exited.
    fn poll(&mut self, wait: Duration) -> (Vec<u8>, Option<Option<i32>>);
    /// Whatever is still buffered after the emulator ended.
    fn drain(&mut self) -> Vec<u8>;
    /// Stops the emulator.
    fn stop(&mut self);
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// QEMU's `-serial stdio`: a thread reads the pipe.
struct PipeSource {
    child: Child,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl PipeSource {
    fn new(child: Child, mut stdout: impl Read + Send + 'static) -> PipeSource {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        PipeSource { child, rx }
    }
}

impl ConsoleSource for PipeSource {
    fn poll(&mut self, wait: Duration) -> (Vec<u8>, Option<Option<i32>>) {
        let mut data = self.rx.recv_timeout(wait).unwrap_or_default();
        while let Ok(more) = self.rx.try_recv() {
            data.extend(more);
        }
        let exited = self.child.try_wait().ok().flatten().map(|s| s.code());
        (data, exited)
    }

    fn drain(&mut self) -> Vec<u8> {
        // The reader ends at EOF, which follows the exit (or the kill).
        let mut data = Vec::new();
        while let Ok(more) = self.rx.recv_timeout(Duration::from_millis(500)) {
            data.extend(more);
        }
        data
    }

    fn stop(&mut self) {
        kill(&mut self.child);
    }
}

/// Bochs' `com1: mode=file`: follow the file as it grows.
struct FileSource {
    child: Child,
    path: PathBuf,
    offset: u64,
}

impl FileSource {
    fn read_new(&mut self) -> Vec<u8> {
        use std::io::{Seek, SeekFrom};
        let mut data = Vec::new();
        if let Ok(mut f) = fs::File::open(&self.path) {
            if f.seek(SeekFrom::Start(self.offset)).is_ok() && f.read_to_end(&mut data).is_ok() {
                self.offset += data.len() as u64;
            }
        }
        data
    }
}

impl ConsoleSource for FileSource {
    fn poll(&mut self, wait: Duration) -> (Vec<u8>, Option<Option<i32>>) {
        std::thread::sleep(wait);
        let exited = self.child.try_wait().ok().flatten().map(|s| s.code());
        (self.read_new(), exited)
    }

    fn drain(&mut self) -> Vec<u8> {
        self.read_new()
    }

    fn stop(&mut self) {
        kill(&mut self.child);
    }
}

/// How long Bochs may take to start and connect its COM1.
const BOCHS_CONNECT: Duration = Duration::from_secs(60);

/// Waits for Bochs' `com1: mode=socket-client` to connect to `listener`: its console is then
/// read from the socket, and writing the socket types into the UART.
fn connect_bochs_com1(
    mut child: Child,
    listener: std::net::TcpListener,
    dir: &Path,
) -> Result<(PipeSource, Box<dyn Write + Send>), ImageError> {
    let io = |source| ImageError::Io {
        path: dir.join(BOCHSRC_INPUT),
        source,
    };
    listener.set_nonblocking(true).map_err(io)?;
    let start = Instant::now();
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                kill(&mut child);
                return Err(io(e));
            }
        }
        let exited = child.try_wait().ok().flatten().is_some();
        if exited || start.elapsed() > BOCHS_CONNECT {
            kill(&mut child);
            return Err(ImageError::CommandFailed {
                what: "bochs (connecting COM1 to the console input)".into(),
                status: format!(
                    "{}; see {}",
                    if exited { "exited" } else { "no connection" },
                    dir.join(BOCHS_OUT).display()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stream.set_nonblocking(false).map_err(io)?;
    let writer = stream.try_clone().map_err(io)?;
    Ok((PipeSource::new(child, stream), Box::new(writer)))
}

/// `rc` with COM1 connected to TCP `port` on this host instead of the file.
fn with_socket_com1(rc: &str, port: u16) -> String {
    rc.lines()
        .map(|l| {
            if l.starts_with("com1:") {
                format!("com1: enabled=1, mode=socket-client, dev=127.0.0.1:{port}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

impl Drop for PipeSource {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_power_off_line_is_found_across_pieces() {
        let line = format!("[hv] {}\n", acrn_static_config::POWER_OFF_LINE);
        let (a, b) = line.as_bytes().split_at(12);
        let mut w = Watch::power_off();
        w.feed(b"[PRE_VM0] verdict: PASS\n");
        w.feed(a);
        assert!(!w.seen);
        w.feed(b"");
        w.feed(b);
        assert!(w.seen);
        let mut other = Watch::power_off();
        other.feed(b"[hv] every VM has stopped; powering of");
        assert!(!other.seen);
    }

    #[test]
    fn console_input_moves_com1_to_a_socket() {
        let m = Machine {
            vendor: Vendor::Intel,
            cpus: 4,
            mem_mib: 1024,
            single_thread_tcg: false,
            iommu: None,
            pci_devices: Vec::new(),
        };
        let rc = m.bochsrc(Path::new("/o/acrn.iso"), Path::new("/o"));
        let moved = with_socket_com1(&rc, 4567);
        assert!(moved.contains("com1: enabled=1, mode=socket-client, dev=127.0.0.1:4567\n"));
        assert!(!moved.contains("com1.txt"));
        assert_eq!(moved.lines().count(), rc.lines().count());
    }

    #[test]
    fn machines_of_our_boards() {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let machine = |name: &str| {
            let path = configs.join(name).join(format!("{name}.xml"));
            Machine::of_board(&crate::board::load_board(&path).unwrap())
        };
        let q = machine("qemu-epyc");
        assert_eq!((q.vendor, q.cpus, q.mem_mib), (Vendor::Amd, 4, 2048));
        assert_eq!(
            q.iommu,
            Some(IommuKind::IntelVtd),
            "qemu-epyc's DRHD_INFO lists QEMU's intel-iommu"
        );
        assert_eq!(q.default_emulator(), Emulator::Qemu);
        // qemu-epyc lists the PCIe-to-PCI bridge at 00:04.0 with edu behind it (01:01.0);
        // qemu-epyc-amdvi has neither (see configs/README.md).
        assert_eq!(
            machine("qemu-epyc").pci_devices,
            [
                "pcie-pci-bridge,id=bridge-00.04.0,bus=pcie.0,addr=04.0",
                "edu,dma_mask=0xffffffffffffffff,bus=bridge-00.04.0,addr=01.0",
            ]
        );
        assert!(machine("qemu-epyc-amdvi").pci_devices.is_empty());
        let b = machine("bochs-tigerlake");
        assert_eq!((b.vendor, b.cpus, b.mem_mib), (Vendor::Intel, 4, 1024));
        assert_eq!(b.iommu, None);
        assert!(b.pci_devices.is_empty());
        assert_eq!(b.default_emulator(), Emulator::Bochs);
    }

    #[test]
    fn machine_memory_is_the_ram_not_its_top_address() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/qemu-epyc/qemu-epyc.xml");
        let text = fs::read_to_string(path).unwrap();
        let low =
            "<range start=\"0x0000000000100000\" end=\"0x000000007ffdefff\" size=\"2146299904\"/>";
        let high =
            "<range start=\"0x0000000100000000\" end=\"0x000000017fffffff\" size=\"2147483648\"/>";
        assert!(text.contains(low));
        let text = text.replacen(low, &format!("{low}{high}"), 1);
        let board = crate::board::load_board_str(Path::new("4g.xml"), &text).unwrap();
        // q35 with -m 4G: 2 GiB below the PCI hole, 2 GiB from 4 GiB to 6 GiB.
        assert_eq!(Machine::of_board(&board).mem_mib, 4096);
    }

    #[test]
    fn qemu_line_matches_the_board_comment() {
        let m = Machine {
            vendor: Vendor::Amd,
            cpus: 4,
            mem_mib: 2048,
            single_thread_tcg: false,
            iommu: None,
            pci_devices: Vec::new(),
        };
        let args = m.qemu_args(Path::new("/o/acrn.iso")).join(" ");
        assert!(
            args.starts_with("-machine q35 -accel tcg -cpu EPYC -smp 4 -m 2G -nographic"),
            "{args}"
        );
        assert!(args.ends_with("-cdrom /o/acrn.iso"), "{args}");
        assert!(!args.contains("iommu"), "{args}");
        assert_eq!(m.default_emulator(), Emulator::Qemu);
        let vtd = Machine {
            iommu: Some(IommuKind::IntelVtd),
            ..m.clone()
        };
        let args = vtd.qemu_args(Path::new("/o/acrn.iso")).join(" ");
        assert!(
            args.contains(
                "isa-debug-exit,iobase=0xf4,iosize=0x04 -device intel-iommu,aw-bits=48 -cdrom"
            ),
            "{args}"
        );
        let amd = Machine {
            iommu: Some(IommuKind::AmdVi),
            ..m
        };
        let args = amd.qemu_args(Path::new("/o/acrn.iso")).join(" ");
        assert!(
            args.contains("isa-debug-exit,iobase=0xf4,iosize=0x04 -device amd-iommu -cdrom"),
            "{args}"
        );
        assert!(!args.contains("intel-iommu"), "{args}");
    }

    #[test]
    fn a_board_with_ivrs_info_gets_qemus_amd_iommu() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/qemu-epyc/qemu-epyc.xml");
        let text = fs::read_to_string(path).unwrap();
        // qemu-epyc with QEMU's amd-iommu instead of its intel-iommu: no DRHD, one IVHD.
        let start = text.find("<DRHD_INFO>").unwrap();
        let end = text.find("</DRHD_INFO>").unwrap() + "</DRHD_INFO>".len();
        let text = format!(
            "{}<DRHD_INFO>\n\t#define DRHD_COUNT              0U\n\t</DRHD_INFO>\n  <IVRS_INFO>\n\
             \t#define IVHD_COUNT              1U\n\
             \t#define IVHD0_TYPE              0x10U\n\
             \t#define IVHD0_REG_BASE          0xFED80000UL\n\
             \t#define IVHD0_DEVICE_ID         0x18U\n\
             \t#define IVHD0_SEGMENT           0x0U\n\
             \t</IVRS_INFO>{}",
            &text[..start],
            &text[end..]
        );
        let board = crate::board::load_board_str(Path::new("amd-vi.xml"), &text).unwrap();
        assert_eq!(board.iommu(), Some(IommuKind::AmdVi));
        let m = Machine::of_board(&board);
        assert_eq!(m.iommu, Some(IommuKind::AmdVi));
        let args = m.qemu_args(Path::new("/o/acrn.iso")).join(" ");
        // The IOMMU, then the board's devices q35 does not create by itself.
        assert!(
            args.contains("-device amd-iommu -device pcie-pci-bridge,"),
            "{args}"
        );
        assert!(!args.contains("intel-iommu"), "{args}");
    }

    /// configs/qemu-epyc's board with the host bridge's functions replaced by `functions`
    /// (device elements of its bus).
    fn qemu_epyc_with_functions(functions: &str) -> Board {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/qemu-epyc/qemu-epyc.xml");
        let text = fs::read_to_string(path).unwrap();
        let start = text.find("</interrupt_pin_routing>\n").unwrap() + 25;
        let end = text
            .find("      </bus>\n      <device id=\"PNP0103\">")
            .unwrap();
        let text = format!("{}{functions}{}", &text[..start], &text[end..]);
        crate::board::load_board_str(Path::new("functions.xml"), &text).unwrap()
    }

    fn function(address: u32, vendor: u16, device: u16, inner: &str) -> String {
        format!(
            "<device address=\"{address:#x}\"><vendor>{vendor:#06x}</vendor>\
             <identifier>{device:#06x}</identifier>{inner}</device>\n"
        )
    }

    #[test]
    fn qemu_gets_the_boards_bridge_and_the_device_behind_it() {
        // q35's own VGA (00:01.0), the PCIe-to-PCI bridge at 00:04.0 with its secondary bus 1
        // holding edu at 01:01.0 and an e1000 (8086:100e, not one QEMU is told about here).
        let behind = function(0x10000, 0x1234, 0x11e8, "") + &function(0x20000, 0x8086, 0x100e, "");
        let board = qemu_epyc_with_functions(
            &(function(0x10000, 0x1234, 0x1111, "")
                + &function(
                    0x40000,
                    0x1b36,
                    0x000e,
                    &format!("<bus type=\"pci\" address=\"0x1\">{behind}</bus>"),
                )),
        );
        let edu = board.pci_function(Bdf::new(1, 1, 0).unwrap()).unwrap();
        assert_eq!((edu.vendor, edu.identifier), (Some(0x1234), Some(0x11e8)));
        let m = Machine::of_board(&board);
        assert_eq!(
            m.pci_devices,
            [
                "pcie-pci-bridge,id=bridge-00.04.0,bus=pcie.0,addr=04.0",
                "edu,dma_mask=0xffffffffffffffff,bus=bridge-00.04.0,addr=01.0",
            ]
        );
        let args = m.qemu_args(Path::new("/o/acrn.iso")).join(" ");
        assert!(
            args.ends_with(
                "-device intel-iommu,aw-bits=48 \
                 -device pcie-pci-bridge,id=bridge-00.04.0,bus=pcie.0,addr=04.0 \
                 -device edu,dma_mask=0xffffffffffffffff,bus=bridge-00.04.0,addr=01.0 -cdrom /o/acrn.iso"
            ),
            "{args}"
        );
        assert!(!args.contains("1111") && !args.contains("e1000"), "{args}");

        // Two functions of one slot: function 0 says so. A device on the root bus needs no id.
        let behind = function(0x10000, 0x1234, 0x11e8, "") + &function(0x10001, 0x1234, 0x11e8, "");
        let board = qemu_epyc_with_functions(
            &(function(0x50000, 0x1234, 0x11e8, "")
                + &function(
                    0x40000,
                    0x1b36,
                    0x000e,
                    &format!("<bus type=\"pci\" address=\"0x1\">{behind}</bus>"),
                )),
        );
        assert_eq!(
            qemu_pci_devices(&board),
            [
                "edu,dma_mask=0xffffffffffffffff,bus=pcie.0,addr=05.0",
                "pcie-pci-bridge,id=bridge-00.04.0,bus=pcie.0,addr=04.0",
                "edu,dma_mask=0xffffffffffffffff,bus=bridge-00.04.0,addr=01.0,multifunction=on",
                "edu,dma_mask=0xffffffffffffffff,bus=bridge-00.04.0,addr=01.1",
            ]
        );

        // What sits behind a bridge QEMU is not told about stays out.
        let board = qemu_epyc_with_functions(&function(
            0x40000,
            0x8086,
            0x244e,
            &format!(
                "<bus type=\"pci\" address=\"0x1\">{}</bus>",
                function(0x10000, 0x1234, 0x11e8, "")
            ),
        ));
        assert!(qemu_pci_devices(&board).is_empty());
    }

    #[test]
    fn a_board_without_them_gets_no_extra_devices() {
        // q35's own functions only.
        let board = qemu_epyc_with_functions(
            &(function(0x10000, 0x1234, 0x1111, "")
                + &function(0x20000, 0x8086, 0x10d3, "")
                + &function(0x1f0000, 0x8086, 0x2918, "")
                + &function(0x1f0002, 0x8086, 0x2922, "")
                + &function(0x1f0003, 0x8086, 0x2930, "")),
        );
        let m = Machine::of_board(&board);
        assert!(m.pci_devices.is_empty());
        let args = m.qemu_args(Path::new("/o/acrn.iso")).join(" ");
        assert!(
            args.ends_with("-device intel-iommu,aw-bits=48 -cdrom /o/acrn.iso"),
            "{args}"
        );
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../configs/bochs-tigerlake/bochs-tigerlake.xml");
        let bochs = Machine::of_board(&crate::board::load_board(&path).unwrap());
        assert!(bochs.pci_devices.is_empty());
    }

    #[test]
    fn bochsrc_has_the_lines_bochs_needs() {
        let m = Machine {
            vendor: Vendor::Intel,
            cpus: 4,
            mem_mib: 1024,
            single_thread_tcg: false,
            iommu: None,
            pci_devices: Vec::new(),
        };
        let rc = m.bochsrc(Path::new("/o/acrn.iso"), Path::new("/o"));
        for line in [
            "megs: 1024\n",
            "cpu: model=tigerlake, count=1:4:1, ips=200000000, reset_on_triple_fault=0\n",
            "sound: driver=dummy\n",
            "com1: enabled=1, mode=file, dev=/o/com1.txt\n",
            "ata0-master: type=cdrom, path=/o/acrn.iso, status=inserted\n",
            "clock: sync=none",
        ] {
            assert!(rc.contains(line), "missing {line:?} in\n{rc}");
        }
        assert_eq!(m.default_emulator(), Emulator::Bochs);
    }
}
