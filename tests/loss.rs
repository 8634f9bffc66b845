//! Sigmoid + BCE (shaders/loss.wgsl) against its CPU twin: the mean loss, the logit gradient,
//! the correct count, the statistics ring slot, extreme logits, and the probabilities kernel.

mod common;

use common::*;
use ttrec::graph::{Buf, GraphBuilder};
use ttrec::kernels::loss::{record_bce, record_probabilities, StepParams, STATS_PER_STEP};
use ttrec::twin::nn as twin;

#[test]
fn bce_matches_twin_in_its_ring_slot() {
    let gpu = gpu();
    for (batch, ldz) in [(1usize, 4usize), (7, 4), (300, 8), (2048, 4)] {
        let mut r = rng(batch as u64);
        let mut z = vec![0f32; batch * ldz];
        let mut logits = Vec::new();
        for b in 0..batch {
            // Spread of logits including large ones, where a naive log(sigmoid) overflows.
            let v = values(&mut r, 1)[0] * if b % 5 == 0 { 40.0 } else { 3.0 };
            z[b * ldz] = v;
            z[b * ldz + 1] = POISON; // padding must not be read
            logits.push(v as f64);
        }
        let labels: Vec<f32> = (0..batch)
            .map(|b| ((b * 7 + 3) % 4 == 0) as u8 as f32)
            .collect();
        let slot = 3u32;
        let ring = 5usize;
        let z_buf = gpu.storage_from("z", &z);
        let y_buf = gpu.storage_from("y", &labels);
        let dz_buf = gpu.storage_from("dz", &vec![POISON; batch * ldz]);
        let bp = batch.div_ceil(4) * 4;
        let dzt_buf = gpu.storage_from("dz^T", &vec![POISON; ldz * bp]);
        let stats = gpu.storage_from("stats", &vec![POISON; ring * STATS_PER_STEP]);
        let mut g = GraphBuilder::new(&gpu);
        let step = g.input("step", 16);
        record_bce(
            &mut g,
            "bce",
            batch,
            ldz,
            step.clone(),
            Buf::from(&z_buf),
            Buf::from(&y_buf),
            Buf::from(&dz_buf),
            Buf::from(&dzt_buf),
            Buf::from(&stats),
        )
        .unwrap();
        let plan = g.build().unwrap();
        let mut input = plan.new_input();
        input
            .write(&step, &[StepParams { slot, _pad: [0; 3] }])
            .unwrap();
        plan.run_with(&input).unwrap();
        let (loss, dz, correct) = twin::bce(&logits, &to_f64(&labels));
        let got_stats = gpu.read_f32(&stats, 0, ring * STATS_PER_STEP).unwrap();
        let s = slot as usize * STATS_PER_STEP;
        assert_close("loss", &got_stats[s..s + 1], &[loss], 1e-5, 0.0);
        assert_eq!(got_stats[s + 1], correct as f32, "correct count");
        for (i, &v) in got_stats.iter().enumerate() {
            if !(s..s + STATS_PER_STEP).contains(&i) {
                assert_eq!(v, POISON, "stats {i} outside the slot written");
            }
        }
        let got_dz = gpu.read_f32(&dz_buf, 0, batch * ldz).unwrap();
        let want_dz: Vec<f64> = (0..batch * ldz)
            .map(|i| if i % ldz == 0 { dz[i / ldz] } else { 0.0 })
            .collect();
        assert_close("dlogits", &got_dz, &want_dz, 1e-5, 1e-9);
        let got_t = gpu.read_f32(&dzt_buf, 0, ldz * bp).unwrap();
        for c in 0..ldz {
            for b in 0..bp {
                let v = got_t[c * bp + b];
                if b < batch {
                    assert_eq!(
                        v.to_bits(),
                        got_dz[b * ldz + c].to_bits(),
                        "dlogits^T[{c}, {b}]"
                    );
                } else {
                    assert_eq!(v, POISON, "dlogits^T[{c}, {b}] written");
                }
            }
        }
    }
}

#[test]
fn probabilities_match_sigmoid() {
    let gpu = gpu();
    let (batch, ldz) = (130, 4);
    let mut r = rng(9);
    let z: Vec<f32> = values(&mut r, batch * ldz)
        .iter()
        .map(|v| v * 30.0)
        .collect();
    let z_buf = gpu.storage_from("z", &z);
    let p_buf = gpu.storage_from("p", &vec![POISON; batch]);
    run_graph(&gpu, |g| {
        record_probabilities(g, "p", batch, ldz, Buf::from(&z_buf), Buf::from(&p_buf))
    });
    let got = gpu.read_f32(&p_buf, 0, batch).unwrap();
    let want: Vec<f64> = (0..batch)
        .map(|b| twin::sigmoid(z[b * ldz] as f64))
        .collect();
    assert_close("probabilities", &got, &want, 1e-6, 1e-7);
}
