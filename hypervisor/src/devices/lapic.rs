//! The virtual local APIC of one vCPU (Intel SDM vol. 3 ch. 11): xAPIC MMIO registers, x2APIC
//! MSRs, IA32_APIC_BASE with its mode transitions, interrupt acceptance and priority (IRR,
//! ISR, TMR, TPR, PPR), EOI, the ICR turned into [`Message`]s, and the timer in one-shot,
//! periodic and TSC-deadline modes.
//!
//! Time is the TSC: every method that needs it takes `now_tsc`. The timer counts one tick per
//! `tsc_per_bus_tick` TSC cycles before the divide configuration; ACRN's vLAPIC counts at the
//! TSC rate (`tsc_per_bus_tick = 1`), so a guest that knows the TSC frequency (CPUID
//! 0x40000010) knows the timer frequency. Current-count reads are computed from `now_tsc` and
//! so stay consistent with the deadline the caller arms.
//!
//! Limits: the APIC ID and the base address (0xFEE0_0000) cannot be changed by the guest;
//! EOI-broadcast suppression, directed EOI and the LVT CMCI/thermal/performance/LINT sources
//! are registers only (nothing in this model raises them); missed periodic expiries coalesce
//! into one interrupt, as they would in a real IRR; a divide-configuration change rescales a
//! running count-down (the counts left stay, as KVM does); the arbitration priority register
//! reads 0; focus processor checking is not modelled.

use super::irq::{Delivery, DestMode, LapicView, Message, PendingSet, Shorthand, Vectors};
use bitflags::bitflags;

/// The only base address of the xAPIC page this model supports.
pub const APIC_BASE_ADDRESS: u64 = 0xFEE0_0000;
/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1B;
/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6E0;
/// First and last x2APIC MSR.
pub const MSR_X2APIC_FIRST: u32 = 0x800;
pub const MSR_X2APIC_LAST: u32 = 0x8FF;

/// Version register: integrated APIC version 0x14, max LVT entry 6 (CMCI, timer, thermal,
/// performance, LINT0, LINT1, error), no EOI-broadcast suppression (bit 24 clear).
pub const VERSION: u32 = 0x14 | (6 << 16);

bitflags! {
    /// IA32_APIC_BASE flags (the base address is bits 51:12).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ApicBaseFlags: u64 {
        const BSP = 1 << 8;
        const X2APIC = 1 << 10;
        const ENABLE = 1 << 11;
    }

    /// Spurious-interrupt vector register flags (the vector is bits 7:0).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct SvrFlags: u32 {
        const APIC_ENABLED = 1 << 8;
        const FOCUS_CHECK_DISABLED = 1 << 9;
    }

    /// Local vector table entry flags (vector bits 7:0, delivery mode 10:8).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct LvtFlags: u32 {
        const DELIVERY_PENDING = 1 << 12;
        const ACTIVE_LOW = 1 << 13;
        const REMOTE_IRR = 1 << 14;
        const LEVEL = 1 << 15;
        const MASKED = 1 << 16;
        const TIMER_PERIODIC = 1 << 17;
        const TIMER_TSC_DEADLINE = 1 << 18;
    }

    /// Interrupt command register flags (vector 7:0, delivery mode 10:8, shorthand 19:18).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct IcrFlags: u32 {
        const LOGICAL = 1 << 11;
        const DELIVERY_PENDING = 1 << 12;
        const ASSERT = 1 << 14;
        const LEVEL = 1 << 15;
    }

    /// Error status register bits (SDM 11.5.3).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct EsrFlags: u32 {
        const SEND_ILLEGAL_VECTOR = 1 << 5;
        const RECEIVE_ILLEGAL_VECTOR = 1 << 6;
        const ILLEGAL_REGISTER = 1 << 7;
    }
}

/// The local vector table entries, in register order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lvt {
    Cmci = 0,
    Timer = 1,
    Thermal = 2,
    Performance = 3,
    Lint0 = 4,
    Lint1 = 5,
    Error = 6,
}

/// Writable bits of each LVT entry (delivery status and remote IRR are read-only).
const LVT_WRITABLE: [u32; 7] = [
    0x0001_07FF, // CMCI: vector, delivery mode, mask
    0x0007_00FF, // timer: vector, mask, mode
    0x0001_07FF, // thermal
    0x0001_07FF, // performance
    0x0001_A7FF, // LINT0: + polarity, trigger
    0x0001_A7FF, // LINT1
    0x0001_00FF, // error: vector, mask
];

/// Register offsets in the xAPIC page (the x2APIC MSR is 0x800 + offset / 16).
mod reg {
    pub const ID: u32 = 0x20;
    pub const VERSION: u32 = 0x30;
    pub const TPR: u32 = 0x80;
    pub const APR: u32 = 0x90;
    pub const PPR: u32 = 0xA0;
    pub const EOI: u32 = 0xB0;
    pub const RRD: u32 = 0xC0;
    pub const LDR: u32 = 0xD0;
    pub const DFR: u32 = 0xE0;
    pub const SVR: u32 = 0xF0;
    pub const ISR: u32 = 0x100;
    pub const TMR: u32 = 0x180;
    pub const IRR: u32 = 0x200;
    pub const ESR: u32 = 0x280;
    pub const LVT_CMCI: u32 = 0x2F0;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_THERMAL: u32 = 0x330;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3E0;
    pub const SELF_IPI: u32 = 0x3F0;
}

/// The APIC's mode (IA32_APIC_BASE bits 11:10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicMode {
    Disabled,
    XApic,
    X2Apic,
}

/// The timer mode (LVT timer bits 18:17; the reserved 11b counts as one-shot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
}

/// A guest access the model refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LapicError {
    /// An MMIO access that is not 4 bytes at a 16-byte-aligned offset below 0x1000.
    BadMmioAccess { offset: u64, size: u8 },
    /// An MMIO access while the xAPIC page is not decoded (APIC disabled or in x2APIC mode).
    MmioNotDecoded,
    /// An MSR access that raises #GP in the guest.
    GeneralProtection { msr: u32, reason: &'static str },
}

impl core::fmt::Display for LapicError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            LapicError::BadMmioAccess { offset, size } => write!(
                f,
                "local APIC access of {size} bytes at offset {offset:#x}: only 4-byte accesses \
                 at 16-byte-aligned registers are supported"
            ),
            LapicError::MmioNotDecoded => {
                write!(
                    f,
                    "xAPIC page accessed while the APIC is disabled or in x2APIC mode"
                )
            }
            LapicError::GeneralProtection { msr, reason } => {
                write!(f, "MSR {msr:#x}: {reason} (#GP)")
            }
        }
    }
}

fn gp(msr: u32, reason: &'static str) -> LapicError {
    LapicError::GeneralProtection { msr, reason }
}

/// What a register write asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LapicEffect {
    /// Route the message with [`super::irq::destinations`] (source = this vCPU) and deliver it.
    Ipi(Message),
    /// An EOI retired `vector`; if it was level-triggered (TMR set) broadcast it to the
    /// VM's vIOAPICs.
    Eoi { vector: u8, level: bool },
    /// The timer deadline changed: re-arm the physical timer from [`Vlapic::timer_deadline`].
    TimerChanged,
    /// IA32_APIC_BASE switched the mode: change the xAPIC page / x2APIC MSR intercepts and
    /// re-arm the timer (disabling the APIC resets it).
    ModeChanged(ApicMode),
}

/// The state of one vCPU's local APIC.
#[derive(Debug, Clone)]
pub struct Vlapic {
    id: u32,
    base: u64,
    tsc_per_bus_tick: u64,
    tpr: u32,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: Vectors,
    irr: Vectors,
    tmr: Vectors,
    /// Errors collected since the last ESR write, and the value that write latched.
    esr_pending: u32,
    esr: u32,
    lvt: [u32; 7],
    icr_low: u32,
    icr_high: u32,
    timer_initial: u32,
    timer_divide: u32,
    /// Absolute TSC of the next expiry while the timer runs.
    deadline: Option<u64>,
    /// TSC cycles per period of the running count-down timer.
    period: u64,
}

impl Vlapic {
    /// A local APIC in its power-up state (xAPIC mode, software disabled). `tsc_per_bus_tick`
    /// of 0 is taken as 1.
    pub fn new(apic_id: u32, bsp: bool, tsc_per_bus_tick: u64) -> Self {
        let mut lapic = Vlapic {
            id: apic_id,
            base: APIC_BASE_ADDRESS
                | ApicBaseFlags::ENABLE.bits()
                | if bsp { ApicBaseFlags::BSP.bits() } else { 0 },
            tsc_per_bus_tick: tsc_per_bus_tick.max(1),
            tpr: 0,
            ldr: 0,
            dfr: 0,
            svr: 0,
            isr: Vectors::EMPTY,
            irr: Vectors::EMPTY,
            tmr: Vectors::EMPTY,
            esr_pending: 0,
            esr: 0,
            lvt: [0; 7],
            icr_low: 0,
            icr_high: 0,
            timer_initial: 0,
            timer_divide: 0,
            deadline: None,
            period: 0,
        };
        lapic.reset_registers();
        lapic
    }

    /// The reset of everything but the ID and IA32_APIC_BASE (INIT, SDM 11.4.7.3), also used
    /// when the APIC is disabled through IA32_APIC_BASE.
    pub fn reset_registers(&mut self) {
        self.tpr = 0;
        self.ldr = if self.mode() == ApicMode::X2Apic {
            self.x2apic_ldr()
        } else {
            0
        };
        self.dfr = 0xFFFF_FFFF;
        self.svr = 0xFF;
        self.isr = Vectors::EMPTY;
        self.irr = Vectors::EMPTY;
        self.tmr = Vectors::EMPTY;
        self.esr_pending = 0;
        self.esr = 0;
        self.lvt = [LvtFlags::MASKED.bits(); 7];
        self.icr_low = 0;
        self.icr_high = 0;
        self.timer_initial = 0;
        self.timer_divide = 0;
        self.deadline = None;
        self.period = 0;
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn mode(&self) -> ApicMode {
        let flags = ApicBaseFlags::from_bits_truncate(self.base);
        match (
            flags.contains(ApicBaseFlags::ENABLE),
            flags.contains(ApicBaseFlags::X2APIC),
        ) {
            (false, _) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
        }
    }

    /// SVR bit 8.
    pub fn sw_enabled(&self) -> bool {
        SvrFlags::from_bits_truncate(self.svr).contains(SvrFlags::APIC_ENABLED)
    }

    fn x2apic_ldr(&self) -> u32 {
        ((self.id >> 4) << 16) | (1 << (self.id & 0xF))
    }

    /// The processor priority (SDM 11.8.3.1): the TPR if its class is at least the highest
    /// in-service class, else that class.
    pub fn ppr(&self) -> u8 {
        let tpr = self.tpr as u8;
        let isrv = self.isr.highest().unwrap_or(0);
        if tpr >> 4 >= isrv >> 4 {
            tpr
        } else {
            isrv & 0xF0
        }
    }

    /// The destination-relevant state for [`super::irq::destinations`].
    pub fn view(&self) -> LapicView {
        LapicView {
            id: self.id,
            ldr: self.ldr,
            dfr: self.dfr,
            x2apic: self.mode() == ApicMode::X2Apic,
            ppr: self.ppr(),
            enabled: self.mode() != ApicMode::Disabled,
            sw_enabled: self.sw_enabled(),
        }
    }

    pub fn lvt(&self, which: Lvt) -> u32 {
        self.lvt[which as usize]
    }

    /// True when the INTR line (the vPIC's output) reaches the vCPU: LINT0 unmasked in ExtINT
    /// mode, or the APIC globally disabled (then INTR goes straight to the CPU).
    pub fn accepts_extint(&self) -> bool {
        let lint0 = self.lvt[Lvt::Lint0 as usize];
        self.mode() == ApicMode::Disabled
            || (lint0 & LvtFlags::MASKED.bits() == 0 && (lint0 >> 8) & 7 == 7)
    }

    // ----- interrupt acceptance -----

    /// Accepts a fixed or lowest-priority interrupt: sets IRR and the TMR bit for a
    /// level-triggered one. Returns false (and records a receive-illegal-vector error for
    /// vectors below 16) when the APIC does not take it: a disabled or software-disabled APIC
    /// drops fixed interrupts.
    pub fn accept(&mut self, vector: u8, level: bool) -> bool {
        if self.mode() == ApicMode::Disabled {
            return false;
        }
        if vector < 16 {
            self.record_error(EsrFlags::RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        if !self.sw_enabled() {
            return false;
        }
        self.irr.set(vector);
        if level {
            self.tmr.set(vector);
        } else {
            self.tmr.clear(vector);
        }
        true
    }

    /// Pulls the vectors other pCPUs posted into the IRR.
    pub fn sync(&mut self, posted: &PendingSet) {
        let (vectors, level) = posted.take();
        for word in 0..4 {
            let mut bits = vectors.0[word];
            while bits != 0 {
                let vector = (word * 64) as u8 + bits.trailing_zeros() as u8;
                bits &= bits - 1;
                self.accept(vector, level.contains(vector));
            }
        }
    }

    /// The highest requested vector whose priority class is above the processor priority.
    pub fn pending(&self) -> Option<u8> {
        let vector = self.irr.highest()?;
        (vector & 0xF0 > self.ppr() & 0xF0).then_some(vector)
    }

    /// Moves `vector` from IRR to ISR: call when the backend injects it. False if it was not
    /// requested.
    pub fn ack(&mut self, vector: u8) -> bool {
        if !self.irr.contains(vector) {
            return false;
        }
        self.irr.clear(vector);
        self.isr.set(vector);
        true
    }

    /// Retires the highest in-service vector (an EOI write).
    fn eoi(&mut self) -> Option<LapicEffect> {
        let vector = self.isr.highest()?;
        self.isr.clear(vector);
        Some(LapicEffect::Eoi {
            vector,
            level: self.tmr.contains(vector),
        })
    }

    fn record_error(&mut self, error: EsrFlags) {
        self.esr_pending |= error.bits();
        let lvt_error = self.lvt[Lvt::Error as usize];
        if lvt_error & LvtFlags::MASKED.bits() == 0 {
            // The error interrupt itself; an illegal vector here only sets more ESR bits.
            let vector = lvt_error as u8;
            if vector >= 16 && self.sw_enabled() {
                self.irr.set(vector);
                self.tmr.clear(vector);
            } else {
                self.esr_pending |= EsrFlags::RECEIVE_ILLEGAL_VECTOR.bits();
            }
        }
    }

    // ----- timer -----

    pub fn timer_mode(&self) -> TimerMode {
        let lvt = LvtFlags::from_bits_truncate(self.lvt[Lvt::Timer as usize]);
        if lvt.contains(LvtFlags::TIMER_TSC_DEADLINE) && !lvt.contains(LvtFlags::TIMER_PERIODIC) {
            TimerMode::TscDeadline
        } else if lvt.contains(LvtFlags::TIMER_PERIODIC)
            && !lvt.contains(LvtFlags::TIMER_TSC_DEADLINE)
        {
            TimerMode::Periodic
        } else {
            TimerMode::OneShot
        }
    }

    /// The divisor of the divide configuration register (bits 3, 1:0; 111b = 1).
    pub fn timer_divisor(&self) -> u64 {
        let code = ((self.timer_divide >> 1) & 4) | (self.timer_divide & 3);
        if code == 7 {
            1
        } else {
            2 << code
        }
    }

    fn tsc_per_count(&self) -> u64 {
        self.timer_divisor().saturating_mul(self.tsc_per_bus_tick)
    }

    /// The absolute TSC of the next timer expiry, for the caller to arm a physical timer.
    /// It may be in the past: then call [`Vlapic::timer_expired`] at once.
    pub fn timer_deadline(&self) -> Option<u64> {
        self.deadline
    }

    fn start_countdown(&mut self, now_tsc: u64) {
        if self.timer_initial == 0 {
            self.deadline = None;
            self.period = 0;
        } else {
            self.period = (self.timer_initial as u64).saturating_mul(self.tsc_per_count());
            self.deadline = Some(now_tsc.saturating_add(self.period));
        }
    }

    /// Handles the expiry of the physical timer armed for [`Vlapic::timer_deadline`]: if the
    /// deadline has passed, requests the timer vector (unless masked) and re-arms a periodic
    /// timer at the next multiple of the period after the previous deadline (no drift; periods
    /// missed entirely coalesce into this one interrupt). Returns true if a vector was
    /// requested.
    pub fn timer_expired(&mut self, now_tsc: u64) -> bool {
        let Some(deadline) = self.deadline else {
            return false;
        };
        if now_tsc < deadline {
            return false;
        }
        self.deadline = match self.timer_mode() {
            TimerMode::Periodic if self.period > 0 => {
                let missed = (now_tsc - deadline) / self.period;
                deadline
                    .checked_add(self.period.saturating_mul(missed.saturating_add(1)))
                    .or(Some(u64::MAX))
            }
            _ => None,
        };
        let lvt = self.lvt[Lvt::Timer as usize];
        lvt & LvtFlags::MASKED.bits() == 0 && self.accept(lvt as u8, false)
    }

    /// The current-count register at `now_tsc`.
    pub fn timer_current_count(&self, now_tsc: u64) -> u32 {
        if self.timer_mode() == TimerMode::TscDeadline {
            return 0;
        }
        let Some(deadline) = self.deadline else {
            return 0;
        };
        let remaining = if now_tsc < deadline {
            deadline - now_tsc
        } else if self.timer_mode() == TimerMode::Periodic && self.period > 0 {
            // The caller has not run timer_expired yet: the count has reloaded meanwhile.
            self.period - (now_tsc - deadline) % self.period
        } else {
            0
        };
        remaining
            .div_ceil(self.tsc_per_count())
            .min(self.timer_initial as u64) as u32
    }

    /// A write of IA32_TSC_DEADLINE: arms (or with 0 disarms) the timer in TSC-deadline mode;
    /// ignored in the other modes (SDM 11.5.4.1).
    pub fn write_tsc_deadline(&mut self, value: u64) -> Option<LapicEffect> {
        if self.timer_mode() != TimerMode::TscDeadline || self.mode() == ApicMode::Disabled {
            return None;
        }
        self.deadline = (value != 0).then_some(value);
        Some(LapicEffect::TimerChanged)
    }

    /// IA32_TSC_DEADLINE as the guest reads it: the armed deadline, 0 once it fired or
    /// outside TSC-deadline mode.
    pub fn read_tsc_deadline(&self) -> u64 {
        if self.timer_mode() == TimerMode::TscDeadline {
            self.deadline.unwrap_or(0)
        } else {
            0
        }
    }

    // ----- register access -----

    /// Reads the register at `offset` of the xAPIC page.
    pub fn mmio_read(&self, offset: u64, size: u8, now_tsc: u64) -> Result<u32, LapicError> {
        let offset = self.check_mmio(offset, size)?;
        Ok(match offset {
            reg::ID => self.id << 24,
            reg::EOI | reg::SELF_IPI | reg::RRD => 0,
            reg::ICR_LOW => self.icr_low,
            reg::ICR_HIGH => self.icr_high,
            reg::LDR => self.ldr,
            reg::DFR => self.dfr,
            _ => self.read_common(offset, now_tsc).unwrap_or(0),
        })
    }

    /// Writes the register at `offset` of the xAPIC page. Writes to read-only and reserved
    /// registers are ignored, as the hardware does.
    pub fn mmio_write(
        &mut self,
        offset: u64,
        size: u8,
        value: u32,
        now_tsc: u64,
    ) -> Result<Option<LapicEffect>, LapicError> {
        let offset = self.check_mmio(offset, size)?;
        Ok(match offset {
            reg::EOI => self.eoi(),
            reg::LDR => {
                self.ldr = value & 0xFF00_0000;
                None
            }
            reg::DFR => {
                self.dfr = value | 0x0FFF_FFFF;
                None
            }
            reg::ESR => {
                self.latch_esr();
                None
            }
            reg::ICR_HIGH => {
                self.icr_high = value & 0xFF00_0000;
                None
            }
            reg::ICR_LOW => {
                self.icr_low = value & 0x000C_CFFF;
                self.send_ipi(self.icr_high >> 24, false)
            }
            _ => self.write_common(offset, value, now_tsc),
        })
    }

    fn check_mmio(&self, offset: u64, size: u8) -> Result<u32, LapicError> {
        if self.mode() != ApicMode::XApic {
            return Err(LapicError::MmioNotDecoded);
        }
        if size != 4 || !offset.is_multiple_of(16) || offset >= 0x1000 {
            return Err(LapicError::BadMmioAccess { offset, size });
        }
        Ok(offset as u32)
    }

    /// Reads an x2APIC MSR (0x800..=0x8FF) or IA32_APIC_BASE / IA32_TSC_DEADLINE.
    pub fn msr_read(&self, msr: u32, now_tsc: u64) -> Result<u64, LapicError> {
        match msr {
            MSR_APIC_BASE => return Ok(self.base),
            MSR_TSC_DEADLINE => return Ok(self.read_tsc_deadline()),
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => {}
            _ => return Err(gp(msr, "not a local APIC MSR")),
        }
        if self.mode() != ApicMode::X2Apic {
            return Err(gp(msr, "x2APIC MSR accessed outside x2APIC mode"));
        }
        let offset = (msr - MSR_X2APIC_FIRST) << 4;
        match offset {
            reg::ID => Ok(self.id as u64),
            reg::LDR => Ok(self.ldr as u64),
            reg::ICR_LOW => Ok(((self.icr_high as u64) << 32) | self.icr_low as u64),
            reg::EOI | reg::SELF_IPI => Err(gp(msr, "write-only x2APIC register")),
            _ => self
                .read_common(offset, now_tsc)
                .map(u64::from)
                .ok_or(gp(msr, "no such x2APIC register")),
        }
    }

    /// Writes an x2APIC MSR (0x800..=0x8FF) or IA32_APIC_BASE / IA32_TSC_DEADLINE.
    pub fn msr_write(
        &mut self,
        msr: u32,
        value: u64,
        now_tsc: u64,
    ) -> Result<Option<LapicEffect>, LapicError> {
        match msr {
            MSR_APIC_BASE => {
                let old_mode = self.mode();
                self.write_apic_base(value)?;
                let new_mode = self.mode();
                return Ok((new_mode != old_mode).then_some(LapicEffect::ModeChanged(new_mode)));
            }
            MSR_TSC_DEADLINE => return Ok(self.write_tsc_deadline(value)),
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => {}
            _ => return Err(gp(msr, "not a local APIC MSR")),
        }
        if self.mode() != ApicMode::X2Apic {
            return Err(gp(msr, "x2APIC MSR accessed outside x2APIC mode"));
        }
        let offset = (msr - MSR_X2APIC_FIRST) << 4;
        if offset == reg::ICR_LOW {
            self.icr_low = value as u32 & 0x000C_CFFF;
            self.icr_high = (value >> 32) as u32;
            return Ok(self.send_ipi(self.icr_high, true));
        }
        if value >> 32 != 0 {
            return Err(gp(msr, "reserved bits 63:32 set"));
        }
        let value = value as u32;
        match offset {
            reg::EOI => {
                if value != 0 {
                    return Err(gp(msr, "non-zero EOI write"));
                }
                Ok(self.eoi())
            }
            reg::ESR => {
                if value != 0 {
                    return Err(gp(msr, "non-zero ESR write"));
                }
                self.latch_esr();
                Ok(None)
            }
            reg::SELF_IPI => {
                if value > 0xFF {
                    return Err(gp(msr, "reserved bits of SELF IPI set"));
                }
                Ok(self.self_ipi(value as u8))
            }
            reg::TPR
            | reg::SVR
            | reg::LVT_CMCI
            | reg::LVT_TIMER..=reg::LVT_ERROR
            | reg::TIMER_INITIAL
            | reg::TIMER_DIVIDE => Ok(self.write_common(offset, value, now_tsc)),
            _ => Err(gp(msr, "read-only or absent x2APIC register")),
        }
    }

    /// The registers read the same way in both modes; None for an absent register.
    fn read_common(&self, offset: u32, now_tsc: u64) -> Option<u32> {
        Some(match offset {
            reg::VERSION => VERSION,
            reg::TPR => self.tpr,
            reg::APR => 0,
            reg::PPR => self.ppr() as u32,
            reg::SVR => self.svr,
            reg::ISR..0x180 => self.isr.register(((offset - reg::ISR) / 16) as usize),
            reg::TMR..0x200 => self.tmr.register(((offset - reg::TMR) / 16) as usize),
            reg::IRR..0x280 => self.irr.register(((offset - reg::IRR) / 16) as usize),
            reg::ESR => self.esr,
            reg::LVT_CMCI => self.lvt[Lvt::Cmci as usize],
            reg::LVT_TIMER..=reg::LVT_ERROR => {
                self.lvt[((offset - reg::LVT_TIMER) / 16 + 1) as usize]
            }
            reg::TIMER_INITIAL => self.timer_initial,
            reg::TIMER_CURRENT => self.timer_current_count(now_tsc),
            reg::TIMER_DIVIDE => self.timer_divide,
            _ => return None,
        })
    }

    /// The writes that behave the same in both modes; other offsets are ignored.
    fn write_common(&mut self, offset: u32, value: u32, now_tsc: u64) -> Option<LapicEffect> {
        match offset {
            reg::TPR => self.tpr = value & 0xFF,
            reg::SVR => {
                self.svr = value & 0x3FF;
                if !self.sw_enabled() {
                    self.lvt
                        .iter_mut()
                        .for_each(|l| *l |= LvtFlags::MASKED.bits());
                }
            }
            reg::LVT_CMCI => self.write_lvt(Lvt::Cmci as usize, value),
            reg::LVT_TIMER => return self.write_lvt_timer(value),
            reg::LVT_THERMAL..=reg::LVT_ERROR => {
                self.write_lvt(((offset - reg::LVT_TIMER) / 16 + 1) as usize, value)
            }
            reg::TIMER_INITIAL => {
                if self.timer_mode() == TimerMode::TscDeadline {
                    return None;
                }
                self.timer_initial = value;
                self.start_countdown(now_tsc);
                return Some(LapicEffect::TimerChanged);
            }
            reg::TIMER_DIVIDE => return self.write_timer_divide(value, now_tsc),
            _ => {}
        }
        None
    }

    /// A new divisor rescales a running count-down: the counts left stay, their length
    /// changes (as KVM does; the SDM leaves it open).
    fn write_timer_divide(&mut self, value: u32, now_tsc: u64) -> Option<LapicEffect> {
        let old_divisor = self.timer_divisor();
        let remaining = self.timer_current_count(now_tsc);
        self.timer_divide = value & 0xB;
        let counting = self.deadline.is_some() && self.timer_mode() != TimerMode::TscDeadline;
        if !counting || self.timer_divisor() == old_divisor {
            return None;
        }
        let per_count = self.tsc_per_count();
        self.period = (self.timer_initial as u64).saturating_mul(per_count);
        self.deadline = Some(now_tsc.saturating_add((remaining as u64).saturating_mul(per_count)));
        Some(LapicEffect::TimerChanged)
    }

    fn write_lvt(&mut self, index: usize, value: u32) {
        let Some(&writable) = LVT_WRITABLE.get(index) else {
            return;
        };
        let mut value = value & writable;
        if !self.sw_enabled() {
            value |= LvtFlags::MASKED.bits();
        }
        // Remote IRR is the APIC's own state, kept across writes.
        let old = self.lvt[index];
        self.lvt[index] = value | (old & LvtFlags::REMOTE_IRR.bits() & !writable);
    }

    fn write_lvt_timer(&mut self, value: u32) -> Option<LapicEffect> {
        let old_mode = self.timer_mode();
        self.write_lvt(Lvt::Timer as usize, value);
        let new_mode = self.timer_mode();
        let deadline_switch =
            (old_mode == TimerMode::TscDeadline) != (new_mode == TimerMode::TscDeadline);
        if deadline_switch {
            // Switching into or out of TSC-deadline mode disarms the timer (SDM 11.5.4.1).
            self.deadline = None;
            self.timer_initial = 0;
            self.period = 0;
            return Some(LapicEffect::TimerChanged);
        }
        None
    }

    fn latch_esr(&mut self) {
        self.esr = self.esr_pending;
        self.esr_pending = 0;
    }

    fn self_ipi(&mut self, vector: u8) -> Option<LapicEffect> {
        if vector < 16 {
            self.record_error(EsrFlags::SEND_ILLEGAL_VECTOR);
            return None;
        }
        Some(LapicEffect::Ipi(Message {
            vector,
            dest: self.id,
            wide_dest: true,
            dest_mode: DestMode::Physical,
            delivery: Delivery::Fixed,
            level_trigger: false,
            shorthand: Shorthand::SelfOnly,
        }))
    }

    /// Turns the ICR just written into an IPI (delivery status is always idle: the message is
    /// handed to the caller at once).
    fn send_ipi(&mut self, dest: u32, wide_dest: bool) -> Option<LapicEffect> {
        let icr = self.icr_low;
        let flags = IcrFlags::from_bits_truncate(icr);
        let delivery = Delivery::decode(icr >> 8, true)?;
        if delivery == Delivery::Init
            && flags.contains(IcrFlags::LEVEL)
            && !flags.contains(IcrFlags::ASSERT)
        {
            // INIT level de-assert: only synchronises arbitration IDs on old processors.
            return None;
        }
        let vector = icr as u8;
        if delivery.uses_vector() && vector < 16 {
            self.record_error(EsrFlags::SEND_ILLEGAL_VECTOR);
            return None;
        }
        let shorthand = match (icr >> 18) & 3 {
            0 => Shorthand::None,
            1 => Shorthand::SelfOnly,
            2 => Shorthand::AllIncludingSelf,
            _ => Shorthand::AllExcludingSelf,
        };
        Some(LapicEffect::Ipi(Message {
            vector,
            dest,
            wide_dest,
            dest_mode: if flags.contains(IcrFlags::LOGICAL) {
                DestMode::Logical
            } else {
                DestMode::Physical
            },
            delivery,
            level_trigger: flags.contains(IcrFlags::LEVEL),
            shorthand,
        }))
    }

    /// A write of IA32_APIC_BASE. The base cannot move and the BSP flag is read-only; the
    /// valid transitions are those of SDM 11.12.5 (disabled <-> xAPIC -> x2APIC -> disabled).
    pub fn write_apic_base(&mut self, value: u64) -> Result<(), LapicError> {
        let msr = MSR_APIC_BASE;
        let flags = ApicBaseFlags::X2APIC | ApicBaseFlags::ENABLE;
        let reserved = !(0x000F_FFFF_FFFF_F000 | flags.bits() | ApicBaseFlags::BSP.bits());
        if value & reserved != 0 {
            return Err(gp(msr, "reserved IA32_APIC_BASE bits set"));
        }
        if value & 0x000F_FFFF_FFFF_F000 != APIC_BASE_ADDRESS {
            return Err(gp(
                msr,
                "the local APIC base cannot be moved from 0xFEE00000",
            ));
        }
        let new = ApicBaseFlags::from_bits_truncate(value) & flags;
        let new_mode = match (
            new.contains(ApicBaseFlags::ENABLE),
            new.contains(ApicBaseFlags::X2APIC),
        ) {
            (false, false) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
            (false, true) => return Err(gp(msr, "x2APIC enabled with the APIC disabled")),
        };
        let old_mode = self.mode();
        match (old_mode, new_mode) {
            (ApicMode::X2Apic, ApicMode::XApic) => {
                return Err(gp(msr, "x2APIC to xAPIC without disabling first"))
            }
            (ApicMode::Disabled, ApicMode::X2Apic) => {
                return Err(gp(msr, "disabled to x2APIC without xAPIC first"))
            }
            _ => {}
        }
        self.base = (self.base & ApicBaseFlags::BSP.bits()) | APIC_BASE_ADDRESS | new.bits();
        match new_mode {
            _ if new_mode == old_mode => {}
            ApicMode::Disabled => self.reset_registers(),
            ApicMode::X2Apic => self.ldr = self.x2apic_ldr(),
            ApicMode::XApic => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::irq::destinations;

    const NOW: u64 = 1_000_000;

    fn enabled(id: u32) -> Vlapic {
        let mut l = Vlapic::new(id, id == 0, 1);
        l.mmio_write(0xF0, 4, 0x1FF, NOW).unwrap();
        l
    }

    fn x2(id: u32) -> Vlapic {
        let mut l = enabled(id);
        l.write_apic_base(APIC_BASE_ADDRESS | 0xC00).unwrap();
        l
    }

    fn read(l: &Vlapic, off: u64) -> u32 {
        l.mmio_read(off, 4, NOW).unwrap()
    }

    fn write(l: &mut Vlapic, off: u64, v: u32) -> Option<LapicEffect> {
        l.mmio_write(off, 4, v, NOW).unwrap()
    }

    #[test]
    fn reset_state_and_identification() {
        let l = Vlapic::new(3, false, 1);
        assert_eq!(l.mode(), ApicMode::XApic);
        assert!(!l.sw_enabled());
        assert_eq!(read(&l, 0x20), 3 << 24);
        assert_eq!(read(&l, 0x30), 0x0006_0014);
        assert_eq!(read(&l, 0xE0), 0xFFFF_FFFF);
        assert_eq!(read(&l, 0xF0), 0xFF);
        for lvt in (0x320..=0x370).step_by(16).chain([0x2F0]) {
            assert_eq!(read(&l, lvt), 0x1_0000, "LVT {lvt:#x} masked at reset");
        }
        assert_eq!(l.msr_read(MSR_APIC_BASE, NOW).unwrap(), 0xFEE0_0800);
        assert_eq!(
            Vlapic::new(0, true, 1)
                .msr_read(MSR_APIC_BASE, NOW)
                .unwrap(),
            0xFEE0_0900
        );
    }

    #[test]
    fn mmio_access_rules() {
        let mut l = enabled(0);
        for (off, size) in [(0x24, 4), (0x20, 2), (0x20, 8), (0x1000, 4), (u64::MAX, 4)] {
            assert_eq!(
                l.mmio_read(off, size, NOW),
                Err(LapicError::BadMmioAccess { offset: off, size })
            );
            assert!(l.mmio_write(off, size, 0, NOW).is_err());
        }
        // Read-only and reserved registers ignore writes.
        write(&mut l, 0x20, 0x0500_0000);
        write(&mut l, 0x30, 0);
        write(&mut l, 0x390, 5);
        write(&mut l, 0x7F0, 5);
        assert_eq!(read(&l, 0x20), 0);
        assert_eq!(read(&l, 0x30), VERSION);
        assert_eq!(read(&l, 0x390), 0);
        assert_eq!(read(&l, 0x7F0), 0);
        l.write_apic_base(APIC_BASE_ADDRESS | 0xC00).unwrap();
        assert_eq!(l.mmio_read(0x20, 4, NOW), Err(LapicError::MmioNotDecoded));
    }

    #[test]
    fn tpr_ppr_and_pending_priority() {
        let mut l = enabled(0);
        assert!(l.accept(0x45, false));
        assert_eq!(l.pending(), Some(0x45));
        write(&mut l, 0x80, 0x50);
        assert_eq!(read(&l, 0xA0), 0x50);
        assert_eq!(l.pending(), None, "class 4 is not above TPR class 5");
        write(&mut l, 0x80, 0x3F);
        assert_eq!(l.pending(), Some(0x45));
        assert!(l.ack(0x45));
        assert!(!l.ack(0x45));
        // PPR = ISRV class when above the TPR.
        assert_eq!(read(&l, 0xA0), 0x40);
        assert_eq!(
            read(&l, 0x100 + 0x20),
            1 << 5,
            "ISR register 2 bit 5 = vector 0x45"
        );
        assert!(l.accept(0x41, false));
        assert_eq!(l.pending(), None, "same class as the in-service vector");
        assert!(l.accept(0x61, false));
        assert_eq!(l.pending(), Some(0x61));
        assert_eq!(read(&l, 0x200 + 0x30), 1 << 1);
        assert_eq!(
            write(&mut l, 0xB0, 0),
            Some(LapicEffect::Eoi {
                vector: 0x45,
                level: false
            })
        );
        assert_eq!(l.pending(), Some(0x61));
        assert_eq!(write(&mut l, 0xB0, 0), None, "EOI with nothing in service");
    }

    #[test]
    fn eoi_reports_level_triggered_vectors_and_retires_the_highest() {
        let mut l = enabled(0);
        l.accept(0x30, true);
        l.accept(0x80, false);
        assert_eq!(read(&l, 0x180 + 0x10), 1 << 16, "TMR bit of 0x30");
        for v in [0x30, 0x80] {
            l.ack(v);
        }
        assert_eq!(
            write(&mut l, 0xB0, 0),
            Some(LapicEffect::Eoi {
                vector: 0x80,
                level: false
            })
        );
        assert_eq!(
            write(&mut l, 0xB0, 0),
            Some(LapicEffect::Eoi {
                vector: 0x30,
                level: true
            })
        );
    }

    #[test]
    fn illegal_vectors_and_esr_latch() {
        let mut l = enabled(0);
        assert!(!l.accept(5, false));
        assert_eq!(read(&l, 0x280), 0, "ESR shows errors only after a write");
        write(&mut l, 0x280, 0);
        assert_eq!(read(&l, 0x280), 0x40);
        // Sending a fixed IPI with vector 3.
        assert_eq!(write(&mut l, 0x300, 0x0000_4003), None);
        write(&mut l, 0x280, 0);
        assert_eq!(read(&l, 0x280), 0x20);
        write(&mut l, 0x280, 0);
        assert_eq!(read(&l, 0x280), 0);
        // An unmasked error LVT raises its vector.
        write(&mut l, 0x370, 0xEE);
        assert!(!l.accept(1, false));
        assert_eq!(l.pending(), Some(0xEE));
    }

    #[test]
    fn software_disable_masks_lvts_and_drops_fixed_interrupts() {
        let mut l = enabled(0);
        write(&mut l, 0x320, 0x20);
        assert_eq!(read(&l, 0x320), 0x20);
        write(&mut l, 0xF0, 0xFF);
        assert_eq!(read(&l, 0x320), 0x1_0020);
        write(&mut l, 0x320, 0x20);
        assert_eq!(read(&l, 0x320), 0x1_0020, "cannot unmask while disabled");
        assert!(!l.accept(0x40, false));
        assert_eq!(l.pending(), None);
        assert!(!l.view().sw_enabled);
    }

    #[test]
    fn icr_xapic_builds_messages() {
        let mut l = enabled(1);
        write(&mut l, 0x310, 0x0200_0000);
        assert_eq!(read(&l, 0x310), 0x0200_0000);
        let Some(LapicEffect::Ipi(m)) = write(&mut l, 0x300, 0x0000_4031) else {
            panic!("fixed IPI")
        };
        assert_eq!(
            m,
            Message {
                level_trigger: false,
                ..Message::fixed(0x31, 2)
            }
        );
        assert_eq!(read(&l, 0x300) & (1 << 12), 0, "delivery status idle");
        let Some(LapicEffect::Ipi(m)) = write(&mut l, 0x300, 0x000C_4500) else {
            panic!("INIT")
        };
        assert_eq!(m.delivery, Delivery::Init);
        assert_eq!(m.shorthand, Shorthand::AllExcludingSelf);
        assert_eq!(
            write(&mut l, 0x300, 0x0000_8500),
            None,
            "INIT level de-assert"
        );
        let Some(LapicEffect::Ipi(m)) = write(&mut l, 0x300, 0x0000_0699) else {
            panic!("SIPI")
        };
        assert_eq!((m.delivery, m.vector), (Delivery::Startup, 0x99));
        let Some(LapicEffect::Ipi(m)) = write(&mut l, 0x300, 0x0000_0C00 | 0x400) else {
            panic!("NMI")
        };
        assert_eq!(
            (m.delivery, m.dest_mode),
            (Delivery::Nmi, DestMode::Logical)
        );
        let Some(LapicEffect::Ipi(m)) = write(&mut l, 0x300, 0x0004_0040) else {
            panic!("self")
        };
        assert_eq!(m.shorthand, Shorthand::SelfOnly);
        // Reserved delivery mode 011b.
        assert_eq!(write(&mut l, 0x300, 0x0000_0340), None);
    }

    #[test]
    fn x2apic_msrs() {
        let mut l = x2(0x23);
        assert_eq!(l.msr_read(0x802, NOW).unwrap(), 0x23, "full 32-bit ID");
        assert_eq!(l.msr_read(0x80D, NOW).unwrap(), (2 << 16) | (1 << 3));
        assert!(l.msr_read(0x80E, NOW).is_err(), "no DFR in x2APIC mode");
        assert!(l.msr_read(0x831, NOW).is_err(), "no ICR high MSR");
        assert!(l.msr_read(0x80C, NOW).is_err(), "no remote read register");
        assert!(l.msr_read(0x80B, NOW).is_err(), "EOI is write-only");
        assert!(l.msr_write(0x802, 5, NOW).is_err(), "ID is read-only");
        assert!(l.msr_write(0x80D, 5, NOW).is_err(), "LDR is read-only");
        assert!(l.msr_write(0x803, 5, NOW).is_err(), "version is read-only");
        assert!(l.msr_write(0x80B, 1, NOW).is_err(), "non-zero EOI");
        assert!(
            l.msr_write(0x808, 1 << 32, NOW).is_err(),
            "reserved high bits"
        );
        assert!(l.msr_read(0x10, NOW).is_err());
        l.msr_write(0x808, 0x20, NOW).unwrap();
        assert_eq!(l.msr_read(0x808, NOW).unwrap(), 0x20);
        let e = l
            .msr_write(0x830, (0x1_0004u64 << 32) | 0x0000_0831, NOW)
            .unwrap();
        let Some(LapicEffect::Ipi(m)) = e else {
            panic!("IPI")
        };
        assert_eq!(
            (m.dest, m.wide_dest, m.dest_mode),
            (0x1_0004, true, DestMode::Logical)
        );
        assert_eq!(l.msr_read(0x830, NOW).unwrap(), (0x1_0004u64 << 32) | 0x831);
        let Some(LapicEffect::Ipi(m)) = l.msr_write(0x83F, 0x55, NOW).unwrap() else {
            panic!("self IPI")
        };
        assert_eq!((m.vector, m.shorthand), (0x55, Shorthand::SelfOnly));
        assert!(l.msr_write(0x83F, 0x155, NOW).is_err());
        assert!(l.msr_read(0x83F, NOW).is_err());
        // Outside x2APIC mode the MSRs fault.
        let xl = enabled(0);
        assert!(xl.msr_read(0x802, NOW).is_err());
    }

    #[test]
    fn apic_base_transitions() {
        let mut l = enabled(4);
        let base = APIC_BASE_ADDRESS;
        assert!(l.write_apic_base(0xFEF0_0800).is_err(), "moving the base");
        assert!(l.write_apic_base(base | 0x800 | 1).is_err(), "reserved bit");
        assert!(l.write_apic_base(base | 0x400).is_err(), "EXTD without EN");
        l.write_apic_base(base | 0xC00).unwrap();
        assert_eq!(l.mode(), ApicMode::X2Apic);
        assert!(l.write_apic_base(base | 0x800).is_err(), "x2APIC -> xAPIC");
        l.write_apic_base(base).unwrap();
        assert_eq!(l.mode(), ApicMode::Disabled);
        assert!(!l.view().enabled);
        assert!(!l.accept(0x40, false));
        assert!(
            l.write_apic_base(base | 0xC00).is_err(),
            "disabled -> x2APIC"
        );
        l.write_apic_base(base | 0x800 | 0x100).unwrap();
        assert_eq!(l.mode(), ApicMode::XApic);
        assert_eq!(
            l.msr_read(MSR_APIC_BASE, NOW).unwrap() & 0x100,
            0,
            "the BSP flag is read-only"
        );
        assert!(!l.sw_enabled(), "re-enabled APIC is in its reset state");
    }

    #[test]
    fn apic_base_msr_reports_mode_changes() {
        let mut l = enabled(0);
        let base = APIC_BASE_ADDRESS;
        assert_eq!(l.msr_write(MSR_APIC_BASE, base | 0x900, NOW), Ok(None));
        assert_eq!(
            l.msr_write(MSR_APIC_BASE, base | 0xC00, NOW),
            Ok(Some(LapicEffect::ModeChanged(ApicMode::X2Apic)))
        );
        assert!(l.msr_write(MSR_APIC_BASE, base | 0x800, NOW).is_err());
        assert_eq!(
            l.mode(),
            ApicMode::X2Apic,
            "a refused write changes nothing"
        );
        assert_eq!(
            l.msr_write(MSR_APIC_BASE, base, NOW),
            Ok(Some(LapicEffect::ModeChanged(ApicMode::Disabled)))
        );
    }

    #[test]
    fn logical_registers_feed_destinations() {
        let mut a = enabled(0);
        let mut b = enabled(1);
        write(&mut a, 0xD0, 0x0100_0000);
        write(&mut b, 0xD0, 0x0200_0000);
        assert_eq!(read(&a, 0xD0), 0x0100_0000);
        write(&mut a, 0x310, 0x0300_0000);
        let Some(LapicEffect::Ipi(m)) = write(&mut a, 0x300, 0x0000_0830) else {
            panic!("logical IPI")
        };
        let views = [a.view(), b.view()];
        assert_eq!(destinations(&m, Some(0), &views), 0b11);
        write(&mut a, 0xE0, 0);
        assert_eq!(read(&a, 0xE0), 0x0FFF_FFFF, "cluster model");
    }

    #[test]
    fn sync_pulls_posted_vectors_with_trigger_mode() {
        let mut l = enabled(0);
        let posted = PendingSet::new();
        posted.post(0x50, true);
        posted.post(0x51, false);
        posted.post(0x02, false);
        l.sync(&posted);
        assert!(posted.is_empty());
        assert_eq!(l.pending(), Some(0x51));
        assert_eq!(read(&l, 0x180 + 0x20), 1 << 16);
        write(&mut l, 0x280, 0);
        assert_eq!(read(&l, 0x280), 0x40, "vector 2 rejected");
    }

    #[test]
    fn one_shot_timer_counts_down_from_the_tsc() {
        let mut l = Vlapic::new(0, true, 4);
        l.mmio_write(0xF0, 4, 0x1FF, 0).unwrap();
        l.mmio_write(0x320, 4, 0xEC, 0).unwrap();
        l.mmio_write(0x3E0, 4, 0x1, 0).unwrap(); // divide by 4
        assert_eq!(l.timer_divisor(), 4);
        assert_eq!(
            l.mmio_write(0x380, 4, 1000, 100).unwrap(),
            Some(LapicEffect::TimerChanged)
        );
        // 1000 counts * 4 (divisor) * 4 (TSC per bus tick).
        assert_eq!(l.timer_deadline(), Some(100 + 16_000));
        assert_eq!(l.mmio_read(0x390, 4, 100).unwrap(), 1000);
        assert_eq!(l.mmio_read(0x390, 4, 100 + 8_000).unwrap(), 500);
        assert!(!l.timer_expired(100 + 15_999), "early wake-up");
        assert!(l.timer_expired(100 + 16_000));
        assert_eq!(l.timer_deadline(), None);
        assert_eq!(l.mmio_read(0x390, 4, 100 + 20_000).unwrap(), 0);
        assert_eq!(l.pending(), Some(0xEC));
        // A zero initial count stops the timer.
        l.mmio_write(0x380, 4, 10, 0).unwrap();
        l.mmio_write(0x380, 4, 0, 0).unwrap();
        assert_eq!(l.timer_deadline(), None);
    }

    #[test]
    fn periodic_timer_rearms_without_drift_and_skips_missed_periods() {
        let mut l = enabled(0);
        write(&mut l, 0x3E0, 0xB); // divide by 1
        l.mmio_write(0x320, 4, 0x2_00EC, 0).unwrap();
        assert_eq!(l.timer_mode(), TimerMode::Periodic);
        l.mmio_write(0x380, 4, 1000, 0).unwrap();
        assert_eq!(l.timer_deadline(), Some(1000));
        // Serviced late by 30 cycles: the next deadline stays on the grid.
        assert!(l.timer_expired(1030));
        assert_eq!(l.timer_deadline(), Some(2000));
        assert_eq!(l.mmio_read(0x390, 4, 1500).unwrap(), 500);
        // Serviced 3.5 periods late: one interrupt, next deadline on the grid after now.
        assert!(l.timer_expired(5500));
        assert_eq!(l.timer_deadline(), Some(6000));
        // Current count keeps reloading even if the caller is late.
        assert_eq!(l.mmio_read(0x390, 4, 6250).unwrap(), 750);
        // Masked: keeps counting, no vector.
        l.mmio_write(0x320, 4, 0x3_00ED, 0).unwrap();
        l.ack(0xEC);
        assert!(!l.timer_expired(6000));
        assert_eq!(l.timer_deadline(), Some(7000));
        assert_eq!(l.pending(), None);
    }

    #[test]
    fn divide_change_rescales_the_running_count() {
        let mut l = enabled(0);
        write(&mut l, 0x3E0, 0xB); // divide by 1
        l.mmio_write(0x380, 4, 1000, 0).unwrap();
        assert_eq!(l.mmio_read(0x390, 4, 400).unwrap(), 600);
        assert_eq!(
            l.mmio_write(0x3E0, 4, 0x0, 400).unwrap(),
            Some(LapicEffect::TimerChanged),
            "divide by 2"
        );
        assert_eq!(l.timer_deadline(), Some(400 + 1200));
        assert_eq!(l.mmio_read(0x390, 4, 1000).unwrap(), 300);
        assert_eq!(
            l.mmio_write(0x3E0, 4, 0x0, 1000).unwrap(),
            None,
            "same divisor"
        );
    }

    #[test]
    fn tsc_deadline_mode() {
        let mut l = enabled(0);
        // Outside TSC-deadline mode the MSR ignores writes and reads 0.
        assert_eq!(l.msr_write(MSR_TSC_DEADLINE, 5000, 0).unwrap(), None);
        assert_eq!(l.msr_read(MSR_TSC_DEADLINE, 0).unwrap(), 0);
        write(&mut l, 0x380, 100);
        assert_eq!(
            write(&mut l, 0x320, 0x4_00D0),
            Some(LapicEffect::TimerChanged)
        );
        assert_eq!(
            l.timer_deadline(),
            None,
            "mode switch disarms the count-down"
        );
        assert_eq!(read(&l, 0x380), 0);
        write(&mut l, 0x380, 100);
        assert_eq!(
            read(&l, 0x380),
            0,
            "initial count ignored in TSC-deadline mode"
        );
        assert_eq!(
            l.msr_write(MSR_TSC_DEADLINE, 50_000, 0).unwrap(),
            Some(LapicEffect::TimerChanged)
        );
        assert_eq!(l.timer_deadline(), Some(50_000));
        assert_eq!(l.msr_read(MSR_TSC_DEADLINE, 0).unwrap(), 50_000);
        assert!(!l.timer_expired(49_999));
        assert!(l.timer_expired(50_001));
        assert_eq!(l.msr_read(MSR_TSC_DEADLINE, 0).unwrap(), 0);
        assert_eq!(l.pending(), Some(0xD0));
        l.msr_write(MSR_TSC_DEADLINE, 70_000, 0).unwrap();
        l.msr_write(MSR_TSC_DEADLINE, 0, 0).unwrap();
        assert_eq!(l.timer_deadline(), None, "0 disarms");
        // A deadline in the past fires at once.
        l.msr_write(MSR_TSC_DEADLINE, 10, 0).unwrap();
        assert!(l.timer_expired(NOW));
        // Leaving the mode disarms.
        l.msr_write(MSR_TSC_DEADLINE, 2 * NOW, 0).unwrap();
        write(&mut l, 0x320, 0x00D0);
        assert_eq!(l.timer_deadline(), None);
    }

    #[test]
    fn timer_arithmetic_saturates() {
        let mut l = Vlapic::new(0, true, u64::MAX);
        l.mmio_write(0xF0, 4, 0x1FF, 0).unwrap();
        l.mmio_write(0x3E0, 4, 0xA, 0).unwrap(); // divide by 128
        l.mmio_write(0x320, 4, 0x2_0040, 0).unwrap();
        l.mmio_write(0x380, 4, u32::MAX, u64::MAX - 5).unwrap();
        assert_eq!(l.timer_deadline(), Some(u64::MAX));
        assert!(l.timer_expired(u64::MAX));
        assert_eq!(l.mmio_read(0x390, 4, u64::MAX).unwrap(), 1);
    }

    #[test]
    fn extint_acceptance_follows_lint0() {
        let mut l = enabled(0);
        assert!(!l.accepts_extint());
        write(&mut l, 0x350, 0x700);
        assert!(l.accepts_extint());
        write(&mut l, 0x350, 0x1_0700);
        assert!(!l.accepts_extint());
        l.write_apic_base(APIC_BASE_ADDRESS).unwrap();
        assert!(l.accepts_extint(), "a disabled APIC passes INTR through");
    }

    #[test]
    fn arbitrary_register_traffic_never_panics() {
        // A deterministic pseudo-random walk over every offset and MSR, with ordinary and
        // extreme times and bus ratios, checking invariants on the way.
        for tsc_per_bus_tick in [1, 3, u64::MAX] {
            let mut l = Vlapic::new(1, false, tsc_per_bus_tick);
            let mut x: u64 = 0x1234_5678_9ABC_DEF0 ^ tsc_per_bus_tick;
            for step in 0..100_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let now = if x & (1 << 30) != 0 {
                    x
                } else {
                    step.wrapping_mul(977) ^ (x >> 40)
                };
                match x % 9 {
                    0 => {
                        let _ = l.mmio_read((x >> 8) & 0xFFF, (x >> 20) as u8 & 7, now);
                    }
                    1 => {
                        let _ = l.mmio_write((x >> 8) & 0xFF0, 4, (x >> 32) as u32, now);
                    }
                    2 => {
                        let _ = l.msr_read(0x800 + (x >> 8) as u32 % 0x100, now);
                    }
                    3 => {
                        let _ = l.msr_write(0x800 + (x >> 8) as u32 % 0x100, x >> 24, now);
                    }
                    4 => {
                        let mode = [0, 0x800, 0xC00, 0x400][(x >> 8) as usize % 4];
                        let _ = l.write_apic_base(APIC_BASE_ADDRESS | mode | (x & 0x100));
                    }
                    5 => {
                        let _ = l.accept((x >> 8) as u8, x & (1 << 20) != 0);
                    }
                    6 => {
                        let _ = l.timer_expired(now);
                    }
                    7 => {
                        let _ = l.msr_write(MSR_TSC_DEADLINE, x >> 3, now);
                    }
                    _ => {
                        if let Some(v) = l.pending() {
                            assert!(v >= 16, "vector {v} below 16 requested");
                            assert!(v & 0xF0 > l.ppr() & 0xF0);
                            assert!(l.ack(v));
                        }
                    }
                }
                if l.mode() == ApicMode::Disabled {
                    l.write_apic_base(APIC_BASE_ADDRESS | 0x800).unwrap();
                }
                if l.mode() == ApicMode::XApic {
                    assert_eq!(l.mmio_read(0x300, 4, now).unwrap() & (1 << 12), 0);
                    let initial = l.mmio_read(0x380, 4, now).unwrap();
                    assert!(l.mmio_read(0x390, 4, now).unwrap() <= initial);
                }
            }
        }
    }
}
