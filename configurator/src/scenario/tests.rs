//! Unit tests of the scenario readers, structure checks and default population.

use std::path::Path;

use super::*;
use crate::diag::Findings;
use crate::xml::parse_str;

const MINIMAL: &str = r#"<acrn-config>
  <hv>
    <FEATURES>
      <IVSHMEM>
        <IVSHMEM_REGION>
          <NAME>shm</NAME>
          <IVSHMEM_VMS>
            <IVSHMEM_VM><VM_NAME>SOS</VM_NAME></IVSHMEM_VM>
            <IVSHMEM_VM><VM_NAME>POST1</VM_NAME><VBDF>00:08.0</VBDF></IVSHMEM_VM>
          </IVSHMEM_VMS>
        </IVSHMEM_REGION>
        <IVSHMEM_REGION>
          <NAME>shm2</NAME>
          <IVSHMEM_VMS>
            <IVSHMEM_VM><VM_NAME>POST1</VM_NAME></IVSHMEM_VM>
          </IVSHMEM_VMS>
        </IVSHMEM_REGION>
      </IVSHMEM>
    </FEATURES>
    <vuart_connections>
      <vuart_connection>
        <name>c1</name>
        <endpoint><vm_name>SOS</vm_name></endpoint>
        <endpoint><vm_name>POST1</vm_name></endpoint>
      </vuart_connection>
      <vuart_connection>
        <name>c2</name>
        <type>legacy</type>
        <endpoint><vm_name>SOS</vm_name></endpoint>
        <endpoint><vm_name>POST1</vm_name><io_port>0x9200</io_port></endpoint>
      </vuart_connection>
    </vuart_connections>
  </hv>
  <vm id="0">
    <load_order>SERVICE_VM</load_order>
    <name>SOS</name>
  </vm>
  <vm id="1">
    <load_order>POST_LAUNCHED_VM</load_order>
    <name>POST1</name>
  </vm>
</acrn-config>
"#;

fn read(text: &str) -> Result<(Scenario, Findings), Findings> {
    read_document(&parse_str(Path::new("t.xml"), text).unwrap())
}

fn checks_of(text: &str) -> Vec<(&'static str, u32, String)> {
    let f = read(text).err().unwrap_or_default();
    f.iter()
        .map(|f| {
            (
                f.check,
                f.location.as_ref().map_or(0, |l| l.line),
                f.message.clone(),
            )
        })
        .collect()
}

#[test]
fn minimal_scenario_gets_defaults() {
    let (s, f) = read(MINIMAL).unwrap();
    assert!(f.is_empty());
    let p = populate_defaults(&s).unwrap();
    assert_eq!(p.hv.build_type, Some(BuildType::Debug));
    let feat = p.hv.features.as_ref().unwrap();
    assert_eq!(feat.scheduler, Some(Scheduler::Bvt));
    assert_eq!(feat.vuart_rx_buf_size, Some(256));
    let regions = &feat.ivshmem.as_ref().unwrap().regions;
    let vbdf = |r: usize, i: usize| regions[r].vms.vm[i].vbdf.unwrap().to_string();
    assert_eq!(vbdf(0, 0), "00:08.0");
    assert_eq!(vbdf(0, 1), "00:08.0");
    assert_eq!(vbdf(1, 0), "00:09.0", "00:08.0 is already POST1's");
    assert_eq!(regions[0].size_mb, Some(2));
    let conns = &p.hv.vuart_connections.as_ref().unwrap().connections;
    let ep = |c: usize, e: usize| &conns[c].endpoints[e];
    assert_eq!(conns[0].vuart_type, Some(VuartType::Pci));
    assert_eq!(ep(0, 0).io_port, Some(Hex(0x9200)));
    assert_eq!(
        ep(0, 1).io_port,
        Some(Hex(0x9208)),
        "0x9200 is taken by POST1 in c2"
    );
    assert_eq!(ep(1, 0).io_port, Some(Hex(0x9208)));
    assert_eq!(ep(0, 0).vbdf.unwrap().to_string(), "00:10.0");
    assert_eq!(ep(1, 0).vbdf.unwrap().to_string(), "00:11.0");
    let sos = &p.vm[0];
    assert_eq!(sos.nested_virtualization_support, Some(false));
    assert!(sos.memory.is_none() && sos.os_type.is_none() && sos.virtio_devices.is_none());
    assert_eq!(
        sos.os_config.as_ref().unwrap().kern_mod.as_deref(),
        Some("Linux_bzImage")
    );
    let post = &p.vm[1];
    // <memory> is optional in ACRN's schema: not added, the size comes from its default.
    assert!(post.memory.is_none());
    assert_eq!(post.memory_size_mb(), 1024);
    assert_eq!(post.vbootloader, Some(true));
    assert!(post.os_config.is_none() && post.nested_virtualization_support.is_none());
    assert!(post.virtio_devices.is_some());
    // Population is idempotent.
    assert_eq!(populate_defaults(&p).unwrap(), p);
}

#[test]
fn all_structure_errors_are_reported_at_once() {
    let text = MINIMAL
        .replace("<name>SOS</name>", "<name>SOS</name>\n    <cpu_affinity/>\n    <bvt_weight>200</bvt_weight>")
        .replace("<load_order>POST_LAUNCHED_VM</load_order>", "<load_order>POST_LAUNCHED</load_order>\n    <lapic_passthrough>yes</lapic_passthrough>")
        .replace("<name>c1</name>", "<nmae>c1</nmae>");
    let c = checks_of(&text);
    let ids: Vec<_> = c.iter().map(|x| x.0).collect();
    for id in ["S010", "S007", "S014", "S011", "S001", "S002"] {
        assert!(ids.contains(&id), "{id} missing from {c:?}");
    }
    let s014 = c.iter().find(|x| x.0 == "S014").unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("POST_LAUNCHED<"))
        .unwrap()
        + 1;
    assert_eq!(s014.1 as usize, line, "{c:?}");
}

#[test]
fn values_are_checked() {
    let bad = |from: &str, to: &str, id: &str| {
        let t = MINIMAL.replacen(from, to, 1);
        let c = checks_of(&t);
        assert!(
            c.iter().any(|x| x.0 == id),
            "{to}: expected {id}, got {c:?}"
        );
    };
    bad(
        "<name>SOS</name>",
        "<name>THIS_NAME_IS_TOO_LONG</name>",
        "S006",
    );
    bad(
        "<name>SOS</name>",
        "<name>SOS</name><bvt_weight>ten</bvt_weight>",
        "S009",
    );
    bad(
        "<io_port>0x9200</io_port>",
        "<io_port>9200</io_port>",
        "S008",
    );
    bad("<VBDF>00:08.0</VBDF>", "<VBDF>00:28.0</VBDF>", "S006");
    bad(
        "<NAME>shm</NAME>",
        "<NAME>shm</NAME><IVSHMEM_SIZE>3</IVSHMEM_SIZE>",
        "S005",
    );
    bad(
        "<NAME>shm</NAME>",
        "<NAME>shm</NAME><IVSHMEM_SIZE>1024</IVSHMEM_SIZE>",
        "S007",
    );
    bad("<vm id=\"1\">", "<vm id=\"one\">", "S012");
    bad("<vm id=\"1\">", "<vm>", "S012");
    bad("<name>POST1</name>", "", "S002");
    // An empty value of a required element is a missing one (its writer would omit it).
    bad(
        "<load_order>POST_LAUNCHED_VM</load_order>",
        "<load_order></load_order>",
        "S002",
    );
    bad("<endpoint><vm_name>SOS</vm_name></endpoint>", "", "S002");
    bad(
        "<hv>",
        "<hv><BUILD_TYPE>debug</BUILD_TYPE><BUILD_TYPE>debug</BUILD_TYPE>",
        "S003",
    );
    bad("<vm id=\"0\">", "<vm id=\"0\" kind=\"x\">", "S013");
    bad(
        "<name>SOS</name>",
        "<name>SOS</name><memory><size>1</size></memory>",
        "S010",
    );
    bad("<name>SOS</name>", "<name>SOS<x/></name>", "S004");
    bad("<name>POST1</name>", "<name>SOS</name>", "S020");
}

#[test]
fn misplaced_element_hint_names_its_parent() {
    let t = MINIMAL.replacen(
        "<name>SOS</name>",
        "<name>SOS</name><pcpu_id>1</pcpu_id>",
        1,
    );
    let f = read(&t).unwrap_err();
    let s001 = f.iter().find(|f| f.check == "S001").unwrap();
    assert!(
        s001.hint.as_deref().unwrap().contains("inside <pcpu>"),
        "{s001}"
    );
}

#[test]
fn toml_reader_matches_xml_and_keeps_positions() {
    let (s, _) = read(MINIMAL).unwrap();
    let toml = to_toml(&s, "x.json").unwrap();
    let doc = toml_to_document(Path::new("t.toml"), &toml).unwrap();
    let (t, _) = read_document(&doc).unwrap();
    assert_eq!(s, t);
    // A span points at the key in the TOML text.
    let loc = t.spans.vm(1, "name").unwrap();
    let line = toml.lines().nth(loc.line as usize - 1).unwrap();
    assert!(line.contains("\"POST1\""), "{line}");

    let bad = toml.replacen(
        "\nname = \"POST1\"",
        "\nname = \"POST1\"\nbvt_weight = 0",
        1,
    );
    let doc = toml_to_document(Path::new("t.toml"), &bad).unwrap();
    let f = read_document(&doc).unwrap_err();
    let finding = f
        .iter()
        .find(|f| f.check == "S007")
        .unwrap_or_else(|| panic!("{}\n{bad}", f.render_plain()));
    let l = finding.location.as_ref().unwrap();
    assert_eq!(
        bad.lines().nth(l.line as usize - 1).unwrap(),
        "bvt_weight = 0"
    );
    assert_eq!(l.column, 14);
}

#[test]
fn toml_syntax_errors_have_positions() {
    let f = toml_to_document(Path::new("t.toml"), "[hv]\nBUILD_TYPE = \n").unwrap_err();
    let x = f.iter().next().unwrap();
    assert_eq!(x.check, "F002");
    assert_eq!(x.location.as_ref().unwrap().line, 2);
    let deep = "a = ".to_string() + &"[".repeat(10_000);
    let f = toml_to_document(Path::new("t.toml"), &deep).unwrap_err();
    let x = f.iter().next().unwrap();
    assert!(x.message.contains("nest deeper"), "{}", x.message);
    assert_eq!(x.location.as_ref().unwrap().column, 4 + 65);
}

#[test]
fn brackets_in_toml_strings_and_comments_are_text() {
    let braces = "{".repeat(100);
    for text in [
        format!("a = \"{braces}\"\n"),
        format!("a = \"\\\"{braces}\"\n"),
        format!("a = '{braces}'\n"),
        format!("a = \"\"\"\nx{braces}\n\"\"\"\n"),
        format!("a = \"\"\"x\"\"{braces}\"\"\"\n"),
        format!("a = '''\n'{braces}\n'''\n"),
        format!("# {braces}\na = 1\n"),
    ] {
        toml_to_document(Path::new("t.toml"), &text)
            .unwrap_or_else(|f| panic!("{}\n{text}", f.render_plain()));
    }
    // After a string closes, brackets count again.
    let deep = format!("a = \"\"\"x\"\"\" {}", "[".repeat(65));
    assert!(toml_to_document(Path::new("t.toml"), &deep).is_err());
}

#[test]
fn spans_locate_elements() {
    let (s, _) = read(MINIMAL).unwrap();
    let l = s
        .spans
        .element("hv/vuart_connections/vuart_connection[1]/endpoint[1]/io_port")
        .unwrap();
    let line = MINIMAL
        .lines()
        .position(|l| l.contains("<io_port>0x9200"))
        .unwrap()
        + 1;
    assert_eq!(l.line as usize, line);
    // Populated elements fall back to their nearest ancestor in the file.
    let p = populate_defaults(&s).unwrap();
    let l = p.spans.vm(1, "memory/size").unwrap();
    let line = MINIMAL
        .lines()
        .position(|l| l.contains("<vm id=\"1\">"))
        .unwrap()
        + 1;
    assert_eq!(l.line as usize, line);
}

#[test]
fn default_memory_size_matches_the_schema_default() {
    assert_eq!(
        super::spec::DEFAULT_MEMORY_MB.to_string(),
        super::spec::DEFAULT_MEMORY_MB_TEXT
    );
}
