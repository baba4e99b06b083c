//! validate + allocate + generate over ACRN's whole corpus (30 pairs; the two invalid ones
//! stop at validation). One benchmark iteration is the whole corpus; target < 0.35 s (ACRN's
//! Python tools need about 70 s). Before the benchmark, one cold pass prints its wall time and
//! the process's peak resident memory (VmHWM; target < 50 MB).
//!
//! Run: `cargo bench -p acrn-configurator --bench corpus` (corpus at ../shared/acrn-corpus or
//! $ACRN_CORPUS).

use std::path::{Path, PathBuf};
use std::time::Instant;

use acrn_configurator::gen::{self, GenerateOptions};
use criterion::Criterion;

fn corpus_pairs() -> Vec<(PathBuf, PathBuf)> {
    let dir = std::env::var_os("ACRN_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/acrn-corpus"));
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        eprintln!(
            "SKIP: ACRN corpus not found at {} (set ACRN_CORPUS)",
            dir.display()
        );
        return out;
    };
    for d in rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        let board = d.join(format!("{}.xml", d.file_name().unwrap().to_string_lossy()));
        for s in std::fs::read_dir(&d).unwrap().flatten().map(|e| e.path()) {
            if s.extension().is_some_and(|e| e == "xml") && s != board {
                out.push((board.clone(), s));
            }
        }
    }
    out.sort();
    out
}

/// Runs the pipeline over every pair; returns (generated, rejected).
fn pipeline(pairs: &[(PathBuf, PathBuf)]) -> (usize, usize) {
    let opts = GenerateOptions::default();
    let mut ok = 0;
    for (b, s) in pairs {
        if let Ok(files) = gen::generate(b, s, &opts) {
            std::hint::black_box(&files);
            ok += 1;
        }
    }
    (ok, pairs.len() - ok)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let pairs = corpus_pairs();
    if pairs.is_empty() {
        return;
    }
    let t = Instant::now();
    let (ok, rejected) = pipeline(&pairs);
    let cold = t.elapsed();
    println!(
        "corpus: {} pairs, {ok} generated, {rejected} rejected; cold pass {:.1} ms; peak RSS {} KiB",
        pairs.len(),
        cold.as_secs_f64() * 1e3,
        peak_rss_kib().map_or("?".into(), |k| k.to_string())
    );
    let mut c = Criterion::default().configure_from_args().sample_size(20);
    c.bench_function("corpus: validate+allocate+generate, 30 pairs", |b| {
        b.iter(|| pipeline(&pairs))
    });
    // The share of the total spent before allocation (loading, defaults, checks).
    c.bench_function("corpus: validate only, 30 pairs", |b| {
        b.iter(|| {
            for (bp, sp) in &pairs {
                std::hint::black_box(acrn_configurator::validate(bp, sp, &Default::default()));
            }
        })
    });
    c.final_summary();
}
