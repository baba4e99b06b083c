//! The format's rules: round trips, every malformed case both former readers rejected, and no
//! panic on truncations or byte noise.

use acrn_launch::*;

fn sample() -> LaunchDescription {
    LaunchDescription {
        service_vm_id: 0,
        vms: vec![
            LaunchVm {
                id: 1,
                name: "POST_VM1".into(),
                memory_mb: 256,
                pcpus: 0x4,
                kernel_mod: "POST_VM1_kernel".into(),
                kernel_type: KernelType::Elf,
                bootargs: "console=ttyS0 ticks=5 a=b".into(),
                console_port: Some(0x3F8),
                pci_devs: vec![
                    PciAddr {
                        bus: 0,
                        dev: 2,
                        func: 0,
                    },
                    PciAddr {
                        bus: 0xa1,
                        dev: 0x1f,
                        func: 7,
                    },
                ],
                vdevs: vec![
                    LaunchVdev {
                        kind: VdevKind::Ivshmem("shm_region_0".into()),
                        bdf: PciAddr {
                            bus: 0,
                            dev: 8,
                            func: 0,
                        },
                        bars: vec![0x8000_0000, 0x8000_1000, 0x40_0000_0000],
                    },
                    LaunchVdev {
                        kind: VdevKind::Vuart(1),
                        bdf: PciAddr {
                            bus: 0,
                            dev: 9,
                            func: 0,
                        },
                        bars: vec![0x8000_2000, 0x8000_3000],
                    },
                ],
            },
            LaunchVm {
                id: 2,
                name: "vm-2".into(),
                memory_mb: 1,
                pcpus: u64::MAX,
                kernel_mod: "k".into(),
                kernel_type: KernelType::RawImage,
                bootargs: String::new(),
                console_port: None,
                pci_devs: vec![],
                vdevs: vec![],
            },
        ],
    }
}

#[test]
fn round_trip() {
    let d = sample();
    let text = d.render();
    assert_eq!(LaunchDescription::parse(&text).unwrap(), d);
    assert_eq!(LaunchDescription::parse_bytes(text.as_bytes()).unwrap(), d);
    assert_eq!(
        LaunchDescription::parse(&LaunchDescription::default().render()).unwrap(),
        LaunchDescription::default()
    );
    assert!(text.contains("pcpus=0x4\n") && text.contains("console_port=0x3F8\n"));
    assert!(text.contains("pcpus=0xffffffffffffffff\n") && text.contains("console_port=none\n"));
    assert!(text.contains("pci_devs=00:02.0,a1:1f.7\n") && text.contains("pci_devs=none\n"));
    assert!(text.contains(
        "vdevs=ivshmem:shm_region_0@00:08.0@0x80000000,0x80001000,0x4000000000;\
         vuart:1@00:09.0@0x80002000,0x80003000\n"
    ));
    assert!(text.contains("vdevs=none\n"));
    assert_eq!(d.module_tags(), ["launch_vms", "POST_VM1_kernel", "k"]);
}

#[test]
fn malformed_input_is_rejected() {
    let good = sample().render();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty"),
        (good.replace(MAGIC, "acrn-launch 2"), "version"),
        (good.replace("service_vm_id=0\n", ""), "no service id"),
        (good.replace("end\n", ""), "no end"),
        (good.replacen("end\n", "", 1), "first end missing"),
        (good.replacen("id=1\n", "id=1\nid=1\n", 1), "duplicate key"),
        (good.replacen("id=1\n", "", 1), "missing key"),
        (good.replace("memory_mb=256", "memory_mb=0"), "zero memory"),
        (
            good.replace("memory_mb=256", "memory_mb=4294967297"),
            "memory beyond u32",
        ),
        (
            good.replace("memory_mb=256", "memory_mb=99999999999"),
            "huge memory",
        ),
        (good.replace("pcpus=0x4", "pcpus=0x0"), "no pcpus"),
        (good.replace("pci_devs=none\n", ""), "no pci_devs"),
        (good.replace("00:02.0,", "00:20.0,"), "device beyond 0x1f"),
        (good.replace("00:02.0,", "00:02.8,"), "function beyond 7"),
        (good.replace("00:02.0,", "00:02,"), "no function"),
        (good.replace("00:02.0,", "a1:1f.7,"), "a function twice"),
        (good.replace("00:02.0,", "00:02.0,,"), "empty entry"),
        (
            good.replace(
                "00:02.0,",
                "00:02.0,00:03.0,00:04.0,00:05.0,00:06.0,00:07.0,00:08.0,00:09.0,",
            ),
            "nine functions",
        ),
        (good.replace("00:02.0,", "+0:02.0,"), "sign"),
        (good.replace("vdevs=none\n", ""), "no vdevs"),
        (
            good.replace("ivshmem:shm_region_0", "ivshmem:shm-0"),
            "bad region name",
        ),
        (
            good.replace("ivshmem:shm_region_0", "ivshmem:"),
            "empty region name",
        ),
        (good.replace("vuart:1", "uart:1"), "unknown kind"),
        (good.replace("vuart:1", "vuart:x"), "index not a number"),
        (good.replace(",0x80003000", ""), "a vUART with one BAR"),
        (good.replace(",0x4000000000", ""), "IVSHMEM with two BARs"),
        (
            good.replace("00:09.0@", "00:08.0@"),
            "two devices at one BDF",
        ),
        (good.replace("0x80002000", "80002000"), "BAR not hex"),
        (good.replace("00:09.0@", "00:09.0"), "no BAR separator"),
        (good.replace("pcpus=0x4", "pcpus=0x"), "empty hex"),
        (good.replace("pcpus=0x4", "pcpus=4"), "pcpus not hex"),
        (
            good.replace("pcpus=0x4", "pcpus=0x10000000000000000"),
            "pcpus overflow",
        ),
        (
            good.replace("name=POST_VM1", "name=POST VM1"),
            "space in name",
        ),
        (good.replace("name=POST_VM1", "name="), "empty name"),
        (
            good.replace("name=POST_VM1", "name=ABCDEFGHIJKLMNOP"),
            "long name",
        ),
        (
            good.replace("kernel_mod=POST_VM1_kernel", "kernel_mod=a b"),
            "space in tag",
        ),
        (
            good.replace("kernel_type=KERNEL_ELF", "kernel_type=ELF"),
            "kernel type",
        ),
        (
            good.replace("console_port=0x3F8", "console_port=0x10000"),
            "port",
        ),
        (good.replace("id=2", "id=1"), "duplicate id"),
        (good.replace("name=vm-2", "name=POST_VM1"), "duplicate name"),
        (good.replace("id=2", "id=0"), "service id"),
        (good.replace("id=1\n", "id=65535\n"), "invalid vmid"),
        (
            good.replace("bootargs=console", "bootargs=con\tsole"),
            "tab",
        ),
        (good.replace("bootargs=console", "bootargs=con\rsole"), "CR"),
        (good.replace("bootargs=console", "bootargs=\u{7f}"), "DEL"),
        (
            good.replace("bootargs=console", "bootargs=\u{e9}"),
            "non-ASCII",
        ),
        (good.replace("id=1\n", "id=1\ncolour=blue\n"), "unknown key"),
        (good.replace("id=1\n", "id=1\nvm\n"), "nested vm"),
        (format!("{good}end\n"), "stray end"),
        (format!("{good}x=1\n"), "key outside"),
        (format!("{good}{}\n", "#".repeat(MAX_TEXT)), "too long"),
        (
            good.replace(
                "bootargs=console",
                &format!("bootargs={}", "a".repeat(MAX_LINE)),
            ),
            "long line",
        ),
    ];
    for (text, what) in cases {
        assert!(LaunchDescription::parse(&text).is_err(), "{what} accepted");
        assert!(
            LaunchDescription::parse_bytes(text.as_bytes()).is_err(),
            "{what} accepted as bytes"
        );
    }
    let nine = (1..=9).map(|i| format!("vm\nid={i}\nname=V{i}\nmemory_mb=1\npcpus=0x1\nkernel_mod=k\nkernel_type=KERNEL_ELF\nbootargs=\nconsole_port=none\npci_devs=none\nvdevs=none\nend\n"));
    let text = format!("{MAGIC}\nservice_vm_id=0\n{}", nine.collect::<String>());
    assert_eq!(LaunchDescription::parse(&text), Err(Error::TooManyVms));
    assert_eq!(
        LaunchDescription::parse_bytes(&[0xFF, 0xFE]),
        Err(Error::NotText)
    );
    assert_eq!(
        LaunchDescription::parse_bytes(&[b'#'; MAX_TEXT + 1]),
        Err(Error::TooLong)
    );
}

#[test]
fn errors_name_the_line_and_key() {
    let good = sample().render();
    let e = LaunchDescription::parse(&good.replacen("id=1\n", "id=1\nid=1\n", 1)).unwrap_err();
    assert_eq!(e.to_string(), "line 6: `id` given twice");
    let e = LaunchDescription::parse(&good.replace("id=1\n", "id=1\ncolour=blue\n")).unwrap_err();
    assert_eq!(e.to_string(), "line 6: unknown key `colour`");
    let e = LaunchDescription::parse(&good.replace("id=2", "id=1")).unwrap_err();
    assert_eq!(e.to_string(), "VM `vm-2`: id or name used twice");
}

#[test]
fn truncations_and_byte_noise_never_panic() {
    let good = sample().render();
    for cut in 0..good.len() {
        let _ = LaunchDescription::parse(&good[..cut]);
    }
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut bytes = good.into_bytes();
    for _ in 0..5000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let i = (seed as usize) % bytes.len();
        bytes[i] = (seed >> 40) as u8;
        let _ = LaunchDescription::parse_bytes(&bytes);
    }
}
