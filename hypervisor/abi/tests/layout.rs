//! Every shared structure's size, alignment and field offsets, against the numbers in the ABI
//! reference (acrn-abi.md §2, §3), which were compiler results on ACRN's and Linux's headers.

use acrn_abi::cpuid::*;
use acrn_abi::device::*;
use acrn_abi::hypercall::*;
use acrn_abi::ioctl::*;
use acrn_abi::ioreq::*;
use acrn_abi::irq::*;
use acrn_abi::memory::*;
use acrn_abi::misc::*;
use acrn_abi::pm::*;
use acrn_abi::regs::*;
use acrn_abi::sbuf::*;
use acrn_abi::vm::*;
use core::mem::{align_of, offset_of, size_of};

macro_rules! layout {
    ($t:ty, size $size:expr, align $align:expr $(, $($field:tt)@+ => $off:expr)* $(,)?) => {{
        assert_eq!(size_of::<$t>(), $size, "size of {}", stringify!($t));
        assert_eq!(align_of::<$t>(), $align, "align of {}", stringify!($t));
        $(assert_eq!(offset_of!($t, $($field)+), $off, "offset of {}.{}", stringify!($t), stringify!($($field)+));)*
    }};
}

#[test]
fn io_request_page() {
    layout!(MmioRequest, size 32, align 8, direction => 0, reserved => 4, address => 8, size => 16, value => 24);
    layout!(PioRequest, size 32, align 8, direction => 0, reserved => 4, address => 8, size => 16, value => 24);
    layout!(PciRequest, size 48, align 8, direction => 0, reserved => 4, size => 16, value => 24,
        bus => 28, dev => 32, func => 36, reg => 40);
    layout!(IoRequestPayload, size 64, align 8);
    layout!(IoRequest, size 256, align 256, r#type => 0, completion_polling => 4, reserved0 => 8,
        reqs => 64, reserved1 => 128, kernel_handled => 132, processed => 136);
    layout!(IoRequestBuffer, size 4096, align 256, req_slot => 0);
    assert_eq!(ACRN_IO_REQUEST_MAX, 16);
    assert_eq!(
        [
            ACRN_IOREQ_STATE_PENDING,
            ACRN_IOREQ_STATE_COMPLETE,
            ACRN_IOREQ_STATE_PROCESSING,
            ACRN_IOREQ_STATE_FREE
        ],
        [0, 1, 2, 3]
    );
    assert_eq!(
        [
            ACRN_IOREQ_TYPE_PORTIO,
            ACRN_IOREQ_TYPE_MMIO,
            ACRN_IOREQ_TYPE_PCICFG,
            ACRN_IOREQ_TYPE_WP
        ],
        [0, 1, 2, 3]
    );
    assert_eq!([ACRN_IOREQ_DIR_READ, ACRN_IOREQ_DIR_WRITE], [0, 1]);
}

#[test]
fn io_request_union_overlays() {
    // The PCI request deliberately shares direction/size/value offsets with the PIO one.
    let mut p = IoRequestPayload::default();
    p.pio_request = PioRequest {
        direction: 1,
        reserved: 0,
        address: 0xcfc,
        size: 4,
        value: 0xdead_beef,
    };
    // SAFETY: all views are plain integers.
    let pci = unsafe { p.pci_request };
    assert_eq!((pci.direction, pci.size, pci.value), (1, 4, 0xdead_beef));
    let slot = IoRequest::new_free();
    assert_eq!(slot.state(), Ok(IoReqState::Free));
    slot.set_state(IoReqState::Pending);
    assert_eq!(slot.state(), Ok(IoReqState::Pending));
    slot.processed
        .store(9, core::sync::atomic::Ordering::Relaxed);
    assert_eq!(slot.state(), Err(9));
    let page = IoRequestBuffer::new();
    assert!(page
        .req_slot
        .iter()
        .all(|s| s.state() == Ok(IoReqState::Free)));
}

#[test]
fn vm_creation_and_flags() {
    layout!(AcrnVmCreation, size 48, align 8, vmid => 0, reserved0 => 2, vcpu_num => 4, reserved1 => 6,
        name => 8, vm_flag => 24, ioreq_buf => 32, cpu_affinity => 40);
    let bits: [(GuestFlags, u32); 15] = [
        (GuestFlags::SECURE_WORLD_ENABLED, 0),
        (GuestFlags::LAPIC_PASSTHROUGH, 1),
        (GuestFlags::IO_COMPLETION_POLLING, 2),
        (GuestFlags::HIDE_MTRR, 3),
        (GuestFlags::RT, 4),
        (GuestFlags::NVMX_ENABLED, 5),
        (GuestFlags::SECURITY_VM, 6),
        (GuestFlags::VCAT_ENABLED, 7),
        (GuestFlags::STATIC_VM, 8),
        (GuestFlags::TEE, 9),
        (GuestFlags::REE, 10),
        (GuestFlags::PMU_PASSTHROUGH, 11),
        (GuestFlags::VHWP, 12),
        (GuestFlags::VTM, 13),
        (GuestFlags::STATELESS, 14),
    ];
    for (flag, bit) in bits {
        assert_eq!(flag.bits(), 1 << bit, "{flag:?}");
    }
    assert_eq!(DM_OWNED_GUEST_FLAG_MASK.bits(), 0b1_0111);
    assert_eq!(ACRN_INVALID_VMID, 0xFFFF);
    let mut c = AcrnVmCreation::default();
    assert!(c.set_name("POST_STD_VM1"));
    assert_eq!(c.name_bytes(), b"POST_STD_VM1");
    assert!(
        !c.set_name("0123456789abcdef"),
        "16 chars leave no room for the NUL"
    );
    assert!(!c.set_name("a\0b"));
    assert_eq!(
        c.name_bytes(),
        b"POST_STD_VM1",
        "a rejected name leaves the old one"
    );
    assert_eq!(
        [
            VmState::PoweredOff,
            VmState::Created,
            VmState::Running,
            VmState::ReadyToPowerOff,
            VmState::Paused
        ]
        .map(|s| s as u32),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(
        [
            VcpuState::Offline,
            VcpuState::Init,
            VcpuState::Running,
            VcpuState::Zombie
        ]
        .map(|s| s as u32),
        [0, 1, 2, 3]
    );
}

#[test]
fn vcpu_regs() {
    layout!(AcrnGpRegs, size 128, align 8, rax => 0, rcx => 8, rdx => 16, rbx => 24, rsp => 32, rbp => 40,
        rsi => 48, rdi => 56, r8 => 64, r9 => 72, r10 => 80, r11 => 88, r12 => 96, r13 => 104, r14 => 112, r15 => 120);
    layout!(AcrnDescriptorPtr, size 16, align 1, limit => 0, base => 2, reserved => 10);
    layout!(AcrnRegs, size 288, align 8, gprs => 0, gdt => 128, idt => 144, rip => 160, cs_base => 168,
        cr0 => 176, cr4 => 184, cr3 => 192, ia32_efer => 200, rflags => 208, reserved_64 => 216,
        cs_ar => 248, cs_limit => 252, reserved_32 => 256, cs_sel => 268, ss_sel => 270, ds_sel => 272,
        es_sel => 274, fs_sel => 276, gs_sel => 278, ldt_sel => 280, tr_sel => 282);
    layout!(AcrnVcpuRegs, size 296, align 8, vcpu_id => 0, reserved => 2, vcpu_regs => 8);
    let mut r = AcrnVcpuRegs::default();
    assert!(r.reserved_fields_clear());
    r.vcpu_regs.idt.reserved[2] = 1;
    assert!(!r.reserved_fields_clear());
}

#[test]
fn interrupts() {
    layout!(AcrnIrqlineOps, size 8, align 4, gsi => 0, op => 4);
    let ops = AcrnIrqlineOps {
        gsi: 9,
        op: GSI_RAISING_PULSE,
    };
    assert_eq!(ops.to_u64(), 0x0000_0002_0000_0009);
    assert_eq!(AcrnIrqlineOps::from_u64(ops.to_u64()), ops);
    assert_eq!(
        [
            GSI_SET_HIGH,
            GSI_SET_LOW,
            GSI_RAISING_PULSE,
            GSI_FALLING_PULSE
        ],
        [0, 1, 2, 3]
    );
    assert_eq!(GsiOp::from_raw(3), Some(GsiOp::FallingPulse));
    assert_eq!(GsiOp::from_raw(4), None);
    layout!(AcrnMsiEntry, size 16, align 8, msi_addr => 0, msi_data => 8);
    layout!(HcPtdevIrq, size 24, align 8, r#type => 0, virt_bdf => 4, phys_bdf => 6, intx => 8);
    layout!(HcPtdevIntx, size 12, align 4, virt_pin => 0, phys_pin => 4, pic_pin => 8, reserved => 9);
    layout!(AcrnPtdevIrq, size 20, align 4, r#type => 0, virt_bdf => 4, phys_bdf => 6, intx => 8);
    layout!(AcrnPtdevIntx, size 12, align 4, virt_pin => 0, phys_pin => 4, is_pic_pin => 8);
    layout!(AcrnIntrMonitor, size 392, align 8, cmd => 0, buf_cnt => 4, buffer => 8);
    assert_eq!(HSM_UPCALL_VECTOR, 0xF3);
}

#[test]
fn devices() {
    layout!(AcrnPcidev, size 36, align 4, r#type => 0, virt_bdf => 4, phys_bdf => 6, intr_line => 8,
        intr_pin => 9, bar => 12);
    layout!(MmiodevResource, size 32, align 8, user_vm_pa => 0, host_pa => 8, size => 16, mem_type => 24);
    layout!(AcrnMmiodev, size 104, align 8, name => 0, res => 8);
    layout!(AcrnVdev, size 192, align 8, id => 0, slot => 8, io_addr => 16, io_size => 40, args => 64);
    let v = AcrnVdev {
        id: VDEV_ID_MCS9900 | (7 << 32),
        ..AcrnVdev::default()
    };
    assert_eq!((v.vendor(), v.device(), v.legacy_id()), (0x9710, 0x9900, 7));
    // The C union on little-endian: vendor in bytes 0-1, device in 2-3.
    assert_eq!(VDEV_ID_IVSHMEM.to_le_bytes()[..4], [0xf4, 0x1a, 0x10, 0x11]);
    assert_eq!(ACRN_PTDEV_QUIRK_ASSIGN, 1);
}

#[test]
fn memory() {
    layout!(VmMemoryRegion, size 32, align 8, r#type => 0, prot => 4, gpa => 8, service_vm_gpa => 16, size => 24);
    layout!(SetRegions, size 24, align 8, vmid => 0, reserved0 => 2, reserved1 => 4, mr_num => 8, regions_gpa => 16);
    layout!(AcrnVmMemmap, size 32, align 8, r#type => 0, attr => 4, user_vm_pa => 8, service_vm_pa => 16, len => 24);
    layout!(WpData, size 16, align 8, set => 0, gpa => 8);
    layout!(VmGpa2Hpa, size 16, align 8, gpa => 0, hpa => 8);
    assert_eq!((MR_ADD, MR_DEL, MR_MODIFY), (0, 2, 3));
    assert_eq!((ACRN_MEMMAP_RAM, ACRN_MEMMAP_MMIO), (0, 1));
    assert_eq!(MemAccess::RWX.bits(), MEM_ACCESS_RIGHT_MASK);
    assert_eq!(MemType::all().bits(), MEM_TYPE_MASK);
    assert_eq!(
        [
            MemType::WB,
            MemType::WT,
            MemType::UC,
            MemType::WC,
            MemType::WP
        ]
        .map(|t| t.bits()),
        [0x40, 0x80, 0x100, 0x200, 0x400]
    );
}

#[test]
fn api_pm_debug_sbuf() {
    layout!(HcApiVersion, size 8, align 8, major_version => 0, minor_version => 4);
    assert_eq!((HV_API_MAJOR_VERSION, HV_API_MINOR_VERSION), (1, 0));
    layout!(AcrnHwInfo, size 8, align 2, cpu_num => 0);
    layout!(HvNpkLogParam, size 16, align 8, cmd => 0, res => 2, loglevel => 4, reserved => 6, mmio_addr => 8);
    layout!(AcrnAcpiGenericAddress, size 12, align 1, space_id => 0, bit_width => 1, bit_offset => 2,
        access_size => 3, address => 4);
    layout!(AcrnCstateData, size 32, align 8, cx_reg => 0, r#type => 12, latency => 16, power => 24);
    layout!(AcrnPstateData, size 48, align 8, core_frequency => 0, power => 8, transition_latency => 16,
        bus_master_latency => 24, control => 32, status => 40);
    assert_eq!(pm_cmd(2, 1, 3, PmCmdType::GetCxData), 0x0201_0303);
    assert_eq!(
        (
            PMCMD_VMID_MASK,
            PMCMD_VCPUID_MASK,
            PMCMD_STATE_NUM_MASK,
            PMCMD_TYPE_MASK
        ),
        (0xff00_0000, 0x00ff_0000, 0x0000_ff00, 0xff)
    );
    layout!(SharedBuf, size 64, align 8, magic => 0, ele_num => 8, ele_size => 12, head => 16, tail => 20,
        flags => 24, reserved => 28, overrun_cnt => 32, size => 36, padding => 40);
    layout!(AcrnSbufParam, size 16, align 8, cpu_id => 0, reserved => 2, sbuf_id => 4, gpa => 8);
    layout!(AcrnAsyncioInfo, size 32, align 8, r#type => 0, match_data => 4, addr => 8, fd => 16, data => 24);
    layout!(VmEvent, size 32, align 4, r#type => 0, event_data => 4);
    layout!(RtcChangeEventData, size 16, align 8, last_time => 0, delta_time => 8);
}

#[test]
fn ioctl_structs() {
    layout!(AcrnIoreqNotify, size 8, align 4, vmid => 0, reserved => 2, vcpu => 4);
    layout!(AcrnIoeventfd, size 32, align 8, fd => 0, flags => 4, addr => 8, len => 16, reserved => 20, data => 24);
    layout!(AcrnIrqfd, size 24, align 8, fd => 0, flags => 4, msi => 8);
    assert_eq!(IoeventfdFlags::all().bits(), 0xF);
    assert_eq!(ACRN_IRQFD_FLAG_DEASSIGN, 1);
}

#[test]
fn ioctl_numbers_match_reference_table() {
    let expected: &[(u32, u32)] = &[
        (ACRN_IOCTL_CREATE_VM, 0xC030A210),
        (ACRN_IOCTL_DESTROY_VM, 0x0000A211),
        (ACRN_IOCTL_START_VM, 0x0000A212),
        (ACRN_IOCTL_PAUSE_VM, 0x0000A213),
        (ACRN_IOCTL_RESET_VM, 0x0000A215),
        (ACRN_IOCTL_SET_VCPU_REGS, 0x4128A216),
        (ACRN_IOCTL_INJECT_MSI, 0x4010A223),
        (ACRN_IOCTL_VM_INTR_MONITOR, 0x4008A224),
        (ACRN_IOCTL_SET_IRQLINE, 0x4008A225),
        (ACRN_IOCTL_NOTIFY_REQUEST_FINISH, 0x4008A231),
        (ACRN_IOCTL_CREATE_IOREQ_CLIENT, 0x0000A232),
        (ACRN_IOCTL_ATTACH_IOREQ_CLIENT, 0x0000A233),
        (ACRN_IOCTL_DESTROY_IOREQ_CLIENT, 0x0000A234),
        (ACRN_IOCTL_CLEAR_VM_IOREQ, 0x0000A235),
        (ACRN_IOCTL_SET_MEMSEG, 0x4020A241),
        (ACRN_IOCTL_UNSET_MEMSEG, 0x4020A242),
        (ACRN_IOCTL_SET_PTDEV_INTR, 0x4014A253),
        (ACRN_IOCTL_RESET_PTDEV_INTR, 0x4014A254),
        (ACRN_IOCTL_ASSIGN_PCIDEV, 0x4024A255),
        (ACRN_IOCTL_DEASSIGN_PCIDEV, 0x4024A256),
        (ACRN_IOCTL_ASSIGN_MMIODEV, 0x4068A257),
        (ACRN_IOCTL_DEASSIGN_MMIODEV, 0x4068A258),
        (ACRN_IOCTL_CREATE_VDEV, 0x40C0A259),
        (ACRN_IOCTL_DESTROY_VDEV, 0x40C0A25A),
        (ACRN_IOCTL_PM_GET_CPU_STATE, 0xC008A260),
        (ACRN_IOCTL_IOEVENTFD, 0x4020A270),
        (ACRN_IOCTL_IRQFD, 0x4018A271),
        (ACRN_IOCTL_SETUP_ASYNCIO, 0x4008A290),
        (ACRN_IOCTL_SETUP_VM_EVENT_RING, 0x4008A2A0),
        (ACRN_IOCTL_SETUP_VM_EVENT_FD, 0x4004A2A1),
    ];
    assert_eq!(expected.len(), IOCTLS.len());
    for (i, (got, want)) in expected.iter().enumerate() {
        assert_eq!(
            *got, *want,
            "{} = {got:#x}, reference says {want:#x}",
            IOCTLS[i].1
        );
        assert_eq!(IOCTLS[i].0, *got);
    }
}

#[test]
fn hypercall_ids_match_reference_table() {
    let expected: &[(u64, &str)] = &[
        (0x80000000, "HC_GET_API_VERSION"),
        (0x80000001, "HC_SERVICE_VM_OFFLINE_CPU"),
        (0x80000002, "HC_SET_CALLBACK_VECTOR"),
        (0x80000003, "HC_GET_PLATFORM_INFO"),
        (0x80000010, "HC_CREATE_VM"),
        (0x80000011, "HC_DESTROY_VM"),
        (0x80000012, "HC_START_VM"),
        (0x80000013, "HC_PAUSE_VM"),
        (0x80000014, "HC_CREATE_VCPU"),
        (0x80000015, "HC_RESET_VM"),
        (0x80000016, "HC_SET_VCPU_REGS"),
        (0x80000023, "HC_INJECT_MSI"),
        (0x80000024, "HC_VM_INTR_MONITOR"),
        (0x80000025, "HC_SET_IRQLINE"),
        (0x80000030, "HC_SET_IOREQ_BUFFER"),
        (0x80000031, "HC_NOTIFY_REQUEST_FINISH"),
        (0x80000032, "HC_ASYNCIO_ASSIGN"),
        (0x80000033, "HC_ASYNCIO_DEASSIGN"),
        (0x80000041, "HC_VM_GPA2HPA"),
        (0x80000042, "HC_VM_SET_MEMORY_REGIONS"),
        (0x80000043, "HC_VM_WRITE_PROTECT_PAGE"),
        (0x80000044, "HC_SETUP_SBUF"),
        (0x80000050, "HC_ASSIGN_PTDEV"),
        (0x80000051, "HC_DEASSIGN_PTDEV"),
        (0x80000052, "HC_VM_PCI_MSIX_REMAP"),
        (0x80000053, "HC_SET_PTDEV_INTR_INFO"),
        (0x80000054, "HC_RESET_PTDEV_INTR_INFO"),
        (0x80000055, "HC_ASSIGN_PCIDEV"),
        (0x80000056, "HC_DEASSIGN_PCIDEV"),
        (0x80000057, "HC_ASSIGN_MMIODEV"),
        (0x80000058, "HC_DEASSIGN_MMIODEV"),
        (0x80000059, "HC_ADD_VDEV"),
        (0x8000005A, "HC_REMOVE_VDEV"),
        (0x80000061, "HC_SETUP_HV_NPK_LOG"),
        (0x80000062, "HC_PROFILING_OPS"),
        (0x80000063, "HC_GET_HW_INFO"),
        (0x80000070, "HC_INITIALIZE_TRUSTY"),
        (0x80000071, "HC_WORLD_SWITCH"),
        (0x80000072, "HC_SAVE_RESTORE_SWORLD_CTX"),
        (0x80000080, "HC_PM_GET_CPU_STATE"),
        (0x80000090, "HC_TEE_VCPU_BOOT_DONE"),
        (0x80000091, "HC_SWITCH_EE"),
    ];
    assert_eq!(HYPERCALLS, expected);
    // Linux's names are aliases of the same numbers.
    assert_eq!(
        [
            HC_SOS_REMOVE_CPU,
            HC_SET_PTDEV_INTR,
            HC_RESET_PTDEV_INTR,
            HC_CREATE_VDEV,
            HC_DESTROY_VDEV
        ],
        [0x80000001, 0x80000053, 0x80000054, 0x80000059, 0x8000005A]
    );
    // ACRN dispatches on the low byte only.
    assert_eq!(name(0x10), Some("HC_CREATE_VM"));
    assert_eq!(name(0x8000_00FF), None);
    let mut idx: Vec<u8> = HYPERCALLS.iter().map(|(id, _)| hc_idx(*id)).collect();
    idx.dedup();
    assert_eq!(idx.len(), HYPERCALLS.len(), "low bytes are unique");
}

#[test]
fn cpuid_leaves() {
    assert_eq!(ACRN_CPUID_SIGNATURE, 0x4000_0000);
    assert_eq!(ACRN_CPUID_MAX_LEAF, 0x4000_0010);
    assert_eq!(ACRN_CPUID_FEATURES, 0x4000_0001);
    assert_eq!(ACRN_SIGNATURE_REG.to_le_bytes(), ACRN_SIGNATURE[..4]);
    assert_eq!(AcrnCpuidFeatures::PRIVILEGED_VM.bits(), 1);
}

#[test]
fn platform_info() {
    layout!(PlatformHwInfo, size 128, align 4, cpu_num => 0, version => 2, l2_cat_shift => 4,
        l3_cat_shift => 8, lapic_ids => 12, reserved => 76);
    layout!(PlatformSwInfo, size 128, align 8, max_vcpus_per_vm => 0, max_vms => 2,
        vm_config_size => 4, vm_configs_addr => 8, max_kata_containers => 16, reserved => 24);
    layout!(AcrnPlatformInfo, size 256, align 8, hw => 0, sw => 128);
    layout!(AcrnVmConfigHeader, size 40, align 8, load_order => 0, name => 4, reserved => 20,
        severity => 22, cpu_affinity => 24, guest_flags => 32);
    assert_eq!(
        (
            SEVERITY_SAFETY_VM,
            SEVERITY_RTVM,
            SEVERITY_SERVICE_VM,
            SEVERITY_STANDARD_VM
        ),
        (0x40, 0x30, 0x20, 0x10)
    );
}
