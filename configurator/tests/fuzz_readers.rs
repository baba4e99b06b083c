//! Property tests: the XML reader, the TOML reader and the scenario reader never panic,
//! whatever the input (random bytes, random text, mutations of a real scenario).

use std::path::Path;

use acrn_configurator::scenario::{
    populate_defaults, read_document, to_toml, to_xml, toml_to_document,
};
use acrn_configurator::xml::parse_str;
use proptest::prelude::*;

const SEED: &str = r#"<?xml version="1.0"?>
<acrn-config board="b">
  <hv>
    <BUILD_TYPE>debug</BUILD_TYPE>
    <FEATURES><IVSHMEM><IVSHMEM_REGION><NAME>r</NAME><IVSHMEM_SIZE>2</IVSHMEM_SIZE>
      <IVSHMEM_VMS><IVSHMEM_VM><VM_NAME>A</VM_NAME><VBDF>00:08.0</VBDF></IVSHMEM_VM></IVSHMEM_VMS>
    </IVSHMEM_REGION></IVSHMEM></FEATURES>
    <vuart_connections><vuart_connection><name>c</name><type>legacy</type>
      <endpoint><vm_name>A</vm_name><io_port>0x2F8</io_port></endpoint>
      <endpoint><vm_name>B</vm_name><io_port>0x2F8</io_port></endpoint>
    </vuart_connection></vuart_connections>
  </hv>
  <vm id="0"><load_order>PRE_LAUNCHED_VM</load_order><name>A</name>
    <cpu_affinity><pcpu><pcpu_id>1</pcpu_id></pcpu></cpu_affinity>
    <memory><hpa_region><start_hpa>0x100000000</start_hpa><size_hpa>512</size_hpa></hpa_region></memory>
    <os_config><kern_type>KERNEL_ELF</kern_type><bootargs>a &amp; b</bootargs></os_config>
  </vm>
  <vm id="1"><load_order>SERVICE_VM</load_order><name>B</name><bvt_weight>3</bvt_weight></vm>
</acrn-config>
"#;

/// Runs the whole pipeline on `text`; any panic fails the property.
fn exercise_xml(text: &str) {
    if let Ok(doc) = parse_str(Path::new("f.xml"), text) {
        if let Ok((s, _)) = read_document(&doc) {
            let p = populate_defaults(&s).expect("population of a valid model");
            let x = to_xml(&p).expect("xml output");
            let again = read_document(&parse_str(Path::new("g.xml"), &x).expect("own XML parses"))
                .expect("own XML is valid");
            assert_eq!(again.0, p);
            let _ = to_toml(&p, "s.json").expect("toml output");
        }
    }
}

fn exercise_toml(text: &str) {
    if let Ok(doc) = toml_to_document(Path::new("f.toml"), text) {
        let _ = read_document(&doc);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn xml_reader_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        exercise_xml(&text);
        exercise_toml(&text);
    }

    #[test]
    fn xml_reader_never_panics_on_tag_soup(parts in proptest::collection::vec(
        prop_oneof![
            Just("<acrn-config>"), Just("</acrn-config>"), Just("<hv>"), Just("</hv>"),
            Just("<vm id=\"0\">"), Just("</vm>"), Just("<name>"), Just("</name>"),
            Just("<load_order>SERVICE_VM</load_order>"), Just("<![CDATA[x]]>"), Just("&amp;"),
            Just("&bad;"), Just("<!--c-->"), Just("<a b='1'/>"), Just("text"), Just("\n"),
            Just("<?xml version=\"1.0\"?>"), Just("<"), Just(">"), Just("\u{e9}"),
        ], 0..64)) {
        exercise_xml(&parts.concat());
    }

    #[test]
    fn scenario_reader_never_panics_on_mutations(cut in 0..SEED.len(), len in 0usize..40, insert in "[a-zA-Z0-9<>/&;_ .:\"=-]{0,12}") {
        let mut s = SEED.to_string();
        let start = (0..=cut).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        let end = (start + len).min(s.len());
        let end = (end..=s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
        s.replace_range(start..end, &insert);
        exercise_xml(&s);
    }

    #[test]
    fn toml_reader_never_panics_on_mutations(cut in 0usize..2000, len in 0usize..30, insert in "[a-zA-Z0-9\\[\\]{}=\"., _\n-]{0,12}") {
        let doc = parse_str(Path::new("s.xml"), SEED).unwrap();
        let (s, _) = read_document(&doc).unwrap();
        let mut t = to_toml(&s, "x.json").unwrap();
        let start = cut.min(t.len());
        let end = (start + len).min(t.len());
        t.replace_range(start..end, &insert);
        exercise_toml(&t);
    }
}

#[test]
fn seed_is_valid() {
    let doc = parse_str(Path::new("s.xml"), SEED).unwrap();
    read_document(&doc).unwrap();
    exercise_xml(SEED);
}
