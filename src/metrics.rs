//! Evaluation metrics: log loss, accuracy, exact ROC AUC.
