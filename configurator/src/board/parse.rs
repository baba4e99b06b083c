//! Reads the structured sections of a board file from the DOM into the typed model.

use std::collections::BTreeMap;

use super::legacy::{parse_c_int, Bdf};
use super::model::*;
use super::BoardProblem;
use crate::xml::{Element, Span};

/// Collects problems while reading; every reader returns what it could.
#[derive(Default)]
pub(super) struct Ctx {
    pub problems: Vec<BoardProblem>,
}

impl Ctx {
    pub fn problem(&mut self, span: Span, section: &str, message: impl Into<String>) {
        self.problems.push(BoardProblem {
            span,
            section: section.to_string(),
            message: message.into(),
        });
    }

    /// Number in a child element (hex or decimal). Missing or blank -> `None`;
    /// `required` records a problem for that.
    fn child_num<T: TryFrom<u64>>(
        &mut self,
        el: &Element,
        name: &str,
        section: &str,
        required: bool,
    ) -> Option<T> {
        let Some(c) = el.child(name).filter(|c| !c.text_trim().is_empty()) else {
            if required {
                self.problem(el.span, section, format!("<{}> has no <{name}>", el.name));
            }
            return None;
        };
        let text = c.text_trim();
        self.number(text, c.text_span, section, || format!("<{name}> `{text}`"))
    }

    /// Number in an attribute; missing -> `None` (and a problem when `required`).
    fn attr_num<T: TryFrom<u64>>(
        &mut self,
        el: &Element,
        name: &str,
        section: &str,
        required: bool,
    ) -> Option<T> {
        let Some(a) = el.attr_full(name) else {
            if required {
                self.problem(
                    el.span,
                    section,
                    format!("<{}> has no `{name}` attribute", el.name),
                );
            }
            return None;
        };
        self.number(&a.value, a.span, section, || {
            format!("`{name}` value `{}`", a.value)
        })
    }

    /// `text` (hex or decimal) as a `T`; a problem at `span` naming `what()` when it is not.
    fn number<T: TryFrom<u64>>(
        &mut self,
        text: &str,
        span: Span,
        section: &str,
        what: impl FnOnce() -> String,
    ) -> Option<T> {
        let v = parse_c_int(text).and_then(|v| T::try_from(v).ok());
        if v.is_none() {
            self.problem(
                span,
                section,
                format!("{} is not a number in range", what()),
            );
        }
        v
    }

    fn core_type(&mut self, el: &Element, section: &str) -> Option<CoreType> {
        let c = el.child("core_type")?;
        match c.text_trim() {
            "" => None,
            "Core" => Some(CoreType::Core),
            "Atom" => Some(CoreType::Atom),
            "Reserved" => Some(CoreType::Reserved),
            other => {
                self.problem(
                    c.text_span,
                    section,
                    format!("core_type `{other}` is not Core, Atom or Reserved"),
                );
                None
            }
        }
    }
}

fn text_of(el: &Element, name: &str) -> Option<String> {
    el.child_text(name)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

fn fields_of(el: &Element) -> Vec<Field> {
    el.children
        .iter()
        .filter(|c| c.children.is_empty())
        .map(|c| Field {
            name: c.name.clone(),
            value: c.text_trim().to_string(),
        })
        .collect()
}

fn parameter(el: &Element) -> Parameter {
    Parameter {
        id: el.attr("id").unwrap_or("").to_string(),
        text: el.text_trim().to_string(),
        values: fields_of(el),
    }
}

// ---------------------------------------------------------------------------------------------

pub(super) fn processors(ctx: &mut Ctx, el: &Element) -> Processors {
    const S: &str = "processors";
    let mut out = Processors::default();
    for c in &el.children {
        match c.name.as_str() {
            "model" => {
                let model = CpuModel {
                    description: c.attr("description").unwrap_or("").to_string(),
                    family_id: ctx.child_num(c, "family_id", S, false),
                    model_id: ctx.child_num(c, "model_id", S, false),
                    core_type: ctx.core_type(c, S),
                    native_model_id: text_of(c, "native_model_id"),
                    capabilities: c
                        .children("capability")
                        .filter_map(|x| x.attr("id").map(str::to_string))
                        .collect(),
                    attributes: c
                        .children("attribute")
                        .filter_map(|x| {
                            Some((x.attr("id")?.to_string(), x.text_trim().to_string()))
                        })
                        .collect(),
                    span: c.span,
                };
                out.models.push(model);
            }
            "thread" => ctx.problem(c.span, S, "<thread> outside any die/core"),
            _ => out.topology.push(topology(ctx, c)),
        }
    }
    out
}

fn topology(ctx: &mut Ctx, el: &Element) -> TopologyNode {
    let mut node = TopologyNode {
        level: el.name.clone(),
        id: el.attr("id").unwrap_or("").to_string(),
        children: Vec::new(),
        threads: Vec::new(),
        span: el.span,
    };
    for c in &el.children {
        if c.name == "thread" {
            if let Some(t) = thread(ctx, c) {
                node.threads.push(t);
            }
        } else {
            node.children.push(topology(ctx, c));
        }
    }
    node
}

fn thread(ctx: &mut Ctx, el: &Element) -> Option<Thread> {
    const S: &str = "processors";
    let cpu_id = ctx.child_num(el, "cpu_id", S, true);
    let apic_id = ctx.child_num(el, "apic_id", S, true);
    let t = Thread {
        cpu_id: cpu_id?,
        apic_id: apic_id?,
        x2apic_id: ctx.child_num(el, "x2apic_id", S, false),
        family_id: ctx.child_num(el, "family_id", S, false),
        model_id: ctx.child_num(el, "model_id", S, false),
        stepping_id: ctx.child_num(el, "stepping_id", S, false),
        core_type: ctx.core_type(el, S),
        native_model_id: text_of(el, "native_model_id"),
        freqdomain_cpus: text_of(el, "freqdomain_cpus"),
        guaranteed_performance_lvl: ctx.child_num(el, "guaranteed_performance_lvl", S, false),
        highest_performance_lvl: ctx.child_num(el, "highest_performance_lvl", S, false),
        lowest_performance_lvl: ctx.child_num(el, "lowest_performance_lvl", S, false),
        span: el.span,
    };
    Some(t)
}

// ---------------------------------------------------------------------------------------------

pub(super) fn caches(ctx: &mut Ctx, el: &Element) -> Caches {
    let mut out = Caches::default();
    for c in &el.children {
        match c.name.as_str() {
            "cache" => {
                if let Some(cache) = cache(ctx, c) {
                    out.caches.push(cache);
                }
            }
            "parameter" => out.parameters.push(parameter(c)),
            other => ctx.problem(
                c.span,
                "caches",
                format!("unexpected <{other}> in <caches>"),
            ),
        }
    }
    out
}

fn cache(ctx: &mut Ctx, el: &Element) -> Option<Cache> {
    const S: &str = "caches";
    let level = ctx.attr_num(el, "level", S, true);
    let id = ctx.attr_num(el, "id", S, true);
    let ty: Option<u32> = ctx.attr_num(el, "type", S, true);
    let cache_type = match ty? {
        1 => CacheType::Data,
        2 => CacheType::Instruction,
        3 => CacheType::Unified,
        other => {
            ctx.problem(el.span, S, format!("cache type {other} is not 1, 2 or 3"));
            return None;
        }
    };
    let mut processors = Vec::new();
    if let Some(p) = el.child("processors") {
        for x in p.children("processor") {
            match parse_c_int(x.text_trim()).and_then(|v| u32::try_from(v).ok()) {
                Some(v) => processors.push(v),
                None => ctx.problem(x.text_span, S, format!("bad APIC ID `{}`", x.text_trim())),
            }
        }
    }
    let mut cat = None;
    let mut mba = None;
    let mut software_sram = None;
    let mut sibling_cdp = false;
    for cap in el.children("capability") {
        match cap.attr("id").unwrap_or("") {
            "CAT" => {
                let len = ctx.child_num(cap, "capacity_mask_length", S, true);
                cat = len.map(|capacity_mask_length| CatCapability {
                    capacity_mask_length,
                    clos_number: ctx.child_num(cap, "clos_number", S, false),
                    cdp: cap
                        .children("capability")
                        .any(|c| c.attr("id") == Some("CDP")),
                    span: cap.span,
                });
            }
            "CDP" => sibling_cdp = true,
            "MBA" => mba = Some(capability(ctx, cap)),
            "Software SRAM" => {
                software_sram = Some(SoftwareSram {
                    start: ctx.child_num(cap, "start", S, false),
                    end: ctx.child_num(cap, "end", S, false),
                    size: ctx.child_num(cap, "size", S, false),
                    fields: fields_of(cap)
                        .into_iter()
                        .map(|f| (f.name, f.value))
                        .collect::<BTreeMap<_, _>>(),
                    span: cap.span,
                })
            }
            _ => {}
        }
    }
    if let Some(c) = cat.as_mut() {
        c.cdp |= sibling_cdp;
    }
    Some(Cache {
        level: level?,
        id: id?,
        cache_type,
        cache_size: ctx.child_num(el, "cache_size", S, false),
        line_size: ctx.child_num(el, "line_size", S, false),
        ways: ctx.child_num(el, "ways", S, false),
        sets: ctx.child_num(el, "sets", S, false),
        processors,
        cat,
        mba,
        software_sram,
        parameters: el.children("parameter").map(parameter).collect(),
        span: el.span,
    })
}

// ---------------------------------------------------------------------------------------------

pub(super) fn memory(ctx: &mut Ctx, el: &Element) -> Vec<MemoryRange> {
    const S: &str = "memory";
    let mut out = Vec::new();
    for r in &el.children {
        if r.name != "range" {
            ctx.problem(r.span, S, format!("unexpected <{}> in <memory>", r.name));
            continue;
        }
        let start = ctx.attr_num(r, "start", S, true);
        let end = ctx.attr_num(r, "end", S, true);
        let size = ctx.attr_num(r, "size", S, true);
        let (Some(start), Some(end), Some(size)) = (start, end, size) else {
            continue;
        };
        if end < start || end - start != size - 1 {
            ctx.problem(
                r.span,
                S,
                format!("range {start:#x}-{end:#x} does not have size {size}"),
            );
        }
        out.push(MemoryRange {
            start,
            end,
            size,
            id: r.attr("id").map(str::to_string),
            span: r.span,
        });
    }
    out
}

pub(super) fn ioapics(ctx: &mut Ctx, el: &Element) -> Vec<Ioapic> {
    const S: &str = "ioapics";
    let mut out = Vec::new();
    for a in el.children("ioapic") {
        let id = ctx.attr_num(a, "id", S, true);
        let address = ctx.child_num(a, "address", S, true);
        let gsi_base = ctx.child_num(a, "gsi_base", S, true);
        let gsi_number = ctx.child_num(a, "gsi_number", S, true);
        if let (Some(id), Some(address), Some(gsi_base), Some(gsi_number)) =
            (id, address, gsi_base, gsi_number)
        {
            out.push(Ioapic {
                id,
                address,
                gsi_base,
                gsi_number,
                span: a.span,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------

pub(super) fn devices(ctx: &mut Ctx, el: &Element) -> Devices {
    let mut out = Devices::default();
    for c in &el.children {
        match c.name.as_str() {
            "parameter" => out.parameters.push(parameter(c)),
            "bus" | "device" | "thermalzone" => out.nodes.push(device_node(ctx, c, None)),
            other => ctx.problem(
                c.span,
                "devices",
                format!("unexpected <{other}> in <devices>"),
            ),
        }
    }
    out
}

/// `pci_bus`: bus number of the directly enclosing PCI bus, if the parent is one.
fn device_node(ctx: &mut Ctx, el: &Element, pci_bus: Option<u8>) -> DeviceNode {
    const S: &str = "devices";
    let kind = match el.name.as_str() {
        "bus" => NodeKind::Bus,
        "thermalzone" => NodeKind::ThermalZone,
        _ => NodeKind::Device,
    };
    let bus_type = el.attr("type").map(str::to_string);
    let address: Option<u64> = ctx.attr_num(el, "address", S, false);
    let vendor = ctx.child_num(el, "vendor", S, false);
    let is_pci_bus = kind == NodeKind::Bus && bus_type.as_deref() == Some("pci");
    let own_bus = if is_pci_bus {
        match address.map(u8::try_from) {
            Some(Ok(b)) => Some(b),
            Some(Err(_)) => {
                ctx.problem(el.span, S, "PCI bus number above 255");
                None
            }
            None => Some(0),
        }
    } else {
        None
    };
    let bdf = match (kind, pci_bus, address) {
        (NodeKind::Device, Some(bus), Some(a)) => {
            let b = Bdf::new(u32::from(bus), (a >> 16) as u32, (a & 0xffff) as u32);
            if b.is_none() {
                ctx.problem(
                    el.span,
                    S,
                    format!("PCI address {a:#x} is not 0xDDDDFFFF with device < 32, function < 8"),
                );
            }
            b
        }
        // A host bridge is described by its bus element, which carries its IDs.
        (NodeKind::Bus, None, _) if is_pci_bus && vendor.is_some() => {
            own_bus.and_then(|b| Bdf::new(u32::from(b), 0, 0))
        }
        _ => None,
    };
    let status = el.child("status").map(|s| {
        let yes = |n| s.child_text(n) == Some("y");
        DeviceStatus {
            present: yes("present"),
            enabled: yes("enabled"),
            functioning: yes("functioning"),
        }
    });
    let mut node = DeviceNode {
        kind,
        bus_type,
        address,
        id: el.attr("id").map(str::to_string),
        description: el.attr("description").map(str::to_string),
        vendor,
        identifier: ctx.child_num(el, "identifier", S, false),
        subsystem_vendor: ctx.child_num(el, "subsystem_vendor", S, false),
        subsystem_identifier: ctx.child_num(el, "subsystem_identifier", S, false),
        class: ctx.child_num(el, "class", S, false),
        acpi_object: text_of(el, "acpi_object"),
        compatible_ids: el
            .children("compatible_id")
            .map(|c| c.text_trim().to_string())
            .collect(),
        acpi_uid: text_of(el, "acpi_uid"),
        aml_template: text_of(el, "aml_template"),
        status,
        resources: Vec::new(),
        capabilities: Vec::new(),
        intx_routing: Vec::new(),
        bdf,
        children: Vec::new(),
        span: el.span,
    };
    let child_bus = if is_pci_bus { own_bus } else { None };
    for c in &el.children {
        match c.name.as_str() {
            "resource" => {
                if let Some(r) = resource(ctx, c) {
                    node.resources.push(r);
                }
            }
            "capability" => node.capabilities.push(capability(ctx, c)),
            "interrupt_pin_routing" => node.intx_routing.extend(pin_routes(ctx, c)),
            "bus" | "device" | "thermalzone" => node.children.push(device_node(ctx, c, child_bus)),
            _ => {}
        }
    }
    node
}

fn pin_routes(ctx: &mut Ctx, el: &Element) -> Vec<PinRoute> {
    const S: &str = "devices";
    let mut out = Vec::new();
    for routing in el.children("routing") {
        let Some(address) = ctx.attr_num::<u64>(routing, "address", S, true) else {
            continue;
        };
        for m in routing.children("mapping") {
            let (Some(pin), Some(source)) = (m.attr("pin"), m.attr("source")) else {
                ctx.problem(m.span, S, "<mapping> needs `pin` and `source`");
                continue;
            };
            out.push(PinRoute {
                address,
                pin: pin.to_string(),
                source: source.to_string(),
                index: ctx.attr_num(m, "index", S, false).unwrap_or(0),
                span: m.span,
            });
        }
    }
    out
}

fn resource(ctx: &mut Ctx, el: &Element) -> Option<Resource> {
    const S: &str = "devices";
    let Some(kind) = el.attr("type") else {
        ctx.problem(el.span, S, "<resource> has no `type`");
        return None;
    };
    let prefetchable = el
        .attr_full("prefetchable")
        .and_then(|a| match a.value.as_str() {
            "1" | "y" | "true" => Some(true),
            "0" | "n" | "false" => Some(false),
            v => {
                ctx.problem(a.span, S, format!("prefetchable `{v}` is not 0 or 1"));
                None
            }
        });
    // `int` is a decimal IRQ or a list of the IRQs an ACPI device may use (`0, 1, 3, 7`).
    let mut irqs = Vec::new();
    if let Some(a) = el.attr_full("int") {
        for part in a.value.split(',').map(str::trim) {
            match part.parse::<u32>() {
                Ok(v) => irqs.push(v),
                Err(_) => ctx.problem(a.span, S, format!("irq `{part}` is not a decimal number")),
            }
        }
    }
    // An empty range (`len="0x0"`) is printed with `max="-0x1"` (min + len - 1).
    let max = match el.attr("max") {
        Some(v) if v.starts_with('-') => None,
        _ => ctx.attr_num(el, "max", S, false),
    };
    Some(Resource {
        kind: kind.to_string(),
        min: ctx.attr_num(el, "min", S, false),
        max,
        len: ctx.attr_num(el, "len", S, false),
        id: el.attr("id").map(str::to_string),
        width: ctx.attr_num(el, "width", S, false),
        prefetchable,
        irqs,
        pin: el.attr("pin").map(str::to_string),
        source: el.attr("source").map(str::to_string),
        index: ctx.attr_num(el, "index", S, false),
        span: el.span,
    })
}

fn capability(ctx: &mut Ctx, el: &Element) -> Capability {
    const S: &str = "devices";
    let id = el.attr("id").unwrap_or("").to_string();
    let msix = if id == "MSI-X" {
        ctx.child_num(el, "table_size", S, true)
            .map(|table_size| MsixInfo {
                table_size,
                table_bir: ctx.child_num(el, "table_bir", S, false),
                table_offset: ctx.child_num(el, "table_offset", S, false),
                pba_bir: ctx.child_num(el, "pba_bir", S, false),
                pba_offset: ctx.child_num(el, "pba_offset", S, false),
            })
    } else {
        None
    };
    let count = if id == "MSI" {
        ctx.child_num(el, "count", S, false)
    } else {
        None
    };
    Capability {
        id,
        count,
        msix,
        fields: fields_of(el)
            .into_iter()
            .filter(|f| f.name != "capability")
            .collect(),
        capabilities: el
            .children("capability")
            .map(|c| capability(ctx, c))
            .collect(),
        span: el.span,
    }
}

// ---------------------------------------------------------------------------------------------

pub(super) fn device_classes(ctx: &mut Ctx, el: &Element) -> DeviceClasses {
    const S: &str = "device-classes";
    let mut out = DeviceClasses::default();
    if let Some(inputs) = el.child("inputs") {
        for i in inputs.children("input") {
            out.inputs.push(InputDevice {
                name: i.child_text("name").unwrap_or("").to_string(),
                phys: i.child_text("phys").unwrap_or("").to_string(),
            });
        }
    }
    if let Some(ttys) = el.child("ttys") {
        for s in ttys.children("serial") {
            match s.child_text("dev_path").filter(|p| !p.is_empty()) {
                Some(dev_path) => out.serials.push(TtyClass {
                    dev_path: dev_path.to_string(),
                    uart_type: s.child_text("type").unwrap_or("").to_string(),
                    span: s.span,
                }),
                None => ctx.problem(s.span, S, "<serial> has no <dev_path>"),
            }
        }
    }
    out
}
