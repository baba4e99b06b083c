//! Which file goes into the image for each boot module tag the scenario names.
//!
//! The hypervisor finds a VM's kernel (and ramdisk) among the multiboot2 modules by the tag
//! GRUB passes as the module's command line, as in ACRN (`module2 /boot/FILE TAG`). Only the
//! VMs the hypervisor boots itself need modules (pre-launched VMs and the Service VM), and so do
//! post-launched VMs, whose kernels the Service VM loads: each is tagged by its `kern_mod` or
//! `<VM name>_kernel` ([`crate::launch::kernel_tag`]); the image adds the launch description
//! (`launch_vms`) beside them.
//!
//! A module without `--module TAG=FILE` is [`Source::Missing`]: the build writes the
//! hypervisor, the manifest and a grub.cfg with a line to fill in for it, but no ISO, as ACRN's
//! `make BOARD= SCENARIO=` builds the hypervisor alone and the user adds the kernels to their
//! boot loader. On the boards of configs/ (emulated machines, see [`TestGuests`]) a `KERNEL_ELF`
//! VM instead gets one of the project's test guests (tests/guests), so every scenario there boots
//! as it is:
//! * a VM whose name contains `ROGUE` gets `rogue.elf`, one whose name contains `BENCH` gets
//!   `bench.elf`;
//! * otherwise the second pre-launched VM gets `rogue.elf` when no VM is named `*ROGUE*`,
//!   so a partitioned scenario shows containment (a misbehaving VM stopped while its sibling
//!   keeps running);
//! * the Service VM gets `service-vm.elf` (the reference Service VM) when the scenario has
//!   post-launched VMs;
//! * every other VM (the first pre-launched VM, post-launched VMs, ...) gets `hello.elf`.
//!
//! Kernels of other types (`KERNEL_BZIMAGE`, `KERNEL_RAWIMAGE`) and ramdisks have no default:
//! without `--module` they are missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::scenario::{KernType, LoadOrder, Scenario};

use super::ImageError;

/// What a tag is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    Kernel(KernType),
    Ramdisk,
    /// The launch description for the reference Service VM (`launch_vms`).
    LaunchDescription,
}

/// A boot module the scenario needs: a tag and the first VM that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub tag: String,
    pub vm_id: u32,
    pub vm_name: String,
    pub kind: ModuleKind,
}

/// Where a module's file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Given with `--module TAG=FILE`.
    User(PathBuf),
    /// A test guest from tests/guests (`hello.elf`, ...), built by `tests/guests/build.sh`.
    TestGuest(&'static str),
    /// Written by the build itself (the launch description).
    Generated,
    /// Not given and no default: the user adds it to their boot loader.
    Missing,
}

/// Whether `KERNEL_ELF` VMs without `--module` get the test guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestGuests {
    Default,
    None,
}

impl Need {
    /// What the module is, for messages: "PRE_VM0's KERNEL_BZIMAGE kernel".
    pub fn what(&self) -> String {
        match self.kind {
            ModuleKind::Kernel(k) => format!("{}'s {k} kernel", self.vm_name),
            ModuleKind::Ramdisk => format!("{}'s ramdisk", self.vm_name),
            ModuleKind::LaunchDescription => "the launch description".into(),
        }
    }
}

/// A module resolved to a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub need: Need,
    pub source: Source,
}

/// The kernel and ramdisk tags of every VM, in VM order, each tag once.
pub fn needed(scenario: &Scenario) -> Vec<Need> {
    let mut out: Vec<Need> = Vec::new();
    let mut vms: Vec<_> = scenario.vm.iter().collect();
    vms.sort_by_key(|v| v.id);
    for vm in vms {
        if vm.load_order == Some(LoadOrder::PostLaunched) {
            let os = vm.os_config.as_ref();
            let tag = os
                .and_then(|o| o.kern_mod.as_deref())
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map_or_else(|| crate::launch::kernel_tag(&vm.name), str::to_string);
            let kind = ModuleKind::Kernel(os.and_then(|o| o.kern_type).unwrap_or(KernType::Elf));
            if out.iter().all(|n| n.tag != tag) {
                out.push(Need {
                    tag,
                    vm_id: vm.id,
                    vm_name: vm.name.clone(),
                    kind,
                });
            }
            continue;
        }
        if !matches!(
            vm.load_order,
            Some(LoadOrder::PreLaunched | LoadOrder::Service)
        ) {
            continue;
        }
        let Some(os) = &vm.os_config else { continue };
        let kern = os.kern_type.unwrap_or(KernType::Elf);
        let tags = [
            (os.kern_mod.as_deref(), ModuleKind::Kernel(kern)),
            (os.ramdisk_mod.as_deref(), ModuleKind::Ramdisk),
        ];
        for (tag, kind) in tags {
            let Some(tag) = tag.map(str::trim).filter(|t| !t.is_empty()) else {
                continue;
            };
            if out.iter().all(|n| n.tag != tag) {
                out.push(Need {
                    tag: tag.to_string(),
                    vm_id: vm.id,
                    vm_name: vm.name.clone(),
                    kind,
                });
            }
        }
    }
    out
}

/// Parses one `--module TAG=FILE` argument.
pub fn parse_module_arg(arg: &str) -> Result<(String, PathBuf), ImageError> {
    match arg.split_once('=') {
        Some((tag, file)) if !tag.trim().is_empty() && !file.is_empty() => {
            Ok((tag.trim().to_string(), PathBuf::from(file)))
        }
        _ => Err(ImageError::BadModuleArg(arg.to_string())),
    }
}

/// Chooses a source for every needed module: the user's file, else a default test guest (with
/// [`TestGuests::Default`]), else [`Source::Missing`]. Fails on a `--module` tag the scenario
/// does not name (a typo would otherwise go unnoticed) and on a user file that does not exist.
pub fn plan(
    scenario: &Scenario,
    needs: &[Need],
    user: &[(String, PathBuf)],
    test_guests: TestGuests,
) -> Result<Vec<Planned>, ImageError> {
    let mut given: BTreeMap<&str, &Path> = BTreeMap::new();
    for (tag, file) in user {
        if !needs.iter().any(|n| &n.tag == tag) {
            return Err(ImageError::UnknownModuleTag {
                tag: tag.clone(),
                known: needs.iter().map(|n| n.tag.clone()).collect(),
            });
        }
        if given.insert(tag, file).is_some() {
            return Err(ImageError::DuplicateModule(tag.clone()));
        }
        // Devices and FIFOs are read like files (bounded, see crate::bounded).
        if !file.exists() || file.is_dir() {
            return Err(ImageError::ModuleFileMissing {
                tag: tag.clone(),
                path: file.to_path_buf(),
            });
        }
    }
    let any_rogue = scenario
        .vm
        .iter()
        .any(|v| v.name.to_ascii_uppercase().contains("ROGUE"));
    let mut pre_ids: Vec<u32> = scenario
        .vm
        .iter()
        .filter(|v| v.load_order == Some(LoadOrder::PreLaunched))
        .map(|v| v.id)
        .collect();
    pre_ids.sort_unstable();
    let second_pre = pre_ids.get(1).copied();
    let has_post = scenario
        .vm
        .iter()
        .any(|v| v.load_order == Some(LoadOrder::PostLaunched));
    let service_id = scenario
        .vm
        .iter()
        .find(|v| v.load_order == Some(LoadOrder::Service))
        .map(|v| v.id);

    Ok(needs
        .iter()
        .map(|n| {
            let source = match given.get(n.tag.as_str()) {
                Some(f) => Source::User(f.to_path_buf()),
                None => match n.kind {
                    ModuleKind::Kernel(KernType::Elf) if test_guests == TestGuests::Default => {
                        let name = n.vm_name.to_ascii_uppercase();
                        Source::TestGuest(if has_post && Some(n.vm_id) == service_id {
                            "service-vm.elf"
                        } else if name.contains("ROGUE") {
                            "rogue.elf"
                        } else if name.contains("BENCH") {
                            "bench.elf"
                        } else if !any_rogue && Some(n.vm_id) == second_pre {
                            "rogue.elf"
                        } else {
                            "hello.elf"
                        })
                    }
                    _ => Source::Missing,
                },
            };
            Planned {
                need: n.clone(),
                source,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{OsConfig, Vm};

    fn vm(id: u32, name: &str, order: LoadOrder, kern: KernType, tag: &str) -> Vm {
        Vm {
            id,
            name: name.into(),
            load_order: Some(order),
            os_config: Some(OsConfig {
                kern_type: Some(kern),
                kern_mod: Some(tag.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn scenario(vms: Vec<Vm>) -> Scenario {
        Scenario {
            vm: vms,
            ..Default::default()
        }
    }

    fn guests(p: &[Planned]) -> Vec<(&str, &Source)> {
        p.iter().map(|p| (p.need.tag.as_str(), &p.source)).collect()
    }

    #[test]
    fn partitioned_gets_hello_then_rogue() {
        let s = scenario(vec![
            vm(1, "PRE_VM1", LoadOrder::PreLaunched, KernType::Elf, "k1"),
            vm(0, "PRE_VM0", LoadOrder::PreLaunched, KernType::Elf, "k0"),
        ]);
        let needs = needed(&s);
        assert_eq!(needs[0].tag, "k0", "VM order, not file order");
        let p = plan(&s, &needs, &[], TestGuests::Default).unwrap();
        assert_eq!(
            guests(&p),
            [
                ("k0", &Source::TestGuest("hello.elf")),
                ("k1", &Source::TestGuest("rogue.elf"))
            ]
        );
    }

    #[test]
    fn named_rogue_wins_and_post_launched_get_the_service_vm_and_hello() {
        let s = scenario(vec![
            vm(0, "SERVICE_VM", LoadOrder::Service, KernType::Elf, "sos"),
            vm(1, "PRE_A", LoadOrder::PreLaunched, KernType::Elf, "a"),
            vm(2, "PRE_B", LoadOrder::PreLaunched, KernType::Elf, "b"),
            vm(3, "MY_ROGUE", LoadOrder::PreLaunched, KernType::Elf, "r"),
            vm(4, "POST", LoadOrder::PostLaunched, KernType::Elf, "post"),
        ]);
        let p = plan(&s, &needed(&s), &[], TestGuests::Default).unwrap();
        assert_eq!(
            guests(&p),
            [
                ("sos", &Source::TestGuest("service-vm.elf")),
                ("a", &Source::TestGuest("hello.elf")),
                ("b", &Source::TestGuest("hello.elf")),
                ("r", &Source::TestGuest("rogue.elf")),
                ("post", &Source::TestGuest("hello.elf")),
            ]
        );
    }

    #[test]
    fn without_test_guests_elf_kernels_are_missing() {
        let s = scenario(vec![
            vm(0, "PRE_VM0", LoadOrder::PreLaunched, KernType::Elf, "k0"),
            vm(1, "PRE_VM1", LoadOrder::PreLaunched, KernType::Elf, "k1"),
        ]);
        let needs = needed(&s);
        let exe = std::env::current_exe().unwrap();
        let p = plan(&s, &needs, &[("k1".into(), exe.clone())], TestGuests::None).unwrap();
        assert_eq!(
            guests(&p),
            [("k0", &Source::Missing), ("k1", &Source::User(exe))]
        );
    }

    #[test]
    fn shared_tags_appear_once() {
        let s = scenario(vec![
            vm(0, "A", LoadOrder::PreLaunched, KernType::Elf, "same"),
            vm(1, "B", LoadOrder::PreLaunched, KernType::Elf, "same"),
        ]);
        assert_eq!(needed(&s).len(), 1);
    }

    #[test]
    fn bzimage_is_missing_without_a_user_file() {
        let s = scenario(vec![vm(
            0,
            "LINUX",
            LoadOrder::PreLaunched,
            KernType::BzImage,
            "Linux_bzImage",
        )]);
        let needs = needed(&s);
        let p = plan(&s, &needs, &[], TestGuests::Default).unwrap();
        assert_eq!(p[0].source, Source::Missing);
        assert_eq!(p[0].need.what(), "LINUX's KERNEL_BZIMAGE kernel");
        let file = std::env::current_exe().unwrap();
        let p = plan(
            &s,
            &needs,
            &[("Linux_bzImage".into(), file.clone())],
            TestGuests::Default,
        )
        .unwrap();
        assert_eq!(p[0].source, Source::User(file));
    }

    #[test]
    fn user_mistakes_are_reported() {
        let s = scenario(vec![vm(0, "A", LoadOrder::PreLaunched, KernType::Elf, "k")]);
        let needs = needed(&s);
        let exe = std::env::current_exe().unwrap();
        let e = plan(&s, &needs, &[("kk".into(), exe.clone())], TestGuests::None).unwrap_err();
        assert!(
            e.to_string().contains("`kk`") && e.to_string().contains("k"),
            "{e}"
        );
        let e = plan(
            &s,
            &needs,
            &[("k".into(), "/nonexistent/x".into())],
            TestGuests::None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x"), "{e}");
        let e = plan(
            &s,
            &needs,
            &[("k".into(), exe.clone()), ("k".into(), exe)],
            TestGuests::None,
        )
        .unwrap_err();
        assert!(matches!(e, ImageError::DuplicateModule(_)), "{e}");
        assert!(parse_module_arg("noequals").is_err());
        assert!(parse_module_arg("=file").is_err());
        assert_eq!(
            parse_module_arg("T=a=b").unwrap(),
            ("T".to_string(), PathBuf::from("a=b"))
        );
    }
}
