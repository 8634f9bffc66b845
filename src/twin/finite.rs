//! CPU twin of `shaders/finite.wgsl`: the code a slot's non-finite word ends with after the
//! checks of a step.

/// Whether `v` is NaN or infinite (all exponent bits set, as the shader tests it).
pub fn non_finite(v: f32) -> bool {
    v.to_bits() & 0x7f80_0000 == 0x7f80_0000
}

/// The word after span checks of `regions` (values, code): the largest code of a region with a
/// non-finite value, 0 if none.
pub fn span_word(regions: &[(&[f32], u32)]) -> u32 {
    regions
        .iter()
        .filter(|(v, _)| v.iter().any(|&x| non_finite(x)))
        .map(|(_, c)| *c)
        .max()
        .unwrap_or(0)
}

/// The word after the rows check of a shard of `weight` ([rows, dim], group rows from `lo`)
/// with `code`: the rows named by the non-empty segments of `segs` (`segs[2u]` start,
/// `segs[2u + 1]` row, `segs[2u + 2]` the next start), those in the shard.
pub fn rows_word(
    weight: &[f32],
    dim: usize,
    lo: usize,
    segs: &[u32],
    segments: usize,
    code: u32,
) -> u32 {
    let rows = weight.len() / dim;
    let bad = (0..segments).any(|u| {
        let row = segs[2 * u + 1] as usize;
        segs[2 * u] < segs[2 * u + 2]
            && row >= lo
            && row - lo < rows
            && weight[(row - lo) * dim..(row - lo + 1) * dim]
                .iter()
                .any(|&x| non_finite(x))
    });
    if bad {
        code
    } else {
        0
    }
}
