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

/// The size and alignment of a struct and the offset of each listed field (same name in C and
/// Rust); fields named differently, nested or in unions are listed as `Offset`s beside it.
macro_rules! layout {
    ($c:literal, $t:ty, [$($f:ident),* $(,)?]) => {
        [size!($c, $t), $(Offset($c, stringify!($f), offset_of!($t, $f))),*]
    };
}

fn probes() -> Vec<Probe> {
    let reqs = offset_of!(IoRequest, reqs);
    let gdt = offset_of!(AcrnRegs, gdt);
    let regs = offset_of!(AcrnVcpuRegs, vcpu_regs);
    let intx = offset_of!(AcrnPtdevIrq, intx);
    let res = offset_of!(AcrnMmiodev, res);
    let mut p = Vec::new();
    p.extend(layout!(
        "acrn_mmio_request",
        MmioRequest,
        [direction, reserved, address, size, value]
    ));
    p.extend(layout!(
        "acrn_pio_request",
        PioRequest,
        [direction, reserved, address, size, value]
    ));
    p.extend(layout!(
        "acrn_pci_request",
        PciRequest,
        [direction, reserved, size, value, bus, dev, func, reg]
    ));
    p.extend(layout!(
        "acrn_io_request",
        IoRequest,
        [
            completion_polling,
            reserved0,
            reserved1,
            kernel_handled,
            processed
        ]
    ));
    p.extend([
        Offset("acrn_io_request", "type", offset_of!(IoRequest, r#type)),
        Offset("acrn_io_request", "reqs", reqs),
        Offset("acrn_io_request", "reqs.pio_request", reqs),
        Offset("acrn_io_request", "reqs.pci_request", reqs),
        Offset("acrn_io_request", "reqs.mmio_request", reqs),
        Offset("acrn_io_request", "reqs.data", reqs),
    ]);
    p.extend(layout!(
        "acrn_io_request_buffer",
        IoRequestBuffer,
        [req_slot]
    ));
    p.extend(layout!(
        "acrn_ioreq_notify",
        AcrnIoreqNotify,
        [vmid, reserved, vcpu]
    ));
    p.extend(layout!(
        "acrn_vm_creation",
        AcrnVmCreation,
        [
            vmid,
            reserved0,
            vcpu_num,
            reserved1,
            vm_flag,
            ioreq_buf,
            cpu_affinity
        ]
    ));
    p.extend([
        // Linux names the hypervisor's VM-name bytes `uuid`.
        Offset("acrn_vm_creation", "uuid", offset_of!(AcrnVmCreation, name)),
    ]);
    p.extend(layout!(
        "acrn_gp_regs",
        AcrnGpRegs,
        [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15]
    ));
    p.extend(layout!(
        "acrn_descriptor_ptr",
        AcrnDescriptorPtr,
        [limit, base, reserved]
    ));
    p.extend(layout!(
        "acrn_regs",
        AcrnRegs,
        [
            gprs,
            gdt,
            idt,
            rip,
            cs_base,
            cr0,
            cr4,
            cr3,
            ia32_efer,
            rflags,
            reserved_64,
            cs_ar,
            cs_limit,
            reserved_32,
            cs_sel,
            ss_sel,
            ds_sel,
            es_sel,
            fs_sel,
            gs_sel,
            ldt_sel,
            tr_sel
        ]
    ));
    p.push(Offset(
        "acrn_regs",
        "gprs.r15",
        offset_of!(AcrnRegs, gprs) + offset_of!(AcrnGpRegs, r15),
    ));
    p.extend(layout!("acrn_vcpu_regs", AcrnVcpuRegs, [vcpu_id, reserved]));
    p.extend([
        Offset("acrn_vcpu_regs", "vcpu_regs", regs),
        Offset(
            "acrn_vcpu_regs",
            "vcpu_regs.gdt.base",
            regs + gdt + offset_of!(AcrnDescriptorPtr, base),
        ),
    ]);
    p.extend(layout!(
        "acrn_vm_memmap",
        AcrnVmMemmap,
        [attr, user_vm_pa, service_vm_pa, len]
    ));
    p.extend([
        Offset("acrn_vm_memmap", "type", offset_of!(AcrnVmMemmap, r#type)),
        Offset(
            "acrn_vm_memmap",
            "vma_base",
            offset_of!(AcrnVmMemmap, service_vm_pa),
        ),
    ]);
    p.extend(layout!(
        "acrn_ptdev_irq",
        AcrnPtdevIrq,
        [virt_bdf, phys_bdf]
    ));
    p.extend([
        Offset("acrn_ptdev_irq", "type", offset_of!(AcrnPtdevIrq, r#type)),
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
    ]);
    p.extend(layout!(
        "acrn_pcidev",
        AcrnPcidev,
        [virt_bdf, phys_bdf, intr_line, intr_pin, bar]
    ));
    p.extend([Offset(
        "acrn_pcidev",
        "type",
        offset_of!(AcrnPcidev, r#type),
    )]);
    p.extend(layout!("acrn_mmiodev", AcrnMmiodev, [name]));
    p.extend([
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
    ]);
    p.extend(layout!(
        "acrn_vdev",
        AcrnVdev,
        [slot, io_addr, io_size, args]
    ));
    p.extend([
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
    ]);
    p.extend(layout!(
        "acrn_msi_entry",
        AcrnMsiEntry,
        [msi_addr, msi_data]
    ));
    p.extend(layout!(
        "acrn_acpi_generic_address",
        AcrnAcpiGenericAddress,
        [address]
    ));
    p.extend(layout!(
        "acrn_cstate_data",
        AcrnCstateData,
        [cx_reg, latency, power]
    ));
    p.extend([Offset(
        "acrn_cstate_data",
        "type",
        offset_of!(AcrnCstateData, r#type),
    )]);
    p.extend(layout!("acrn_pstate_data", AcrnPstateData, [status]));
    p.extend(layout!(
        "acrn_ioeventfd",
        AcrnIoeventfd,
        [fd, flags, addr, len, reserved, data]
    ));
    p.extend(layout!("acrn_irqfd", AcrnIrqfd, [fd, flags, msi]));
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
