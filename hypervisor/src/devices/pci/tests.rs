use super::function::*;
use super::host_bridge;
use super::ivshmem::{self, Doorbell, Ivshmem};

const MB2: u64 = 2 << 20;

fn dev() -> Ivshmem {
    Ivshmem::new(3, [0x8000_0000, 0x8000_1000, 0x1_0000_0000], MB2).unwrap()
}

fn cfg32(f: &Function, o: usize) -> u32 {
    f.config_read(o as u16, 4)
}

#[test]
fn host_bridge_identity_and_empty_extended_space() {
    let h = host_bridge();
    assert_eq!(cfg32(&h, VENDOR_ID), 0x5AF0_8086);
    assert_eq!(cfg32(&h, REVISION) >> 8, 0x06_00_00);
    assert_eq!(h.config_read(HEADER_TYPE as u16, 1), 0);
    // No capabilities: status bit 4 clear, pointer 0.
    assert_eq!(h.config_read(STATUS as u16, 2) & 0x10, 0);
    assert_eq!(h.config_read(CAPABILITIES_PTR as u16, 1), 0);
    // Extended space: no capability (reads zero), writes ignored.
    assert_eq!(h.config_read(0x100, 4), 0);
    assert_eq!(h.config_read(CONFIG_SIZE - 4, 4), 0);
}

#[test]
fn ivshmem_identity() {
    let d = dev();
    let f = &d.function;
    assert_eq!(cfg32(f, VENDOR_ID), 0x1110_1AF4);
    assert_eq!(cfg32(f, REVISION), 0x0500_0001);
    // BAR2: 64-bit prefetchable at 4 GiB.
    assert_eq!(cfg32(f, BAR0 + 8), 0xC);
    assert_eq!(cfg32(f, BAR0 + 12), 1);
    assert_eq!(f.bar_base(2), Some(0x1_0000_0000));
}

#[test]
fn bar_sizing_reads_the_size_mask_and_a_move_follows() {
    let mut d = dev();
    let f = &mut d.function;
    for (bar, mask) in [(0usize, 0xFFFF_FF00u32), (1, 0xFFFF_F000), (2, 0xFFE0_000C)] {
        let o = (BAR0 + 4 * bar) as u16;
        let old = f.config_read(o, 4);
        f.config_write(o, 4, u32::MAX);
        assert_eq!(f.config_read(o, 4), mask, "BAR{bar}");
        f.config_write(o, 4, old);
        assert_eq!(f.config_read(o, 4), old);
    }
    // Upper half of the 64-bit BAR: every bit is address.
    f.config_write((BAR0 + 12) as u16, 4, u32::MAX);
    assert_eq!(cfg32(f, BAR0 + 12), u32::MAX);
    f.config_write((BAR0 + 12) as u16, 4, 0);
    // Unused BARs read zero whatever is written.
    f.config_write((BAR0 + 16) as u16, 4, u32::MAX);
    assert_eq!(cfg32(f, BAR0 + 16), 0);
    // A move: a misaligned address keeps only the bits above the size.
    f.config_write((BAR0 + 8) as u16, 4, 0x9030_0000);
    assert_eq!(f.bar_base(2), Some(0x9020_0000));
    // A byte write into a BAR is merged into its dword.
    f.config_write(BAR0 as u16 + 1, 1, 0x42);
    assert_eq!(f.bar_base(0), Some(0x8000_4200));
}

#[test]
fn memory_decode_gates_every_bar_window() {
    let mut d = dev();
    let f = &mut d.function;
    assert_eq!(f.bar_window(0), None);
    assert_eq!(f.bar_at(0x8000_0010), None);
    f.config_write(COMMAND as u16, 2, COMMAND_MEMORY as u32);
    assert_eq!(f.bar_window(0), Some((0x8000_0000, 256)));
    assert_eq!(f.bar_window(2), Some((0x1_0000_0000, MB2)));
    assert_eq!(f.bar_at(0x8000_0010), Some((0, 0x10)));
    assert_eq!(f.bar_at(0x8000_0100), None);
    assert_eq!(f.bar_at(0x8000_1804), Some((1, 0x804)));
    f.config_write(BAR0 as u16, 4, 0x8800_0000);
    assert_eq!(f.bar_at(0x8000_0010), None);
    assert_eq!(f.bar_at(0x8800_00FC), Some((0, 0xFC)));
    // Hard-wired command bits stay zero.
    f.config_write(COMMAND as u16, 2, 0xFFFF);
    assert_eq!(f.command(), 0x0547);
    f.config_write(COMMAND as u16, 2, 0);
    assert_eq!(f.bar_window(2), None);
}

/// (id, offset) of each capability, walked like a guest.
fn capabilities(f: &Function) -> Vec<(u8, u16)> {
    let mut out = Vec::new();
    let mut at = f.config_read(CAPABILITIES_PTR as u16, 1) as u16;
    while at != 0 && out.len() < 48 {
        out.push((f.config_read(at, 1) as u8, at));
        at = f.config_read(at + 1, 1) as u16;
    }
    out
}

#[test]
fn capability_list_and_msix_layout() {
    let d = dev();
    let f = &d.function;
    assert_ne!(f.config_read(STATUS as u16, 2) & 0x10, 0);
    let caps = capabilities(f);
    assert_eq!(caps.len(), 1);
    let (id, at) = caps[0];
    assert_eq!(id, CAP_ID_MSIX);
    assert_eq!(f.config_read(at + 2, 2), 7); // 8 vectors
    assert_eq!(f.config_read(at + 4, 4), 1); // table: BAR1 + 0
    assert_eq!(f.config_read(at + 8, 4), 0x801); // PBA: BAR1 + 0x800

    let mut g = Function::new(1, 2, 0, [0xFF, 0, 0]);
    g.add_bar(
        0,
        BarSpec {
            kind: BarKind::Mem32,
            size: 4096,
        },
        0,
    )
    .unwrap();
    g.add_msi().unwrap();
    g.add_msix(MsixLayout {
        bar: 0,
        table_offset: 0,
        pba_offset: 0x800,
        vectors: 1,
    })
    .unwrap();
    let ids: Vec<u8> = capabilities(&g).iter().map(|c| c.0).collect();
    assert_eq!(ids, [CAP_ID_MSI, CAP_ID_MSIX]);
}

fn msix_cap(f: &Function) -> u16 {
    capabilities(f)
        .into_iter()
        .find(|c| c.0 == CAP_ID_MSIX)
        .unwrap()
        .1
}

#[test]
fn msix_masking_pending_and_delivery() {
    let mut d = dev();
    let f = &mut d.function;
    let cap = msix_cap(f);
    // Off: nothing is sent.
    assert_eq!(f.signal(2), Signal::Dropped);
    f.config_write(
        COMMAND as u16,
        2,
        (COMMAND_MEMORY | COMMAND_BUS_MASTER) as u32,
    );
    f.config_write(cap + 2, 2, 0x8000);
    assert!(f.msix_enabled());
    // Program entry 2; it starts masked.
    assert_eq!(f.msix_write(1, 2 * 16, 4, 0xFEE0_1000), 0);
    assert_eq!(f.msix_write(1, 2 * 16 + 8, 4, 0x41), 0);
    assert_eq!(f.msix_read(1, 2 * 16 + 12, 4), Some(1));
    assert_eq!(f.signal(2), Signal::Pending);
    assert_eq!(f.msix_read(1, 0x800, 8), Some(1 << 2));
    // Unmask: the pending vector fires once and leaves the PBA.
    assert_eq!(f.msix_write(1, 2 * 16 + 12, 4, 0), 1 << 2);
    assert_eq!(f.msix_read(1, 0x800, 4), Some(0));
    let m = MsiMessage {
        addr: 0xFEE0_1000,
        data: 0x41,
    };
    assert_eq!(f.message(2), Some(m));
    assert_eq!(f.signal(2), Signal::Send(m));
    // Function mask: pending until the mask is cleared in config space.
    f.config_write(cap + 2, 2, 0xC000);
    assert_eq!(f.signal(2), Signal::Pending);
    assert_eq!(f.config_write(cap + 2, 2, 0x8000), 1 << 2);
    // Bus mastering off: no message at all.
    f.config_write(COMMAND as u16, 2, COMMAND_MEMORY as u32);
    assert_eq!(f.signal(2), Signal::Dropped);
    // No such vector; the PBA is read-only; an 8-byte table access spans two dwords.
    f.config_write(
        COMMAND as u16,
        2,
        (COMMAND_MEMORY | COMMAND_BUS_MASTER) as u32,
    );
    assert_eq!(f.signal(8), Signal::Dropped);
    f.msix_write(1, 0x800, 8, u64::MAX);
    assert_eq!(f.msix_read(1, 0x800, 8), Some(0));
    f.msix_write(1, 16, 8, 0x0000_0001_FEE0_0000);
    assert_eq!(f.message(1).unwrap().addr, 0x1_FEE0_0000);
    // Misaligned or odd-sized table accesses are ignored.
    assert_eq!(f.msix_read(1, 2, 4), Some(0xFFFF_FFFF));
    f.msix_write(1, 2 * 16 + 9, 4, 0);
    assert_eq!(f.message(2), Some(m));
}

#[test]
fn msi_sends_its_programmed_message() {
    let mut f = Function::new(1, 2, 0, [0xFF, 0, 0]);
    f.add_msi().unwrap();
    let at = capabilities(&f)[0].1;
    assert_eq!(f.config_read(at + 2, 2), 0x80); // 64-bit capable, one vector
    f.config_write(at + 4, 4, 0xFEE0_2003);
    f.config_write(at + 8, 4, 0);
    f.config_write(at + 12, 2, 0x4051);
    assert_eq!(f.signal(0), Signal::Dropped); // not enabled
    f.config_write(at + 2, 2, 0x71); // enable; MME beyond one vector is not kept
    assert_eq!(f.config_read(at + 2, 2), 0x81);
    assert_eq!(f.signal(0), Signal::Dropped); // no bus mastering
    f.config_write(COMMAND as u16, 2, COMMAND_BUS_MASTER as u32);
    assert_eq!(
        f.signal(0),
        Signal::Send(MsiMessage {
            addr: 0xFEE0_2000,
            data: 0x4051
        })
    );
    assert_eq!(f.signal(1), Signal::Dropped);
}

#[test]
fn ivshmem_registers() {
    let mut d = dev();
    assert_eq!(d.register_read(0x8, 4), 3);
    assert_eq!(d.register_write(0x8, 4, 7), None);
    assert_eq!(d.register_read(0x8, 4), 3);
    assert_eq!(d.register_write(0x0, 4, 0xFFFF), None);
    assert_eq!(d.register_read(0x0, 4), 0xFFFF);
    assert_eq!(
        d.register_write(0xC, 4, 0x0001_0005),
        Some(Doorbell { peer: 1, vector: 5 })
    );
    assert_eq!(d.register_read(0xC, 4), 0);
    assert_eq!(d.register_write(0xC, 2, 0x5), None);
    assert_eq!(d.register_read(0x8, 2), 0);
    assert_eq!(ivshmem::VECTORS, 8);
}

#[test]
fn bad_layouts_are_refused() {
    let mut f = Function::new(1, 2, 0, [0, 0, 0]);
    let m64 = BarSpec {
        kind: BarKind::Mem64 {
            prefetchable: false,
        },
        size: 1 << 20,
    };
    assert_eq!(f.add_bar(5, m64, 0), Err(BuildError::BarSlot));
    f.add_bar(0, m64, 0).unwrap();
    assert_eq!(f.add_bar(1, m64, 0), Err(BuildError::BarSlot));
    let odd = BarSpec {
        kind: BarKind::Mem32,
        size: 3 << 20,
    };
    assert_eq!(f.add_bar(2, odd, 0), Err(BuildError::BarSize));
    let layout = MsixLayout {
        bar: 2,
        table_offset: 0,
        pba_offset: 0x800,
        vectors: 1,
    };
    assert_eq!(f.add_msix(layout), Err(BuildError::MsixLayout));
    assert!(Ivshmem::new(0, [0; 3], 3 << 20).is_err());
}

mod pci_vuart {
    use super::super::function::*;
    use super::super::vuart::PciVuart;
    use crate::devices::uart::Uart;

    const BAR0_AT: u64 = 0x8000_2000;
    const BAR1_AT: u64 = 0x8000_3000;

    fn dev() -> PciVuart {
        PciVuart::new([BAR0_AT, BAR1_AT]).unwrap()
    }

    /// Memory decoding and bus mastering on, MSI-X vector 0 programmed and unmasked, MSI-X
    /// enabled if `enable`.
    fn programmed(enable: bool) -> PciVuart {
        let mut d = dev();
        let f = &mut d.function;
        f.config_write(
            COMMAND as u16,
            2,
            (COMMAND_MEMORY | COMMAND_BUS_MASTER) as u32,
        );
        f.msix_write(1, 0, 4, 0xFEE0_0000);
        f.msix_write(1, 4, 4, 0);
        f.msix_write(1, 8, 4, 0x41);
        f.msix_write(1, 12, 4, 0);
        let cap = f.config_read(CAPABILITIES_PTR as u16, 1) as u16;
        if enable {
            f.config_write(cap + 3, 1, 0x80);
        }
        d
    }

    #[test]
    fn config_header_is_acrns_mcs9900() {
        let d = dev();
        let f = &d.function;
        assert_eq!(f.config_read(VENDOR_ID as u16, 4), 0x9900_9710);
        assert_eq!(f.config_read(SUBSYSTEM_VENDOR_ID as u16, 4), 0x1000_A000);
        assert_eq!(f.config_read(REVISION as u16, 4) >> 8, 0x07_00_02);
        assert_eq!(f.config_read(HEADER_TYPE as u16, 1), 0);
        // One capability, MSI-X: one vector, table and PBA in BAR1.
        let cap = f.config_read(CAPABILITIES_PTR as u16, 1) as u16;
        assert_eq!(f.config_read(cap, 1), CAP_ID_MSIX as u32);
        assert_eq!(f.config_read(cap + 1, 1), 0);
        assert_eq!(f.config_read(cap + 2, 2) & 0x7FF, 0);
        assert_eq!(f.config_read(cap + 4, 4), 1);
        assert_eq!(f.config_read(cap + 8, 4), 0x801);
        // 32-bit memory BARs at the allocated addresses.
        assert_eq!(f.config_read(BAR0 as u16, 4), BAR0_AT as u32);
        assert_eq!(f.config_read(BAR0 as u16 + 4, 4), BAR1_AT as u32);
    }

    #[test]
    fn both_bars_size_as_4k_32bit_memory() {
        let mut d = dev();
        let f = &mut d.function;
        for bar in 0..6u16 {
            let o = BAR0 as u16 + 4 * bar;
            let old = f.config_read(o, 4);
            f.config_write(o, 4, u32::MAX);
            let want = if bar < 2 { 0xFFFF_F000 } else { 0 };
            assert_eq!(f.config_read(o, 4), want, "BAR{bar}");
            f.config_write(o, 4, old);
        }
    }

    #[test]
    fn register_window_is_the_first_8_bytes_of_bar0_while_memory_decodes() {
        let mut d = dev();
        assert_eq!(
            d.register_at(BAR0_AT),
            None,
            "no decode before the command register"
        );
        d.function
            .config_write(COMMAND as u16, 2, COMMAND_MEMORY as u32);
        for r in 0..8 {
            assert_eq!(d.register_at(BAR0_AT + r), Some(Some(r as u16)));
        }
        assert_eq!(d.register_at(BAR0_AT + 8), Some(None));
        assert_eq!(d.register_at(BAR0_AT + 0xFFF), Some(None));
        assert_eq!(
            d.register_at(BAR0_AT + 0x1000),
            None,
            "BAR1 is not registers"
        );
        assert_eq!(d.register_at(BAR0_AT - 1), None);
        // A move takes the window along.
        d.function.config_write(BAR0 as u16, 4, 0x9000_0000);
        assert_eq!(d.register_at(0x9000_0005), Some(Some(5)));
        assert_eq!(d.register_at(BAR0_AT), None);
    }

    #[test]
    fn thre_and_rda_rise_send_the_msix_message_once_per_edge() {
        let mut d = programmed(true);
        let mut uart: Uart<64> = Uart::new(64, 0);
        let msg = Signal::Send(MsiMessage {
            addr: 0xFEE0_0000,
            data: 0x41,
        });
        // THRE: enabling its interrupt with an empty transmitter raises the output.
        uart.write(1, 0x02);
        assert_eq!(d.follow(uart.interrupt_pending()), msg);
        // Still high: no second message.
        assert_eq!(d.follow(uart.interrupt_pending()), Signal::Dropped);
        // Reading IIR clears THRE: the output falls, nothing is sent.
        assert_eq!(uart.read(2) & 0x0F, 0x02);
        assert!(!uart.interrupt_pending());
        assert_eq!(d.follow(false), Signal::Dropped);
        // RDA: a received byte with the receive interrupt on.
        uart.write(1, 0x01);
        uart.receive(b'x');
        assert_eq!(d.follow(uart.interrupt_pending()), msg);
        assert_eq!(uart.read(0), b'x');
        assert_eq!(d.follow(uart.interrupt_pending()), Signal::Dropped);
    }

    #[test]
    fn no_message_without_msix_enabled_or_bus_mastering() {
        let mut d = programmed(false);
        assert_eq!(d.follow(true), Signal::Dropped);
        d.follow(false);
        let mut d = programmed(true);
        d.function
            .config_write(COMMAND as u16, 2, COMMAND_MEMORY as u32);
        assert_eq!(d.follow(true), Signal::Dropped);
    }

    #[test]
    fn a_masked_vector_is_left_pending_and_sent_on_unmask() {
        let mut d = programmed(true);
        d.function.msix_write(1, 12, 4, 1);
        assert_eq!(d.follow(true), Signal::Pending);
        assert_eq!(d.function.msix_read(1, 0x800, 4), Some(1));
        assert_eq!(d.function.msix_write(1, 12, 4, 0), 1);
        assert_eq!(d.function.msix_read(1, 0x800, 4), Some(0));
    }
}

#[test]
fn acrn_vuart_numbers_put_the_console_first() {
    use super::vuart::slot_of;
    // Connections 0 and 2 are PCI, 1 is legacy; 7 link slots, the console's after them.
    let pci = |link: usize| link == 0 || link == 2;
    assert_eq!(
        slot_of(0, true, pci, 7),
        Some(7),
        "vuart_idx 0: the PCI console"
    );
    assert_eq!(
        slot_of(0, false, pci, 7),
        None,
        "a legacy console is not a PCI vUART"
    );
    assert_eq!(slot_of(1, false, pci, 7), Some(0), "the first connection");
    assert_eq!(slot_of(2, false, pci, 7), None, "a legacy connection");
    assert_eq!(slot_of(3, false, pci, 7), Some(2));
    assert_eq!(slot_of(8, false, |_| true, 7), None, "beyond the slots");
    assert_eq!(slot_of(u32::MAX, false, |_| true, 7), None);
}
