//! The virtual interrupt platform every VM gets, as plain host-tested state machines: each
//! device takes its inputs (register accesses, line changes, the time as TSC values) and
//! returns its effects (messages to deliver, timers to arm); the caller wires them to vCPUs,
//! physical timers and the exit handler. Nothing here touches hardware.

pub mod ioapic;
pub mod irq;
pub mod lapic;
pub mod pic;
pub mod rtc;

/// The devices wired together the way the run loop does it: device -> message ->
/// destinations -> vLAPIC -> injection -> EOI -> vIOAPIC.
#[cfg(test)]
mod tests {
    use super::ioapic::Vioapic;
    use super::irq::{destinations, Delivery, LineOp, Message};
    use super::lapic::{LapicEffect, Vlapic};
    use super::pic::Vpic;
    use super::rtc::Vrtc;

    /// One VM's vCPUs.
    struct Vm {
        lapics: Vec<Vlapic>,
    }

    impl Vm {
        fn new(ids: &[u32]) -> Vm {
            let lapics = ids
                .iter()
                .map(|&id| {
                    let mut l = Vlapic::new(id, id == ids[0], 1);
                    l.mmio_write(0xF0, 4, 0x1FF, 0).unwrap();
                    l
                })
                .collect();
            Vm { lapics }
        }

        /// Delivers a fixed message; returns the vCPUs that accepted it.
        fn deliver(&mut self, msg: &Message, source: Option<usize>) -> u64 {
            let views: Vec<_> = self.lapics.iter().map(Vlapic::view).collect();
            let targets = destinations(msg, source, &views);
            let mut accepted = 0;
            for (i, lapic) in self.lapics.iter_mut().enumerate() {
                if targets & (1 << i) != 0
                    && matches!(msg.delivery, Delivery::Fixed | Delivery::LowestPriority)
                    && lapic.accept(msg.vector, msg.level_trigger)
                {
                    accepted |= 1 << i;
                }
            }
            accepted
        }

        /// Injects the vCPU's highest pending vector, as the backend does at an interrupt
        /// window.
        fn inject(&mut self, vcpu: usize) -> Option<u8> {
            let lapic = &mut self.lapics[vcpu];
            let vector = lapic.pending()?;
            lapic.ack(vector);
            Some(vector)
        }
    }

    #[test]
    fn level_interrupt_round_trip_through_the_ioapic() {
        let mut vm = Vm::new(&[0, 1]);
        let mut ioapic = Vioapic::new(48, 0);
        ioapic.write_register(0x10 + 2 * 20 + 1, 1 << 24);
        ioapic.write_register(0x10 + 2 * 20, 0x8041);
        let msg = ioapic.set_irq(20, LineOp::Assert).unwrap().unwrap();
        assert_eq!(vm.deliver(&msg, None), 0b10);
        assert_eq!(vm.inject(0), None);
        assert_eq!(vm.inject(1), Some(0x41));
        // The guest's EOI is level: broadcast to the vIOAPIC, which re-delivers while the
        // line stays asserted.
        let effect = vm.lapics[1].mmio_write(0xB0, 4, 0, 0).unwrap();
        let Some(LapicEffect::Eoi {
            vector,
            level: true,
        }) = effect
        else {
            panic!("level EOI expected, got {effect:?}")
        };
        let mut again = Vec::new();
        ioapic.eoi(vector, |m| again.push(m));
        assert_eq!(again, vec![msg]);
        assert_eq!(vm.deliver(&again[0], None), 0b10);
        assert_eq!(vm.inject(1), Some(0x41));
        ioapic.set_irq(20, LineOp::Deassert).unwrap();
        vm.lapics[1].mmio_write(0xB0, 4, 0, 0).unwrap();
        let mut none = Vec::new();
        ioapic.eoi(0x41, |m| none.push(m));
        assert!(none.is_empty());
    }

    #[test]
    fn rtc_interrupt_through_the_pic_and_lint0() {
        const HZ: u64 = 1_000_000;
        let mut vm = Vm::new(&[0]);
        vm.lapics[0].mmio_write(0x350, 4, 0x700, 0).unwrap(); // LINT0 ExtINT
        let mut pic = Vpic::new();
        for (cmd, data, base, icw3) in [(0x20, 0x21, 0x20, 4), (0xA0, 0xA1, 0x28, 2)] {
            for (port, value) in [(cmd, 0x11), (data, base), (data, icw3), (data, 0x01)] {
                pic.io_write(port, value);
            }
        }
        pic.io_write(0x21, 0);
        pic.io_write(0xA1, 0);
        let mut rtc = Vrtc::new(0, 0, HZ);
        rtc.io_write(0x70, 0x0B, 0);
        rtc.io_write(0x71, 0x12, 0); // UIE
        let at = rtc.next_event(0).unwrap();
        assert!(rtc.tick(at));
        pic.set_irq(8, LineOp::Pulse).unwrap();
        assert!(vm.lapics[0].accepts_extint());
        assert_eq!(pic.output(), Some(0x28));
        assert_eq!(pic.acknowledge(), 0x28);
        assert_eq!(pic.output(), None);
    }

    #[test]
    fn ipis_stay_inside_the_vm() {
        let mut vm = Vm::new(&[0, 1, 2]);
        let mut other_vm = Vm::new(&[3]);
        // vCPU 0 sends a fixed IPI to all excluding self, then an INIT the same way.
        let effect = vm.lapics[0].mmio_write(0x300, 4, 0x000C_4050, 0).unwrap();
        let Some(LapicEffect::Ipi(ipi)) = effect else {
            panic!("IPI expected")
        };
        assert_eq!(vm.deliver(&ipi, Some(0)), 0b110);
        assert_eq!(other_vm.inject(0), None);
        let Some(LapicEffect::Ipi(init)) =
            vm.lapics[0].mmio_write(0x300, 4, 0x000C_4500, 0).unwrap()
        else {
            panic!("INIT expected")
        };
        let views: Vec<_> = vm.lapics.iter().map(Vlapic::view).collect();
        assert_eq!(destinations(&init, Some(0), &views), 0b110);
        // A physical IPI to the other VM's APIC ID 3 finds nobody in this VM.
        vm.lapics[0].mmio_write(0x310, 4, 3 << 24, 0).unwrap();
        let Some(LapicEffect::Ipi(to_3)) = vm.lapics[0].mmio_write(0x300, 4, 0x4050, 0).unwrap()
        else {
            panic!("IPI expected")
        };
        assert_eq!(vm.deliver(&to_3, Some(0)), 0);
        assert_eq!(other_vm.inject(0), None);
    }
}
