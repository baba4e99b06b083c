//! The hypervisor half of INTx remapping (`devices::ptirq` holds the pure part): the Service
//! VM's vIOAPIC entries of GSIs it owns, and a pre-launched VM's entries of the virtual GSIs
//! of its `pt_intx` lines, program the physical IOAPIC pins; the remapped vectors the pCPUs
//! take drive the owner's vIOAPIC line (for a pre-launched VM, the virtual GSI its `pt_intx`
//! pairs with the physical one).

use super::Vm;
use crate::arch::x86::irq;
use crate::devices::ptirq::{Owner, Ownership, PhysEntry, RemapTable};
use crate::hvlog;
use acrn_static_config::{LoadOrder, SerialPort};
use core::sync::atomic::{AtomicBool, AtomicU16, Ordering};
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

fn owner(gsi: u32) -> Owner {
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
    }
    .owner(gsi)
}

/// The physical IOAPIC (address) and pin of `gsi`.
fn pin_of(gsi: u32) -> Option<(u64, u32)> {
    crate::hv::platform()
        .board
        .ioapics
        .iter()
        .find(|io| gsi >= io.gsi_base && gsi - io.gsi_base < io.gsi_count)
        .map(|io| (io.address, gsi - io.gsi_base))
}

fn apply(entry: PhysEntry, vector: u8) {
    if let Some((ioapic, pin)) = pin_of(entry.gsi) {
        let level = entry.rte & crate::devices::ioapic::RteFlags::LEVEL.bits() != 0;
        irq::set_remapped(vector, ioapic, pin, level);
        irq::write_ioapic_rte(ioapic, pin, entry.rte);
    }
}

/// The VM the interrupts of physical `gsi` go to, and the GSI of its vIOAPIC they drive.
fn target(gsi: u32) -> Option<(&'static Vm, u32)> {
    match owner(gsi) {
        Owner::ServiceVm => super::vm(SERVICE_VM.load(Ordering::Acquire)).map(|vm| (vm, gsi)),
        Owner::PreLaunched(id) => {
            let vm = super::vm(id)?;
            let cfg = vm.info()?.cfg?;
            let &(_, virt) = cfg.pt_intx.iter().find(|&&(phys, _)| phys == gsi)?;
            Some((vm, virt))
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
    match vm.load_order() {
        Some(LoadOrder::Service) => {}
        Some(LoadOrder::PreLaunched) => {
            let phys = vm.info().and_then(|i| i.cfg).and_then(|c| {
                c.pt_intx
                    .iter()
                    .find(|&&(_, virt)| virt == gsi)
                    .map(|&(phys, _)| phys)
            });
            let (Some(phys), Some(dest)) = (phys, destination(vm)) else {
                return;
            };
            if owner(phys) != Owner::PreLaunched(vm.id) {
                return;
            }
            let mut state = STATE.lock();
            if let Some(entry) = state.table.program(phys, guest_rte, dest) {
                if let Some(vector) = state.table.vector(phys) {
                    apply(entry, vector);
                }
            }
            return;
        }
        _ => return,
    }
    let unmasked = guest_rte & crate::devices::ioapic::RteFlags::MASKED.bits() == 0;
    let mut state = STATE.lock();
    match owner(gsi) {
        Owner::ServiceVm => {}
        Owner::PreLaunched(owner_vm) => {
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
            if let Some((a, (vm, virt))) = arrival.and_then(|a| Some((a, target(a.gsi)?))) {
                vm.devices.raise_remapped(vm, virt, a.level);
            }
        }
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
            apply(entry, v);
        }
    }
    AWAITING_EOI.store(state.table.awaiting_any(), Ordering::Release);
}

/// `vm` was reset: every pin remapped to it masked.
pub fn reset(vm: &Vm) {
    let mut state = STATE.lock();
    let mut entries = [None; crate::devices::ptirq::MAX_GSIS];
    let mine = |gsi: u32| target(gsi).is_some_and(|(t, _)| t.id == vm.id);
    for (slot, e) in entries.iter_mut().zip(state.table.mask(mine)) {
        *slot = Some(e);
    }
    for e in entries.iter().flatten() {
        if let Some(v) = state.table.vector(e.gsi) {
            apply(*e, v);
        }
    }
    AWAITING_EOI.store(state.table.awaiting_any(), Ordering::Release);
}
