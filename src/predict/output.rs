//! Scores on disk: one probability a line (TSV, the shortest text that reads back to the same
//! f32; `NaN` for a malformed input line), or NumPy's `.npy` (a 1-D little-endian f32 array),
//! chosen by the file's extension. Written atomically.

use std::io::Write;
use std::path::Path;

use crate::error::Result;

/// The bytes of a `.npy` file (format 1.0) holding `values` as a 1-D `<f4` array.
pub fn npy_bytes(values: &[f32]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        values.len()
    );
    // Magic (6) + version (2) + header length (2) + header, padded with spaces and ended by a
    // newline to a multiple of 64 bytes.
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// One probability a line.
pub fn tsv_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 * values.len());
    for v in values {
        writeln!(out, "{v}").expect("writing to memory");
    }
    out
}

/// Writes `values` to `path` (`.npy`: NumPy, anything else: TSV) atomically, or as TSV to
/// stdout when there is no path.
pub fn write_scores(path: Option<&Path>, values: &[f32]) -> Result<()> {
    match path {
        Some(p) if p.extension().is_some_and(|e| e == "npy") => {
            crate::io::write_atomic(p, &npy_bytes(values))
        }
        Some(p) => crate::io::write_atomic(p, &tsv_bytes(values)),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&tsv_bytes(values))?;
            stdout.flush()?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_has_numpys_header_and_the_values() {
        let b = npy_bytes(&[0.25, f32::NAN, 1.0]);
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(
            header.contains("'shape': (3,)") && header.ends_with('\n'),
            "{header}"
        );
        let vals: Vec<f32> = b[10 + hlen..]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(vals[0], 0.25);
        assert!(vals[1].is_nan());
        assert_eq!(tsv_bytes(&[0.1, f32::NAN]), b"0.1\nNaN\n");
    }
}
