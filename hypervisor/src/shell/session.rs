//! The running shell. The pCPU that owns the console (the boot pCPU, as in ACRN) polls the
//! physical UART's LSR from its run loop, every [`POLL_NS`] (ACRN polls every 40 ms; a
//! shorter period keeps a pasted line inside the 16550's FIFO): nothing ever waits for input,
//! so no vCPU is held up by the shell. Registers of a vCPU are taken by the pCPU that runs it,
//! asked through the kick IPI and answered at its next pass through the run loop; the shell
//! prints them when they arrive, without waiting.

use super::{parse, Command, Edit, HexLine, LineEditor, RteLine, COMMANDS, ESCAPE_KEY, PROMPT};
use super::{DUMPMEM_MAX, RTE_HEADING};
use crate::arch::x86::cpu::{this_cpu, MAX_PCPUS};
use crate::arch::x86::irq;
use crate::vcpu::run::{RunState, Thread};
use crate::vcpu::{GuestRegs, Segment};
use crate::vm::{self, Vm, VmState, MAX_VCPUS, MAX_VMS};
use acrn_static_config::LoadOrder;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use spin::Mutex;

/// How often the owner pCPU looks at the UART.
const POLL_NS: u64 = 5_000_000;
/// Bytes taken from the UART per poll at most (the rest waits in its FIFO).
const BYTES_PER_POLL: usize = 64;
/// Bytes typed for a VM that its vUART FIFO has no room for yet.
const PENDING_MAX: usize = 256;
/// How long `dump_reg` waits for the vCPU's pCPU before saying it did not answer.
const DUMP_WAIT_NS: u64 = 1_000_000_000;

static OWNER: AtomicUsize = AtomicUsize::new(usize::MAX);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Shell,
    /// Input goes to this VM's console vUART.
    Console(u16),
}

struct Session {
    editor: LineEditor,
    mode: Mode,
    pending: [u8; PENDING_MAX],
    pending_len: usize,
    /// Bytes for the VM dropped because `pending` was full.
    dropped: usize,
    next_poll: u64,
    /// A `dump_reg` waiting for its answer: (vm, vcpu, TSC deadline).
    dump: Option<(u16, u16, u64)>,
}

static SESSION: Mutex<Session> = Mutex::new(Session {
    editor: LineEditor::new(),
    mode: Mode::Shell,
    pending: [0; PENDING_MAX],
    pending_len: 0,
    dropped: 0,
    next_poll: 0,
    dump: None,
});

/// The run state each vCPU's pCPU last published (see [`publish`]), as [`state_code`].
static VCPU_STATES: [[AtomicU8; MAX_VCPUS]; MAX_VMS] =
    [const { [const { AtomicU8::new(0) }; MAX_VCPUS] }; MAX_VMS];

/// The vCPU whose registers the shell asked for: `VALID | vm << 16 | vcpu`, or 0.
static DUMP_REQUEST: AtomicU32 = AtomicU32::new(0);
const DUMP_VALID: u32 = 1 << 31;
static DUMP_ANSWER: Mutex<Option<RegSnapshot>> = Mutex::new(None);

#[derive(Clone, Copy)]
struct RegSnapshot {
    regs: GuestRegs,
    rip: u64,
    rsp: u64,
    rflags: u64,
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
    cs: Segment,
    state: RunState,
}

/// Makes `pcpu` the shell's pCPU and shows the prompt.
pub fn init(pcpu: usize) {
    OWNER.store(pcpu, Ordering::Release);
    say(format_args!(
        "[hv] shell: on the console (pCPU {pcpu}); `help` lists the commands"
    ));
    say(format_args!("{PROMPT}"));
}

fn say(args: fmt::Arguments) {
    crate::console::line("", args);
}

fn is_owner() -> bool {
    OWNER.load(Ordering::Acquire) == this_cpu()
}

/// When the calling pCPU must run [`poll`] next (only the owner has a deadline).
pub fn next_deadline() -> Option<u64> {
    if !is_owner() {
        return None;
    }
    SESSION.try_lock().map(|s| s.next_poll)
}

/// Takes the console's input and acts on it (owner pCPU, from its run loop).
pub fn poll(now: u64) {
    if !is_owner() {
        return;
    }
    let Some(mut s) = SESSION.try_lock() else {
        return;
    };
    if now < s.next_poll {
        return;
    }
    s.next_poll = now.saturating_add(crate::tsc::ticks(POLL_NS));
    for _ in 0..BYTES_PER_POLL {
        let Some(b) = crate::console::read_byte() else {
            break;
        };
        s.take(b);
    }
    s.feed_vm();
    s.finish_dump(now);
}

/// The vCPU's pCPU records its state and, if the shell asked, its registers (from the run
/// loop, after the vCPU was brought up to date).
pub fn publish(t: &Thread) {
    let id = t.vm.id as usize;
    if let Some(slot) = VCPU_STATES.get(id).and_then(|v| v.get(t.idx)) {
        slot.store(state_code(t.state), Ordering::Relaxed);
    }
    let me = DUMP_VALID | (id as u32) << 16 | t.idx as u32;
    if DUMP_REQUEST.load(Ordering::Acquire) != me {
        return;
    }
    let v = t.hw.get_ref();
    let (cr0, cr3, cr4, efer) = v.paging_state();
    *DUMP_ANSWER.lock() = Some(RegSnapshot {
        regs: *v.regs(),
        rip: v.rip(),
        rsp: v.rsp(),
        rflags: v.rflags(),
        cr0,
        cr3,
        cr4,
        efer,
        cs: v.code_segment(),
        state: t.state,
    });
    DUMP_REQUEST.store(0, Ordering::Release);
}

fn state_code(s: RunState) -> u8 {
    match s {
        RunState::Runnable => 1,
        RunState::Halted => 2,
        RunState::HaltedNoInterrupts => 3,
        RunState::WaitForSipi => 4,
        RunState::WaitForIo => 5,
    }
}

fn state_name(code: u8) -> &'static str {
    match code {
        1 => "runnable",
        2 => "halted",
        3 => "halted (interrupts off)",
        4 => "waiting for SIPI",
        5 => "waiting for I/O",
        _ => "not started",
    }
}

fn vm_state_name(s: VmState) -> &'static str {
    match s {
        VmState::Empty => "empty",
        VmState::Created => "Created",
        VmState::Running => "Running",
        VmState::Paused => "Paused",
        VmState::Stopped => "Stopped",
    }
}

fn load_order_name(o: Option<LoadOrder>) -> &'static str {
    match o {
        Some(LoadOrder::PreLaunched) => "PRE_LAUNCHED_VM",
        Some(LoadOrder::Service) => "SERVICE_VM",
        Some(LoadOrder::PostLaunched) => "POST_LAUNCHED_VM",
        None => "-",
    }
}

/// The VM `id` if its slot holds one.
fn existing_vm(id: u16) -> Result<&'static Vm, ()> {
    match vm::vm(id) {
        Some(v) if v.state() != VmState::Empty => Ok(v),
        _ => {
            say(format_args!("no VM {id} (`vm_list` shows the VMs)"));
            Err(())
        }
    }
}

impl Session {
    fn take(&mut self, b: u8) {
        match self.mode {
            Mode::Console(id) if b == ESCAPE_KEY => {
                // What was typed before the escape goes to the VM first.
                self.feed_vm();
                self.leave_console(id, "Ctrl+Space");
            }
            Mode::Console(_) => {
                if self.pending_len < PENDING_MAX {
                    self.pending[self.pending_len] = b;
                    self.pending_len += 1;
                } else {
                    self.dropped += 1;
                }
            }
            Mode::Shell => {
                let mut text = [0u8; super::LINE_MAX];
                let line = match self.editor.push(b) {
                    Edit::None => return,
                    Edit::Append(_) | Edit::Erase | Edit::Replace(_) => {
                        crate::console::input_line(PROMPT, self.editor.text());
                        return;
                    }
                    Edit::Done(line) => line,
                };
                let n = line.text.len();
                text[..n].copy_from_slice(line.text.as_bytes());
                let truncated = line.truncated;
                let text = core::str::from_utf8(&text[..n]).unwrap_or("");
                crate::console::end_input_line(PROMPT, text);
                if truncated {
                    say(format_args!("line cut at {} characters", super::LINE_MAX));
                }
                match parse(text) {
                    Ok(None) => {}
                    Ok(Some(cmd)) => self.run(cmd),
                    Err(e) => say(format_args!("{e}")),
                }
            }
        }
    }

    fn leave_console(&mut self, id: u16, why: &str) {
        self.mode = Mode::Shell;
        self.editor.clear();
        let lost = self.pending_len + core::mem::take(&mut self.dropped);
        self.pending_len = 0;
        say(format_args!(
            "[hv] shell: console input back to the shell from VM {id} ({why}){}",
            if lost > 0 {
                "; bytes the VM did not take were dropped"
            } else {
                ""
            }
        ));
        say(format_args!("{PROMPT}"));
    }

    /// Moves typed bytes into the attached VM's vUART as its FIFO frees up.
    fn feed_vm(&mut self) {
        let Mode::Console(id) = self.mode else {
            return;
        };
        let Some(vm) =
            vm::vm(id).filter(|v| !matches!(v.state(), VmState::Empty | VmState::Stopped))
        else {
            self.leave_console(id, "the VM stopped");
            return;
        };
        if self.pending_len == 0 {
            return;
        }
        let n = vm
            .devices
            .console_input(vm, &self.pending[..self.pending_len]);
        self.pending.copy_within(n..self.pending_len, 0);
        self.pending_len -= n;
    }

    fn run(&mut self, cmd: Command) {
        match cmd {
            Command::Help => help(),
            Command::Version => version(),
            Command::VmList => vm_list(),
            Command::VcpuList => vcpu_list(),
            Command::VmConsole { vm } => self.vm_console(vm),
            Command::DumpReg { vm, vcpu } => self.dump_reg(vm, vcpu),
            Command::DumpMem { vm, gpa, len } => dumpmem(vm, gpa, len),
            Command::Vioapic { vm } => vioapic(vm),
            Command::Passthrough => passthrough(),
            Command::Interrupts => interrupts(),
            Command::VmExits => vm_exits(),
            Command::Reboot => {
                say(format_args!("[hv] shell: resetting the machine"));
                crate::hv::reboot()
            }
        }
    }

    fn vm_console(&mut self, id: u16) {
        let Ok(vm) = existing_vm(id) else { return };
        if vm.state() == VmState::Stopped {
            say(format_args!("VM {id} {} has stopped", vm.name()));
            return;
        }
        if !vm.devices.has_console() {
            say(format_args!(
                "VM {id} {} has no console vUART the hypervisor emulates",
                vm.name()
            ));
            return;
        }
        self.mode = Mode::Console(id);
        self.pending_len = 0;
        self.dropped = 0;
        say(format_args!(
            "[hv] shell: console input goes to VM {id} {}; Ctrl+Space returns to the shell",
            vm.name()
        ));
    }

    fn dump_reg(&mut self, vm_id: u16, vcpu: u16) {
        let Ok(vm) = existing_vm(vm_id) else { return };
        if self.dump.is_some() {
            say(format_args!("a dump_reg is still waiting for its answer"));
            return;
        }
        if vcpu as usize >= vm.vcpu_count() {
            say(format_args!(
                "VM {vm_id} {} has {} vCPUs",
                vm.name(),
                vm.vcpu_count()
            ));
            return;
        }
        let Some(pcpu) = vm.vcpus[vcpu as usize].pcpu() else {
            say(format_args!("vCPU {vcpu} of VM {vm_id} has no pCPU"));
            return;
        };
        *DUMP_ANSWER.lock() = None;
        DUMP_REQUEST.store(
            DUMP_VALID | (vm_id as u32) << 16 | vcpu as u32,
            Ordering::Release,
        );
        vm::kick_pcpu(pcpu);
        let deadline = crate::tsc::now().saturating_add(crate::tsc::ticks(DUMP_WAIT_NS));
        self.dump = Some((vm_id, vcpu, deadline));
    }

    fn finish_dump(&mut self, now: u64) {
        let Some((vm_id, vcpu, deadline)) = self.dump else {
            return;
        };
        if let Some(r) = DUMP_ANSWER.lock().take() {
            self.dump = None;
            print_regs(vm_id, vcpu, &r);
        } else if now > deadline {
            self.dump = None;
            DUMP_REQUEST.store(0, Ordering::Release);
            say(format_args!(
                "vCPU {vcpu} of VM {vm_id}: its pCPU did not answer (it hosts the vCPU only \
                 while the VM runs or is paused)"
            ));
        }
    }
}

fn help() {
    say(format_args!("Commands:"));
    for (name, args, what) in COMMANDS {
        say(format_args!("  {:<36} {what}", Join(name, args)));
    }
    say(format_args!(
        "In vm_console, Ctrl+Space (NUL) gives the input back to the shell."
    ));
}

/// "name args" without a trailing space, padded by the caller.
struct Join<'a>(&'a str, &'a str);

impl fmt::Display for Join<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        let mut n = 0;
        for part in [self.0.as_bytes(), b" ", self.1.as_bytes()] {
            let m = part.len().min(buf.len() - n);
            buf[n..n + m].copy_from_slice(&part[..m]);
            n += m;
        }
        let text = core::str::from_utf8(&buf[..n]).unwrap_or("").trim_end();
        f.pad(text)
    }
}

fn version() {
    let p = crate::hv::platform();
    let backend = match crate::vcpu::run::backend() {
        Some(crate::vcpu::run::Backend::Svm(_)) => "AMD SVM",
        Some(crate::vcpu::run::Backend::Vmx) => "Intel VMX",
        None => "no virtualization",
    };
    say(format_args!(
        "ACRN hypervisor (Rust) {} ({} build), {backend}, board {}, {} pCPUs, {} VMs configured",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        p.board.name,
        p.board.pcpus.len(),
        p.vms.len()
    ));
}

fn vm_list() {
    say(format_args!(
        "{:<6} {:<24} {:<8} {:<17} {}",
        "VM_ID", "VM_NAME", "STATE", "LOAD_ORDER", "VCPUS"
    ));
    for v in vm::all().iter().filter(|v| v.state() != VmState::Empty) {
        say(format_args!(
            "{:<6} {:<24} {:<8} {:<17} {}",
            v.id,
            v.name(),
            vm_state_name(v.state()),
            load_order_name(v.load_order()),
            v.vcpu_count()
        ));
    }
}

fn vcpu_list() {
    say(format_args!(
        "{:<6} {:<24} {:<8} {:<8} {}",
        "VM_ID", "VM_NAME", "VCPU_ID", "PCPU_ID", "STATE"
    ));
    for v in vm::all().iter().filter(|v| v.state() != VmState::Empty) {
        for (i, slot) in v.vcpus.iter().enumerate().take(v.vcpu_count()) {
            let pcpu = slot.pcpu().map_or(-1, |p| p as i64);
            let state = match v.state() {
                VmState::Running if slot.in_guest.load(Ordering::Acquire) => "running",
                VmState::Running => {
                    state_name(VCPU_STATES[v.id as usize][i].load(Ordering::Relaxed))
                }
                s => vm_state_name(s),
            };
            say(format_args!(
                "{:<6} {:<24} {:<8} {:<8} {}",
                v.id,
                v.name(),
                i,
                pcpu,
                state
            ));
        }
    }
}

fn print_regs(vm_id: u16, vcpu: u16, r: &RegSnapshot) {
    let g = &r.regs;
    say(format_args!(
        "VM {vm_id} vCPU {vcpu} registers (taken by its pCPU at its last exit; {}):",
        state_name(state_code(r.state))
    ));
    say(format_args!(
        "RIP={:#018x} RSP={:#018x} RFLAGS={:#018x}",
        r.rip, r.rsp, r.rflags
    ));
    say(format_args!(
        "RAX={:#018x} RBX={:#018x} RCX={:#018x} RDX={:#018x}",
        g.rax, g.rbx, g.rcx, g.rdx
    ));
    say(format_args!(
        "RSI={:#018x} RDI={:#018x} RBP={:#018x}",
        g.rsi, g.rdi, g.rbp
    ));
    say(format_args!(
        "R8 ={:#018x} R9 ={:#018x} R10={:#018x} R11={:#018x}",
        g.r8, g.r9, g.r10, g.r11
    ));
    say(format_args!(
        "R12={:#018x} R13={:#018x} R14={:#018x} R15={:#018x}",
        g.r12, g.r13, g.r14, g.r15
    ));
    say(format_args!(
        "CR0={:#018x} CR3={:#018x} CR4={:#018x} EFER={:#018x}",
        r.cr0, r.cr3, r.cr4, r.efer
    ));
    say(format_args!(
        "CS={:#06x} base={:#x} access={:#x}",
        r.cs.selector, r.cs.base, r.cs.access
    ));
}

fn dumpmem(vm_id: u16, gpa: u64, len: u64) {
    let Ok(vm) = existing_vm(vm_id) else { return };
    if gpa.checked_add(len).is_none() {
        say(format_args!("{gpa:#x} + {len} overflows the address space"));
        return;
    }
    let mem = vm.memory();
    let mut buf = [0u8; 16];
    let mut at = gpa;
    let end = gpa + len.min(DUMPMEM_MAX);
    while at < end {
        let n = (end - at).min(16) as usize;
        if !mem.read(at, &mut buf[..n]) {
            say(format_args!(
                "{at:#x}: not memory of VM {vm_id} {} (the dump stops here)",
                vm.name()
            ));
            return;
        }
        say(format_args!(
            "{}",
            HexLine {
                addr: at,
                bytes: &buf[..n]
            }
        ));
        at += n as u64;
    }
}

fn vioapic(vm_id: u16) {
    let Ok(vm) = existing_vm(vm_id) else { return };
    let mut rtes = [0u64; crate::devices::ioapic::MAX_PINS];
    let pins = vm.devices.ioapic_entries(|pin, rte| {
        if let Some(slot) = rtes.get_mut(pin) {
            *slot = rte;
        }
    });
    say(format_args!(
        "VM {vm_id} {}: vIOAPIC with {pins} pins",
        vm.name()
    ));
    say(format_args!("{RTE_HEADING}"));
    for (pin, &rte) in rtes.iter().enumerate().take(pins) {
        say(format_args!("{}", RteLine { pin, rte }));
    }
}

fn passthrough() {
    let mut listed = 0;
    for v in vm::all().iter().filter(|v| v.state() != VmState::Empty) {
        for slot in 0..crate::devices::pci::MAX_PT_FUNCTIONS {
            let Some((pbdf, vbdf, msi)) = v.devices.pci().pt_summary(slot) else {
                continue;
            };
            listed += 1;
            say(format_args!(
                "VM {} {}: {:02x}:{:02x}.{} as {:02x}:{:02x}.{}: passed through, MSI {}",
                v.id,
                v.name(),
                pbdf.bus,
                pbdf.dev,
                pbdf.func,
                vbdf.bus,
                vbdf.dev,
                vbdf.func,
                if msi { "on" } else { "off" }
            ));
        }
        // A pre-launched VM's pci_devs the boot log refused.
        let configured = v
            .info()
            .filter(|i| i.load_order == LoadOrder::PreLaunched)
            .and_then(|i| i.cfg)
            .map_or(&[][..], |c| c.pci_devs);
        for d in configured {
            let present = (0..crate::devices::pci::MAX_PT_FUNCTIONS).any(|s| {
                v.devices
                    .pci()
                    .pt_summary(s)
                    .is_some_and(|(p, _, _)| p == d.pbdf)
            });
            if !present {
                listed += 1;
                say(format_args!(
                    "VM {} {}: {:02x}:{:02x}.{}: not passed through (see the boot log)",
                    v.id,
                    v.name(),
                    d.pbdf.bus,
                    d.pbdf.dev,
                    d.pbdf.func
                ));
            }
        }
    }
    if listed == 0 {
        say(format_args!("no passthrough devices"));
    } else {
        say(format_args!(
            "DMA requests the IOMMU blocked: {}",
            crate::hv::iommu::fault_count()
        ));
    }
}

fn interrupts() {
    let pcpus = crate::hv::platform().board.pcpus.len().min(MAX_PCPUS);
    let mut head = Columns::new();
    for p in 0..pcpus {
        head.push(format_args!("{:>10}", Pcpu(p)));
    }
    say(format_args!(
        "{:<8} {:<9}{}",
        "VECTOR",
        "SOURCE",
        head.text()
    ));
    for vector in 0..=255u8 {
        if (0..pcpus).all(|p| irq::count_on(p, vector) == 0) {
            continue;
        }
        let source = match vector {
            irq::TIMER_VECTOR => "timer",
            irq::KICK_VECTOR => "kick",
            irq::SPURIOUS_VECTOR => "spurious",
            _ => "device",
        };
        let mut row = Columns::new();
        for p in 0..pcpus {
            row.push(format_args!("{:>10}", irq::count_on(p, vector)));
        }
        say(format_args!("{:<#8x} {:<9}{}", vector, source, row.text()));
    }
}

/// Each VM's exits by kind, one row per VM.
fn vm_exits() {
    let mut head = Columns::new();
    for (_, name) in vm::ExitKind::ALL {
        head.push(format_args!(" {:>10}", name));
    }
    say(format_args!(
        "{:<6} {:<24}{}",
        "VM_ID",
        "VM_NAME",
        head.text()
    ));
    for v in vm::all().iter().filter(|v| v.state() != VmState::Empty) {
        let mut row = Columns::new();
        for (_, n) in v.exit_counts() {
            row.push(format_args!(" {:>10}", n));
        }
        say(format_args!("{:<6} {:<24}{}", v.id, v.name(), row.text()));
    }
}

struct Pcpu(usize);

impl fmt::Display for Pcpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 8];
        let mut w = Columns::new();
        w.push(format_args!("CPU{}", self.0));
        let n = w.len.min(buf.len());
        buf[..n].copy_from_slice(&w.buf[..n]);
        f.pad(core::str::from_utf8(&buf[..n]).unwrap_or(""))
    }
}

/// A line built from columns (no allocation in the hypervisor).
struct Columns {
    buf: [u8; 200],
    len: usize,
}

impl Columns {
    fn new() -> Self {
        Columns {
            buf: [0; 200],
            len: 0,
        }
    }
    fn push(&mut self, args: fmt::Arguments) {
        let _ = fmt::Write::write_fmt(self, args);
    }
    fn text(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for Columns {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
