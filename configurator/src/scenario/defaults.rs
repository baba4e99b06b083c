//! ACRN's default population (reference §3.5): every missing element that has a default,
//! or is a group whose contents can all be defaulted, is added if it applies to the VM's
//! load order; empty text values get their default; "unique-among" defaults (IVSHMEM `VBDF`,
//! vUART endpoint `io_port` and `vbdf`) take the smallest value that VM does not use yet.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::model::{Hex, Scenario, Vbdf};
use super::read::check_value;
use super::spec::{self, Applies, Kind, Spec};

/// Returned only if the schema table and the model disagree (a bug).
#[derive(Debug, thiserror::Error)]
#[error("internal error in default population: {0}")]
pub struct PopulateError(String);

/// Returns `s` with ACRN's defaults filled in; spans are kept.
pub fn populate_defaults(s: &Scenario) -> Result<Scenario, PopulateError> {
    let mut v = serde_json::to_value(s).map_err(|e| PopulateError(e.to_string()))?;
    if let Some(hv) = v.get_mut("hv").and_then(Value::as_object_mut) {
        fill(hv, spec::HV, None);
    }
    if let Some(vms) = v.get_mut("vm").and_then(Value::as_array_mut) {
        for (vm, model) in vms.iter_mut().zip(&s.vm) {
            let applies = model.load_order.map_or(spec::ALL, spec::load_order_bit);
            if let Some(obj) = vm.as_object_mut() {
                fill(obj, spec::VM, Some(applies));
            }
        }
    }
    let mut out: Scenario = serde_json::from_value(v).map_err(|e| PopulateError(e.to_string()))?;
    out.spans = s.spans.clone();
    unique_defaults(&mut out);
    Ok(out)
}

fn default_value(spec: &Spec, default: &str) -> Option<Value> {
    match spec.kind {
        Kind::Leaf(ty) => check_value(default, ty).ok(),
        Kind::Group(_) => None,
    }
}

fn fill(obj: &mut Map<String, Value>, specs: &'static [Spec], applies: Option<Applies>) {
    for s in specs {
        if applies.is_some_and(|a| a & s.applies == 0) {
            continue;
        }
        match s.kind {
            Kind::Leaf(_) => {
                let Some(d) = s.default else { continue };
                let empty = matches!(obj.get(s.name), None | Some(Value::Null))
                    || obj
                        .get(s.name)
                        .and_then(Value::as_str)
                        .is_some_and(str::is_empty);
                if empty {
                    if let Some(v) = default_value(s, d) {
                        obj.insert(s.name.to_string(), v);
                    }
                }
            }
            Kind::Group(children) => {
                let missing = matches!(obj.get(s.name), None | Some(Value::Null));
                if missing && s.min > 0 && s.can_populate() && !s.repeats() {
                    obj.insert(s.name.to_string(), Value::Object(Map::new()));
                }
                match obj.get_mut(s.name) {
                    Some(Value::Object(o)) => fill(o, children, applies),
                    Some(Value::Array(items)) => {
                        for i in items {
                            if let Some(o) = i.as_object_mut() {
                                fill(o, children, applies);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn unique_defaults(s: &mut Scenario) {
    // IVSHMEM: VBDF 00:08.0 .. 00:0f.0, unique per VM over all regions.
    if let Some(iv) = s.hv.features.as_mut().and_then(|f| f.ivshmem.as_mut()) {
        let mut used: BTreeMap<String, BTreeSet<Vbdf>> = BTreeMap::new();
        for r in &iv.regions {
            for m in &r.vms.vm {
                if let Some(b) = m.vbdf {
                    used.entry(m.vm_name.clone()).or_default().insert(b);
                }
            }
        }
        for r in &mut iv.regions {
            for m in &mut r.vms.vm {
                if m.vbdf.is_none() {
                    let set = used.entry(m.vm_name.clone()).or_default();
                    m.vbdf = (0x08..=0x0f)
                        .map(|dev| Vbdf {
                            bus: 0,
                            dev,
                            func: 0,
                        })
                        .find(|b| !set.contains(b));
                    set.extend(m.vbdf);
                }
            }
        }
    }
    // vUART endpoints: io_port 0x9200 .. 0x9278 step 8 and vbdf 00:10.0 .. 00:17.0, per VM.
    if let Some(vc) = s.hv.vuart_connections.as_mut() {
        let mut ports: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        let mut bdfs: BTreeMap<String, BTreeSet<Vbdf>> = BTreeMap::new();
        for ep in vc.connections.iter().flat_map(|c| &c.endpoints) {
            if let Some(p) = ep.io_port {
                ports.entry(ep.vm_name.clone()).or_default().insert(p.0);
            }
            if let Some(b) = ep.vbdf {
                bdfs.entry(ep.vm_name.clone()).or_default().insert(b);
            }
        }
        for ep in vc.connections.iter_mut().flat_map(|c| &mut c.endpoints) {
            if ep.io_port.is_none() {
                let set = ports.entry(ep.vm_name.clone()).or_default();
                ep.io_port = (0..16u64)
                    .map(|k| 0x9200 + 8 * k)
                    .find(|p| !set.contains(p))
                    .map(Hex);
                set.extend(ep.io_port.map(|h| h.0));
            }
            if ep.vbdf.is_none() {
                let set = bdfs.entry(ep.vm_name.clone()).or_default();
                ep.vbdf = (0x10..=0x17)
                    .map(|dev| Vbdf {
                        bus: 0,
                        dev,
                        func: 0,
                    })
                    .find(|b| !set.contains(b));
                set.extend(ep.vbdf);
            }
        }
    }
}
