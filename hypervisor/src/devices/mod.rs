//! The virtual interrupt platform every VM gets, as plain host-tested state machines: each
//! device takes its inputs (register accesses, line changes, the time as TSC values) and
//! returns its effects (messages to deliver, timers to arm); the caller wires them to vCPUs,
//! physical timers and the exit handler. Nothing here touches hardware.

pub mod ioapic;
pub mod irq;
pub mod lapic;
pub mod pic;
pub mod rtc;
