//! `acrn-dm`: launches one post-launched User VM through /dev/acrn_hsm and serves it until it
//! powers off (exit 0), or a signal ends it (exit 128 + the signal); a reset restarts it.

use acrn_dm::cli::{self, Command, DmConfig};
use acrn_dm::ioreq::{Stopped, VmExit};
use acrn_dm::logger::{self, log, Level};
use acrn_dm::memory::GuestMemory;
use acrn_dm::vm::{self, BootFiles, Console};
use acrn_hsm::uapi::{HsmDevice, HSM_DEVICE_PATH};
use anyhow::{bail, Context};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::Relaxed);
    STOP.store(true, Ordering::Release);
}

/// SIGINT and SIGTERM set [`STOP`]; without SA_RESTART they also interrupt the blocking
/// ATTACH ioctl, so the request loop sees the flag at once.
fn install_signal_handlers() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only stores to atomics.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Puts the controlling terminal in character mode (no line buffering, no echo: the guest
/// echoes) while COM1 is on stdio; Ctrl-C still signals acrn-dm. Restored on drop.
struct CharacterMode(Option<libc::termios>);

impl CharacterMode {
    fn enable(cfg: &DmConfig) -> Self {
        let on_stdio = cfg.uses_stdio();
        // SAFETY: termios calls on fd 0 with local structs.
        unsafe {
            if !on_stdio || libc::isatty(0) != 1 {
                return Self(None);
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return Self(None);
            }
            let saved = t;
            t.c_lflag &= !(libc::ICANON | libc::ECHO);
            t.c_cc[libc::VMIN] = 1;
            t.c_cc[libc::VTIME] = 0;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Self(Some(saved))
        }
    }
}

impl Drop for CharacterMode {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restoring the saved settings.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}

fn stdout() -> Box<dyn std::io::Write + Send> {
    Box::new(std::io::stdout())
}

fn run(cfg: &DmConfig) -> anyhow::Result<ExitCode> {
    logger::init(&cfg.logger, &cfg.vm_name);
    let boot = BootFiles::read(cfg)?;
    vm::check_memory(cfg.mem_size)?;
    let affinity = vm::host_affinity(cfg)?;
    install_signal_handlers().context("installing the SIGINT/SIGTERM handlers")?;
    let _tty = CharacterMode::enable(cfg);
    loop {
        let hsm = HsmDevice::open().with_context(|| {
            format!("cannot open {HSM_DEVICE_PATH} (acrn-dm runs in ACRN's Service VM, with Linux's CONFIG_ACRN_HSM)")
        })?;
        let mem = Arc::new(GuestMemory::map(cfg.mem_size)?);
        log(Level::Info, &format!("guest memory: {:?}", mem.backing()));
        let console = Console {
            stdio: stdout,
            read_input: true,
            pci_sysfs: acrn_dm::devices::passthru::PCI_SYSFS.into(),
        };
        match vm::run(&hsm, cfg, mem, &boot, affinity, console, &STOP)? {
            Stopped::Guest(VmExit::PowerOff) => {
                log(Level::Info, &format!("VM {} powered off", cfg.vm_name));
                return Ok(ExitCode::SUCCESS);
            }
            Stopped::Guest(VmExit::Reset) => {
                log(
                    Level::Notice,
                    &format!("VM {} reset: starting it again", cfg.vm_name),
                );
            }
            Stopped::Signal => {
                let sig = SIGNAL.load(Ordering::Relaxed);
                log(
                    Level::Notice,
                    &format!("signal {sig}: VM {} destroyed", cfg.vm_name),
                );
                return Ok(ExitCode::from(128 + sig as u8));
            }
            Stopped::ClientGone => bail!("the HSM destroyed the I/O request client"),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match cli::parse(&args) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("acrn-dm {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("acrn-dm: {e}");
            eprint!("{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(&cfg) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("acrn-dm: {e:#}");
            ExitCode::FAILURE
        }
    }
}
