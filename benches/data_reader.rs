//! Reader throughput on a generated Criteo-layout file: `cargo bench --bench data_reader`.
//!
//! Writes `TTREC_BENCH_LINES` (default 1,000,000) synthetic lines to a temp dir, then times the
//! paths from text (parse only; parse + dlrm preprocessing + writing the data store; gzip parse)
//! and the ones from the store (open with checksum check; shuffled batches through the
//! BatchLoader), and
//! the synthetic generator alone. MB/s is always of the raw text, so the rows compare directly.

use std::time::Instant;

use ttrec::data::{
    default_store_path, BatchOptions, CriteoReader, PreprocessConfig, PreprocessedDataset, Split,
    SyntheticCriteo,
};

fn main() -> ttrec::Result<()> {
    let lines: u64 = std::env::var("TTREC_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("ttrec-bench-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&dir, lines);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn row(name: &str, secs: f64, lines: u64, bytes: Option<u64>) {
    let mb_s = bytes.map_or("-".to_string(), |b| format!("{:.1}", b as f64 / secs / 1e6));
    println!(
        "| {name:<48} | {secs:>8.3} | {:>12.0} | {mb_s:>8} |",
        lines as f64 / secs
    );
}

fn run(dir: &std::path::Path, lines: u64) -> ttrec::Result<()> {
    let synth = SyntheticCriteo::new(1, 1.0)?;

    // Synthetic generation alone (one core): the on-the-fly training source.
    let n = 4_000_000u64;
    let t = Instant::now();
    let mut positives = 0.0f64;
    let mut batch = ttrec::data::Batch::with_capacity(4096);
    for k in 0..n / 4096 {
        batch.labels.clear();
        batch.dense.clear();
        batch.sparse.clear();
        synth.fill_batch(k * 4096, 4096, &mut batch);
        positives += batch.labels.iter().map(|&y| y as f64).sum::<f64>();
    }
    let synth_secs = t.elapsed().as_secs_f64();
    let generated = n / 4096 * 4096;

    let plain = dir.join("synthetic.txt");
    let t = Instant::now();
    synth.write_raw(&plain, lines)?;
    let write_secs = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&plain)?.len();
    let gz = dir.join("synthetic.txt.gz");
    synth.write_raw(&gz, lines)?;

    println!(
        "{lines} lines, {:.1} MB of text ({:.0} bytes/line)",
        bytes as f64 / 1e6,
        bytes as f64 / lines as f64
    );
    println!(
        "| {:<48} | {:>8} | {:>12} | {:>8} |",
        "path", "seconds", "lines/s", "MB/s"
    );
    println!("|{:-<50}|{:-<10}|{:-<14}|{:-<10}|", "", "", "", "");
    row(
        "synthetic: generate batches (1 core, samples/s)",
        synth_secs,
        generated,
        None,
    );
    row("synthetic: write raw text", write_secs, lines, Some(bytes));

    let parse = |path: &std::path::Path| -> ttrec::Result<(f64, u64)> {
        let t = Instant::now();
        let mut reader = CriteoReader::open(path)?;
        let mut checksum = 0u64;
        while let Some(s) = reader.next_sample()? {
            checksum = checksum.wrapping_add(s.label as u64 + s.sparse[0].unwrap_or(0) as u64);
        }
        std::hint::black_box(checksum);
        Ok((t.elapsed().as_secs_f64(), reader.stats().valid))
    };
    let (secs, valid) = parse(&plain)?;
    assert_eq!(valid, lines);
    row("from text: parse only", secs, lines, Some(bytes));
    let (secs, _) = parse(&gz)?;
    row(
        "from text: parse only, gzip input",
        secs,
        lines,
        Some(bytes),
    );

    let config = PreprocessConfig::default();
    let store = default_store_path(&plain);
    let t = Instant::now();
    let (data, state) = PreprocessedDataset::open_or_build(&plain, &config)?;
    let build_secs = t.elapsed().as_secs_f64();
    assert!(
        !state.is_valid(),
        "the store should have been built, found {state}"
    );
    row(
        "from text: parse + preprocess + write store",
        build_secs,
        lines,
        Some(bytes),
    );
    drop(data);

    let t = Instant::now();
    let (data, state) = PreprocessedDataset::open_or_build(&plain, &config)?;
    let open_secs = t.elapsed().as_secs_f64();
    assert!(
        state.is_valid(),
        "the store should have been reused, found {state}"
    );
    let mut sum = 0f64;
    for r in data.rows() {
        sum += r.label as f64 + r.dense[0] as f64 + r.sparse[2] as f64;
    }
    std::hint::black_box(sum);
    row(
        "from store: open (verify checksum) + scan rows",
        t.elapsed().as_secs_f64(),
        lines,
        Some(bytes),
    );
    row(
        "from store: open (verify checksum) only",
        open_secs,
        lines,
        Some(bytes),
    );

    let t = Instant::now();
    let options = BatchOptions {
        batch_size: 2048,
        prefetch: 4,
        drop_last: false,
        epoch: 0,
    };
    let mut served = 0u64;
    for split in [Split::Train, Split::Test, Split::Val] {
        for b in data.batches(split, &options)? {
            served += b?.len() as u64;
        }
    }
    assert_eq!(served, lines);
    row(
        "from store: shuffled batches of 2048 (BatchLoader)",
        t.elapsed().as_secs_f64(),
        lines,
        Some(bytes),
    );

    let store_bytes = std::fs::metadata(&store)?.len();
    println!(
        "data store {:.1} MB; synthetic positive rate {:.3}; table sizes seen {:?}",
        store_bytes as f64 / 1e6,
        positives / generated as f64,
        data.table_sizes()
    );
    Ok(())
}
