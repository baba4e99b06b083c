//! HC_VM_INTR_MONITOR's DELAY_INT, ACRN's interrupt-storm mitigation. The Service VM's device
//! model counts a VM's pass-through interrupts (GET_DATA) and, when one source storms, sets a
//! delay for the VM: from then on each pass-through interrupt is held back that long, and
//! more interrupts of the same source meanwhile fold into the one held (an MSI is an edge,
//! and a level line stays asserted). A delay of 0 delivers at once again; what is held still
//! waits for its time.

/// Sources one VM can have held at once; an interrupt beyond them is delivered at once.
pub const MAX_HELD: usize = 32;

/// The longest delay accepted (ms): longer requests are cut to it.
pub const MAX_DELAY_MS: u64 = 10_000;

/// A pass-through interrupt source of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldSource {
    /// An MSI (`entry` None) or an MSI-X entry of the function in vPCI pass-through `slot`.
    Msi { slot: usize, entry: Option<usize> },
    /// A remapped INTx line: the VM's GSI, and whether it is level-triggered.
    Intx { gsi: u32, level: bool },
}

/// What one VM holds back, with the time (TSC) each is due.
pub struct HeldInterrupts {
    delay: u64,
    held: [Option<(HeldSource, u64)>; MAX_HELD],
}

/// What [`HeldInterrupts::hold`] did with an interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// No delay (or no room): deliver it now.
    DeliverNow,
    /// Held until the returned TSC time, which is new: a timer must be armed for it.
    Held(u64),
    /// Folded into the one of its source already held.
    Folded,
}

impl Default for HeldInterrupts {
    fn default() -> Self {
        Self::new()
    }
}

impl HeldInterrupts {
    pub const fn new() -> Self {
        HeldInterrupts {
            delay: 0,
            held: [None; MAX_HELD],
        }
    }

    /// Interrupts arriving from now on wait `ticks` TSC ticks (0: none).
    pub fn set_delay(&mut self, ticks: u64) {
        self.delay = ticks;
    }

    pub fn delay(&self) -> u64 {
        self.delay
    }

    /// An interrupt of `source` arrived at `now`.
    pub fn hold(&mut self, source: HeldSource, now: u64) -> Hold {
        if self.delay == 0 {
            return Hold::DeliverNow;
        }
        if self.held.iter().flatten().any(|&(s, _)| s == source) {
            return Hold::Folded;
        }
        match self.held.iter_mut().find(|h| h.is_none()) {
            Some(free) => {
                let due = now.saturating_add(self.delay);
                *free = Some((source, due));
                Hold::Held(due)
            }
            None => Hold::DeliverNow,
        }
    }

    /// When the first held interrupt is due.
    pub fn next_due(&self) -> Option<u64> {
        self.held.iter().flatten().map(|&(_, due)| due).min()
    }

    /// Hands the interrupts due by `now` to `deliver`, in the order they are due, and lets them
    /// go.
    pub fn release_due(&mut self, now: u64, mut deliver: impl FnMut(HeldSource)) {
        while let Some(h) = self
            .held
            .iter_mut()
            .filter(|h| h.is_some_and(|(_, due)| due <= now))
            .min_by_key(|h| h.map(|(_, due)| due))
        {
            if let Some((source, _)) = h.take() {
                deliver(source);
            }
        }
    }

    /// Everything dropped and no delay (the VM was reset).
    pub fn clear(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSI: HeldSource = HeldSource::Msi {
        slot: 0,
        entry: Some(3),
    };
    const LINE: HeldSource = HeldSource::Intx {
        gsi: 22,
        level: true,
    };

    #[test]
    fn without_a_delay_everything_goes_at_once() {
        let mut h = HeldInterrupts::new();
        assert_eq!(h.hold(MSI, 100), Hold::DeliverNow);
        assert_eq!(h.next_due(), None);
    }

    #[test]
    fn a_delay_holds_each_source_once_and_releases_it_when_due() {
        let mut h = HeldInterrupts::new();
        h.set_delay(1000);
        assert_eq!(h.hold(MSI, 100), Hold::Held(1100));
        // A storm of the same source folds into the one held.
        assert_eq!(h.hold(MSI, 200), Hold::Folded);
        assert_eq!(h.hold(MSI, 900), Hold::Folded);
        assert_eq!(h.hold(LINE, 500), Hold::Held(1500));
        assert_eq!(h.next_due(), Some(1100));
        let mut out = Vec::new();
        h.release_due(1099, |s| out.push(s));
        assert!(out.is_empty());
        h.release_due(2000, |s| out.push(s));
        assert_eq!(out, [MSI, LINE], "each once, in the order due");
        assert_eq!(h.next_due(), None);
        // Held anew after its release.
        assert_eq!(h.hold(MSI, 2000), Hold::Held(3000));
        // Delay 0: new interrupts go at once, the held one waits for its time.
        h.set_delay(0);
        assert_eq!(h.hold(LINE, 2001), Hold::DeliverNow);
        assert_eq!(h.next_due(), Some(3000));
        h.clear();
        assert_eq!((h.next_due(), h.delay()), (None, 0));
    }

    #[test]
    fn a_full_table_delivers_at_once() {
        let mut h = HeldInterrupts::new();
        h.set_delay(10);
        for gsi in 0..MAX_HELD as u32 {
            let line = HeldSource::Intx { gsi, level: false };
            assert_eq!(h.hold(line, 0), Hold::Held(10));
        }
        assert_eq!(h.hold(MSI, 0), Hold::DeliverNow);
        // A time near the end of the TSC saturates instead of wrapping.
        h.clear();
        h.set_delay(10);
        assert_eq!(h.hold(MSI, u64::MAX - 1), Hold::Held(u64::MAX));
    }
}
