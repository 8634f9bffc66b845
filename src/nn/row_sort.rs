//! The host's stable sort of a batch's lookups by row, for the embedding group's backward
//! (`nn::embedding`: each distinct row's lookups reduced in order).

/// Sorts (row, position) pairs by row, keeping positions in order within a row: a comparison
/// sort for small batches, two stable 16-bit radix passes (O(n)) for large ones.
pub(crate) fn sort_by_row(v: &mut Vec<(u32, u32)>) {
    if v.len() < 1 << 15 {
        v.sort_unstable();
        return;
    }
    let mut tmp = vec![(0u32, 0u32); v.len()];
    for shift in [0u32, 16] {
        let mut count = vec![0usize; 1 << 16];
        for &(r, _) in v.iter() {
            count[((r >> shift) & 0xffff) as usize] += 1;
        }
        let mut at = 0;
        for c in count.iter_mut() {
            let n = *c;
            *c = at;
            at += n;
        }
        for &e in v.iter() {
            let k = ((e.0 >> shift) & 0xffff) as usize;
            tmp[count[k]] = e;
            count[k] += 1;
        }
        std::mem::swap(v, &mut tmp);
    }
}
