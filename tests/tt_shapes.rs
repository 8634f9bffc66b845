//! `suggested_tt_shapes` / `suggested_dim_shape` against the spec's examples and a brute-force
//! enumeration of set partitions (the reference's algorithm, literally).

mod common;

use common::hang_guard;
use ttrec::tt::shapes::{suggested_dim_shape, suggested_tt_shapes};

#[test]
fn spec_examples() {
    assert_eq!(suggested_tt_shapes(1_000_000, 3, true), vec![100, 100, 100]);
    assert_eq!(
        suggested_tt_shapes(1_000_000, 3, false),
        vec![100, 100, 100]
    );
    assert_eq!(suggested_tt_shapes(10, 3, false), vec![1, 2, 5]);
    assert_eq!(suggested_tt_shapes(64, 3, false), vec![4, 4, 4]);
    assert_eq!(
        suggested_tt_shapes(10_131_227, 3, true),
        vec![200, 220, 250]
    );
    assert_eq!(suggested_dim_shape(16, 3), vec![2, 2, 4]);
    assert_eq!(suggested_dim_shape(64, 3), vec![4, 4, 4]);
}

#[test]
fn d4_is_interleaved() {
    // 2^4 * 3^2 * 5^2 = 3600: the most balanced sorted tuple (5, 8, 9, 10) is interleaved
    // x[..2], x[2..] -> (5, 9, 8, 10).
    assert_eq!(suggested_tt_shapes(3600, 4, false), vec![5, 9, 8, 10]);
    let s = suggested_tt_shapes(1_000_000, 4, false);
    assert_eq!(s.iter().product::<usize>(), 1_000_000);
    assert!(
        s[0] <= s[2] && s[2] <= s[1] && s[1] <= s[3],
        "{s:?} is not (a, c, b, d)"
    );
    assert_eq!(s, vec![25, 40, 25, 40]);
    // Fewer prime factors than cores: padded with 1s.
    assert_eq!(suggested_tt_shapes(6, 4, false), vec![1, 2, 1, 3]);
    assert_eq!(suggested_tt_shapes(7, 2, false), vec![1, 7]);
    assert_eq!(suggested_tt_shapes(1, 3, false), vec![1, 1, 1]);
}

#[test]
fn round_up_prefers_balanced() {
    // 10,131,227 is prime: without round-up it is padded with 1s.
    assert_eq!(
        suggested_tt_shapes(10_131_227, 3, false),
        vec![1, 1, 10_131_227]
    );
    // Round-up never goes below n, and a prime gets rounded.
    let s = suggested_tt_shapes(1_000_003, 3, true);
    assert!(s.iter().product::<usize>() >= 1_000_003);
    assert_eq!(s, vec![100, 100, 101]);
}

#[test]
fn dim_shape_never_changes_dim() {
    for dim in 1..=512usize {
        for d in 2..=4 {
            let q = suggested_dim_shape(dim, d);
            assert_eq!(q.len(), d);
            assert_eq!(q.iter().product::<usize>(), dim, "D={dim} d={d}: {q:?}");
        }
    }
    // 17 is prime: round-up would make it 20 = (2, 2, 5); D must stay 17.
    assert_eq!(suggested_dim_shape(17, 3), vec![1, 1, 17]);
    assert_eq!(suggested_tt_shapes(17, 3, true), vec![2, 2, 5]);
}

/// Shapes for tables of up to 10^9 rows come out valid (d factors whose product covers N). The
/// search must not blow up with N: a hang guard of minutes, not a speed check.
#[test]
fn large_n_gets_valid_shapes() {
    hang_guard(
        "suggested_tt_shapes for N up to 10^9",
        std::time::Duration::from_secs(300),
        || {
            for n in [
                999_999_937u64,
                1_000_000_000,
                735_134_400,
                2u64.pow(29),
                987_654_321,
            ] {
                for d in 2..=4 {
                    let s = suggested_tt_shapes(n, d, true);
                    assert_eq!(s.len(), d);
                    assert!(s.iter().map(|&v| v as u64).product::<u64>() >= n);
                }
            }
        },
    );
}

// ---- brute force: the reference's multiset_partitions + prepr + entropy -------------------------

fn factorize(mut n: u64) -> Vec<u64> {
    let mut out = vec![];
    let mut f = 2;
    while n > 1 {
        while n.is_multiple_of(f) {
            out.push(f);
            n /= f;
        }
        f += 1;
    }
    out
}

fn entropy(x: &[u64]) -> f64 {
    let s: f64 = x.iter().map(|&v| v as f64).sum();
    -x.iter()
        .map(|&v| v as f64 / s)
        .map(|p| p * p.ln())
        .sum::<f64>()
}

/// Every set partition of `elems` into exactly `d` non-empty blocks (restricted-growth strings),
/// as the sorted block products.
fn partition_products(elems: &[u64], d: usize) -> Vec<Vec<u64>> {
    fn rec(
        elems: &[u64],
        d: usize,
        i: usize,
        used: usize,
        blocks: &mut Vec<u64>,
        out: &mut Vec<Vec<u64>>,
    ) {
        if elems.len() - i < d - used {
            return;
        }
        if i == elems.len() {
            let mut x = blocks.clone();
            x.sort_unstable();
            out.push(x);
            return;
        }
        for b in 0..used {
            blocks[b] *= elems[i];
            rec(elems, d, i + 1, used, blocks, out);
            blocks[b] /= elems[i];
        }
        if used < d {
            blocks.push(elems[i]);
            rec(elems, d, i + 1, used + 1, blocks, out);
            blocks.pop();
        }
    }
    let mut out = vec![];
    rec(elems, d, 0, 0, &mut vec![], &mut out);
    out
}

fn brute_auto_shape(n: u64, d: usize) -> Vec<u64> {
    let mut p = factorize(n);
    while p.len() < d {
        p.push(1);
    }
    let mut best: Option<(f64, Vec<u64>)> = None;
    for x in partition_products(&p, d) {
        let h = entropy(&x);
        if best
            .as_ref()
            .is_none_or(|(bh, bx)| h > *bh || (h == *bh && x < *bx))
        {
            best = Some((h, x));
        }
    }
    let x = best.unwrap().1;
    let (xf, xl) = x.split_at(d / 2);
    let mut out = vec![];
    for i in 0..xl.len() {
        if i < xf.len() {
            out.push(xf[i]);
        }
        out.push(xl[i]);
    }
    out
}

#[test]
fn matches_brute_force_partitions() {
    let mut checked = 0;
    for n in (1..=3000u64).chain([4096, 5040, 7560, 9216, 10_000, 12_600, 65_536]) {
        if factorize(n).len() > 12 {
            continue;
        }
        for d in 2..=4 {
            let want: Vec<usize> = brute_auto_shape(n, d)
                .into_iter()
                .map(|v| v as usize)
                .collect();
            assert_eq!(suggested_tt_shapes(n, d, false), want, "n={n} d={d}");
            checked += 1;
        }
    }
    // Round-up against the brute force too, on a few values.
    for n in [97u64, 1234, 2999, 4321] {
        for d in 2..=4 {
            let digits = n.to_string().len() as u32;
            let mut best: Option<(f64, Vec<u64>)> = None;
            for i in 0..digits {
                let m = 10u64.pow(i);
                let s = brute_auto_shape(n.div_ceil(m) * m, d);
                let h = entropy(&s);
                if best.as_ref().is_none_or(|(bh, _)| h > *bh) {
                    best = Some((h, s));
                }
            }
            let want: Vec<usize> = best.unwrap().1.into_iter().map(|v| v as usize).collect();
            assert_eq!(
                suggested_tt_shapes(n, d, true),
                want,
                "round-up n={n} d={d}"
            );
        }
    }
    assert!(checked > 9000);
}

// ---- TtShape::auto: the reference's TTEmbeddingBag(num_embeddings, embedding_dim, tt_ranks) ----

use ttrec::tt::TtShape;

#[test]
fn auto_reproduces_the_spec_examples() {
    // spec/tt-rec.md: 10^6 rows, d = 3 -> (100, 100, 100); D = 64 -> (4, 4, 4).
    let s = TtShape::auto(1_000_000, 64, &[16, 16]).unwrap();
    assert_eq!(s.p, [100, 100, 100]);
    assert_eq!(s.q, [4, 4, 4]);
    assert_eq!(s.ranks, [1, 16, 16, 1]);
    assert_eq!((s.num_embeddings, s.dim()), (1_000_000, 64));
    // 10,131,227 (prime) -> (200, 220, 250), i.e. 11,000,000 rows; D = 16 -> (2, 2, 4).
    let s = TtShape::auto(10_131_227, 16, &[32, 32]).unwrap();
    assert_eq!(s.p, [200, 220, 250]);
    assert_eq!(s.q, [2, 2, 4]);
    assert_eq!(s.padded_rows(), 11_000_000);
    assert_eq!(s.num_embeddings, 10_131_227);
    // 10 -> (1, 2, 5); 64 -> (4, 4, 4).
    assert_eq!(TtShape::auto(10, 16, &[4, 4]).unwrap().p, [1, 2, 5]);
    assert_eq!(TtShape::auto(64, 16, &[4, 4]).unwrap().p, [4, 4, 4]);
}

#[test]
fn auto_takes_d_from_the_ranks_and_agrees_with_the_suggestions() {
    for (n, dim) in [
        (1_000_000u64, 16usize),
        (3600, 48),
        (97, 12),
        (5_000_000, 128),
    ] {
        for ranks in [&[8][..], &[8, 12], &[4, 6, 8]] {
            let d = ranks.len() + 1;
            let s = TtShape::auto(n, dim, ranks).unwrap();
            assert_eq!(s.d(), d);
            assert_eq!(s.p, suggested_tt_shapes(n, d, true), "n={n} d={d}");
            assert_eq!(s.q, suggested_dim_shape(dim, d), "D={dim} d={d}");
            assert_eq!(s.dim(), dim);
            assert!(s.padded_rows() >= n);
            assert_eq!(s.interior_ranks(), ranks);
        }
    }
    // d = 4 interleaves: 1e6 -> (25, 40, 25, 40).
    assert_eq!(
        TtShape::auto(1_000_000, 16, &[8, 8, 8]).unwrap().p,
        [25, 40, 25, 40]
    );
}

#[test]
fn auto_handles_primes_like_the_reference() {
    // A prime N is rounded up (1,000,003 -> 100 x 100 x 101); a one-digit prime cannot be.
    let s = TtShape::auto(1_000_003, 16, &[8, 8]).unwrap();
    assert_eq!(s.p, [100, 100, 101]);
    assert_eq!(TtShape::auto(7, 16, &[8, 8]).unwrap().p, [1, 1, 7]);
    // A prime D keeps D: (1, 1, 17), not the rounded 20 = (2, 2, 5).
    let s = TtShape::auto(1000, 17, &[8, 8]).unwrap();
    assert_eq!(s.q, [1, 1, 17]);
    assert_eq!(s.dim(), 17);
}

#[test]
fn auto_rejects_bad_arguments_by_name() {
    let err = |n: u64, dim: usize, r: &[usize]| TtShape::auto(n, dim, r).unwrap_err().to_string();
    let e = err(1000, 16, &[]);
    assert!(
        e.contains("0 interior ranks give 1 cores") && e.contains("2 to 4"),
        "{e}"
    );
    let e = err(1000, 16, &[8, 8, 8, 8]);
    assert!(e.contains("4 interior ranks give 5 cores"), "{e}");
    let e = err(0, 16, &[8, 8]);
    assert!(e.contains("num_embeddings is 0"), "{e}");
    let e = err(1000, 0, &[8, 8]);
    assert!(e.contains("embedding_dim is 0"), "{e}");
    let e = err(1000, 16, &[8, 0]);
    assert!(e.contains("rank R_2 is 0"), "{e}");
    let e = err((1 << 32) + 1, 16, &[8, 8]);
    assert!(e.contains("4294967297 exceeds 2^32 rows"), "{e}");
    // 2^32 itself fits, though its rounded-up shape would not.
    let rounded = suggested_tt_shapes(1 << 32, 3, true);
    assert!(rounded.iter().map(|&v| v as u64).product::<u64>() > 1 << 32);
    let s = TtShape::auto(1 << 32, 16, &[8, 8]).unwrap();
    assert_eq!(s.padded_rows(), 1 << 32);
}

#[test]
fn suggestions_do_not_panic_at_the_extremes() {
    assert_eq!(suggested_tt_shapes(1000, 0, true), Vec::<usize>::new());
    assert_eq!(suggested_tt_shapes(0, 2, true), vec![1, 1]);
    // ceil(n / 10^19) * 10^19 does not fit a u64: that candidate is skipped.
    let n = 18_000_000_000_000_000_000u64;
    let s = suggested_tt_shapes(n, 2, true);
    assert_eq!(s.len(), 2);
    let rows = s.iter().map(|&v| v as u128).product::<u128>();
    assert!(rows >= n as u128, "{s:?}");
}
