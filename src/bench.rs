//! Benchmarks behind `ttrec bench` and `cargo bench`.
