//! Shared pieces of the configurator fuzz targets: the whole pipeline (structure checks,
//! default population, semantic checks, allocation, generation) on a board and a scenario held
//! in memory, asserting what must hold at each step.

use std::path::Path;

use acrn_configurator::board::{load_board_str, Board};
use acrn_configurator::diag::Findings;
use acrn_configurator::scenario::{
    populate_defaults, read_document, to_toml, to_xml, toml_to_document, Scenario,
};
use acrn_configurator::xml::{parse_str, Document, Element};
use acrn_configurator::{alloc, checks, gen};

/// The board every scenario input is checked against, and the scenario every board input
/// carries: the project's own QEMU configuration.
pub const BOARD: &str = include_str!("../../configs/qemu-epyc/qemu-epyc.xml");
pub const SCENARIO: &str = include_str!("../../configs/qemu-epyc/shared.xml");

pub fn fixed_board() -> &'static Board {
    static B: std::sync::OnceLock<Board> = std::sync::OnceLock::new();
    B.get_or_init(|| load_board_str(Path::new("board.xml"), BOARD).expect("the QEMU board loads"))
}

pub fn fixed_scenario() -> &'static Scenario {
    static S: std::sync::OnceLock<Scenario> = std::sync::OnceLock::new();
    S.get_or_init(|| read_scenario(SCENARIO).expect("the QEMU scenario loads"))
}

/// Every element and attribute span lies inside the source on character boundaries, and its
/// line number is the line its offset is on.
pub fn check_spans(doc: &Document) {
    let src = &*doc.source;
    let newlines: Vec<usize> = src
        .bytes()
        .enumerate()
        .filter_map(|(i, b)| (b == b'\n').then_some(i))
        .collect();
    let check = |what: &str, s: &acrn_configurator::xml::Span| {
        let r = s.range();
        assert!(
            r.end <= src.len(),
            "{what} span {r:?} past the end ({})",
            src.len()
        );
        assert!(
            src.is_char_boundary(r.start) && src.is_char_boundary(r.end),
            "{what} {r:?}"
        );
        let line = 1 + newlines.partition_point(|&n| n < r.start);
        assert_eq!(s.line as usize, line, "{what} span {r:?} line");
        assert!(s.column >= 1, "{what} column 0");
    };
    let mut stack: Vec<&Element> = vec![&doc.root];
    while let Some(e) = stack.pop() {
        check(&e.name, &e.span);
        for a in &e.attrs {
            check(&a.name, &a.span);
        }
        stack.extend(&e.children);
    }
}

/// Reads a scenario (XML when it starts with `<` after blanks, else TOML) and fills in the
/// defaults; `None` when the text is not a scenario. Population and both writers must work on
/// any scenario the reader accepts, and what they write must read back equal.
pub fn read_scenario(text: &str) -> Option<Scenario> {
    let doc = if text.trim_start().starts_with('<') {
        let d = parse_str(Path::new("s.xml"), text).ok()?;
        check_spans(&d);
        d
    } else {
        toml_to_document(Path::new("s.toml"), text).ok()?
    };
    let (s, _) = read_document(&doc).ok()?;
    let p = populate_defaults(&s).expect("default population of an accepted scenario");
    let xml = to_xml(&p).expect("XML output");
    let again = parse_str(Path::new("again.xml"), &xml).expect("own XML parses");
    let (again, _) = read_document(&again).expect("own XML reads");
    assert_eq!(again, p, "XML round trip\n{xml}");
    let toml = to_toml(&p, "scenario.schema.json").expect("TOML output");
    let again = toml_to_document(Path::new("again.toml"), &toml).expect("own TOML parses");
    let (again, _) = read_document(&again).expect("own TOML reads");
    assert_eq!(again, p, "TOML round trip\n{toml}");
    Some(p)
}

/// Semantic checks, then (when they pass) allocation and generation: an allocation that
/// succeeds always renders, the tables name every VM, and launch scripts never panic.
pub fn check_and_generate(board: &Board, scenario: &Scenario) {
    let mut findings = Findings::new();
    checks::run_all(board, scenario, &mut findings);
    if !findings.is_valid(false) {
        return;
    }
    let Ok(a) = alloc::allocate(board, scenario) else {
        return;
    };
    let files = gen::render(board, scenario, &a, "fuzz").expect("an allocated scenario renders");
    let tables = files.get(gen::VM_TABLES).expect("vm_tables.rs");
    for vm in &scenario.vm {
        assert!(
            tables.contains(&format!("{:?}", vm.name)),
            "VM {} missing from the tables",
            vm.name
        );
    }
    // Launch scripts: derived or refused with findings, never a panic; no value breaks out of
    // the header's comments (everything before `set -eu` is a comment or blank).
    if let Ok(scripts) = gen::launch_script::scripts(board, scenario) {
        for s in scripts {
            let text = s.render(&board.name, "fuzz");
            let header = text.split("\nset -eu\n").next().unwrap_or_default();
            assert!(
                header.lines().all(|l| l.is_empty() || l.starts_with('#')),
                "script header of {} has a non-comment line:\n{header}",
                s.vm_name
            );
        }
    }
}
