//! Criteo files with or without labels: Kaggle's `test.txt` has 39 fields a line (no label).
//! A file whose first line has 39 fields is read as if each line began with a label 0, and its
//! lines count as unlabelled (no metrics over them).

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::data::{CriteoReader, NUM_FIELDS};
use crate::error::{Error, Result};

/// A reader of `path` (plain or gzip) and whether its lines carry labels.
pub(super) fn open(path: &Path) -> Result<(CriteoReader, bool)> {
    let err = |e: std::io::Error| Error::file(path, format!("cannot read: {e}"));
    let file = File::open(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
    let mut raw = BufReader::new(file);
    let gzip = raw.fill_buf().map_err(err)?.starts_with(&[0x1f, 0x8b]);
    let mut lines: Box<dyn BufRead + Send> = if gzip {
        Box::new(BufReader::new(MultiGzDecoder::new(raw)))
    } else {
        Box::new(raw)
    };
    let mut first = Vec::new();
    lines.read_until(b'\n', &mut first).map_err(err)?;
    let labelled = first.split(|&b| b == b'\t').count() != NUM_FIELDS - 1;
    let stream = Cursor::new(first).chain(lines);
    let reader = if labelled {
        CriteoReader::from_read(path, stream)
    } else {
        CriteoReader::from_read(path, WithLabel::new(stream))
    };
    Ok((reader.map_err(err)?, labelled))
}

/// Lines of `inner`, each with `0\t` in front.
struct WithLabel<R> {
    inner: R,
    pending: &'static [u8],
    at_line_start: bool,
}

impl<R> WithLabel<R> {
    fn new(inner: R) -> Self {
        WithLabel {
            inner,
            pending: b"",
            at_line_start: true,
        }
    }
}

impl<R: BufRead> Read for WithLabel<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if !self.pending.is_empty() {
            let n = self.pending.len().min(out.len());
            out[..n].copy_from_slice(&self.pending[..n]);
            self.pending = &self.pending[n..];
            return Ok(n);
        }
        let buf = self.inner.fill_buf()?;
        if buf.is_empty() {
            return Ok(0);
        }
        if self.at_line_start {
            self.at_line_start = false;
            self.pending = b"0\t";
            return self.read(out);
        }
        // Up to the end of the line, so the next read starts the next line's label.
        let end = buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| i + 1);
        let n = end.min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.at_line_start = buf[n - 1] == b'\n';
        self.inner.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_gets_a_label_in_front() {
        let mut s = String::new();
        WithLabel::new(Cursor::new(b"a\tb\n\nc".to_vec()))
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "0\ta\tb\n0\t\n0\tc");
        let mut tiny = WithLabel::new(Cursor::new(b"xy\nz\n".to_vec()));
        let mut out = Vec::new();
        let mut one = [0u8; 1];
        while tiny.read(&mut one).unwrap() == 1 {
            out.push(one[0]);
        }
        assert_eq!(out, b"0\txy\n0\tz\n");
    }
}
