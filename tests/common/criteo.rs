//! Criteo-format text the tests write themselves, so they need nothing outside the repository.
//!
//! - [`sample_text`]: 200 valid lines shaped like the head of Criteo Kaggle's `train.txt`
//!   (per-column missing rates and value ranges alike), generated from a fixed seed. The facts the
//!   tests rely on are built in on purpose and checked by `tests/data_sample.rs`: 44 positives
//!   (rate 0.22), line 1 is `0 | 1 1 5 0 1382 4 15 2 181 1 2 _ 2 | C1 68fd1e64 ... C22 empty`,
//!   C9 takes exactly 2 values and is never empty, C22 is empty on 168 lines.
//! - The valid oddities the reader handles occur in the sample: empty integer and categorical
//!   fields, negative and 19-digit integers, leading zeros, hex with leading zeros, upper-case and
//!   short hex, lines ending in empty trailing fields.
//! - [`odd_lines`]: one line per oddity the reader must accept or reject (CRLF, no final newline,
//!   too few or too many fields, bad labels, integers and hex, blank lines), each with what the
//!   reader must make of it.
//!
//! A real Criteo file is checked too when `TTREC_CRITEO_SAMPLE=path` is set
//! (`tests/data_sample.rs`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ttrec::data::MalformedKind;

/// Lines of [`sample_text`].
pub const SAMPLE_LINES: usize = 200;
/// Positive labels in [`sample_text`].
pub const SAMPLE_POSITIVES: usize = 44;
/// Lines of [`sample_text`] whose C22 is empty.
pub const SAMPLE_C22_EMPTY: usize = 168;

/// Line 1's integer features I1..I13 (`None` = empty).
pub const FIRST_DENSE: [Option<i64>; 13] = [
    Some(1),
    Some(1),
    Some(5),
    Some(0),
    Some(1382),
    Some(4),
    Some(15),
    Some(2),
    Some(181),
    Some(1),
    Some(2),
    None,
    Some(2),
];
/// Line 1's C1.
pub const FIRST_C1: u32 = 0x68fd_1e64;

/// Per integer column: (chance of being empty, largest value).
const DENSE_SHAPE: [(f64, i64); 13] = [
    (0.44, 88),
    (0.0, 3295),
    (0.28, 632),
    (0.21, 75),
    (0.035, 681_386),
    (0.22, 2794),
    (0.05, 218),
    (0.0, 49),
    (0.05, 1306),
    (0.44, 3),
    (0.05, 17),
    (0.76, 98),
    (0.21, 81),
];

/// Per categorical column: the number of distinct values it draws from.
const SPARSE_VOCAB: [usize; 26] = [
    24, 90, 170, 150, 11, 5, 200, 21, 2, 140, 180, 170, 170, 11, 170, 160, 9, 130, 45, 3, 170, 4,
    10, 110, 14, 80,
];
/// Columns (0-based C index) empty together on about 5% of the lines, like Kaggle's head.
const RARELY_EMPTY: [usize; 6] = [2, 3, 11, 15, 20, 23];
/// Columns empty together on about half of the lines; C25 and C26 end the line, so those lines
/// end in empty trailing fields.
const HALF_EMPTY: [usize; 4] = [18, 19, 24, 25];

/// The 200-line sample, `\n`-terminated. The same text on every call.
pub fn sample_text() -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(0x7e57_c817);
    let vocab: Vec<Vec<u32>> = SPARSE_VOCAB
        .iter()
        .map(|&n| (0..n).map(|_| rng.random()).collect())
        .collect();
    // Exact counts the tests assert: positives and C22's non-empty lines, never on line 1.
    let positives = pick(&mut rng, SAMPLE_POSITIVES, &[]);
    let c22_present = pick(
        &mut rng,
        SAMPLE_LINES - SAMPLE_C22_EMPTY,
        &[TRAILING_EMPTY_LINE],
    );
    let mut out = String::new();
    for line in 0..SAMPLE_LINES {
        let mut fields: Vec<String> = Vec::with_capacity(40);
        fields.push(if positives.contains(&line) { "1" } else { "0" }.to_string());
        for (j, &(p_empty, max)) in DENSE_SHAPE.iter().enumerate() {
            let v = if line == 0 {
                FIRST_DENSE[j]
            } else if rng.random_bool(p_empty) {
                None
            } else if j == 1 && rng.random_bool(0.13) {
                Some(-rng.random_range(1..=3i64))
            } else {
                // Log-uniform in [0, max]: mostly small, a few large, as in the real columns.
                Some(((max as f64 + 1.0).powf(rng.random::<f64>()) - 1.0).floor() as i64)
            };
            fields.push(v.map_or(String::new(), |v| v.to_string()));
        }
        let rarely = line > 0 && rng.random_bool(0.05);
        // Not on the last line: it ends in a value, so trimming the text's end trims only its
        // newline.
        let half = line > 0 && line + 1 < SAMPLE_LINES && rng.random_bool(0.5);
        for (c, values) in vocab.iter().enumerate() {
            let empty = (rarely && RARELY_EMPTY.contains(&c))
                || (half && HALF_EMPTY.contains(&c))
                || (c == 5 && rng.random_bool(0.13))
                || (c == 21 && !c22_present.contains(&line));
            let v = match (line, c) {
                _ if empty => None,
                (0, 0) => Some(FIRST_C1),
                // C9 takes both of its values in the first two lines.
                (0 | 1, 8) => Some(values[line]),
                _ => {
                    // Skewed towards the first values, as categorical columns are.
                    let u: f64 = rng.random();
                    Some(values[((u * u) * values.len() as f64) as usize])
                }
            };
            fields.push(v.map_or(String::new(), |v| format!("{v:08x}")));
        }
        add_valid_oddities(line, &mut fields);
        out.push_str(&fields.join("\t"));
        out.push('\n');
    }
    out
}

/// `n` distinct line indices in 1..SAMPLE_LINES, none of `except`.
fn pick(rng: &mut ChaCha8Rng, n: usize, except: &[usize]) -> Vec<usize> {
    let mut lines: Vec<usize> = (1..SAMPLE_LINES).filter(|l| !except.contains(l)).collect();
    lines.shuffle(rng);
    lines.truncate(n);
    lines
}

/// The line (0-based) whose C19..C26 are all empty; its C22 is counted among the empty ones.
const TRAILING_EMPTY_LINE: usize = 29;

/// Valid but unusual spellings on a few fixed lines (0-based), so every test over the sample
/// reads them. Field 0 is the label, 1..=13 are I1..I13, 14..=39 are C1..C26.
fn add_valid_oddities(line: usize, f: &mut [String]) {
    match line {
        3 => f[5] = i64::MAX.to_string(), // I5: the largest 64-bit integer
        5 => f[3] = "007".into(),         // I3: leading zeros
        7 => f[2] = "-0".into(),          // I2: negative zero
        11 => f[14 + 3] = "0000ab1f".into(), // C4: hex with leading zeros
        13 => f[14 + 6] = "9C3E0B1D".into(), // C7: upper-case hex
        17 => f[14 + 10] = "1a2b".into(), // C11: short hex
        19 => f[14 + 12] = "ffffffff".into(), // C13: the largest 32-bit value
        23 => f[1..14].iter_mut().for_each(|v| v.clear()), // every integer empty
        // C19..C26 empty: the line ends in 8 tabs.
        TRAILING_EMPTY_LINE => f[14 + 18..].iter_mut().for_each(|v| v.clear()),
        _ => {}
    }
}

/// The sample written once per test process (under Cargo's scratch directory for tests), as a
/// path string for APIs and command lines.
pub fn sample_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join("criteo-sample-200.txt");
        write_via_rename(&path, sample_text().as_bytes());
        path.to_str().expect("a UTF-8 scratch path").to_string()
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename, so test processes writing the
/// same file at once never see a half-written one.
fn write_via_rename(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = PathBuf::from(format!("{}.{}.tmp", path.display(), std::process::id()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// What the reader must make of an [`OddLine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A sample, equal to the naive parse of its fields.
    Valid,
    /// Skipped as this kind; the 0-based field named, if any.
    Malformed(MalformedKind, Option<usize>),
}

/// One line with an oddity.
#[derive(Debug, Clone)]
pub struct OddLine {
    pub what: &'static str,
    /// The line with its line end (none for the last one).
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

/// Every oddity the reader handles, one per line, built on the sample's lines; read in order they
/// make one input whose last line has no final newline.
pub fn odd_lines() -> Vec<OddLine> {
    use Expect::*;
    use MalformedKind::*;
    let text = sample_text();
    let base: Vec<Vec<String>> = text
        .lines()
        .take(40)
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    let with = |i: usize, field: usize, v: &str| {
        let mut f = base[i].clone();
        f[field] = v.to_string();
        f.join("\t")
    };
    let line = |what, s: String, eol: &str, expect| OddLine {
        what,
        bytes: format!("{s}{eol}").into_bytes(),
        expect,
    };
    let mut fewer = base[6].clone();
    fewer.truncate(37);
    vec![
        line("a plain line", base[0].join("\t"), "\n", Valid),
        line("CRLF line end", base[1].join("\t"), "\r\n", Valid),
        line(
            "every feature empty",
            format!("1{}", "\t".repeat(39)),
            "\n",
            Valid,
        ),
        line("negative integers", with(2, 2, "-3"), "\n", Valid),
        line(
            "most negative integer",
            with(3, 4, "-9223372036854775807"),
            "\n",
            Valid,
        ),
        line("one-digit hex", with(4, 14, "0"), "\n", Valid),
        line("leading zeros", with(5, 1, "0000042"), "\r\n", Valid),
        line(
            "37 fields: trailing fields missing",
            fewer.join("\t"),
            "\n",
            Malformed(FieldCount, None),
        ),
        line(
            "39 fields",
            base[7][..39].join("\t"),
            "\n",
            Malformed(FieldCount, None),
        ),
        line(
            "41 fields: an extra value",
            format!("{}\textra", base[8].join("\t")),
            "\n",
            Malformed(FieldCount, None),
        ),
        line(
            "41 fields: a trailing tab",
            format!("{}\t", base[9].join("\t")),
            "\r\n",
            Malformed(FieldCount, None),
        ),
        line(
            "blank line",
            String::new(),
            "\n",
            Malformed(FieldCount, None),
        ),
        line(
            "only CR",
            String::new(),
            "\r\n",
            Malformed(FieldCount, None),
        ),
        line(
            "commas, not tabs",
            base[10].join(","),
            "\n",
            Malformed(FieldCount, None),
        ),
        line(
            "label 2",
            with(11, 0, "2"),
            "\n",
            Malformed(BadLabel, Some(0)),
        ),
        line(
            "empty label",
            with(12, 0, ""),
            "\n",
            Malformed(BadLabel, Some(0)),
        ),
        line(
            "label 1.0",
            with(13, 0, "1.0"),
            "\n",
            Malformed(BadLabel, Some(0)),
        ),
        line(
            "label with a space",
            with(14, 0, " 1"),
            "\n",
            Malformed(BadLabel, Some(0)),
        ),
        line(
            "decimal integer",
            with(15, 3, "1.5"),
            "\n",
            Malformed(BadInteger, Some(3)),
        ),
        line(
            "plus sign",
            with(16, 1, "+1"),
            "\n",
            Malformed(BadInteger, Some(1)),
        ),
        line(
            "exponent",
            with(17, 5, "1e3"),
            "\n",
            Malformed(BadInteger, Some(5)),
        ),
        line(
            "lone minus",
            with(18, 2, "-"),
            "\n",
            Malformed(BadInteger, Some(2)),
        ),
        line(
            "integer overflow",
            with(19, 13, "9223372036854775808"),
            "\n",
            Malformed(BadInteger, Some(13)),
        ),
        line(
            "9 hex digits",
            with(20, 39, "123456789"),
            "\n",
            Malformed(BadHex, Some(39)),
        ),
        line(
            "0x prefix",
            with(21, 14, "0x12"),
            "\n",
            Malformed(BadHex, Some(14)),
        ),
        line(
            "not hex",
            with(22, 20, "g0"),
            "\n",
            Malformed(BadHex, Some(20)),
        ),
        line(
            "negative hex",
            with(24, 30, "-1"),
            "\n",
            Malformed(BadHex, Some(30)),
        ),
        line("valid after the bad ones", base[25].join("\t"), "\n", Valid),
        line("no final newline", base[26].join("\t"), "", Valid),
    ]
}

/// Flips the first line's label of the Criteo file at `path` in place and puts its modification
/// time back: the same size and mtime, other contents. Returns the new label.
pub fn flip_first_label_keeping_size_and_mtime(path: &Path) -> f32 {
    let meta = std::fs::metadata(path).unwrap();
    let mtime = meta.modified().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    bytes[0] = if bytes[0] == b'0' { b'1' } else { b'0' };
    std::fs::write(path, &bytes).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let after = std::fs::metadata(path).unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (meta.len(), mtime)
    );
    if bytes[0] == b'1' {
        1.0
    } else {
        0.0
    }
}
