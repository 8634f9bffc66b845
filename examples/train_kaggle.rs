//! Trains dlrm's DLRM with TT-compressed embedding tables on Criteo-shaped data: the project's
//! main job. Same options as `ttrec train` (dlrm's names); with none it trains on synthetic data
//! at Criteo Kaggle's table sizes for a few minutes and reports log loss, accuracy, AUC, speed
//! and the compression of the embeddings.
//!
//! cargo run --release --example train_kaggle [-- --data train.txt --processed-data-file kaggle.ttcache ...]

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "train_kaggle",
    about = "Train a DLRM with TT-compressed tables (dlrm's options)"
)]
struct Cli {
    #[command(flatten)]
    args: ttrec::train::TrainArgs,
}

fn main() -> std::process::ExitCode {
    ttrec::gpu::ensure_runtime_dir();
    // wgpu's warnings and ttrec's log lines to stderr at level warn; RUST_LOG overrides.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = Cli::parse();
    match ttrec::train::run(&cli.args) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // Stopped by SIGINT or SIGTERM: 130 or 143.
            ttrec::signals::exit_code().map_or(std::process::ExitCode::FAILURE, Into::into)
        }
    }
}
