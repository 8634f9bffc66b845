//! `ttrec train`: the options and the run live in [`ttrec::train`] (shared with the
//! `train_kaggle` example); this face only maps the result to the binary's error type.

/// Trains as `args` say.
pub fn train(args: &ttrec::train::TrainArgs) -> anyhow::Result<()> {
    ttrec::train::run(args)
        .map(|_| ())
        .map_err(anyhow::Error::from)
}
