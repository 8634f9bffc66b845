//! The store's bytes: the header and the row layout, and nothing that touches a file.
//!
//! Layout (little-endian hosts; numbers in the header are little-endian):
//! - header, [`HEADER_LEN`] bytes: magic, format version, header length, the source's size,
//!   mtime and content hash, `max_ind_range`, row count, payload length and checksum, the source's
//!   line and malformed counts, the 26 table sizes, and a checksum of the header itself;
//! - rows: `rows` x [`StoredRow`] (160 bytes: label, 13 dense f32, 26 ids u32), so a batch gathers
//!   each sample from one place;
//! - dictionaries: for each column, its categorical values in id order (u32).
//!
//! The checksums are XXH3-64.

use bytemuck::{Pod, Zeroable};
use xxhash_rust::xxh3::xxh3_64;

use super::StoreState;
use crate::data::{NUM_DENSE, NUM_SPARSE};

pub(crate) const MAGIC: [u8; 8] = *b"TTRECCRT";
/// Format version; bump on any layout change so old stores are rebuilt. Version 2: the header
/// and payload checksums are XXH3-64 (version 1 had a hand-written checksum). Version 3: the
/// header holds a hash of the source's contents (see [`crate::data::sources::content_hash`]).
pub const FORMAT_VERSION: u32 = 3;
/// Bytes of the header before the rows.
pub const HEADER_LEN: usize = 328;
/// Bytes of one [`StoredRow`].
pub(crate) const ROW_BYTES: u64 = std::mem::size_of::<StoredRow>() as u64;

/// One preprocessed sample as stored.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct StoredRow {
    pub label: f32,
    pub dense: [f32; NUM_DENSE],
    pub sparse: [u32; NUM_SPARSE],
}

/// The header's fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Header {
    pub version: u32,
    pub source_size: u64,
    pub source_mtime_ns: i64,
    pub source_hash: u64,
    pub max_ind_range: u64,
    pub rows: u64,
    pub payload_len: u64,
    pub payload_checksum: u64,
    pub source_lines: u64,
    pub malformed: [u64; 4],
    pub table_sizes: [u64; NUM_SPARSE],
}

/// Bytes of the header's fields, before its checksum.
const FIELDS_END: usize = 16 + 8 * 8 + (4 + NUM_SPARSE) * 8;
const _: () = assert!(FIELDS_END + 8 == HEADER_LEN);

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&MAGIC);
        put(&self.version.to_le_bytes());
        put(&(HEADER_LEN as u32).to_le_bytes());
        for v in [
            self.source_size,
            self.source_mtime_ns as u64,
            self.source_hash,
            self.max_ind_range,
            self.rows,
            self.payload_len,
            self.payload_checksum,
            self.source_lines,
        ] {
            put(&v.to_le_bytes());
        }
        for v in self.malformed.iter().chain(&self.table_sizes) {
            put(&v.to_le_bytes());
        }
        debug_assert_eq!(at, FIELDS_END);
        let sum = xxh3_64(&b[..FIELDS_END]);
        b[FIELDS_END..FIELDS_END + 8].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decodes a header, or says why the bytes are not one.
    pub fn decode(b: &[u8]) -> std::result::Result<Header, StoreState> {
        if b.len() < HEADER_LEN {
            return Err(StoreState::Corrupt(format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                b.len()
            )));
        }
        if b[..8] != MAGIC {
            return Err(StoreState::Corrupt(
                "not a ttrec data store (bad magic)".into(),
            ));
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(StoreState::Stale(format!(
                "format version {version}, expected {FORMAT_VERSION}"
            )));
        }
        if u32_at(12) as usize != HEADER_LEN || xxh3_64(&b[..FIELDS_END]) != u64_at(FIELDS_END) {
            return Err(StoreState::Corrupt("header checksum mismatch".into()));
        }
        Ok(Header {
            version,
            source_size: u64_at(16),
            source_mtime_ns: u64_at(24) as i64,
            source_hash: u64_at(32),
            max_ind_range: u64_at(40),
            rows: u64_at(48),
            payload_len: u64_at(56),
            payload_checksum: u64_at(64),
            source_lines: u64_at(72),
            malformed: std::array::from_fn(|i| u64_at(80 + 8 * i)),
            table_sizes: std::array::from_fn(|i| u64_at(112 + 8 * i)),
        })
    }

    /// Payload bytes the row and dictionary counts imply (`None` on overflow).
    pub fn expected_payload_len(&self) -> Option<u64> {
        let dict_len: u64 = self.table_sizes.iter().sum();
        self.rows
            .checked_mul(ROW_BYTES)
            .and_then(|r| r.checked_add(dict_len.checked_mul(4)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_its_checksum_catches_a_flip() {
        let h = Header {
            version: FORMAT_VERSION,
            source_size: 123_456,
            source_mtime_ns: -5,
            source_hash: 0x0123_4567_89ab_cdef,
            max_ind_range: 10_000_000,
            rows: 77,
            payload_len: 77 * ROW_BYTES + 4 * 26,
            payload_checksum: 0xdead_beef,
            source_lines: 80,
            malformed: [1, 0, 2, 0],
            table_sizes: [1; NUM_SPARSE],
        };
        let bytes = h.encode();
        assert_eq!(Header::decode(&bytes), Ok(h.clone()));
        assert_eq!(h.expected_payload_len(), Some(h.payload_len));
        let mut flipped = bytes;
        flipped[40] ^= 1;
        assert!(
            matches!(Header::decode(&flipped), Err(StoreState::Corrupt(w)) if w.contains("header"))
        );
    }
}
