//! The hypervisor half of INTx remapping (`devices::ptirq` holds the pure part): the Service
//! VM's vIOAPIC entries of GSIs it owns, a pre-launched VM's entries of the virtual GSIs of
//! its `pt_intx` lines, and a post-launched VM's entries of the virtual GSIs of lines the
//! Service VM gave it (HC_SET_PTDEV_INTR_INFO), program the physical IOAPIC pins; the
//! remapped vectors the pCPUs take drive the owner's vIOAPIC line (the virtual GSI paired with
//! the physical one).

use super::Vm;
use crate::arch::x86::irq;
use crate::devices::held::HeldSource;
use crate::devices::ptirq::{Owner, Ownership, PhysEntry, RemapTable};
use crate::hvlog;
use acrn_static_config::{LoadOrder, SerialPort};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use spin::Mutex;

struct State {
    table: RemapTable,
    /// Pre-launched VMs' GSIs the Service VM asked for, reported once each.
    refused: u128,
}

static STATE: Mutex<State> = Mutex::new(State {
    table: RemapTable::new(),
    refused: 0,
});
/// Some level pin waits for a guest's EOI (the table says which): lets the EOIs of every VM
/// skip the table's lock while none does.
static AWAITING_EOI: AtomicBool = AtomicBool::new(false);
/// The Service VM, once it programmed a line.
static SERVICE_VM: AtomicU16 = AtomicU16::new(u16::MAX);

/// Most IOAPICs and pass-through lines the ownership check looks at.
const MAX_IOAPICS: usize = 8;
const MAX_PT_LINES: usize = 64;
/// Lines the Service VM may have given to post-launched VMs at once.
const MAX_POST_LINES: usize = 16;

/// A line the Service VM gave a post-launched VM: its physical and its virtual GSI, and the
/// interrupts it brought since (HC_VM_INTR_MONITOR).
#[derive(Clone, Copy, PartialEq, Eq)]
struct PostLine {
    vm: u16,
    phys: u32,
    virt: u32,
    count: u64,
}

static POST_LINES: Mutex<[Option<PostLine>; MAX_POST_LINES]> = Mutex::new([None; MAX_POST_LINES]);

fn post_lines() -> [Option<PostLine>; MAX_POST_LINES] {
    *POST_LINES.lock()
}

fn owner(gsi: u32) -> Owner {
    owner_with(&post_lines(), gsi)
}

/// The owner of `gsi` by the board, the scenario and the lines `post` given to
/// post-launched VMs.
fn ownership(post: &[(u16, u32)], gsi: u32) -> Owner {
    let p = crate::hv::platform();
    let mut ioapics = [(0, 0); MAX_IOAPICS];
    let n_io = p.board.ioapics.len().min(MAX_IOAPICS);
    for (slot, io) in ioapics.iter_mut().zip(p.board.ioapics) {
        *slot = (io.gsi_base, io.gsi_count);
    }
    let mut lines = [(0, 0); MAX_PT_LINES];
    let mut n_lines = 0;
    for vm in p
        .vms
        .iter()
        .filter(|v| v.load_order == LoadOrder::PreLaunched)
    {
        for &(phys, _) in vm.pt_intx {
            if let Some(slot) = lines.get_mut(n_lines) {
                *slot = (vm.id, phys);
                n_lines += 1;
            }
        }
    }
    let console_irq = match p.board.serial {
        Some(SerialPort::Pio { irq, .. } | SerialPort::Mmio { irq, .. }) if irq != 0 => {
            Some(irq as u32)
        }
        _ => None,
    };
    Ownership {
        ioapics: &ioapics[..n_io],
        console_irq,
        pre_launched: &lines[..n_lines],
        post_launched: post,
    }
    .owner(gsi)
}

/// The physical IOAPIC (ID, address) and pin of `gsi`.
fn pin_of(gsi: u32) -> Option<(u8, u64, u32)> {
    crate::hv::platform()
        .board
        .ioapics
        .iter()
        .find(|io| gsi >= io.gsi_base && gsi - io.gsi_base < io.gsi_count)
        .map(|io| (io.id, io.address, gsi - io.gsi_base))
}

fn apply(entry: PhysEntry, vector: u8) {
    if let Some((id, ioapic, pin)) = pin_of(entry.gsi) {
        let level = entry.rte & crate::devices::ioapic::RteFlags::LEVEL.bits() != 0;
        irq::set_remapped(vector, ioapic, pin, level);
        let rte = crate::hv::iommu::ioapic_entry(id, entry.gsi, entry.rte);
        irq::write_ioapic_rte(ioapic, pin, rte);
    }
}

/// The VM the interrupts of physical `gsi` go to, and the GSI of its vIOAPIC they drive.
fn target(gsi: u32) -> Option<(&'static Vm, u32)> {
    target_with(&post_lines(), gsi)
}

/// [`target`] with `lines` the lines given to post-launched VMs.
fn target_with(lines: &[Option<PostLine>; MAX_POST_LINES], gsi: u32) -> Option<(&'static Vm, u32)> {
    match owner_with(lines, gsi) {
        Owner::ServiceVm => super::vm(SERVICE_VM.load(Ordering::Acquire)).map(|vm| (vm, gsi)),
        Owner::PreLaunched(id) => {
            let vm = super::vm(id)?;
            let cfg = vm.info()?.cfg?;
            let &(_, virt) = cfg.pt_intx.iter().find(|&&(phys, _)| phys == gsi)?;
            Some((vm, virt))
        }
        Owner::PostLaunched(id) => {
            let line = lines
                .iter()
                .flatten()
                .find(|l| l.vm == id && l.phys == gsi)?;
            Some((super::vm(id)?, line.virt))
        }
        Owner::Hypervisor | Owner::NoPin => None,
    }
}

/// The pCPU APIC ID of `vm`'s vCPU 0 (where its remapped lines are sent).
fn destination(vm: &Vm) -> Option<u8> {
    vm.vcpus[0]
        .pcpu()
        .and_then(|p| crate::hv::platform().board.pcpus.get(p))
        .and_then(|c| u8::try_from(c.apic_id).ok())
}

/// `vm` wrote vIOAPIC entry `gsi` (now `guest_rte`): a Service VM's entry of a GSI it owns,
/// or a pre-launched VM's entry of a `pt_intx` virtual GSI, programs the physical pin.
pub fn guest_programmed(vm: &Vm, gsi: u32, guest_rte: u64) {
    let own_line = match vm.load_order() {
        Some(LoadOrder::Service) => None,
        Some(LoadOrder::PreLaunched) => {
            let phys = vm.info().and_then(|i| i.cfg).and_then(|c| {
                c.pt_intx
                    .iter()
                    .find(|&&(_, virt)| virt == gsi)
                    .map(|&(phys, _)| phys)
            });
            Some(phys.filter(|&p| owner(p) == Owner::PreLaunched(vm.id)))
        }
        Some(LoadOrder::PostLaunched) => Some(
            post_lines()
                .into_iter()
                .flatten()
                .find(|l| l.vm == vm.id && l.virt == gsi)
                .map(|l| l.phys),
        ),
        None => return,
    };
    if let Some(phys) = own_line {
        let (Some(phys), Some(dest)) = (phys, destination(vm)) else {
            return;
        };
        let mut state = STATE.lock();
        if let Some(entry) = state.table.program(phys, guest_rte, dest) {
            if let Some(vector) = state.table.vector(phys) {
                apply(entry, vector);
            }
        }
        return;
    }
    let unmasked = guest_rte & crate::devices::ioapic::RteFlags::MASKED.bits() == 0;
    let mut state = STATE.lock();
    match owner(gsi) {
        Owner::ServiceVm => {}
        Owner::PreLaunched(owner_vm) | Owner::PostLaunched(owner_vm) => {
            let bit = 1u128.checked_shl(gsi).unwrap_or(0);
            if unmasked && state.refused & bit == 0 {
                state.refused |= bit;
                hvlog!(
                    "VM {} {}: GSI {gsi} is a pass-through line of VM {owner_vm}: its vIOAPIC \
                     pin gets no physical interrupt (reported once)",
                    vm.id,
                    vm.name()
                );
            }
            return;
        }
        // The hypervisor's GSIs (PIT, RTC, its console) and pins no physical IOAPIC has are
        // the VM's virtual devices' alone (its vUARTs, vRTC).
        Owner::Hypervisor | Owner::NoPin => return,
    }
    let Some(dest) = destination(vm) else {
        return;
    };
    SERVICE_VM.store(vm.id, Ordering::Release);
    if let Some(entry) = state.table.program(gsi, guest_rte, dest) {
        if let Some(vector) = state.table.vector(gsi) {
            apply(entry, vector);
        }
    }
}

/// Drives the vIOAPIC lines of the remapped vectors the calling pCPU took (`vectors`: a
/// 256-bit set).
pub fn dispatch(vectors: [u64; 4]) {
    for (word, bits) in vectors.iter().enumerate() {
        let mut bits = *bits;
        while bits != 0 {
            let bit = bits.trailing_zeros();
            bits &= bits - 1;
            let vector = (word as u32 * 64 + bit) as u8;
            if crate::devices::pci::pt_dispatch(vector)
                || crate::devices::physical::dispatch_service_msi(vector)
            {
                continue;
            }
            let arrival = {
                let mut state = STATE.lock();
                let a = state.table.arrived(vector);
                if a.is_some_and(|a| a.level) {
                    AWAITING_EOI.store(true, Ordering::Release);
                }
                a
            };
            let Some(a) = arrival else {
                report_stray(vector);
                continue;
            };
            let lines = count_post_line(a.gsi);
            if let Some((vm, virt)) = target_with(&lines, a.gsi) {
                let source = HeldSource::Intx {
                    gsi: virt,
                    level: a.level,
                };
                vm.devices.passthrough_interrupt(vm, source);
            }
        }
    }
}

/// Device vectors that arrived while no source had them, each reported once.
static STRAY: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// A device interrupt on a vector the hypervisor gave no source (a request a device's DMA
/// wrote into the interrupt window, or one in flight while its source went): ignored.
fn report_stray(vector: u8) {
    let bit = 1 << (vector % 64);
    if STRAY[usize::from(vector / 64)].fetch_or(bit, Ordering::AcqRel) & bit == 0 {
        hvlog!(
            "pCPU {}: interrupt on vector {vector:#x}, which the hypervisor gave no device \
             (ignored; reported once)",
            crate::arch::x86::cpu::this_cpu()
        );
    }
}

/// Level GSIs of `vm` whose interrupt on guest vector `vector` waits for its EOI: `f` runs
/// on each (its vIOAPIC pin, with the vIOAPIC locked by the caller) and says whether this EOI
/// ends it (the guest had it delivered); the physical pin is unmasked then.
pub fn eoi(vm: &Vm, vector: u8, mut f: impl FnMut(u32) -> bool) {
    if !AWAITING_EOI.load(Ordering::Acquire) {
        return;
    }
    let mut state = STATE.lock();
    let mut waiting = [(0u32, 0u32); crate::devices::ptirq::MAX_GSIS];
    let mut n = 0;
    for gsi in state.table.awaiting_eoi(vector) {
        if let Some(virt) = target(gsi)
            .filter(|(t, _)| t.id == vm.id)
            .map(|(_, virt)| virt)
        {
            waiting[n] = (gsi, virt);
            n += 1;
        }
    }
    for &(gsi, virt) in &waiting[..n] {
        if !f(virt) {
            continue;
        }
        if let (Some(entry), Some(v)) = (state.table.eoi(gsi), state.table.vector(gsi)) {
            if let Some((_, ioapic, pin)) = pin_of(gsi) {
                irq::ioapic_eoi(ioapic, pin, v);
            }
            apply(entry, v);
        }
    }
    AWAITING_EOI.store(state.table.awaiting_any(), Ordering::Release);
}

/// `vm` was reset: every pin remapped to it masked.
pub fn reset(vm: &Vm) {
    mask_pins(|gsi| target(gsi).is_some_and(|(t, _)| t.id == vm.id));
}

/// Why a line cannot be given to a post-launched VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// The physical GSI is not the Service VM's to give (the hypervisor's, a pre-launched
    /// VM's or another post-launched VM's, or no IOAPIC has it).
    NotServiceVms,
    /// The virtual GSI is beyond the VM's vIOAPIC, or taken by another of its lines.
    VirtualGsi,
    Full,
}

/// Gives physical `phys` to post-launched `vm` as its virtual GSI `virt`: the Service VM's
/// entry stops driving the pin, which stays masked until `vm` programs `virt`.
pub fn give_line(vm: &Vm, phys: u32, virt: u32) -> Result<(), LineError> {
    {
        let mut lines = POST_LINES.lock();
        let mine = lines
            .iter()
            .flatten()
            .find(|l| l.vm == vm.id && l.phys == phys)
            .copied();
        if mine.is_none() && owner_with(&lines, phys) != Owner::ServiceVm {
            return Err(LineError::NotServiceVms);
        }
        let pins = vm.devices.vioapic_pins() as u32;
        let clash = lines
            .iter()
            .flatten()
            .any(|l| l.vm == vm.id && l.virt == virt && l.phys != phys);
        if virt >= pins || clash {
            return Err(LineError::VirtualGsi);
        }
        let at = match lines.iter().position(|l| *l == mine) {
            Some(i) if mine.is_some() => i,
            _ => lines
                .iter()
                .position(|l| l.is_none())
                .ok_or(LineError::Full)?,
        };
        lines[at] = Some(PostLine {
            vm: vm.id,
            phys,
            virt,
            count: 0,
        });
    }
    mask_pins(|gsi| gsi == phys);
    Ok(())
}

/// The owner of `gsi` with `lines` already locked.
fn owner_with(lines: &[Option<PostLine>; MAX_POST_LINES], gsi: u32) -> Owner {
    let mut post = [(0, 0); MAX_POST_LINES];
    let mut n = 0;
    for l in lines.iter().flatten() {
        post[n] = (l.vm, l.phys);
        n += 1;
    }
    ownership(&post[..n], gsi)
}

/// Takes line `phys` (virtual `virt`) back from `vm`: the pin follows the Service VM's
/// vIOAPIC entry again. Whether `vm` had it.
pub fn take_line(vm: &Vm, phys: u32, virt: u32) -> bool {
    let taken = {
        let mut lines = POST_LINES.lock();
        let at = lines
            .iter()
            .position(|l| l.is_some_and(|l| l.vm == vm.id && l.phys == phys && l.virt == virt));
        at.map(|i| lines[i].take()).is_some()
    };
    if taken {
        give_back(phys);
    }
    taken
}

/// Every line of `vm` goes back to the Service VM (the VM is destroyed).
pub fn take_all_lines(vm: &Vm) {
    let mut gone = [None; MAX_POST_LINES];
    {
        let mut lines = POST_LINES.lock();
        for (slot, l) in gone.iter_mut().zip(lines.iter_mut()) {
            if l.is_some_and(|l| l.vm == vm.id) {
                *slot = l.take().map(|l| l.phys);
            }
        }
    }
    for phys in gone.into_iter().flatten() {
        give_back(phys);
    }
}

/// The pin of `phys` masked, then programmed from the Service VM's vIOAPIC entry.
fn give_back(phys: u32) {
    mask_pins(|gsi| gsi == phys);
    let service = super::vm(SERVICE_VM.load(Ordering::Acquire));
    if let Some((vm, rte)) = service.and_then(|vm| Some((vm, vm.devices.vioapic_entry(phys)?))) {
        guest_programmed(vm, phys, rte);
    }
}

fn mask_pins(which: impl Fn(u32) -> bool) {
    let mut state = STATE.lock();
    let mut entries = [None; crate::devices::ptirq::MAX_GSIS];
    for (slot, e) in entries.iter_mut().zip(state.table.mask(which)) {
        *slot = Some(e);
    }
    for e in entries.iter().flatten() {
        if let Some(v) = state.table.vector(e.gsi) {
            apply(*e, v);
        }
    }
    AWAITING_EOI.store(state.table.awaiting_any(), Ordering::Release);
}

/// Counts an interrupt of `gsi` on the post-launched VM's line it is; the lines, as after.
fn count_post_line(gsi: u32) -> [Option<PostLine>; MAX_POST_LINES] {
    let mut lines = POST_LINES.lock();
    for l in lines.iter_mut().flatten() {
        if l.phys == gsi {
            l.count += 1;
        }
    }
    *lines
}

/// The lines given to VM `vm`: (physical GSI, interrupts since it was given) each.
pub fn line_counts(vm: u16, mut f: impl FnMut(u32, u64)) {
    for l in post_lines().iter().flatten().filter(|l| l.vm == vm) {
        f(l.phys, l.count);
    }
}
