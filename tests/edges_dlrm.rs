//! The DLRM's evaluation path (every reported AUC and log loss comes from it): `Dlrm::predict`
//! and `Dlrm::predict_padded` (the batch padded up to a prepared plan's size) against the
//! model twin's probabilities, after training steps, with both matrix-product variants.

mod common;

use common::twins::dlrm as dtwin;
use common::*;
use rand::Rng;
use ttrec::dlrm::{Dlrm, DlrmBatch, DlrmConfig, DlrmOptions};
use ttrec::kernels::matmul::GemmVariant;

/// Dense and TT tables of odd sizes (two TT groups), MLPs off the kernels' tiles.
fn config() -> DlrmConfig {
    small_dlrm_config(8, false)
}

/// `b` samples with ids over every row.
fn batch(config: &DlrmConfig, b: usize, seed: u64) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let mut r = rng(seed);
    let dense = (0..b * 13).map(|_| r.random_range(0.0..3.0)).collect();
    let sparse = (0..b)
        .flat_map(|_| {
            config
                .tables
                .iter()
                .map(|t| r.random_range(0..t.rows) as u32)
                .collect::<Vec<_>>()
        })
        .collect();
    let labels = (0..b).map(|i| (i % 2) as f32).collect();
    (dense, sparse, labels)
}

/// After three training steps, `predict` of 13 samples and `predict_padded` of 13 and of 1
/// sample (padded to plans of 32 and 64) give the twin's probabilities, sample by sample.
#[test]
fn predict_and_predict_padded_match_the_twin() {
    let config = config();
    for variant in [GemmVariant::Registers, GemmVariant::Tiled] {
        let options = DlrmOptions {
            gemm: Some(variant),
            ..DlrmOptions::default()
        };
        let mut m = Dlrm::new(&gpu(), config.clone(), options).unwrap();
        for s in 0..3 {
            let (dense, sparse, labels) = batch(&config, 16, 20 + s);
            m.train_step(&DlrmBatch {
                dense: &dense,
                sparse: &sparse,
                labels: &labels,
            })
            .unwrap();
        }
        let params = common::parameters_of(&m);
        let (dense, sparse, labels) = batch(&config, 13, 30);
        let want = dtwin::step(
            &common::twins::twin_model(&config),
            &params,
            &dense,
            &sparse,
            &labels,
        )
        .unwrap()
        .probabilities;
        let b = DlrmBatch {
            dense: &dense,
            sparse: &sparse,
            labels: &[],
        };
        let what = format!("{variant:?}");
        assert_close(
            &format!("{what} predict"),
            &m.predict(&b).unwrap(),
            &want,
            2e-5,
            1e-7,
        );
        m.prepare_eval(32).unwrap();
        let padded = m.predict_padded(&b, 32).unwrap();
        assert_eq!(padded.len(), 13, "{what}: one probability per real sample");
        assert_close(
            &format!("{what} predict_padded 13 of 32"),
            &padded,
            &want,
            2e-5,
            1e-7,
        );
        // A batch of one sample (the last one), padded to 64.
        let one = DlrmBatch {
            dense: &dense[12 * 13..],
            sparse: &sparse[12 * 3..],
            labels: &[],
        };
        let p1 = m.predict_padded(&one, 64).unwrap();
        assert_close(
            &format!("{what} predict_padded 1 of 64"),
            &p1,
            &want[12..],
            2e-5,
            1e-7,
        );
        // A batch as large as the plan is not padded.
        let p13 = m.predict_padded(&b, 13).unwrap();
        assert_close(
            &format!("{what} predict_padded 13 of 13"),
            &p13,
            &want,
            2e-5,
            1e-7,
        );
        // Predictions leave the model alone.
        assert!(
            common::parameters_of(&m) == params,
            "{what}: predicting changed the model"
        );
    }
}
