use super::*;

type Link = Uart<RX_BUF_MAX>;

/// 8N1, divisor 1, FIFOs on with `fcr`, interrupts `ier`, outputs `mcr`.
fn programmed(rx_size: usize, fcr: u8, ier: u8, mcr: u8) -> Link {
    let mut u = Link::new(rx_size, 0);
    u.write(LCR, 0x83);
    u.write(RBR_THR_DLL, 1);
    u.write(IER_DLM, 0);
    u.write(LCR, 0x03);
    u.write(IIR_FCR, fcr);
    u.write(MCR, mcr);
    u.write(IER_DLM, ier);
    u
}

#[test]
fn lines_are_collected() {
    let mut l = ConsoleLine::new();
    for &c in b"hello\r" {
        assert_eq!(l.push(c), None);
    }
    assert_eq!(l.push(b'\n'), Some(&b"hello"[..]));
    assert_eq!(l.push(b'\n'), Some(&b""[..]));
    l.push(b'x');
    assert_eq!(l.take_partial(), Some(&b"x"[..]));
    assert_eq!(l.take_partial(), None);
}

#[test]
fn long_lines_are_split() {
    let mut l = ConsoleLine::new();
    for _ in 0..LINE_MAX - 1 {
        assert!(l.push(b'a').is_none());
    }
    assert_eq!(l.push(b'a').map(|l| l.len()), Some(LINE_MAX));
}

#[test]
fn divisor_scratch_and_fifo_signature() {
    let mut u = Link::new(256, TERMINAL_ATTACHED);
    assert_eq!(u.read(LSR), 0x60, "transmitter empty at reset");
    u.write(LCR, 0x83);
    u.write(RBR_THR_DLL, 0x0C);
    u.write(IER_DLM, 0x00);
    assert_eq!((u.read(RBR_THR_DLL), u.read(IER_DLM)), (0x0C, 0x00));
    u.write(RBR_THR_DLL, 0x01);
    assert_eq!(u.take_tx(), None, "DLAB set: divisor, not data");
    u.write(LCR, 0x03);
    assert_eq!(u.read(LCR), 0x03);
    u.write(SCR, 0x5A);
    assert_eq!(u.read(SCR), 0x5A);
    assert_eq!(u.read(IIR_FCR), 0x01, "no interrupt pending, FIFO off");
    u.write(IIR_FCR, 0xC7);
    assert_eq!(u.read(IIR_FCR), 0xC1, "16550A FIFO signature");
    assert_eq!(
        u.read(MSR),
        TERMINAL_ATTACHED,
        "a terminal's lines, no deltas"
    );
}

#[test]
fn thre_interrupt_on_enable_and_after_transmission() {
    let mut u = programmed(256, 0x07, 0, MCR_OUT2);
    assert!(!u.irq_line());
    u.write(IER_DLM, IER_ETBEI);
    assert!(u.irq_line(), "enabling THRE interrupts with THR empty");
    assert_eq!(u.read(IIR_FCR), 0xC2);
    assert_eq!(u.read(IIR_FCR), 0xC1, "reading IIR cleared it");
    assert!(!u.irq_line());
    for b in 0..FIFO_SIZE as u8 {
        u.write(RBR_THR_DLL, b);
    }
    assert_eq!(
        u.read(LSR) & 0x60,
        0,
        "THRE and TEMT clear while the FIFO holds bytes"
    );
    u.write(RBR_THR_DLL, 0xEE);
    for b in 0..FIFO_SIZE as u8 {
        assert!(!u.irq_line());
        assert_eq!(u.take_tx(), Some(b), "in order; the 17th byte was lost");
    }
    assert_eq!(u.take_tx(), None);
    assert_eq!(u.read(LSR) & 0x60, 0x60);
    assert!(u.irq_line(), "the transmitter emptied");
    u.write(RBR_THR_DLL, 1);
    assert!(!u.irq_line(), "writing THR clears the THRE interrupt");
}

#[test]
fn without_fifos_one_byte_each_way() {
    let mut u = programmed(256, 0x00, 0, 0);
    u.write(RBR_THR_DLL, 1);
    u.write(RBR_THR_DLL, 2);
    assert_eq!((u.take_tx(), u.take_tx()), (Some(1), None));
    assert_eq!(u.rx_room(), 1);
    assert!(u.receive(7));
    assert!(!u.receive(8), "no room: overrun");
    assert_eq!(u.read(LSR) & 0x03, 0x03, "DR and OE");
    assert_eq!(u.read(LSR) & 0x03, 0x01, "reading LSR cleared OE");
    assert_eq!(u.read(RBR_THR_DLL), 7);
    assert_eq!(u.read(LSR) & 0x01, 0);
}

#[test]
fn interrupt_priorities() {
    let mut u = programmed(256, 0x07, 0x0F, MCR_OUT2);
    assert_eq!(u.read(IIR_FCR) & 0x0F, IIR_THRE);
    // Every source at once: line status, data, THRE, modem status.
    u.receive(1);
    u.receive(2);
    u.receive(3); // overruns nothing yet
    u.set_inputs(MSR_CTS);
    u.write(IER_DLM, 0x0D);
    u.write(IER_DLM, 0x0F); // THRE interrupt again
    let mut filled = Link::new(1, 0);
    filled.write(IIR_FCR, 0x01);
    assert!(filled.receive(9));
    assert!(!filled.receive(10));
    for _ in 0..253 {
        u.receive(0);
    }
    assert!(!u.receive(0), "buffer of 256 full");
    assert_eq!(u.read(IIR_FCR) & 0x0F, IIR_RLS, "line status first");
    assert_eq!(u.read(LSR) & LSR_OE, LSR_OE);
    assert_eq!(u.read(IIR_FCR) & 0x0F, IIR_RDA, "then received data");
    while u.read(LSR) & LSR_DR != 0 {
        u.read(RBR_THR_DLL);
    }
    assert_eq!(u.read(IIR_FCR) & 0x0F, IIR_THRE, "then THR empty");
    assert_eq!(u.read(IIR_FCR) & 0x0F, IIR_MSR, "then modem status");
    assert_eq!(u.read(MSR), MSR_CTS | MSR_DCTS);
    assert_eq!(u.read(IIR_FCR) & 0x0F, IIR_NONE);
    assert!(!u.irq_line());
}

#[test]
fn trigger_levels_and_character_timeout() {
    for (fcr, level) in [(0x01, 1), (0x41, 4), (0x81, 8), (0xC1, 14)] {
        let mut u = programmed(256, fcr, IER_ERBFI, MCR_OUT2);
        for i in 1..=level {
            u.receive(i as u8);
            let want = if i < level { IIR_CTI } else { IIR_RDA };
            assert_eq!(u.read(IIR_FCR), 0xC0 | want, "level {level}, {i} bytes");
        }
    }
}

#[test]
fn fcr_clears_fifos() {
    let mut u = programmed(256, 0x07, IER_ETBEI, MCR_OUT2);
    u.read(IIR_FCR);
    u.write(RBR_THR_DLL, 1);
    u.receive(2);
    assert!(!u.irq_line());
    u.write(IIR_FCR, 0x07);
    assert_eq!(u.read(LSR) & 0x61, 0x60, "both FIFOs empty");
    assert!(u.irq_line(), "clearing a full transmitter raises THRE");
}

#[test]
fn loopback() {
    let mut u = programmed(256, 0x07, IER_ERBFI, MCR_OUT2 | MCR_LOOP);
    assert_eq!(u.rx_room(), 0, "the serial input is disconnected");
    assert_eq!(u.outputs(), 0);
    u.write(RBR_THR_DLL, 0x42);
    assert_eq!(u.take_tx(), None, "looped back, not transmitted");
    assert_eq!(u.read(IIR_FCR) & 0x0F, IIR_RDA);
    assert!(!u.irq_line(), "the interrupt pin is inactive in loopback");
    assert_eq!(u.read(RBR_THR_DLL), 0x42);
    u.write(MCR, MCR_LOOP | 0x0F);
    assert_eq!(
        u.read(MSR) & 0xF0,
        0xF0,
        "RTS, DTR, OUT1, OUT2 to CTS, DSR, RI, DCD"
    );
    u.write(MCR, MCR_LOOP);
    assert_eq!(
        u.read(MSR),
        MSR_DCTS | MSR_DDSR | MSR_TERI | MSR_DDCD,
        "all lines fell; RI's trailing edge"
    );
    u.write(MCR, MCR_LOOP | MCR_OUT1);
    assert_eq!(u.read(MSR), MSR_RI, "a rising RI is no TERI");
}

#[test]
fn msr_deltas_and_interrupt() {
    let mut u = programmed(256, 0x07, IER_EDSSI, MCR_OUT2);
    assert!(!u.irq_line());
    u.set_inputs(MSR_DSR | MSR_DCD);
    assert!(u.irq_line());
    assert_eq!(u.read(IIR_FCR) & 0x0F, IIR_MSR);
    assert_eq!(u.read(MSR), MSR_DSR | MSR_DCD | MSR_DDSR | MSR_DDCD);
    assert!(!u.irq_line(), "reading MSR cleared the deltas");
    u.set_inputs(MSR_DSR | MSR_DCD);
    assert!(!u.irq_line(), "no change, no delta");
}

#[test]
fn out2_gates_the_irq_line() {
    let mut u = programmed(256, 0x07, IER_ETBEI, 0);
    assert_eq!(u.read(IIR_FCR) & 0x0F, IIR_THRE, "pending inside the UART");
    u.write(IER_DLM, 0);
    u.write(IER_DLM, IER_ETBEI);
    assert!(!u.irq_line(), "but OUT2 is off");
    u.write(MCR, MCR_OUT2);
    assert!(u.irq_line());
}

#[test]
fn null_modem_lines() {
    let mut a = programmed(256, 0x07, IER_EDSSI, MCR_OUT2);
    let mut b = programmed(256, 0x07, 0, 0);
    null_modem(&mut a, &mut b);
    assert_eq!(a.read(MSR), 0, "the peer drives nothing yet");
    b.write(MCR, MCR_DTR | MCR_RTS);
    null_modem(&mut a, &mut b);
    assert!(a.irq_line());
    assert_eq!(
        a.read(MSR),
        MSR_CTS | MSR_DSR | MSR_DCD | MSR_DCTS | MSR_DDSR | MSR_DDCD
    );
    b.write(MCR, MCR_DTR);
    null_modem(&mut a, &mut b);
    assert_eq!(a.read(MSR), MSR_DSR | MSR_DCD | MSR_DCTS, "RTS dropped");
    b.write(MCR, MCR_DTR | MCR_RTS | MCR_LOOP);
    null_modem(&mut a, &mut b);
    assert_eq!(a.read(MSR) & 0xF0, 0, "a peer in loopback drives no line");
}

/// The stream a test sends: a simple LCG's high bytes.
fn stream(n: usize) -> impl Iterator<Item = u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n).map(move |_| {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (x >> 24) as u8
    })
}

#[test]
fn a_slow_reader_holds_the_sender_back_and_loses_nothing() {
    const N: usize = 20_000;
    let rx_size = 256;
    let mut tx = programmed(rx_size, 0x07, IER_ETBEI, MCR_OUT2 | MCR_DTR | MCR_RTS);
    let mut rx = programmed(rx_size, 0xC7, IER_ERBFI, MCR_OUT2 | MCR_DTR | MCR_RTS);
    let mut to_send = stream(N).peekable();
    let mut want = stream(N);
    let (mut received, mut held_back, mut rounds) = (0, 0, 0);
    while received < N {
        rounds += 1;
        assert!(rounds < 100 * N, "no progress");
        // The sender fills its FIFO whenever THRE interrupts it.
        if tx.irq_line() && tx.read(IIR_FCR) & 0x0F == IIR_THRE {
            for _ in 0..FIFO_SIZE {
                match to_send.next() {
                    Some(b) => tx.write(RBR_THR_DLL, b),
                    None => break,
                }
            }
        }
        null_modem(&mut tx, &mut rx);
        if tx.read(LSR) & (LSR_THRE | LSR_TEMT) == 0 {
            held_back += 1;
        }
        // The reader takes at most 3 bytes a round: slower than the sender.
        for _ in 0..3 {
            if rx.read(LSR) & LSR_DR == 0 {
                break;
            }
            assert_eq!(
                rx.read(RBR_THR_DLL),
                want.next().unwrap(),
                "byte {received}"
            );
            received += 1;
        }
        assert_eq!(rx.read(LSR) & LSR_OE, 0, "no overrun");
        null_modem(&mut tx, &mut rx);
    }
    assert!(to_send.peek().is_none());
    assert!(held_back > 0, "the full receiver held the sender back");
    assert_eq!(rx.read(LSR) & LSR_DR, 0, "nothing more than was sent");
}

#[test]
fn space_freed_by_the_reader_raises_thre_in_the_sender() {
    let mut tx = programmed(256, 0x07, IER_ETBEI, MCR_OUT2);
    let mut rx = programmed(16, 0x07, 0, 0);
    tx.read(IIR_FCR);
    for b in 0..32 {
        if b == 16 {
            null_modem(&mut tx, &mut rx);
        }
        tx.write(RBR_THR_DLL, b);
    }
    null_modem(&mut tx, &mut rx);
    assert_eq!(rx.rx_room(), 0);
    assert!(!tx.irq_line(), "held back: THR not empty");
    assert_eq!(tx.read(LSR) & 0x60, 0);
    for b in 0..16 {
        assert_eq!(rx.read(RBR_THR_DLL), b);
    }
    null_modem(&mut tx, &mut rx);
    assert!(
        tx.irq_line(),
        "the reader made room, the transmitter emptied"
    );
    for b in 16..32 {
        assert_eq!(rx.read(RBR_THR_DLL), b);
    }
}
