//! Checks the uapi part of the ABI against Linux's own header, `/usr/include/linux/acrn.h`: a C
//! probe is generated, compiled with `cc` and run; it prints sizeof/_Alignof/offsetof of every
//! struct and the value of every constant and ioctl number, and each is compared with Rust.
//!
//! The header comes from Debian's `linux-libc-dev`; without it (or without `cc`) this test fails
//! on purpose, saying what to install.

use acrn_abi::device::*;
use acrn_abi::ioctl::*;
use acrn_abi::ioreq::*;
use acrn_abi::irq::{
    AcrnMsiEntry, AcrnPtdevIntx, AcrnPtdevIrq, ACRN_PTDEV_IRQ_INTX, ACRN_PTDEV_IRQ_MSI,
    ACRN_PTDEV_IRQ_MSIX,
};
use acrn_abi::memory::*;
use acrn_abi::pm::*;
use acrn_abi::regs::*;
use acrn_abi::vm::*;
use core::mem::{align_of, offset_of, size_of};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const HEADER: &str = "/usr/include/linux/acrn.h";

enum Probe {
    /// C struct name, Rust size, Rust alignment.
    Size(&'static str, usize, usize),
    /// C struct name, C member designator, Rust offset.
    Offset(&'static str, &'static str, usize),
    /// C macro or enumerator, Rust value.
    Const(&'static str, i64),
}
use Probe::*;

macro_rules! size {
    ($c:literal, $t:ty) => {
        Size($c, size_of::<$t>(), align_of::<$t>())
    };
}

fn probes() -> Vec<Probe> {
    let reqs = offset_of!(IoRequest, reqs);
    let gdt = offset_of!(AcrnRegs, gdt);
    let regs = offset_of!(AcrnVcpuRegs, vcpu_regs);
    let intx = offset_of!(AcrnPtdevIrq, intx);
    let res = offset_of!(AcrnMmiodev, res);
    let mut p = vec![
        size!("acrn_mmio_request", MmioRequest),
        Offset(
            "acrn_mmio_request",
            "direction",
            offset_of!(MmioRequest, direction),
        ),
        Offset(
            "acrn_mmio_request",
            "reserved",
            offset_of!(MmioRequest, reserved),
        ),
        Offset(
            "acrn_mmio_request",
            "address",
            offset_of!(MmioRequest, address),
        ),
        Offset("acrn_mmio_request", "size", offset_of!(MmioRequest, size)),
        Offset("acrn_mmio_request", "value", offset_of!(MmioRequest, value)),
        size!("acrn_pio_request", PioRequest),
        Offset(
            "acrn_pio_request",
            "direction",
            offset_of!(PioRequest, direction),
        ),
        Offset(
            "acrn_pio_request",
            "reserved",
            offset_of!(PioRequest, reserved),
        ),
        Offset(
            "acrn_pio_request",
            "address",
            offset_of!(PioRequest, address),
        ),
        Offset("acrn_pio_request", "size", offset_of!(PioRequest, size)),
        Offset("acrn_pio_request", "value", offset_of!(PioRequest, value)),
        size!("acrn_pci_request", PciRequest),
        Offset(
            "acrn_pci_request",
            "direction",
            offset_of!(PciRequest, direction),
        ),
        Offset(
            "acrn_pci_request",
            "reserved",
            offset_of!(PciRequest, reserved),
        ),
        Offset("acrn_pci_request", "size", offset_of!(PciRequest, size)),
        Offset("acrn_pci_request", "value", offset_of!(PciRequest, value)),
        Offset("acrn_pci_request", "bus", offset_of!(PciRequest, bus)),
        Offset("acrn_pci_request", "dev", offset_of!(PciRequest, dev)),
        Offset("acrn_pci_request", "func", offset_of!(PciRequest, func)),
        Offset("acrn_pci_request", "reg", offset_of!(PciRequest, reg)),
        size!("acrn_io_request", IoRequest),
        Offset("acrn_io_request", "type", offset_of!(IoRequest, r#type)),
        Offset(
            "acrn_io_request",
            "completion_polling",
            offset_of!(IoRequest, completion_polling),
        ),
        Offset(
            "acrn_io_request",
            "reserved0",
            offset_of!(IoRequest, reserved0),
        ),
        Offset("acrn_io_request", "reqs", reqs),
        Offset("acrn_io_request", "reqs.pio_request", reqs),
        Offset("acrn_io_request", "reqs.pci_request", reqs),
        Offset("acrn_io_request", "reqs.mmio_request", reqs),
        Offset("acrn_io_request", "reqs.data", reqs),
        Offset(
            "acrn_io_request",
            "reserved1",
            offset_of!(IoRequest, reserved1),
        ),
        Offset(
            "acrn_io_request",
            "kernel_handled",
            offset_of!(IoRequest, kernel_handled),
        ),
        Offset(
            "acrn_io_request",
            "processed",
            offset_of!(IoRequest, processed),
        ),
        size!("acrn_io_request_buffer", IoRequestBuffer),
        Offset(
            "acrn_io_request_buffer",
            "req_slot",
            offset_of!(IoRequestBuffer, req_slot),
        ),
        size!("acrn_ioreq_notify", AcrnIoreqNotify),
        Offset(
            "acrn_ioreq_notify",
            "vmid",
            offset_of!(AcrnIoreqNotify, vmid),
        ),
        Offset(
            "acrn_ioreq_notify",
            "reserved",
            offset_of!(AcrnIoreqNotify, reserved),
        ),
        Offset(
            "acrn_ioreq_notify",
            "vcpu",
            offset_of!(AcrnIoreqNotify, vcpu),
        ),
        size!("acrn_vm_creation", AcrnVmCreation),
        Offset("acrn_vm_creation", "vmid", offset_of!(AcrnVmCreation, vmid)),
        Offset(
            "acrn_vm_creation",
            "reserved0",
            offset_of!(AcrnVmCreation, reserved0),
        ),
        Offset(
            "acrn_vm_creation",
            "vcpu_num",
            offset_of!(AcrnVmCreation, vcpu_num),
        ),
        Offset(
            "acrn_vm_creation",
            "reserved1",
            offset_of!(AcrnVmCreation, reserved1),
        ),
        // Linux names the hypervisor's VM-name bytes `uuid`.
        Offset("acrn_vm_creation", "uuid", offset_of!(AcrnVmCreation, name)),
        Offset(
            "acrn_vm_creation",
            "vm_flag",
            offset_of!(AcrnVmCreation, vm_flag),
        ),
        Offset(
            "acrn_vm_creation",
            "ioreq_buf",
            offset_of!(AcrnVmCreation, ioreq_buf),
        ),
        Offset(
            "acrn_vm_creation",
            "cpu_affinity",
            offset_of!(AcrnVmCreation, cpu_affinity),
        ),
        size!("acrn_gp_regs", AcrnGpRegs),
        size!("acrn_descriptor_ptr", AcrnDescriptorPtr),
        Offset(
            "acrn_descriptor_ptr",
            "limit",
            offset_of!(AcrnDescriptorPtr, limit),
        ),
        Offset(
            "acrn_descriptor_ptr",
            "base",
            offset_of!(AcrnDescriptorPtr, base),
        ),
        Offset(
            "acrn_descriptor_ptr",
            "reserved",
            offset_of!(AcrnDescriptorPtr, reserved),
        ),
        size!("acrn_regs", AcrnRegs),
        size!("acrn_vcpu_regs", AcrnVcpuRegs),
        Offset(
            "acrn_vcpu_regs",
            "vcpu_id",
            offset_of!(AcrnVcpuRegs, vcpu_id),
        ),
        Offset(
            "acrn_vcpu_regs",
            "reserved",
            offset_of!(AcrnVcpuRegs, reserved),
        ),
        Offset("acrn_vcpu_regs", "vcpu_regs", regs),
        Offset(
            "acrn_vcpu_regs",
            "vcpu_regs.gdt.base",
            regs + gdt + offset_of!(AcrnDescriptorPtr, base),
        ),
        size!("acrn_vm_memmap", AcrnVmMemmap),
        Offset("acrn_vm_memmap", "type", offset_of!(AcrnVmMemmap, r#type)),
        Offset("acrn_vm_memmap", "attr", offset_of!(AcrnVmMemmap, attr)),
        Offset(
            "acrn_vm_memmap",
            "user_vm_pa",
            offset_of!(AcrnVmMemmap, user_vm_pa),
        ),
        Offset(
            "acrn_vm_memmap",
            "service_vm_pa",
            offset_of!(AcrnVmMemmap, service_vm_pa),
        ),
        Offset(
            "acrn_vm_memmap",
            "vma_base",
            offset_of!(AcrnVmMemmap, service_vm_pa),
        ),
        Offset("acrn_vm_memmap", "len", offset_of!(AcrnVmMemmap, len)),
        size!("acrn_ptdev_irq", AcrnPtdevIrq),
        Offset("acrn_ptdev_irq", "type", offset_of!(AcrnPtdevIrq, r#type)),
        Offset(
            "acrn_ptdev_irq",
            "virt_bdf",
            offset_of!(AcrnPtdevIrq, virt_bdf),
        ),
        Offset(
            "acrn_ptdev_irq",
            "phys_bdf",
            offset_of!(AcrnPtdevIrq, phys_bdf),
        ),
        Offset(
            "acrn_ptdev_irq",
            "intx.virt_pin",
            intx + offset_of!(AcrnPtdevIntx, virt_pin),
        ),
        Offset(
            "acrn_ptdev_irq",
            "intx.phys_pin",
            intx + offset_of!(AcrnPtdevIntx, phys_pin),
        ),
        Offset(
            "acrn_ptdev_irq",
            "intx.is_pic_pin",
            intx + offset_of!(AcrnPtdevIntx, is_pic_pin),
        ),
        size!("acrn_pcidev", AcrnPcidev),
        Offset("acrn_pcidev", "type", offset_of!(AcrnPcidev, r#type)),
        Offset("acrn_pcidev", "virt_bdf", offset_of!(AcrnPcidev, virt_bdf)),
        Offset("acrn_pcidev", "phys_bdf", offset_of!(AcrnPcidev, phys_bdf)),
        Offset(
            "acrn_pcidev",
            "intr_line",
            offset_of!(AcrnPcidev, intr_line),
        ),
        Offset("acrn_pcidev", "intr_pin", offset_of!(AcrnPcidev, intr_pin)),
        Offset("acrn_pcidev", "bar", offset_of!(AcrnPcidev, bar)),
        size!("acrn_mmiodev", AcrnMmiodev),
        Offset("acrn_mmiodev", "name", offset_of!(AcrnMmiodev, name)),
        Offset("acrn_mmiodev", "res", res),
        Offset(
            "acrn_mmiodev",
            "res[1].user_vm_pa",
            res + size_of::<MmiodevResource>(),
        ),
        Offset(
            "acrn_mmiodev",
            "res[0].service_vm_pa",
            res + offset_of!(MmiodevResource, host_pa),
        ),
        Offset(
            "acrn_mmiodev",
            "res[0].size",
            res + offset_of!(MmiodevResource, size),
        ),
        Offset(
            "acrn_mmiodev",
            "res[2].mem_type",
            res + 2 * size_of::<MmiodevResource>() + 24,
        ),
        size!("acrn_vdev", AcrnVdev),
        Offset("acrn_vdev", "id.value", offset_of!(AcrnVdev, id)),
        Offset("acrn_vdev", "id.fields.vendor", offset_of!(AcrnVdev, id)),
        Offset(
            "acrn_vdev",
            "id.fields.device",
            offset_of!(AcrnVdev, id) + 2,
        ),
        Offset(
            "acrn_vdev",
            "id.fields.legacy_id",
            offset_of!(AcrnVdev, id) + 4,
        ),
        Offset("acrn_vdev", "slot", offset_of!(AcrnVdev, slot)),
        Offset("acrn_vdev", "io_addr", offset_of!(AcrnVdev, io_addr)),
        Offset("acrn_vdev", "io_size", offset_of!(AcrnVdev, io_size)),
        Offset("acrn_vdev", "args", offset_of!(AcrnVdev, args)),
        size!("acrn_msi_entry", AcrnMsiEntry),
        Offset(
            "acrn_msi_entry",
            "msi_addr",
            offset_of!(AcrnMsiEntry, msi_addr),
        ),
        Offset(
            "acrn_msi_entry",
            "msi_data",
            offset_of!(AcrnMsiEntry, msi_data),
        ),
        size!("acrn_acpi_generic_address", AcrnAcpiGenericAddress),
        Offset(
            "acrn_acpi_generic_address",
            "address",
            offset_of!(AcrnAcpiGenericAddress, address),
        ),
        size!("acrn_cstate_data", AcrnCstateData),
        Offset(
            "acrn_cstate_data",
            "cx_reg",
            offset_of!(AcrnCstateData, cx_reg),
        ),
        Offset(
            "acrn_cstate_data",
            "type",
            offset_of!(AcrnCstateData, r#type),
        ),
        Offset(
            "acrn_cstate_data",
            "latency",
            offset_of!(AcrnCstateData, latency),
        ),
        Offset(
            "acrn_cstate_data",
            "power",
            offset_of!(AcrnCstateData, power),
        ),
        size!("acrn_pstate_data", AcrnPstateData),
        Offset(
            "acrn_pstate_data",
            "status",
            offset_of!(AcrnPstateData, status),
        ),
        size!("acrn_ioeventfd", AcrnIoeventfd),
        Offset("acrn_ioeventfd", "fd", offset_of!(AcrnIoeventfd, fd)),
        Offset("acrn_ioeventfd", "flags", offset_of!(AcrnIoeventfd, flags)),
        Offset("acrn_ioeventfd", "addr", offset_of!(AcrnIoeventfd, addr)),
        Offset("acrn_ioeventfd", "len", offset_of!(AcrnIoeventfd, len)),
        Offset(
            "acrn_ioeventfd",
            "reserved",
            offset_of!(AcrnIoeventfd, reserved),
        ),
        Offset("acrn_ioeventfd", "data", offset_of!(AcrnIoeventfd, data)),
        size!("acrn_irqfd", AcrnIrqfd),
        Offset("acrn_irqfd", "fd", offset_of!(AcrnIrqfd, fd)),
        Offset("acrn_irqfd", "flags", offset_of!(AcrnIrqfd, flags)),
        Offset("acrn_irqfd", "msi", offset_of!(AcrnIrqfd, msi)),
    ];
    let regs_fields: [(&str, usize); 23] = [
        ("gprs", offset_of!(AcrnRegs, gprs)),
        ("gdt", gdt),
        ("idt", offset_of!(AcrnRegs, idt)),
        ("rip", offset_of!(AcrnRegs, rip)),
        ("cs_base", offset_of!(AcrnRegs, cs_base)),
        ("cr0", offset_of!(AcrnRegs, cr0)),
        ("cr4", offset_of!(AcrnRegs, cr4)),
        ("cr3", offset_of!(AcrnRegs, cr3)),
        ("ia32_efer", offset_of!(AcrnRegs, ia32_efer)),
        ("rflags", offset_of!(AcrnRegs, rflags)),
        ("reserved_64", offset_of!(AcrnRegs, reserved_64)),
        ("cs_ar", offset_of!(AcrnRegs, cs_ar)),
        ("cs_limit", offset_of!(AcrnRegs, cs_limit)),
        ("reserved_32", offset_of!(AcrnRegs, reserved_32)),
        ("cs_sel", offset_of!(AcrnRegs, cs_sel)),
        ("ss_sel", offset_of!(AcrnRegs, ss_sel)),
        ("ds_sel", offset_of!(AcrnRegs, ds_sel)),
        ("es_sel", offset_of!(AcrnRegs, es_sel)),
        ("fs_sel", offset_of!(AcrnRegs, fs_sel)),
        ("gs_sel", offset_of!(AcrnRegs, gs_sel)),
        ("ldt_sel", offset_of!(AcrnRegs, ldt_sel)),
        ("tr_sel", offset_of!(AcrnRegs, tr_sel)),
        (
            "gprs.r15",
            offset_of!(AcrnRegs, gprs) + offset_of!(AcrnGpRegs, r15),
        ),
    ];
    p.extend(
        regs_fields
            .into_iter()
            .map(|(f, o)| Offset("acrn_regs", f, o)),
    );
    let gp: [(&str, usize); 16] = [
        ("rax", offset_of!(AcrnGpRegs, rax)),
        ("rcx", offset_of!(AcrnGpRegs, rcx)),
        ("rdx", offset_of!(AcrnGpRegs, rdx)),
        ("rbx", offset_of!(AcrnGpRegs, rbx)),
        ("rsp", offset_of!(AcrnGpRegs, rsp)),
        ("rbp", offset_of!(AcrnGpRegs, rbp)),
        ("rsi", offset_of!(AcrnGpRegs, rsi)),
        ("rdi", offset_of!(AcrnGpRegs, rdi)),
        ("r8", offset_of!(AcrnGpRegs, r8)),
        ("r9", offset_of!(AcrnGpRegs, r9)),
        ("r10", offset_of!(AcrnGpRegs, r10)),
        ("r11", offset_of!(AcrnGpRegs, r11)),
        ("r12", offset_of!(AcrnGpRegs, r12)),
        ("r13", offset_of!(AcrnGpRegs, r13)),
        ("r14", offset_of!(AcrnGpRegs, r14)),
        ("r15", offset_of!(AcrnGpRegs, r15)),
    ];
    p.extend(gp.into_iter().map(|(f, o)| Offset("acrn_gp_regs", f, o)));
    let consts: [(&str, i64); 39] = [
        ("ACRN_IO_REQUEST_MAX", ACRN_IO_REQUEST_MAX as i64),
        ("ACRN_IOREQ_STATE_PENDING", ACRN_IOREQ_STATE_PENDING.into()),
        (
            "ACRN_IOREQ_STATE_COMPLETE",
            ACRN_IOREQ_STATE_COMPLETE.into(),
        ),
        (
            "ACRN_IOREQ_STATE_PROCESSING",
            ACRN_IOREQ_STATE_PROCESSING.into(),
        ),
        ("ACRN_IOREQ_STATE_FREE", ACRN_IOREQ_STATE_FREE.into()),
        ("ACRN_IOREQ_TYPE_PORTIO", ACRN_IOREQ_TYPE_PORTIO.into()),
        ("ACRN_IOREQ_TYPE_MMIO", ACRN_IOREQ_TYPE_MMIO.into()),
        ("ACRN_IOREQ_TYPE_PCICFG", ACRN_IOREQ_TYPE_PCICFG.into()),
        ("ACRN_IOREQ_DIR_READ", ACRN_IOREQ_DIR_READ.into()),
        ("ACRN_IOREQ_DIR_WRITE", ACRN_IOREQ_DIR_WRITE.into()),
        ("ACRN_MEM_ACCESS_RIGHT_MASK", MEM_ACCESS_RIGHT_MASK.into()),
        ("ACRN_MEM_ACCESS_READ", MemAccess::READ.bits().into()),
        ("ACRN_MEM_ACCESS_WRITE", MemAccess::WRITE.bits().into()),
        ("ACRN_MEM_ACCESS_EXEC", MemAccess::EXEC.bits().into()),
        ("ACRN_MEM_ACCESS_RWX", MemAccess::RWX.bits().into()),
        ("ACRN_MEM_TYPE_MASK", MEM_TYPE_MASK.into()),
        ("ACRN_MEM_TYPE_WB", MemType::WB.bits().into()),
        ("ACRN_MEM_TYPE_WT", MemType::WT.bits().into()),
        ("ACRN_MEM_TYPE_UC", MemType::UC.bits().into()),
        ("ACRN_MEM_TYPE_WC", MemType::WC.bits().into()),
        ("ACRN_MEM_TYPE_WP", MemType::WP.bits().into()),
        ("ACRN_MEMMAP_RAM", ACRN_MEMMAP_RAM.into()),
        ("ACRN_MEMMAP_MMIO", ACRN_MEMMAP_MMIO.into()),
        ("ACRN_PTDEV_IRQ_INTX", ACRN_PTDEV_IRQ_INTX.into()),
        ("ACRN_PTDEV_IRQ_MSI", ACRN_PTDEV_IRQ_MSI.into()),
        ("ACRN_PTDEV_IRQ_MSIX", ACRN_PTDEV_IRQ_MSIX.into()),
        ("ACRN_PTDEV_QUIRK_ASSIGN", ACRN_PTDEV_QUIRK_ASSIGN.into()),
        ("ACRN_MMIODEV_RES_NUM", ACRN_MMIODEV_RES_NUM as i64),
        ("ACRN_PCI_NUM_BARS", ACRN_PCI_NUM_BARS as i64),
        ("PMCMD_TYPE_MASK", PMCMD_TYPE_MASK.into()),
        ("ACRN_PMCMD_GET_PX_CNT", PmCmdType::GetPxCnt as i64),
        ("ACRN_PMCMD_GET_PX_DATA", PmCmdType::GetPxData as i64),
        ("ACRN_PMCMD_GET_CX_CNT", PmCmdType::GetCxCnt as i64),
        ("ACRN_PMCMD_GET_CX_DATA", PmCmdType::GetCxData as i64),
        ("ACRN_IOEVENTFD_FLAG_PIO", IoeventfdFlags::PIO.bits().into()),
        (
            "ACRN_IOEVENTFD_FLAG_DATAMATCH",
            IoeventfdFlags::DATAMATCH.bits().into(),
        ),
        (
            "ACRN_IOEVENTFD_FLAG_DEASSIGN",
            IoeventfdFlags::DEASSIGN.bits().into(),
        ),
        ("ACRN_IRQFD_FLAG_DEASSIGN", ACRN_IRQFD_FLAG_DEASSIGN.into()),
        ("ACRN_IOCTL_TYPE", ACRN_IOCTL_TYPE.into()),
    ];
    p.extend(consts.into_iter().map(|(n, v)| Const(n, v)));
    // Every ioctl Linux defines (the acrn-dm-only ones are absent from the uapi header).
    for &(value, name) in IOCTLS {
        if !matches!(
            name,
            "ACRN_IOCTL_SETUP_ASYNCIO"
                | "ACRN_IOCTL_SETUP_VM_EVENT_RING"
                | "ACRN_IOCTL_SETUP_VM_EVENT_FD"
        ) {
            p.push(Const(name, value.into()));
        }
    }
    p
}

fn key(p: &Probe) -> String {
    match p {
        Size(s, ..) => format!("size {s}"),
        Offset(s, f, _) => format!("offset {s} {f}"),
        Const(n, _) => format!("const {n}"),
    }
}

fn expected(p: &Probe) -> String {
    match p {
        Size(_, size, align) => format!("{size} {align}"),
        Offset(.., off) => off.to_string(),
        Const(_, v) => v.to_string(),
    }
}

fn c_source(probes: &[Probe]) -> String {
    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n#include <linux/ioctl.h>\n#include <linux/acrn.h>\nint main(void) {\n");
    for p in probes {
        let k = key(p);
        let line = match p {
            Size(s, ..) => format!(
                "printf(\"{k}=%zu %zu\\n\", sizeof(struct {s}), (size_t)_Alignof(struct {s}));"
            ),
            Offset(s, f, _) => format!("printf(\"{k}=%zu\\n\", offsetof(struct {s}, {f}));"),
            Const(n, _) => format!("printf(\"{k}=%lld\\n\", (long long)({n}));"),
        };
        c.push_str(&line);
        c.push('\n');
    }
    c.push_str("return 0;\n}\n");
    c
}

#[test]
fn layouts_and_ioctls_match_linux_uapi_header() {
    assert!(
        Path::new(HEADER).exists(),
        "{HEADER} is missing: install Debian's linux-libc-dev (apt-get install linux-libc-dev); \
         this test compares our ABI with Linux's own header and must not be skipped"
    );
    let probes = probes();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("acrn-uapi-probe");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("probe.c");
    let exe = dir.join("probe");
    std::fs::write(&src, c_source(&probes)).unwrap();
    let out = Command::new("cc")
        .args(["-std=gnu11", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `cc` ({e}): install gcc (apt-get install gcc)"));
    assert!(
        out.status.success(),
        "C probe failed to compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("run the C probe");
    assert!(run.status.success());
    let stdout = String::from_utf8(run.stdout).unwrap();
    let linux: BTreeMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();

    let mut mismatches = Vec::new();
    for p in &probes {
        let k = key(p);
        let want = linux.get(k.as_str()).copied().unwrap_or("<missing>");
        let ours = expected(p);
        if want != ours {
            mismatches.push(format!("{k}: Linux {want}, ours {ours}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "ABI differs from {HEADER}:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(linux.len(), probes.len(), "every probe answered once");
}
