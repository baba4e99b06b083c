//! `manifest.json`: what the build and run commands need to assemble a boot image: every
//! VM with its boot module tags, memory and pCPUs, and the hypervisor's RAM.

use serde::{Deserialize, Serialize};

use crate::alloc::{Allocation, Range};
use crate::board::Board;
use crate::scenario::{KernType, LoadOrder, Scenario};

use super::context::bootargs;

/// Bump when the shape changes incompatibly.
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub board: String,
    pub scenario: String,
    pub hv_ram_start: u64,
    pub hv_ram_size: u64,
    /// Multiboot module tags the boot loader must provide (kernels and ramdisks of the VMs
    /// the hypervisor boots itself), sorted, without duplicates.
    pub modules: Vec<String>,
    pub vms: Vec<ManifestVm>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestVm {
    pub id: u16,
    pub name: String,
    /// `PRE_LAUNCHED_VM`, `SERVICE_VM` or `POST_LAUNCHED_VM`.
    pub load_order: String,
    pub vm_type: String,
    pub pcpus: Vec<u32>,
    /// Bytes of RAM the VM gets.
    pub memory_size: u64,
    /// Host ranges `[start, start+size)` backing the VM (pre-launched and Service VM).
    pub host_memory: Vec<Range>,
    /// `KERNEL_BZIMAGE`, `KERNEL_RAWIMAGE` or `KERNEL_ELF`; absent for post-launched VMs.
    pub kern_type: Option<String>,
    pub kern_mod: Option<String>,
    pub ramdisk_mod: Option<String>,
    pub bootargs: Option<String>,
}

pub(crate) fn build(board: &Board, s: &Scenario, a: &Allocation, scenario_name: &str) -> Manifest {
    let mut modules = Vec::new();
    let vms = a
        .vms
        .iter()
        .map(|v| {
            let vm = &s.vm[v.index];
            let os = vm
                .os_config
                .as_ref()
                .filter(|_| v.load_order != LoadOrder::PostLaunched);
            let kern_mod = os.map(|o| {
                o.kern_mod
                    .as_deref()
                    .map(str::trim)
                    .unwrap_or("Linux_bzImage")
                    .to_string()
            });
            let ramdisk_mod = os
                .and_then(|o| o.ramdisk_mod.as_deref())
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string);
            modules.extend(kern_mod.iter().cloned());
            modules.extend(ramdisk_mod.iter().cloned());
            let host_memory = match v.load_order {
                LoadOrder::Service => v.service_ram.clone(),
                _ => v.memory.iter().map(|m| Range::new(m.hpa, m.size)).collect(),
            };
            ManifestVm {
                id: v.id,
                name: v.name.clone(),
                load_order: v.load_order.as_str().to_string(),
                vm_type: vm.vm_type.map_or("STANDARD_VM", |t| t.as_str()).to_string(),
                pcpus: v.pcpus.clone(),
                memory_size: v.memory_size,
                host_memory,
                kern_type: os.map(|o| {
                    o.kern_type
                        .unwrap_or(KernType::BzImage)
                        .as_str()
                        .to_string()
                }),
                kern_mod,
                ramdisk_mod,
                bootargs: os.map(|o| bootargs(o.bootargs.as_deref().unwrap_or(""))),
            }
        })
        .collect();
    modules.sort();
    modules.dedup();
    Manifest {
        version: MANIFEST_VERSION,
        board: board.name.clone(),
        scenario: scenario_name.to_string(),
        hv_ram_start: a.hv_ram.start,
        hv_ram_size: a.hv_ram.size,
        modules,
        vms,
    }
}
