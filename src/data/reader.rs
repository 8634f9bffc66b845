//! Streaming reader of the raw Criteo layout: `label \t I1..I13 \t C1..C26`, empty = missing.
//!
//! Works on bytes (no UTF-8 validation, one reused line buffer), so memory stays bounded and the
//! parse is not the bottleneck. Malformed lines are skipped and counted; a file where they are
//! the majority is an error, because it is almost certainly not a Criteo file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::{column_name, NUM_DENSE, NUM_FIELDS, NUM_SPARSE};
use crate::{Error, Result};

/// How many malformed lines of each kind are kept as examples.
pub const MALFORMED_EXAMPLES: usize = 5;

/// A reader that counts the bytes it delivers (for progress over the file's size, which for a gzip
/// file is the compressed size).
pub(crate) struct Counting<R> {
    pub(crate) inner: R,
    pub(crate) count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// One valid raw sample, before preprocessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSample {
    /// 1-based line number in the source.
    pub line: u64,
    /// 0 or 1.
    pub label: u8,
    /// I1..I13; `None` when the field is empty.
    pub dense: [Option<i64>; NUM_DENSE],
    /// C1..C26 as parsed from hex; `None` when the field is empty.
    pub sparse: [Option<u32>; NUM_SPARSE],
}

/// Why a line was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MalformedKind {
    /// Not exactly 40 tab-separated fields.
    FieldCount,
    /// An integer feature that is not a (64-bit) integer.
    BadInteger,
    /// A categorical feature that is not 1 to 8 hex digits.
    BadHex,
    /// A label other than `0` or `1`.
    BadLabel,
}

impl MalformedKind {
    /// All kinds, in the order of [`ReadStats::malformed`].
    pub const ALL: [MalformedKind; 4] = [
        MalformedKind::FieldCount,
        MalformedKind::BadInteger,
        MalformedKind::BadHex,
        MalformedKind::BadLabel,
    ];

    /// Stable snake_case name, used in messages and `--json` output.
    pub fn name(self) -> &'static str {
        match self {
            MalformedKind::FieldCount => "field_count",
            MalformedKind::BadInteger => "bad_integer",
            MalformedKind::BadHex => "bad_hex",
            MalformedKind::BadLabel => "bad_label",
        }
    }

    /// Position of this kind in per-kind count arrays (`ReadStats::malformed`, `ALL`).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One malformed line: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// 1-based line number.
    pub line: u64,
    pub kind: MalformedKind,
    /// 0-based field index (see [`column_name`]); `None` for a wrong field count.
    pub column: Option<usize>,
    /// The offending value (lossy UTF-8, truncated), the field count found, or why the line was
    /// not split into fields at all (too long).
    pub value: String,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.column {
            Some(c) => write!(
                f,
                "line {} column {} ({}): {:?}",
                self.line,
                c + 1,
                column_name(c),
                self.value
            ),
            None if self.value.parse::<usize>().is_ok() => write!(
                f,
                "line {}: {} fields, expected {NUM_FIELDS}",
                self.line, self.value
            ),
            None => write!(f, "line {}: {}", self.line, self.value),
        }
    }
}

/// Counts of what a read has seen so far.
#[derive(Debug, Clone, Default)]
pub struct ReadStats {
    /// Lines seen (valid + malformed).
    pub lines: u64,
    /// Valid samples returned.
    pub valid: u64,
    /// Malformed lines per kind, indexed like [`MalformedKind::ALL`].
    pub malformed: [u64; 4],
    /// The first [`MALFORMED_EXAMPLES`] malformed lines of each kind.
    pub examples: [Vec<Malformed>; 4],
    /// Decompressed bytes consumed, line ends included.
    pub bytes: u64,
}

impl ReadStats {
    /// Malformed lines of all kinds.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }

    /// Malformed lines of `kind`.
    pub fn count(&self, kind: MalformedKind) -> u64 {
        self.malformed[kind.index()]
    }

    /// The first malformed lines of `kind`.
    pub fn examples_of(&self, kind: MalformedKind) -> &[Malformed] {
        &self.examples[kind.index()]
    }

    fn record(&mut self, m: Malformed) {
        let k = m.kind.index();
        self.malformed[k] += 1;
        if self.examples[k].len() < MALFORMED_EXAMPLES {
            self.examples[k].push(m);
        }
    }

    /// One line per kind that occurred: count, first line numbers and the first example.
    pub fn malformed_summary(&self) -> String {
        let mut parts = Vec::new();
        for kind in MalformedKind::ALL {
            let n = self.count(kind);
            if n == 0 {
                continue;
            }
            let ex = self.examples_of(kind);
            let lines: Vec<String> = ex.iter().map(|m| m.line.to_string()).collect();
            parts.push(format!(
                "{}: {n} (first at lines {}; {})",
                kind.name(),
                lines.join(", "),
                ex[0]
            ));
        }
        parts.join("; ")
    }
}

/// Streaming reader of one Criteo file. Iterate it for `Result<RawSample>`; malformed lines are
/// skipped and counted in [`stats`](Self::stats). When the input ends with more malformed than
/// valid lines, the last item is an error naming the counts.
pub struct CriteoReader {
    path: PathBuf,
    input: Box<dyn BufRead + Send>,
    line_buf: Vec<u8>,
    stats: ReadStats,
    done: bool,
}

impl std::fmt::Debug for CriteoReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriteoReader")
            .field("path", &self.path)
            .field("stats", &self.stats)
            .finish()
    }
}

const READ_BUFFER: usize = 1 << 20;

impl CriteoReader {
    /// Opens a plain or gzip file (recognised by its magic bytes, not its name).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
        Self::from_read(path, file).map_err(|e| Error::file(path, format!("cannot read: {e}")))
    }

    /// Reads from any byte stream (plain or gzip); `name` appears in errors.
    pub fn from_read(
        name: impl AsRef<Path>,
        read: impl Read + Send + 'static,
    ) -> std::io::Result<Self> {
        let mut buffered = BufReader::with_capacity(READ_BUFFER, read);
        let head = buffered.fill_buf()?;
        let gzip = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
        let input: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(
                READ_BUFFER,
                MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        Ok(CriteoReader {
            path: name.as_ref().to_path_buf(),
            input,
            line_buf: Vec::with_capacity(1024),
            stats: ReadStats::default(),
            done: false,
        })
    }

    /// The source's name, as given to `open`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What has been read so far.
    pub fn stats(&self) -> &ReadStats {
        &self.stats
    }

    /// The next valid sample, `Ok(None)` at the end of the input.
    pub fn next_sample(&mut self) -> Result<Option<RawSample>> {
        if self.done {
            return Ok(None);
        }
        loop {
            let (n, too_long) =
                read_line_bounded(&mut self.input, &mut self.line_buf).map_err(|e| {
                    Error::file(
                        &self.path,
                        format!("read error after line {}: {e}", self.stats.lines),
                    )
                })?;
            if n == 0 {
                self.done = true;
                return self.check_mostly_malformed().map(|()| None);
            }
            self.stats.bytes += n as u64;
            self.stats.lines += 1;
            let line_no = self.stats.lines;
            if too_long {
                self.stats.record(Malformed {
                    line: line_no,
                    kind: MalformedKind::FieldCount,
                    column: None,
                    value: format!("{n} bytes, longer than the {MAX_LINE}-byte limit"),
                });
                continue;
            }
            match parse_line(&self.line_buf, line_no) {
                Ok(sample) => {
                    self.stats.valid += 1;
                    return Ok(Some(sample));
                }
                Err(m) => self.stats.record(m),
            }
        }
    }

    fn check_mostly_malformed(&self) -> Result<()> {
        let bad = self.stats.malformed_total();
        if bad > self.stats.valid {
            return Err(Error::file(
                &self.path,
                format!(
                    "not a Criteo file: {bad} of {} lines are malformed ({})",
                    self.stats.lines,
                    self.stats.malformed_summary()
                ),
            ));
        }
        Ok(())
    }
}

impl Iterator for CriteoReader {
    type Item = Result<RawSample>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_sample() {
            Ok(Some(s)) => Some(Ok(s)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Longest line kept: real lines are about 250 bytes; a longer one (a binary file, a missing
/// newline) is skipped as malformed without being held in memory.
pub const MAX_LINE: usize = 64 * 1024;

/// Reads one line into `buf` (cleared first), keeping at most [`MAX_LINE`] bytes; returns the bytes
/// consumed (0 at the end) and whether the line was longer than that.
fn read_line_bounded(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    buf.clear();
    // The common case through std's memchr-based read_until, capped one byte past the limit.
    let mut consumed = input.take(MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if buf.len() <= MAX_LINE || buf.last() == Some(&b'\n') {
        return Ok((consumed, false));
    }
    // Too long: drop the rest of the line without keeping it.
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((consumed, true));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        input.consume(take);
        consumed += take;
        if done {
            return Ok((consumed, true));
        }
    }
}

fn malformed(line: u64, kind: MalformedKind, column: usize, value: &[u8]) -> Malformed {
    let mut value = String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned();
    if value.len() >= 64 {
        value.push('…');
    }
    Malformed {
        line,
        kind,
        column: Some(column),
        value,
    }
}

/// Parses one line (with or without its `\n` / `\r\n`); `line_no` is 1-based.
pub fn parse_line(line: &[u8], line_no: u64) -> std::result::Result<RawSample, Malformed> {
    let mut line = line;
    if let [rest @ .., b'\n'] = line {
        line = rest;
    }
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    let tabs = line.iter().filter(|&&b| b == b'\t').count();
    if tabs + 1 != NUM_FIELDS {
        return Err(Malformed {
            line: line_no,
            kind: MalformedKind::FieldCount,
            column: None,
            value: (tabs + 1).to_string(),
        });
    }
    let mut sample = RawSample {
        line: line_no,
        label: 0,
        dense: [None; NUM_DENSE],
        sparse: [None; NUM_SPARSE],
    };
    for (i, field) in line.split(|&b| b == b'\t').enumerate() {
        match i {
            0 => {
                sample.label = match field {
                    b"0" => 0,
                    b"1" => 1,
                    _ => return Err(malformed(line_no, MalformedKind::BadLabel, 0, field)),
                }
            }
            1..=NUM_DENSE => {
                if !field.is_empty() {
                    sample.dense[i - 1] =
                        Some(parse_int(field).ok_or_else(|| {
                            malformed(line_no, MalformedKind::BadInteger, i, field)
                        })?);
                }
            }
            _ => {
                if !field.is_empty() {
                    sample.sparse[i - 1 - NUM_DENSE] = Some(
                        parse_hex(field)
                            .ok_or_else(|| malformed(line_no, MalformedKind::BadHex, i, field))?,
                    );
                }
            }
        }
    }
    Ok(sample)
}

/// A decimal integer with an optional leading `-`; `None` on anything else or on overflow.
fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as i64)?;
    }
    Some(if neg { -v } else { v })
}

/// 1 to 8 hex digits (either case) as a 32-bit value.
fn parse_hex(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 8 {
        return None;
    }
    let mut v: u32 = 0;
    for &b in s {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u32;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_hex() {
        assert_eq!(parse_int(b"-3"), Some(-3));
        assert_eq!(parse_int(b"1382"), Some(1382));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"9223372036854775808"), None);
        for bad in [&b"-"[..], b"1.5", b"+1", b" 1", b"1e3", b"x"] {
            assert_eq!(parse_int(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_hex(b"68fd1e64"), Some(0x68fd1e64));
        assert_eq!(parse_hex(b"FFFFFFFF"), Some(u32::MAX));
        assert_eq!(parse_hex(b"0"), Some(0));
        for bad in [&b"123456789"[..], b"g0", b"-1", b"0x1"] {
            assert_eq!(parse_hex(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
