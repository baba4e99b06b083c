//! The interrupt-storm monitor (`--intr_monitor THRESHOLD,PERIOD,DELAY,DURATION`), as ACRN's
//! acrn-dm runs it (`core/monitor.c`): every PERIOD seconds it reads the pass-through
//! interrupt counts of the VM (VM_INTR_MONITOR, GET_DATA); when one grew by more than
//! THRESHOLD per second over the period, it asks the hypervisor to delay each injection by
//! DELAY ms for DURATION ms (DELAY_INT), then checks again after 2 s.

use crate::vmm::VmControl;
use acrn_abi::irq::{AcrnIntrMonitor, INTR_CMD_DELAY_INT, INTR_CMD_GET_DATA, MAX_PTDEV_NUM};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// ACRN's pause before probing again after a storm.
pub const CHECK_AGAIN: Duration = Duration::from_secs(2);

/// The parsed `--intr_monitor` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntrMonitorSetting {
    /// Interrupts per second that make a storm.
    pub threshold_per_sec: u32,
    /// Seconds between probes.
    pub period_secs: u32,
    /// Milliseconds each injection is delayed during a storm.
    pub delay_ms: u32,
    /// Milliseconds the delay lasts.
    pub duration_ms: u32,
}

impl IntrMonitorSetting {
    /// Count growth over one period that makes a storm.
    pub fn threshold_per_period(&self) -> u64 {
        u64::from(self.threshold_per_sec) * u64::from(self.period_secs)
    }
}

/// The page given to VM_INTR_MONITOR: the HSM pins it and the hypervisor writes into it, so it
/// is page-aligned and must outlive the VM.
#[repr(C, align(4096))]
pub struct MonitorPage(UnsafeCell<AcrnIntrMonitor>);

// SAFETY: only the monitor thread issues the ioctl and reads the page; the hypervisor writes
// it only during that ioctl.
unsafe impl Sync for MonitorPage {}

impl MonitorPage {
    /// A zeroed page.
    pub fn new() -> Box<Self> {
        Box::new(Self(UnsafeCell::new(AcrnIntrMonitor::default())))
    }

    /// The monitor structure at the start of the page.
    pub fn ptr(&self) -> *mut AcrnIntrMonitor {
        self.0.get()
    }
}

/// The first (pirq, count) pair whose count grew by more than `threshold` from `prev` to `cur`
/// (pairs whose IRQ changed, or whose count went backwards, are skipped as ACRN does).
pub fn find_storm(prev: &[u64], cur: &[u64], threshold: u64) -> Option<(u64, u64)> {
    prev.chunks_exact(2)
        .zip(cur.chunks_exact(2))
        .filter(|(p, c)| p[0] == c[0] && c[1] >= p[1])
        .map(|(p, c)| (c[0], c[1] - p[1]))
        .find(|(_, delta)| *delta > threshold)
}

fn request<C: VmControl + ?Sized>(ctl: &C, page: &MonitorPage, cmd: u32, arg: u64) -> bool {
    // SAFETY: only this thread touches the page between ioctls.
    unsafe {
        let m = &mut *page.ptr();
        m.cmd = cmd;
        if cmd == INTR_CMD_GET_DATA {
            m.buf_cnt = (MAX_PTDEV_NUM * 2) as u32;
            m.buffer = [0; MAX_PTDEV_NUM * 2];
        } else {
            m.buffer[0] = arg;
        }
    }
    ctl.vm_intr_monitor(page).is_ok()
}

fn counts(page: &MonitorPage) -> Vec<u64> {
    // SAFETY: read after the ioctl returned.
    let m = unsafe { &*page.ptr() };
    let n = (m.buf_cnt as usize).min(MAX_PTDEV_NUM * 2);
    m.buffer[..n].to_vec()
}

/// Sleeps `d` in short steps; false if `done` was set meanwhile.
pub(crate) fn sleep_unless(done: &AtomicBool, d: Duration) -> bool {
    let step = Duration::from_millis(20);
    let mut left = d;
    while !left.is_zero() {
        if done.load(Ordering::Acquire) {
            return false;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    !done.load(Ordering::Acquire)
}

/// The monitor loop; ends when `done` is set or the hypervisor refuses a request.
pub fn run<C: VmControl + ?Sized>(
    ctl: &C,
    page: &MonitorPage,
    setting: IntrMonitorSetting,
    done: &AtomicBool,
) {
    let period = Duration::from_secs(setting.period_secs.into());
    if !sleep_unless(done, period) || !request(ctl, page, INTR_CMD_GET_DATA, 0) {
        return;
    }
    loop {
        let prev = counts(page);
        if !sleep_unless(done, period) || !request(ctl, page, INTR_CMD_GET_DATA, 0) {
            return;
        }
        let Some((irq, delta)) = find_storm(&prev, &counts(page), setting.threshold_per_period())
        else {
            continue;
        };
        crate::logger::log(
            crate::logger::Level::Notice,
            &format!(
                "interrupt storm on IRQ {irq}: {delta} in {}s",
                setting.period_secs
            ),
        );
        if !request(ctl, page, INTR_CMD_DELAY_INT, setting.delay_ms.into()) {
            return;
        }
        let delayed = sleep_unless(done, Duration::from_millis(setting.duration_ms.into()));
        // Restore normal injection even when stopping.
        request(ctl, page, INTR_CMD_DELAY_INT, 0);
        if !delayed || !sleep_unless(done, CHECK_AGAIN) || !request(ctl, page, INTR_CMD_GET_DATA, 0)
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_detection_as_acrn() {
        let prev = [10, 100, 11, 5, 12, 0];
        // IRQ 11 grew by 2001 > 2000; IRQ 10 by 1000.
        let cur = [10, 1100, 11, 2006, 12, 0];
        assert_eq!(find_storm(&prev, &cur, 2000), Some((11, 2001)));
        assert_eq!(find_storm(&prev, &cur, 3000), None);
        // A changed IRQ number or a count that went backwards is skipped.
        assert_eq!(find_storm(&[10, 0], &[13, 99_999], 1), None);
        assert_eq!(find_storm(&[10, 500], &[10, 1], 1), None);
    }

    #[test]
    fn thresholds_scale_with_the_period() {
        let s = IntrMonitorSetting {
            threshold_per_sec: 10_000,
            period_secs: 10,
            delay_ms: 1,
            duration_ms: 100,
        };
        assert_eq!(s.threshold_per_period(), 100_000);
    }

    #[test]
    fn page_is_page_aligned() {
        let p = MonitorPage::new();
        assert_eq!(p.ptr() as usize % 4096, 0);
    }
}
