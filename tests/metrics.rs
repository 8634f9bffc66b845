//! Metrics against hand-computed cases and a brute-force pairwise AUC.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ttrec::metrics::{accuracy, evaluate, log_loss, roc_auc, LOG_LOSS_EPS};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn log_loss_by_hand() {
    // -(ln 0.9 + ln 0.8) / 2
    let got = log_loss(&[1.0, 0.0], &[0.9, 0.2]).unwrap();
    assert!((got - 0.164_252_033_486_018).abs() < 1e-7, "{got}");
    // A certain mistake is clamped, not infinite: -ln(1e-7).
    let got = log_loss(&[1.0], &[0.0]).unwrap();
    assert!(close(got, -(LOG_LOSS_EPS.ln())), "{got}");
    assert!(
        log_loss(&[0.0], &[1.5]).is_err(),
        "1.5 is not a probability"
    );
}

#[test]
fn accuracy_by_hand_half_is_negative() {
    // 0.6 -> 1 (right), 0.5 -> 0 (right), 0.4 -> 0 (wrong), 0.1 -> 0 (right).
    let got = accuracy(&[1.0, 0.0, 1.0, 0.0], &[0.6, 0.5, 0.4, 0.1]).unwrap();
    assert!(close(got, 0.75), "{got}");
}

#[test]
fn auc_by_hand_with_and_without_ties() {
    // The classic example: 3 of 4 (positive, negative) pairs ordered right.
    assert!(close(
        roc_auc(&[0.0, 0.0, 1.0, 1.0], &[0.1, 0.4, 0.35, 0.8]).unwrap(),
        0.75
    ));
    // Positive 0.5 ties negative 0.5 (counts 1/2) and beats 0.2; positive 0.9 beats both: 3.5/4.
    assert!(close(
        roc_auc(&[0.0, 1.0, 0.0, 1.0], &[0.5, 0.5, 0.2, 0.9]).unwrap(),
        0.875
    ));
    // All tied: 0.5; perfectly reversed: 0; scores need not be probabilities.
    assert!(close(
        roc_auc(&[0.0, 1.0, 1.0, 0.0], &[3.0; 4]).unwrap(),
        0.5
    ));
    assert!(close(
        roc_auc(&[1.0, 1.0, 0.0], &[-5.0, -4.0, 7.0]).unwrap(),
        0.0
    ));
    // -0.0 and 0.0 are one score.
    assert!(close(roc_auc(&[1.0, 0.0], &[0.0, -0.0]).unwrap(), 0.5));
}

#[test]
fn auc_matches_pairwise_count_on_random_data_with_ties() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for round in 0..20 {
        let n = rng.random_range(2..400);
        let labels: Vec<f32> = (0..n).map(|_| rng.random_bool(0.3) as u8 as f32).collect();
        if labels.iter().all(|&y| y == labels[0]) {
            continue;
        }
        // Few distinct values, so ties are common.
        let levels = rng.random_range(1..20);
        let scores: Vec<f32> = (0..n)
            .map(|_| rng.random_range(0..levels) as f32 / levels as f32)
            .collect();
        let (mut good, mut pairs) = (0.0f64, 0.0f64);
        for i in 0..n {
            for j in 0..n {
                if labels[i] == 1.0 && labels[j] == 0.0 {
                    pairs += 1.0;
                    good += if scores[i] > scores[j] {
                        1.0
                    } else if scores[i] == scores[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        let got = roc_auc(&labels, &scores).unwrap();
        assert!(
            close(got, good / pairs),
            "round {round}: {got} vs {}",
            good / pairs
        );
    }
}

#[test]
fn bad_inputs_are_errors_that_say_why() {
    let msg = |r: ttrec::Result<f64>| r.unwrap_err().to_string();
    assert!(msg(log_loss(&[], &[])).contains("at least one"));
    assert!(msg(accuracy(&[1.0, 0.0], &[0.5])).contains("2 labels but 1 predictions"));
    assert!(msg(roc_auc(&[1.0, 1.0], &[0.2, 0.3])).contains("both classes"));
    assert!(msg(roc_auc(&[1.0, 2.0], &[0.2, 0.3])).contains("label 1 is 2"));
    assert!(msg(log_loss(&[1.0, 0.0], &[0.2, f32::NAN])).contains("prediction 1 is NaN"));
    let e = evaluate(&[1.0, 0.0, 0.0], &[0.9, 0.2, 0.6]).unwrap();
    assert_eq!(e.samples, 3);
    assert!(close(e.roc_auc, 1.0) && close(e.accuracy, 2.0 / 3.0));
}
