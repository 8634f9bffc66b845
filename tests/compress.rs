//! Dense <-> TT (TT-SVD) against a float64 numpy reference (tests/fixtures/tt_svd, made by
//! tools/tt_svd/gen_fixture.py), exact recovery of a table that is TT, and the table planner:
//! TT only where it pays, named errors and warnings, budgets.

mod common;

use ttrec::compress::plan::{
    choose_tables, model_plan, model_plan_at, parse_bytes, parse_compression,
};
use ttrec::compress::tt_svd::{tt_svd_f64, tt_to_dense_f64};
use ttrec::compress::{tt_svd, Budget, RankChoice, Selection};
use ttrec::dlrm::{DlrmConfig, TableKind};
use ttrec::tt::CorePrecision;
use ttrec::tt::{TtOptions, TtParams, TtShape};

fn fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tt_svd/tt_svd_f64.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn usizes(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Relative Frobenius error of `got` against `want`.
fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    let e: f64 = got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum();
    let n: f64 = want.iter().map(|b| b * b).sum();
    (e / n).sqrt()
}

/// Every case of the numpy fixture: the same singular values of every unfolding and ranks,
/// and the error of the f32 cores is the norm of the discarded singular values (Eckart-Young
/// per unfolding), over the padded rows exactly and over the table's rows as numpy finds it.
#[test]
fn tt_svd_matches_the_float64_reference() {
    let doc = fixture();
    assert_eq!(doc["format"], "ttrec-tt-svd-f64-v1");
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let rows = case["rows"].as_u64().unwrap();
        let (p, q) = (usizes(&case["p"]), usizes(&case["q"]));
        let table: Vec<f32> = f64s(&case["table"]).iter().map(|&x| x as f32).collect();
        let choice = match case["tolerance"].as_f64() {
            Some(t) => RankChoice::Tolerance(t),
            None => RankChoice::Fixed(usizes(&case["ranks"])),
        };
        let svd = tt_svd(&table, rows, &p, &q, &choice).unwrap();
        assert_eq!(
            svd.shape.interior_ranks(),
            usizes(&case["kept_ranks"]),
            "{name}: ranks"
        );
        for (k, want) in case["singular_values"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let want = f64s(want);
            let got = &svd.singular_values[k];
            assert_eq!(got.len(), want.len(), "{name}: unfolding {k}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-10 * want[0],
                    "{name}: unfolding {k} singular value {i}: {g} vs numpy {w}"
                );
            }
        }
        for (k, (g, w)) in svd
            .discarded
            .iter()
            .zip(f64s(&case["discarded"]))
            .enumerate()
        {
            assert!(
                (g - w).abs() <= 1e-9 * svd.table_norm,
                "{name}: discarded {k}: {g} vs {w}"
            );
        }
        let bound = svd.predicted_relative_error();
        // Over the padded rows: exactly the discarded singular values' norm (f32 cores).
        let padded_rows: u64 = p.iter().product::<usize>() as u64;
        let padded_shape = TtShape::new(padded_rows, &p, &q, svd.shape.interior_ranks()).unwrap();
        let mut padded = vec![0f64; padded_rows as usize * table.len() / rows as usize];
        for (o, &x) in padded.iter_mut().zip(&table) {
            *o = x as f64;
        }
        let full = tt_to_dense_f64(&padded_shape, &svd.cores).unwrap();
        let padded_err = rel_err(&full, &padded);
        let want_padded = case["padded_relative_error"].as_f64().unwrap();
        assert!(
            (padded_err - bound).abs() < 1e-5,
            "{name}: {padded_err} vs bound {bound}"
        );
        assert!(
            (padded_err - want_padded).abs() < 1e-5,
            "{name}: {padded_err} vs numpy {want_padded}"
        );
        // Over the table's rows, as numpy reconstructs them.
        let approx = tt_to_dense_f64(&svd.shape, &svd.cores).unwrap();
        let err = ttrec::compress::reconstruction_error(&table, &approx, q.iter().product());
        let want = case["relative_error"].as_f64().unwrap();
        assert!(
            (err.relative_frobenius - want).abs() < 1e-5,
            "{name}: {} vs numpy {want}",
            err.relative_frobenius
        );
        assert!(err.relative_frobenius <= bound + 1e-6, "{name}");
    }
}

/// A table that is TT of ranks (3, 4) comes back from TT-SVD at ranks (3, 4) to float
/// rounding, and a tight tolerance finds exactly those ranks.
#[test]
fn a_tt_table_comes_back_at_its_ranks() {
    let shape = TtShape::new(60, &[3, 4, 5], &[2, 2, 2], &[3, 4]).unwrap();
    let cores = common::random_cores(&shape, 7);
    let dense: Vec<f32> = tt_to_dense_f64(&shape, &cores)
        .unwrap()
        .iter()
        .map(|&x| x as f32)
        .collect();
    let max = dense.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
    for choice in [RankChoice::Fixed(vec![3, 4]), RankChoice::Tolerance(1e-5)] {
        let svd = tt_svd(&dense, 60, &[3, 4, 5], &[2, 2, 2], &choice).unwrap();
        assert_eq!(svd.shape.interior_ranks(), [3, 4], "{choice:?}");
        let back = tt_to_dense_f64(&svd.shape, &svd.cores).unwrap();
        let worst = back
            .iter()
            .zip(&dense)
            .map(|(a, &b)| (a - b as f64).abs())
            .fold(0f64, f64::max);
        assert!(
            worst <= 2e-6 * max,
            "{choice:?}: worst {worst} of max {max}"
        );
    }
    // A tolerance that allows the error of rank (1, 1) or so drops ranks.
    let loose = tt_svd(
        &dense,
        60,
        &[3, 4, 5],
        &[2, 2, 2],
        &RankChoice::Tolerance(0.9),
    )
    .unwrap();
    assert!(loose.shape.num_params() < shape.num_params());
    assert!(loose.predicted_relative_error() <= 0.9);
}

/// Asked for more rank than an unfolding holds (4 x 10 holds 4), the cores still have that
/// rank: the extra directions of core 0 are small non-zero values (so training can use them)
/// and core 1's rows for them are zero, so the table is represented exactly.
#[test]
fn ranks_beyond_an_unfolding_are_kept_and_exact() {
    let mut r = common::rng(3);
    let table = common::values(&mut r, 10 * 4);
    let svd = tt_svd(&table, 10, &[2, 5], &[2, 2], &RankChoice::Fixed(vec![6])).unwrap();
    assert_eq!(svd.shape.ranks, [1, 6, 1]);
    let back = tt_to_dense_f64(&svd.shape, &svd.cores).unwrap();
    let err = ttrec::compress::reconstruction_error(&table, &back, 4);
    assert!(err.relative_frobenius < 1e-6, "{err:?}");
    // Core 0 [p0=2, R0 q0 R1 = 1*2*6]: columns 4, 5 of each (row, j) are the filler.
    assert!(svd.cores[0].chunks(6).all(|c| c[4] != 0.0 && c[5] != 0.0));
    // Core 1 [p1=5, 6*2*1]: rank rows 4 and 5 zero.
    assert!(svd.cores[1]
        .chunks(12)
        .all(|c| c[8..12].iter().all(|&x| x == 0.0)));
}

#[test]
fn bad_tables_are_named_errors() {
    let mut table = vec![0.5f32; 12 * 4];
    table[4 * 5 + 2] = f32::NAN;
    let e = tt_svd(&table, 12, &[3, 4], &[2, 2], &RankChoice::Fixed(vec![2])).unwrap_err();
    assert!(e.to_string().contains("row 5, column 2"), "{e}");
    let e = tt_svd(
        &table[..40],
        12,
        &[3, 4],
        &[2, 2],
        &RankChoice::Fixed(vec![2]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("40 values"), "{e}");
    let e = tt_svd_f64(
        &[1.0; 48],
        12,
        &[3, 3],
        &[2, 2],
        &RankChoice::Fixed(vec![2]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("prod(p) = 9"), "{e}");
    let finite = vec![0.5f32; 12 * 4];
    let e = tt_svd(&finite, 12, &[3, 4], &[2, 2], &RankChoice::Tolerance(-1.0)).unwrap_err();
    assert!(e.to_string().contains("tolerance"), "{e}");
}

/// On the GPU tables: from_dense holds the TT-SVD's cores; to_dense multiplies them out.
#[test]
fn tt_params_from_dense_and_back() {
    let gpu = common::gpu();
    let shape = TtShape::new(60, &[3, 4, 5], &[2, 2, 2], &[3, 4]).unwrap();
    let cores = common::random_cores(&shape, 11);
    let dense: Vec<f32> = tt_to_dense_f64(&shape, &cores)
        .unwrap()
        .iter()
        .map(|&x| x as f32)
        .collect();
    let params = TtParams::from_dense(&gpu, &dense, shape.clone(), TtOptions::default()).unwrap();
    let svd = tt_svd(
        &dense,
        60,
        &[3, 4, 5],
        &[2, 2, 2],
        &RankChoice::Fixed(vec![3, 4]),
    )
    .unwrap();
    assert_eq!(params.cores().unwrap(), svd.cores);
    let back = params.to_dense().unwrap();
    let err = ttrec::compress::reconstruction_error(
        &dense,
        &back.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        8,
    );
    assert!(err.relative_frobenius < 1e-6, "{err:?}");
}

fn tt_tables(c: &DlrmConfig) -> Vec<usize> {
    (0..c.tables.len())
        .filter(|&t| matches!(c.tables[t].kind, TableKind::Tt { .. }))
        .collect()
}

/// Kaggle's tables: the default choice is the 7 largest at rank 32, as before (every one of
/// them pays), so the default `train_kaggle` run is unchanged.
#[test]
fn the_default_kaggle_choice_is_the_seven_largest() {
    let base = DlrmConfig::kaggle_dense();
    let (chosen, notes) = choose_tables(&base, Selection::Default, 32).unwrap();
    assert_eq!(chosen, DlrmConfig::kaggle(), "{notes:?}");
    assert!(notes.is_empty(), "{notes:?}");
}

/// Small tables: TT that would not be 2x smaller stays dense by default, with a line naming
/// the tables; asked for explicitly, a table TT grows is kept with a warning; more TT tables
/// than exist is an error.
#[test]
fn tt_only_where_it_pays() {
    let mut base = DlrmConfig::kaggle_dense();
    // The repository's 200 real lines: every table at most 172 rows.
    for (t, table) in base.tables.iter_mut().enumerate() {
        table.rows = 3 + (t as u64 * 7) % 170;
    }
    let (c, notes) = choose_tables(&base, Selection::Default, 32).unwrap();
    assert!(tt_tables(&c).is_empty());
    assert!(
        notes[0].contains("dense where TT would not be 2x smaller"),
        "{notes:?}"
    );
    let (c, notes) = choose_tables(&base, Selection::Largest(2), 32).unwrap();
    assert_eq!(tt_tables(&c).len(), 2);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("TT grows this table"), "{notes:?}");
    let e = choose_tables(&base, Selection::Largest(30), 32).unwrap_err();
    assert!(
        e.to_string()
            .contains("--tt-tables 30: the data has 26 tables"),
        "{e}"
    );
    let (c, notes) = choose_tables(&base, Selection::Threshold(1000), 32).unwrap();
    assert!(tt_tables(&c).is_empty());
    assert!(
        notes[0].contains("no table reaches --tt-threshold"),
        "{notes:?}"
    );
}

#[test]
fn budgets_choose_tables_and_ranks() {
    let base = DlrmConfig::kaggle_dense();
    let dense_bytes = 4 * base.uncompressed_embedding_params();
    for budget in [Budget::Bytes(20_000_000), Budget::Compression(100.0)] {
        let (c, notes) = choose_tables(&base, Selection::Budget(budget), 32).unwrap();
        let bytes = 4 * c.embedding_params().unwrap();
        assert!(
            bytes <= budget.bytes(dense_bytes),
            "{budget:?}: {bytes} {notes:?}"
        );
        for t in tt_tables(&c) {
            let shape = c.tt_shape(t).unwrap().unwrap();
            assert!(ttrec::compress::plan::tt_pays(
                c.tables[t].rows,
                16,
                shape.num_params() as u64
            ));
        }
        assert!(notes[0].contains("TT tables at rank"), "{notes:?}");
    }
    // 20 MB at rank 32 is met without the smaller tables: the highest rank is kept.
    let (c, _) = choose_tables(&base, Selection::Budget(Budget::Bytes(20_000_000)), 32).unwrap();
    assert!(c.tt_shape(2).unwrap().unwrap().ranks == [1, 32, 32, 1]);
    // Room for everything dense: nothing changes.
    let (c, _) = choose_tables(&base, Selection::Budget(Budget::Bytes(dense_bytes)), 32).unwrap();
    assert!(tt_tables(&c).is_empty());
    // Below what rank 1 with every paying table reaches: a named error.
    let e = choose_tables(&base, Selection::Budget(Budget::Bytes(1000)), 32).unwrap_err();
    assert!(e.to_string().contains("cannot be met"), "{e}");
    // The plan's bytes: SGD has no optimizer state, Adagrad one f32 per parameter.
    let plan = model_plan(&DlrmConfig::kaggle(), true, None).unwrap();
    assert_eq!(
        plan.embedding_bytes(),
        4 * DlrmConfig::kaggle().embedding_params().unwrap()
    );
    assert_eq!(plan.tables[2].form, "tt");
    assert_eq!(plan.tables[2].optimizer_bytes, plan.tables[2].param_bytes);
    assert_eq!(plan.mlp_bytes, 4 * DlrmConfig::kaggle().mlp_params());
    assert_eq!(
        model_plan(&DlrmConfig::kaggle(), false, None)
            .unwrap()
            .mlp_optimizer_bytes,
        0
    );
    // With f16 cores (--tt-precision f16) a TT table's parameters take 2 bytes each, its
    // Adagrad state still 4; dense tables and the MLPs are unchanged.
    let f16 = model_plan_at(&DlrmConfig::kaggle(), true, None, CorePrecision::F16).unwrap();
    for (a, b) in plan.tables.iter().zip(&f16.tables) {
        if a.form == "tt" {
            assert_eq!(2 * b.param_bytes, a.param_bytes, "{}", a.name);
            assert_eq!(b.optimizer_bytes, a.optimizer_bytes, "{}", a.name);
        } else {
            assert_eq!(b.param_bytes, a.param_bytes, "{}", a.name);
        }
    }
    assert!(f16.embedding_bytes() < plan.embedding_bytes());
}

#[test]
fn sizes_and_factors_parse() {
    assert_eq!(parse_bytes("20MB"), Ok(20_000_000));
    assert_eq!(parse_bytes("1.5 GiB"), Ok(1_610_612_736));
    assert_eq!(parse_bytes("512"), Ok(512));
    assert!(parse_bytes("20 parsecs").is_err());
    assert!(parse_bytes("0MB").is_err());
    assert_eq!(parse_compression("100x"), Ok(100.0));
    assert_eq!(parse_compression("4"), Ok(4.0));
    assert!(parse_compression("0.5x").is_err());
}
