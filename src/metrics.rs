//! Evaluation metrics: log loss, accuracy, exact ROC AUC.
//!
//! All take labels in {0, 1} and predicted probabilities, over a whole evaluation set, computed in
//! f64. Empty inputs, length mismatches, non-binary labels and non-finite predictions are errors,
//! not NaNs, so a broken evaluation cannot pass for a bad model.

use crate::{Error, Result};

/// Predictions are clamped to `[EPS, 1 - EPS]` in the log loss, so one confident mistake gives a
/// large finite loss instead of infinity (as sklearn and PyTorch's BCELoss do).
pub const LOG_LOSS_EPS: f64 = 1e-7;

fn check(labels: &[f32], predictions: &[f32]) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::input(
            None,
            "metrics need at least one sample, got none",
        ));
    }
    if labels.len() != predictions.len() {
        return Err(Error::input(
            None,
            format!(
                "{} labels but {} predictions",
                labels.len(),
                predictions.len()
            ),
        ));
    }
    if let Some(i) = labels.iter().position(|&y| y != 0.0 && y != 1.0) {
        return Err(Error::input(
            None,
            format!("label {i} is {}, expected 0 or 1", labels[i]),
        ));
    }
    if let Some(i) = predictions.iter().position(|p| !p.is_finite()) {
        return Err(Error::input(
            None,
            format!("prediction {i} is {}", predictions[i]),
        ));
    }
    Ok(())
}

/// Mean binary cross-entropy of probabilities `predictions` against `labels`.
pub fn log_loss(labels: &[f32], predictions: &[f32]) -> Result<f64> {
    check(labels, predictions)?;
    if let Some(i) = predictions.iter().position(|&p| !(0.0..=1.0).contains(&p)) {
        return Err(Error::input(
            None,
            format!("prediction {i} is {}, not a probability", predictions[i]),
        ));
    }
    let sum: f64 = labels
        .iter()
        .zip(predictions)
        .map(|(&y, &p)| {
            let p = (p as f64).clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            if y == 1.0 {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    Ok(sum / labels.len() as f64)
}

/// Share of samples where `prediction > 0.5` equals the label (0.5 counts as negative, like
/// dlrm's `round`).
pub fn accuracy(labels: &[f32], predictions: &[f32]) -> Result<f64> {
    check(labels, predictions)?;
    let hits = labels
        .iter()
        .zip(predictions)
        .filter(|(&y, &p)| (p > 0.5) == (y == 1.0))
        .count();
    Ok(hits as f64 / labels.len() as f64)
}

/// Exact area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (the trapezoid rule; Mann-Whitney U with averaged ranks).
/// Scores need not be probabilities. An error when only one class is present (AUC is undefined).
pub fn roc_auc(labels: &[f32], scores: &[f32]) -> Result<f64> {
    check(labels, scores)?;
    let positives = labels.iter().filter(|&&y| y == 1.0).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(Error::input(
            None,
            format!(
                "ROC AUC needs both classes, got {positives} positives and {negatives} negatives"
            ),
        ));
    }
    let mut order: Vec<u32> = (0..labels.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut positive_rank_sum = 0f64;
    let mut start = 0;
    while start < order.len() {
        let s = scores[order[start] as usize];
        let mut end = start + 1;
        // -0.0 and 0.0 are the same score; total_cmp orders them, so compare by value.
        while end < order.len() && scores[order[end] as usize] == s {
            end += 1;
        }
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        let pos_in_group = order[start..end]
            .iter()
            .filter(|&&i| labels[i as usize] == 1.0)
            .count();
        positive_rank_sum += mean_rank * pos_in_group as f64;
        start = end;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Ok((positive_rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// The three metrics of one evaluation, plus its size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub samples: usize,
    pub log_loss: f64,
    pub accuracy: f64,
    pub roc_auc: f64,
}

/// All metrics of `predictions` (probabilities) against `labels`.
pub fn evaluate(labels: &[f32], predictions: &[f32]) -> Result<Evaluation> {
    Ok(Evaluation {
        samples: labels.len(),
        log_loss: log_loss(labels, predictions)?,
        accuracy: accuracy(labels, predictions)?,
        roc_auc: roc_auc(labels, predictions)?,
    })
}
