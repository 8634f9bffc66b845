//! The `ttrec` command line: benchmarks, CUDA-parity checks, data tools.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ttrec",
    version,
    about = "TT-Rec tensor-train embedding tables on any GPU (wgpu)"
)]
struct Cli {
    /// The adapter to use: a part of its name, any case (as TTREC_ADAPTER); `ttrec info --list`
    /// lists them.
    #[arg(long, global = true, value_name = "NAME")]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run parity fixtures (TT-EmbeddingBag ttrec-parity-v1, DLRM ttrec-dlrm-v1) on this
    /// adapter; exit 0 only if all pass.
    Parity(cli::parity::ParityArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Show the adapter ttrec picks (--adapter, WGPU_BACKEND choose), its limits and the kernels
    /// that run on it; --list lists every adapter.
    Info(cli::info::InfoArgs),
    /// Write every compute pipeline ttrec builds (WGSL as compiled, entry points, override
    /// constants, bindings) for ports and external shader checkers.
    Kernels(cli::kernels::KernelsArgs),
    /// Criteo data tools: inspect, preprocess (build the binary data store), synth.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
    /// Train a DLRM with TT-compressed tables (dlrm's options; default: synthetic Criteo-shaped
    /// data at Kaggle's table sizes).
    Train(Box<ttrec::train::TrainArgs>),
    /// TT tables: convert a dense table into TT cores (TT-SVD) and back.
    #[command(subcommand)]
    Tt(cli::tt::TtCommand),
    /// What a training run's model will occupy: per table dense or TT, shapes, ranks, bytes
    /// (takes train's options; --embedding-budget / --compression plan the tables).
    Plan(Box<cli::plan::PlanArgs>),
    /// Score raw Criteo lines or a data store with a trained model (a --save-model
    /// checkpoint): one probability per line, in order; AUC, log loss, accuracy.
    Predict(cli::predict::PredictArgs),
}

/// Logs to stderr at level warn (wgpu's warnings, ttrec's own); `RUST_LOG` overrides, e.g.
/// `RUST_LOG=info` or `RUST_LOG=ttrec=debug`.
fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
}

/// Output piped into a reader that stops early (`ttrec info --list | head -1`) ends ttrec
/// quietly, as it does any Unix tool: Rust ignores SIGPIPE, so a print to the closed pipe would
/// panic. Not under an MPI launcher, whose transports expect SIGPIPE ignored.
#[cfg(unix)]
fn default_sigpipe() {
    let under_mpi = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !under_mpi {
        // SAFETY: sets the disposition of one signal before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}

fn main() -> std::process::ExitCode {
    #[cfg(unix)]
    default_sigpipe();
    // Before anything else runs (it sets an environment variable): before any GPU is created.
    ttrec::gpu::ensure_runtime_dir();
    init_logging();
    // SIGINT/SIGTERM: temp files removed, exit 130/143 (a training loop first checkpoints).
    ttrec::signals::install();
    let cli = Cli::parse();
    if let Some(name) = &cli.adapter {
        // Read wherever an adapter is opened (Gpu::new); set before any is, single-threaded.
        std::env::set_var("TTREC_ADAPTER", name);
    }
    let result = match cli.command {
        Command::Parity(a) => cli::parity::parity(a),
        Command::Bench(c) => cli::bench::bench(c),
        Command::Info(a) => cli::info::info(a),
        Command::Kernels(a) => cli::kernels::kernels(a),
        Command::Data(cmd) => cli::data::run(cmd),
        // Under mpirun (feature `mpi`): one rank of a data-parallel run; it never returns.
        #[cfg(feature = "mpi")]
        Command::Train(args) if ttrec::dist::mpi::launched() => cli::mpi::train(&args),
        Command::Train(args) => cli::train::train(&args),
        Command::Tt(cmd) => cli::tt::run(cmd),
        Command::Plan(args) => cli::plan::plan(*args),
        Command::Predict(a) => cli::predict::predict(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Stopped by a signal: the conventional 128 + its number.
            ttrec::signals::exit_code().map_or(std::process::ExitCode::FAILURE, Into::into)
        }
    }
}
