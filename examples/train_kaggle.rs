//! Trains dlrm's DLRM with TT-compressed embedding tables on Criteo-shaped data: the project's
//! main job. Same options as `ttrec train` (dlrm's names); with none it trains on synthetic data
//! at Criteo Kaggle's table sizes for a few minutes and reports log loss, accuracy, AUC, speed
//! and the compression of the embeddings.
//!
//! cargo run --release --example train_kaggle [-- --data train.txt --processed-data-file kaggle.ttcache ...]
//!
//! Data-parallel on P processes (one rank each; see the README's MPI section):
//! cargo build --release --features mpi --example train_kaggle &&
//! mpirun -np P target/release/examples/train_kaggle [options]

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "train_kaggle",
    about = "Train a DLRM with TT-compressed tables (dlrm's options)"
)]
struct Cli {
    /// The adapter to use: a part of its name, any case (as TTREC_ADAPTER); `ttrec info --list`
    /// lists them.
    #[arg(long, value_name = "NAME")]
    adapter: Option<String>,
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
    if let Some(name) = &cli.adapter {
        // Read wherever an adapter is opened; set before any is, single-threaded.
        std::env::set_var("TTREC_ADAPTER", name);
    }
    // Under mpirun (built with `--features mpi`): one rank of a data-parallel run.
    #[cfg(feature = "mpi")]
    if ttrec::dist::mpi::launched() {
        return match ttrec::train::mpi_rank::train_as_rank(&cli.args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match ttrec::train::run(&cli.args) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // Stopped by SIGINT or SIGTERM: 130 or 143.
            ttrec::signals::exit_code().map_or(std::process::ExitCode::FAILURE, Into::into)
        }
    }
}
